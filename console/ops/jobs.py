"""Running work, where an operator can see it: this console's actions, and other consoles' locks.

A :class:`JobBoard` follows every :class:`~console.ops.runner.Runner` this console
starts (:meth:`JobBoard.add`) and keeps recent ones after they end, so a run
hidden by escape stays listed and reachable (cancel, reopen).  While a run goes,
each of its nodes carries a :class:`~console.live.fleet.NodeActivity` in the Fleet
(``queued``, then its phase: ``power-cycle``, ``installing`` ...), so rows show it;
when a node's part ends, its activity goes and its facts (power, boot override,
running image) are asked for at once (``refresh``), instead of waiting for the
next scheduled poll (the image is read every few minutes).

Nodes locked by someone else (another console, a command, another operator on
this host) are found by reading the site's lock files (:meth:`JobBoard.scan_locks`,
blocking: call it from a thread, every few seconds) and carry a ``lock`` activity
naming the holder.  A lock that goes away means another's action on that node
ended: its facts are asked for at once too, so a second console does not show the
old image for minutes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from console.live.fleet import Fleet, NodeActivity
from console.ops.actions import Plan
from console.ops.locks import LockError, LockInfo, Locks
from console.ops.runner import NodeProgress, Runner, RunResult

__all__ = ["Job", "JobBoard", "REFRESH_JOBS", "PHASE_GROUPS"]

#: what is read again on a node as soon as an action on it ended
REFRESH_JOBS = ("power", "boot", "image")
#: the groups a job's nodes are counted in
PHASE_GROUPS = ("queued", "running", "done", "failed", "skipped", "cancelled")


@dataclass
class Job:
    """One run of a plan by this console: the plan, its runner, when it started, how it ended."""

    plan: Plan
    runner: Runner
    started: float
    result: RunResult | None = None
    error: str | None = None  # the runner itself broke or was refused (e.g. the lock directory)
    view: Any = None  # the screen that started it (the TUI's business): its ``ended`` event, if any, says the end
    ended: float | None = None
    #: nodes whose part ended and whose facts were asked for again
    refreshed: set[str] = field(default_factory=set)
    #: screens showing this run besides ``view`` (reopened progress): told of every change
    viewers: list[Any] = field(default_factory=list)

    @property
    def running(self) -> bool:
        """True until the run returned (or broke)."""
        return self.ended is None

    @property
    def owner(self) -> str:
        return self.runner.operator

    def counts(self) -> dict[str, int]:
        """Nodes per group: queued (not started), running, done, failed, skipped, cancelled."""
        out = {k: 0 for k in PHASE_GROUPS}
        for p in self.runner.progress.values():
            key = "queued" if p.phase == "planned" else (p.phase if p.phase in out else "running")
            out[key] += 1
        return out

    def state(self) -> str:
        """``running``, ``cancelling``, or how it ended."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.result is not None:
            if self.result.stopped:
                return f"ended: {self.result.stopped}"
            return "ended ok" if self.result.ok else "ended with failures"
        return "cancelling" if self.runner.cancelled else "running"

    def _has_ended(self) -> bool:
        event = getattr(self.view, "ended", None)
        if event is not None and hasattr(event, "is_set"):
            return event.is_set()
        # no one tells: ended when every node is final and nothing is in flight
        return all(p.final for p in self.runner.progress.values()) and not self.runner.in_flight()


class JobBoard:
    """This console's runs (running and recent) and the node activity they and others' locks make.

    :meth:`add` a runner when it starts (adding it twice is harmless); :meth:`sync` (a
    few times a second, on the loop that runs the actions) moves each node's activity
    to its phase, asks ``refresh(names)`` for the nodes whose part ended, and notices
    runs that ended.  ``keep`` ended runs stay listed.
    """

    def __init__(self, fleet: Fleet, *, refresh: Callable[[list[str]], None] | None = None,
                 keep: int = 20, clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.refresh = refresh
        self.keep = keep
        self.clock = clock
        self.jobs: list[Job] = []
        self._locked: dict[str, NodeActivity] = {}  # nodes others hold, as last scanned
        self._pid = os.getpid()
        self._host = socket.gethostname()
        #: why the last lock scan could not read the lock directory (None: it could)
        self.lock_problem: str | None = None

    # ------------------------------------------------------------ this console's runs
    def add(self, plan: Plan, runner: Runner, view: Any = None) -> Job:
        """Follow ``runner``: its nodes' activity follows their phases, its end is kept."""
        for job in self.jobs:
            if job.runner is runner:
                return job
        job = Job(plan, runner, self.clock(), view=view)
        self.jobs.append(job)
        earlier = runner.progress_callback

        def progressed(p: NodeProgress) -> None:  # at once, not at the next sync
            if earlier is not None:
                earlier(p)
            self._progressed(job, p)

        runner.progress_callback = progressed
        self.sync()
        return job

    def running(self) -> list[Job]:
        """Runs not ended yet, oldest first."""
        return [j for j in self.jobs if j.running]

    def job(self, plan_id: str) -> Job | None:
        """The run of plan ``plan_id``."""
        return next((j for j in self.jobs if j.plan.id == plan_id), None)

    def sync(self) -> None:
        """Bring every running job's nodes' activity up to date; notice the runs that ended."""
        for job in list(self.jobs):
            if not job.running:
                continue
            for p in list(job.runner.progress.values()):
                self._progressed(job, p, tell=False)
            if job._has_ended():
                self._ended(job)

    def _mine(self, job: Job, name: str) -> bool:
        current = self.fleet.activity.get(name)
        return current is not None and current.kind == "job" and current.plan == job.plan.id

    def _progressed(self, job: Job, p: NodeProgress, *, tell: bool = True) -> None:
        if tell:
            for viewer in list(job.viewers):
                try:
                    viewer.node_changed(p)
                except Exception:  # noqa: BLE001 - a broken view must not break the run
                    pass
        if not p.final:
            if p.phase == "planned" and p.node not in {n.node for n in job.plan.targets}:
                return
            phase = "queued" if p.phase == "planned" else p.phase
            self.fleet.set_activity(p.node, NodeActivity("job", job.plan.action, phase, job.owner, job.plan.id))
            return
        if self._mine(job, p.node):
            self.fleet.set_activity(p.node, self._locked.get(p.node))
        if p.started is not None and p.node not in job.refreshed:  # something was done to it: read it now
            job.refreshed.add(p.node)
            self._refresh([p.node])

    def _ended(self, job: Job) -> None:
        view = job.view
        runner = job.runner
        job.error = getattr(view, "error", None)
        job.result = getattr(view, "result", None)
        if job.result is None and job.error is None:  # the view did not hear it: the runner's own word
            job.result = RunResult(job.plan, [runner.progress[n.node] for n in job.plan.nodes],
                                   getattr(runner, "_stopped", None))
        job.ended = self.clock()
        touched = []
        for name, p in runner.progress.items():
            if self._mine(job, name):
                self.fleet.set_activity(name, self._locked.get(name))
            if p.started is not None and name not in job.refreshed:
                job.refreshed.add(name)
                touched.append(name)
        self._refresh(touched)
        for viewer in list(job.viewers):
            try:
                viewer.run_ended(job)
            except Exception:  # noqa: BLE001
                pass
        finished = [j for j in self.jobs if not j.running]
        for old in finished[: max(0, len(finished) - self.keep)]:
            self.jobs.remove(old)

    def _refresh(self, names: list[str]) -> None:
        if names and self.refresh is not None:
            try:
                self.refresh(names)
            except Exception:  # noqa: BLE001 - a refresh that cannot start leaves the next scheduled poll
                pass

    # ------------------------------------------------------------ others' locks
    def scan_locks(self) -> dict[str, LockInfo]:
        """Every node of the site someone else holds (blocking: a thread); {} when unreadable.

        Locks of this process (its own runs) are left out: those nodes show their phase.
        """
        names = list(self.fleet.nodes)
        try:
            held = Locks(self.fleet.site.name).held(names)
        except (LockError, OSError, ValueError) as exc:
            self.lock_problem = str(exc)
            return {}
        self.lock_problem = None
        return {n: info for n, info in held.items() if not (info.pid == self._pid and info.host == self._host)}

    def apply_locks(self, held: dict[str, LockInfo]) -> None:
        """Show ``held`` (a :meth:`scan_locks` answer) on the rows; nodes released since the
        last scan get their facts read now (another's action on them ended)."""
        now: dict[str, NodeActivity] = {
            name: NodeActivity("lock", info.action, "", info.who(), info.plan, info.expires)
            for name, info in held.items()}
        released = [n for n in self._locked if n not in now]
        self._locked = now
        for name in released + list(now):
            current = self.fleet.activity.get(name)
            if current is not None and current.kind == "job":
                continue  # our own run's phase says more
            self.fleet.set_activity(name, now.get(name))
        self._refresh(released)


def counts_text(counts: dict[str, int]) -> str:
    """``2 running, 1 done`` (groups with nodes only)."""
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no nodes"


__all__.append("counts_text")
