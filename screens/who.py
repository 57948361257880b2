"""Who is connected to the site service, and what each holds (``W``; service mode).

In service mode :func:`watch_who` asks the service every :data:`WHO_S` seconds who is
connected (:class:`~console.service.protocol.Who`) and keeps the answer in ``app.who``:
the header's subtitle and the fleet summary (where its line has room) count it (``☺ 3
connected``), and :class:`WhoScreen` lists each
session: operator, role, how they came (local or ssh, and the client: tui, cli ...),
since when, and what they hold (node locks of their running jobs, those jobs, the
serial consoles they write to when the service says).  Names come from the service's
operators file and logins: shown as text, control characters visible.

In embedded mode there is no service and nobody else: the screen says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.live.words import iso
from console.service import protocol as proto
from console.service.client import ServiceGone, ServiceRefused
from console.text import visible
from inventory.ranges import compress
from screens.appref import FleetAppMixin
from screens.common import age_text, outside
from screens.footer import KeyFooter
from screens.table import HabitDataTable

if TYPE_CHECKING:  # screens.app imports this module: only the type is needed here
    from screens.app import FleetConsoleApp

__all__ = ["WhoScreen", "watch_who", "holds_text", "WHO_S", "WHO_MARK"]

log = logging.getLogger(__name__)

#: seconds between two questions to the service: who is connected
WHO_S = 2.0
#: the mark of the connected count in the summary (reads without colour; no status word uses it)
WHO_MARK = "☺"

COLUMNS = (("name", "OPERATOR", 12), ("role", "ROLE", 8), ("via", "VIA", 12), ("since", "SINCE UTC", 14),
           ("holds", "HOLDS", 0))  # HOLDS: the rest of the row (the line under the table says it whole)


def watch_who(app: FleetConsoleApp) -> None:
    """In service mode, keep ``app.who`` (the service's sessions) fresh; nothing when embedded."""
    if app.service is None:
        return
    app.set_interval(WHO_S, lambda: refresh_who(app))
    app.call_later(lambda: refresh_who(app))


def refresh_who(app: FleetConsoleApp) -> None:
    """Ask the service who is connected now (a worker; the answer lands in ``app.who``)."""
    if app.service is None:
        return
    app.run_worker(_ask(app), group="who", exclusive=True, exit_on_error=False)


async def _ask(app: FleetConsoleApp) -> None:
    service = app.service
    if service is None:
        return
    try:
        data = await service.request(proto.Who(id=0), timeout=10.0)
    except (ServiceGone, ServiceRefused) as exc:
        log.info("who: %s", visible(str(exc)))
        return
    sessions = data.get("sessions")
    if not isinstance(sessions, list):
        return
    you = data.get("you")
    app.who = [dict(s, you=s.get("session") == you) for s in sessions if isinstance(s, dict)]
    # every screen's header says it too (the summary only where its line has room)
    base = app.sub_title.split(f"  {WHO_MARK} ")[0]
    app.sub_title = f"{base}  {WHO_MARK} {len(app.who)} connected"


def holds_text(session: dict[str, Any]) -> Text:
    """What a session holds, in words: ``locks n01-n04; runs 3fa2c1d0; writes console n02``."""
    parts: list[str] = []
    locks = [str(n) for n in session.get("locks") or ()]
    if locks:
        parts.append(f"lock{'' if len(locks) == 1 else 's'} {compress(locks)}")
    jobs = [str(j) for j in session.get("jobs") or ()]
    if jobs:
        parts.append(f"run{'' if len(jobs) == 1 else 's'} {', '.join(jobs)}")
    consoles = [str(n) for n in session.get("consoles") or ()]
    if consoles:
        parts.append(f"writes console{'' if len(consoles) == 1 else 's'} {compress(consoles)}")
    if not parts:
        return Text("nothing", style="dim")
    return outside("; ".join(parts), "bold" if jobs or consoles else "")


class WhoScreen(FleetAppMixin, Screen):
    """Every session of the site service: who, their role, how, since when, what they hold."""

    DEFAULT_CSS = """
    WhoScreen #jobs-title { height: 1; padding: 0 1; background: $boost; }
    WhoScreen #jobs { height: 1fr; }
    WhoScreen #jobs-empty { height: auto; padding: 1 2; }
    WhoScreen #who-holds { height: auto; max-height: 4; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]
    #: ``W`` opens this screen: it does nothing here (the footer leaves it out)
    INERT_APP_ACTIONS = frozenset({"who"})

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="jobs-title")
        yield HabitDataTable(id="jobs")
        yield Static(id="jobs-empty")
        yield Static(id="who-holds")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = "who"
        table = self.query_one("#jobs", DataTable)
        rest = self.console.size.width - sum(w for _, _, w in COLUMNS) - 2 * len(COLUMNS) - 2
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width or max(16, rest))
        refresh_who(self.console)
        self._shown: list[dict[str, Any]] | None = None
        self._refresh()
        self.set_interval(0.5, self._refresh)

    def _cells(self, s: dict[str, Any]) -> tuple[Text, ...]:
        name = outside(s.get("name") or "?", "bold" if s.get("you") else "")
        if s.get("you"):
            name.append(" (you)", style="dim")
        via = outside(f"{s.get('via') or '?'} {s.get('client') or ''}".strip())
        since = s.get("since")
        stamp = iso(since) if isinstance(since, (int, float)) else None
        when = Text(stamp[11:19] if stamp else "-")
        if isinstance(since, (int, float)):
            when.append(" (")
            when.append_text(age_text(since, self.console.clock()))
            when.append(")")
        cells = {"name": name, "role": outside(s.get("role") or "?"), "via": via, "since": when,
                 "holds": holds_text(s)}
        return tuple(cells[key] for key, _, _ in COLUMNS)

    def _refresh(self) -> None:
        sessions = self.console.who
        if sessions == self._shown and sessions is not None:
            return
        self._shown = None if sessions is None else [dict(s) for s in sessions]
        table = self.query_one("#jobs", DataTable)
        table.clear()
        title = self.query_one("#jobs-title", Static)
        empty = self.query_one("#jobs-empty", Static)
        if sessions is None:
            if self.console.service is None:
                title.update(Text("embedded mode: this console polls and acts by itself; no site service, "
                                  "nobody else connected through one", style="bold"))
            else:
                title.update(Text("asking the site service who is connected ...", style="bold"))
            empty.display = False
            return
        ordered = sorted(sessions, key=lambda s: (not s.get("you"), str(s.get("name")), s.get("since") or 0))
        for s in ordered:
            table.add_row(*self._cells(s), key=str(s.get("session")))
        names = {str(s.get("name")) for s in sessions}
        title.update(Text(f"{len(sessions)} session{'' if len(sessions) == 1 else 's'} of "
                          f"{len(names)} operator{'' if len(names) == 1 else 's'} on the site service  ·  "
                          "what each holds: node locks of their runs, the runs, console writers", style="bold"))
        empty.update(Text("nobody is connected", style="dim") if not sessions else "")
        empty.display = not sessions
        self._show_holds()

    @on(DataTable.RowHighlighted, "#jobs")
    def _highlighted(self) -> None:
        self._show_holds()

    def _show_holds(self) -> None:
        """The session under the cursor: who, and everything they hold, whole."""
        table = self.query_one("#jobs", DataTable)
        box = self.query_one("#who-holds", Static)
        if not table.row_count or not self._shown:
            box.update("")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        session = next((s for s in self._shown if str(s.get("session")) == key), None)
        if session is None:
            box.update("")
            return
        line = outside(f"{session.get('name') or '?'} holds: ", "bold")
        line.append_text(holds_text(session))
        box.update(line)

    def action_back(self) -> None:
        self.console.pop_screen()
