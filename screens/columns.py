"""The fleet table's columns (defined in :mod:`console.live.columns`) and its styled WHY cell.

The WHY cell (:func:`why_cell`) says first what is being done to the node: an action
of this console on it and its phase, or another operator's lock; then the worst
finding of the row (:func:`~console.live.words.worst_finding`): a poll error, a
failing sensor with its reading, the port it was seen on, the image it runs.  It is
the last column to shrink, so every bad row says why at 80 columns too.
"""

from __future__ import annotations

from rich.text import Text

from console.live.columns import BY_KEY, COLUMNS, Column, layout
from console.live.fleet import NodeActivity
from console.text import visible
from screens.common import status_text

__all__ = ["ACTIVITY_STYLE", "BY_KEY", "COLUMNS", "Column", "activity_text", "layout", "why_cell"]


#: how work on a node reads in its row: (symbol, style) for an action of this console
#: running on it, and for a lock someone else holds on it
ACTIVITY_STYLE = {"job": ("▶", "bold cyan"), "lock": ("◆", "bold yellow")}


def activity_text(activity: NodeActivity) -> Text:
    """``▶ installing (reimage flatcar@4152.2.0)`` / ``◆ locked by bob: power cycle`` for a
    :class:`~console.live.fleet.NodeActivity` (names and actions come from files: shown as text)."""
    symbol, style = ACTIVITY_STYLE.get(activity.kind, ("▶", "bold"))
    return Text(f"{symbol} {visible(activity.words())}", style=style)


def why_cell(activity: NodeActivity | None, found: tuple[str, str] | None) -> Text:
    """The WHY column's cell: what is being done to the node first (it explains what the
    row shows: a reimage under way, another's lock), then its worst finding, if any:
    ``(word, words)`` from :func:`~console.live.words.worst_finding`, in the word's
    symbol and colour (the words come from outside: shown as text)."""
    finding = status_text(*found) if found is not None else Text("")
    if activity is None:
        return finding
    text = activity_text(activity)
    if found is not None:
        text.append("  ")
        text.append_text(finding)
    return text
