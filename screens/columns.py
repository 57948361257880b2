"""The fleet table's columns (defined in :mod:`console.live.columns`) and its styled ERROR cell.

The ERROR cell also says what is being done to the node (:func:`error_cell`): an
action of this console on it and its phase, or another operator's lock, so it shows
at 80 columns too.
"""

from __future__ import annotations

from rich.text import Text

from console.live.columns import BY_KEY, COLUMNS, Column, layout
from console.live.fleet import NodeActivity
from console.text import visible

__all__ = ["ACTIVITY_STYLE", "BY_KEY", "COLUMNS", "Column", "activity_text", "error_cell", "layout"]


#: how work on a node reads in its row: (symbol, style) for an action of this console
#: running on it, and for a lock someone else holds on it
ACTIVITY_STYLE = {"job": ("▶", "bold cyan"), "lock": ("◆", "bold yellow")}


def activity_text(activity: NodeActivity) -> Text:
    """``▶ installing (reimage flatcar@4152.2.0)`` / ``◆ locked by bob: power cycle`` for a
    :class:`~console.live.fleet.NodeActivity` (names and actions come from files: shown as text)."""
    symbol, style = ACTIVITY_STYLE.get(activity.kind, ("▶", "bold"))
    return Text(f"{symbol} {visible(activity.words())}", style=style)


def error_cell(activity: NodeActivity | None, error: str | None) -> Text:
    """The ERROR column's cell: what is being done to the node first (it explains what the
    row shows: a reimage under way, another's lock), then the node's error, if any."""
    if activity is None:
        return Text(visible(error or ""), style="red")
    text = activity_text(activity)
    if error:
        text.append("  ")
        text.append(visible(error), style="red")
    return text
