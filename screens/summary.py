"""The fleet screen's summary bar: state counts, how fresh the polls are, what is shown.

A count not known yet is never shown as 0: drift is unknown (``?``, or ``≥2`` when two
nodes already drift) until every node with a desired image had its image read once
(or the read failed, or its BMC fails: the poller reads only its power then, and it
counts as an error), miscabling until every switch was polled once; after start
and after the poller restarted (its first states replace the old ones) that takes
a few seconds.

It also counts the nodes whose BMC password crosses the network unprotected (plain
HTTP or unverified TLS, :func:`~screens.common.transport_warning`): ``⚠ 45
insecure`` at the end of the line (``⚠45`` where that does not fit, nothing where
neither does), with the reasons in its tooltip.

In service mode it ends with how many sessions the site service has (``☺ 3
connected``, ``☺3`` where that does not fit): ``W`` lists them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from screens.appref import FleetAppMixin
from screens.common import INSECURE, SYMBOLS, age_text, status_text, transport_warning
from screens.who import WHO_MARK

__all__ = ["FleetSummary", "SUMMARY_WIDE"]

#: from this many columns the summary spells its counts out
SUMMARY_WIDE = 110


class FleetSummary(FleetAppMixin, Static):
    """One line: counts by power, health, errors, drift and miscabling; poller freshness;
    how many nodes are shown and marked.

    The counts are kept per changed node (:meth:`nodes_changed`), not recounted over
    thousands of nodes; :meth:`show` repaints the line only when its text changed, and
    never re-lays out the screen (a Static update does, unless told not to).
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._tally: Counter[str] | None = None  # "power:on", "error", "drift"... -> nodes
        self._contrib: dict[str, tuple[str, ...]] = {}  # what each node adds to the tally
        self._counts: tuple[bool, Text] | None = None  # (wide, the counts rendered)
        self._shown = Text()
        self._insecure: int | None = None  # nodes whose BMC password is exposed (the inventory's)
        #: nodes with a desired image whose image was never read, switches never polled:
        #: while either has one, the drift / miscabling count is not known
        self._image_unread: set[str] = set()
        self._switches_unpolled: set[str] = set()

    def nodes_changed(self, names: Iterable[str]) -> None:
        """These nodes' states changed: their counts move (shown at the next :meth:`show`)."""
        self._counts = None
        if self._tally is not None:
            self._recount(self._tally, names)

    def switches_changed(self, names: Iterable[str]) -> None:
        """These switches' states changed: whether every one was polled may have."""
        if self._tally is None:
            return
        switches, unpolled = self.console.fleet.switches, self._switches_unpolled
        before = bool(unpolled)
        for name in names:
            if name in switches:
                if switches[name].polled_at is None:
                    unpolled.add(name)
                else:
                    unpolled.discard(name)
        if bool(unpolled) != before:
            self._counts = None

    @property
    def drift_known(self) -> bool:
        """Every node with a desired image had its image read (or the read failed)."""
        self._ensure_tally()
        return not self._image_unread

    @property
    def cabling_known(self) -> bool:
        """Every switch was polled once."""
        self._ensure_tally()
        return not self._switches_unpolled

    def show(self, *, shown: int, marked: int) -> None:
        """Bring the line up to date: ``shown`` nodes in the table, ``marked`` of them marked."""
        fleet = self.console.fleet
        what = f"{shown}/{len(fleet.nodes)} shown" + (f", {marked} marked" if marked else "")
        wide = self.console.size.width >= SUMMARY_WIDE
        if wide:
            text = self._counts_text(wide).copy()
            text.append("   │   ")
            text.append_text(self._freshness(wide))
            text.append(f"   │   {what}")
        else:  # narrow: what is shown and marked, and how fresh, first, so a cut takes the least
            text = Text(f"{what} ")
            text.append_text(self._freshness(wide))
            text.append(" │ ")
            text.append_text(self._fit_counts(self.console.size.width - 2 - text.cell_len))
        self._append_insecure(text, wide)
        self._append_who(text, wide)
        if text != self._shown or text.spans != self._shown.spans:
            self._shown = text
            self.update(text, layout=False)  # always one line

    def _fit_counts(self, room: int) -> Text:
        """The narrow counts in ``room`` cells, never cut mid-token: with their labels
        (``⊘1 err``), else without (each symbol means one thing: ``⊘1``), else as many
        whole counts as fit."""
        text = self._counts_text(False)
        if text.cell_len <= room:
            return text
        parts = self._narrow_parts(labels=False)
        while parts and _joined(parts, " ").cell_len > room:
            parts.pop()
            while parts and parts[-1].plain.strip() == "│":  # no bar last
                parts.pop()
        return _joined(parts, " ")

    def _narrow_parts(self, *, labels: bool) -> list[Text]:
        """The narrow counts, a symbol and a number each, and the bars between groups."""
        tally = self._ensure_tally()
        drift = _count(tally["drift"], not self._image_unread)
        cabling = _count(tally["miscabled"], not self._switches_unpolled)
        bar = Text(" │ ")
        parts = [_tight(word, tally["power:" + word]) for word in ("on", "off", "unknown")]
        parts += [bar, _tight("ok", tally["health:ok"]), _tight("warning", tally["health:warning"]),
                  _tight("critical", tally["health:critical"]), bar,
                  _tight("error", tally["error"], " err" if labels else ""),
                  _tight("drift", drift, " drift" if labels else ""),
                  _tight("mismatch", cabling, " cabling" if labels else "")]
        return parts

    def _counts_text(self, wide: bool) -> Text:
        if self._counts is not None and self._counts[0] == wide:
            return self._counts[1]
        tally = self._ensure_tally()
        drift = _count(tally["drift"], not self._image_unread)
        cabling = _count(tally["miscabled"], not self._switches_unpolled)
        if not wide:  # 80 columns: counts right after their symbols
            text = _joined(self._narrow_parts(labels=True), " ")
            self._counts = (wide, text)
            return text
        else:
            parts = [
                status_text("on", f"{tally['power:on']} on"),
                status_text("off", f"{tally['power:off']} off"),
                status_text("unknown", f"{tally['power:unknown']} ?"),
            ]
            gap, bar = "  ", Text("   │   ")
            parts += [
                bar,
                status_text("ok", f"{tally['health:ok']}"),
                status_text("warning", f"{tally['health:warning']}"),
                status_text("critical", f"{tally['health:critical']}"),
                bar,
                status_text("error", f"{tally['error']} err"),
                status_text("drift", f"{drift} drift"),
                status_text("mismatch", f"{cabling} cabling"),
            ]
        text = _joined(parts, gap)
        self._counts = (wide, text)
        return text

    def _ensure_tally(self) -> Counter[str]:
        """The tally: every node counted (and which switches were polled seen) the first time."""
        if self._tally is None:
            self._tally = Counter()
            self._contrib = {}
            self._recount(self._tally, list(self.console.fleet.nodes))
            self._switches_unpolled = {name for name, st in self.console.fleet.switches.items() if st.polled_at is None}
        return self._tally

    def _append_insecure(self, text: Text, wide: bool) -> None:
        """End the line with the count of exposed BMC passwords, whole or not at all (a
        count cut short would be a wrong one): ``⚠ 45 insecure``, else ``⚠45``."""
        insecure = self._count_insecure()
        if not insecure:
            return
        room = self.console.size.width - 2 - text.cell_len  # (the bar's padding)
        long, short = f"{INSECURE[0]} {insecure} insecure", f"{INSECURE[0]}{insecure}"
        choices = [(" │ ", long), (" │ ", short)]
        if wide:
            choices.insert(0, ("   │   ", long))
        for bar, label in choices:
            if len(bar) + len(label) <= room:
                text.append(bar)
                text.append(label, style=INSECURE[1])
                return

    def _append_who(self, text: Text, wide: bool) -> None:
        """Service mode: how many are connected to the site service, whole or not at all:
        ``☺ 3 connected``, else ``☺3`` (W lists them)."""
        who = self.console.who
        if who is None:
            return
        room = self.console.size.width - 2 - text.cell_len
        n = len(who)
        choices = [(" │ ", f"{WHO_MARK} {n} connected"), (" │ ", f"{WHO_MARK}{n}")]
        if wide:
            choices.insert(0, ("   │   ", f"{WHO_MARK} {n} connected"))
        for bar, label in choices:
            if len(bar) + len(label) <= room:
                text.append(bar)
                text.append(label, style="bold")
                return

    def _count_insecure(self) -> int:
        """Nodes whose BMC password goes over plain HTTP or unverified TLS (counted once: the
        inventory does not change); the reasons go in the bar's tooltip."""
        if self._insecure is None:
            reasons: Counter[str] = Counter()
            for node in self.console.fleet.site.nodes:
                warning = transport_warning(node.bmc)
                if warning is not None:
                    reasons[warning.split(":", 1)[0]] += 1
            self._insecure = sum(reasons.values())
            if reasons:
                self.tooltip = Text("\n".join(f"{INSECURE[0]} {n} node{'s' if n != 1 else ''}: {why}"
                                              for why, n in reasons.items()))
        return self._insecure

    def _freshness(self, wide: bool) -> Text:
        """How current the states are: the age of the least recently polled node's last poll
        (``polled within 1m``, ``polled ≤ 3m ago``, narrow ``↻<1m``, ``↻3m``), or how many are not polled yet."""
        unpolled, oldest = self.console.poll_freshness()
        if unpolled:
            return Text(f"{unpolled} not polled yet" if wide else f"↻{unpolled} to go", style="yellow")
        age = age_text(oldest, self.console.clock())
        if wide:  # ages are coarse (:func:`age_text`): the line moves once a minute at most
            return Text.assemble("polled within 1m") if age.plain == "<1m" else Text.assemble("polled ≤ ", age, " ago")
        return Text.assemble("↻", age)

    def _recount(self, tally: Counter[str], names: Iterable[str]) -> None:
        """Move ``names``' contributions to ``tally`` to their current state."""
        fleet, contrib = self.console.fleet, self._contrib
        for name in names:
            st, node = fleet.nodes[name], fleet.site.node(name)
            words = (f"power:{st.power}", f"health:{st.health}",
                     "error" if st.error else "", "drift" if fleet.image_state(node) == "drift" else "",
                     "miscabled" if fleet.port_finding(node) == "mismatch" else "")
            tally.subtract(contrib.get(name, ()))
            tally.update(words)
            contrib[name] = words
            # never read (a failed read sets image_error), or a node known to be on whose read
            # failed (booting after an action: it is read again within seconds) -- its drift is
            # not known.  A node whose BMC fails is not waited for: the poller reads no more than
            # its power while it fails, and it counts as an error; nor one that is off.
            unread = st.image_running is None and (st.image_error is None or (st.power == "on" and node.host))
            if node.image and unread and not st.errors:
                self._image_unread.add(name)
            else:
                self._image_unread.discard(name)


def _joined(parts: list[Text], gap: str) -> Text:
    """The parts, ``gap`` between counts, none around the bars (parts that are only ``│``)."""
    text = Text()
    for i, part in enumerate(parts):
        if i and part.plain.strip() != "│" and parts[i - 1].plain.strip() != "│":
            text.append(gap)
        text.append_text(part)
    return text


def _count(found: int, known: bool) -> str:
    """A count, or what is known of it while not every node was read: ``?`` (none found
    yet), ``≥2`` (two found so far); never a 0 that is not known."""
    if known:
        return str(found)
    return f"≥{found}" if found else "?"


def _tight(word: str, count: int | str, label: str = "") -> Text:
    """A narrow count: its symbol, then the number without a space (``●85``, ``✗1 err``)."""
    symbol, style = SYMBOLS[word]
    return Text(f"{symbol}{count}{label}", style=style)
