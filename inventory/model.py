"""What a site is: racks, nodes, BMCs, switches, images.  Pure data (pydantic v2, frozen).

These are the *expanded* models: one :class:`Node` per server, ranges already
expanded and defaults already merged by :mod:`inventory.loader`.  Secrets are never
stored here, only :class:`CredentialRef` references (``env:``, ``file:``, ``cmd:``,
``lab:``) that :mod:`console.secrets` resolves when a driver first needs them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, PrivateAttr, BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Bmc",
    "CredentialRef",
    "Image",
    "LabConfig",
    "Node",
    "Provisioner",
    "Rack",
    "Site",
    "SnmpConfig",
    "SshConfig",
    "Switch",
    "SwitchPortRef",
    "credential_ref",
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

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bmc(_Model):
    """How to reach one node's baseboard management controller."""

    protocol: Literal["ipmi", "redfish"] = Field(description="ipmi (RMCP+ lanplus) or redfish")
    address: str = Field(description="BMC IP address or host name")
    port: int = Field(0, ge=0, le=65535, description="0 means the protocol default")
    scheme: Literal["https", "http"] = Field("https", description="Redfish only")
    username: str = Field(description="BMC user name (not secret)")
    password: CredentialRef = Field(description="reference to the BMC password")
    verify_tls: bool = Field(True, description="Redfish: verify the BMC certificate")
    ca_bundle: str | None = Field(None, description="Redfish: CA bundle path for verification")
    system: str | None = Field(None, description="Redfish: ComputerSystem Id on a multi-system BMC")
    flavor: str | None = Field(None, description="vendor quirk set: dell, hpe, lenovo, supermicro, openbmc")

    @property
    def effective_port(self) -> int:
        """The port to use: explicit, else 623 for IPMI, 443/80 for Redfish."""
        if self.port:
            return self.port
        if self.protocol == "ipmi":
            return 623
        return 443 if self.scheme == "https" else 80


class SwitchPortRef(_Model):
    """Where a node's primary NIC is cabled, according to the inventory."""

    switch: str = Field(description="switch name")
    port: str = Field(description="port name as the switch calls it (ifName), e.g. Ethernet12")


class Image(_Model):
    """An immutable OS image the site can install."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(pattern=r"^[A-Za-z0-9._+-]+$")
    kernel: str | None = Field(None, description="kernel URL (PXE)")
    initrd: str | None = Field(None, description="initrd URL (PXE)")
    iso: str | None = Field(None, description="ISO URL (virtual media)")
    cmdline: str = Field("", description="extra kernel command line")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


class SnmpConfig(_Model):
    """SNMP credentials for one switch: v2c community or v3 USM."""

    version: Literal["2c", "3"] = "2c"
    community: CredentialRef | None = None
    username: str | None = None
    auth_protocol: Literal["sha", "sha256", "md5"] = "sha"
    auth_key: CredentialRef | None = None
    priv_protocol: Literal["aes", "aes256", "des"] = "aes"
    priv_key: CredentialRef | None = None

    @model_validator(mode="after")
    def _credentials_present(self) -> "SnmpConfig":
        if self.version == "2c" and not self.community:
            raise ValueError("SNMP v2c needs community")
        if self.version == "3" and not (self.username and self.auth_key and self.priv_key):
            raise ValueError("SNMP v3 needs username, auth_key and priv_key (authPriv)")
        return self


class Switch(_Model):
    """A switch polled over SNMP."""

    name: str
    address: str
    port: int = Field(161, ge=1, le=65535)
    snmp: SnmpConfig
    rack: str | None = None
    model: str | None = None


class SshConfig(_Model):
    """How to reach nodes' operating systems over SSH (image version, SSH consoles)."""

    username: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key: CredentialRef | None = Field(None, description="reference to a private key")
    password: CredentialRef | None = None
    known_hosts: str | None = Field(
        None, description="path to a known_hosts file; 'ignore' disables host key checks (lab only)"
    )


class Provisioner(_Model):
    """Where nodes boot installers from."""

    kind: Literal["ipxe", "drp", "vmedia"] = "ipxe"
    url: str | None = None
    root: str | None = Field(None, description="ipxe: directory of per-MAC boot scripts")
    token: CredentialRef | None = Field(None, description="drp: API token reference")


class Node(_Model):
    """One server, fully expanded: ranges resolved, defaults merged."""

    name: str
    rack: str
    u: int | None = Field(None, ge=1, description="lowest rack unit occupied")
    height: int = Field(1, ge=1, le=20, description="rack units occupied")
    mac: str | None = Field(None, description="primary (PXE) NIC MAC")
    host: str | None = Field(None, description="OS address, for SSH")
    ssh_port: int | None = Field(None, ge=1, le=65535, description="SSH port when not the site's")
    role: str | None = None
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    image: str | None = Field(None, description="desired image as name@version")
    protected: bool = Field(False, description="destructive actions need an explicit override")
    bmc: Bmc
    switch_port: SwitchPortRef | None = None

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

    name: str
    height: int = Field(42, ge=1, le=60)
    row: str | None = None
    nodes: tuple[str, ...] = ()


class LabConfig(_Model):
    """Only for simulated sites: how the embedded lab departs from the inventory.

    Keys are node selections; values say what the lab machine does differently.
    """

    running: dict[str, str] = Field(default_factory=dict, description="selection -> image name@version installed")
    faults: dict[str, Literal["fan", "overtemp", "psu"]] = Field(default_factory=dict)
    powered_off: tuple[str, ...] = ()
    flavors: dict[str, str] = Field(default_factory=dict, description="selection -> Redfish flavor")
    unplugged: tuple[str, ...] = Field((), description="selections whose cable is in the wrong port")


class Site(_Model):
    """A whole site, validated."""

    name: str
    description: str | None = None
    source: str | None = Field(None, description="file the site was loaded from")
    images: tuple[Image, ...] = ()
    provisioner: Provisioner | None = None
    switches: tuple[Switch, ...] = ()
    racks: tuple[Rack, ...] = ()
    nodes: tuple[Node, ...] = ()
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    ssh: SshConfig = SshConfig()
    lab: LabConfig | None = None
    _index: tuple[tuple[Node, ...], dict[str, Node]] | None = PrivateAttr(None)

    def node(self, name: str) -> Node:
        """The node of that name (KeyError when absent)."""
        return self._node_index()[name]

    def _node_index(self) -> dict[str, Node]:
        # keyed on the nodes tuple itself: a model_copy(update={"nodes": ...}) carries the
        # private index along, and must not answer with the old nodes
        # straight at pydantic's private storage: its attribute path costs ~10 us a call,
        # and the console asks for thousands of nodes at a time
        private = self.__pydantic_private__
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

    def summary(self) -> str:
        """One line: racks, nodes, switches, images."""
        return (
            f"site {self.name}: {len(self.racks)} racks, {len(self.nodes)} nodes, "
            f"{len(self.switches)} switches, {len(self.images)} images"
        )
