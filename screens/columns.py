"""The fleet table's columns, and which of them fit a terminal width (:func:`layout`).

Full forms while they fit, then compact ones, then PORT and IMAGE go; NODE, RACK/U,
AGE and ERROR always stay, ERROR taking the room left over.  The ERROR cell also says
what is being done to the node (:func:`error_cell`): an action of this console on it
and its phase, or another operator's lock, so it shows at 80 columns too.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from console.text import visible

__all__ = ["ACTIVITY_STYLE", "BY_KEY", "COLUMNS", "Column", "activity_text", "error_cell", "layout"]


@dataclass(frozen=True)
class Column:
    """One fleet table column: its full width and, if it has one, a compact form."""

    key: str
    label: str
    width: int
    #: width of the compact form (shorter words, image version only); None: none
    narrow: int | None = None
    #: header of the compact form
    narrow_label: str | None = None


COLUMNS = (
    Column("mark", " ", 1),
    Column("name", "NODE", 18),  # sized to the site's longest name on mount
    Column("rack", "RACK/U", 7),  # likewise
    Column("power", "POWER", 9, narrow=5, narrow_label="PWR"),
    Column("health", "HEALTH", 10, narrow=6, narrow_label="HLTH"),
    Column("port", "PORT", 13, narrow=9),
    Column("image", "IMAGE", 22, narrow=10),
    Column("age", "AGE", 5),
    Column("error", "ERROR", 30),
)
BY_KEY = {c.key: c for c in COLUMNS}
#: the least important first: which columns take their compact form, then which go,
#: while the table does not fit.  NODE, RACK/U, AGE and ERROR always stay.
COMPACT_ORDER = ("image", "port", "power", "health")
DROP_ORDER = ("port", "image")
#: the error column never gets narrower than this (it takes all the room left over)
ERROR_MIN = 12
#: what FleetTable draws around each cell (cell_padding 1 on both sides)
CELL_PAD = 2


def layout(width: int, *, name_width: int = 18, rack_width: int = 7) -> tuple[tuple[str, str, int], ...]:
    """The columns that fit ``width`` cells: ``(key, label, width)``; compact keys get their narrow form.

    Full forms while they fit, then compact forms (least important first), then
    PORT and IMAGE go; ERROR takes whatever is left (at least ``ERROR_MIN``).
    """
    widths = {c.key: c.width for c in COLUMNS}
    widths["name"], widths["rack"] = name_width, rack_width
    compact: set[str] = set()
    dropped: set[str] = set()

    def fixed() -> int:
        return sum((BY_KEY[k].narrow if k in compact else widths[k]) + CELL_PAD
                   for k in widths if k != "error" and k not in dropped)

    steps = [("compact", k) for k in COMPACT_ORDER] + [("drop", k) for k in DROP_ORDER]
    while fixed() + ERROR_MIN + CELL_PAD > width and steps:
        how, key = steps.pop(0)
        (compact if how == "compact" else dropped).add(key)
    error = max(ERROR_MIN, width - fixed() - CELL_PAD)
    out = []
    for c in COLUMNS:
        if c.key in dropped:
            continue
        if c.key == "error":
            out.append((c.key, c.label, error))
        elif c.key in compact:
            out.append((c.key, c.narrow_label or c.label, c.narrow))
        else:
            out.append((c.key, c.label, widths[c.key]))
    return tuple(out)


#: how work on a node reads in its row: (symbol, style) for an action of this console
#: running on it, and for a lock someone else holds on it
ACTIVITY_STYLE = {"job": ("▶", "bold cyan"), "lock": ("◆", "bold yellow")}


def activity_text(activity) -> Text:
    """``▶ installing (reimage flatcar@4152.2.0)`` / ``◆ locked by bob: power cycle`` for a
    :class:`~console.live.fleet.NodeActivity` (names and actions come from files: shown as text)."""
    symbol, style = ACTIVITY_STYLE.get(activity.kind, ("▶", "bold"))
    return Text(f"{symbol} {visible(activity.words())}", style=style)


def error_cell(activity, error: str | None) -> Text:
    """The ERROR column's cell: what is being done to the node first (it explains what the
    row shows: a reimage under way, another's lock), then the node's error, if any."""
    if activity is None:
        return Text(visible(error or ""), style="red")
    text = activity_text(activity)
    if error:
        text.append("  ")
        text.append(visible(error), style="red")
    return text
