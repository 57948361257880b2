"""What a site is: racks, nodes, BMCs, switches, images.  Pure data (pydantic v2, frozen).

These are the *expanded* models: one :class:`Node` per server, ranges already
expanded and defaults already merged by :mod:`inventory.loader`.  Secrets are never
stored here, only :class:`CredentialRef` references (``env:``, ``file:``, ``cmd:``,
``lab:``) that :mod:`console.secrets` resolves when a driver first needs them.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "Bmc",
    "CredentialRef",
    "Image",
    "LabConfig",
    "Node",
    "Provisioner",
    "Rack",
    "Name",
    "Site",
    "SiteWarning",
    "SnmpConfig",
    "SshConfig",
    "Switch",
    "SwitchPortRef",
    "credential_ref",
    "listen_address",
    "name_token",
]

_REF_SCHEMES = ("env:", "file:", "cmd:", "lab:")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def credential_ref(value: str) -> str:
    """Validate a credential reference; a literal secret is refused (never echoed back)."""
    if not isinstance(value, str) or not value.startswith(_REF_SCHEMES):
        raise ValueError(
            "a literal secret is not allowed in the inventory; "
            "use env:NAME, file:/path (mode 0600) or cmd:COMMAND"
        )
    scheme, rest = value.split(":", 1)
    if not rest.strip():
        raise ValueError(f"empty {scheme}: reference")
    if scheme == "env" and not _ENV_NAME.match(rest):
        raise ValueError(f"env: reference needs a variable name, got {rest!r}")
    return value


#: A reference to a secret, such as ``env:DAL1_BMC_PASSWORD``.
CredentialRef = Annotated[str, AfterValidator(credential_ref)]


def _shown(value: str, limit: int = 40) -> str:
    """A bad value for an error message: repr (control characters escaped), cut short."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NAME_MAX = 253


def name_token(value: str) -> str:
    """Check a node, rack, switch, group or site name: a hostname-like token.

    Letters, digits, ``-`` and ``_`` in labels joined by ``.``; a label starts with
    a letter, digit or ``_`` and has at most 63 characters, the name at most 253.
    Such a name is safe as a file name, in a URL, a boot script or a terminal.
    """
    if not isinstance(value, str) or len(value) > _NAME_MAX or not _NAME.fullmatch(value):
        shown = _shown(value) if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"a name is letters, digits, '-', '_' and '.' (hostname-like: no '/', no leading '.' or '-', "
            f"labels of at most 63 characters, 253 in all), got {shown}"
        )
    return value


def _plain_text(value: str) -> str:
    """Free text (a role, a tag, a user name, a path): printable, no control characters."""
    if not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise ValueError(f"control or non-printable character {bad!r} is not allowed here")
    return value


def _host(value: str) -> str:
    """An IP address or a host name, nothing that would change a URL built from it."""
    if len(value) <= _NAME_MAX and _NAME.fullmatch(value):  # a host name or an IPv4 address
        return value
    try:
        ipaddress.ip_address(value)  # IPv6
        return value
    except ValueError:
        raise ValueError(f"not an IP address or host name: {_shown(value)}") from None


def _url(schemes: tuple[str, ...]):
    def check(value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError(f"a URL has no spaces, control or non-ASCII characters: {_shown(value)}")
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError(f"not a URL: {_shown(value)}") from None
        if parts.scheme not in schemes:
            raise ValueError(f"URL scheme must be {' or '.join(schemes)}: {_shown(value)}")
        if "@" in parts.netloc:
            raise ValueError("user@ in a URL: a secret does not belong in the inventory")
        if not parts.hostname:
            raise ValueError(f"URL has no host: {_shown(value)}")
        return value

    return AfterValidator(check)


def _cmdline(value: str) -> str:
    if not (value.isascii() and value.isprintable()):
        bad = next(ch for ch in value if not (ch.isascii() and ch.isprintable()))
        kind = "a line break" if bad in "\r\n\v\f\x85\u2028\u2029" else "a control or non-ASCII character"
        raise ValueError(f"kernel command line holds {kind} ({bad!r}): only printable ASCII is allowed")
    return value


#: A node, rack, switch, group or site name (see :func:`name_token`).
Name = Annotated[str, AfterValidator(name_token)]
#: Free text: printable, without control characters.
PlainText = Annotated[str, AfterValidator(_plain_text)]
#: An IP address or host name.
Host = Annotated[str, AfterValidator(_host)]
#: Where an installer fetches a kernel, initrd or ISO from.
BootUrl = Annotated[str, _url(("http", "https", "tftp"))]
#: An HTTP API endpoint.
HttpUrl = Annotated[str, _url(("http", "https"))]


def listen_address(value: str) -> str:
    """``HOST:PORT`` or ``[IPv6]:PORT`` to bind a server to."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen is HOST:PORT (e.g. 0.0.0.0:8069, [::]:8069), got {_shown(value)}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address: {_shown(host)}") from None
    else:
        _host(host)
    return value


#: ``HOST:PORT`` a server binds.
Listen = Annotated[str, AfterValidator(listen_address)]

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SerialConsole(_Model):
    """Where a node's serial console is reached: IPMI SOL on the BMC, or an SSH console."""

    kind: Literal["sol", "ssh"] = Field(
        "sol", description="sol (IPMI Serial-over-LAN on the BMC) or ssh (a BMC's SSH console)")
    address: Host | None = Field(None, description="ssh: host to connect to; default the BMC address")
    port: int = Field(0, ge=0, le=65535, description="ssh: port (OpenBMC host console: 2200); 0 means 22")
    command: PlainText | None = Field(
        None, description="ssh: command that opens the console (iDRAC: console com2, iLO: vsp); none for OpenBMC")
    username: PlainText | None = Field(None, description="ssh: user; default the BMC user")
    password: CredentialRef | None = Field(None, description="ssh: password reference; default the BMC password")
    known_hosts: str | None = Field(
        None, description="ssh: known_hosts file for the console's host key (lab:known_hosts in the lab; "
        "ignore disables the check, labs only); default the site's ssh.known_hosts")


class Bmc(_Model):
    """How to reach one node's baseboard management controller."""

    protocol: Literal["ipmi", "redfish"] = Field(description="ipmi (RMCP+ lanplus) or redfish")
    address: Host = Field(description="BMC IP address or host name")
    port: int = Field(0, ge=0, le=65535, description="0 means the protocol default")
    scheme: Literal["https", "http"] = Field(
        "https", description="Redfish: https, or http (the password then goes in clear: validate warns)")
    username: PlainText = Field(description="BMC user name (not secret)")
    password: CredentialRef = Field(description="reference to the BMC password")
    verify_tls: bool = Field(True, description="Redfish: verify the BMC certificate")
    ca_bundle: PlainText | None = Field(None, description="Redfish: CA bundle path for verification")
    system: PlainText | None = Field(None, description="Redfish: ComputerSystem Id on a multi-system BMC")
    flavor: PlainText | None = Field(
        None, description="vendor quirk set: dell, hpe, lenovo, supermicro, openbmc, sushy; IPMI: openipmi")
    console: SerialConsole | None = Field(
        None, description="the serial console (see bmc.console); default IPMI SOL for ipmi BMCs, none for redfish")

    @property
    def effective_port(self) -> int:
        """The port to use: explicit, else 623 for IPMI, 443/80 for Redfish."""
        if self.port:
            return self.port
        if self.protocol == "ipmi":
            return 623
        return 443 if self.scheme == "https" else 80

    @property
    def insecure_transport(self) -> str | None:
        """Why this BMC's password would travel unprotected, or None when it does not.

        ``"plain HTTP"`` (Redfish over http: anyone on the path reads it) or ``"TLS not
        verified"`` (Redfish over https with ``verify_tls: false``: whoever answers at
        the address gets it).  IPMI's RMCP+ never sends the password itself.
        """
        if self.protocol != "redfish":
            return None
        if self.scheme == "http":
            return PLAIN_HTTP
        if not self.verify_tls:
            return TLS_NOT_VERIFIED
        return None


PLAIN_HTTP = "plain HTTP"
TLS_NOT_VERIFIED = "TLS not verified"


class SwitchPortRef(_Model):
    """Where a node's primary NIC is cabled, according to the inventory."""

    switch: Name = Field(description="switch name")
    port: PlainText = Field(description="port name as the switch calls it (ifName), e.g. Ethernet12")


class Image(_Model):
    """An immutable OS image the site can install."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128,
                      description="image name: letters, digits, '.', '_', '-'")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", max_length=128,
                         description="image version: letters, digits, '.', '_', '+', '-'; "
                                     "name@version is how nodes and commands name the image")
    kernel: BootUrl | None = Field(None, description="kernel URL (PXE): http, https or tftp")
    initrd: BootUrl | None = Field(None, description="initrd URL (PXE): http, https or tftp")
    iso: BootUrl | None = Field(None, description="ISO URL (virtual media): http, https or tftp")
    cmdline: Annotated[str, AfterValidator(_cmdline)] = Field(
        "", description="extra kernel command line (printable ASCII, one line)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                               description="SHA-256 of the image (64 lowercase hex digits), passed to the installer")

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


class SnmpConfig(_Model):
    """SNMP credentials for one switch: v2c community or v3 USM."""

    version: Literal["2c", "3"] = Field("2c", description="SNMP version: 2c (community) or 3 (USM, authPriv)")
    community: CredentialRef | None = Field(None, description="v2c: reference to the community string")
    username: str | None = Field(None, description="v3: USM user name")
    auth_protocol: Literal["sha", "sha256", "md5"] = Field("sha", description="v3: authentication protocol")
    auth_key: CredentialRef | None = Field(None, description="v3: reference to the authentication passphrase")
    priv_protocol: Literal["aes", "aes256", "des"] = Field("aes", description="v3: privacy (encryption) protocol")
    priv_key: CredentialRef | None = Field(None, description="v3: reference to the privacy passphrase")

    @model_validator(mode="after")
    def _credentials_present(self) -> SnmpConfig:
        if self.version == "2c" and not self.community:
            raise ValueError("SNMP v2c needs community")
        if self.version == "3" and not (self.username and self.auth_key and self.priv_key):
            raise ValueError("SNMP v3 needs username, auth_key and priv_key (authPriv)")
        return self


class Switch(_Model):
    """A switch polled over SNMP."""

    name: Name = Field(description="switch name, as nodes' switch_port.switch names it")
    address: Host = Field(description="SNMP agent IP address or host name")
    port: int = Field(161, ge=1, le=65535, description="SNMP UDP port")
    snmp: SnmpConfig = Field(description="SNMP credentials (see switches[].snmp)")
    rack: Name | None = Field(None, description="rack the switch sits in (top of rack)")
    model: PlainText | None = Field(None, description="switch model, shown as text")


class SshConfig(_Model):
    """How to reach nodes' operating systems over SSH (image version, SSH consoles)."""

    username: PlainText = Field("root", description="user to log in as")
    port: int = Field(22, ge=1, le=65535, description="SSH port of every node")
    key: CredentialRef | None = Field(None, description="reference to a private key")
    password: CredentialRef | None = Field(None, description="reference to a password (when there is no key)")
    known_hosts: str | None = Field(
        None, description="path to a known_hosts file; 'ignore' disables host key checks (lab only)"
    )


class Provisioner(_Model):
    """Where nodes boot installers from."""

    kind: Literal["ipxe", "drp", "vmedia"] = Field(
        "ipxe", description="ipxe (embedded: boot scripts in root, served by serve-boot), drp (Digital Rebar "
                            "Provision API) or vmedia (Redfish virtual media, boots the image's iso)")
    url: HttpUrl | None = Field(
        None, description="ipxe: the boot server's base URL as nodes and this host reach it (scripts at "
                          "URL/boot/aa-bb-cc-dd-ee-ff.ipxe, fetches at URL/fetches); drp: the API endpoint")
    root: PlainText | None = Field(None, description="ipxe: directory of per-MAC boot scripts")
    listen: Listen | None = Field(
        None, description="ipxe: HOST:PORT serve-boot binds (e.g. 0.0.0.0:8069); default: url's host and port")
    token: CredentialRef | None = Field(None, description="drp: API token reference")
    mode: Literal["auto", "workflow", "bootenv"] = Field(
        "auto", description="drp: workflow (set the image params, start `workflow` and follow its Stage, "
                            "CurrentTask and Jobs to WorkflowComplete), bootenv (set the image params and the "
                            "fleet-install BootEnv; the machine must have no Workflow) or auto: workflow when the "
                            "machine has a Workflow, else bootenv (docs/drp.md)")
    workflow: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)] = Field(
        "fleet-image-deploy", description="drp: the Workflow a reimage starts (contrib/drp ships "
                                          "fleet-image-deploy; universal-rebuild or a site's own also work)")
    ca_bundle: PlainText | None = Field(
        None, description="drp: PEM file of the CA(s) that signed the DRP endpoint's certificate "
                          "(default: the system's trust store)")
    verify_tls: bool = Field(True, description="drp: check the endpoint's TLS certificate (false only for a lab)")


class Node(_Model):
    """One server, fully expanded: ranges resolved, defaults merged."""

    name: Name = Field(description="node name; a range such as n[01-20] makes one node per value")
    rack: Name = Field(description="the rack (set by the loader from the rack the entry is in)")
    u: int | None = Field(None, ge=1, description="lowest rack unit occupied")
    height: int = Field(1, ge=1, le=20, description="rack units occupied")
    mac: str | None = Field(None, description="primary (PXE) NIC MAC, aa:bb:cc:dd:ee:ff")
    host: Host | None = Field(None, description="OS address, for SSH")
    ssh_port: int | None = Field(None, ge=1, le=65535, description="SSH port when not the site's")
    role: PlainText | None = Field(None, description="a role word, matched by selections (role=gpu, or gpu)")
    tags: tuple[PlainText, ...] = Field((), max_length=64, description="free words, matched by selections")
    groups: tuple[Name, ...] = Field((), max_length=64, description="groups the node is in (@group in selections)")
    image: str | None = Field(None, description="desired image as name@version")
    protected: bool = Field(False, description="destructive actions need an explicit override")
    bmc: Bmc = Field(description="the node's BMC (see bmc)")
    switch_port: SwitchPortRef | None = Field(None, description="where its PXE NIC is cabled (see switch_port)")

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.lower().replace("-", ":")
        if not _MAC.match(v):
            raise ValueError(f"not a MAC address: {v!r}")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and v.count("@") != 1:
            raise ValueError(f"image must be name@version, got {v!r}")
        return v

    def attributes(self) -> dict[str, str | tuple[str, ...]]:
        """Attributes the node selection syntax matches on (``rack=r01``, ``role=gpu``...)."""
        out: dict[str, str | tuple[str, ...]] = {
            "name": self.name,
            "rack": self.rack,
            "protocol": self.bmc.protocol,
            "tags": self.tags,
            "groups": self.groups,
            "protected": "yes" if self.protected else "no",
        }
        for key in ("role", "image", "mac", "host"):
            if (val := getattr(self, key)) is not None:
                out[key] = val
        if self.image:
            out["image_name"] = self.image.split("@", 1)[0]
        if self.u is not None:
            out["u"] = str(self.u)
        if self.switch_port:
            out["switch"] = self.switch_port.switch
        return out


class Rack(_Model):
    """A rack: its height and the node names in it (nodes live in ``Site.nodes``)."""

    name: Name = Field(description="rack name")
    height: int = Field(42, ge=1, le=60, description="rack units")
    row: PlainText | None = Field(None, description="row or aisle, shown as text")
    nodes: tuple[str, ...] = Field((), description="the rack's nodes")


class LabConfig(_Model):
    """Only for simulated sites: how the embedded lab departs from the inventory.

    Keys are node selections; values say what the lab machine does differently.
    """

    running: dict[str, str] = Field(default_factory=dict, description="selection -> image name@version installed")
    digests: dict[str, Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=dict, description="selection -> the sha256 of the image installed (default: the "
        "catalog's for its name@version); another digest is an image that drifted under the same version")
    faults: dict[str, Literal["fan", "overtemp", "psu"]] = Field(
        default_factory=dict, description="selection -> a failing sensor: fan, overtemp or psu")
    powered_off: tuple[str, ...] = Field((), description="selections of machines that start powered off")
    flavors: dict[str, str] = Field(default_factory=dict, description="selection -> Redfish flavor")
    unplugged: tuple[str, ...] = Field((), description="selections whose cable is in the wrong port")
    sol_faults: dict[str, Literal["drop", "held"]] = Field(
        default_factory=dict, description="selection -> an IPMI BMC's SOL fault: drop (the BMC ends the SOL "
        "session by itself soon after activation) or held (another client holds SOL until it is taken over)")


class Site(_Model):
    """A whole site, validated."""

    name: Name = Field(description="the site's name (`site:` in the file)")
    description: PlainText | None = Field(None, description="one line about the site, shown as text")
    source: str | None = Field(None, description="file the site was loaded from")
    images: tuple[Image, ...] = Field((), description="the catalog of OS images nodes may run (see images[])")
    provisioner: Provisioner | None = Field(None, description="how nodes are reimaged (see provisioner)")
    switches: tuple[Switch, ...] = Field((), description="switches polled over SNMP (see switches[])")
    racks: tuple[Rack, ...] = Field((), description="racks and their nodes (see racks[])")
    nodes: tuple[Node, ...] = Field((), description="every node, expanded")
    groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="group name -> node selections; @NAME selects the group")
    ssh: SshConfig = Field(SshConfig(), description="how to reach the nodes' OS over SSH (see ssh)")
    lab: LabConfig | None = Field(None, description="simulated sites only: the embedded lab's departures (see lab)")
    read_only: bool = Field(False, description="true: every console and command on this site only looks "
                                                "(power, pxe and reimage refuse, exit 2); only editing this "
                                                "file makes it writable again")
    _index: tuple[tuple[Node, ...], dict[str, Node]] | None = PrivateAttr(None)
    #: (node name, "bmc.scheme" or "bmc.verify_tls") -> where the loader read it: line, column, field
    _where: dict[tuple[str, str], tuple[int | None, int | None, str | None]] = PrivateAttr(default_factory=dict)

    def node(self, name: str) -> Node:
        """The node of that name (KeyError when absent)."""
        return self._node_index()[name]

    def _node_index(self) -> dict[str, Node]:
        # keyed on the nodes tuple itself: a model_copy(update={"nodes": ...}) carries the
        # private index along, and must not answer with the old nodes
        # straight at pydantic's private storage: its attribute path costs ~10 us a call,
        # and the console asks for thousands of nodes at a time
        private = self.__pydantic_private__
        assert private is not None  # a model with private attributes always has it
        index = private.get("_index")
        nodes = self.nodes
        if index is None or index[0] is not nodes:
            index = private["_index"] = (nodes, {n.name: n for n in nodes})
        return index[1]

    def image(self, ref: str) -> Image | None:
        """The catalog image for ``name@version`` (None when unknown)."""
        for img in self.images:
            if img.ref == ref:
                return img
        return None

    def switch(self, name: str) -> Switch | None:
        """The switch of that name."""
        for sw in self.switches:
            if sw.name == name:
                return sw
        return None

    def warnings(self) -> tuple[SiteWarning, ...]:
        """Nodes whose BMC password would go over plain HTTP or unverified TLS.

        One warning per reason and place in the file that causes it (a ``verify_tls:
        false`` in the defaults is one warning for every node inheriting it), the
        nodes written as a range.  Empty for a site that protects every password.
        """
        from inventory.ranges import RangeError, compress

        found: dict[tuple[str, tuple], list[str]] = {}
        for node in self.nodes:
            reason = node.bmc.insecure_transport
            if reason is None:
                continue
            field = "bmc.scheme" if reason == PLAIN_HTTP else "bmc.verify_tls"
            where = self._where.get((node.name, field), (None, None, None))
            found.setdefault((reason, where), []).append(node.name)
        out = []
        for (reason, (line, column, field)), names in found.items():
            try:
                shown = compress(names)
            except RangeError:
                shown = ",".join(names)
            out.append(SiteWarning(self.source or self.name, line, column, field, reason, shown, len(names)))
        return tuple(out)

    def summary(self) -> str:
        """One line: racks, nodes, switches, images."""
        return (
            f"site {self.name}: {len(self.racks)} racks, {len(self.nodes)} nodes, "
            f"{len(self.switches)} switches, {len(self.images)} images"
        )


_ADVICE = {
    PLAIN_HTTP: "goes over plain HTTP: anyone on the path reads it; use scheme: https with verify_tls: true",
    TLS_NOT_VERIFIED: "goes over TLS without checking the certificate: whoever answers at the address gets it; "
                      "set verify_tls: true (and ca_bundle: PATH for a private CA)",
}


@dataclass(frozen=True)
class SiteWarning:
    """A site that validates but is unsafe in a way an operator should hear about."""

    file: str
    line: int | None
    column: int | None
    field: str | None
    reason: str  #: :data:`PLAIN_HTTP` or :data:`TLS_NOT_VERIFIED`
    nodes: str  #: the nodes concerned, as a range
    count: int

    @property
    def message(self) -> str:
        """The warning without its location."""
        plural = "s" if self.count != 1 else ""
        return f"the BMC password of {self.nodes} ({self.count} node{plural}) {_ADVICE[self.reason]}"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} warning: {self.message}"
