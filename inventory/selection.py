"""The one node-selection syntax, shared by every command and the TUI filter.

A selection is comma-separated terms (commas inside ``[...]`` belong to a range);
a term is a union member, optionally excluded, and may be an intersection::

    selection  := term ("," term)*
    term       := ["-"] conjunct ("&" conjunct)*
    conjunct   := one of the forms below, without "-"

    dal1-r01-n[01-10]     nodes by name or range; every name must exist
    dal1-r0*-n1?          a glob over node names (brackets still mean ranges)
    @gpu                  the members of a group; @rack[01-03] names three groups
    rack=r07              nodes whose attribute matches; the value may be a glob,
                          and a collection attribute (tags) matches if any element does
    rack!=r07             nodes whose attribute does not match (or who lack it)
    off, critical, r07    a "word": not a node name, so the nodes having that value
                          in any attribute
    all, *                every node
    role=gpu&rack=r01     intersection: the nodes every part matches
    -TERM                 exclude: applied after every inclusion, wherever it stands;
                          ``-role=gpu&rack=r01`` excludes the GPU nodes of r01

A selection of exclusions only means "every node except those".  The result is
in inventory order.  ``-`` prefixes a whole term, never one part of an
intersection (use ``key!=value`` there).  ``&`` inside ``[...]`` is not special.

A bare word is a node name first and an attribute value only when no node has
that name; as an attribute value it matches ignoring case (``Critical`` finds
``critical``).  Everything else -- node names, globs, groups, attribute names
and ``key=value`` patterns -- is case-sensitive.

``loose=True`` (the TUI filter, never a command that acts) forgives as k9s and
htop do: spaces between words mean ``&`` (``r02 critical``), and a bare word that
is neither a node, an attribute value nor a ``vocabulary`` word matches as a
substring of node names and of a few shown attributes, ignoring case (``n19``,
``db01``); a word found nowhere selects nothing rather than fail.

Every problem is a :class:`~inventory.errors.SelectionError` whose message an
operator can act on.  :func:`parse` checks syntax alone (the TUI can show
:func:`describe` of a filter as it is typed); :func:`select` resolves a
selection against an inventory.
"""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from inventory.errors import SelectionError
from inventory.ranges import RangeError, compress, expand, natural_key, split_terms

__all__ = ["AttrIndex", "Selection", "Term", "TermKind", "describe", "parse", "select"]

AttrValue = str | Collection[str]
Attrs = Callable[[str], Mapping[str, AttrValue]]

_NO_GROUPS: Mapping[str, Sequence[str]] = MappingProxyType({})
_GLOB_CHARS = frozenset("*?")
_LIST_LIMIT = 10  # known groups/attributes listed in an error message
#: loose selection: attributes a word also matches as a substring of (besides names);
#: values a screen shows, with few distinct values each
SUBSTRING_KEYS = ("rack", "role", "image", "switch")
#: between the parts of a node's search text (:class:`AttrIndex`): a word with it in is
#: looked for part by part
_APART = "\x00"


class TermKind(StrEnum):
    """What a term selects by."""

    ALL = "all"
    NODES = "nodes"  # a node range with brackets: every name must exist
    NAME = "name"  # a node name, else a word (an attribute value)
    GLOB = "glob"
    GROUP = "group"
    ATTR = "attr"
    AND = "and"  # an intersection: the nodes every one of `children` matches


@dataclass(frozen=True)
class Term:
    """One parsed term of a selection."""

    kind: TermKind
    text: str
    """The term as typed, without a leading ``-``."""
    exclude: bool = False
    """True for ``-TERM``."""
    patterns: tuple[str, ...] = ()
    """Ranges already expanded: node names (NODES, NAME), globs (GLOB), group names
    (GROUP) or attribute value patterns (ATTR)."""
    key: str | None = None
    """The attribute name of an ATTR term."""
    negate: bool = False
    """True for ``key!=value``."""
    children: tuple[Term, ...] = ()
    """The parts of an AND term (``a&b``), in the order typed; never excluded, never AND."""

    def describe(self) -> str:
        """A short phrase for the UI: ``nodes with rack=r07``."""
        if self.kind is TermKind.AND:
            return " and ".join(child.describe() for child in self.children)
        if self.kind is TermKind.ALL:
            return "all nodes"
        if self.kind is TermKind.NODES:
            count = len(self.patterns)
            return f"{count} node{'s' if count != 1 else ''} {self.text}"
        if self.kind is TermKind.NAME:
            return f"node or value {self.text!r}"
        if self.kind is TermKind.GLOB:
            return f"nodes matching {self.text}"
        if self.kind is TermKind.GROUP:
            return f"group {self.text}"
        value = self.text.split("=", 1)[1]
        if self.negate:
            return f"nodes whose {self.key} is not {value}"
        return f"nodes with {self.key}={value}"


@dataclass(frozen=True)
class Selection:
    """A parsed selection: its text and terms, in the order typed."""

    text: str
    terms: tuple[Term, ...]

    @property
    def includes(self) -> tuple[Term, ...]:
        """The terms that add nodes."""
        return tuple(t for t in self.terms if not t.exclude)

    @property
    def excludes(self) -> tuple[Term, ...]:
        """The ``-`` terms, which remove nodes after every inclusion."""
        return tuple(t for t in self.terms if t.exclude)

    def describe(self) -> str:
        """What the selection means, in words: ``group @gpu, except node(s) n02``."""
        included = _join(self.includes, " or ") or "all nodes"
        if not self.excludes:
            return included
        return f"{included}, except " + _join(self.excludes, " and ")


def _join(terms: Sequence[Term], sep: str) -> str:
    """Term descriptions joined by ``sep``; an intersection among several is parenthesised."""
    if len(terms) == 1:
        return terms[0].describe()
    return sep.join(f"({t.describe()})" if t.kind is TermKind.AND else t.describe() for t in terms)


# --------------------------------------------------------------------------- parsing


def _expand(pattern: str) -> tuple[str, ...]:
    try:
        return tuple(expand(pattern))
    except RangeError as exc:
        raise SelectionError(exc.message) from exc


def _split_and(text: str) -> list[str]:
    """Split ``text`` at the ``&`` outside brackets (brackets are already balanced)."""
    pieces: list[str] = []
    start, depth = 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "&" and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


_SPACED_OPS = re.compile(r"\s*(!=|=|&)\s*")


def _split_space(text: str) -> list[str]:
    """``text`` split at the whitespace outside brackets (no empty pieces)."""
    pieces: list[str] = []
    start, depth = 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch.isspace() and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _parse_term(raw: str, loose: bool = False) -> Term:
    text, exclude = raw, False
    if text.startswith("-"):
        text, exclude = text[1:].strip(), True
        if not text:
            raise SelectionError("'-' must be followed by the term to exclude, e.g. -@gpu")
        if text.startswith("-"):
            raise SelectionError(f"'{raw}': exclude with a single '-'")
    if loose:  # "rack = r01" is rack=r01, "r02 critical" is r02&critical
        text = _SPACED_OPS.sub(r"\1", text)
        text = "&".join(_split_space(text)) if text.strip() else text
    parts = [part.strip() for part in _split_and(text)]
    if len(parts) == 1:
        return _parse_simple(raw, text, exclude)
    for i, part in enumerate(parts):
        if not part:
            where = "come before" if i == 0 else "follow"
            raise SelectionError(f"'{raw}': a term must {where} '&', e.g. role=gpu&rack=r01")
        if part.startswith("-"):
            raise SelectionError(
                f"'{raw}': '-' excludes a whole term and goes before it (-a&b); "
                f"inside '&' use key!=value"
            )
    children = tuple(_parse_simple(raw, part, False) for part in parts)
    return Term(TermKind.AND, "&".join(parts), exclude, children=children)


def _parse_simple(raw: str, text: str, exclude: bool) -> Term:
    """One term without '-' or '&'; ``raw`` is the whole term, for messages."""
    if text in ("all", "*"):
        return Term(TermKind.ALL, text, exclude)
    if text.startswith("@"):
        name = text[1:].strip()
        if not name:
            raise SelectionError(f"'{raw}': a group name must follow '@'")
        return Term(TermKind.GROUP, text, exclude, _expand(name))
    if "=" in text:
        at = text.index("=")
        negate = at > 0 and text[at - 1] == "!"
        key = text[: at - 1 if negate else at].strip()
        value = text[at + 1 :].strip()
        op = "!=" if negate else "="
        if not key:
            raise SelectionError(f"'{raw}': an attribute name must come before '{op}'")
        if not value:
            raise SelectionError(f"'{raw}': a value must follow '{op}' (globs like r0* work)")
        return Term(TermKind.ATTR, text, exclude, _expand(value), key=key, negate=negate)
    if _GLOB_CHARS & set(text):
        return Term(TermKind.GLOB, text, exclude, _expand(text))
    if "[" in text:
        return Term(TermKind.NODES, text, exclude, _expand(text))
    return Term(TermKind.NAME, text, exclude, (text,))


def parse(expr: str, *, loose: bool = False) -> Selection:
    """Parse a selection without looking at any inventory (``loose``: spaces mean ``&``).

    Raises :class:`SelectionError` for syntax errors: unbalanced brackets, a bad
    range, ``-`` or ``@`` with nothing after it, ``key=`` without a value, ``&``
    with nothing on one side (``a&``, ``&b``), ``-`` inside an intersection
    (``a&-b``), or no terms at all.  Empty terms (``a,,b`` or a trailing comma)
    are ignored.
    """
    if not isinstance(expr, str):
        raise SelectionError(f"a selection must be text, not {type(expr).__name__}")
    try:
        pieces = split_terms(expr)
    except RangeError as exc:
        raise SelectionError(exc.message) from exc
    terms = tuple(_parse_term(piece.strip(), loose) for piece in pieces if piece.strip())
    if not terms:
        raise SelectionError("empty selection: give node names, a range, @group, key=value or all")
    return Selection(expr.strip(), terms)


def describe(expr: str) -> str:
    """What ``expr`` selects, in words; raises :class:`SelectionError` if it is malformed."""
    return parse(expr).describe()


# --------------------------------------------------------------------------- resolving


def _values(value: object) -> tuple[str, ...]:
    """An attribute value as strings: a str is one value, a collection is many."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(str(v) for v in value)
    return (str(value),)


def _known(label: str, names: Iterable[str], prefix: str = "") -> str:
    known = [prefix + n for n in sorted(names, key=natural_key)]
    if not known:
        return f"no {label}s are defined"
    shown = ", ".join(known[:_LIST_LIMIT])
    more = f" and {len(known) - _LIST_LIMIT} more" if len(known) > _LIST_LIMIT else ""
    return f"known {label}s: {shown}{more}"


def _compact(names: Iterable[str]) -> str:
    try:
        return compress(names)
    except RangeError:  # a name that range syntax cannot spell
        return ", ".join(sorted(set(names), key=natural_key))


class AttrIndex:
    """Many nodes' attributes, indexed by value, for selecting again and again as they change.

    :func:`select` scans every attribute of every node for a bare word, and every
    node for ``key=value``; the TUI filter selects on each key typed, over thousands
    of nodes whose live attributes (power, health...) keep changing.  An index is
    passed to :func:`select` as its ``attrs``: ``key=pattern`` is then matched
    against the distinct values of ``key`` only, and a word against the distinct
    values of all keys.  Same results as the plain ``attrs`` function (a property
    test checks that).

    For the loose search (a word as a substring of names and :data:`SUBSTRING_KEYS`
    values) each node has one search text, its name and those values casefolded:
    one scan of a string per node, however many nodes match.

    :meth:`invalidate` marks nodes whose attributes may have changed; they are read
    again (``attrs(name)``) at the next lookup, or ahead of it by :meth:`sync` with a
    limit, to spread the work.  A node read again moves only its changed values.
    """

    def __init__(self, names: Iterable[str], attrs: Attrs) -> None:
        self._fn = attrs
        self._attrs: dict[str, dict[str, tuple[str, ...]]] = {}  # name -> key -> values (a copy)
        self._values: dict[str, dict[str, set[str]]] = {}  # key -> value -> nodes
        self._key_count: dict[str, int] = {}  # key -> how many nodes have it (values or not)
        #: casefolded value -> node -> under how many keys it has it: a bare word is one lookup
        self._folded: dict[str, dict[str, int]] = {}
        #: name -> its search text (:meth:`search`)
        self._texts: dict[str, str] = {}
        #: the last tuple of names given to :meth:`frozen`, as a set
        self._frozen: tuple[tuple[str, ...], frozenset[str]] | None = None
        #: the nodes to (re)read: the same names in the set and, in order, in the queue.
        #: (Taking the first key of an ordered dict scans the slots of the keys taken
        #: before it, each time: quadratic over thousands of nodes.)
        self._dirty: set[str] = set()
        self._queue: deque[str] = deque()
        self.invalidate(names)

    def invalidate(self, names: Iterable[str]) -> None:
        """These nodes' attributes may have changed: read them again before the next lookup."""
        dirty, queue = self._dirty, self._queue
        for name in names:
            if name not in dirty:
                dirty.add(name)
                queue.append(name)

    @property
    def pending(self) -> int:
        """How many nodes wait to be (re)read."""
        return len(self._dirty)

    def sync(self, limit: int | None = None) -> None:
        """(Re)read the invalidated nodes: all of them, or the first ``limit``."""
        dirty, queue = self._dirty, self._queue
        while dirty and (limit is None or limit > 0):
            name = queue.popleft()
            dirty.discard(name)
            self._read(name)
            if limit is not None:
                limit -= 1

    def _read(self, name: str) -> None:
        new = {key: (value,) if isinstance(value, str) else _values(value)
               for key, value in (self._fn(name) or {}).items()}
        old = self._attrs.get(name)
        self._attrs[name] = new
        self._texts[name] = _APART.join([name.casefold(), *(
            v.casefold() for key in SUBSTRING_KEYS for v in new.get(key, ()))])
        counts, index, folded = self._key_count, self._values, self._folded
        if old is None:  # the first read: nothing to take out or compare
            for key in new:
                counts[key] = counts.get(key, 0) + 1
            self._add(name, new.items())
            return
        if old == new:
            return
        for key, values in old.items():
            if new.get(key) == values:
                continue
            by_value = index[key]
            for v in values:
                names = by_value.get(v)  # None: a value given twice, already taken out
                if names is not None:
                    names.discard(name)
                    if not names:
                        del by_value[v]
                f = v.casefold()
                holders = folded[f]
                holders[name] -= 1
                if not holders[name]:
                    del holders[name]
                    if not holders:
                        del folded[f]
            if key not in new:
                counts[key] -= 1
                if not counts[key]:
                    del counts[key], index[key]
        moved = [(key, values) for key, values in new.items() if old.get(key) != values]
        for key, _ in moved:
            if key not in old:
                counts[key] = counts.get(key, 0) + 1
        self._add(name, moved)

    def _add(self, name: str, items: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        """Index ``name`` under each of its ``(key, values)`` (its counts of the keys are the caller's)."""
        index, folded = self._values, self._folded
        for key, values in items:
            by_value = index.get(key)
            if by_value is None:
                by_value = index[key] = {}
            for v in values:
                holding = by_value.get(v)
                if holding is None:
                    by_value[v] = {name}
                else:
                    holding.add(name)
                f = v.casefold()
                holders = folded.get(f)
                if holders is None:
                    folded[f] = {name: 1}
                else:
                    holders[name] = holders.get(name, 0) + 1

    def __call__(self, name: str) -> Mapping[str, AttrValue]:
        """A node's attributes, as the ``attrs`` function gives them (collections as tuples)."""
        self.sync()
        return self._attrs.get(name) or {}

    def word(self, word: str) -> set[str]:
        """The nodes having ``word`` as a value of any attribute, ignoring case."""
        self.sync()
        return set(self._folded.get(word.casefold(), ()))

    def keys(self) -> set[str]:
        """Every attribute name some node has."""
        self.sync()
        return set(self._key_count)

    def containing(self, folded: str, keys: Iterable[str]) -> set[str]:
        """The nodes with a value of one of ``keys`` that contains ``folded`` (casefolded)."""
        self.sync()
        found: set[str] = set()
        for key in keys:
            for value, names in self._values.get(key, {}).items():
                if folded in value.casefold():
                    found |= names
        return found

    def frozen(self, names: Sequence[str]) -> frozenset[str]:
        """``frozenset(names)``, kept while ``names`` is the same tuple (a screen selects
        from the same names on every key typed)."""
        kept = self._frozen
        if kept is not None and kept[0] is names:
            return kept[1]
        out = frozenset(names)
        if isinstance(names, tuple):
            self._frozen = (names, out)
        return out

    def search(self, folded: str, names: Sequence[str], name_set: AbstractSet[str]) -> set[str]:
        """The nodes of ``names`` (``name_set``: the same as a set) whose name, or a value
        of one of :data:`SUBSTRING_KEYS`, contains ``folded`` (casefolded, without
        ``_APART``).  A node the index was not given is matched by its name alone, as
        its attributes are then none."""
        self.sync()
        texts = self._texts
        found = {name for name, text in texts.items() if folded in text}
        if texts.keys() == name_set:
            return found
        return {name for name in found if name in name_set} | {
            name for name in names if name not in texts and folded in name.casefold()}

    def matching(self, key: str, regex: re.Pattern[str]) -> set[str]:
        """The nodes with a value of ``key`` that ``regex`` matches."""
        self.sync()
        found: set[str] = set()
        for value, names in self._values.get(key, {}).items():
            if regex.match(value):
                found |= names
        return found


class _Resolver:
    """Resolves terms against one inventory; caches attributes for one select()."""

    def __init__(self, names: Sequence[str], attrs: Attrs, groups: Mapping[str, Sequence[str]],
                 vocabulary: Collection[str] = (), loose: bool = False):
        self.vocabulary = frozenset(w.casefold() for w in vocabulary)
        self.loose = loose
        self.names = names
        self.name_set = attrs.frozen(names) if isinstance(attrs, AttrIndex) else frozenset(names)
        self.groups = groups
        self._attrs_fn = attrs
        self._attrs: dict[str, Mapping[str, AttrValue]] = {}

    def attrs(self, name: str) -> Mapping[str, AttrValue]:
        if name not in self._attrs:
            self._attrs[name] = self._attrs_fn(name) or {}
        return self._attrs[name]

    def resolve(self, term: Term) -> AbstractSet[str]:
        """The nodes ``term`` matches (before exclusion); callers do not change it."""
        match term.kind:
            case TermKind.ALL:
                return set(self.names)
            case TermKind.NODES:
                return self._nodes(term)
            case TermKind.NAME:
                return self._name_or_word(term)
            case TermKind.GLOB:
                regex = re.compile("|".join(fnmatch.translate(p) for p in term.patterns))
                return {n for n in self.names if regex.match(n)}
            case TermKind.GROUP:
                return self._groups(term)
            case TermKind.ATTR:
                return self._attr(term)
            case TermKind.AND:
                # Every part is resolved, so a typo in any part is reported.
                found = self.resolve(term.children[0])
                for child in term.children[1:]:
                    found &= self.resolve(child)
                return found
        raise AssertionError(term.kind)  # pragma: no cover

    def _nodes(self, term: Term) -> set[str]:
        missing = [p for p in term.patterns if p not in self.name_set]
        if missing:
            raise SelectionError(f"unknown node(s): {_compact(missing)}")
        return set(term.patterns)

    def _name_or_word(self, term: Term) -> set[str]:
        if term.text in self.name_set:
            return {term.text}
        word = term.text
        folded = word.casefold()
        if isinstance(self._attrs_fn, AttrIndex):
            found = self._attrs_fn.word(word) & self.name_set
        else:
            found = {
                n
                for n in self.names
                if any(folded == value.casefold() for v in self.attrs(n).values() for value in _values(v))
            }
        if not found and folded not in self.vocabulary:
            if self.loose:
                return self._containing(folded)
            raise SelectionError(f"unknown node(s): {word} (and no node has {word!r} as an attribute value)")
        return found

    def _containing(self, folded: str) -> set[str]:
        """Loose: the nodes whose name, or a value of a :data:`SUBSTRING_KEYS` attribute,
        contains ``folded``.  Names are scanned as a glob scans them; the attributes
        through the index's distinct values (a few per site), or the index's search texts."""
        index = self._attrs_fn
        if isinstance(index, AttrIndex) and _APART not in folded:
            return index.search(folded, self.names, self.name_set)
        found = {n for n in self.names if folded in n.casefold()}
        if isinstance(index, AttrIndex):
            return found | (index.containing(folded, SUBSTRING_KEYS) & self.name_set)
        for n in self.names:
            attrs = self.attrs(n)
            if any(folded in value.casefold() for key in SUBSTRING_KEYS for value in _values(attrs.get(key))):
                found.add(n)
        return found

    def _groups(self, term: Term) -> set[str]:
        found: set[str] = set()
        for group in term.patterns:
            if group not in self.groups:
                raise SelectionError(f"unknown group @{group}; {_known('group', self.groups, '@')}")
            # Members outside `names` are skipped: callers may pass a subset of the
            # site, and the site loader validates group membership.
            found.update(m for m in self.groups[group] if m in self.name_set)
        return found

    def _attr(self, term: Term) -> AbstractSet[str]:
        key = term.key
        assert key is not None
        index = self._attrs_fn
        if isinstance(index, AttrIndex):
            if key not in index.keys():
                raise SelectionError(f"unknown attribute {key!r} in {term.text!r}; {_known('attribute', index.keys())}")
            regex = re.compile("|".join(fnmatch.translate(p) for p in term.patterns))
            hits = index.matching(key, regex) & self.name_set
            return self.name_set - hits if term.negate else hits
        if not any(key in self.attrs(n) for n in self.names):
            keys = {k for n in self.names for k in self.attrs(n)}
            raise SelectionError(f"unknown attribute {key!r} in {term.text!r}; {_known('attribute', keys)}")
        regex = re.compile("|".join(fnmatch.translate(p) for p in term.patterns))
        found = set()
        for n in self.names:
            hit = any(regex.match(v) for v in _values(self.attrs(n).get(key)))
            if hit != term.negate:
                found.add(n)
        return found


def select(
    expr: str | Selection,
    names: Sequence[str],
    *,
    attrs: Attrs,
    groups: Mapping[str, Sequence[str]] = _NO_GROUPS,
    allow_empty: bool = False,
    vocabulary: Collection[str] = (),
    loose: bool = False,
) -> list[str]:
    """The nodes of ``names`` that ``expr`` selects, in the order of ``names``.

    ``attrs(name)`` gives a node's attributes (``{"rack": "r07", "tags": {"gpu"}}``);
    it is called at most once per node.  ``groups`` maps a group name (without
    ``@``) to its members; members not in ``names`` are ignored.  ``expr`` may be
    text or a :class:`Selection` from :func:`parse`.

    ``vocabulary`` are words that select nothing rather than fail when no node has
    them now (live states such as ``off``: a live filter for them is not a typo).
    ``loose`` forgives as a search box does (see the module docstring): for a
    filter on screen, never for what a command acts on.

    Raises :class:`SelectionError` for a malformed selection, an unknown node,
    group or attribute, a word no node has (outside ``vocabulary``), and, unless
    ``allow_empty``, for a selection that matches nothing.
    """
    selection = expr if isinstance(expr, Selection) else parse(expr, loose=loose)
    resolver = _Resolver(names, attrs, groups, vocabulary, loose)
    included: set[str] = set()
    excluded: set[str] = set()
    for term in selection.terms:
        (excluded if term.exclude else included).update(resolver.resolve(term))
    if not selection.includes:
        included = set(resolver.name_set)
    chosen = included - excluded if excluded else included
    result = [n for n in names if n in chosen]
    if not result and not allow_empty:
        raise SelectionError(f"selection {selection.text!r} matches no nodes")
    return result
