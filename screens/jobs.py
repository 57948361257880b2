"""The jobs screen: this console's running and recent actions, reachable after escape.

In service mode the runs are the site service's (every operator's, OWNER says whose),
asked for every :data:`SERVICE_JOBS_S` seconds: ``enter`` follows one
(:func:`screens.progress.follow_run`), ``c`` asks the service to cancel it (it says no
to someone else's run unless this operator is an admin, and that is shown in its words).

One row per run (:class:`console.ops.jobs.Job`): plan, action, owner, ticket, nodes,
phase counts, when it started and how it stands.  The columns fit the terminal whole
(:func:`screens.fit.fit`): at 80 columns plan, state, phases, action and the nodes (in
service mode the owner instead: whose run it is).  ``enter`` reopens its progress
(a :class:`ReopenedProgress` over the same runner: the rows as they are now, then
live), ``c`` cancels it as ``c`` on its progress screen does (the first stops
launching nodes, the second aborts the ones in flight), escape goes back.

:func:`board_of` gives the app's :class:`~console.ops.jobs.JobBoard`, made on first
use: it follows the runs the progress screens register in ``app.runs``, reads the
site's lock files every :data:`LOCK_SCAN_S` seconds in a thread (others' locks on
the rows), and asks the poller for a node's power, boot override and image as soon
as an action on it ended (here or, seen as its lock going away, elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.live.words import iso
from console.ops.jobs import REFRESH_JOBS, Job, JobBoard, counts_text
from console.service import protocol as proto
from console.service.client import ServiceGone, ServiceRefused
from console.text import visible
from screens.appref import FleetAppMixin
from screens.common import outside
from screens.fit import SCROLLBAR, Col, fit
from screens.footer import KeyFooter
from screens.table import HabitDataTable

if TYPE_CHECKING:  # screens.app imports this module: only the type is needed here
    from screens.app import FleetConsoleApp

__all__ = ["JobsScreen", "ReopenedProgress", "board_of", "LOCK_SCAN_S"]

log = logging.getLogger(__name__)

#: seconds between two reads of the site's lock files (a directory of small files, in a thread)
LOCK_SCAN_S = 5.0
#: seconds between two syncs of the runs' phases onto the rows
SYNC_S = 0.5
#: seconds between two questions to the site service about its runs (service mode)
SERVICE_JOBS_S = 1.0

COLUMNS = (
    Col("plan", "PLAN", 8),
    Col("state", "STATE", 20, 12),  # compact: ``▶ cancelling`` whole
    Col("phases", "PHASES", 24, 19),  # compact: ``1 queued, 2 running`` whole
    Col("action", "ACTION", 24, 16),  # takes the room the others leave (up to 24 cells)
    Col("owner", "OWNER", 10),
    Col("nodes", "NODES", 5),
    Col("ticket", "TICKET", 10),
    Col("started", "STARTED UTC", 11, 8, "STARTED"),
)
#: the action wants this many cells (``reimage flatcar@4152.2.0``) before others give way
ACTION_WANT = 24
#: what gives way, in order, while the action has less than it wants: this console's runs
#: are all its operator's (the owner goes early); the service's are every operator's (the
#: owner stays, the node count goes instead)
FIT_STEPS = (("compact", ("started",)), ("compact", ("state",)), ("drop", ("ticket",)), ("drop", ("owner",)),
             ("compact", ("phases",)), ("drop", ("started",)), ("drop", ("nodes",)))
SERVICE_FIT_STEPS = (("compact", ("started",)), ("compact", ("state",)), ("drop", ("ticket",)), ("drop", ("nodes",)),
                     ("compact", ("phases",)), ("drop", ("started",)))


def board_of(app: FleetConsoleApp) -> JobBoard:
    """The app's job board, made (and its timers started) on first use."""
    from screens.progress import ProgressScreen  # late: the progress screen imports the action machinery

    if app.job_board is not None:
        return app.job_board
    board = app.job_board = JobBoard(app.fleet, refresh=lambda names: _refresh(app, names), clock=app.clock)

    def sync() -> None:
        # the progress screens register their running actions in app.runs; one whose run ended
        # before it was seen there is still on the screen stack (a finished run stays shown)
        runs = list(app.runs) + [s for s in app.screen_stack if isinstance(s, ProgressScreen)]
        for run in runs:
            if run.runner is not None and not getattr(run, "remote", False):
                board.add(run.plan, run.runner, view=run)
        board.sync()

    async def scan() -> None:
        held = await asyncio.to_thread(board.scan_locks)
        board.apply_locks(held)

    app.set_interval(SYNC_S, sync)
    if app.service is not None:  # the service reads the locks; its states carry them (and its runs)
        return board
    app.set_interval(LOCK_SCAN_S, lambda: app.run_worker(scan(), group="lock-scan", exclusive=True,
                                                         exit_on_error=False))
    app.call_later(lambda: app.run_worker(scan(), group="lock-scan", exclusive=True, exit_on_error=False))
    return board


def _refresh(app: FleetConsoleApp, names: list[str]) -> None:
    """Read ``names``' power, boot override and running image now (an action on them ended)."""

    async def one(name: str) -> None:
        try:
            await app.poll_node_now(name, REFRESH_JOBS)
        except Exception as exc:  # noqa: BLE001 - the scheduled polls still come
            log.warning("refreshing %s after an action: %s", name, exc)

    async def run() -> None:
        await asyncio.gather(*(one(n) for n in names))

    app.run_worker(run(), group="refresh-after-action", exit_on_error=False)


def _clock_time(ts: float | None) -> str:
    """``02:10:03`` (UTC): the time of day of :func:`console.live.words.iso`; ``-`` when None."""
    stamp = iso(ts)
    return "-" if stamp is None else stamp[11:19]


class JobsScreen(FleetAppMixin, Screen):
    """This console's running and recent actions; enter reopens one, ``c`` cancels it."""

    CSS_PATH = "jobs.tcss"
    BINDINGS = [
        Binding("enter", "open_job", "Progress"),
        Binding("c", "cancel_job", "Cancel"),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]
    #: ``J`` opens this screen: it does nothing here (the footer leaves it out)
    INERT_APP_ACTIONS = frozenset({"jobs"})

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="jobs-title")
        yield HabitDataTable(id="jobs")
        yield Static(id="jobs-empty")
        yield KeyFooter()

    @property
    def board(self) -> JobBoard:
        return board_of(self.console)

    def on_mount(self) -> None:
        self.sub_title = "jobs"
        #: the columns shown: (key, label, width), laid out for the terminal's width
        self.columns: tuple[tuple[str, str, int], ...] = ()
        self._lay_out(self.console.size.width)
        #: service mode: the service's runs as it last said (None: not asked yet)
        self.service_jobs: list[dict[str, Any]] | None = None
        self.service_problem: str | None = None
        if self.console.service is not None:
            self._ask_service()
            self.set_interval(SERVICE_JOBS_S, self._ask_service)
        self._refresh()
        self.set_interval(SYNC_S, self._refresh)

    # ------------------------------------------------------------ columns
    def _lay_out(self, width: int) -> bool:
        """Columns that fit ``width`` cells whole (:func:`fit`); True when they changed
        (the table is then emptied: its rows are added again)."""
        steps = SERVICE_FIT_STEPS if self.console.service is not None else FIT_STEPS
        columns = fit(COLUMNS, steps, max(30, width - SCROLLBAR), 0, ACTION_WANT, flex="action")
        if columns == self.columns:
            return False
        self.columns = columns
        table = self.query_one("#jobs", DataTable)
        table.clear(columns=True)
        for key, label, size in columns:
            table.add_column(label, key=key, width=size)
        return True

    def on_resize(self, event: events.Resize) -> None:
        cursor = self.selected_plan()
        if self._lay_out(event.size.width):
            self._refresh()
            table = self.query_one("#jobs", DataTable)
            if cursor is not None and cursor in table.rows:
                table.move_cursor(row=table.get_row_index(cursor))

    # ------------------------------------------------------------ service mode
    def _ask_service(self) -> None:
        self.run_worker(self._service_jobs(), group="service-jobs", exclusive=True, exit_on_error=False)

    async def _service_jobs(self) -> None:
        service = self.console.service
        if service is None:
            return
        try:
            data = await service.request(proto.Jobs(id=0), timeout=10.0)
        except (ServiceGone, ServiceRefused) as exc:
            self.service_problem = str(exc)
        else:
            jobs = data.get("jobs")
            self.service_jobs = [j for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []
            self.service_problem = None
        self._refresh()

    def _service_cells(self, job: dict[str, Any]) -> dict[str, Text]:
        running = not job.get("ended")
        state = str(job.get("state") or "?")
        style = "bold" if running else ("green" if state == "ended ok" else "yellow")
        counts = job.get("counts")
        owner = outside(job.get("operator") or "?", "" if job.get("operator") == self.console.operator else "italic")
        started = job.get("started")
        cells = {"plan": outside(job.get("plan_id") or "?"), "state": outside(("▶ " if running else "") + state, style),
                 "phases": outside(counts_text(counts) if isinstance(counts, dict) else "-"),
                 "action": outside(job.get("action") or "?"), "owner": owner,
                 "nodes": outside(job.get("nodes", "?")), "ticket": outside(job.get("ticket") or "-"),
                 "started": Text(_clock_time(started if isinstance(started, (int, float)) else None))}
        return cells

    def _service_job(self, plan_id: str | None) -> dict[str, Any] | None:
        return next((j for j in self.service_jobs or () if j.get("plan_id") == plan_id), None)

    async def _open_service_job(self, plan_id: str) -> None:
        from screens.progress import follow_run

        try:
            screen = await follow_run(self.console, plan_id)
        except (ServiceGone, ServiceRefused, proto.ProtocolError) as exc:
            self.notify(visible(str(exc)), title="cannot follow the run", severity="error", markup=False)
            return
        self.console.push_screen(screen)

    def _cancel_service_job(self, job: dict[str, Any]) -> None:
        from screens.progress import cancel_in_service

        plan_id = str(job.get("plan_id"))
        if job.get("ended"):
            self.notify(visible(f"plan {plan_id} has ended: nothing to cancel"), severity="warning", markup=False)
            return
        again = bool(job.get("cancelled"))

        async def cancel() -> None:
            if await cancel_in_service(self.console, plan_id, None):
                self.notify(visible(f"aborting the nodes in flight of plan {plan_id}" if again else
                                    f"cancelling {job.get('action')} (plan {plan_id}) in the site service: no new "
                                    "node starts (c again aborts the ones in flight)"),
                            severity="warning", markup=False)
                job["cancelled"] = True
                self._ask_service()

        self.run_worker(cancel(), group="service-cancel", exit_on_error=False)

    def _cells(self, job: Job) -> dict[str, Text]:
        plan = job.plan
        state = job.state()
        style = "bold" if job.running else ("green" if state == "ended ok" else "yellow")
        cells = {"plan": outside(plan.id), "state": outside(("▶ " if job.running else "") + state, style),
                 "phases": outside(counts_text(job.counts())), "action": outside(plan.action),
                 "owner": outside(job.owner), "nodes": Text(str(len(plan.targets))),
                 "ticket": outside(plan.ticket or "-"), "started": Text(_clock_time(job.started))}
        return cells

    def _refresh(self) -> None:
        table = self.query_one("#jobs", DataTable)
        rows: list[tuple[str, dict[str, Text]]]
        if self.console.service is not None:
            found = self.service_jobs or []
            ordered = sorted(found, key=lambda j: (bool(j.get("ended")), -float(j.get("started") or 0)))
            rows = [(str(j.get("plan_id")), self._service_cells(j)) for j in ordered]
            running = sum(1 for j in found if not j.get("ended"))
            whose = "the site service's: every operator's"
            nothing = ("asking the site service ..." if self.service_jobs is None
                       else "no action has run in the site service yet")
        else:
            board = self.board
            board.sync()
            jobs = sorted(board.jobs, key=lambda j: (not j.running, -j.started))
            rows = [(j.plan.id, self._cells(j)) for j in jobs]
            running = len(board.running())
            whose = "this console's; others' locks show on the rows"
            nothing = "no action has run in this console yet"
        keys = [key for key, _ in rows]
        current = [str(k.value) for k in table.rows]
        cursor = self.selected_plan()
        shown = [key for key, _, _ in self.columns]
        if keys != current:
            table.clear()
            for key, cells in rows:
                table.add_row(*(cells[column] for column in shown), key=key)
            if cursor in keys:
                table.move_cursor(row=keys.index(cursor))
        else:
            for key, cells in rows:
                for column in shown:
                    table.update_cell(key, column, cells[column], update_width=False)
        title = Text(f"{running} running, {len(rows) - running} ended  ·  enter: progress  c: cancel  ({whose})",
                     style="bold")
        if self.service_problem:
            title.append(f"  ·  {visible(self.service_problem)}", style="bold red")
        self.query_one("#jobs-title", Static).update(title)
        empty = self.query_one("#jobs-empty", Static)
        empty.update(Text(nothing, style="dim") if not rows else "")
        empty.display = not rows

    def selected_plan(self) -> str | None:
        """The plan id under the cursor."""
        table = self.query_one("#jobs", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _selected(self) -> Job | None:
        plan = self.selected_plan()
        job = self.board.job(plan) if plan else None
        if job is None:
            self.notify("no job selected", severity="warning")
        return job

    def action_open_job(self) -> None:
        """``enter``: the selected run's progress, as it stands, then live."""
        if self.console.service is not None:
            plan_id = self.selected_plan()
            if plan_id is None:
                self.notify("no job selected", severity="warning")
            else:
                self.run_worker(self._open_service_job(plan_id), group="service-follow", exit_on_error=False)
            return
        job = self._selected()
        if job is not None:
            self.console.push_screen(ReopenedProgress(job))

    @on(DataTable.RowSelected, "#jobs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_job()

    def action_cancel_job(self) -> None:
        """``c``: stop launching nodes of the selected run; again: abort the ones in flight."""
        if self.console.service is not None:
            found = self._service_job(self.selected_plan())
            if found is None:
                self.notify("no job selected", severity="warning")
            else:
                self._cancel_service_job(found)
            return
        job = self._selected()
        if job is None:
            return
        if not job.running:
            self.notify(f"plan {job.plan.id} has ended: nothing to cancel", severity="warning")
            return
        first = not job.runner.cancelled
        job.runner.cancel()
        if first:
            self.notify(f"cancelling {job.plan.action} (plan {job.plan.id}): no new node starts; "
                        f"{len(job.runner.in_flight())} in flight (c again aborts them)", severity="warning",
                        markup=False)
        else:
            self.notify(f"aborting the nodes in flight of plan {job.plan.id}", severity="warning", markup=False)
        self._refresh()

    def action_back(self) -> None:
        self.console.pop_screen()


def _reopened_class():
    """:class:`ReopenedProgress`, built over the progress screen as it is now (imported late:
    the progress screen imports the action machinery)."""
    from screens.progress import NodeProgressed, ProgressScreen, RunFinished

    class _Reopened(ProgressScreen):
        """A running (or ended) job's progress, reopened: the same runner, never a second run."""

        def __init__(self, job: Job) -> None:
            super().__init__(job.plan)
            self.job = job

        def _start(self) -> None:
            if self.started:
                return
            self.started = True
            self.runner = self.job.runner
            self.job.viewers.append(self)
            for p in list(self.runner.progress.values()):
                self._node_progressed(NodeProgressed.of(p))
            if not self.job.running:
                self.run_ended(self.job)

        def node_changed(self, p) -> None:
            """The board: a node of this run changed (a snapshot is posted, as the runner's callback does)."""
            self.post_message(NodeProgressed.of(p))

        def run_ended(self, job: Job) -> None:
            """The board: the run ended."""
            ended = getattr(self, "ended", None)
            if ended is not None and hasattr(ended, "set"):
                ended.set()
            self.post_message(RunFinished(job.result, job.error))

        def on_unmount(self) -> None:
            if self in self.job.viewers:
                self.job.viewers.remove(self)

    return _Reopened


def ReopenedProgress(job: Job):  # noqa: N802 - a class made on first use
    """A progress screen over ``job``'s runner (see :func:`_reopened_class`)."""
    global _REOPENED
    if _REOPENED is None:
        _REOPENED = _reopened_class()
    return _REOPENED(job)


_REOPENED = None
