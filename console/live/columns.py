"""The fleet table's columns, once: label, width, compact form, cell and sort key.

A column's :meth:`Column.cell` gives a node's cell as a :class:`Cell`: plain words,
their symbol, and the state word that decides how the cell looks (``Cell("Eth8",
"mismatch", "⇄")``).  The fleet screen lays the columns out for the terminal width
(:func:`layout`) and only maps state words to styles; the ``status`` command prints
:data:`STATUS_COLUMNS` with each cell's :attr:`Cell.words` in their ``wide`` form.
Both sort by :func:`sort_key`.

WHY (:func:`why_text`) is the one thing most wrong with a row: what is being done to
it, else its worst finding.  It is the last to shrink: full forms while WHY keeps
``WHY_WANT`` cells, then compact ones, then PORT and IMAGE go, then (below 80 columns)
RACK/U; NODE, AGE and WHY always stay, WHY taking the room left over.  (``status`` keeps its ERROR column:
its table already shows ports and images.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from console.live.freshness import node_since
from console.live.words import FINDING_ORDER, SYMBOLS, image_state, port_finding, rank, worst_finding
from inventory.ranges import natural_key

if TYPE_CHECKING:
    from console.live.fleet import Fleet, NodeState

__all__ = ["ACTIVITY_SYMBOLS", "AGE_WARNING_S", "BY_KEY", "COLUMNS", "Cell", "Column", "Form", "STATUS_COLUMNS",
           "age_cell", "age_words", "layout", "rack_u", "sort_key", "why_text"]


def rack_u(fleet: Fleet, name: str) -> str:
    """``r01/7`` (``r01/-`` for a node without a U)."""
    node = fleet.site.node(name)
    return f"{node.rack}/{node.u or '-'}"


#: the form a cell takes: ``wide`` where width is not counted (the ``status`` command:
#: switch and port, the image wanted beside the one running), ``full`` the fleet table's
#: full width, ``compact`` its narrow form (short words, the image's version only)
Form = Literal["wide", "full", "compact"]

#: what is being done to a node (:class:`~console.live.fleet.NodeActivity` kind) -> its
#: symbol: an action of this console running on it, a lock someone else holds on it
ACTIVITY_SYMBOLS = {"job": "▶", "lock": "◆"}


class Cell(NamedTuple):
    """A fleet table cell's content, once for the screen and the ``status`` command:
    plain words (from outside, maybe: shown through :func:`~console.text.visible`), the
    symbol before them, and the state word that decides the cell's look (a status word
    of :data:`~console.live.words.SYMBOLS`, an activity kind of :data:`ACTIVITY_SYMBOLS`,
    or None: nothing to say).  ``lead``: what comes first, two spaces before (the WHY
    column: what is being done to the node, then its worst finding).  Equal cells are
    equal values (a tuple): the screen draws each distinct one once."""

    text: str
    state: str | None = None
    symbol: str = ""
    lead: Cell | None = None
    #: how long the node has been so (``14m``, ``≥3h``): the WHY finding's fact, an off power
    since: str = ""

    @property
    def own(self) -> str:
        """This cell's symbol and words, without ``lead``: ``⇄ Eth8``."""
        return f"{self.symbol} {self.text}" if self.symbol else self.text

    @property
    def words(self) -> str:
        """The cell in plain words: ``▶ installing (reimage …)  ✗ PSU1 275 W > 250 · 14m``."""
        own = self.own + self.since_words
        return own if self.lead is None else f"{self.lead.own}  {own}"

    @property
    def since_words(self) -> str:
        """The since as it follows the words: `` · 14m`` after a finding, `` 3h`` after a status."""
        if not self.since:
            return ""
        return f" · {self.since}" if self.state in _FINDING_FACT else f" {self.since}"


def _status(word: str, text: str | None = None) -> Cell:
    """A status word as a cell, ``● on``: its symbol, then ``text`` (the word itself by default)."""
    return Cell(word if text is None else text, word, SYMBOLS.get(word, ""))


#: short words of the compact POWER / HEALTH forms (the symbol carries the meaning)
_SHORT = {"unknown": "?", "warning": "warn", "critical": "crit"}


def _name(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    return Cell(name, "error" if fleet.nodes[name].error else None)


def _rack(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    return Cell(rack_u(fleet, name))


#: the node fact behind each WHY finding, whose "since" the cell tells
_FINDING_FACT = {"error": "reachability", "critical": "health", "warning": "health", "mismatch": "cabling",
                 "ambiguous": "cabling", "drift": "image"}


def _since(st: NodeState, fact: str, now: float) -> str:
    """How long ``fact`` has been so, from a minute on (a fresh finding says nothing more)."""
    since = node_since(st, fact, now)
    return "" if since == "<1m" else since


def _power(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    """``● on``; an off node says for how long where it fits: ``○ off 3h``."""
    st = fleet.nodes[name]
    word = st.power
    cell = _status(word, _SHORT.get(word) if form == "compact" else None)
    if word == "off" and form != "compact":
        since = _since(st, "power", now)
        if since and (form == "wide" or len(cell.own) + 1 + len(since) <= BY_KEY["power"].width):
            return cell._replace(since=since)
    return cell


def _health(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    word = fleet.nodes[name].health
    return _status(word, _SHORT.get(word) if form == "compact" else None)


def _boot(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    bo = fleet.nodes[name].boot_override
    if bo is None or bo.target.value == "none":
        return Cell("-")
    return Cell(bo.target.value + ("" if bo.persistent else " once"))


def _short_port(port: str) -> str:
    return port.replace("Ethernet", "Eth").replace("ethernet", "eth")


def _port(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    """The port the inventory expects, in the colour of what the switches say of it:
    ``⇄ Eth8`` (seen elsewhere).  Wide: ``sw1/Ethernet8``, ``⇄ sw1/Ethernet8 seen on
    sw1/Ethernet12``, ``sw1/Ethernet8 (unknown)``."""
    node, st = fleet.site.node(name), fleet.nodes[name]
    sp = node.switch_port
    finding = port_finding(node, st)
    if sp is None or finding is None:
        return Cell("-", "unmanaged")  # the inventory expects no port
    if form != "wide":
        return _status(finding, _short_port(sp.port) if form == "compact" else sp.port)
    expected = f"{sp.switch}/{sp.port}"
    if finding == "mismatch":
        return Cell(f"{expected} seen on {'/'.join(st.discovered_port or ())}", finding, SYMBOLS[finding])
    if finding in ("unknown", "ambiguous"):
        return Cell(f"{expected} ({finding})", finding)
    return Cell(expected, finding)


def _image(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    """The image the node runs: ``≠ 3975.2.2`` (not the one wanted; compact: the version
    only), ``? 4081.2.1`` (not read yet: the one wanted), ``- unmanaged`` (none wanted).
    Wide: ``≠ flatcar@3975.2.2 (want flatcar@4081.2.1)``, ``?`` while not read."""
    node, st = fleet.site.node(name), fleet.nodes[name]
    state = image_state(node, st)
    running = st.image_running
    if form == "wide":
        if state == "drift":
            return Cell(f"{running} (want {node.image})", state, SYMBOLS[state])
        return Cell(running or "?", None if state == "ok" else state)
    short = form == "compact"
    if short and running:
        running = running.rsplit("@", 1)[-1]  # the version says it in a narrow column
    if state == "drift":
        return _status(state, running or "?")
    if state == "ok":
        return Cell(running or "")
    if state == "unmanaged":
        return _status(state, running or ("" if short else "unmanaged"))
    wanted = node.image or ""
    return _status("unknown", wanted.rsplit("@", 1)[-1] if short else wanted)


def age_words(ts: float | None, now: float) -> str:
    """How long ago, coarsely, so an idle screen stays still: ``<1m`` (fresh: a fact polled
    every few seconds does not tick), then whole minutes ``3m``, hours ``2h``, days ``4d``
    (each moves once a minute, hour, day); ``never`` when None."""
    if ts is None:
        return "never"
    age = max(0.0, now - ts)
    if age < 60:
        return "<1m"
    if age < 3600:
        return f"{int(age // 60)}m"
    if age < 86400:
        return f"{int(age // 3600)}h"
    return f"{int(age // 86400)}d"


#: an age past this many seconds is a warning (the poller is behind on the node)
AGE_WARNING_S = 120


def age_cell(ts: float | None, now: float) -> Cell:
    """An age as a cell: ``unknown`` when never, ``warning`` past :data:`AGE_WARNING_S`."""
    if ts is None:
        return Cell(age_words(ts, now), "unknown")
    return Cell(age_words(ts, now), "warning" if now - ts > AGE_WARNING_S else None)


def _age(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    return age_cell(fleet.nodes[name].polled_at, now)


def _why(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    """What is being done to the node (an action of this console, another's lock), then
    its worst finding (:func:`~console.live.words.worst_finding`) with its symbol:
    ``▶ installing (reimage …)  ✗ PSU1 275 W > 250``, ``⇄ port Eth12, want Eth8``."""
    activity = fleet.activity.get(name)
    lead = None
    if activity is not None:
        lead = Cell(activity.words(), activity.kind, ACTIVITY_SYMBOLS.get(activity.kind, "▶"))
    st = fleet.nodes[name]
    found = worst_finding(fleet.site.node(name), st)
    if found is None:
        return lead or Cell("")
    fact = _FINDING_FACT.get(found[0])
    return Cell(found[1], found[0], SYMBOLS[found[0]], lead, _since(st, fact, now) if fact else "")


def _error(fleet: Fleet, name: str, form: Form, now: float) -> Cell:
    error = fleet.nodes[name].error
    return Cell(error or "", "error" if error else None)


def why_text(fleet: Fleet, name: str, now: float | None = None) -> str:
    """The WHY cell in plain words (:attr:`Cell.words`), its since as of ``now`` (default: now)."""
    return _why(fleet, name, "full", time.time() if now is None else now).words


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
    #: the cell's content for a node: ``(fleet, name, form, now) -> Cell`` (None: the
    #: screen's own, the marks)
    content: Callable[[Fleet, str, Form, float], Cell] | None = None

    def cell(self, fleet: Fleet, name: str, form: Form = "full", now: float | None = None) -> Cell:
        """Node ``name``'s cell in this column, in ``form``, ages as of ``now`` (default: now)."""
        if self.content is None:
            return Cell("")
        return self.content(fleet, name, form, time.time() if now is None else now)


COLUMNS = (
    Column("mark", " ", 1),
    Column("name", "NODE", 18, content=_name),  # sized to the site's longest name on mount
    Column("rack", "RACK/U", 7, content=_rack),  # likewise
    Column("power", "POWER", 9, narrow=5, narrow_label="PWR", content=_power),
    Column("health", "HEALTH", 10, narrow=6, narrow_label="HLTH", content=_health),
    Column("port", "PORT", 13, narrow=9, wide_label="SWITCH PORT", content=_port),
    Column("image", "IMAGE", 22, narrow=10, content=_image),
    Column("age", "AGE", 5, content=_age),
    Column("why", "WHY", 30, content=_why),
)
BY_KEY = {c.key: c for c in COLUMNS}
#: the poll error alone: the ``status`` command's last column
ERROR = Column("error", "ERROR", 30, content=_error)
#: the boot override: in the ``status`` command, not in the fleet table (the node screen shows it)
BOOT = Column("boot", "BOOT", 8, content=_boot)
#: the ``status`` command's table
STATUS_COLUMNS = tuple({"boot": BOOT, "error": ERROR}.get(k) or BY_KEY[k]
                       for k in ("name", "rack", "power", "health", "boot", "port", "image", "error"))

#: the least important first: which columns take their compact form, then which go,
#: while the table does not fit with WHY at ``WHY_WANT``.  NODE, AGE and WHY always stay.
COMPACT_ORDER = ("image", "port", "power", "health")
DROP_ORDER = ("port", "image", "rack")
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
