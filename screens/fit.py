"""Columns that fit the terminal whole: shorter forms first, then fewer columns.

A DataTable with more columns than the width cuts the last one shown mid-word
(``SPEED  I``, ``UPTIM``) and scrolls sideways.  :func:`fit` lays a table's columns
out for a width instead: every column shown is whole, the least telling take a
compact form or go first, and the last column (a description, a detail, a result)
takes the room the others leave, so the line under the table can say it in full.
A table whose telling column is not the last names it (``flex``): it takes the room
left up to its full width, and the columns after it stay next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CELL_PAD", "Col", "SCROLLBAR", "fit"]


@dataclass(frozen=True)
class Col:
    """A table column: its full form, and the compact one narrow terminals get."""

    key: str
    label: str
    #: cells (without the table's padding); None: a name column, as wide as the longest name
    width: int | None
    #: width and header of the compact form (None: no compact form)
    narrow: int | None = None
    narrow_label: str | None = None


#: what a DataTable draws around each cell, and the room kept for a vertical scrollbar
CELL_PAD, SCROLLBAR = 2, 2


def fit(columns: tuple[Col, ...], steps, width: int, names: int, want: int,
        flex: str | None = None) -> tuple[tuple[str, str, int], ...]:
    """The columns that fit ``width`` cells whole: ``(key, label, width)``.

    Full forms while the last column keeps ``want`` cells, then
    ``steps`` in order (compact forms, dropped columns); the last column takes the
    room left, in its compact header when its full one would be cut.  ``names``: the
    width of a name column (``width`` None).  ``flex``: the key of the column that
    takes the room left instead of the last, at most its full width (its compact
    width the least).
    """
    last = columns[-1] if flex is None else next(c for c in columns if c.key == flex)
    compact: set[str] = set()
    dropped: set[str] = set()

    def label(c: Col) -> str:
        return (c.narrow_label or c.label) if c.key in compact else c.label

    def size(c: Col) -> int:
        if c.width is None:  # a name column: the longest name, and its header whole
            return max(names, len(label(c)))
        return c.narrow if c.key in compact and c.narrow is not None else c.width

    def fixed() -> int:
        return sum(size(c) + CELL_PAD for c in columns if c is not last and c.key not in dropped)

    todo = list(steps)
    while fixed() + want + CELL_PAD > width and todo:
        how, keys = todo.pop(0)
        (compact if how == "compact" else dropped).update(keys)
    rest = max(last.narrow or last.width or 1, width - fixed() - CELL_PAD)
    if flex is not None and last.width is not None:
        rest = min(rest, last.width)
    out = []
    for c in columns:
        if c is last:
            out.append((last.key, last.label if rest >= len(last.label) else (last.narrow_label or last.label), rest))
        elif c.key not in dropped:
            out.append((c.key, label(c), size(c)))
    return tuple(out)
