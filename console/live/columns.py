"""The fleet table's columns, once: label, width, compact form, plain cell and sort key.

The fleet screen lays them out for the terminal width (:func:`layout`) and draws its
own styled cells; the ``status`` command prints :data:`STATUS_COLUMNS` with each
column's :attr:`Column.text`.  Both sort by :func:`sort_key`.

WHY (:func:`why_text`) is the one thing most wrong with a row: what is being done to
it, else its worst finding.  It is the last to shrink: full forms while WHY keeps
``WHY_WANT`` cells, then compact ones, then PORT and IMAGE go; NODE, RACK/U, AGE and
WHY always stay, WHY taking the room left over.  (``status`` keeps its ERROR column:
its table already shows ports and images.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.live.words import FINDING_ORDER, SYMBOLS, image_state, port_finding, rank, with_symbol, worst_finding
from inventory.ranges import natural_key

if TYPE_CHECKING:
    from console.live.fleet import Fleet

__all__ = ["Column", "COLUMNS", "BY_KEY", "STATUS_COLUMNS", "layout", "sort_key", "rack_u", "why_text"]


def rack_u(fleet: Fleet, name: str) -> str:
    """``r01/7`` (``r01/-`` for a node without a U)."""
    node = fleet.site.node(name)
    return f"{node.rack}/{node.u or '-'}"


def _boot(fleet: Fleet, name: str) -> str:
    bo = fleet.nodes[name].boot_override
    if bo is None or bo.target.value == "none":
        return "-"
    return bo.target.value + ("" if bo.persistent else " once")


def _port(fleet: Fleet, name: str) -> str:
    node, st = fleet.site.node(name), fleet.nodes[name]
    sp = node.switch_port
    expected = f"{sp.switch}/{sp.port}" if sp else None
    finding = port_finding(node, st)
    if finding == "mismatch":
        return f"✗ {expected} seen on {'/'.join(st.discovered_port or ())}"
    text = expected or "-"
    if finding in ("unknown", "ambiguous"):
        text += f" ({finding})"
    return text


def _image(fleet: Fleet, name: str) -> str:
    node, st = fleet.site.node(name), fleet.nodes[name]
    if image_state(node, st) == "drift":
        return f"≠ {st.image_running} (want {node.image})"
    return st.image_running or "?"


def why_text(fleet: Fleet, name: str) -> str:
    """The WHY cell in plain words: what is being done to the node (an action of this
    console, another's lock), then its worst finding (:func:`~console.live.words.worst_finding`)
    with its symbol: ``✗ PSU1 275 W > 250``, ``✗ port Eth12, want Eth8`` (seen on Eth12)."""
    parts = []
    activity = fleet.activity.get(name)
    if activity is not None:
        parts.append(activity.words())
    found = worst_finding(fleet.site.node(name), fleet.nodes[name])
    if found is not None:
        parts.append(f"{SYMBOLS[found[0]]} {found[1]}")
    return "  ".join(parts)


@dataclass(frozen=True)
class Column:
    """One fleet table column."""

    key: str
    label: str
    #: full width in cells (without the table's padding)
    width: int
    #: width of the compact form (shorter words, image version only); None: none
    narrow: int | None = None
    #: header of the compact form
    narrow_label: str | None = None
    #: header where width is not counted (the ``status`` command), if not ``label``
    wide_label: str | None = None
    #: the cell in plain words, for a node (the ``status`` command's table)
    text: Callable[[Fleet, str], str] | None = None


COLUMNS = (
    Column("mark", " ", 1),
    Column("name", "NODE", 18, text=lambda fleet, name: name),  # sized to the site's longest name on mount
    Column("rack", "RACK/U", 7, text=rack_u),  # likewise
    Column("power", "POWER", 9, narrow=5, narrow_label="PWR",
           text=lambda fleet, name: with_symbol(fleet.nodes[name].power)),
    Column("health", "HEALTH", 10, narrow=6, narrow_label="HLTH",
           text=lambda fleet, name: with_symbol(fleet.nodes[name].health)),
    Column("port", "PORT", 13, narrow=9, wide_label="SWITCH PORT", text=_port),
    Column("image", "IMAGE", 22, narrow=10, text=_image),
    Column("age", "AGE", 5),
    Column("why", "WHY", 30, text=why_text),
)
BY_KEY = {c.key: c for c in COLUMNS}
#: the poll error alone: the ``status`` command's last column
ERROR = Column("error", "ERROR", 30, text=lambda fleet, name: fleet.nodes[name].error or "")
#: the boot override: in the ``status`` command, not in the fleet table (the node screen shows it)
BOOT = Column("boot", "BOOT", 8, text=_boot)
#: the ``status`` command's table
STATUS_COLUMNS = tuple({"boot": BOOT, "error": ERROR}.get(k) or BY_KEY[k]
                       for k in ("name", "rack", "power", "health", "boot", "port", "image", "error"))

#: the least important first: which columns take their compact form, then which go,
#: while the table does not fit with WHY at ``WHY_WANT``.  NODE, RACK/U, AGE and WHY always stay.
COMPACT_ORDER = ("image", "port", "power", "health")
DROP_ORDER = ("port", "image")
#: WHY keeps this many cells before any other column gives up its full form (at 80
#: columns: the PORT and IMAGE columns go, their findings are in WHY)
WHY_WANT = 26
#: the WHY column never gets narrower than this (it takes all the room left over)
WHY_MIN = 12
#: what the fleet table draws around each cell (cell_padding 1 on both sides)
CELL_PAD = 2


def layout(width: int, *, name_width: int = 18, rack_width: int = 7) -> tuple[tuple[str, str, int], ...]:
    """The columns that fit ``width`` cells: ``(key, label, width)``; compact keys get their narrow form.

    Full forms while WHY keeps ``WHY_WANT`` cells, then compact forms (least important
    first), then PORT and IMAGE go; WHY takes whatever is left (at least ``WHY_MIN``).
    """
    widths = {c.key: c.width for c in COLUMNS}
    widths["name"], widths["rack"] = name_width, rack_width
    compact: set[str] = set()
    dropped: set[str] = set()

    def shown_width(key: str) -> int:
        narrow = BY_KEY[key].narrow
        return narrow if key in compact and narrow is not None else widths[key]

    def fixed() -> int:
        return sum(shown_width(k) + CELL_PAD for k in widths if k != "why" and k not in dropped)

    steps = [("compact", k) for k in COMPACT_ORDER] + [("drop", k) for k in DROP_ORDER]
    while fixed() + WHY_WANT + CELL_PAD > width and steps:
        how, key = steps.pop(0)
        (compact if how == "compact" else dropped).add(key)
    why = max(WHY_MIN, width - fixed() - CELL_PAD)
    out = []
    for c in COLUMNS:
        if c.key in dropped:
            continue
        if c.key == "why":
            out.append((c.key, c.label, why))
        elif c.key in compact:
            out.append((c.key, c.narrow_label or c.label, shown_width(c.key)))
        else:
            out.append((c.key, c.label, widths[c.key]))
    return tuple(out)


def sort_key(fleet: Fleet, key: str) -> Callable[[str], Any]:
    """A function node name -> sort key for column ``key``, from the fleet's state (not the
    cells): trouble first (:func:`~console.live.words.rank`), then by name.  The ``mark``
    column sorts by what the screen marked, which only the screen knows."""
    site = fleet.site
    nodes = fleet.nodes
    if key == "name":
        return natural_key
    if key == "rack":
        return lambda n: (natural_key(site.node(n).rack), site.node(n).u or 0, natural_key(n))
    if key == "power":
        return lambda n: (rank(nodes[n].power), natural_key(n))
    if key == "health":
        return lambda n: (rank(nodes[n].health), natural_key(n))
    if key == "port":
        def port(n: str) -> tuple[Any, ...]:
            node = site.node(n)
            finding = port_finding(node, nodes[n])
            return (rank(finding) if finding else 9,
                    natural_key(node.switch_port.port) if node.switch_port else (), natural_key(n))
        return port
    if key == "image":
        return lambda n: (rank(image_state(site.node(n), nodes[n])), nodes[n].image_running or "", natural_key(n))
    if key == "age":  # oldest first: never polled, then the longest ago
        return lambda n: (nodes[n].polled_at is not None, nodes[n].polled_at or 0, natural_key(n))
    if key == "why":  # the worst finding first, nodes being acted on before the rest
        order = {word: i for i, word in enumerate(FINDING_ORDER)}
        activity = fleet.activity

        def why(n: str) -> tuple[Any, ...]:
            found = worst_finding(site.node(n), nodes[n])
            return (order[found[0]] if found else len(order), n not in activity,
                    found[1] if found else "", natural_key(n))
        return why
    raise ValueError(f"no column {key!r}")
