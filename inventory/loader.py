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

A site file may come from anywhere, so reading one is bounded before anything
grows: the file's size (:data:`MAX_FILE_BYTES`), YAML nesting
(:data:`MAX_DEPTH`, checked while composing, before Python recursion), the nodes
aliases may repeat (:data:`MAX_ALIAS_NODES`: a "billion laughs" file is refused
while it is composed, never expanded), unknown keys (refused before their
values are converted) and the nodes a site expands to (:func:`max_nodes`,
counted from the range patterns before any is expanded).
"""

from __future__ import annotations

import copy
import difflib
import os
import stat
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.resolver
from pydantic import ValidationError

from inventory.errors import InventoryError, Problem, SelectionError
from inventory.model import (
    PLAIN_HTTP,
    Bmc,
    Image,
    LabConfig,
    Node,
    Provisioner,
    Rack,
    Site,
    SnmpConfig,
    SshConfig,
    Switch,
    SwitchPortRef,
    name_token,
)
from inventory.ranges import RangeError, count, count_parallel, expand, expand_parallel

__all__ = [
    "MAX_ALIAS_NODES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "MAX_YAML_NODES",
    "load_site", "load_site_text", "max_nodes",
]

Path_ = tuple[Any, ...]

MAX_FILE_BYTES = 16 * 1024 * 1024
"""The largest site file read (a 10,000-node site written out node by node is ~2 MB)."""
MAX_DEPTH = 64
"""The deepest YAML nesting accepted (a site needs 6)."""
MAX_YAML_NODES = 100_000
"""The fewest YAML values (scalars, lists, mappings, keys) a site file may hold: the
limit is this or twice the node limit, whichever is more.  A node written out on its
own takes ~14 values; a rack of them as ranges ~15."""
MAX_ALIAS_NODES = 20_000
"""How many YAML nodes aliases (``*name``, ``<<: *name``) may repeat in all."""
MAX_NODES = 50_000
"""The most nodes (servers) a site may expand to, unless ``$FLEET_CONSOLE_MAX_NODES`` says otherwise."""
MAX_NODES_ENV = "FLEET_CONSOLE_MAX_NODES"

_TOP_KEYS = {"site", "description", "defaults", "images", "provisioner", "switches", "groups", "ssh", "racks", "lab"}
_DEFAULT_KEYS = {"bmc", "image", "role", "tags", "protected", "groups", "height"}
_RACK_KEYS = {"name", "height", "row", "defaults", "nodes"}
_NODE_KEYS = {"name", "u", "height", "mac", "host", "role", "tags", "groups", "image", "protected", "bmc", "switch_port"}
#: fields expanded in step; dotted names reach into nested mappings
_RANGE_FIELDS = ("name", "u", "mac", "host", "bmc.address", "switch_port.port")


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
@dataclass(frozen=True)
class _Shape:
    """The keys a mapping may hold (None: any) and the shapes below it."""

    what: str
    keys: frozenset[str] | None = None
    fields: dict[str, "_Shape"] = dc_field(default_factory=dict)
    items: "_Shape | None" = None  # for a list: the shape of each item

    def child(self, key: Any) -> "_Shape | None":
        return self.fields.get(key) if isinstance(key, str) else None


def _model(what: str, model: type, **fields: _Shape) -> _Shape:
    return _Shape(what, frozenset(model.model_fields), fields)


def _list(shape: _Shape) -> _Shape:
    return _Shape(shape.what, None, {}, shape)


_BMC = _model("a BMC", Bmc)
_DEFAULTS = _Shape("defaults", frozenset(_DEFAULT_KEYS), {"bmc": _BMC})
_NODE = _Shape("a node", frozenset(_NODE_KEYS), {"bmc": _BMC, "switch_port": _model("a switch port", SwitchPortRef)})
_RACK = _Shape("a rack", frozenset(_RACK_KEYS),
               {"defaults": _Shape("rack defaults", frozenset(_DEFAULT_KEYS), {"bmc": _BMC}), "nodes": _list(_NODE)})
_SITE = _Shape("the site", frozenset(_TOP_KEYS), {
    "defaults": _DEFAULTS,
    "images": _list(_model("an image", Image)),
    "provisioner": _model("the provisioner", Provisioner),
    "switches": _list(_model("a switch", Switch, snmp=_model("SNMP settings", SnmpConfig))),
    "ssh": _model("ssh", SshConfig),
    "racks": _list(_RACK),
    "lab": _model("lab", LabConfig),
})


# ----------------------------------------------------------------- reading YAML, bounded
class _TooMuch(Exception):
    """A limit was crossed while composing; ``mark`` is where."""

    def __init__(self, mark: yaml.Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _BoundedComposer(yaml.composer.Composer):
    """PyYAML's composer, refusing deep nesting, too many nodes and alias bombs as it composes.

    Each composed node's size *as the converter will walk it* (aliases expanded)
    is kept; an alias adds its target's size to :attr:`repeated`, so a billion
    laughs file is refused after a few kilobytes of input, before anything is
    expanded.  An alias to a node still being composed (a cycle) is refused too.
    """

    def _init_bounds(self) -> None:
        self.max_values = max(MAX_YAML_NODES, 2 * max_nodes())
        self.depth = 0
        self.composed = 0
        self.repeated = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            size = 1 if isinstance(node, yaml.ScalarNode) else self._sizes.get(id(node))
            if size is None:
                raise _TooMuch(event.start_mark, f"alias *{event.anchor} refers to a node that contains it")
            self.repeated += size
            if self.repeated > MAX_ALIAS_NODES:
                raise _TooMuch(event.start_mark, f"aliases repeat more than {MAX_ALIAS_NODES:,} YAML nodes in all "
                                                 f"(a guard against alias bombs); write the values out instead")
            return node
        self.depth += 1
        self.composed += 1
        if self.depth > MAX_DEPTH:
            raise _TooMuch(self.peek_event().start_mark, f"YAML nested more than {MAX_DEPTH} levels deep")
        if self.composed > self.max_values:
            raise _TooMuch(self.peek_event().start_mark, f"more than {self.max_values:,} YAML values in the file "
                                                         f"(write nodes as ranges; the limit is twice "
                                                         f"{MAX_NODES_ENV}, set it higher to allow more)")
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        # only collections are remembered: a scalar's size is 1 (most nodes are scalars)
        sizes = self._sizes
        if isinstance(node, yaml.MappingNode):
            sizes[id(node)] = 1 + sum(sizes.get(id(k), 1) + sizes.get(id(v), 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            sizes[id(node)] = 1 + sum(sizes.get(id(v), 1) for v in node.value)
        return node


class _PyBoundedLoader(_BoundedComposer, yaml.SafeLoader):
    """PyYAML's safe loader under our bounded composer (when PyYAML was built without libyaml)."""

    counts_bytes = False  # a ReaderError's position is in characters

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._init_bounds()


_BoundedLoader: type = _PyBoundedLoader
if yaml.__with_libyaml__:
    class _CBoundedLoader(_BoundedComposer, yaml.cyaml.CParser, yaml.constructor.SafeConstructor,
                          yaml.resolver.Resolver):
        """libyaml's parser (7x faster than PyYAML's) under our bounded composer, safe constructor."""

        counts_bytes = True  # a ReaderError's position is in UTF-8 bytes

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
            self._init_bounds()

    _BoundedLoader = _CBoundedLoader


_BAD = object()  # a value that could not be converted (the problem is recorded)


def _offset_mark(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character ``position`` in ``text``."""
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


class _Doc:
    """A YAML document as plain Python values plus the position of every node."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._merged: dict[int, int] = {}  # id(mapping node) -> how many of its pairs a merge key brought
        if text.startswith("\ufeff"):  # a byte order mark is not part of the document
            text = text[1:]
        loader = None
        try:
            loader = _BoundedLoader(text)  # checks the characters first
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            msg = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
            raise InventoryError(
                [Problem(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None, None, f"YAML syntax error: {msg}")]
            ) from None
        except yaml.reader.ReaderError as exc:
            position = exc.position
            if _BoundedLoader.counts_bytes:
                position = len(text.encode()[:position].decode("utf-8", "ignore"))
            line, col = _offset_mark(text, position)
            message = f"character {chr(exc.character)!r} is not allowed in YAML (control characters are not text)"
            raise InventoryError([Problem(file, line, col, None, message)]) from None
        except _TooMuch as exc:
            raise InventoryError([Problem(file, exc.mark.line + 1, exc.mark.column + 1, None, exc.message)]) from None
        finally:
            if loader is not None:
                loader.dispose()
        self._loader = loader
        self.data = self._convert(root, (), _SITE) if root is not None else None

    def _at(self, node: yaml.Node, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, node.start_mark.column + 1,
                                     _dotted(path) or None, message))

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._at(node, path, exc.problem or "cannot read this value")
        except (ValueError, OverflowError, TypeError):  # e.g. an integer of 5,000 digits
            self._at(node, path, "cannot read this value (a number too long?)")
        return _BAD

    def _convert(self, node: yaml.Node, path: Path_, shape: _Shape | None) -> Any:
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            merged = self._merged.get(id(node))
            if merged is None:  # first visit (an aliased mapping is visited again, flattened)
                explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
                try:
                    self._loader.flatten_mapping(node)
                except yaml.MarkedYAMLError as exc:
                    self._at(node, path, exc.problem or "bad merge key")
                    return {}
                # flattening puts the merged pairs first; the mapping's own keys override them
                merged = self._merged[id(node)] = len(node.value) - explicit
            out: dict[Any, Any] = {}
            own: set[Any] = set()
            for i, (key_node, value_node) in enumerate(node.value):
                key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
                if key is _BAD:
                    continue
                if not isinstance(key, (str, int)):
                    self._at(key_node, path, "mapping keys must be plain names")
                    continue
                if i >= merged:
                    if key in own:
                        self._at(key_node, path + (key,), f"duplicate key {key!r}")
                    own.add(key)
                self.key_marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if shape is not None and shape.keys is not None and key not in shape.keys:
                    # refused before its value is converted: it may be large, and it is not used
                    hint = difflib.get_close_matches(str(key), sorted(shape.keys), n=1)
                    tip = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(sorted(shape.keys))}"
                    self._at(key_node, path + (key,), f"unknown field {key!r} in {shape.what}{tip}")
                    continue
                value = self._convert(value_node, path + (key,), shape.child(key) if shape else None)
                if value is not _BAD:
                    out[key] = value
            return out
        if isinstance(node, yaml.SequenceNode):
            item = shape.items if shape else None
            values = (self._convert(v, path + (i,), item) for i, v in enumerate(node.value))
            return [v for v in values if v is not _BAD]
        return self._scalar(node, path)

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


def _check_keys(doc: _Doc, value: Any, path: Path_, what: str) -> bool:
    """True when ``value`` is a mapping (its unknown keys were refused while converting)."""
    if not isinstance(value, dict):
        doc.problem(path, f"{what} must be a mapping, got {type(value).__name__}")
        return False
    return True


def _check_name(doc: _Doc, path: Path_, value: Any, what: str, *, key: bool = False) -> bool:
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

    def refuse(message: str, line: int | None = None, col: int | None = None) -> InventoryError:
        return InventoryError([Problem(str(p), line, col, None, message)])

    try:
        # O_NONBLOCK: a FIFO planted as a site file must not hang us; refused below
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise refuse("no such file") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse("not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise refuse(f"the file is {st.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} a site file may be")
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise refuse(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise refuse(f"the file is more than the {MAX_FILE_BYTES:,} bytes a site file may be")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        line, col = _offset_mark(good, len(good))
        raise refuse(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character "
                     f"(save the file as UTF-8)", line, col) from None
    return load_site_text(text, str(p))


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
    doc = _Doc(text, file)
    data = doc.data
    if data is None:
        raise InventoryError([Problem(file, 1, 1, None, "the file is empty; a site needs at least 'site:' and 'racks:'")])
    if not _check_keys(doc, data, (), "the site"):
        raise InventoryError(doc.problems)
    if "site" not in data:
        doc.problem((), "required field 'site' (the site's name) is missing")
    else:
        _check_name(doc, ("site",), data["site"], "site name")
    site_name = str(data.get("site", "?"))

    broken: set[str] = set()  # images (name@version) and switches already reported as invalid

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
                if isinstance(item, dict):  # nodes naming it are not told again that it is unknown
                    name = item.get("name")
                    broken.add(f"{name}@{item.get('version')}" if key == "images" else str(name))
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
    limit = max_nodes()
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
        )
    except ValidationError as exc:  # what is left: the site's own scalar fields (description)
        _pydantic_problems(doc, exc, {}, ())
        raise InventoryError(doc.problems) from None
    _check_lab(doc, site, limit)
    if doc.problems:
        raise InventoryError(doc.problems)
    site._where.update(_transport_origins(doc, nodes, node_src))
    return site


def _transport_origins(doc: _Doc, nodes: list[Node], node_src: dict) -> dict:
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
        out[(node.name, f"bmc.{field}")] = (line, col, _dotted(path))
    return out


def _node_label(name: Any) -> str:
    """``node NAME`` for a message, or "" when the name itself is bad (its own error shows it)."""
    try:
        return f"node {name_token(name)}"
    except ValueError:
        return ""


def _check_site(doc: _Doc, nodes: list[Node], node_src: dict, racks: list[Rack], images: list[Image],
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
    endpoints: dict[tuple[str, int], str] = {}
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


def _groups(doc: _Doc, raw: Any, nodes: list[Node], limit: int) -> dict[str, tuple[str, ...]]:
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
                doc.problem(path, f"group {gname!r} names unknown node(s): {', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5 else ""))
            groups.setdefault(str(gname), []).extend(n for n in expanded if n in names)
    return {k: tuple(dict.fromkeys(v)) for k, v in groups.items()}


def _check_lab(doc: _Doc, site: Site, limit: int) -> None:
    if site.lab is None:
        return
    from inventory.selection import select

    names = [n.name for n in site.nodes]

    def attrs(name: str):
        return site.node(name).attributes()

    lab = site.lab
    exprs = [(("lab", key, expr), expr, True) for key, mapping in
             (("running", lab.running), ("faults", lab.faults), ("flavors", lab.flavors)) for expr in mapping]
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


def _dedupe(doc: _Doc) -> None:
    seen = set()
    out = []
    for p in doc.problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    doc.problems[:] = out
