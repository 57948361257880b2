"""The timeline screen (``T`` on any node): one node's incident story, oldest first, newest last.

What the on-call operator reads first: the line at the top says the node's facts now
with how long each has been so (``✗ critical 14m``, ``≥`` when it already was when
this console first looked), then the story (:mod:`console.live.timeline`): the
transitions this console's poller saw, the BMC's event log, the console log's story
lines, image changes from the audit history and operator actions from the journal,
time-ordered, the cursor starting on the newest.  The line under the table says the
highlighted entry in full; the last line which sources were read and which were not.

The poller's part follows the fleet as it changes; the files (console log, audit
history, journal) are read off the event loop when the screen opens, every
:data:`FILES_EVERY_S` seconds, and at once on ``ctrl+r``.  Every entry's text came
from outside: it is shown as text with control characters visible, never as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.live.freshness import node_since
from console.live.timeline import Entry, SourceState, Timeline, build_timeline, event_entries, transition_entries
from console.live.words import port_finding
from console.text import visible
from screens.appref import FleetAppMixin
from screens.common import FleetChanged, outside, short_time, status_text
from screens.fit import SCROLLBAR, Col, fit
from screens.footer import KeyFooter
from screens.table import HabitDataTable

__all__ = ["TimelineScreen", "COLUMNS", "FILES_EVERY_S"]

#: the files are read again this often (seconds)
FILES_EVERY_S = 10.0
COLUMNS = (
    Col("time", "TIME UTC", 14, 8, "TIME"),
    Col("source", "SOURCE", 7),
    Col("what", "WHAT", 30),
)
FIT_STEPS = (("compact", ("time",)),)
WHAT_WANT = 30
#: an entry's severity -> its style (the symbol says it without colour)
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "ok": "green", "info": ""}
#: the facts on the status line, in its order, with the word before each
SHOWN_FACTS = (("power", ""), ("health", ""), ("cabling", "cabling "), ("image", "image "))


class TimelineScreen(FleetAppMixin, Screen):
    """One node's story; escape goes back, ctrl+r reads the files again."""

    DEFAULT_CSS = """
    TimelineScreen #now {
        height: auto;
        padding: 0 1;
        background: $boost;
    }
    TimelineScreen #timeline {
        height: 1fr;
    }
    TimelineScreen #entry {
        height: auto;
        max-height: 4;
        padding: 0 1;
        border-top: solid $panel;
    }
    TimelineScreen #sources {
        height: auto;
        max-height: 3;
        padding: 0 1;
        color: $text-muted;
    }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        Binding("ctrl+r", "reload", "Read again"),
    ]
    #: ``T`` opens this screen: it does nothing here (the footer leaves it out)
    INERT_APP_ACTIONS = frozenset({"timeline"})

    def __init__(self, node: str) -> None:
        super().__init__()
        #: the node shown (the app's current_node() reads it, as node detail's)
        self.node_name = node
        #: the files' part of the story (console, image, journal), None until first read
        self.files: Timeline | None = None
        self.entries: list[Entry] = []
        self.sources: list[SourceState] = []
        self._columns_for: tuple | None = None
        self._shown: tuple | None = None
        self._width = 80

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="now")
        yield HabitDataTable(id="timeline")
        yield Static("", id="entry")
        yield Static("", id="sources")
        yield KeyFooter()

    def _known(self) -> bool:
        return self.node_name in self.console.fleet.nodes

    def on_mount(self) -> None:
        self.sub_title = f"timeline of {visible(self.node_name)}"
        self._columns(self.console.size.width)
        if not self._known():
            self.query_one("#now", Static).update(outside(f"no node named {self.node_name}", "bold red"))
            return
        self._refresh()
        self.action_reload()
        self.set_interval(FILES_EVERY_S, self.action_reload)
        self.set_interval(1.0, self._refresh_now)  # the "since" times move
        self.query_one("#timeline", DataTable).focus()

    def _columns(self, width: int | None = None) -> bool:
        if width is not None:
            self._width = width
        columns = fit(COLUMNS, FIT_STEPS, max(30, self._width - SCROLLBAR), 8, WHAT_WANT)
        if columns == self._columns_for:
            return False
        self._columns_for = columns
        table = self.query_one("#timeline", DataTable)
        table.clear(columns=True)
        for key, label, size in columns:
            table.add_column(label, key=key, width=size)
        self._shown = None
        return True

    def on_resize(self, event: events.Resize) -> None:
        if self._columns(event.size.width) and self._known():
            self._fill()

    # ------------------------------------------------------------ the story
    def action_reload(self) -> None:
        """``ctrl+r``: read the console log, the audit history and the journal again."""
        if self._known():
            self._read_files()

    @work(thread=True, exclusive=True, group="timeline-files", exit_on_error=False)
    def _read_files(self) -> None:
        tl = build_timeline(self.console.ctx.site.name, self.node_name, transitions=[], events=[])
        self.console.call_from_thread(self._files_read, tl)

    def _files_read(self, tl: Timeline) -> None:
        if not self.is_mounted:
            return
        tl.entries = [e for e in tl.entries if e.source not in ("poller", "bmc")]
        tl.sources = [s for s in tl.sources if s.name not in ("poller", "bmc")]
        self.files = tl
        self._refresh()

    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        if self._known() and self.node_name in message.nodes:
            self._refresh()

    def _refresh(self) -> None:
        """The story from the fleet's part (now) and the files' (as last read)."""
        fleet = self.console.fleet
        st = fleet.nodes[self.node_name]
        poller = transition_entries(fleet.transitions(self.node_name))
        sources = [SourceState("poller", "read" if poller else "empty", len(poller),
                               "" if poller else "nothing seen to change yet")]
        if st.events is None:
            bmc: list[Entry] = []
            sources.append(SourceState("bmc", "unavailable", detail=st.errors.get("events") or "not read yet"))
        else:
            bmc, untimed = event_entries(st.events)
            sources.append(SourceState("bmc", "read" if bmc else "empty", len(bmc),
                                       f"{untimed} without a time" if untimed else ""))
        entries = poller + bmc
        if self.files is None:
            sources.append(SourceState("files", "empty", detail="reading the console log, audit history, journal"))
        else:
            entries += self.files.entries
            sources += self.files.sources
        order = {"poller": 0, "bmc": 1, "console": 2, "image": 3, "journal": 4}
        entries.sort(key=lambda e: (e.at, order.get(e.source, 9)))
        self.entries, self.sources = entries, sources
        self._fill()
        self._refresh_now()
        self._show_sources()

    def _fill(self) -> None:
        shown = (tuple(self.entries), self._columns_for)
        if shown == self._shown:
            return
        self._shown = shown
        table = self.query_one("#timeline", DataTable)
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        keep = table.cursor_row
        narrow = self._columns_for is not None and self._columns_for[0][2] < 14
        with self.console.batch_update():
            table.clear()
            for i, e in enumerate(self.entries):
                stamp = short_time(e.at)
                style = SEVERITY_STYLE.get(e.severity, "")
                what = Text(f"{e.symbol} ", style=style)
                if e.who:
                    what.append(f"{visible(e.who)}: ", style="bold")
                what.append(visible(e.text), style=style if e.severity == "critical" else "")
                table.add_row(Text(stamp[-8:] if narrow else stamp), Text(e.source, style="dim"), what, key=str(i))
            if self.entries:
                table.move_cursor(row=len(self.entries) - 1 if at_end else min(keep, len(self.entries) - 1),
                                  animate=False)
        self._show_entry()

    # ------------------------------------------------------------ the lines around it
    def now_line(self) -> Text:
        """``dal1-r02-n19  ● on ≥2h  ✗ critical 14m  cabling ✓ match ≥2h  image ✓ ok ≥2h``."""
        fleet = self.console.fleet
        node, st = fleet.site.node(self.node_name), fleet.nodes[self.node_name]
        now = self.console.clock()
        words = {"power": st.power, "health": st.health, "cabling": port_finding(node, st),
                 "image": fleet.image_state(node)}
        text = outside(node.name, "bold")
        for fact, lead in SHOWN_FACTS:
            word = words[fact]
            if word is None:
                continue
            text.append("  " + lead)
            text.append_text(status_text(word))
            since = node_since(st, fact, now)
            if since:
                text.append(f" {since}", style="dim")
        if st.error:
            text.append("  ")
            text.append_text(status_text("error", f"{st.error}  {node_since(st, 'reachability', now)}".rstrip()))
        return text

    def _refresh_now(self) -> None:
        if self._known():
            self.query_one("#now", Static).update(self.now_line())

    def _show_sources(self) -> None:
        read = [s.words() for s in self.sources if s.state != "unavailable"]
        gone = [s.words().replace(": unavailable", "") for s in self.sources if s.state == "unavailable"]
        text = Text("read: ", style="bold")
        text.append(visible("; ".join(read) or "nothing"))
        if gone:
            text.append("  unavailable: ", style="bold")
            text.append(visible("; ".join(gone)))
        self.query_one("#sources", Static).update(text)

    @on(DataTable.RowHighlighted, "#timeline")
    def _highlighted(self) -> None:
        self._show_entry()

    def _show_entry(self) -> None:
        box = self.query_one("#entry", Static)
        table = self.query_one("#timeline", DataTable)
        if not self.entries or not table.row_count:
            box.update(Text("nothing to tell yet", style="dim"))
            return
        e = self.entries[min(table.cursor_row, len(self.entries) - 1)]
        text = Text(f"{short_time(e.at)}  {e.source}  ", style="dim")
        text.append(f"{e.symbol} ", style=SEVERITY_STYLE.get(e.severity, ""))
        if e.who:
            text.append(f"{visible(e.who)}: ", style="bold")
        text.append(visible(e.text))
        box.update(text)

    def action_back(self) -> None:
        self.console.pop_screen()


