"""Read a YAML document with limits, keeping the position of every value.

A site file may come from anywhere, so reading one is bounded before anything
grows: the file's size (:data:`MAX_FILE_BYTES`), YAML nesting (:data:`MAX_DEPTH`,
checked while composing, before Python recursion), the values in the file
(:data:`MAX_YAML_NODES` or more), and the values aliases may repeat
(:data:`MAX_ALIAS_NODES`: a "billion laughs" file is refused while it is composed,
never expanded).  A :class:`Shape` says which keys each mapping may hold: an unknown
key is refused before its value is converted.  Every problem is a located
:class:`~inventory.errors.Problem`.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, Protocol

import yaml
import yaml.composer
import yaml.constructor
import yaml.resolver

from inventory.errors import InventoryError, Problem

__all__ = ["Doc", "MAX_ALIAS_NODES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_YAML_NODES", "Shape", "dotted", "read_text"]

Path_ = tuple[Any, ...]

MAX_FILE_BYTES = 16 * 1024 * 1024
"""The largest site file read (a 10,000-node site written out node by node is ~2 MB)."""
MAX_DEPTH = 64
"""The deepest YAML nesting accepted (a site needs 6)."""
MAX_YAML_NODES = 100_000
"""The YAML values (scalars, lists, mappings, keys) a document may hold unless the reader
allows more (a site: this or twice its node limit).  A node written out on its own
takes ~14 values; a rack of them as ranges ~15."""
MAX_ALIAS_NODES = 20_000
"""How many YAML nodes aliases (``*name``, ``<<: *name``) may repeat in all."""


@dataclass(frozen=True)
class Shape:
    """The keys a mapping may hold (None: any) and the shapes below it."""

    what: str
    keys: frozenset[str] | None = None
    fields: dict[str, Shape] = dc_field(default_factory=dict)
    items: Shape | None = None  # for a list: the shape of each item

    def child(self, key: Any) -> Shape | None:
        return self.fields.get(key) if isinstance(key, str) else None


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
        self.max_values = MAX_YAML_NODES
        self.values_hint = ""
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
                                                         f"(write nodes as ranges{self.values_hint})")
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


def _bounded_scalar_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """YAML 1.1's implicit types, less what a hostile file can make expensive.

    Integers and floats are recognised only in their plain forms and at a sane length:
    YAML 1.1's base-60 numbers (``1:59:59``) cost time growing with the square of their
    length to convert, and a 4,000-digit hex integer raises when turned back into text.
    What is not recognised stays a string, which the model then reports at its line.
    """
    numbers = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {
        first: [(tag, rx) for tag, rx in entries if tag not in numbers]
        for first, entries in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }
    bounded = [
        ("tag:yaml.org,2002:int", re.compile(
            r"^(?:[-+]?0b[01_]{1,64}|[-+]?0[0-7_]{0,24}|[-+]?(?:0|[1-9][0-9_]{0,24})|[-+]?0x[0-9a-fA-F_]{1,20})$")),
        ("tag:yaml.org,2002:float", re.compile(
            r"^(?:[-+]?(?:[0-9][0-9_]{0,24})?\.[0-9_]{0,24}(?:[eE][-+][0-9]{1,3})?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")),
    ]
    for tag, rx in bounded:
        for first in "-+0123456789.":
            table.setdefault(first, []).append((tag, rx))
    return table


class _BoundedScalars:
    """Resolver table of the bounded loaders (see :func:`_bounded_scalar_resolvers`)."""

    yaml_implicit_resolvers = _bounded_scalar_resolvers()


class _PyBoundedLoader(_BoundedComposer, _BoundedScalars, yaml.SafeLoader):
    """PyYAML's safe loader under our bounded composer (when PyYAML was built without libyaml)."""

    counts_bytes = False  # a ReaderError's position is in characters

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._init_bounds()


class _Loader(Protocol):
    """What :class:`Doc` uses of a bounded loader (either class here)."""

    max_values: int
    values_hint: str

    def get_single_node(self) -> yaml.Node | None: ...

    def dispose(self) -> None: ...

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any: ...

    def flatten_mapping(self, node: yaml.MappingNode) -> None: ...


class _LoaderClass(Protocol):
    """The bounded loader class in use: a loader for a text, and how its errors count."""

    counts_bytes: bool

    def __call__(self, stream: str) -> _Loader: ...


_BoundedLoader: _LoaderClass = _PyBoundedLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CBoundedLoader(_BoundedComposer, CParser, yaml.constructor.SafeConstructor, _BoundedScalars,
                          yaml.resolver.Resolver):
        """libyaml's parser (7x faster than PyYAML's) under our bounded composer, safe constructor."""

        counts_bytes = True  # a ReaderError's position is in UTF-8 bytes

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)
            self._init_bounds()

    _BoundedLoader = _CBoundedLoader


BAD = object()  # a value that could not be converted (the problem is recorded)


def offset_mark(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character ``position`` in ``text``."""
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


class Doc:
    """A YAML document as plain Python values plus the position of every node.

    ``shape`` says which keys each mapping may hold; ``max_values`` caps the values in
    the file (``values_hint`` tells how to raise it).  Raises
    :class:`~inventory.errors.InventoryError` when the document cannot be read at all;
    problems with single values are collected in :attr:`problems`.
    """

    def __init__(self, text: str, file: str, shape: Shape | None = None, *,
                 max_values: int = MAX_YAML_NODES, values_hint: str = "") -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._merged: dict[int, int] = {}  # id(mapping node) -> how many of its pairs a merge key brought
        if text.startswith("\ufeff"):  # a byte order mark is not part of the document
            text = text[1:]
        loader: _Loader | None = None
        try:
            loader = _BoundedLoader(text)  # checks the characters first
            loader.max_values, loader.values_hint = max_values, values_hint
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            msg = " ".join(filter(None, [exc.context, exc.problem])) or "invalid YAML"
            raise InventoryError(
                [Problem(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None, None,
                         f"YAML syntax error: {msg}")]
            ) from None
        except yaml.reader.ReaderError as exc:
            position = exc.position
            if _BoundedLoader.counts_bytes:
                position = len(text.encode()[:position].decode("utf-8", "ignore"))
            line, col = offset_mark(text, position)
            message = f"character {chr(exc.character)!r} is not allowed in YAML (control characters are not text)"
            raise InventoryError([Problem(file, line, col, None, message)]) from None
        except _TooMuch as exc:
            raise InventoryError([Problem(file, exc.mark.line + 1, exc.mark.column + 1, None, exc.message)]) from None
        finally:
            if loader is not None:
                loader.dispose()
        self._loader = loader
        self.data = self._convert(root, (), shape) if root is not None else None

    def _at(self, node: yaml.Node, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, node.start_mark.column + 1,
                                     dotted(path) or None, message))

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._at(node, path, exc.problem or "cannot read this value")
        except (ValueError, OverflowError, TypeError):  # e.g. an integer of 5,000 digits
            self._at(node, path, "cannot read this value (a number too long?)")
        return BAD

    def _convert(self, node: yaml.Node, path: Path_, shape: Shape | None) -> Any:
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
                if key is BAD:
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
                if value is not BAD:
                    out[key] = value
            return out
        if isinstance(node, yaml.SequenceNode):
            item = shape.items if shape else None
            values = (self._convert(v, path + (i,), item) for i, v in enumerate(node.value))
            return [v for v in values if v is not BAD]
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
        self.problems.append(Problem(self.file, line, col, dotted(path) or None, message))


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def read_text(p: Path) -> str:
    """The text of a site file: a regular file, at most :data:`MAX_FILE_BYTES`, UTF-8 (errors located)."""

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
        line, col = offset_mark(good, len(good))
        raise refuse(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character "
                     f"(save the file as UTF-8)", line, col) from None
    return text
