"""What the live state means, in words: one definition each, for the CLI and the screens.

- :class:`Rank` orders status words trouble first (a sort by health, power, port or
  image; the failing sensors first); a word it does not know ranks as ``unknown``.
- :data:`SYMBOLS` gives every status word a symbol, so a status reads without colour
  (the screens add a colour each; the CLI prints ``● on``).
- :func:`port_finding`, :func:`image_state` and :func:`node_state` say what a node's
  state means: its cabling, its image, the one word a rack block is coloured by.
- :func:`worst_finding` is the one thing most wrong with a node, in a few words (the
  fleet table's WHY column); :func:`sensor_words` says a failing sensor's reading and
  the threshold it crossed, for that column and (in full) for node detail.
- :func:`node_words` are a node's words for the selection syntax (``off``,
  ``critical``, ``drift``, ``miscabled``...); :data:`STATE_WORDS` lists them all.
- :func:`iso`, :func:`rate_text` and :func:`uptime_text` format times and rates.

Nothing here draws or does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from console.drivers.bmc import Sensor
from inventory.model import Node
from inventory.selection import AttrValue

if TYPE_CHECKING:
    from console.live.fleet import Fleet, NodeState

__all__ = ["Rank", "rank", "SYMBOLS", "with_symbol", "FINDINGS", "port_finding", "image_state", "node_state",
           "NODE_STATES", "sorted_sensors", "FINDING_ORDER", "crossed_threshold", "sensor_words", "worst_finding",
           "node_words", "words_signature", "STATE_WORDS", "iso", "rate_text",
           "uptime_text"]


class Rank(IntEnum):
    """How urgently a status word asks for attention: sorted ascending, trouble comes first."""

    FAILING = 0  # critical, error, mismatch
    DEGRADED = 1  # warning, drift, ambiguous
    UNKNOWN = 2
    OFF = 3
    OK = 4  # ok, match
    ON = 5
    UNMANAGED = 6


_RANKS = {
    "critical": Rank.FAILING, "error": Rank.FAILING, "mismatch": Rank.FAILING,
    "warning": Rank.DEGRADED, "drift": Rank.DEGRADED, "ambiguous": Rank.DEGRADED,
    "unknown": Rank.UNKNOWN, "off": Rank.OFF, "ok": Rank.OK, "match": Rank.OK, "on": Rank.ON,
    "unmanaged": Rank.UNMANAGED,
}


def rank(word: str) -> Rank:
    """The :class:`Rank` of a status word; a word not known here is ``unknown``."""
    return _RANKS.get(word, Rank.UNKNOWN)


#: status word -> its symbol (meaning without colour), one meaning each: ``✗`` a critical
#: health, ``⊘`` a poll error (the BMC did not answer as asked), ``⇄`` miscabled
#: (``✓`` is "as it should be" for health, image and cabling alike)
SYMBOLS: dict[str, str] = {
    "on": "●", "off": "○", "unknown": "?",
    "ok": "✓", "warning": "!", "critical": "✗", "error": "⊘",
    "drift": "≠", "match": "✓", "mismatch": "⇄", "ambiguous": "~", "unmanaged": "-",
    "up": "▲", "down": "▼",
}


def with_symbol(word: str) -> str:
    """``● on``, ``✗ critical``; a word without a symbol stays as it is."""
    symbol = SYMBOLS.get(word)
    return f"{symbol} {word}" if symbol else word


#: port findings that count as a problem, in the order the summaries show them
FINDINGS = ("mismatch", "ambiguous", "unknown")


def port_finding(node: Node, st: NodeState) -> str | None:
    """A node's cabling: ``match``, ``mismatch`` (miscabled), ``ambiguous`` (seen on several
    ports), ``unknown`` (not learned yet); None when the inventory expects no port."""
    if node.switch_port is None:
        return None
    if st.discovered_port is None:
        return "ambiguous" if st.port_evidence else "unknown"
    expected = (node.switch_port.switch, node.switch_port.port)
    return "match" if st.discovered_port == expected else "mismatch"


def image_state(node: Node, st: NodeState) -> str:
    """``ok``, ``drift``, ``unknown`` (not read yet), or ``unmanaged`` (no desired image)."""
    if not node.image:
        return "unmanaged"
    if st.image_running is None:
        return "unknown"
    return "ok" if st.image_running == node.image else "drift"


#: the words :func:`node_state` gives
NODE_STATES = ("error", "warning", "off", "ok", "unknown")


def node_state(st: NodeState) -> str:
    """One word for a node at a glance: error (failing polls or critical), warning, off,
    ok (on and healthy) or unknown."""
    if st.error or st.health == "critical":
        return "error"
    if st.health == "warning":
        return "warning"
    if st.power == "off":
        return "off"
    if st.power == "on" and st.health == "ok":
        return "ok"
    return "unknown"


def sorted_sensors(sensors: Iterable[Sensor]) -> list[Sensor]:
    """Sensors with the failing ones first (critical, warning, unknown, ok), then by name."""
    return sorted(sensors, key=lambda s: (rank(s.health), s.name))


#: the words :func:`worst_finding` gives, the worst first
FINDING_ORDER = ("error", "critical", "mismatch", "drift", "warning", "ambiguous")


def _short_port(port: str) -> str:
    return port.replace("Ethernet", "Eth").replace("ethernet", "eth")


#: (threshold attribute, comparison, words) in the order a reading is checked against them:
#: the critical thresholds first, so a reading past both says the critical one
_THRESHOLDS = (("lower_critical", "<", "lower critical"), ("upper_critical", ">", "upper critical"),
               ("lower_warning", "<", "lower warning"), ("upper_warning", ">", "upper warning"))


def crossed_threshold(sensor: Sensor) -> tuple[str, float, str] | None:
    """``(">", 250.0, "upper critical")``: the most severe threshold the reading is at or
    past, as the BMC compares (at the threshold counts); None: within every threshold it has."""
    if sensor.value is None:
        return None
    for attr, op, words in _THRESHOLDS:
        limit = getattr(sensor, attr)
        if limit is not None and (sensor.value <= limit if op == "<" else sensor.value >= limit):
            return op, limit, words
    return None


def sensor_words(sensor: Sensor, *, full: bool = False) -> str:
    """A sensor's reading and the threshold it crossed: ``PSU1 275 W > 250`` (the fleet's
    WHY column, where the symbol says how bad), and with ``full`` the threshold's unit and
    which one it is: ``PSU1 275 W > 250 W (upper critical)`` (node detail); a reading at
    the threshold says ``≥`` (or ``≤``).  A sensor the
    BMC calls failing within its thresholds says so, in full: ``PSU1 308 W: critical, the
    BMC gives no threshold`` (a Redfish power supply's health is the BMC's own verdict)."""
    if sensor.value is None:
        return f"{sensor.name}: {sensor.health}, no reading" if full else f"{sensor.name} no reading"
    text = f"{sensor.name} {sensor.value:g} {sensor.unit}".rstrip()
    crossed = crossed_threshold(sensor)
    if crossed is not None:
        op, limit, words = crossed
        if sensor.value == limit:  # at the threshold: crossed, as the BMC compares, but not past it
            op = {"<": "≤", ">": "≥"}[op]
        if not full:
            return f"{text} {op} {limit:g}"
        unit = f" {sensor.unit}" if sensor.unit else ""
        return f"{text} {op} {limit:g}{unit} ({words})"
    if full and sensor.health in ("critical", "warning"):
        if all(getattr(sensor, attr) is None for attr, _, _ in _THRESHOLDS):
            return f"{text}: {sensor.health}, the BMC gives no threshold"
        return f"{text}: {sensor.health} by the BMC, within its thresholds"
    return text


def _failing_sensor(st: NodeState, health: str) -> str:
    for sensor in sorted_sensors(st.sensors or ()):
        if sensor.health == health:
            return sensor_words(sensor)
    return f"health {health}"  # the BMC's rollup, no sensor read says which


def worst_finding(node: Node, st: NodeState) -> tuple[str, str] | None:
    """The one thing most wrong with a node, as ``(word, words)``, the word one of
    :data:`FINDING_ORDER` (it gives the symbol and colour): a poll error, a sensor
    failing with its reading, the port it was seen on instead of its own, the image it
    runs instead of its own, a sensor warning, a port seen on several; None: nothing.
    The words may come from outside (errors, names): shown as text."""
    if st.error:
        return "error", st.error
    if st.health == "critical":
        return "critical", _failing_sensor(st, "critical")
    finding = port_finding(node, st)
    if finding == "mismatch" and node.switch_port is not None and st.discovered_port is not None:
        (seen_switch, seen_port), want = st.discovered_port, node.switch_port
        if seen_switch == want.switch:
            return "mismatch", f"port {_short_port(seen_port)}, want {_short_port(want.port)}"
        return "mismatch", f"port {seen_switch}/{_short_port(seen_port)}, want {want.switch}/{_short_port(want.port)}"
    if image_state(node, st) == "drift":
        running, wanted = st.image_running or "", node.image or ""
        if running.split("@", 1)[0] == wanted.split("@", 1)[0]:  # same image: the versions say it
            running, wanted = running.rsplit("@", 1)[-1], wanted.rsplit("@", 1)[-1]
        return "drift", f"{running}, want {wanted}"  # its symbol says: the image
    if st.health == "warning":
        return "warning", _failing_sensor(st, "warning")
    if finding == "ambiguous":
        return "ambiguous", "port: seen on several"
    return None


def node_words(fleet: Fleet, node: Node) -> dict[str, AttrValue]:
    """Inventory attributes plus live state words, for the selection syntax in filters."""
    st = fleet.nodes[node.name]
    attrs: dict[str, AttrValue] = dict(node.attributes())
    attrs["power"] = st.power
    attrs["health"] = st.health
    image = image_state(node, st)
    attrs["image_state"] = image
    finding = port_finding(node, st)
    if finding:
        attrs["port"] = finding
    attrs["state"] = tuple(w for w in (
        "error" if st.error else None,
        "drift" if image == "drift" else None,
        "miscabled" if finding == "mismatch" else None,
        "stale" if st.last_success is None else None,
    ) if w)
    return attrs


def words_signature(st: NodeState) -> tuple[Any, ...]:
    """What :func:`node_words` reads of a node's live state: while it is the same, so are
    the words (a poll that only moved the node's timestamps changes nothing to select by)."""
    return (st.power, st.health, st.image_running, st.discovered_port, bool(st.port_evidence),
            bool(st.errors), st.last_success is None)


#: every live state word :func:`node_words` can give: a filter for one of them is valid
#: (and live) even while no node has it
STATE_WORDS = frozenset({"on", "off", "unknown", "ok", "warning", "critical", "drift", "unmanaged",
                         "match", "mismatch", "ambiguous", "error", "miscabled", "stale"})


def iso(ts: float | None) -> str | None:
    """Unix time as ISO 8601 UTC (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def rate_text(bps: float | None) -> str:
    """A rate, compactly: ``1.2G``, ``34.0M``, ``5.6k``, ``12``; ``-`` when unknown."""
    if bps is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bps >= div:
            return f"{bps / div:.1f}{unit}"
    return f"{bps:.0f}"


def uptime_text(seconds: float | None) -> str:
    """``12d 03h``, ``5h 07m``, ``42m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes = s // 60
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"
