"""Fleet: the live state of every node and switch, and what changed since last asked.

The poller writes observations here (:meth:`Fleet.node_ok`, :meth:`Fleet.node_failed`,
:meth:`Fleet.switch_ok`...); readers (the CLI, the TUI) take records or drain the
set of changed names in one batch (:meth:`Fleet.drain_changes`), so a UI updates
only changed rows, at most a few times a second.  A node's error is state with
freshness (last success, last error, consecutive failures), never an exception.

Each node also keeps what it has been through: every change the Fleet sees of its
power, health, reachability (polls answering or failing), cabling finding and image
(:data:`FACTS`), as a :class:`Transition` with its time, the last
:data:`TRANSITIONS_KEPT` per node, and for each fact since when it has had its value
(:class:`Since`, ``NodeState.since``).  A fact that turns ``unknown`` for a while (a
poll failed) and comes back to the same value keeps its "since": ``✗ critical 14m``
does not restart at every missed poll, and the failure is a reachability transition
of its own.  States that arrive whole from another Fleet (the poller's process,
:meth:`Fleet.absorb`) are compared with the ones they replace, so this Fleet's
history survives a restarted poller; that history is not pickled (it stays in the
process that saw it).

Nothing here does I/O; it is the seam where a shared per-site poller service can
later replace the in-process poller without screens noticing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from console.drivers.bmc import BootOverride, Event, Identity, Sensor
from console.live import words
from console.live.words import iso
from inventory.model import Node, Site

__all__ = ["Fleet", "NodeActivity", "NodeState", "SwitchState", "PortState", "Since", "Transition", "FACTS",
           "TRANSITIONS_KEPT", "iso"]

#: the facts of a node whose changes are kept (:class:`Transition`) and whose "since" is known
FACTS = ("power", "health", "reachability", "cabling", "image")
#: transitions kept per node; the oldest go first
TRANSITIONS_KEPT = 64
#: facts whose detail is part of their value: an image that goes from one drifted version
#: to another is a change, a poll error whose words change is not
_DETAIL_COUNTS = frozenset({"image"})


@dataclass(frozen=True)
class Transition:
    """One change of a node's fact, as this Fleet saw it.

    ``old`` is None the first time the fact was known (``first``: it was already so
    when the console first looked).  ``detail`` says more about the new value: the
    poll error, the port the switches see the node on, the image it runs; it may come
    from outside (a BMC's error text): show it as text.
    """

    at: float
    fact: str  # one of FACTS
    old: str | None
    new: str
    detail: str = ""
    old_detail: str = ""

    @property
    def first(self) -> bool:
        """The fact's first known value, not a change seen happening."""
        return self.old is None

    def words(self) -> str:
        """``health ok → critical``, ``reachability ok → error: no answer ...``,
        ``image drift → ok (flatcar@4081.2.1)``, ``power on (first seen)``."""
        detail = self.detail
        if self.fact == "reachability":
            what = "polls failing" if self.new == "error" else "polls answering"
            if self.first:
                return f"{what} (first poll)" + (f": {detail}" if detail else "")
            return what + (f": {detail}" if detail else "")
        tail = f" ({detail})" if detail else ""
        if self.fact == "cabling" and detail:
            tail = f" (seen on {detail})"
        if self.first:
            return f"{self.fact} {self.new}{tail} (first seen)"
        if self.fact == "image" and self.old == self.new:  # another version, the same state
            return f"image {self.new}: {self.old_detail or '?'} → {detail or '?'}"
        return f"{self.fact} {self.old} → {self.new}{tail}"


@dataclass(frozen=True)
class Since:
    """Since when a fact has had its value: ``at``; ``seen`` False when it already had
    it the first time this Fleet looked (it has been so at least since ``at``)."""

    at: float
    seen: bool = True


@dataclass
class NodeState:
    """Everything known about one node, with freshness."""

    name: str
    power: str = "unknown"
    health: str = "unknown"
    boot_override: BootOverride | None = None
    sensors: list[Sensor] | None = None
    events: list[Event] | None = None
    identity: Identity | None = None
    image_running: str | None = None
    image_error: str | None = None
    discovered_port: tuple[str, str] | None = None  # (switch, port) from FDB/LLDP
    port_evidence: list[dict[str, Any]] = field(default_factory=list)
    link_up: bool | None = None
    errors: dict[str, str] = field(default_factory=dict)  # job -> short reason
    last_success: float | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    #: when the oldest fact a row shows was read: the power/health poll or the image read,
    #: whichever is older (a row's AGE; an image read 4 minutes ago is not 2 s fresh)
    polled_at: float | None = None
    power_at: float | None = None  # the last power/health poll (ok or failed)
    image_at: float | None = None  # the last image read over SSH (ok or failed)
    #: the changes this Fleet saw (:class:`Transition`), oldest first, the last TRANSITIONS_KEPT
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=TRANSITIONS_KEPT))
    #: fact -> since when it has had its current value (a fact not known yet: since it is not)
    since: dict[str, Since] = field(default_factory=dict)
    #: fact -> its current (value, detail) as last observed: what the next observation is compared with
    observed: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: fact -> its last known (value, detail, since): a fact back from ``unknown`` to it keeps its since
    known: dict[str, tuple[str, str, Since]] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to cross from the poller's process) without its history: each Fleet keeps
        what it saw itself (:meth:`Fleet.absorb`)."""
        state = dict(self.__dict__)
        for key in _HISTORY:
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.transitions = deque(maxlen=TRANSITIONS_KEPT)
        self.since, self.observed, self.known = {}, {}, {}

    def keep_history_of(self, other: NodeState) -> None:
        """Take ``other``'s history (this state replaces it)."""
        self.transitions, self.since, self.observed, self.known = (other.transitions, other.since, other.observed,
                                                                   other.known)

    def stamp(self, job: str, now: float) -> None:
        """A ``job`` poll happened at ``now``: move its fact's time and the row's age."""
        if job == "power":
            self.power_at = now
        elif job == "image":
            self.image_at = now
        facts = [t for t in (self.power_at, self.image_at) if t is not None]
        self.polled_at = min(facts) if facts else now

    @property
    def error(self) -> str | None:
        """The reason the node is in error (its fast power/health poll first), or None."""
        if not self.errors:
            return None
        return self.errors.get("power") or next(iter(self.errors.values()))


#: NodeState's fields that hold its history, not a poll's observation
_HISTORY = ("transitions", "since", "observed", "known")
#: the transitions of every node of a Fleet that keeps no history: one deque for all, that
#: keeps nothing (an empty ``deque(maxlen=64)`` is 760 bytes, 7.6 MB at 10,000 nodes)
_NO_TRANSITIONS: deque[Transition] = deque(maxlen=0)


def facts_of(node: Node, st: NodeState) -> dict[str, tuple[str, str]]:
    """A node's :data:`FACTS` as its state says now: fact -> (value, detail).  Before the
    first poll reachability is left out; without an expected switch port, cabling."""
    facts = {"power": (st.power, ""), "health": (st.health, "")}
    if st.last_success is not None or st.last_error_at is not None:
        error = st.error
        facts["reachability"] = ("error", error) if error else ("ok", "")
    finding = words.port_finding(node, st)
    if finding is not None:
        facts["cabling"] = (finding, "/".join(st.discovered_port) if st.discovered_port else "")
    facts["image"] = (words.image_state(node, st), st.image_running or "")
    return facts


def observe(node: Node, st: NodeState, at: float) -> list[Transition]:
    """Compare ``st``'s facts with what it was last observed to be; record the changes
    (transitions, since) as of ``at``.  Returns the new transitions."""
    out: list[Transition] = []
    for fact, (value, detail) in facts_of(node, st).items():
        key = (value, detail if fact in _DETAIL_COUNTS else "")
        before = st.observed.get(fact)
        if before == key:
            continue
        st.observed[fact] = key
        if value == "unknown":  # not known now: no change of the fact (reachability says why)
            st.since[fact] = Since(at, seen=before is not None)
            continue
        last = st.known.get(fact)
        if last is not None and (last[0], last[1]) == key:
            st.since[fact] = last[2]  # back to what it was: its since stands
            continue
        since = Since(at, seen=last is not None)
        st.known[fact] = (key[0], key[1], since)
        st.since[fact] = since
        change = Transition(at, fact, last[0] if last else None, value, detail, last[1] if last else "")
        st.transitions.append(change)
        out.append(change)
    return out


@dataclass(frozen=True)
class NodeActivity:
    """Work on a node that is not a poll (kept apart from :class:`NodeState`, which the
    poller's process replaces whole): an action of this console running on it (``kind``
    ``job``: its ``phase``, e.g. ``installing``, or ``queued``), or a lock another console
    or command holds on it (``lock``)."""

    kind: str  # job | lock
    action: str = ""  # "reimage flatcar@4152.2.0"
    phase: str = ""  # job: the node's phase in the run
    owner: str = ""  # who: the job's operator, or the lock's holder (as locks describe it)
    plan: str = ""
    until: float | None = None  # lock: when it expires unless renewed

    def words(self) -> str:
        """``installing (reimage flatcar@4152.2.0)`` or ``locked by bob: power cycle``."""
        if self.kind == "job":
            return f"{self.phase} ({self.action})" if self.action else self.phase
        return f"locked by {self.owner}" + (f": {self.action}" if self.action else "")


@dataclass
class PortState:
    """One switch port as last polled, with rates from the previous poll."""

    ifindex: int
    name: str
    alias: str = ""
    admin_up: bool = False
    oper_up: bool = False
    speed_mbps: int = 0
    in_bps: float | None = None
    out_bps: float | None = None
    in_errors_per_s: float | None = None
    out_errors_per_s: float | None = None
    in_errors: int = 0
    out_errors: int = 0
    macs: list[str] = field(default_factory=list)
    lldp: dict[str, str] | None = None


@dataclass
class SwitchState:
    """One switch: system info, ports, and freshness."""

    name: str
    descr: str | None = None
    uptime_s: float | None = None
    ports: dict[int, PortState] = field(default_factory=dict)
    error: str | None = None
    last_success: float | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    polled_at: float | None = None


class Fleet:
    """Live state for one site.  Thread-safe for the poller writing and a UI reading.

    ``history=False``: no node's history is kept (transitions, since): the poller's own
    process (:mod:`console.live.pollproc`), whose states cross to the console without
    it, where the console's Fleet keeps its own.  At 10,000 nodes the history of their
    first poll alone is ~15 MB that nobody would read.
    """

    def __init__(self, site: Site, *, clock: Callable[[], float] = time.time, history: bool = True) -> None:
        self.site = site
        self.clock = clock
        self.history = history
        self.nodes: dict[str, NodeState] = (
            {n.name: NodeState(n.name) for n in site.nodes} if history
            else {n.name: NodeState(n.name, transitions=_NO_TRANSITIONS) for n in site.nodes})
        self.switches: dict[str, SwitchState] = {s.name: SwitchState(s.name) for s in site.switches}
        self._lock = threading.Lock()
        self._changed_nodes: set[str] = set()
        self._changed_switches: set[str] = set()
        self.last_sweep_at: float | None = None
        #: node -> what is being done to it (an action running here, another's lock)
        self.activity: dict[str, NodeActivity] = {}

    # ------------------------------------------------------------------ writes
    def node_ok(self, name: str, job: str, **values: Any) -> None:
        """A successful poll of ``job`` on node ``name``; ``values`` are NodeState fields."""
        now = self.clock()
        with self._lock:
            st = self.nodes[name]
            for key, value in values.items():
                setattr(st, key, value)
            st.errors.pop(job, None)
            st.last_success = now
            st.stamp(job, now)
            if not st.errors:
                st.consecutive_failures = 0
            if self.history:
                observe(self.site.node(name), st, now)
            self._changed_nodes.add(name)

    def node_failed(self, name: str, job: str, reason: str) -> None:
        """A failed poll; the node keeps its last known values, marked with the reason."""
        now = self.clock()
        with self._lock:
            st = self.nodes[name]
            st.errors[job] = reason
            st.last_error_at = now
            st.stamp(job, now)
            st.consecutive_failures += 1
            # any failed BMC request means we cannot vouch for power or health right now
            st.power = "unknown"
            st.health = "unknown"
            if self.history:
                observe(self.site.node(name), st, now)
            self._changed_nodes.add(name)

    def switch_ok(self, name: str, *, descr: str | None = None, uptime_s: float | None = None,
                  ports: dict[int, PortState] | None = None) -> None:
        """A successful switch poll."""
        now = self.clock()
        with self._lock:
            st = self.switches[name]
            if descr is not None:
                st.descr = descr
            if uptime_s is not None:
                st.uptime_s = uptime_s
            if ports is not None:
                st.ports = ports
            st.error = None
            st.last_success = now
            st.polled_at = now
            st.consecutive_failures = 0
            self._changed_switches.add(name)

    def switch_failed(self, name: str, reason: str) -> None:
        """A failed switch poll."""
        now = self.clock()
        with self._lock:
            st = self.switches[name]
            st.error = reason
            st.last_error_at = now
            st.polled_at = now
            st.consecutive_failures += 1
            self._changed_switches.add(name)

    def set_discovered(self, name: str, port: tuple[str, str] | None, evidence: list[dict[str, Any]],
                       link_up: bool | None) -> None:
        """Where the switches see a node (from FDB and LLDP)."""
        with self._lock:
            st = self.nodes[name]
            if (st.discovered_port, st.port_evidence, st.link_up) != (port, evidence, link_up):
                st.discovered_port, st.port_evidence, st.link_up = port, evidence, link_up
                if self.history:
                    observe(self.site.node(name), st, self.clock())
                self._changed_nodes.add(name)

    def absorb(self, nodes: dict[str, NodeState], switches: dict[str, SwitchState],
               last_sweep_at: float | None = None) -> None:
        """States observed by another Fleet (the poller's process): they replace these
        nodes' and switches' states, which count as changed.  Unknown names are ignored.
        Each node keeps this Fleet's history, and what changed from the state it replaces
        joins it (as of the newest time the incoming state was polled)."""
        with self._lock:
            for name, st in nodes.items():
                old = self.nodes.get(name)
                if old is not None:
                    if st is not old and self.history:
                        st.keep_history_of(old)
                        stamps = [t for t in (st.power_at, st.image_at, st.last_success, st.last_error_at)
                                  if t is not None]
                        observe(self.site.node(name), st, max(stamps) if stamps else self.clock())
                    self.nodes[name] = st
                    self._changed_nodes.add(name)
            for name, sw in switches.items():
                if name in self.switches:
                    self.switches[name] = sw
                    self._changed_switches.add(name)
            if last_sweep_at is not None:
                self.last_sweep_at = last_sweep_at

    def set_activity(self, name: str, activity: NodeActivity | None) -> bool:
        """What is being done to node ``name`` now (None: nothing); True when that changed."""
        with self._lock:
            if name not in self.nodes or self.activity.get(name) == activity:
                return False
            if activity is None:
                del self.activity[name]
            else:
                self.activity[name] = activity
            self._changed_nodes.add(name)
            return True

    # ------------------------------------------------------------------ reads
    def drain_changes(self) -> tuple[set[str], set[str]]:
        """Names of nodes and switches changed since the last drain (one batch)."""
        with self._lock:
            nodes, switches = self._changed_nodes, self._changed_switches
            self._changed_nodes, self._changed_switches = set(), set()
        return nodes, switches

    def image_state(self, node: Node) -> str:
        """ok, drift, unknown, or unmanaged (no desired image): :func:`console.live.words.image_state`."""
        return words.image_state(node, self.nodes[node.name])

    def transitions(self, name: str, since: float | None = None) -> list[Transition]:
        """Node ``name``'s transitions (oldest first), those at or after ``since`` if given."""
        with self._lock:
            kept = list(self.nodes[name].transitions)
        return kept if since is None else [t for t in kept if t.at >= since]

    def port_finding(self, node: Node) -> str | None:
        """``match``, ``mismatch`` (miscabling), ``ambiguous``, ``unknown``; None without an expected
        port: :func:`console.live.words.port_finding`."""
        return words.port_finding(node, self.nodes[node.name])

    def record(self, name: str) -> dict[str, Any]:
        """The stable ``status --json`` record of one node (no secrets, ever)."""
        node = self.site.node(name)
        st = self.nodes[name]
        bo = st.boot_override
        sp = node.switch_port
        return {
            "name": node.name,
            "rack": node.rack,
            "u": node.u,
            "bmc": {"protocol": node.bmc.protocol, "address": node.bmc.address},
            "power": st.power,
            "health": st.health,
            "boot_override": None if bo is None else {"target": bo.target.value, "persistent": bo.persistent},
            "switch_port": {
                "expected": f"{sp.switch}/{sp.port}" if sp else None,
                "discovered": "/".join(st.discovered_port) if st.discovered_port else None,
                "finding": self.port_finding(node),
                "link": None if st.link_up is None else ("up" if st.link_up else "down"),
            },
            "image": {
                "desired": node.image,
                "running": st.image_running,
                "state": self.image_state(node),
                "error": st.image_error,
                "read_at": iso(st.image_at),
            },
            "error": st.error,
            "consecutive_failures": st.consecutive_failures,
            "last_success": iso(st.last_success),
            "polled_at": iso(st.polled_at),
        }
