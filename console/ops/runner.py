"""Acting on the fleet, second half: bounded, journalled, cancellable execution of a
:class:`~console.ops.actions.Plan`.

:class:`Runner` executes a plan: at most ``fanout`` nodes at a time (a semaphore),
``canary`` nodes first (all must finish verified and, where power stays on,
healthy: BMC health not critical and the OS answering over SSH, before the rest
start), no new node after ``max_failures`` failures, power-on
requests spaced by ``stagger`` seconds (xCAT's ``syspowerinterval``: a rack must
not draw its inrush current at once), and :meth:`Runner.cancel` (Ctrl-C) stops
launching steps; a second cancel aborts what is in flight, rolling back what it can
(a reimage's previous assignment restored, its boot override cleared; a PXE boot's
override cleared before the reboot).  ``cancel(rollback=True)`` aborts at once,
``cancel(rollback=False)`` lets the nodes in flight finish; ``on_cancel`` makes the
first plain cancel do one or the other.  Every node that ends cancelled or failed
records what it was left with (:class:`~console.ops.leftover.Left`).  Each node goes
``planned`` → one phase per step → ``done`` / ``failed`` / ``skipped`` /
``cancelled``.  Every step is journalled twice (started, then its result) in
:mod:`console.ops.journal`.

Steps are verified by reading back: power by polling the power state until it
is what the step promises (BMCs apply changes seconds later); a PXE boot override
by reading it back before the reboot (vendors silently revert it).  One that reads
back the right device but continuous, or not flagged valid (:mod:`console.ops.bootquirk`),
is accepted with a note, and a ``clear-boot`` step clears it once the provisioner saw
the node boot (or when the action fails first), so it does not PXE boot for ever.  IPMI and
Redfish are the same here: everything goes through
:class:`~console.drivers.bmc.BmcDriver`.

A failed step raises :class:`~console.errors.ActionError` inside the runner and
becomes the node's ``failed`` state with the reason; the runner itself raises
only on programming errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from console.drivers import open_bmc
from console.drivers.bmc import BmcDriver, PowerState
from console.errors import ActionError, DriverError, FleetError
from console.ops.actions import NodePlan, Plan, failure_reason, plural, reimage_module, resolve_image
from console.ops.bootquirk import AfterBoot, clear_override
from console.ops.journal import Journal, current_operator
from console.ops.leftover import Left
from console.ops.locks import LockCancelled, LockError, Locks
from console.ops.options import OnCancel, RunOptions
from console.ops.steps import CLEAR_BOOT, FINAL, RUNS, NodeState, Result, StepName
from console.site import SiteContext
from inventory.errors import SecretError
from inventory.model import Node
from inventory.ranges import compress, natural_key

__all__ = ["NodeProgress", "RunOptions", "RunResult", "Runner", "StepRecord"]

#: seconds the read-back of what an aborted or failed node was left with may take
LEFT_READ_S = 5.0


@dataclass
class StepRecord:
    """What one step did on one node."""

    step: str  # a StepName
    result: Result
    detail: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Stable JSON record."""
        return {"step": self.step, "result": self.result, "detail": self.detail, "seconds": round(self.seconds, 3)}


@dataclass
class NodeProgress:
    """A node's progress through a run: ``phase`` is planned, a step or phase name, or final."""

    node: str
    phase: str = NodeState.PLANNED  # a NodeState or the StepName running
    detail: str | None = None
    error: str | None = None
    started: float | None = None  # time.time()
    finished: float | None = None
    steps: list[StepRecord] = field(default_factory=list)
    canary: bool = False
    #: what a cancelled or failed node was left with (None while running, or when done)
    left: Left | None = None

    @property
    def outcome(self) -> str:
        """The final state in words the header counts: done, failed, skipped, not started,
        rolled back, aborted (cancelled in flight, not all undone); else the phase."""
        if self.phase == "cancelled":
            if self.left is not None and self.left.untouched:
                return "not started"
            if self.left is not None and self.left.rolled_back:
                return "rolled back"
            return "aborted"
        return self.phase

    @property
    def final(self) -> bool:
        """True once the node is done, failed, skipped or cancelled."""
        return self.phase in FINAL

    def to_json(self) -> dict[str, Any]:
        """Stable JSON record (``result`` is ``running`` until the node is final)."""
        return {"node": self.node, "result": self.phase if self.final else "running", "phase": self.phase,
                "error": self.error, "detail": self.detail, "canary": self.canary,
                "outcome": self.outcome if self.final else None,
                "left": self.left.to_json() if self.left is not None else None,
                "started": _iso(self.started), "finished": _iso(self.finished),
                "steps": [s.to_json() for s in self.steps]}


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RunResult:
    """How a run ended: every node's final state, counts, and why it stopped early (if it did)."""

    plan: Plan
    nodes: list[NodeProgress]
    stopped: str | None = None  # "cancelled", "stopped after 2 failures", "canary failed: ..."

    def counts(self) -> dict[str, int]:
        """Nodes per final state: done, failed, skipped, cancelled."""
        out: dict[str, int] = {k: 0 for k in FINAL}
        for n in self.nodes:
            out[n.phase] = out.get(n.phase, 0) + 1
        return out

    def outcomes(self) -> dict[str, int]:
        """Nodes per outcome (:attr:`NodeProgress.outcome`), in a fixed order, zeros left out."""
        order = ("done", "rolled back", "aborted", "failed", "not started", "skipped")
        out = {k: 0 for k in order}
        for n in self.nodes:
            out[n.outcome] = out.get(n.outcome, 0) + 1
        return {k: v for k, v in out.items() if v}

    def summary(self) -> str:
        """How the run ended, agreeing with its rows: e.g. "cancelled: 1 done, 1 rolled back,
        2 not started" (the header of the progress screen and the CLI's last line)."""
        counts = ", ".join(f"{v} {k}" for k, v in self.outcomes().items())
        return f"{self.stopped}: {counts}" if self.stopped else counts

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing was cancelled, and every skip was "nothing to do"."""
        planned = {n.node: n for n in self.plan.nodes}
        for n in self.nodes:
            if n.phase in (NodeState.FAILED, NodeState.CANCELLED):
                return False
            if n.phase == NodeState.SKIPPED:
                skip = planned[n.node].skip  # None: skipped at run time (locked meanwhile)
                if skip is None or not skip.nothing_to_do:
                    return False
        return True

    def to_json(self) -> dict[str, Any]:
        """Stable JSON: the plan, how the run ended, every node's steps (no secrets in it)."""
        return {"plan": self.plan.to_json(), "stopped": self.stopped, "ok": self.ok, "counts": self.counts(),
                "outcomes": self.outcomes(), "summary": self.summary(),
                "nodes": [n.to_json() for n in self.nodes]}


class Runner:
    """Executes one :class:`Plan` (see the module docstring) as ``options`` say
    (:class:`~console.ops.options.RunOptions`: fan-out, canaries, pacing, time limits).

    ``operator`` names the locks and journal entries (default: the journal's, else
    the login name).  ``progress_callback(NodeProgress)`` is called on the runner's
    loop at every change.  A canary is done when its steps are verified and, where power
    stays on, it is healthy: no critical BMC health and its OS answering over SSH within
    ``options.canary_timeout``.
    """

    def __init__(self, ctx: SiteContext, plan: Plan, options: RunOptions | None = None, *,
                 operator: str | None = None, journal: Journal | None = None,
                 progress_callback: Callable[[NodeProgress], None] | None = None,
                 locks: Locks | None = None) -> None:
        self.ctx = ctx
        self.plan = plan
        self.options = options = options if options is not None else RunOptions()
        self.fanout = options.fanout
        self.canary = options.canary
        self.max_failures = options.max_failures
        self.stagger = options.stagger
        self.operator = operator or (journal.operator if journal is not None else current_operator())
        self.journal = journal if journal is not None else Journal(ctx.site.name, operator=self.operator)
        self.locks = locks if locks is not None else Locks(ctx.site.name, owner=self.operator)
        self.progress_callback = progress_callback
        self.poll_interval = options.poll_interval
        self.request_timeout = options.request_timeout
        #: node -> (read-back quirk, to clear after boot): verify-boot adds, clear-boot takes
        self.after_boot: dict[str, tuple[str, AfterBoot]] = {}
        #: node -> what the plan result says about its boot override
        self.boot_notes: dict[str, str] = {}
        self.progress: dict[str, NodeProgress] = {n.node: NodeProgress(n.node) for n in plan.nodes}
        self._cancels = 0
        #: what the first plain cancel does: None (stop launching; a second aborts), finish, rollback
        self.on_cancel: OnCancel | None = options.on_cancel
        self._aborting = False
        self._aborted: set[str] = set()
        self._failures = 0
        self._stopped: str | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stagger_lock: asyncio.Lock | None = None
        self._last_power_on = -1e9
        self._ran = False

    # ------------------------------------------------------------- control
    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancels > 0

    @property
    def aborting(self) -> bool:
        """True once the steps in flight are being aborted (and rolled back)."""
        return self._aborting

    def cancel(self, rollback: bool | None = None, reason: str | None = None) -> None:
        """Stop launching steps; and then:

        - ``rollback=True``: abort the steps in flight now, undoing what they started;
        - ``rollback=False``: let the nodes in flight finish;
        - ``None``: as ``on_cancel`` says, else (the default) wait: a second cancel aborts.

        ``reason`` (e.g. "terminal hung up") is said in the journal and the result.
        Call it on the runner's event loop (from another thread use
        ``loop.call_soon_threadsafe(runner.cancel)``).
        """
        self._cancels += 1
        if self._stopped is None or self._stopped == "cancelled":
            self._stopped = f"cancelled: {reason}" if reason else "cancelled"
        if rollback is None:
            if self._cancels >= 2:
                rollback = True
            elif self.on_cancel is not None:
                rollback = self.on_cancel is OnCancel.ROLLBACK
        if rollback is None:
            how = "no new node starts; the ones in flight go on until told to finish or roll back"
        elif rollback:
            how = "no new node starts; the ones in flight are aborted and rolled back"
        else:
            how = "no new node starts; the ones in flight are let finish"
        if not self._ran or (rollback and self._aborting):
            pass
        else:
            self._journal(None, "cancel", "cancelled", error=reason, detail=how)
        if rollback:
            self._aborting = True
            for node, task in self._tasks.items():
                if not task.done() and node not in self._aborted:
                    self._aborted.add(node)  # once: a second cancel would cut its rollback short
                    task.cancel()

    def in_flight(self) -> list[str]:
        """Nodes with a step running now."""
        return sorted((n for n, t in self._tasks.items() if not t.done()), key=natural_key)

    # ------------------------------------------------------------- journal + progress
    def _journal(self, node: str | None, step: str, result: str, *, error: str | None = None,
                 detail: str | None = None) -> None:
        self.journal.write(action=self.plan.action, node=node, step=step, result=result, error=error,
                           ticket=self.plan.ticket, plan=self.plan.id, detail=detail, operator=self.operator)

    def _changed(self, prog: NodeProgress) -> None:
        if self.progress_callback is not None:
            try:
                self.progress_callback(prog)
            except Exception:  # noqa: BLE001 - a broken display must not break the action
                pass

    def _finish(self, prog: NodeProgress, phase: NodeState, *, error: str | None = None,
                detail: str | None = None) -> None:
        prog.phase = phase
        prog.error = error
        if detail is not None:
            prog.detail = detail
        prog.finished = time.time()
        self._changed(prog)

    # ------------------------------------------------------------- run
    async def run(self) -> RunResult:
        """Run the plan once; returns every node's outcome (never raises for a node's failure)."""
        if self._ran:
            raise RuntimeError("a Runner runs its plan once")
        self._ran = True
        self._stagger_lock = asyncio.Lock()
        plan = self.plan
        br = plan.blast_radius()
        forced = [np.node for np in plan.targets if np.protected] if plan.force_protected else []
        self._journal(None, "plan", "started",
                      detail=f"{br['nodes']} nodes, racks {','.join(br['racks']) or '-'}, "
                             f"switches {','.join(br['switches']) or '-'}; skipped {len(plan.skipped)}; "
                             f"fanout {self.fanout}, canary {self.canary}, max failures {self.max_failures or '-'}, "
                             f"stagger {self.stagger:g} s"
                             + (f"; PROTECTED included (force-protected): {compress(forced)}" if forced else ""))
        for np in plan.skipped:
            prog = self.progress[np.node]
            self._journal(np.node, "plan", Result.SKIPPED, error=np.skip_reason)
            self._finish(prog, NodeState.SKIPPED, error=np.skip_reason)
        try:
            targets = await self._lock_targets()
        except LockError as exc:  # unsafe lock directory, or its guard held too long: nothing was done
            self._journal(None, "summary", "failed", error=str(exc))
            raise
        renewer = asyncio.create_task(self._renew_locks())
        try:
            await self._launch(targets)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._release_locks()
        result = RunResult(plan, [self.progress[n.node] for n in plan.nodes], self._stopped)
        self._journal(None, "summary", "ok" if result.ok else ("cancelled" if self.cancelled else "failed"),
                      error=self._stopped, detail=", ".join(f"{v} {k}" for k, v in result.outcomes().items()))
        return result

    async def _lock_targets(self) -> list[NodePlan]:
        """Lock every target; ones locked meanwhile by someone else become skipped.

        Taking locks waits for other processes (up to ``locks.wait``): it runs in a
        thread, so the loop it is called from (the TUI's) keeps going meanwhile.
        """
        targets = list(self.plan.targets)
        while targets:
            try:
                held = await asyncio.to_thread(self.locks.acquire, [n.node for n in targets], action=self.plan.action,
                                               plan=self.plan.id, stop=lambda: self._cancels > 0)
            except LockCancelled:  # Ctrl-C, SIGTERM or `c` while waiting for another process: nothing started
                self._not_started(targets, "cancelled")
                return []
            if not held:
                break
            for np in [n for n in targets if n.node in held]:
                reason = held[np.node].describe()
                self._journal(np.node, "lock", "skipped", error=reason)
                self._finish(self.progress[np.node], NodeState.SKIPPED, error=reason)
            targets = [n for n in targets if n.node not in held]
        return targets

    async def _renew_locks(self) -> None:
        interval = max(1.0, self.locks.ttl / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.locks.renew)
            except LockError as exc:  # tried again next interval; the lock still has ttl/3 left or more
                self._journal(None, "lock", "failed", error=f"renewing the locks: {exc}")

    async def _release_locks(self) -> None:
        try:
            await asyncio.to_thread(self.locks.release)
        except LockError as exc:  # the files stay until they expire or this process ends
            self._journal(None, "lock", "failed", error=f"releasing the locks: {exc}")

    def _stop_reason(self) -> str | None:
        if self.cancelled:
            return self._stopped or "cancelled"
        if self.max_failures is not None and self._failures >= self.max_failures:
            return (f"stopped after {self._failures} failure{plural(self._failures)} "
                    f"(--max-failures {self.max_failures})")
        return self._stopped

    async def _launch(self, targets: list[NodePlan]) -> None:
        sem = asyncio.Semaphore(self.fanout)
        canaries = targets[: self.canary]
        rest = targets[self.canary:]
        for np in canaries:
            self.progress[np.node].canary = True

        async def launch(batch: list[NodePlan]) -> bool:
            """Start every node of ``batch`` under the semaphore; False when stopped early."""
            for i, np in enumerate(batch):
                await sem.acquire()
                reason = self._stop_reason()
                if reason is not None:
                    sem.release()
                    self._stopped = reason
                    self._not_started(batch[i:], reason)
                    return False
                task = asyncio.create_task(self._node(np), name=f"action-{np.node}")
                # released by a callback, not inside the task: a task aborted before its first
                # step never runs its own finally, and its slot must still come back
                task.add_done_callback(lambda _t: sem.release())
                self._tasks[np.node] = task
            return True

        if canaries:
            ok = await launch(canaries)
            await asyncio.gather(*(self._tasks[n.node] for n in canaries if n.node in self._tasks),
                                 return_exceptions=True)
            bad = [n.node for n in canaries if self.progress[n.node].phase != NodeState.DONE]
            if not ok or bad:
                if self._stop_reason() is None and bad:
                    first = self.progress[bad[0]]
                    self._stopped = f"canary {bad[0]} {first.phase}: {first.error or 'no reason given'}"
                self._not_started(rest, self._stop_reason() or self._stopped or "canary failed")
                self._aborted_unstarted()
                return
        await launch(rest)
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._aborted_unstarted()

    def _aborted_unstarted(self) -> None:
        """Nodes whose task was aborted before it ran a line: cancelled, journalled."""
        for np in self.plan.targets:
            prog = self.progress[np.node]
            if not prog.final and np.node in self._tasks:
                self._journal(np.node, np.steps[0].name if np.steps else "start", "cancelled",
                              error="aborted before it started", detail="untouched")
                prog.left = Left(untouched=True)
                self._finish(prog, NodeState.CANCELLED, error="aborted before it started")

    def _not_started(self, nodes: list[NodePlan], reason: str) -> None:
        for np in nodes:
            prog = self.progress[np.node]
            if prog.final:
                continue
            self._journal(np.node, np.steps[0].name if np.steps else "start", Result.CANCELLED,
                          error=f"not started: {reason}", detail="untouched")
            prog.left = Left(untouched=True)
            self._finish(prog, NodeState.CANCELLED, error=f"not started: {reason}")

    async def _node(self, np: NodePlan) -> None:
        """One node's steps, in order, under one BMC session."""
        prog = self.progress[np.node]
        prog.started = time.time()
        node = self.ctx.site.node(np.node)
        driver: BmcDriver | None = None
        current: str | None = None
        t0 = time.monotonic()
        try:
            try:
                driver = open_bmc(node, self.ctx.secrets, timeout=self.request_timeout)
            except SecretError as exc:
                raise ActionError(f"credentials: {exc}") from exc
            if self.plan.kind == "reimage":
                await self._reimage(np, prog, node, driver)
            else:
                steps = list(np.steps)
                for step in steps:  # clear-boot is appended when verify-boot accepts a quirk
                    if self._aborting:
                        prog.left = await self._left_after_steps(np, prog, driver)
                        self._journal(np.node, step.name, "cancelled", error="cancelled before this step",
                                      detail=prog.left.text())
                        prog.steps.append(StepRecord(step.name, Result.CANCELLED, "not started"))
                        self._finish(prog, NodeState.CANCELLED, error=f"cancelled before {step.name}")
                        return
                    current = step.name
                    prog.phase = step.name
                    prog.detail = step.description
                    self._changed(prog)
                    self._journal(np.node, step.name, "started", detail=step.description)
                    t0 = time.monotonic()
                    run = RUNS.get(step.name)
                    if run is None:
                        raise ActionError(f"unknown step {step.name!r}")
                    result, detail = await run(self, np.node, driver)
                    prog.steps.append(StepRecord(step.name, result, detail, time.monotonic() - t0))
                    self._journal(np.node, step.name, result, detail=detail)
                    current = None
                    if step.name == StepName.VERIFY_BOOT and np.node in self.after_boot:
                        steps.append(CLEAR_BOOT)
            if prog.canary and self._leaves_power_on() and self.plan.kind != "reimage":
                current = StepName.CANARY_HEALTH
                prog.phase = current
                self._changed(prog)
                self._journal(np.node, current, "started", detail="wait until the node is healthy and its OS answers")
                t0 = time.monotonic()
                words = await self._canary_healthy(node, driver)
                prog.steps.append(StepRecord(current, Result.OK, words, time.monotonic() - t0))
                self._journal(np.node, current, Result.OK, detail=words)
                current = None
            note = self.boot_notes.pop(np.node, None)
            self._finish(prog, NodeState.DONE, detail=None if self.plan.kind == "reimage" else
                         "verified" + (f"; boot override read back {note}" if note else ""))
        except asyncio.CancelledError:
            where = current or prog.phase
            if self.plan.kind != "reimage" and driver is not None:
                prog.left = await self._left_after_steps(np, prog, driver)
            left = prog.left or Left()
            why = (self._stopped or "cancelled").removeprefix("cancelled").lstrip(": ") or None
            self._journal(np.node, where, "cancelled",
                          error="aborted while in flight" + (f" ({why})" if why else ""), detail=left.text())
            prog.steps.append(StepRecord(where, Result.CANCELLED, "aborted", time.monotonic() - t0))
            prog.left = left
            self._finish(prog, NodeState.CANCELLED, error=f"aborted during {where}")
        except (FleetError, SecretError) as exc:
            reason = failure_reason(exc)
            self._failures += 1
            where = current or prog.phase
            if prog.left is None and driver is not None:
                prog.left = await self._left_after_steps(np, prog, driver, undo=False)
            self._journal(np.node, where, "failed", error=reason, detail=prog.left.text() if prog.left else None)
            if current is not None:
                prog.steps.append(StepRecord(where, Result.FAILED, reason, time.monotonic() - t0))
            self._finish(prog, NodeState.FAILED, error=reason)
        except Exception as exc:  # a bug: the node fails with it, the run goes on
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self._failures += 1
            self._journal(np.node, current or prog.phase, Result.FAILED, error=reason)
            self._finish(prog, NodeState.FAILED, error=reason)
        finally:
            if np.node in self.after_boot:  # failed or cancelled before clear-boot ran
                await asyncio.shield(self._clear_left(np.node, driver, prog))
            if driver is not None:
                try:
                    await asyncio.shield(driver.close())
                except BaseException:  # noqa: BLE001 - closing must not replace the node's outcome
                    pass

    async def _left_after_steps(self, np: NodePlan, prog: NodeProgress, driver: BmcDriver, *,
                                undo: bool = True) -> Left:
        """What a power or PXE action left a node with; aborted (``undo``) between setting a
        PXE override and the reboot, the override is cleared (the next boot would follow it)."""
        from console.ops.bootquirk import clear_override

        left = Left()
        ran = {s.step for s in prog.steps if s.result == Result.OK}
        if StepName.BOOT_PXE in ran and StepName.REBOOT not in ran:
            left.boot_override = "set"
            if undo:
                try:
                    async with asyncio.timeout(min(self.request_timeout, LEFT_READ_S) * 2):
                        await clear_override(driver)
                    left.boot_override = "cleared"
                    left.rolled_back = True
                except (TimeoutError, DriverError):
                    pass
        elif StepName.REBOOT in ran:
            left.boot_override = "consumed"
        try:  # a BMC that hangs must not hold an abort up for long
            async with asyncio.timeout(min(self.request_timeout, LEFT_READ_S)):
                left.power = (await driver.power_state()).value
        except (TimeoutError, DriverError):
            left.power = "unknown"
        if not ran and not left.rolled_back:
            left.rolled_back = True  # nothing it started had taken effect: nothing to undo
        return left

    async def _canary_healthy(self, node: Node, driver: BmcDriver) -> str:
        """A canary is healthy when its BMC reports no critical fault and its OS answers over SSH.

        (A node without a host address in the inventory: the BMC's word only.)  Reimage
        canaries are verified by the reimage itself (the node reports the new version).
        """
        from console.drivers.ssh import read_image

        health = await driver.health()
        if health == "critical":
            raise ActionError(f"canary unhealthy: the BMC reports health {health}")
        if not node.host:
            return f"BMC health {health} (no host address: OS not checked)"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.canary_timeout
        while True:
            got = await read_image(node, self.ctx.site.ssh, self.ctx.secrets, timeout=min(10.0, self.request_timeout))
            if got.ref is not None:
                return f"BMC health {health}; OS answers, running {got.ref}"
            if loop.time() >= deadline:
                raise ActionError(f"canary unhealthy: its OS did not answer within {self.options.canary_timeout:g} s "
                                  f"({got.error})")
            await asyncio.sleep(min(self.poll_interval * 2, max(0.0, deadline - loop.time())))

    def _leaves_power_on(self) -> bool:
        return self.plan.kind in ("pxe", "reimage") or self.plan.power_action in ("on", "cycle", "reset")

    # ------------------------------------------------------------- steps
    async def stagger_gate(self) -> None:
        """Space power-on requests ``stagger`` seconds apart across the whole run."""
        if self.stagger <= 0:
            return
        assert self._stagger_lock is not None
        async with self._stagger_lock:
            loop = asyncio.get_running_loop()
            wait = self._last_power_on + self.stagger - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_power_on = loop.time()

    async def wait_power(self, driver: BmcDriver, want: PowerState, timeout: float, *,
                          fail: bool = True) -> tuple[bool, str]:
        """Poll the power state until ``want``; (reached, words about what was seen)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + timeout
        seen: list[str] = []
        last_error: str | None = None
        while True:
            try:
                state = await driver.power_state()
                last_error = None
                if not seen or seen[-1] != state.value:
                    seen.append(state.value)
                if state == want:
                    return True, f"read back {want.value} after {loop.time() - start:.1f} s (seen {' -> '.join(seen)})"
            except DriverError as exc:  # a BMC busy applying the change may not answer for a moment
                last_error = failure_reason(exc)
            if loop.time() >= deadline:
                words = f"power still {seen[-1] if seen else 'unknown'} after {timeout:g} s, wanted {want.value}"
                if last_error:
                    words += f" (last read: {last_error})"
                if fail:
                    raise ActionError(words)
                return False, words
            await asyncio.sleep(min(self.poll_interval, max(0.0, deadline - loop.time())))

    async def _clear_left(self, node: str, driver: BmcDriver | None, prog: NodeProgress) -> None:
        """Clear an override accepted with a quirk when the action ended before clear-boot."""
        _, after = self.after_boot.pop(node)
        try:
            if driver is None or (prog.left is not None and prog.left.boot_override == "cleared"):
                return
            async with asyncio.timeout(self.request_timeout * 2):
                words = await clear_override(driver)
            self._journal(node, "clear-boot", "ok", detail=f"{words} (the action ended before the boot was seen)")
            if prog.left is not None:
                prog.left.boot_override = "cleared"
        except (TimeoutError, DriverError) as exc:
            why = "no answer" if isinstance(exc, TimeoutError) else failure_reason(exc)
            self._journal(node, "clear-boot", "failed", error=f"boot override not cleared ({why}): clear it by hand")
        finally:
            await after.close()

    async def _reimage(self, np: NodePlan, prog: NodeProgress, node: Node, driver: BmcDriver) -> None:
        """Hand the node to :func:`console.ops.reimage.reimage_node`, journalling each phase it reports."""
        reimage = reimage_module()
        image = resolve_image(self.ctx.site, self.plan.image or "")
        current: StepName | None = None  # the phase running
        t0 = time.monotonic()
        done: str | None = None  # what the reimage said at its end

        def close_phase(result: Result, detail: str | None = None) -> None:
            nonlocal current
            if current is None:
                return
            prog.steps.append(StepRecord(current, result, detail, time.monotonic() - t0))
            self._journal(np.node, current, result, detail=detail)
            current = None

        def phase(name: StepName | NodeState, detail: str | None = None) -> None:
            nonlocal current, t0, done
            close_phase(Result.OK)
            if name == NodeState.DONE:  # the end, not a phase of its own: the reimage's result says it
                prog.detail = detail
                done = detail
                return
            current = StepName(name)
            t0 = time.monotonic()
            prog.phase = current
            prog.detail = detail
            self._journal(np.node, current, Result.STARTED, detail=detail)
            self._changed(prog)

        await self.stagger_gate()
        self._journal(np.node, StepName.REIMAGE, Result.STARTED, detail=f"to {image.ref}")
        prog.left = Left()
        try:
            await reimage.reimage_node(node, image, site=self.ctx.site, secrets=self.ctx.secrets, bmc=driver,
                                       phase=phase, left=prog.left, timeouts=self.options.reimage_timeouts)
        except asyncio.CancelledError:
            close_phase(Result.CANCELLED, "aborted")
            prog.phase = StepName.REIMAGE  # the caller journals the whole reimage as cancelled
            raise
        except FleetError as exc:
            close_phase(Result.FAILED, failure_reason(exc))
            prog.phase = StepName.REIMAGE  # the caller journals the whole reimage as failed
            raise
        close_phase(Result.OK)
        prog.left = None  # done: nothing left over
        self._journal(np.node, StepName.REIMAGE, Result.OK, detail=done or f"{image.ref} installed")
