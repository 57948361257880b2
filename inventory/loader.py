"""Site YAML -> :class:`~inventory.model.Site`, with every problem located.

The loader keeps the position of every YAML node, merges defaults (site, then
rack, then node entry), expands ranges in step (``name``, ``u``, ``mac``, ``host``,
``bmc.address``, ``bmc.system``, ``switch_port.port``), validates each node with pydantic, then
checks the site as a whole (duplicates, unknown switches and images, U overlaps).
All problems are collected and raised together as one
:class:`~inventory.errors.InventoryError`, each naming file:line:column and the
field *where the bad value is written* (so an error from ``defaults.bmc`` points
at the defaults, not at every node that inherited it).  Validation messages never
include the offending value: it might be a password pasted in by mistake.

A site file may come from anywhere: :mod:`inventory.yamldoc` reads it with limits
(size, nesting, values, alias expansion; unknown keys refused before their values
are converted), and the nodes a site expands to (:func:`max_nodes`) are counted
from the range patterns before any is expanded.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from inventory.errors import InventoryError, Problem, SelectionError
from inventory.model import (
    PLAIN_HTTP,
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
    name_token,
)
from inventory.ranges import RangeError, count, count_parallel, expand, expand_parallel
from inventory.yamldoc import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES, MAX_YAML_NODES, Doc, Shape, dotted, read_text

__all__ = [
    "MAX_ALIAS_NODES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "MAX_YAML_NODES",
    "load_site", "load_site_text", "max_nodes",
]

Path_ = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)

MAX_NODES = 50_000
"""The most nodes (servers) a site may expand to, unless ``$FLEET_CONSOLE_MAX_NODES`` says otherwise."""
MAX_NODES_ENV = "FLEET_CONSOLE_MAX_NODES"

_TOP_KEYS = {"site", "description", "defaults", "images", "provisioner", "switches", "groups", "ssh", "racks", "lab",
             "read_only"}
_DEFAULT_KEYS = {"bmc", "image", "role", "tags", "protected", "groups", "height"}
_RACK_KEYS = {"name", "height", "row", "defaults", "nodes"}
_NODE_KEYS = {"name", "u", "height", "mac", "host", "role", "tags", "groups", "image", "protected", "bmc",
              "switch_port"}
#: fields expanded in step; dotted names reach into nested mappings
_RANGE_FIELDS = ("name", "u", "mac", "host", "bmc.address", "bmc.system", "switch_port.port")


def max_nodes() -> int:
    """The node limit: ``$FLEET_CONSOLE_MAX_NODES`` when set (a whole number), else :data:`MAX_NODES`."""
    raw = os.environ.get(MAX_NODES_ENV, "").strip()
    if not raw:
        return MAX_NODES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InventoryError([Problem(MAX_NODES_ENV, None, None, None, "must be a whole number of nodes, 1 or more")])
    return value


# ----------------------------------------------------------------- the shape of a site file
def _model(what: str, model: type[BaseModel], **fields: Shape) -> Shape:
    return Shape(what, frozenset(model.model_fields), fields)


def _list(shape: Shape) -> Shape:
    return Shape(shape.what, None, {}, shape)


_BMC = _model("a BMC", Bmc, console=_model("a serial console", SerialConsole))
_DEFAULTS = Shape("defaults", frozenset(_DEFAULT_KEYS), {"bmc": _BMC})
_NODE = Shape("a node", frozenset(_NODE_KEYS), {"bmc": _BMC, "switch_port": _model("a switch port", SwitchPortRef)})
_RACK = Shape("a rack", frozenset(_RACK_KEYS),
               {"defaults": Shape("rack defaults", frozenset(_DEFAULT_KEYS), {"bmc": _BMC}), "nodes": _list(_NODE)})
_SITE = Shape("the site", frozenset(_TOP_KEYS), {
    "defaults": _DEFAULTS,
    "images": _list(_model("an image", Image)),
    "provisioner": _model("the provisioner", Provisioner),
    "switches": _list(_model("a switch", Switch, snmp=_model("SNMP settings", SnmpConfig))),
    "ssh": _model("ssh", SshConfig),
    "racks": _list(_RACK),
    "lab": _model("lab", LabConfig),
})


def _check_keys(doc: Doc, value: Any, path: Path_, what: str) -> bool:
    """True when ``value`` is a mapping (its unknown keys were refused while converting)."""
    if not isinstance(value, dict):
        doc.problem(path, f"{what} must be a mapping, got {type(value).__name__}")
        return False
    return True


def _check_name(doc: Doc, path: Path_, value: Any, what: str, *, key: bool = False) -> bool:
    """Record a problem unless ``value`` is a hostname-like name (at its key when ``key``)."""
    try:
        name_token(value if isinstance(value, str) else str(value))
    except ValueError as exc:
        doc.problem(path, f"{what}: {exc}", key=key)
        return False
    return True


def _merge(base: dict, base_origin: dict, over: dict, over_path: Path_) -> tuple[dict, dict]:
    """Deep-merge ``over`` onto ``base``; origins map field paths to document paths."""
    out = copy.deepcopy(base)
    origin = dict(base_origin)

    def walk(dst: dict, src: dict, fpath: Path_, dpath: Path_) -> None:
        for key, val in src.items():
            if isinstance(val, dict) and isinstance(dst.get(key), dict):
                origin[fpath + (key,)] = dpath + (key,)
                walk(dst[key], val, fpath + (key,), dpath + (key,))
            else:
                dst[key] = copy.deepcopy(val)
                # forget origins of a replaced subtree
                for k in [k for k in origin if k[: len(fpath) + 1] == fpath + (key,)]:
                    del origin[k]
                origin[fpath + (key,)] = dpath + (key,)
                if isinstance(val, dict):
                    for sub in _leaf_paths(val):
                        origin[fpath + (key,) + sub] = dpath + (key,) + sub

    walk(out, over, (), over_path)
    return out, origin


def _leaf_paths(d: dict, prefix: Path_ = ()) -> list[Path_]:
    out = []
    for k, v in d.items():
        out.append(prefix + (k,))
        if isinstance(v, dict):
            out.extend(_leaf_paths(v, prefix + (k,)))
    return out


def _get(d: dict, dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _set_copy(d: dict, dotted: str, value: Any) -> None:
    """Set ``a.b`` in ``d``, copying the nested mappings on the way (they may be shared)."""
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        cur[part] = cur = dict(cur.get(part) or {})
    cur[parts[-1]] = value


def _pydantic_problems(doc: Doc, exc: ValidationError, origin: dict, fallback: Path_, what: str = "") -> None:
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err["loc"])
        dpath = None
        for i in range(len(loc), 0, -1):
            if loc[:i] in origin:
                dpath = origin[loc[:i]] + loc[i:]
                break
        if dpath is None:
            dpath = fallback + loc
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "missing":
            msg = f"required field {loc[-1]!r} is missing"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}"
        # name the node only when the bad value is in the node's own entry, not in defaults
        own = dpath[: len(fallback)] == fallback
        doc.problem(dpath, msg + (f" ({what})" if what and own else ""))


def load_site(path: str | os.PathLike[str]) -> Site:
    """Read and validate a site file; raises InventoryError (every problem located)."""
    p = Path(path)
    return load_site_text(read_text(p), str(p))


@dataclass
class _Entry:
    """One node entry of a rack, defaults merged, not yet expanded."""

    path: Path_
    rack: str
    fields: dict
    origin: dict
    patterns: dict[str, str]
    size: int


def load_site_text(text: str, file: str = "<site>") -> Site:
    """Validate a site given as YAML text (``file`` names it in errors)."""
    limit = max_nodes()
    doc = Doc(text, file, _SITE, max_values=max(MAX_YAML_NODES, 2 * limit),
              values_hint=f"; the limit is twice {MAX_NODES_ENV}, set it higher to allow more")
    data = doc.data
    if data is None:
        raise InventoryError([Problem(file, 1, 1, None,
                                      "the file is empty; a site needs at least 'site:' and 'racks:'")])
    if not _check_keys(doc, data, (), "the site"):
        raise InventoryError(doc.problems)
    if "site" not in data:
        doc.problem((), "required field 'site' (the site's name) is missing")
    else:
        _check_name(doc, ("site",), data["site"], "site name")
    site_name = str(data.get("site", "?"))

    broken: set[str] = set()  # images (name@version) and switches already reported as invalid

    def model_list(key: str, model: type[BaseModel], what: str) -> list:
        items = data.get(key) or []
        if not isinstance(items, list):
            doc.problem((key,), f"{key} must be a list")
            return []
        out = []
        for i, item in enumerate(items):
            try:
                out.append(model.model_validate(item))
            except ValidationError as exc:
                _pydantic_problems(doc, exc, {}, (key, i), what)
                if isinstance(item, dict):  # nodes naming it are not told again that it is unknown
                    name = item.get("name")
                    broken.add(f"{name}@{item.get('version')}" if key == "images" else str(name))
        return out

    images: list[Image] = model_list("images", Image, "image")
    switches: list[Switch] = model_list("switches", Switch, "switch")

    def section(key: str, model: type[M]) -> M | None:
        if data.get(key) is None:
            return None
        try:
            return model.model_validate(data[key])
        except ValidationError as exc:
            _pydantic_problems(doc, exc, {}, (key,))
            return None

    provisioner = section("provisioner", Provisioner)
    ssh = section("ssh", SshConfig)
    lab = section("lab", LabConfig)

    site_defaults = data.get("defaults") or {}
    if site_defaults:
        _check_keys(doc, site_defaults, ("defaults",), "defaults")
    if not isinstance(site_defaults, dict):
        site_defaults = {}
    base_origin = {p: ("defaults",) + p for p in _leaf_paths(site_defaults)}

    # first pass: merge defaults and count every entry's nodes from its patterns, so
    # a site of millions of nodes is refused before one is expanded
    entries: list[_Entry] = []
    racks: list[Rack] = []
    rack_nodes: dict[str, list[str]] = {}
    raw_racks = data.get("racks")
    if raw_racks is None:
        doc.problem((), "required field 'racks' is missing")
        raw_racks = []
    if not isinstance(raw_racks, list):
        doc.problem(("racks",), "racks must be a list")
        raw_racks = []
    seen_racks: dict[str, Path_] = {}
    total = 0
    over: Path_ | None = None
    for ri, rack in enumerate(raw_racks):
        rpath: Path_ = ("racks", ri)
        if not _check_keys(doc, rack, rpath, "a rack"):
            continue
        rname = rack.get("name")
        if not rname:
            doc.problem(rpath, "required field 'name' is missing (rack)")
            continue
        rname = str(rname)
        if not _check_name(doc, rpath + ("name",), rname, "rack name"):
            continue
        if rname in seen_racks:
            doc.problem(rpath + ("name",), f"duplicate rack name {rname!r}")
        seen_racks[rname] = rpath
        height = rack.get("height", 42)
        if not isinstance(height, int) or not 1 <= height <= 60:
            doc.problem(rpath + ("height",), "rack height must be a whole number of units, 1 to 60")
            height = 42
        row = rack.get("row")
        if row is not None and not (isinstance(row, (str, int)) and str(row).isprintable()):
            doc.problem(rpath + ("row",), "a row is a printable word")
            row = None
        rdefaults = rack.get("defaults") or {}
        if rdefaults and not _check_keys(doc, rdefaults, rpath + ("defaults",), "rack defaults"):
            rdefaults = {}
        merged_defaults, rorigin = _merge(site_defaults, base_origin, rdefaults, rpath + ("defaults",))
        raw_entries = rack.get("nodes") or []
        if not isinstance(raw_entries, list):
            doc.problem(rpath + ("nodes",), "nodes must be a list")
            raw_entries = []
        for ni, entry in enumerate(raw_entries):
            npath = rpath + ("nodes", ni)
            if not _check_keys(doc, entry, npath, "a node"):
                continue
            if "name" not in entry:
                doc.problem(npath, "required field 'name' is missing (node)")
                continue
            fields, origin = _merge(merged_defaults, rorigin, entry, npath)
            patterns = {}
            for f in _RANGE_FIELDS:
                val = _get(fields, f)
                if val is not None and not isinstance(val, (dict, list, bool)):
                    patterns[f] = str(val)
            try:
                size = count_parallel(patterns)
            except RangeError as exc:
                bad = tuple((exc.field or "name").split("."))
                doc.problem(origin.get(bad, npath + bad), str(exc))
                continue
            total += size
            if total > limit and over is None:
                over = npath + ("name",)
            entries.append(_Entry(npath, rname, fields, origin, patterns, size))
        rack_nodes[rname] = []
        racks.append(Rack.model_construct(name=rname, height=height, row=None if row is None else str(row), nodes=()))
    if over is not None:
        doc.problem(over, f"the site expands to {total:,} nodes, more than the limit of {limit:,} (a guard against "
                          f"a runaway range; set {MAX_NODES_ENV} to allow more)")
        raise InventoryError(doc.problems)

    # second pass: expand and validate, node by node
    nodes: list[Node] = []
    node_src: dict[str, tuple[Path_, dict]] = {}
    for e in entries:
        npath, fields, origin = e.path, e.fields, e.origin
        for values in expand_parallel(e.patterns):
            one = dict(fields)  # shared below the top but for what _set_copy replaces: nothing mutates it
            for f, v in values.items():
                _set_copy(one, f, v)
            one["rack"] = e.rack
            for key in ("tags", "groups"):
                if isinstance(one.get(key), list):
                    one[key] = tuple(str(t) for t in one[key])
            try:
                node = Node.model_validate(one)
            except ValidationError as exc:
                _pydantic_problems(doc, exc, origin, npath, _node_label(values.get("name")))
                continue
            if node.name in node_src:
                first = doc.mark(node_src[node.name][0] + ("name",))[0]
                doc.problem(npath + ("name",), f"duplicate node name {node.name!r} (first defined at line {first})")
                continue
            node_src[node.name] = (npath, origin)
            nodes.append(node)
            rack_nodes[e.rack].append(node.name)
    racks = [r.model_copy(update={"nodes": tuple(rack_nodes[r.name])}) for r in racks]

    _check_site(doc, nodes, node_src, racks, images, switches, broken)
    groups = _groups(doc, data.get("groups"), nodes, limit)

    _dedupe(doc)
    if doc.problems:
        raise InventoryError(doc.problems)
    try:
        site = Site(
            name=site_name,
            description=data.get("description"),
            source=file,
            images=tuple(images),
            provisioner=provisioner,
            switches=tuple(switches),
            racks=tuple(racks),
            nodes=tuple(nodes),
            groups=groups,
            ssh=ssh or SshConfig(),
            lab=lab,
            read_only=data.get("read_only", False),
        )
    except ValidationError as exc:  # what is left: the site's own scalar fields (description)
        _pydantic_problems(doc, exc, {}, ())
        raise InventoryError(doc.problems) from None
    _check_lab(doc, site, limit)
    if doc.problems:
        raise InventoryError(doc.problems)
    site._where.update(_transport_origins(doc, nodes, node_src))
    return site


def _transport_origins(doc: Doc, nodes: list[Node], node_src: dict) -> dict:
    """Where each node's plain-HTTP scheme or ``verify_tls: false`` is written, for Site.warnings()."""
    out = {}
    for node in nodes:
        reason = node.bmc.insecure_transport
        if reason is None:
            continue
        field = "scheme" if reason == PLAIN_HTTP else "verify_tls"
        npath, origin = node_src[node.name]
        path = origin.get(("bmc", field), npath + ("bmc",))
        line, col = doc.mark(path)
        out[(node.name, f"bmc.{field}")] = (line, col, dotted(path))
    return out


def _node_label(name: Any) -> str:
    """``node NAME`` for a message, or "" when the name itself is bad (its own error shows it)."""
    try:
        return f"node {name_token(name)}"
    except ValueError:
        return ""


def _shared_bmc(node: Node, others: list[Node]) -> tuple[tuple[str, ...], str | None]:
    """Why ``node`` cannot share its BMC address and port with ``others``: (the field to
    blame, message), message None when it can.

    One Redfish service may front several systems (a blade enclosure, a chassis manager,
    sushy-tools): nodes may share it when each names its own ``bmc.system``.  An IPMI BMC
    is one machine, and one Redfish port speaks one scheme.
    """
    first = others[0]
    if node.bmc.protocol != "redfish" or any(o.bmc.protocol != "redfish" for o in others):
        return ("bmc", "address"), f"is also {first.name}'s"
    if node.bmc.scheme != first.bmc.scheme:
        return ("bmc", "scheme"), f"is also {first.name}'s, over {first.bmc.scheme}"
    unnamed = next((o for o in (node, *others) if o.bmc.system is None), None)
    if unnamed is not None:
        other = first.name if unnamed is node else unnamed.name
        message = f"is also {other}'s; nodes sharing a Redfish service need each a bmc.system ({unnamed.name} has none)"
        return (() if unnamed is node else ("bmc", "address")), message
    system = (node.bmc.system or "").casefold()  # every one names a system by now
    same = next((o for o in others if (o.bmc.system or "").casefold() == system), None)
    if same is not None:
        return ("bmc", "system"), f"system {node.bmc.system} is also {same.name}'s"
    return (), None


def _check_site(doc: Doc, nodes: list[Node], node_src: dict, racks: list[Rack], images: list[Image],
                switches: list[Switch], broken: set[str]) -> None:
    def where(node: Node, field: tuple) -> Path_:
        npath, origin = node_src[node.name]
        for i in range(len(field), 0, -1):
            if field[:i] in origin:
                return origin[field[:i]]
        return npath

    catalog = {img.ref for img in images}
    if len(catalog) != len(images):
        doc.problem(("images",), "an image name@version appears twice")
    switch_names = {sw.name for sw in switches}
    if len(switch_names) != len(switches):
        doc.problem(("switches",), "a switch name appears twice")
    heights = {r.name: r.height for r in racks}
    endpoints: dict[tuple[str, int], list[Node]] = {}
    macs: dict[str, str] = {}
    used: dict[tuple[str, int], str] = {}
    for node in nodes:
        if node.image and node.image not in catalog and node.image not in broken:
            known = ", ".join(sorted(catalog)) or "none"
            doc.problem(where(node, ("image",)), f"image {node.image!r} is not in the images catalog (known: {known})")
        if node.switch_port and node.switch_port.switch not in switch_names | broken:
            doc.problem(where(node, ("switch_port", "switch")), f"unknown switch {node.switch_port.switch!r}")
        key = (node.bmc.address, node.bmc.effective_port)
        if key in endpoints:
            field, message = _shared_bmc(node, endpoints[key])
            if message:
                doc.problem(where(node, field), f"BMC {key[0]}:{key[1]} {message}")
        endpoints.setdefault(key, []).append(node)
        if node.mac:
            if node.mac in macs:
                doc.problem(where(node, ("mac",)), f"MAC {node.mac} is also {macs[node.mac]}'s")
            macs.setdefault(node.mac, node.name)
        if node.u is not None:
            top = node.u + node.height - 1
            if top > heights.get(node.rack, 42):
                doc.problem(where(node, ("u",)),
                            f"{node.name} occupies U{node.u}-U{top}, above the rack's {heights[node.rack]}U")
            for u in range(node.u, top + 1):
                other = used.get((node.rack, u))
                if other:
                    doc.problem(where(node, ("u",)), f"{node.name} overlaps {other} at U{u} in rack {node.rack}")
                    break
                used[(node.rack, u)] = node.name


def _groups(doc: Doc, raw: Any, nodes: list[Node], limit: int) -> dict[str, tuple[str, ...]]:
    names = {n.name for n in nodes}
    groups: dict[str, list[str]] = {}
    for node in nodes:
        for g in node.groups:
            groups.setdefault(g, []).append(node.name)
    if raw is None:
        return {k: tuple(v) for k, v in groups.items()}
    if not isinstance(raw, dict):
        doc.problem(("groups",), "groups must map a group name to node names or ranges")
        return {}
    named = 0  # names the groups' ranges write, in all: counted before each is expanded
    for gname, members in raw.items():
        if not _check_name(doc, ("groups", gname), gname, "group name", key=True):
            continue
        items = members if isinstance(members, list) else [members]
        for i, item in enumerate(items):
            path = ("groups", gname) + ((i,) if isinstance(members, list) else ())
            if not isinstance(item, (str, int)):
                doc.problem(path, f"group {gname!r}: a member is a node name or range, got {type(item).__name__}")
                continue
            try:
                named += count(str(item))
                if named > limit:
                    doc.problem(path, f"the groups name more than {limit:,} nodes in all, the site's node limit "
                                      f"(set {MAX_NODES_ENV} to allow more)")
                    return {}
                expanded = expand(str(item))
            except RangeError as exc:
                doc.problem(path, str(exc))
                continue
            unknown = [n for n in expanded if n not in names]
            if unknown:
                more = " ..." if len(unknown) > 5 else ""
                doc.problem(path, f"group {gname!r} names unknown node(s): {', '.join(unknown[:5])}{more}")
            groups.setdefault(str(gname), []).extend(n for n in expanded if n in names)
    return {k: tuple(dict.fromkeys(v)) for k, v in groups.items()}


def _check_lab(doc: Doc, site: Site, limit: int) -> None:
    if site.lab is None:
        return
    from inventory.selection import select

    names = [n.name for n in site.nodes]

    def attrs(name: str):
        return site.node(name).attributes()

    lab = site.lab
    exprs: list[tuple[Path_, str, bool]] = [(("lab", key, expr), expr, True) for key, mapping in
             (("running", lab.running), ("faults", lab.faults), ("flavors", lab.flavors),
              ("digests", lab.digests), ("sol_faults", lab.sol_faults)) for expr in mapping]
    exprs += [(("lab", key, i), expr, False) for key, seq in
              (("powered_off", lab.powered_off), ("unplugged", lab.unplugged)) for i, expr in enumerate(seq)]
    named = 0  # names the selections' ranges write, in all: counted before any is expanded
    for path, expr, at_key in exprs:
        try:
            named += count(expr)
        except RangeError:
            pass  # select() says what is wrong with it
        if named > limit:
            doc.problem(path, f"the lab's selections name more than {limit:,} nodes in all, the site's node "
                              f"limit (set {MAX_NODES_ENV} to allow more)", key=at_key)
            return
        try:
            select(expr, names, attrs=attrs, groups=site.groups)
        except SelectionError as exc:
            doc.problem(path, str(exc), key=at_key)


def _dedupe(doc: Doc) -> None:
    seen = set()
    out = []
    for p in doc.problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    doc.problems[:] = out
