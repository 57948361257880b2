"""Site YAML -> :class:`~inventory.model.Site`, with every problem located.

The loader keeps the position of every YAML node, merges defaults (site, then
rack, then node entry), expands ranges in step (``name``, ``u``, ``mac``, ``host``,
``bmc.address``, ``switch_port.port``), validates each node with pydantic, then
checks the site as a whole (duplicates, unknown switches and images, U overlaps).
All problems are collected and raised together as one
:class:`~inventory.errors.InventoryError`, each naming file:line:column and the
field *where the bad value is written* (so an error from ``defaults.bmc`` points
at the defaults, not at every node that inherited it).  Validation messages never
include the offending value: it might be a password pasted in by mistake.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inventory.errors import InventoryError, Problem, SelectionError
from inventory.model import Image, LabConfig, Node, Provisioner, Rack, Site, SshConfig, Switch
from inventory.ranges import RangeError, expand, expand_parallel

__all__ = ["load_site", "load_site_text"]

Path_ = tuple[Any, ...]

_TOP_KEYS = {"site", "description", "defaults", "images", "provisioner", "switches", "groups", "ssh", "racks", "lab"}
_DEFAULT_KEYS = {"bmc", "image", "role", "tags", "protected", "groups", "height"}
_RACK_KEYS = {"name", "height", "row", "defaults", "nodes"}
_NODE_KEYS = {"name", "u", "height", "mac", "host", "role", "tags", "groups", "image", "protected", "bmc", "switch_port"}
#: fields expanded in step; dotted names reach into nested mappings
_RANGE_FIELDS = ("name", "u", "mac", "host", "bmc.address", "switch_port.port")


class _Doc:
    """A YAML document as plain Python values plus the position of every node."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            msg = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
            raise InventoryError(
                [Problem(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None, None, f"YAML syntax error: {msg}")]
            ) from None
        finally:
            loader.dispose()
        self._loader = loader
        self.data = self._convert(root, ()) if root is not None else None

    def _convert(self, node: yaml.Node, path: Path_) -> Any:
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            self._loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._loader.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int)):
                    self.problem(path, "mapping keys must be plain names")
                    continue
                if key in out:
                    self.problems.append(
                        Problem(self.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                _dotted(path + (key,)), f"duplicate key {key!r}")
                    )
                self.key_marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self._convert(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._loader.construct_object(node, deep=True)

    def mark(self, path: Path_) -> tuple[int | None, int | None]:
        """Position of the deepest existing node along ``path``."""
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (None, None))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> None:
        """Record a problem at ``path`` (at its key when ``key`` and known)."""
        line, col = (self.key_marks.get(path) if key else None) or self.mark(path)
        self.problems.append(Problem(self.file, line, col, _dotted(path) or None, message))


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _check_keys(doc: _Doc, value: Any, path: Path_, allowed: set[str], what: str) -> bool:
    if not isinstance(value, dict):
        doc.problem(path, f"{what} must be a mapping, got {type(value).__name__}")
        return False
    for key in value:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(sorted(allowed))}"
            doc.problem(path + (key,), f"unknown field {key!r} in {what}{tip}", key=True)
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


def _set(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _pydantic_problems(doc: _Doc, exc: ValidationError, origin: dict, fallback: Path_, what: str = "") -> None:
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
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError([Problem(str(p), None, None, None, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError([Problem(str(p), None, None, None, f"cannot read: {exc}")]) from None
    return load_site_text(text, str(p))


def load_site_text(text: str, file: str = "<site>") -> Site:
    """Validate a site given as YAML text (``file`` names it in errors)."""
    doc = _Doc(text, file)
    data = doc.data
    if data is None:
        raise InventoryError([Problem(file, 1, 1, None, "the file is empty; a site needs at least 'site:' and 'racks:'")])
    if not _check_keys(doc, data, (), _TOP_KEYS, "the site"):
        raise InventoryError(doc.problems)
    if "site" not in data:
        doc.problem((), "required field 'site' (the site's name) is missing")
    site_name = str(data.get("site", "?"))

    def model_list(key: str, model: type, what: str) -> list:
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
        return out

    images: list[Image] = model_list("images", Image, "image")
    switches: list[Switch] = model_list("switches", Switch, "switch")
    provisioner = ssh = lab = None
    for key, model in (("provisioner", Provisioner), ("ssh", SshConfig), ("lab", LabConfig)):
        if data.get(key) is not None:
            try:
                value = model.model_validate(data[key])
            except ValidationError as exc:
                _pydantic_problems(doc, exc, {}, (key,))
                value = None
            if key == "provisioner":
                provisioner = value
            elif key == "ssh":
                ssh = value
            else:
                lab = value

    site_defaults = data.get("defaults") or {}
    if site_defaults:
        _check_keys(doc, site_defaults, ("defaults",), _DEFAULT_KEYS, "defaults")
    if not isinstance(site_defaults, dict):
        site_defaults = {}
    base_origin = {p: ("defaults",) + p for p in _leaf_paths(site_defaults)}

    nodes: list[Node] = []
    node_src: dict[str, tuple[Path_, dict]] = {}
    racks: list[Rack] = []
    raw_racks = data.get("racks")
    if raw_racks is None:
        doc.problem((), "required field 'racks' is missing")
        raw_racks = []
    if not isinstance(raw_racks, list):
        doc.problem(("racks",), "racks must be a list")
        raw_racks = []
    seen_racks: dict[str, Path_] = {}
    for ri, rack in enumerate(raw_racks):
        rpath: Path_ = ("racks", ri)
        if not _check_keys(doc, rack, rpath, _RACK_KEYS, "a rack"):
            continue
        rname = rack.get("name")
        if not rname:
            doc.problem(rpath, "required field 'name' is missing (rack)")
            continue
        rname = str(rname)
        if rname in seen_racks:
            doc.problem(rpath + ("name",), f"duplicate rack name {rname!r}")
        seen_racks[rname] = rpath
        height = rack.get("height", 42)
        if not isinstance(height, int) or not 1 <= height <= 60:
            doc.problem(rpath + ("height",), "rack height must be a whole number of units, 1 to 60")
            height = 42
        rdefaults = rack.get("defaults") or {}
        if rdefaults and not _check_keys(doc, rdefaults, rpath + ("defaults",), _DEFAULT_KEYS, "rack defaults"):
            rdefaults = {}
        merged_defaults, rorigin = _merge(site_defaults, base_origin, rdefaults, rpath + ("defaults",))
        rack_nodes: list[str] = []
        entries = rack.get("nodes") or []
        if not isinstance(entries, list):
            doc.problem(rpath + ("nodes",), "nodes must be a list")
            entries = []
        for ni, entry in enumerate(entries):
            npath = rpath + ("nodes", ni)
            if not _check_keys(doc, entry, npath, _NODE_KEYS, "a node"):
                continue
            if "name" not in entry:
                doc.problem(npath, "required field 'name' is missing (node)")
                continue
            entry = {k: v for k, v in entry.items() if k in _NODE_KEYS}  # unknown keys already reported
            fields, origin = _merge(merged_defaults, rorigin, entry, npath)
            patterns = {}
            for f in _RANGE_FIELDS:
                val = _get(fields, f)
                if val is not None and not isinstance(val, (dict, list, bool)):
                    patterns[f] = str(val)
            try:
                expanded = expand_parallel(patterns)
            except RangeError as exc:
                bad = next((f for f in _RANGE_FIELDS if f in str(exc)), "name")
                doc.problem(origin.get(tuple(bad.split(".")), npath), str(exc))
                continue
            for values in expanded:
                one = copy.deepcopy(fields)
                for f, v in values.items():
                    _set(one, f, v)
                one["rack"] = rname
                for key in ("tags", "groups"):
                    if isinstance(one.get(key), list):
                        one[key] = tuple(str(t) for t in one[key])
                try:
                    node = Node.model_validate(one)
                except ValidationError as exc:
                    _pydantic_problems(doc, exc, origin, npath, f"node {values.get('name', '?')}")
                    continue
                if node.name in node_src:
                    first = doc.mark(node_src[node.name][0] + ("name",))[0]
                    doc.problem(npath + ("name",), f"duplicate node name {node.name!r} (first defined at line {first})")
                    continue
                node_src[node.name] = (npath, origin)
                nodes.append(node)
                rack_nodes.append(node.name)
        racks.append(Rack(name=rname, height=height, row=rack.get("row"), nodes=tuple(rack_nodes)))

    _check_site(doc, nodes, node_src, racks, images, switches)
    groups = _groups(doc, data.get("groups"), nodes)

    _dedupe(doc)
    if doc.problems:
        raise InventoryError(doc.problems)
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
    )
    _check_lab(doc, site)
    if doc.problems:
        raise InventoryError(doc.problems)
    return site


def _check_site(doc: _Doc, nodes: list[Node], node_src: dict, racks: list[Rack], images: list[Image], switches: list[Switch]) -> None:
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
    endpoints: dict[tuple[str, int], str] = {}
    macs: dict[str, str] = {}
    used: dict[tuple[str, int], str] = {}
    for node in nodes:
        if node.image and node.image not in catalog:
            known = ", ".join(sorted(catalog)) or "none"
            doc.problem(where(node, ("image",)), f"image {node.image!r} is not in the images catalog (known: {known})")
        if node.switch_port and node.switch_port.switch not in switch_names:
            doc.problem(where(node, ("switch_port", "switch")), f"unknown switch {node.switch_port.switch!r}")
        key = (node.bmc.address, node.bmc.effective_port)
        if key in endpoints:
            doc.problem(where(node, ("bmc", "address")), f"BMC {key[0]}:{key[1]} is also {endpoints[key]}'s")
        endpoints.setdefault(key, node.name)
        if node.mac:
            if node.mac in macs:
                doc.problem(where(node, ("mac",)), f"MAC {node.mac} is also {macs[node.mac]}'s")
            macs.setdefault(node.mac, node.name)
        if node.u is not None:
            top = node.u + node.height - 1
            if top > heights.get(node.rack, 42):
                doc.problem(where(node, ("u",)), f"{node.name} occupies U{node.u}-U{top}, above the rack's {heights[node.rack]}U")
            for u in range(node.u, top + 1):
                other = used.get((node.rack, u))
                if other:
                    doc.problem(where(node, ("u",)), f"{node.name} overlaps {other} at U{u} in rack {node.rack}")
                    break
                used[(node.rack, u)] = node.name


def _groups(doc: _Doc, raw: Any, nodes: list[Node]) -> dict[str, tuple[str, ...]]:
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
    for gname, members in raw.items():
        items = members if isinstance(members, list) else [members]
        for i, item in enumerate(items):
            path = ("groups", gname) + ((i,) if isinstance(members, list) else ())
            try:
                expanded = expand(str(item))
            except RangeError as exc:
                doc.problem(path, str(exc))
                continue
            unknown = [n for n in expanded if n not in names]
            if unknown:
                doc.problem(path, f"group {gname!r} names unknown node(s): {', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""))
            groups.setdefault(str(gname), []).extend(n for n in expanded if n in names)
    return {k: tuple(dict.fromkeys(v)) for k, v in groups.items()}


def _check_lab(doc: _Doc, site: Site) -> None:
    if site.lab is None:
        return
    from inventory.selection import select

    names = [n.name for n in site.nodes]

    def attrs(name: str):
        return site.node(name).attributes()

    lab = site.lab
    for key, mapping in (("running", lab.running), ("faults", lab.faults), ("flavors", lab.flavors)):
        for expr in mapping:
            try:
                select(expr, names, attrs=attrs, groups=site.groups)
            except SelectionError as exc:
                doc.problem(("lab", key, expr), str(exc), key=True)
    for key, seq in (("powered_off", lab.powered_off), ("unplugged", lab.unplugged)):
        for i, expr in enumerate(seq):
            try:
                select(expr, names, attrs=attrs, groups=site.groups)
            except SelectionError as exc:
                doc.problem(("lab", key, i), str(exc))


def _dedupe(doc: _Doc) -> None:
    seen = set()
    out = []
    for p in doc.problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    doc.problems[:] = out
