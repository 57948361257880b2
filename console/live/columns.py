"""The fleet table's columns, once: label, width, compact form, plain cell and sort key.

The fleet screen lays them out for the terminal width (:func:`layout`) and draws its
own styled cells; the ``status`` command prints :data:`STATUS_COLUMNS` with each
column's :attr:`Column.text`.  Both sort by :func:`sort_key`.

Full forms while they fit, then compact ones, then PORT and IMAGE go; NODE, RACK/U,
AGE and ERROR always stay, ERROR taking the room left over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.live.words import image_state, port_finding, rank, with_symbol
from inventory.ranges import natural_key

if TYPE_CHECKING:
    from console.live.fleet import Fleet

__all__ = ["Column", "COLUMNS", "BY_KEY", "STATUS_COLUMNS", "layout", "sort_key", "rack_u"]


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
    Column("error", "ERROR", 30, text=lambda fleet, name: fleet.nodes[name].error or ""),
)
BY_KEY = {c.key: c for c in COLUMNS}
#: the boot override: in the ``status`` command, not in the fleet table (the node screen shows it)
BOOT = Column("boot", "BOOT", 8, text=_boot)
#: the ``status`` command's table
STATUS_COLUMNS = tuple(BY_KEY[k] if k in BY_KEY else BOOT
                       for k in ("name", "rack", "power", "health", "boot", "port", "image", "error"))

#: the least important first: which columns take their compact form, then which go,
#: while the table does not fit.  NODE, RACK/U, AGE and ERROR always stay.
COMPACT_ORDER = ("image", "port", "power", "health")
DROP_ORDER = ("port", "image")
#: the error column never gets narrower than this (it takes all the room left over)
ERROR_MIN = 12
#: what the fleet table draws around each cell (cell_padding 1 on both sides)
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

    def shown_width(key: str) -> int:
        narrow = BY_KEY[key].narrow
        return narrow if key in compact and narrow is not None else widths[key]

    def fixed() -> int:
        return sum(shown_width(k) + CELL_PAD for k in widths if k != "error" and k not in dropped)

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
    if key == "age":  # youngest first; never polled last
        return lambda n: (nodes[n].polled_at is None, -(nodes[n].polled_at or 0), natural_key(n))
    if key == "error":  # failing nodes first
        return lambda n: (nodes[n].error is None, nodes[n].error or "", natural_key(n))
    raise ValueError(f"no column {key!r}")
