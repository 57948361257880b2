"""The fleet table's columns (defined in :mod:`console.live.columns`), drawn: a cell's look.

A column gives each node's cell as a :class:`~console.live.columns.Cell`: its words,
their symbol and a state word.  Here the state word becomes a style (:func:`look`),
the same for the fleet table and the other screens (:data:`screens.common.STYLES`),
except where a column shows a word more quietly (:data:`COLUMN_LOOKS`).

The WHY cell says first what is being done to the node: an action of this console on
it and its phase, or another operator's lock; then the worst finding of the row
(:func:`~console.live.words.worst_finding`): a poll error, a failing sensor with its
reading, the port it was seen on, the image it runs.  It is the last column to
shrink, so every bad row says why at 80 columns too.
"""

from __future__ import annotations

from rich.text import Text

from console.live.columns import ACTIVITY_SYMBOLS, BY_KEY, COLUMNS, Cell, Column, layout
from console.live.fleet import NodeActivity
from console.text import visible
from screens.common import SYMBOLS

__all__ = ["ACTIVITY_STYLE", "BY_KEY", "COLUMNS", "COLUMN_LOOKS", "Column", "activity_text", "cell_text", "layout",
           "look"]


#: how work on a node reads in its row: the style of an action of this console running
#: on it, and of a lock someone else holds on it (the symbols: the engine's ACTIVITY_SYMBOLS)
ACTIVITY_STYLE = {"job": "bold cyan", "lock": "bold yellow"}

#: (column, state word) -> the style where a column shows a word otherwise than the word's
#: own: the name of a node in error is bold (its WHY says the error in red), an image not
#: read yet shows the one wanted faded, an age never taken is faded; a marked row's mark
COLUMN_LOOKS = {("name", "error"): "bold", ("image", "unknown"): "dim", ("age", "unknown"): "dim",
                ("mark", "marked"): "bold"}


def look(column: str, state: str | None) -> str:
    """The style of state word ``state`` in column ``column`` ("" for none)."""
    if state is None:
        return ""
    kept = COLUMN_LOOKS.get((column, state))
    if kept is not None:
        return kept
    if state in SYMBOLS:
        return SYMBOLS[state][1]
    return ACTIVITY_STYLE.get(state, "bold")


def cell_text(column: str, cell: Cell) -> Text:
    """``cell`` drawn in column ``column``: its words (from outside: shown as text, controls
    visible) in its state's style, after its lead (WHY: what is being done, then the finding)."""
    own = Text(visible(cell.own), style=look(column, cell.state))
    if cell.since:
        own.append(cell.since_words, "dim")
    if cell.lead is None:
        return own
    text = cell_text(column, cell.lead)
    text.append("  ")
    text.append_text(own)
    return text


def activity_text(activity: NodeActivity) -> Text:
    """``▶ installing (reimage flatcar@4152.2.0)`` / ``◆ locked by bob: power cycle`` for a
    :class:`~console.live.fleet.NodeActivity` (names and actions come from files: shown as text)."""
    symbol = ACTIVITY_SYMBOLS.get(activity.kind, "▶")
    return cell_text("why", Cell(activity.words(), activity.kind, symbol))
