"""The fleet screen's summary bar: state counts, how fresh the polls are, what is shown."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from rich.text import Text
from textual.widgets import Static

from screens.common import age_text, status_text

__all__ = ["FleetSummary", "SUMMARY_WIDE"]

#: from this many columns the summary spells its counts out
SUMMARY_WIDE = 110


class FleetSummary(Static):
    """One line: counts by power, health, errors, drift and miscabling; poller freshness;
    how many nodes are shown and marked.

    The counts are kept per changed node (:meth:`nodes_changed`), not recounted over
    thousands of nodes; :meth:`show` repaints the line only when its text changed, and
    never re-lays out the screen (a Static update does, unless told not to).
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._tally: Counter | None = None  # "power:on", "error", "drift"... -> nodes
        self._contrib: dict[str, tuple[str, ...]] = {}  # what each node adds to the tally
        self._counts: tuple[bool, Text] | None = None  # (wide, the counts rendered)
        self._shown = Text()

    def nodes_changed(self, names: Iterable[str]) -> None:
        """These nodes' states changed: their counts move (shown at the next :meth:`show`)."""
        self._counts = None
        if self._tally is not None:
            self._recount(names)

    def show(self, *, shown: int, marked: int) -> None:
        """Bring the line up to date: ``shown`` nodes in the table, ``marked`` of them marked."""
        fleet = self.app.fleet
        what = f"{shown}/{len(fleet.nodes)} shown" + (f", {marked} marked" if marked else "")
        wide = self.app.size.width >= SUMMARY_WIDE
        if wide:
            text = self._counts_text(wide).copy()
            text.append("   │   ")
            text.append_text(self._freshness(wide))
            text.append(f"   │   {what}")
        else:  # narrow: what is shown and marked, and how fresh, first, so a cut takes the least
            text = Text(f"{what} ")
            text.append_text(self._freshness(wide))
            text.append(" │ ")
            text.append_text(self._counts_text(wide))
        if text != self._shown or text.spans != self._shown.spans:
            self._shown = text
            self.update(text, layout=False)  # always one line

    def _counts_text(self, wide: bool) -> Text:
        if self._counts is not None and self._counts[0] == wide:
            return self._counts[1]
        if self._tally is None:
            self._tally = Counter()
            self._contrib = {}
            self._recount(list(self.app.fleet.nodes))
        tally = self._tally
        if not wide:  # 80 columns: counts right after their symbols
            parts = [status_text(word, f"{tally['power:' + word]}") for word in ("on", "off", "unknown")]
            gap, bar = " ", Text(" │ ")
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
            status_text("drift", f"{tally['drift']} drift"),
            status_text("mismatch", f"{tally['miscabled']} cabling"),
        ]
        text = Text()
        for i, part in enumerate(parts):  # no gap around the bars
            if i and part is not bar and parts[i - 1] is not bar:
                text.append(gap)
            text.append_text(part)
        self._counts = (wide, text)
        return text

    def _freshness(self, wide: bool) -> Text:
        """How current the states are: the age of the least recently polled node's last poll
        (``polled ≤ 12s ago``, narrow ``↻12s``), or how many are not polled yet."""
        unpolled, oldest = self.app.poll_freshness()
        if unpolled:
            return Text(f"{unpolled} not polled yet" if wide else f"↻{unpolled} to go", style="yellow")
        age = age_text(oldest, self.app.clock())
        if wide:
            return Text.assemble("polled ≤ ", age, " ago")
        return Text.assemble("↻", age)

    def _recount(self, names: Iterable[str]) -> None:
        """Move ``names``' contributions to the tally to their current state."""
        fleet, tally, contrib = self.app.fleet, self._tally, self._contrib
        for name in names:
            st, node = fleet.nodes[name], fleet.site.node(name)
            words = (f"power:{st.power}", f"health:{st.health}",
                     "error" if st.error else "", "drift" if fleet.image_state(node) == "drift" else "",
                     "miscabled" if fleet.port_finding(node) == "mismatch" else "")
            tally.subtract(contrib.get(name, ()))
            tally.update(words)
            contrib[name] = words
