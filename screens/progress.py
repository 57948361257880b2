"""The progress screen of an action: one row per node, live, while the Runner works.

Part of the action flow in :mod:`screens.actions` (choose, confirm, then this).  The
runner runs as an app worker (not the screen's): hiding the progress screen with
escape leaves the action running, and its end is notified.

Cancelling: the first ``c`` stops launching new nodes and asks what to do with the
ones in flight: ``r`` (or ``c`` again) aborts them and rolls back what they started,
``f`` lets them finish.  Every finished row says its outcome (done, rolled back,
aborted, not started, failed, skipped) and, for a cancelled or failed node, what it
was left with; the header counts the same outcomes, so header and rows agree.

A reimage follows its nodes' serial consoles while it runs
(:class:`~console.ops.console_follow.ConsoleFollower` on the app's broker, so a console
pane opened meanwhile shares the session): the whole boot goes to each node's console
log, and a CONSOLE column shows the node's last console line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.ops.actions import Plan
from console.ops.locks import LockError
from console.ops.options import RunOptions
from console.ops.runner import NodeProgress, Runner, RunResult
from console.service import protocol as proto
from console.service.client import (
    ServiceGone,
    ServicePollSource,
    ServiceRefused,
    plan_from_json,
    progress_from_json,
    result_from_json,
)
from console.text import visible
from inventory.errors import FleetError
from screens.appref import FleetAppMixin
from screens.common import outside
from screens.footer import KeyFooter
from screens.table import HabitDataTable

if TYPE_CHECKING:  # the console follower is imported when a reimage runs
    from console.ops.console_follow import ConsoleFollower
    from screens.app import FleetConsoleApp

__all__ = ["ConsoleLine", "NodeProgressed", "ProgressScreen", "RunFinished", "ServiceProgress", "follow_run",
           "cancel_in_service"]

#: how a node's phase reads in the progress table: phase -> (symbol, style)
PHASE_STYLE = {
    "planned": ("·", "dim"),
    "done": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "skipped": ("-", "yellow"),
    "cancelled": ("⊘", "magenta"),
    "rolled back": ("↺", "magenta"),
    "aborted": ("⊘", "bold magenta"),
    "not started": ("·", "magenta"),
}
RUNNING_STYLE = ("▶", "bold")
#: the order counts are shown in
COUNT_ORDER = ("planned", "running", "done", "rolled back", "aborted", "failed", "not started", "skipped")


@dataclass
class NodeProgressed(Message):
    """One node's progress changed (a snapshot: the runner keeps mutating its NodeProgress)."""

    node: str
    phase: str
    detail: str | None
    error: str | None
    canary: bool
    final: bool
    steps: tuple[tuple[str, str, str | None, float], ...]
    #: done, rolled back, aborted, not started, failed, skipped (None while running)
    outcome: str | None = None
    #: what a cancelled or failed node was left with, in words
    left: str | None = None

    def can_replace(self, message: Message) -> bool:
        """A newer state of the same node replaces a queued older one."""
        return isinstance(message, NodeProgressed) and message.node == self.node

    @classmethod
    def of(cls, p: NodeProgress) -> NodeProgressed:
        left = p.left.text() if p.left is not None and p.final and p.phase in ("cancelled", "failed") else None
        return cls(p.node, p.phase, p.detail, p.error, p.canary, p.final,
                   tuple((s.step, s.result, s.detail, s.seconds) for s in p.steps),
                   p.outcome if p.final else None, left)


@dataclass
class ConsoleLine(Message):
    """A followed node's last console line changed (the node's text: shown through visible())."""

    node: str
    line: str

    def can_replace(self, message: Message) -> bool:
        """A newer line of the same node replaces a queued older one."""
        return isinstance(message, ConsoleLine) and message.node == self.node


@dataclass
class RunFinished(Message):
    """A run ended (``result`` None when the runner itself broke: ``error`` says why)."""

    result: RunResult | None
    error: str | None = None


class ProgressScreen(FleetAppMixin, Screen):
    """A running action: one row per node with its phase; ``c`` / ctrl+c cancels.

    The first cancel stops launching steps (what is in flight finishes); a second
    aborts the steps in flight.  Escape hides the screen once the run has ended,
    or leaves it running in the background (its end is notified).
    """

    CSS_PATH = "actions.tcss"
    BINDINGS = [
        Binding("c", "cancel_run", "Cancel"),
        Binding("ctrl+c", "cancel_run", "Cancel", show=False, priority=True),
        Binding("r", "roll_back", "Roll back in flight"),
        Binding("f", "let_finish", "Let them finish"),
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, plan: Plan, options: RunOptions | None = None) -> None:
        super().__init__()
        self.plan = plan
        #: how this plan runs; None: as the app's run options say
        self.options = options
        self.runner: Runner | None = None
        self.states: dict[str, NodeProgressed] = {}
        self.result: RunResult | None = None
        self.error: str | None = None
        self.started = False
        #: set when the run has ended (whatever way): quitting waits on it
        self.ended = asyncio.Event()
        #: what the operator chose for the nodes in flight after the first cancel
        self.decided: str | None = None
        #: a reimage shows each node's last console line (node -> line)
        self.follows_consoles = plan.kind == "reimage"
        self.console_lines: dict[str, str] = {}
        self._follower: ConsoleFollower | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def compose(self) -> ComposeResult:
        yield Header()
        plan = self.plan
        head = f"{plan.action}: {len(plan.targets)} of {len(plan.nodes)} nodes (plan {plan.id})"
        if plan.ticket:
            head += f", ticket {plan.ticket}"
        yield Static(outside(head), id="run-title")  # the ticket was typed: text, not markup
        yield Static("", id="counts")
        yield HabitDataTable(id="progress")  # j/k, g/G, ctrl+d/u, ctrl+f/b as on every table
        yield Static("", id="steps")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one("#progress", DataTable)
        table.add_column("NODE", key="node", width=max((len(n.node) for n in self.plan.nodes), default=4))
        table.add_column("PHASE", key="phase", width=16)
        name_width = max((len(n.node) for n in self.plan.nodes), default=4)
        # the detail takes the rest of the row (no sideways scrolling at the start width)
        rest = self.console.size.width - name_width - 16 - 8
        if self.follows_consoles:  # detail and console share it
            rest -= 2
            table.add_column("DETAIL", key="detail", width=max(20, rest // 2))
            table.add_column("CONSOLE", key="console", width=max(20, rest - max(20, rest // 2)))
        else:
            table.add_column("DETAIL", key="detail", width=max(30, rest))
        for np in self.plan.nodes:
            snap = NodeProgressed(np.node, "planned", None, None, False, False, ())
            self.states[np.node] = snap
            cells = self._cells(snap)
            table.add_row(*cells, *((Text(""),) if self.follows_consoles else ()), key=np.node)
        self._refresh_counts()
        self._refresh_steps()
        self._start()

    def _start(self) -> None:
        if self.started:
            return
        self.started = True
        options = self.options if self.options is not None else self.console.run_options
        try:
            self.runner = Runner(self.console.ctx, self.plan, options, progress_callback=self._progress,
                                 locks=self.console.locks)
        except FleetError as exc:
            self.error = str(exc)
            self.ended.set()
            self._refresh_counts()
            return
        self.console.runs.append(self)
        # the app's worker, not the screen's: hiding this screen must not stop the action
        self.console.run_worker(self._run(self.runner), name=f"{self.plan.action} (plan {self.plan.id})",
                            group="actions", exit_on_error=False)

    async def _run(self, runner: Runner) -> None:
        try:
            if self.follows_consoles and self.plan.targets:
                await self._follow_consoles()
            await self._run_once(runner)
        finally:
            follower, self._follower = self._follower, None
            if follower is not None:
                await follower.close()
            self.ended.set()
            runs = self.console.runs
            if self in runs:
                runs.remove(self)

    async def _run_once(self, runner: Runner) -> None:
        try:
            result = await runner.run()
        except LockError as exc:  # refused before any step: the lock directory is unsafe, or its guard busy
            self.error = str(exc)  # set here too: a screen closed with escape gets no messages
            self.post_message(RunFinished(None, str(exc)))
            self.console.notify(visible(f"{self.plan.action} not started: {exc}"), severity="error", timeout=10,
                            markup=False)
            return
        except Exception as exc:  # the runner raises only on bugs: say so, never a traceback
            self.error = f"{type(exc).__name__}: {exc}"
            self.post_message(RunFinished(None, f"{type(exc).__name__}: {exc}"))
            self.console.notify(visible(f"{self.plan.action} broke: {exc}"), severity="error", timeout=10, markup=False)
            return
        # finished now, whether or not this screen is shown: a screen closed with escape gets
        # no messages, and the fleet screen clears the marks of a finished action by this
        self.result = result
        self.post_message(RunFinished(result))
        if not self.is_attached or self.console.screen is not self:
            self.console.notify(visible(f"{self.plan.action} finished: {result.summary()}"),
                            severity="information" if result.ok else "warning", timeout=10, markup=False)

    async def _follow_consoles(self) -> None:
        """Open the target nodes' consoles before the run (bounded; see console.ops.console_follow)."""
        from console.ops.console_follow import ConsoleFollower

        def on_line(node: str, line: str) -> None:
            self.post_message(ConsoleLine(node, line))

        self._follower = ConsoleFollower(self.console.consoles, [n.node for n in self.plan.targets], on_line=on_line)
        try:
            await self._follower.start()
        except Exception as exc:  # noqa: BLE001 - the consoles are a view: the reimage runs without them
            self.console.notify(visible(f"reimage: the nodes' consoles are not followed: {exc}"),
                                severity="warning", markup=False)

    def _progress(self, p: NodeProgress) -> None:
        """The runner's callback (on the app loop): post a snapshot, never touch widgets here."""
        self.post_message(NodeProgressed.of(p))
        if p.final and self._follower is not None:
            self._follower.node_ended(p.node)

    @on(ConsoleLine)
    def _console_line(self, message: ConsoleLine) -> None:
        message.stop()
        self.console_lines[message.node] = message.line
        table = self.query_one("#progress", DataTable)
        if message.node in table.rows:
            table.update_cell(message.node, "console", outside(message.line, "dim"), update_width=False)
        if self._cursor_node() == message.node:
            self._refresh_steps()

    # ------------------------------------------------------------ display
    def _cells(self, s: NodeProgressed) -> tuple[Text, Text, Text]:
        shown = s.outcome or s.phase
        if shown in PHASE_STYLE:
            symbol, style = PHASE_STYLE[shown]
        else:
            symbol, style = RUNNING_STYLE
        label = shown + (" (canary)" if s.canary and s.phase != "planned" else "")
        words = s.error if s.error and s.phase in ("failed", "skipped", "cancelled") else (s.detail or "")
        if s.left:
            words = f"{words}; left: {s.left}" if words else f"left: {s.left}"
        detail = outside(words, "red" if s.phase == "failed" else "")
        return outside(s.node), Text(f"{symbol} {label}", style=style), detail

    @on(NodeProgressed)
    def _node_progressed(self, message: NodeProgressed) -> None:
        message.stop()
        self.states[message.node] = message
        table = self.query_one("#progress", DataTable)
        if message.node in table.rows:
            node, phase, detail = self._cells(message)
            table.update_cell(message.node, "phase", phase, update_width=False)
            table.update_cell(message.node, "detail", detail, update_width=False)
        self._refresh_counts()
        if self._cursor_node() == message.node:
            self._refresh_steps()

    @on(RunFinished)
    def _run_finished(self, message: RunFinished) -> None:
        message.stop()
        self.result = message.result
        self.error = message.error
        if message.result is not None:  # the final word on every node (no message may be missed)
            for p in message.result.nodes:
                self._node_progressed(NodeProgressed.of(p))
        self._refresh_counts()
        self.refresh_bindings()

    def counts(self) -> dict[str, int]:
        """Nodes per phase group: planned, running, done, failed, skipped, cancelled."""
        out = {k: 0 for k in COUNT_ORDER}
        for s in self.states.values():
            key = s.outcome or s.phase
            out[key if key in out else "running"] += 1
        return out

    def _refresh_counts(self) -> None:
        counts = self.counts()
        words = "  ".join(f"{v} {k}" for k, v in counts.items() if v or k in ("done", "failed"))
        if self.error is not None:
            status = outside(f"error: {self.error}", "bold red")
        elif self.result is not None:
            ok = self.result.ok
            end = self.result.summary() if self.result.stopped else "finished"
            status = outside(end, "bold green" if ok else "bold red")
            status.append("   escape closes; l: activity", style="dim")
        elif (state := self._cancel_state()) is not None and state[1]:
            status = Text(f"cancelling: aborting {len(state[2])} in flight and rolling back what they started",
                          style="bold magenta")
        elif state is not None and state[0]:
            inflight = state[2]
            if self.decided == "finish":
                status = Text(f"cancelling: no new node starts; letting {len(inflight)} in flight finish "
                              f"(r rolls them back)", style="bold magenta")
            else:
                status = Text(f"cancelling: no new node starts; {len(inflight)} in flight: "
                              f"r roll them back, f let them finish", style="bold magenta")
        else:
            status = self._running_text()
        line = Text(words + "   ")
        line.append_text(status)
        self.query_one("#counts", Static).update(line)

    def _running_text(self) -> Text:
        return Text("running   c cancels", style="bold")

    def _cancel_state(self) -> tuple[bool, bool, list[str]] | None:
        """(cancelled, aborting, the nodes in flight) of the run; None before it started."""
        runner = self.runner
        return None if runner is None else (runner.cancelled, runner.aborting, runner.in_flight())

    def _cancel(self, rollback: bool | None) -> None:
        """Cancel the run as :meth:`Runner.cancel` does (``rollback`` None: the first or second)."""
        if self.runner is not None:
            self.runner.cancel(rollback)

    def _cursor_node(self) -> str | None:
        table = self.query_one("#progress", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowHighlighted, "#progress")
    def _highlighted(self) -> None:
        self._refresh_steps()

    def _refresh_steps(self) -> None:
        name = self._cursor_node()
        s = self.states.get(name) if name else None
        box = self.query_one("#steps", Static)
        if s is None:
            box.update("")
            return
        text = outside(f"{name}: ", "bold")
        if s.left:  # first: what the operator must know of a cancelled or failed node, whole
            text.append("left ", style="bold")
            text.append(visible(s.left))
            text.append("\n  ")
        if not s.steps:
            text.append("no step has run" if s.final else "no step finished yet", style="dim")
        for step, result, detail, seconds in s.steps:
            style = {"ok": "green", "failed": "red", "cancelled": "magenta"}.get(result, "")
            text.append(f"\n  {step}: ")
            text.append(result, style=style)
            text.append(f" ({seconds:.1f} s)" + (f" {visible(detail)}" if detail else ""))
        if s.error:
            text.append(f"\n  {s.phase}: {visible(s.error)}", style="red" if s.phase == "failed" else "yellow")
        line = self.console_lines.get(name) if name else None
        if line:
            text.append("\n  console: ", style="bold")
            text.append(visible(line))
        box.update(text)

    # ------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel shows in the footer only while something runs."""
        if action == "cancel_run":
            return not self.finished
        if action in ("roll_back", "let_finish"):
            state = self._cancel_state()
            return (not self.finished and state is not None and state[0]
                    and not state[1] and (action == "roll_back" or self.decided is None))
        return True

    def action_cancel_run(self) -> None:
        """``c``: stop launching steps (the second time: abort the steps in flight)."""
        state = self._cancel_state()
        if self.finished or state is None:
            self.notify("nothing running to cancel", severity="warning")
            return
        first = not state[0]
        self._cancel(None)
        state = self._cancel_state() or state
        if first and not state[1]:
            inflight = state[2]
            self.notify(f"cancelling {self.plan.action}: no new node will start; {len(inflight)} in flight: "
                        f"r rolls them back, f lets them finish", severity="warning")
        else:
            self.notify("aborting the steps in flight and rolling back what they started", severity="warning")
        self._refresh_counts()
        self.refresh_bindings()

    def action_roll_back(self) -> None:
        """``r`` after a cancel: abort the nodes in flight, rolling back what they started."""
        state = self._cancel_state()
        if state is None or self.finished or not state[0]:
            return
        self.decided = "rollback"
        self._cancel(True)
        self.notify("aborting the steps in flight and rolling back what they started", severity="warning")
        self._refresh_counts()
        self.refresh_bindings()

    def action_let_finish(self) -> None:
        """``f`` after a cancel: the nodes in flight finish; nothing new starts."""
        state = self._cancel_state()
        if state is None or self.finished or not state[0] or self.decided is not None:
            return
        self.decided = "finish"
        self._cancel(False)
        self.notify("the nodes in flight will finish; no new node starts", severity="information")
        self._refresh_counts()
        self.refresh_bindings()

    def action_close(self) -> None:
        """Escape: close when ended; while running, hide (the action goes on, its end is notified)."""
        if not self.finished:
            self.notify(f"{self.plan.action} continues in the background; its end will be notified "
                        "(c on this screen cancels it)", severity="warning")
        self.console.pop_screen()


# --------------------------------------------------------------------------- runs in the site service
class _Feed:
    """A run's news from the service, held until its screen takes them (nothing is lost
    between asking to follow a run and the screen that shows it being mounted)."""

    def __init__(self) -> None:
        self.held: list[proto.Progress | proto.JobEnded] = []
        self.screen: ServiceProgress | None = None

    def __call__(self, msg: proto.Progress | proto.JobEnded) -> None:
        if self.screen is None:
            self.held.append(msg)
        else:
            self.screen.news(msg)


class ServiceProgress(ProgressScreen):
    """A run in the site service (service mode): planned and run there, so it outlives
    this terminal; this screen follows its progress and sends cancels to the service.

    New (``followed`` None): the confirmed plan is run (:class:`~console.service.protocol.RunPlan`,
    with the ticket typed at confirmation).  Followed (:func:`follow_run`, from the jobs
    screen, a run of this operator's or another's): the nodes as the service says they
    stand, then live.  ``c`` / ``r`` / ``f`` go to the service, which says no when the run
    is someone else's and this operator is no admin (its words are shown).

    When the connection to the service ends, the run goes on there; once the console is
    connected again (the app's new poller, ``on_new_poller``), this screen follows the run
    again: the nodes as the service says they stand now (what happened meanwhile), then
    live, or how it ended.
    """

    #: not this process's run: the app's job board and quitting leave it alone
    remote = True

    def __init__(self, plan: Plan, *, followed: dict[str, Any] | None = None, feed: _Feed | None = None,
                 unwatch: Callable[[], None] | None = None) -> None:
        super().__init__(plan)
        self.followed = followed
        self.operator: str | None = str(followed.get("operator")) if followed else None
        self.follows_consoles = False  # the service's consoles are its own business
        self._feed = feed if feed is not None else _Feed()
        self._unwatch = unwatch
        #: the run's cancel state as this screen knows it (the service keeps the real one)
        self._cancelled = bool(followed and followed.get("cancelled"))
        self._aborting = bool(followed and followed.get("aborting"))
        #: why the connection to the service ended while the run went on there
        self.lost: str | None = None
        self._service: ServicePollSource | None = None

    def on_mount(self) -> None:
        """(Textual calls the progress screen's own on_mount too: the table, then the run.)"""
        if self.operator and self.operator != self.console.operator:
            title = self.query_one("#run-title", Static)
            head = f"{self.plan.action}: {len(self.plan.targets)} of {len(self.plan.nodes)} nodes (plan {self.plan.id})"
            if self.plan.ticket:
                head += f", ticket {self.plan.ticket}"
            title.update(outside(f"{head}, started by {self.operator}"))

    def _start(self) -> None:
        if self.started:
            return
        self.started = True
        service = self.console.service
        if service is None:
            self._failed("not connected to the site service")
            return
        self._service = service
        if self._unwatch is None:
            self._unwatch = service.watch(self.plan.id, self._feed)
        service.on_gone.append(self._gone)
        self.console.on_new_poller.append(self._reconnected)
        if self.followed is not None:
            self._snapshot(self.followed)
            self._take_feed()
            return
        self._take_feed()
        self.console.run_worker(self._run_in_service(service), name=f"{self.plan.action} (plan {self.plan.id})",
                                group="actions", exit_on_error=False)

    def _take_feed(self) -> None:
        held, self._feed.held = self._feed.held, []
        self._feed.screen = self
        for msg in held:
            self.news(msg)

    async def _run_in_service(self, service: ServicePollSource) -> None:
        options = self.console.run_options
        sent = {f.name: getattr(options, f.name) for f in fields(options) if f.name != "reimage_timeouts"}
        try:
            await service.request(proto.RunPlan(id=0, plan_id=self.plan.id, options=sent, ticket=self.plan.ticket))
        except (ServiceRefused, ServiceGone) as exc:
            self._failed(str(exc))

    def _failed(self, why: str) -> None:
        self.error = why
        self._stop_watching(ended=True)
        self.ended.set()
        if self.is_attached:
            self.post_message(RunFinished(None, why))
        self.console.notify(visible(f"{self.plan.action} not started: {why}"), severity="error", timeout=10,
                            markup=False)

    def _snapshot(self, data: dict[str, Any]) -> None:
        """A followed run as the service says it stands."""
        for raw in data.get("nodes") or ():
            try:
                self.post_message(NodeProgressed.of(progress_from_json(raw)))
            except proto.ProtocolError:
                continue
        if data.get("ended"):
            self._ended_with(data.get("result"), data.get("error"))

    def news(self, msg: proto.Progress | proto.JobEnded) -> None:
        """A Progress or JobEnded of this run (the service's connection, on the app loop)."""
        if isinstance(msg, proto.Progress):
            try:
                self.post_message(NodeProgressed.of(progress_from_json(msg.node)))
            except proto.ProtocolError:
                return
        else:
            self._ended_with(msg.result, msg.error)

    def _ended_with(self, raw: dict[str, Any] | None, error: str | None) -> None:
        if self.finished:
            return
        result = None
        if raw is not None:
            try:
                result = result_from_json(raw, self.plan)
            except proto.ProtocolError as exc:
                error = error or str(exc)
        if result is None and error is None:
            error = "the service said the run ended, without a result"
        self.result, self.error = result, (None if result is not None else error)
        self._stop_watching(ended=True)
        self.ended.set()
        self.post_message(RunFinished(result, self.error))
        if not self.is_attached or self.console.screen is not self:
            words = result.summary() if result is not None else f"error: {self.error}"
            self.console.notify(visible(f"{self.plan.action} finished: {words}"),
                                severity="information" if result is not None and result.ok else "warning",
                                timeout=10, markup=False)

    def _gone(self, why: str) -> None:
        if not self.finished:
            self.lost = why
            self._stop_watching()
            if self.is_attached:
                self._refresh_counts()

    def _stop_watching(self, *, ended: bool = False) -> None:
        """Stop hearing of the run on this connection (``ended``: and on any later one)."""
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        service = self._service
        if service is not None and self._gone in service.on_gone:
            service.on_gone.remove(self._gone)
        if ended and self._reconnected in self.console.on_new_poller:
            self.console.on_new_poller.remove(self._reconnected)

    def _reconnected(self, poller: object) -> None:
        """The app has a new poller: once it is connected to the service, follow the run again."""
        if self.finished or self.lost is None or not isinstance(poller, ServicePollSource):
            return
        self.console.run_worker(self._follow_again(poller), name=f"follow plan {self.plan.id} again",
                                group="follow", exit_on_error=False)

    async def _follow_again(self, service: ServicePollSource) -> None:
        """Follow the run on ``service`` (a new connection): where it stands, then its news."""
        feed = _Feed()  # news held until the state they follow is shown
        unwatch = service.watch(self.plan.id, feed)
        try:
            data = await service.request(proto.Follow(id=0, plan_id=self.plan.id))
        except ServiceGone as exc:  # gone again: the next poller brings the next try
            unwatch()
            self.lost = str(exc)
            self._refresh_shown()
            return
        except ServiceRefused as exc:  # a service that does not know the run (restarted since)
            unwatch()
            self._ended_with(None, f"the site service cannot say how this run went on: {exc}; "
                                   "l shows the journal")
            return
        if self.finished or service.failure is not None:
            unwatch()
            return
        self._service, self._unwatch, self._feed = service, unwatch, feed
        service.on_gone.append(self._gone)
        self.lost = None
        self._cancelled = self._cancelled or bool(data.get("cancelled"))
        self._aborting = self._aborting or bool(data.get("aborting"))
        self._snapshot(data)
        self._take_feed()
        self._refresh_shown()
        if not self.finished and self.is_attached and self.console.screen is self:
            self.notify(f"connected to the site service again: following plan {self.plan.id}",
                        severity="information")

    def _refresh_shown(self) -> None:
        if self.is_attached:
            self._refresh_counts()
            self.refresh_bindings()

    def _running_text(self) -> Text:
        if self.lost is not None:
            return outside(f"the connection to the site service ended ({self.lost}); the run goes on there, "
                           "followed again once the console is back", "bold yellow")
        return Text("running in the site service   c cancels", style="bold")

    def _cancel_state(self) -> tuple[bool, bool, list[str]] | None:
        if not self.started:
            return None
        inflight = [n for n, s in self.states.items() if not s.final and s.phase != "planned"]
        return self._cancelled, self._aborting, inflight

    def _cancel(self, rollback: bool | None) -> None:
        if rollback is None:
            if self._cancelled:
                self._aborting = True
            self._cancelled = True
        else:
            self._cancelled = True
            self._aborting = self._aborting or rollback
        service = self.console.service
        if service is None:
            self.notify("not connected to the site service: nothing was cancelled", severity="error")
            return
        self.console.run_worker(cancel_in_service(self.console, self.plan.id, rollback), group="cancel",
                                exit_on_error=False)


async def cancel_in_service(app: FleetConsoleApp, plan_id: str, rollback: bool | None) -> bool:
    """Ask the site service to cancel run ``plan_id``; a refusal is shown in its words."""
    service = app.service
    try:
        if service is None:
            raise ServiceGone("not connected to the site service")
        await service.request(proto.Cancel(id=0, plan_id=plan_id, rollback=rollback))
    except (ServiceRefused, ServiceGone) as exc:
        app.notify(visible(str(exc)), title="cancel refused", severity="error", timeout=10, markup=False)
        return False
    return True


async def follow_run(app: FleetConsoleApp, plan_id: str) -> ServiceProgress:
    """A screen following run ``plan_id`` in the site service (anyone's): ServiceRefused /
    ServiceGone when the service will not say."""
    service = app.service
    if service is None:
        raise ServiceGone("not connected to the site service")
    feed = _Feed()
    unwatch = service.watch(plan_id, feed)
    try:
        data = await service.request(proto.Follow(id=0, plan_id=plan_id))
        plan = plan_from_json(data.get("plan"))
    except (ServiceRefused, ServiceGone, proto.ProtocolError):
        unwatch()
        raise
    return ServiceProgress(plan, followed=data, feed=feed, unwatch=unwatch)
