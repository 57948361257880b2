"""Headless action commands: ``power``, ``pxe``, ``reimage`` and ``activity``.

Every action prints its plan first (:meth:`console.ops.actions.Plan.text`) and acts
only when confirmed: ``--yes``, or on a terminal an interactive ``y`` (one node) or
the number of nodes typed back (more than one).  Without a terminal and without
``--yes`` it refuses.  ``--dry-run`` prints the plan and touches nothing.
Ctrl-C while running stops launching new nodes; the ones in flight go on, and a
second Ctrl-C aborts them, rolling back what they started (``--on-cancel rollback``:
the first Ctrl-C does that; ``--on-cancel finish``: the first lets them finish).
SIGTERM and SIGHUP (the terminal hung up: nobody to ask) abort and roll back at
once, and the journal says why.  The report says, per node, what it was left with.

Exit status: 0 every node done (or nothing to do), 1 any node failed, was
cancelled, or was skipped for a reason other than "already so" (unreachable,
locked, protected), 2 bad input or refused.  Progress goes to stderr; stdout
carries the plan / results (``--json``: one JSON document).  Passwords never
appear in either.  Text from outside (node names, BMC error texts, journal
entries: operator, ticket, error) is printed through :func:`console.text.visible`,
so a control sequence in it is shown, never obeyed by the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from console import site as sites
from console.cli.commands import dump_json, selected_nodes
from console.ops.actions import Plan, PlanError, plan_power, plan_pxe, plan_reimage, resolve_image
from console.ops.journal import Journal, read_entries
from console.ops.locks import LockError
from console.ops.options import OnCancel, RunOptions
from console.ops.runner import NodeProgress, Runner, RunResult
from console.ops.steps import NodeState
from console.site import SiteContext
from console.text import visible

__all__ = ["cmd_power", "cmd_pxe", "cmd_reimage", "cmd_activity", "add_action_options", "precheck"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_action_options(p: argparse.ArgumentParser) -> None:
    """The options every action command takes."""
    p.add_argument("range", help="node selection, e.g. dal1-r02-n[01-05] or rack=r03")
    p.add_argument("--dry-run", action="store_true", help="print the plan only; touch nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="plan / results as one JSON document on stdout")
    p.add_argument("--ticket", help="ticket reference recorded with every journal entry, e.g. INC-123")
    p.add_argument("--fanout", type=int, default=10, help="nodes acted on at once (default 10)")
    p.add_argument("--canary", type=int, default=0,
                   help="do this many nodes first and continue only when they end verified and healthy")
    p.add_argument("--canary-timeout", type=float, default=900.0,
                   help="seconds a canary may take to come back healthy (OS answering over SSH)")
    p.add_argument("--max-failures", type=int, default=None, help="launch no new node after this many failures")
    p.add_argument("--stagger", type=float, default=0.0,
                   help="seconds between power-on requests (inrush current; xCAT syspowerinterval)")
    p.add_argument("--force-protected", action="store_true", help="include nodes marked protected")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per BMC request")
    p.add_argument("--power-timeout", type=float, default=120.0,
                   help="seconds to wait for the power state to read back as wanted")
    p.add_argument("--poll-interval", type=float, default=1.0, help="seconds between power-state reads")
    p.add_argument("--on-cancel", choices=["finish", "rollback"], default=None,
                   help="what the first Ctrl-C does to the nodes in flight: let them finish, or abort and roll "
                        "them back (default: they go on; a second Ctrl-C aborts and rolls back)")


def precheck(args: argparse.Namespace) -> None:
    """Reject a bad selection or image before any lab starts (SelectionError / PlanError)."""
    site = sites.load(args.site)
    selected_nodes(site, args.range)
    if getattr(args, "image", None) is not None:
        resolve_image(site, args.image)
    for opt, low in (("fanout", 1), ("canary", 0), ("max_failures", 1)):
        value = getattr(args, opt, None)
        if value is not None and value < low:
            raise PlanError(f"--{opt.replace('_', '-')} must be at least {low}, got {value}")
    for opt in ("stagger", "timeout", "power_timeout", "poll_interval", "soft_timeout", "hard_after", "canary_timeout"):
        value = getattr(args, opt, None)
        if value is not None and value < 0:
            raise PlanError(f"--{opt.replace('_', '-')} must not be negative, got {value}")


# ----------------------------------------------------------------- the commands
def cmd_power(args: argparse.Namespace, ctx: SiteContext) -> int:
    """``power {on,off,soft,cycle,reset} RANGE``."""
    hard_after = getattr(args, "hard_after", None)
    soft_timeout = getattr(args, "soft_timeout", 300.0)
    return _act(args, ctx, lambda names: plan_power(
        ctx, names, args.power_action, ticket=args.ticket, force_protected=args.force_protected,
        timeout=args.timeout, power_timeout=args.power_timeout, soft_timeout=soft_timeout, hard_after=hard_after))


def cmd_pxe(args: argparse.Namespace, ctx: SiteContext) -> int:
    """``pxe RANGE``: boot override PXE once (read back), then reset or power on."""
    return _act(args, ctx, lambda names: plan_pxe(
        ctx, names, ticket=args.ticket, force_protected=args.force_protected, timeout=args.timeout,
        power_timeout=args.power_timeout))


def cmd_reimage(args: argparse.Namespace, ctx: SiteContext) -> int:
    """``reimage RANGE --image NAME@VERSION``."""
    return _act(args, ctx, lambda names: plan_reimage(
        ctx, names, args.image, ticket=args.ticket, force_protected=args.force_protected,
        force=getattr(args, "force", False), timeout=args.timeout))


def cmd_activity(args: argparse.Namespace) -> int:
    """``activity [--node N] [--limit N] [--json]``: the journal, newest last."""
    site = sites.load(args.site)
    entries = read_entries(site.name, node=args.node, limit=args.limit)
    if args.json:
        dump_json(entries)
        return EXIT_OK
    if not entries:
        _err(f"no activity recorded for site {site.name}" + (f" and node {args.node}" if args.node else ""))
        return EXIT_OK
    rows = []
    for e in entries:
        what = e.get("error") or e.get("detail") or ""
        rows.append([(e.get("time") or "")[:19].replace("T", " "), e.get("operator") or "", e.get("action") or "",
                     e.get("node") or "-", e.get("step") or "", e.get("result") or "", e.get("ticket") or "",
                     what])
    _table(rows, ["TIME (UTC)", "OPERATOR", "ACTION", "NODE", "STEP", "RESULT", "TICKET", "ERROR / DETAIL"])
    return EXIT_OK


# ----------------------------------------------------------------- machinery
def _table(rows: list[list[str]], headers: list[str]) -> None:
    rows = [[visible(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    widths[-1] = 0  # the last column is free text
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _err(text: str) -> None:
    try:
        print(visible(text, newlines=True), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # the terminal hung up: the journal still says it
        pass


def refuse_unconfirmed(action: str, targets: list[str]) -> int | None:
    """Ask before acting on ``targets``; None when the operator confirmed, else the exit
    code, having said why (no terminal to ask on, or declined)."""
    answer = _confirm(action, targets)
    if answer is None:
        _err("fleet-console: refusing to act without confirmation: no terminal to ask on; "
             "pass --yes (and check the plan with --dry-run first)")
        return EXIT_USAGE
    if not answer:
        _err("not confirmed: nothing done")
        return EXIT_USAGE
    return None


def _confirm(action: str, targets: list[str]) -> bool | None:
    """Ask on the terminal: True to go, False declined; None when there is no terminal.

    A terminal on stdin is what makes an interactive run.  One node is a ``y``; more
    need their number typed.  The question goes where the operator sees it whatever was
    redirected (``2>/dev/null``, ``> plan.txt``): see :func:`_ask`."""
    if not sys.stdin.isatty():
        return None
    n = len(targets)
    if n == 1:
        question = visible(f"{action} on {targets[0]}: proceed? [y/N] ")
    else:
        question = visible(f"{action} on {n} nodes: type the number of nodes ({n}) to proceed: ")
    try:
        answer = _ask(question).strip()
    except (EOFError, KeyboardInterrupt, OSError):
        return False
    return answer.lower() in ("y", "yes") if n == 1 else answer == str(n)


def _ask(question: str) -> str:
    """Ask on the terminal stdin reads from, and read the answer from stdin.

    The question is written to that terminal's device, opened afresh (``/dev/tty``
    when stdin is the controlling terminal, as ssh and sudo ask for a password), so
    it is seen whatever stdout and stderr were redirected to.  Should the device not
    open, stdout when it is a terminal, else stderr."""
    try:
        fd = os.open(os.ttyname(sys.stdin.fileno()), os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        out = sys.stdout if sys.stdout.isatty() else sys.stderr
        out.write(question)
        out.flush()
    else:
        try:
            os.write(fd, question.encode())
        finally:
            os.close(fd)
    return sys.stdin.readline()


def _progress_printer(plan: Plan) -> Callable[[NodeProgress], None]:
    """One stderr line per node phase change (step descriptions are in the plan already)."""
    last: dict[str, str] = {}
    planned = {s.name for n in plan.nodes for s in n.steps}

    def show(p: NodeProgress) -> None:
        if last.get(p.node) == p.phase:
            return
        last[p.node] = p.phase
        if p.phase in (NodeState.FAILED, NodeState.SKIPPED, NodeState.CANCELLED):
            words = (p.error or "") + (f"; left: {p.left.text()}" if p.left is not None and not p.left.untouched
                                       else "")
        elif p.phase == NodeState.DONE:
            words = (p.steps[-1].detail if p.steps and plan.kind != "reimage" else p.detail) or ""
        elif p.phase in planned:
            words = ""
        else:  # a reimage phase: its detail says what was seen
            words = p.detail or ""
        _err(f"{time.strftime('%H:%M:%S')} {p.node}: {p.phase}" + (f": {words}" if words else ""))

    return show


class _ConsoleLines:
    """A reimage's console on stderr: ``HH:MM:SS node  phase  | last console line``.

    At most one line a node every ``interval`` seconds (the newest wins; the whole
    boot is in the node's console log); none once the node's part has ended."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.phase: dict[str, str] = {}
        self._last_at: dict[str, float] = {}
        self._pending: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def progress(self, p: NodeProgress) -> None:
        """A phase change (call it before the phase line is printed): a node that ends first
        gets the line it was waiting to print, so its console's last word comes before its end."""
        if p.final:
            timer = self._timers.pop(p.node, None)
            if timer is not None:
                timer.cancel()
            text = self._pending.pop(p.node, None)
            if text is not None:
                self._print(p.node, text)
        self.phase[p.node] = p.phase

    def line(self, node: str, text: str) -> None:
        if self.phase.get(node) in _FINAL:
            return
        loop = asyncio.get_running_loop()
        due = self._last_at.get(node, float("-inf")) + self.interval
        if node not in self._timers and loop.time() >= due:
            self._print(node, text)
            return
        self._pending[node] = text
        if node not in self._timers:
            self._timers[node] = loop.call_later(due - loop.time(), self._flush, node)

    def _flush(self, node: str) -> None:
        self._timers.pop(node, None)
        text = self._pending.pop(node, None)
        if text is not None:
            self._print(node, text)

    def _print(self, node: str, text: str) -> None:
        self._last_at[node] = asyncio.get_running_loop().time()
        phase = self.phase.get(node, "starting")
        _err(f"{time.strftime('%H:%M:%S')} {visible(node)}  {phase}  | {visible(text)}")

    def close(self) -> None:
        """Print what waits (the last word of each node still running), then stop."""
        for node in list(self._timers):
            self._timers.pop(node).cancel()
            text = self._pending.pop(node, None)
            if text is not None and self.phase.get(node) not in _FINAL:
                self._print(node, text)


_FINAL = (NodeState.DONE, NodeState.FAILED, NodeState.SKIPPED, NodeState.CANCELLED)


def _exit_for_skips(plan: Plan) -> int:
    real = [n for n in plan.skipped if n.skip is not None and not n.skip.nothing_to_do]
    return EXIT_FAIL if real else EXIT_OK


def _act(args: argparse.Namespace, ctx: SiteContext,
         make_plan: Callable[[list[str]], Coroutine[Any, Any, Plan]]) -> int:
    try:
        names = selected_nodes(ctx.site, args.range)
        plan = asyncio.run(make_plan(names))
    except (PlanError, LockError) as exc:
        _err(f"fleet-console: error: {exc}")
        return EXIT_USAGE
    if args.json:
        if args.dry_run or not plan.targets:
            dump_json({"plan": plan.to_json(), "dry_run": bool(args.dry_run)})
        else:
            _err(plan.text())
    else:
        print(visible(plan.text(), newlines=True), flush=True)
    if args.dry_run:
        _err("dry run: nothing done")
        return EXIT_OK
    if not plan.targets:
        if args.json:  # otherwise the plan just printed said it
            _err("nothing to do")
        asyncio.run(Runner(ctx, plan, journal=Journal(ctx.site.name)).run())  # the journal records the skips
        return _exit_for_skips(plan)
    if not args.yes and (refused := refuse_unconfirmed(plan.action, [t.node for t in plan.targets])) is not None:
        return refused
    printer = _progress_printer(plan)
    lines = _ConsoleLines() if plan.kind == "reimage" else None

    def progress(p: NodeProgress) -> None:
        if lines is not None:
            lines.progress(p)
        printer(p)

    try:
        runner = Runner(ctx, plan, RunOptions.from_args(args), journal=Journal(ctx.site.name),
                        progress_callback=progress)
    except PlanError as exc:
        _err(f"fleet-console: error: {exc}")
        return EXIT_USAGE
    try:
        result = asyncio.run(_run(runner, lines))
    except LockError as exc:  # refused before anything was done: the lock directory is unsafe or busy
        _err(f"fleet-console: error: {exc}")
        return EXIT_USAGE
    try:
        if args.json:
            dump_json(result.to_json())
        else:
            rows = []
            for p in result.nodes:
                last = ((p.steps[-1].detail if p.steps else None) or p.detail) if p.phase == NodeState.DONE else None
                ended_badly = p.phase in (NodeState.CANCELLED, NodeState.FAILED)
                left = p.left.text() if p.left is not None and ended_badly else ""
                rows.append([p.node, p.phase, p.outcome if p.final else p.phase, left, p.error or last or ""])
            print()
            _table(rows, ["NODE", "RESULT", "OUTCOME", "LEFT", "DETAIL"])
    except (OSError, ValueError):  # stdout went with the terminal: the journal has it all
        pass
    _err(f"{plan.action}: {result.summary()}"
         + f" (plan {plan.id}; `fleet-console --site {args.site} activity` shows the journal)")
    return EXIT_OK if result.ok else EXIT_FAIL


async def _run(runner: Runner, lines: _ConsoleLines | None = None) -> RunResult:
    """Run the plan with Ctrl-C, SIGTERM and SIGHUP handled; with ``lines``, the target nodes'
    serial consoles are followed meanwhile (:mod:`console.ops.console_follow`): the boot in
    each node's console log, its last line printed with the phases."""
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        runner.cancel()
        inflight = runner.in_flight()
        names = f"{', '.join(inflight[:8])}{' ...' if len(inflight) > 8 else ''}"
        if runner.aborting:
            _err(f"cancelling: no new steps will start; aborting {len(inflight)} in flight ({names}) "
                 f"and rolling back what they started")
        elif runner.on_cancel is OnCancel.FINISH:
            _err(f"cancelling: no new steps will start; letting {len(inflight)} in flight finish ({names}); "
                 f"Ctrl-C again aborts and rolls them back")
        else:
            _err(f"cancelling: no new steps will start; waiting for {len(inflight)} in flight ({names}); "
                 f"Ctrl-C again aborts them and rolls back what they started")

    def on_term() -> None:
        runner.cancel(rollback=True, reason="terminated (SIGTERM)")

    def on_hangup() -> None:  # nobody left to ask: end cleanly, as a cancel with rollback does
        runner.cancel(rollback=True, reason="terminal hung up")

    installed: list[tuple[signal.Signals, Any]] = []
    for sig, handler in ((signal.SIGINT, on_interrupt), (signal.SIGTERM, on_term), (signal.SIGHUP, on_hangup)):
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, handler)
            installed.append((sig, previous))
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread (tests)
            pass
    follower = broker = None
    try:
        if lines is not None and runner.plan.targets:
            from console.ops.console_follow import ConsoleFollower
            from console.serial.broker import ConsoleBroker

            broker = ConsoleBroker(runner.ctx)
            follower = ConsoleFollower(broker, [n.node for n in runner.plan.targets], on_line=lines.line)
            shown = runner.progress_callback

            def progress(p: NodeProgress) -> None:
                if shown is not None:
                    shown(p)
                if p.final and follower is not None:
                    follower.node_ended(p.node)

            runner.progress_callback = progress
            await follower.start()
        return await runner.run()
    finally:
        if lines is not None:
            lines.close()
        if follower is not None:
            await follower.close()
        if broker is not None:
            await broker.close()
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
