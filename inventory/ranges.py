"""Node ranges: expand ``dal1-r[01-04]-n[01-40]`` into names, and compress names back.

The syntax is the one confluent/xCAT noderanges and pdsh hostlists share:

* Text outside brackets is literal.  Each ``[...]`` holds a comma-separated list
  of numbers and ``lo-hi`` ranges: ``n[01-03,07,10-11]``.
* Zero padding follows the bounds: ``[01-10]`` gives ``01 .. 10``, ``[1-10]``
  gives ``1 .. 10``.  A bound with a leading zero fixes the width.
* A range is hexadecimal when a bound contains a letter a-f; the case of the
  letters is kept: ``[0a-0f]`` gives ``0a .. 0f``, ``[0A-0F]`` gives ``0A .. 0F``.
  So a MAC range ``52:54:00:01:00:[01-20]`` is decimal, ``..:[01-1f]`` is hex.
* Several bracket groups expand as a cartesian product, the first group
  varying slowest: ``r[1-2]-n[1-2]`` gives ``r1-n1, r1-n2, r2-n1, r2-n2``.
* Commas outside brackets separate patterns: ``n[01-05],m7``.

:func:`compress` is the inverse: ``expand(compress(names))`` equals the unique
names in :func:`natural_key` order.  :func:`expand_parallel` expands several
fields in step, for site files that describe a rack of nodes in one stanza.

Every problem raises :class:`RangeError`, a ``ValueError`` and a
:class:`~inventory.errors.FleetError` whose message names the pattern and the
column of the mistake.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from inventory.errors import FleetError

__all__ = [
    "MAX_ITEMS",
    "RangeError",
    "compress",
    "count",
    "count_parallel",
    "expand",
    "expand_parallel",
    "natural_key",
    "split_terms",
]

MAX_ITEMS = 100_000
"""The most names one pattern may expand to; a typo like ``[1-1000000]`` fails fast."""

_MAX_DIGITS = 30  # longer numbers are not node numbers, and int() of huge strings is slow
_DIGITS = re.compile(r"([0-9]+)")
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_NOT_IN_NAMES = "[],"  # characters compress() cannot write literally


class RangeError(FleetError, ValueError):
    """A range pattern is malformed, empty or too large.

    ``field`` names the field whose pattern is at fault when several are expanded
    together (:func:`expand_parallel`), so a site file error points at that field.
    """

    title = "bad range"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------- natural order


def natural_key(s: str) -> tuple[object, ...]:
    """Sort key that orders embedded numbers by value: ``n2 < n10``, ``r2-n9 < r10-n1``.

    Numbers of equal value sort shorter first (``n1 < n01``), so the key is
    distinct for distinct strings and the order is total.  Text compares
    case-sensitively.
    """
    parts = _DIGITS.split(s)
    # split() alternates text, digits, text, ...: every odd index is a number, so
    # tuples of two names never compare a str with a tuple.
    return tuple(
        part if i % 2 == 0 else (len(part.lstrip("0")), part.lstrip("0"), len(part))
        for i, part in enumerate(parts)
    )


# --------------------------------------------------------------------------- parsing


def split_terms(text: str) -> list[str]:
    """Split ``text`` at the commas outside brackets; pieces are returned unstripped.

    ``"n[01-03,07],m1"`` gives ``["n[01-03,07]", "m1"]``.  Raises
    :class:`RangeError` for an unbalanced or nested bracket.
    """
    pieces: list[str] = []
    start = 0
    open_at: int | None = None
    for i, ch in enumerate(text):
        if ch == "[":
            if open_at is not None:
                raise RangeError(
                    f"'[' inside brackets at column {i + 1} of {text!r} "
                    f"(the '[' at column {open_at + 1} is not closed)"
                )
            open_at = i
        elif ch == "]":
            if open_at is None:
                raise RangeError(f"']' without a matching '[' at column {i + 1} of {text!r}")
            open_at = None
        elif ch == "," and open_at is None:
            pieces.append(text[start:i])
            start = i + 1
    if open_at is not None:
        raise RangeError(f"'[' at column {open_at + 1} of {text!r} is never closed")
    pieces.append(text[start:])
    return pieces


@dataclass(frozen=True)
class _Span:
    """One item inside brackets: a literal number, or ``lo-hi`` with its format."""

    first: int
    last: int
    width: int
    base: int  # 10 or 16; 0 marks a literal kept exactly as written
    upper: bool
    literal: str = ""

    def __len__(self) -> int:
        return self.last - self.first + 1

    def values(self) -> Iterator[str]:
        if self.base == 0:
            yield self.literal
            return
        spec = "d" if self.base == 10 else ("X" if self.upper else "x")
        for value in range(self.first, self.last + 1):
            yield format(value, spec).zfill(self.width)


def _padded(bound: str) -> bool:
    return len(bound) > 1 and bound[0] == "0"


def _width(lo: str, hi: str) -> int:
    """Zero-pad width of ``lo-hi``: the longest bound written with a leading zero."""
    return max((len(b) for b in (lo, hi) if _padded(b)), default=0)


def _parse_span(item: str, where: str) -> _Span:
    item = item.strip()
    if not item:
        raise RangeError(f"empty item inside brackets {where}")
    bounds = [b.strip() for b in item.split("-")]
    if len(bounds) > 2:
        raise RangeError(f"malformed range {item!r} {where}: use lo-hi")
    if any(not b for b in bounds):
        raise RangeError(f"range {item!r} is missing a bound {where}")
    for b in bounds:
        if not _HEX.fullmatch(b):
            raise RangeError(f"{b!r} is not a number {where}")
        if len(b) > _MAX_DIGITS:
            raise RangeError(f"number {b[:12]}... is too long {where}")
    if len(bounds) == 1:
        return _Span(0, 0, 0, 0, False, literal=bounds[0])
    lo, hi = bounds
    if _DECIMAL.fullmatch(lo) and _DECIMAL.fullmatch(hi):
        base, upper = 10, False
    else:
        letters = "".join(ch for ch in lo + hi if ch.isalpha())
        if not (letters.isupper() or letters.islower()):
            raise RangeError(f"hex range {item!r} mixes upper and lower case {where}")
        base, upper = 16, letters.isupper()
    first, last = int(lo, base), int(hi, base)
    if first > last:
        raise RangeError(f"reversed range {item!r} {where} (did you mean {hi}-{lo}?)")
    return _Span(first, last, _width(lo, hi), base, upper)


@dataclass(frozen=True)
class _Term:
    """One comma-free pattern: literal text between bracket groups."""

    literals: tuple[str, ...]  # one more than groups
    groups: tuple[tuple[_Span, ...], ...]

    def size(self) -> int:
        total = 1
        for group in self.groups:
            total *= sum(span.last - span.first + 1 for span in group)  # len() stops at sys.maxsize
        return total

    def names(self) -> Iterator[str]:
        choices = [[v for span in group for v in span.values()] for group in self.groups]
        for combo in itertools.product(*choices):
            parts = [self.literals[0]]
            for value, literal in zip(combo, self.literals[1:], strict=True):
                parts += (value, literal)
            yield "".join(parts)


def _parse_term(term: str, pattern: str) -> _Term:
    literals: list[str] = []
    groups: list[tuple[_Span, ...]] = []
    pos = 0
    while (open_at := term.find("[", pos)) >= 0:
        close_at = term.index("]", open_at)  # split_terms() checked the balance
        literals.append(term[pos:open_at])
        where = f"in [{term[open_at + 1:close_at]}] of {pattern!r}"
        body = term[open_at + 1 : close_at]
        if not body.strip():
            raise RangeError(f"empty brackets in {pattern!r}")
        groups.append(tuple(_parse_span(item, where) for item in body.split(",")))
        pos = close_at + 1
    literals.append(term[pos:])
    return _Term(tuple(literals), tuple(groups))


def _parse(pattern: str) -> list[_Term]:
    if not isinstance(pattern, str):
        raise TypeError(f"range pattern must be a str, not {type(pattern).__name__}")
    if not pattern.strip():
        raise RangeError("empty range pattern")
    terms = []
    for piece in split_terms(pattern):
        piece = piece.strip()
        if not piece:
            raise RangeError(f"empty name between commas in {pattern!r}")
        terms.append(_parse_term(piece, pattern))
    total = sum(term.size() for term in terms)
    if total > MAX_ITEMS:
        raise RangeError(f"{pattern!r} expands to {total:,} names, more than the limit of {MAX_ITEMS:,}")
    return terms


# --------------------------------------------------------------------------- expansion


def expand(pattern: str) -> list[str]:
    """Expand a range pattern into names, in the order written, without duplicates.

    >>> expand("dal1-r01-n[01-03]")
    ['dal1-r01-n01', 'dal1-r01-n02', 'dal1-r01-n03']
    >>> expand("r[1-2]-n[1-2],10.2.1.[9-10]")
    ['r1-n1', 'r1-n2', 'r2-n1', 'r2-n2', '10.2.1.9', '10.2.1.10']

    A pattern without brackets is one name.  Whitespace around each
    comma-separated pattern is ignored.  Raises :class:`RangeError` for an
    empty pattern, unbalanced brackets, a non-numeric or reversed bound, or more
    than :data:`MAX_ITEMS` names.
    """
    seen: dict[str, None] = {}
    for term in _parse(pattern):
        seen.update(dict.fromkeys(term.names()))
    return list(seen)


def count(pattern: str) -> int:
    """How many names ``pattern`` writes, worked out without expanding it.

    Duplicates count (``n[1,1]`` is 2), so this is :func:`expand`'s length at most
    and a column's length in :func:`expand_parallel` exactly.  Raises
    :class:`RangeError` like :func:`expand`.
    """
    return sum(term.size() for term in _parse(pattern))


def count_parallel(patterns: Mapping[str, str]) -> int:
    """How many rows :func:`expand_parallel` would give, without expanding anything.

    Raises the :class:`RangeError` it would, with ``field`` naming the field at fault.
    """
    sizes: dict[str, int] = {}
    for field, pattern in patterns.items():
        try:
            sizes[field] = count(pattern)
        except RangeError as exc:
            raise RangeError(f"{field}: {exc.message}", field=field) from exc
    ref_field, size = next(((f, n) for f, n in sizes.items() if n > 1), (None, 1))
    for field, n in sizes.items():
        if n not in (1, size):
            raise RangeError(
                f"{ref_field} expands to {size} values but {field} expands to {n}; "
                "fields expanded together need the same count (or a single value, which is repeated)",
                field=field,
            )
    return size if sizes else 0


def _expand_column(pattern: str) -> list[str]:
    """Like :func:`expand` but keeps duplicates: a column may repeat a value."""
    return [name for term in _parse(pattern) for name in term.names()]


def expand_parallel(patterns: Mapping[str, str]) -> list[dict[str, str]]:
    """Expand several fields in step (zip), one dict per position.

    >>> expand_parallel({"name": "n[1-2]", "u": "[11-12]", "rack": "r07"})
    [{'name': 'n1', 'u': '11', 'rack': 'r07'}, {'name': 'n2', 'u': '12', 'rack': 'r07'}]

    A field that expands to one value is repeated for every position.  Unlike
    :func:`expand`, a field keeps duplicate values (``rack: r[1,1,2]``).  Raises
    :class:`RangeError` naming the field for a bad pattern, and naming both
    fields and their sizes when two fields expand to different counts; its
    ``field`` is the field at fault (the bad pattern, or the one whose count differs).
    Every pattern is checked and counted before any is expanded.
    """
    size = count_parallel(patterns)
    columns = {field: _expand_column(pattern) for field, pattern in patterns.items()}
    return [
        {field: column[i] if len(column) > 1 else column[0] for field, column in columns.items()}
        for i in range(size)
    ]


# --------------------------------------------------------------------------- compression


def _varying_field(a: list[str], b: list[str]) -> int | None:
    """Index of the one number in which split names ``a`` and ``b`` differ, if exactly one."""
    if len(a) != len(b):
        return None
    diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(diffs) != 1 or diffs[0] % 2 == 0:
        return None
    k = diffs[0]
    if len(a[k]) > _MAX_DIGITS or len(b[k]) > _MAX_DIGITS:
        return None
    return k


def _feasible_widths(number: str) -> tuple[int, int]:
    """The pad widths at which ``number`` renders as itself, as an inclusive interval."""
    return (len(number), len(number)) if _padded(number) else (0, len(number))


def _bracket_body(numbers: list[str]) -> str:
    """Write numbers (in natural order) as ``01-05,07``: runs that expand to exactly them."""
    runs: list[str] = []
    start = end = numbers[0]
    lo_w, hi_w = _feasible_widths(start)
    for number in numbers[1:]:
        n_lo, n_hi = _feasible_widths(number)
        n_lo, n_hi = max(lo_w, n_lo), min(hi_w, n_hi)
        # the run may grow only if every member still renders as written at the
        # width expand() will derive from the new bounds
        if int(number) == int(end) + 1 and n_lo <= _width(start, number) <= n_hi:
            end, lo_w, hi_w = number, n_lo, n_hi
            continue
        runs.append(start if start == end else f"{start}-{end}")
        start = end = number
        lo_w, hi_w = _feasible_widths(number)
    runs.append(start if start == end else f"{start}-{end}")
    return ",".join(runs)


def compress(names: Iterable[str]) -> str:
    """Write names compactly: ``["n01", "n02", "n03", "n07"]`` gives ``"n[01-03,07]"``.

    Names that differ in one number (the rest equal) share a bracket group;
    padding is kept.  ``expand(compress(names))`` equals the unique names sorted
    by :func:`natural_key`.  An empty input gives ``""``.  Raises
    :class:`RangeError` for a name that cannot be written in range syntax (empty,
    containing ``[``, ``]`` or ``,``, or with surrounding whitespace).
    """
    unique = sorted(set(names), key=natural_key)
    for name in unique:
        if not name or name != name.strip() or any(ch in name for ch in _NOT_IN_NAMES):
            raise RangeError(f"cannot write {name!r} as a node range")
    split = [_DIGITS.split(name) for name in unique]
    terms: list[str] = []
    i = 0
    while i < len(unique):
        k = _varying_field(split[i], split[i + 1]) if i + 1 < len(unique) else None
        if k is None:
            terms.append(unique[i])
            i += 1
            continue
        # Sorted order keeps names that differ only in field k next to each other
        # as long as the rest is equal; stop at the first that differs elsewhere.
        j = i + 1
        while j + 1 < len(unique) and _varying_field(split[i], split[j + 1]) == k:
            j += 1
        prefix = "".join(split[i][:k])
        suffix = "".join(split[i][k + 1 :])
        body = _bracket_body([split[x][k] for x in range(i, j + 1)])
        terms.append(f"{prefix}[{body}]{suffix}")
        i = j + 1
    return ",".join(terms)
