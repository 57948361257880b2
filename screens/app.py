"""FleetConsoleApp: owns the Fleet and the Poller, batches changes into messages.

The poller runs in a process of its own (:class:`console.live.pollproc.PollerProcess`), so
polling thousands of BMCs never sits between a keypress and the screen; the states it
observes land in the app's Fleet, and a poll asked for now goes to it
(:meth:`FleetConsoleApp.poll_node_now`).  The app knows it only as a
:class:`~console.live.source.PollSource`: tests give it an in-process
:class:`~console.live.poller.Poller` instead (``poll=False``) and drive that.
Twenty times a second the app drains the Fleet's changed names into one
:class:`~screens.common.FleetChanged` message per screen, so a fleet of thousands stays
smooth: screens update only the rows that changed.

Quitting never silently aborts work: ``q`` / ctrl+q with actions running ask first
(:class:`screens.quit.QuitScreen`); aborting then cancels them as ``c`` ``c`` does
(rolling back what can be undone) before the app ends.  A signal cannot ask: SIGHUP
(the terminal went away), SIGTERM and SIGINT abort the running actions the same way,
the journal saying why ("terminal hung up"), then log out of every BMC and end.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import App, ScreenStackError
from textual.binding import Binding
from textual.reactive import Reactive
from textual.worker import Worker, WorkerState

from console.live.fleet import Fleet
from console.live.freshness import Freshness, PollAge
from console.live.poller import PollConfig, Poller
from console.live.pollproc import PollerProcess
from console.live.source import PollSource, PollSourceFactory
from console.ops.jobs import JobBoard
from console.ops.journal import current_operator
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.ops.runner import Runner
from console.service.client import ServicePollSource
from console.site import SiteContext
from console.text import visible
from screens.actions import ActionCommands, start_action
from screens.common import ANSI_DARK, FleetChanged
from screens.fleet import FleetScreen
from screens.jobs import board_of
from screens.palette import FleetCommands
from screens.progress import ProgressScreen
from screens.table import FleetTable
from screens.who import watch_who

if TYPE_CHECKING:
    from console.serial.broker import ConsoleBroker

__all__ = ["FleetConsoleApp", "make_app", "run_app"]

log = logging.getLogger(__name__)

#: screens other modules provide: name -> (module, class)
SCREENS_BY_NAME = {
    "racks": ("screens.rack", "RackScreen"),
    "switches": ("screens.switches", "SwitchesScreen"),
    "node": ("screens.node", "NodeScreen"),
    "activity": ("screens.activity", "ActivityScreen"),
    "jobs": ("screens.jobs", "JobsScreen"),
    "audit": ("screens.audit", "AuditScreen"),
    "timeline": ("screens.timeline", "TimelineScreen"),
    "who": ("screens.who", "WhoScreen"),
}


class FleetConsoleApp(App):
    """The operator console."""

    TITLE = "fleet-console"
    CSS_PATH = "app.tcss"
    ansi_theme_dark = Reactive(ANSI_DARK, init=False)  # status colours that read (screens.common)
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False),
                Binding("question_mark", "help", "Help"),
                Binding("p", "power_menu", "Power"),
                Binding("x", "pxe", "PXE boot"),
                Binding("i", "reimage", "Reimage"),
                Binding("l", "activity", "Activity"),
                Binding("c", "consoles", "Console", show=False),  # in ? help and the palette
                Binding("J", "jobs", "Jobs", show=False),
                Binding("A", "audit", "Image audit", show=False),
                Binding("T", "timeline", "Timeline", show=False),
                Binding("W", "who", "Who", show=False)]
    COMMANDS = {FleetCommands, ActionCommands}  # Textual's own come from FleetCommands, after the fleet's
    #: the fleet screen is the bottom of the stack.  (Pushed over Textual's blank default
    #: screen, it was repainted whole on every change: the screen beneath the top one
    #: counts as a background, and its refreshes became full-screen updates.)
    MODES = {"fleet": FleetScreen}
    DEFAULT_MODE = "fleet"
    #: how long after the poller's process died a new one starts
    POLLER_RESTART_S = 5.0
    #: full garbage collections wait for a pause this long in the operator's input ...
    GC_IDLE_S = 0.5
    #: ... and come at most this often, or this long after the last one whatever happens
    GC_EVERY_S, GC_AT_LEAST_S = 10.0, 60.0

    #: how long quitting waits for aborted actions to roll back (each undo is bounded itself)
    ABORT_WAIT_S = 120.0
    #: the signals that end the console (no one to ask): name said in the journal
    ENDING_SIGNALS = {signal.SIGHUP: "terminal hung up", signal.SIGTERM: "terminated (SIGTERM)",
                      signal.SIGINT: "interrupted (SIGINT)"}

    def __init__(self, ctx: SiteContext, *, run_options: RunOptions | None = None, locks: Locks | None = None,
                 read_only: bool = False, poll_config: PollConfig | None = None,
                 poll: bool = True, clock: Callable[[], float] = time.time, handle_signals: bool = False,
                 poller: PollSourceFactory | None = None, mode: str = "embedded",
                 operator: str | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        #: how the actions started here run (fan-out, time limits): the CLI's defaults unless given
        self.run_options = run_options if run_options is not None else RunOptions()
        #: the operator locks actions take (None: the site's own)
        self.locks = locks
        #: the progress screens whose action has not ended (they add and remove themselves)
        self.runs: list[ProgressScreen] = []
        #: this console's running and recent actions (:func:`screens.jobs.board_of` makes it)
        self.job_board: JobBoard | None = None
        self._handle_signals = handle_signals
        self._ending = False
        self.read_only = read_only
        self.clock = clock
        self.fleet = Fleet(ctx.site, clock=clock)
        self.poll_config = poll_config or PollConfig()
        #: builds what keeps the Fleet fresh: by default the poller's own process when
        #: polling in the background (``poll``), else a Poller on this loop that the caller drives
        self._make_poller: PollSourceFactory = poller or (PollerProcess if poll else Poller)
        self.poller: PollSource = self._make_poller(ctx.site, self.fleet, ctx.secrets, self.poll_config)
        #: start ``poller`` after the first paint (and a new one when it fails)
        self._poll = poll
        self._polling = False
        #: the stale banner and the polls' age, kept up to date as changes are drained
        self.freshness = Freshness(self.fleet)
        self._restarting = False
        #: the garbage collector's thresholds before this app changed them (on_mount)
        self._gc_thresholds: tuple[int, int, int] | None = None
        self._last_input = self._last_full_gc = time.monotonic()
        #: changes held for the screens beneath the top one: screen -> (nodes, switches)
        self._held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        #: where the live state comes from: "embedded" (this process polls) or "via service (pid N)",
        #: said in the subtitle when it is a service (embedded is the console as it always was)
        self.mode = mode
        self.sub_title = (f"site {visible(ctx.site.name)}" + (f"  {visible(mode)}" if mode != "embedded" else "")
                          + ("  [READ-ONLY]" if read_only else ""))
        #: the serial consoles this process watches, one session per node (made on first use)
        self._consoles: ConsoleBroker | None = None
        #: who types and acts from this console (journal and console holders)
        self.operator = visible(operator) if operator else current_operator()
        #: the site service's sessions (service mode; :func:`screens.who.watch_who` keeps it), else None
        self.who: list[dict[str, Any]] | None = None
        #: told of each new poller :meth:`_restart_polling` starts (a client of the site service:
        #: connected again; a progress screen follows its run in the service again)
        self.on_new_poller: list[Callable[[PollSource], None]] = []

    @property
    def service(self) -> ServicePollSource | None:
        """The site service this console is a client of (its actions run there); None: embedded."""
        poller = self.poller
        return poller if isinstance(poller, ServicePollSource) else None

    def on_mount(self) -> None:
        # No automatic full collection: one walks every object not frozen (tens of ms at
        # thousands of nodes while states stream in), and it came in mid-keystroke.
        # The young generations stay automatic; _collect does the full ones in a pause.
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(self._gc_thresholds[0], self._gc_thresholds[1], 1_000_000)
        self.set_interval(0.25, self._collect)
        self.call_after_refresh(self.freeze_heap)
        if self._poll:
            # after the first paint: the inventory table shows at once, then fills in
            self.call_after_refresh(self._start_polling)
        self.set_interval(0.05, self.drain)
        board_of(self)  # running work on the rows, others' locks, facts read again after an action
        watch_who(self)  # service mode: who else is connected, and what they hold
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            for sig, why in self.ENDING_SIGNALS.items():
                try:
                    loop.add_signal_handler(sig, self._signalled, why)
                except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                    pass

    def freeze_heap(self) -> None:
        """Take every object alive now out of the garbage collector's sight (``gc.freeze``).

        At 5,000 nodes the inventory, the table's rows and the filter's index are
        hundreds of thousands of long-lived objects; a full collection walking them
        took 30-215 ms, a UI frozen mid-keystroke (``bench/tui_scale.py``).  Frozen
        objects are never collected: call this when what exists is meant to live
        (after the first table, and when the filter's index is built).
        """
        gc.freeze()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self._last_input = time.monotonic()
        await super().on_event(event)

    def input_quiet_for(self) -> float:
        """Seconds since the operator's last key or mouse event."""
        return time.monotonic() - self._last_input

    def _collect(self) -> None:
        """A full garbage collection when the operator paused (or it is long overdue)."""
        now = time.monotonic()
        since = now - self._last_full_gc
        if since >= self.GC_AT_LEAST_S or (since >= self.GC_EVERY_S and now - self._last_input >= self.GC_IDLE_S):
            gc.collect()
            self._last_full_gc = time.monotonic()

    def _start_polling(self) -> None:
        if not self._polling and self.is_running:
            self._polling = True
            self.poller.start()

    def _restart_polling(self) -> None:
        """The poller failed (its process killed, out of memory, a bug): start a new one."""
        self._restarting = False
        if self.poller.failure and self.is_running:
            log.warning("restarting the poller: %s", self.poller.failure)
            self.poller = self._make_poller(self.ctx.site, self.fleet, self.ctx.secrets, self.poll_config)
            self._polling = False
            self._start_polling()
            for callback in list(self.on_new_poller):
                callback(self.poller)

    def drain(self) -> None:
        """Send the batch of changes since the last drain to the screen on top; screens
        beneath get theirs, merged, when they are on top again (a screen updated under
        another is repainted through it, whole: at thousands of nodes, every 50 ms)."""
        failure = self.poller.failure
        if failure and not self._restarting:
            self._restarting = True
            self.notify(visible(f"polling stopped: {failure}; restarting it in {self.POLLER_RESTART_S:.0f} s"),
                        severity="error", timeout=8, markup=False)
            self.set_timer(self.POLLER_RESTART_S, self._restart_polling)
        try:
            top = self.screen
        except ScreenStackError:  # the app is closing: its screens are gone, this timer not yet
            return
        nodes, switches = self.fleet.drain_changes()
        self.freshness.track(nodes)
        held = self._held.pop(top, None)
        if held is not None:
            nodes, switches = held[0] | nodes, held[1] | switches
        if not nodes and not switches:
            return
        top.post_message(FleetChanged(set(nodes), set(switches)))
        for screen in self.screen_stack:
            if screen is not top:
                waiting = self._held.setdefault(screen, (set(), set()))
                waiting[0].update(nodes)
                waiting[1].update(switches)

    def poll_freshness(self) -> PollAge:
        """How current the states are: :meth:`console.live.freshness.Freshness.poll_age`."""
        return self.freshness.poll_age()

    def staleness(self) -> str | None:
        """A banner text when the poller stopped or is behind or nothing answers, else None."""
        return self.freshness.staleness(power_interval=self.poll_config.power_interval,
                                        failure=self.poller.failure, now=self.clock())

    def open_node(self, name: str) -> None:
        """Open the node detail screen."""
        self.open_screen("node", name)

    def open_screen(self, which: str, *args) -> None:
        """Push one of the other screens (a notification if it is not available).

        Racks and switches opened without a rack or switch named open where the operator
        is: on the node under the cursor (or shown) on the current screen."""
        import importlib

        module, cls = SCREENS_BY_NAME[which]
        try:
            screen_cls = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            self.notify(f"the {which} screen is not available yet", severity="warning")
            return
        if not args and which in ("racks", "switches"):
            self.push_screen(screen_cls(node=self.current_node()))
            return
        self.push_screen(screen_cls(*args))

    def current_node(self) -> str | None:
        """The node the operator is on: under the fleet table's or the racks' cursor, on
        the switch port under the cursor, or the one node detail shows."""
        screen = self.screen
        if isinstance(screen, FleetScreen):
            return screen.query_one(FleetTable).cursor_key
        where = getattr(screen, "current_node", None)  # racks, switches
        if callable(where):
            return where()
        shown = getattr(screen, "node_name", None)  # node detail
        return shown if isinstance(shown, str) else None

    def action_racks(self) -> None:
        """``r``: the racks, on the current node."""
        self.open_screen("racks")

    def action_switches(self) -> None:
        """``w``: the switches, on the current node's switch and port."""
        self.open_screen("switches")

    #: the actions ``--read-only`` turns off
    ACTING = frozenset({"power_menu", "pxe", "reimage"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Read-only: the acting keys are shown dimmed in the footer (and say why when pressed)."""
        if self.read_only and action in self.ACTING:
            return None
        return True

    def on_key(self, event: events.Key) -> None:
        """A key of a dimmed acting binding (read-only) reached the app unhandled: say why."""
        if not self.read_only:
            return
        for binding in Binding.make_bindings(self.BINDINGS):
            if binding.action in self.ACTING and event.key == binding.key:
                event.stop()
                getattr(self, f"action_{binding.action}")()  # which refuses, naming read-only mode
                return

    def action_power_menu(self) -> None:
        """``p``: power on/off/soft/cycle/reset the marked nodes, else the one under the cursor."""
        start_action(self, "power")

    def action_pxe(self) -> None:
        """``x``: PXE reboot (boot override PXE once, then reset or power on)."""
        start_action(self, "pxe")

    def action_reimage(self) -> None:
        """``i``: reimage, choosing the image from the site's catalog."""
        start_action(self, "reimage")

    def action_activity(self) -> None:
        """``l``: the Activity screen (this site's journal)."""
        from screens.activity import ActivityScreen

        if not isinstance(self.screen, ActivityScreen):
            self.open_screen("activity")

    @property
    def consoles(self) -> ConsoleBroker:
        """The process's serial-console broker (one session per node, shared by every pane); a
        client of the site service uses the service's (one session per node for every operator)."""
        if self._consoles is None:
            if isinstance(self.poller, ServicePollSource):
                from typing import cast

                from console.service.consoles import RemoteConsoleBroker

                remote = RemoteConsoleBroker(self.poller.path, token=self.poller.token, client="tui")
                self._consoles = cast("ConsoleBroker", remote)  # the same interface (console/service/consoles.py)
            else:
                from console.serial.broker import ConsoleBroker

                self._consoles = ConsoleBroker(self.ctx)
        return self._consoles

    def action_consoles(self) -> None:
        """``c``: watch the serial consoles of the marked nodes, else the one under the cursor."""
        from screens.actions import _acting_screen, targets_of
        from screens.console import MAX_PANES, ConsoleScreen

        screen = _acting_screen(self)
        if isinstance(screen, ConsoleScreen):
            return
        names = targets_of(screen)
        if not names:
            self.notify("console: no node under the cursor and none marked", severity="warning")
            return
        if len(names) > MAX_PANES:
            self.notify(f"console: {len(names)} nodes marked; the first {MAX_PANES} are shown", severity="warning")
        self.push_screen(ConsoleScreen(names))

    async def attach_console(self, node: str) -> None:
        """The whole terminal on ``node``'s console (the app suspended); back here on ``~.``.

        A signal that ended the attach (SIGHUP: the operator's SSH went away) is raised
        again once the terminal is the app's, so the console ends as it would have."""
        from console.ops.journal import Journal
        from console.serial.attach import attach_session

        session = await self.consoles.session(node)
        # a client of the site service: the service journals its consoles itself
        journal = None if self.service is not None else Journal(self.ctx.site.name, operator=self.operator)
        with self.suspend():
            result = await attach_session(session, who=self.operator, read_only=self.read_only or None,
                                          journal=journal)
        self.refresh(layout=True)
        if result.how == "signal" and result.signal is not None:
            signal.raise_signal(result.signal)
        elif result.how not in ("left", "eof"):
            self.notify(visible(f"{node}: console {result.how}" + (f": {result.detail}" if result.detail else "")),
                        severity="warning", markup=False)

    def action_jobs(self) -> None:
        """``J``: this console's running and recent actions (enter reopens one, ``c`` cancels)."""
        from screens.jobs import JobsScreen

        if not isinstance(self.screen, JobsScreen):
            self.open_screen("jobs")

    def action_who(self) -> None:
        """``W``: who is connected to the site service, and what each holds (service mode)."""
        from screens.who import WhoScreen

        if not isinstance(self.screen, WhoScreen):
            self.open_screen("who")

    def action_audit(self) -> None:
        """``A``: the image audit (desired vs assigned vs running image; reimage the drifted)."""
        from screens.audit import AuditScreen

        if not isinstance(self.screen, AuditScreen):
            self.open_screen("audit")

    def action_timeline(self) -> None:
        """``T``: the incident timeline of the node the operator is on (cursor, racks, detail)."""
        from screens.timeline import TimelineScreen

        if isinstance(self.screen, TimelineScreen):
            return
        name = self.current_node()
        if name is None:
            self.notify("timeline: no node under the cursor", severity="warning")
            return
        self.open_screen("timeline", name)

    def action_help(self) -> None:
        """``?``: help for the current screen (a second ``?`` closes it)."""
        from screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen(self.screen))

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(visible(f"{event.worker.name}: {event.worker.error}"), severity="error", timeout=10,
                        markup=False)

    def running_runners(self) -> list[Runner]:
        """The runners of the actions still running (started from any progress screen)."""
        return [run.runner for run in self.runs if run.runner is not None and not run.ended.is_set()]

    async def action_quit(self) -> None:
        """``q`` / ctrl+q: quit; with actions running, ask first (the default keeps them running)."""
        from screens.quit import QuitScreen

        if self._ending:
            return
        runners = self.running_runners()
        if not runners:
            await self._end()
            return
        if isinstance(self.screen, QuitScreen):
            return

        def answered(abort: bool | None) -> None:
            if abort:
                self.run_worker(self._end("console quit by the operator"), name="quit", group="quit")
            else:
                self.notify("still running; the console stays open", timeout=4)

        self.push_screen(QuitScreen(runners), answered)

    def _signalled(self, why: str) -> None:
        """SIGHUP, SIGTERM, SIGINT: nobody can be asked; abort running actions cleanly, then end."""
        log.warning("console ending: %s", why)
        hangup = why == self.ENDING_SIGNALS[signal.SIGHUP]
        if hangup and self._driver is not None:
            # The terminal is gone: Textual's output thread dies on its first write (EIO) and
            # later writes wait forever for room in its queue, freezing this loop before the
            # rollback is done.  Nothing can be shown any more: write nowhere.
            # (replacing the driver's method on this one object is the point: no Textual API for it)
            self._driver.write = lambda data: None  # type: ignore[method-assign]
        if not self._ending:
            asyncio.get_running_loop().create_task(self._end(why, hard=hangup))

    async def abort_runs(self, why: str) -> None:
        """Abort every running action with rollback (``why`` goes to the journal); wait, bounded."""
        runs = [run for run in self.runs if not run.ended.is_set()]
        for run in runs:
            if run.runner is not None:
                run.runner.cancel(rollback=True, reason=why)
        waits = [run.ended.wait() for run in runs]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), self.ABORT_WAIT_S)
            except TimeoutError:
                log.error("actions did not finish rolling back within %g s: %s", self.ABORT_WAIT_S,
                          ", ".join(run.plan.id for run in runs if not run.ended.is_set()))

    async def _end(self, why: str | None = None, *, hard: bool = False) -> None:
        """Abort what runs (when ``why`` is given), log out of every BMC, end the app.

        ``hard`` (the terminal hung up): then leave at once; Textual's own shutdown would
        restore a terminal that is gone, and wait on its dead output thread.
        """
        if self._ending:
            return
        self._ending = True
        if why is not None:
            await self.abort_runs(why)
        await self.close_poller()
        await self.close_consoles()
        if hard:
            logging.shutdown()
            os._exit(128 + signal.SIGHUP)
        self.exit()

    async def on_unmount(self) -> None:
        if self._gc_thresholds is not None:
            gc.set_threshold(*self._gc_thresholds)
        await self.close_poller()
        await self.close_consoles()

    async def close_consoles(self) -> None:
        """Leave every serial console (deactivate SOL, close SSH channels)."""
        if self._consoles is not None:
            broker, self._consoles = self._consoles, None
            await broker.close()

    async def poll_node_now(self, name: str, jobs: Iterable[str]) -> None:
        """Poll ``jobs`` of node ``name`` now; in the Fleet on return."""
        await self.poller.poll_node_now(name, jobs)

    async def poll_switch_now(self, name: str) -> None:
        """Poll switch ``name`` now; in the Fleet on return."""
        await self.poller.poll_switch_now(name)

    async def close_poller(self) -> None:
        """Stop polling and log out of every BMC."""
        await self.poller.aclose()


def make_app(ctx: SiteContext, **kwargs: Any) -> FleetConsoleApp:
    """Build the app (tests use this)."""
    return FleetConsoleApp(ctx, **kwargs)


def run_app(ctx: SiteContext, *, read_only: bool = False, **kwargs: Any) -> int:
    """Run the TUI until the operator quits; sessions are logged out on the way out.
    ``kwargs`` go to the app (a site service's ``poller``, ``mode`` and ``operator``)."""
    make_app(ctx, read_only=read_only, handle_signals=True, **kwargs).run()
    return 0
