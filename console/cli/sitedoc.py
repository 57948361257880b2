"""The site-file reference, generated from the models, and a starting site file.

:func:`reference` walks the pydantic models of :mod:`inventory.model` in the shape a
site file has (the keys :mod:`inventory.loader` accepts at each place) and writes one
Markdown table per section: key, type, default, meaning (each field's
``description``).  ``fleet-console schema`` prints it; ``docs/site-reference.md`` is
its output, and a test fails when the two differ, so the reference cannot drift from
the code.

:func:`init_site` writes the annotated example (``inventory/sites/example.yaml``,
shipped with the package) as a new site: its name substituted, mode 0600, directories
0700, never over an existing file.
"""

from __future__ import annotations

import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from inventory import loader
from inventory.model import (
    Bmc,
    Image,
    LabConfig,
    Node,
    Provisioner,
    Rack,
    SerialConsole,
    Site,
    SnmpConfig,
    SshConfig,
    Switch,
    SwitchPortRef,
    credential_ref,
    listen_address,
    name_token,
)

__all__ = ["EXAMPLE", "InitError", "SECTIONS", "Section", "init_site", "reference"]

#: the annotated example site, shipped with the package (``--site example`` loads it too)
EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "sites" / "example.yaml"


@dataclass(frozen=True)
class Section:
    """One place in a site file: the keys it takes and the model that describes them."""

    title: str
    model: type[BaseModel]
    keys: frozenset[str]
    intro: str
    #: keys the file writes differently from the model, or that only the file has
    file_keys: tuple[tuple[str, str, str], ...] = ()  # (key, type, meaning)
    renamed: tuple[tuple[str, str], ...] = ()  # (file key, model field)
    #: defaults: nothing is required here, whatever the model requires of a whole node
    all_optional: bool = False


_NODE_FIELDS = frozenset(loader._NODE_KEYS)
SECTIONS: tuple[Section, ...] = (
    Section("Top level", Site, frozenset(loader._TOP_KEYS),
            "A site file is one YAML mapping. Only `site` is required.",
            file_keys=(("defaults", "mapping", "values every node starts from (see defaults); a rack's "
                                               "own defaults override them, a node's entry overrides both"),
                       ("racks", "list", "racks, each with its node entries (see racks[])")),
            renamed=(("site", "name"),)),
    Section("defaults", Node, frozenset(loader._DEFAULT_KEYS),
            "Site-wide (`defaults:`) or per rack (`racks[].defaults:`): node fields every node of the "
            "site or rack starts from. Mappings merge key by key (a node's `bmc: {address: ...}` keeps the "
            "default protocol and credentials)."),
    Section("images[]", Image, frozenset(Image.model_fields),
            "The catalog of OS images. PXE (ipxe, drp) boots `kernel` and `initrd`; virtual media "
            "(vmedia) boots `iso`."),
    Section("provisioner", Provisioner, frozenset(Provisioner.model_fields),
            "How nodes are reimaged. For `ipxe`, `fleet-console --site S serve-boot` serves `root` "
            "on `listen` (or `url`'s host and port)."),
    Section("switches[]", Switch, frozenset(Switch.model_fields), "Switches polled over SNMP for port state "
            "and the FDB/LLDP tables that find each node's port."),
    Section("switches[].snmp", SnmpConfig, frozenset(SnmpConfig.model_fields),
            "v2c needs `community`; v3 needs `username`, `auth_key` and `priv_key` (authPriv)."),
    Section("ssh", SshConfig, frozenset(SshConfig.model_fields),
            "How the console reaches nodes' operating systems (it reads `/etc/os-release` for the "
            "running image)."),
    Section("racks[]", Rack, frozenset(loader._RACK_KEYS), "A rack and the node entries in it.",
            file_keys=(("defaults", "mapping", "node defaults for this rack (see defaults)"),
                       ("nodes", "list", "node entries (see racks[].nodes[])"))),
    Section("racks[].nodes[]", Node, _NODE_FIELDS,
            "One entry describes one node, or many when its name holds a range: `n[01-20]`. The fields "
            f"{', '.join('`' + f + '`' for f in loader._RANGE_FIELDS)} expand in step (the same number of "
            "values each), so one entry can give twenty nodes their own U, MAC, address and port."),
    Section("bmc", Bmc, frozenset(Bmc.model_fields),
            "In `defaults`, a rack's `defaults` or a node entry. A Redfish BMC with `scheme: http` or "
            "`verify_tls: false` would hand its password to whoever answers: `validate` warns."),
    Section("bmc.console", SerialConsole, frozenset(SerialConsole.model_fields),
            "A node's serial console. IPMI BMCs default to Serial-over-LAN (`kind: sol`); an SSH console "
            "(`kind: ssh`) suits OpenBMC's host console on port 2200 (no `command`), iDRAC "
            "(`command: console com2`) and iLO (`command: vsp`)."),
    Section("switch_port", SwitchPortRef, frozenset(SwitchPortRef.model_fields),
            "Where a node's PXE NIC is cabled; compared with what the switches discover."),
    Section("lab", LabConfig, frozenset(LabConfig.model_fields),
            "Only for simulated sites (the built-in `demo`): how the embedded lab's machines depart "
            "from the inventory. A site with `lab:` is never contacted over the network; its lab binds "
            "loopback addresses only."),
)

_VALIDATORS = {
    name_token: "name",
    credential_ref: "secret ref",
    listen_address: "HOST:PORT",
}


def _type(annotation: Any, metadata: list | tuple = ()) -> str:
    """A short human type for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        return _type(base, meta)
    for m in metadata:
        func = getattr(m, "func", None)
        if func in _VALIDATORS:
            return _VALIDATORS[func]
        name = getattr(func, "__qualname__", "")
        if name.startswith("_url.") and func is not None:
            schemes = func.__closure__[0].cell_contents if func.__closure__ else ()
            return f"URL ({'/'.join(schemes)})"
        if name == "_host":
            return "host"
        if name == "_cmdline":
            return "text (one line)"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_type(a) for a in args)
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is tuple:
        return f"list of {_type(typing.get_args(annotation)[0])}"
    if origin is dict:
        k, v = typing.get_args(annotation)
        return f"mapping {_type(k)} → {_type(v)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if annotation is str:
        return "text"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    lo = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    hi = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    most = next((m.max_length for m in info.metadata if isinstance(m, MaxLen)), None)
    out = []
    if lo is not None and hi is not None:
        out.append(f"{lo}–{hi}")
    elif lo is not None:
        out.append(f"≥ {lo}")
    if most is not None and info.annotation not in (str,) and typing.get_origin(info.annotation) is tuple:
        out.append(f"at most {most}")
    return f" ({', '.join(out)})" if out else ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        return "{}"
    value = info.default
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "see below" if value.model_fields_set else "defaults"
    if value == ():
        return "[]"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(section: Section) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for each key, in the model's field order; keys only the file has last."""
    fields = section.model.model_fields
    renamed = dict(section.renamed)
    file_keys = {k: (t, d) for k, t, d in section.file_keys}
    order = list(fields)

    def position(key: str) -> int:
        field = renamed.get(key, key)
        return order.index(field) if field in fields and key not in file_keys else len(order)

    rows = []
    for key in sorted(section.keys, key=lambda k: (position(k), k)):
        if key in file_keys:
            typ, meaning = file_keys[key]
            rows.append((key, typ, "—", meaning))
            continue
        field = renamed.get(key, key)
        info = fields[field]
        if not info.description:
            raise ValueError(f"{section.model.__name__}.{field} has no description")
        default = "—" if section.all_optional and info.is_required() else _default(info)
        rows.append((key, _type(info.annotation, info.metadata) + _bounds(info), default, info.description))
    return rows


def reference() -> str:
    """The site-file reference as Markdown (``docs/site-reference.md``)."""
    out = [
        "# Site file reference",
        "",
        "<!-- generated by `fleet-console schema` from inventory/model.py; do not edit by hand -->",
        "",
        "Every key a site file may hold, where it goes, its type, default and meaning. A key not listed "
        "is refused, with its file:line:column. An annotated example that validates is "
        "[`inventory/sites/example.yaml`](../inventory/sites/example.yaml); `fleet-console init NAME` "
        "copies it as a new site.",
        "",
        "Types: *name* is hostname-like (letters, digits, `-`, `_`, `.`); *text* is printable, without "
        "control characters; *host* is an IP address or host name; a *secret ref* is `env:NAME`, "
        "`file:PATH` (mode 0600, yours or root's) or `cmd:COMMAND` (first line of its output), never a "
        "literal; URLs have no `user@`.",
        "",
    ]
    for section in SECTIONS:
        out += [f"## `{section.title}`" if section.title != "Top level" else "## Top level", "",
                section.intro, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        out += [f"| `{k}` | {_cell(t)} | {_cell(d)} | {_cell(m)} |" for k, t, d, m in _rows(section)]
        out.append("")
    return "\n".join(out)


class InitError(Exception):
    """A starting site file cannot be written where asked."""


def _default_path(name: str) -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "fleet-console" / "sites" / f"{name}.yaml"


def _private_dirs(path: Path) -> None:
    """Create the missing directories above ``path`` 0700 (existing ones are left as they are)."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise InitError(f"cannot create {d}: {exc.strerror or exc}") from None


def example_for(name: str) -> str:
    """The annotated example with its site name replaced by ``name``."""
    text = EXAMPLE.read_text()
    return re.sub(r"(?m)^site: \S+", f"site: {name}", text, count=1)


def init_site(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Write a starting site file for ``name``; returns its path.

    Default path: ``$XDG_CONFIG_HOME/fleet-console/sites/NAME.yaml`` (found by
    ``--site NAME``).  Created with O_EXCL and mode 0600, so an existing file (or a
    link planted there) is never overwritten or followed.
    """
    try:
        name_token(name)
    except ValueError as exc:
        raise InitError(f"site name: {exc}") from None
    target = Path(path).expanduser() if path else _default_path(name)
    _private_dirs(target)
    data = example_for(name).encode()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise InitError(f"{target} already exists: not overwriting it (choose another PATH or remove it)") from None
    except OSError as exc:
        raise InitError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    return target
