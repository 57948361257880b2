"""Reimage one node, end to end, through the site's provisioner.

The flow (docs/architecture.md, "Reimage, end to end")::

    assign the image (provisioner keeps the previous assignment for rollback)
    -> boot override PXE once (ipxe, drp) or CD once (vmedia, after InsertMedia)
    -> read the override back (vendors silently revert it)
    -> power cycle (power on when off)
    -> follow: the provisioner sees the boot (script fetch / DRP job), the node's OS
       answers again, and it reports the new version over SSH (/etc/os-release)

:func:`reimage_node` reports progress through ``phase(name, detail)``: ``assigned``,
``rebooting``, ``installing``, ``verifying``, ``done``.  The same phases are the steps
:func:`reimage_steps` plans (:mod:`console.ops.steps`), so the operator confirms what
they then see.  Every phase has a timeout
(:class:`PhaseTimeouts`); a failure or a timeout raises
:class:`console.errors.ActionError` whose message starts with the phase's name.
A reimage that fails or is cancelled after the assignment but before the node fetched
it (assign, rebooting) takes the assignment back: the provisioner restores the previous
one (or removes the new one when there was none), and the error says so.  Once the node
booted the new assignment it is left in place (the installer may be running).  A reimage
that finishes marks its assignment known-good
(:meth:`~console.provision.ProvisionerBackend.confirm`); until then a retried reimage
keeps the record of the assignment in place before the first attempt.

A boot override that reads back with the right device but continuous, or not flagged
valid (:mod:`console.ops.bootquirk`), is accepted with a note in the ``assigned`` detail and
cleared once the node has booted (the provisioner saw the fetch; with virtual media,
once the OS answers), or when the reimage fails before that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from console.drivers.bmc import BmcDriver, BootTarget, PowerAction, PowerState
from console.errors import ActionError, DriverError, FleetError
from console.ops.bootquirk import clear_override, readback_quirk
from console.ops.leftover import Left
from console.ops.steps import REIMAGE_PHASES, NodeState, Step, StepName
from console.provision import Fetch, ProvisionerBackend, boot_target, check_node, open_provisioner
from console.secrets import Secrets
from inventory.model import Image, Node, Site

__all__ = ["PHASES", "PhaseTimeouts", "reimage_node", "reimage_steps"]

#: the phases :func:`reimage_node` reports, in order
PHASES: tuple[StepName | NodeState, ...] = (*REIMAGE_PHASES, NodeState.DONE)

PhaseCallback = Callable[[StepName | NodeState, str], None]
#: seconds past a phase's deadline before a hung call is cancelled
_BACKSTOP = 15.0


@dataclass(frozen=True)
class PhaseTimeouts:
    """Seconds each phase may take before the reimage fails naming it (and the poll interval)."""

    assigned: float = 60.0  # provisioner assignment, boot override set and read back
    rebooting: float = 600.0  # power cycle until the provisioner sees the boot (or power is on)
    installing: float = 1800.0  # installer running until the node's OS answers again
    verifying: float = 600.0  # OS answering until it reports the new version
    poll: float = 2.0  # seconds between checks while following the node
    ssh_timeout: float = 5.0  # one SSH read of /etc/os-release

    def __post_init__(self) -> None:
        for name in ("assigned", "rebooting", "installing", "verifying", "poll", "ssh_timeout"):
            if not getattr(self, name) > 0:
                raise ActionError(f"reimage timeout {name} must be a positive number of seconds")


def _kind(site: Site) -> str:
    return site.provisioner.kind if site.provisioner is not None else "ipxe"


def reimage_steps(node: Node, image: Image, site: Site) -> list[Step]:
    """The steps a reimage of ``node`` to ``image`` takes: the phases :func:`reimage_node`
    then reports, in the same order (``verifying`` only for a node with a host address).

    Raises ActionError when the node cannot be reimaged this way (no MAC, an IPMI BMC
    with virtual media, an image without kernel/initrd or ISO URL).
    """
    check_node(site, node, image)
    kind = _kind(site)
    target = boot_target(site)
    if kind == "vmedia":
        assign = f"insert {image.iso} as virtual CD on {node.bmc.address} (vmedia provisioner)"
    else:
        where = site.provisioner.url if site.provisioner and site.provisioner.url else "boot root"
        assign = f"assign {image.ref} to {node.mac} in {kind} provisioner ({where})"
    seen = "the provisioner sees the PXE fetch" if kind != "vmedia" else "power is on, booting from virtual CD"
    steps = [
        Step(StepName.ASSIGNED, f"{assign}; set boot override {target.upper()} once and read it back"),
        Step(StepName.REBOOTING, f"power cycle (power on when off), until {seen}"),
    ]
    if not node.host:
        steps.append(Step(StepName.INSTALLING, "install until power is on (no host address: not verified)"))
        return steps
    steps.append(Step(StepName.INSTALLING, "the installer runs until the node's OS answers again over SSH"))
    steps.append(Step(StepName.VERIFYING, f"the node reports {image.ref} over SSH"))
    return steps


class _Follow:
    """State shared by the phase loops (what was last seen, for the timeout message)."""

    def __init__(self, node: Node, image: Image, site: Site, secrets: Secrets, bmc: BmcDriver,
                 prov: ProvisionerBackend, timeouts: PhaseTimeouts) -> None:
        self.node, self.image, self.site, self.secrets = node, image, site, secrets
        self.bmc, self.prov, self.t = bmc, prov, timeouts
        self.seen = "nothing yet"
        self.assigned = False  # the provisioner holds this reimage's assignment
        self.quirk: str | None = None  # the override read back imperfectly: clear it after the boot
        self.phase = ""
        self.seconds = 0.0
        self.deadline = 0.0

    async def within(self, phase: str, seconds: float, wait: Callable[[], Awaitable[str]], *,
                     backstop: float = _BACKSTOP) -> str:
        """Run ``wait`` under the phase's timeout; ActionError naming the phase when it expires.

        The polling loops check :meth:`check` themselves (every single call they make is
        bounded); the asyncio timeout is only a backstop for a call that hangs anyway.
        Python 3.11's ``wait_for`` (inside asyncssh) can swallow a cancellation, so a
        deadline enforced by cancellation alone could be lost.
        """
        self.deadline = time.monotonic() + seconds
        self.phase = phase
        self.seconds = seconds
        try:
            async with asyncio.timeout(seconds + backstop):
                return await wait()
        except TimeoutError:
            raise self.timed_out() from None

    def timed_out(self) -> ActionError:
        return ActionError(f"{self.phase}: timed out after {self.seconds:g} s ({self.seen})")

    def check(self) -> None:
        """ActionError when the phase's time is up."""
        if time.monotonic() >= self.deadline:
            raise self.timed_out()

    async def pause(self) -> None:
        """Sleep one poll interval (never past the deadline), then check it."""
        await asyncio.sleep(max(0.0, min(self.t.poll, self.deadline - time.monotonic())))
        self.check()

    def left(self, cap: float) -> float:
        return max(0.05, min(cap, self.deadline - time.monotonic()))

    async def power(self) -> PowerState | None:
        try:
            return await self.bmc.power_state()
        except DriverError as exc:
            self.seen = f"BMC: {exc}"
            return None

    async def running(self) -> str | None:
        """``name@version`` the node reports over SSH, or None (not answering yet)."""
        from console.drivers.ssh import read_image  # asyncssh: only once a reimage gets here

        got = await read_image(self.node, self.site.ssh, self.secrets, timeout=self.left(self.t.ssh_timeout))
        if got.ref is None:
            self.seen = f"OS not answering ({got.error})"
        return got.ref


async def _mark(prov: ProvisionerBackend, node: Node) -> float | None:
    """The newest boot the provisioner saw before we reboot (None: it cannot see boots)."""
    seen = await prov.fetches(node, 0.0)
    if seen is None:
        return None
    return max((f.time for f in seen), default=0.0)


async def reimage_node(node: Node, image: Image, *, site: Site, secrets: Secrets, bmc: BmcDriver,
                       phase: PhaseCallback, timeouts: PhaseTimeouts | None = None, left: Left | None = None) -> None:
    """Reimage ``node`` to ``image`` and follow it until it runs the image.

    ``bmc`` is an open driver for the node; ``phase(name, detail)`` is called as each
    phase starts.  ActionError (message starting with the phase) on failure or timeout.
    When the reimage fails or is cancelled (the task cancelled: an abort), what it
    could undo is undone (see the module docstring: the previous assignment back and
    the boot override cleared while the node has not fetched the new one) and ``left``
    records what the node is left with.
    """
    t = timeouts or PhaseTimeouts()
    left = left if left is not None else Left()
    try:
        check_node(site, node, image)
    except ActionError as exc:
        raise ActionError(f"assign: {exc}") from None
    kind = _kind(site)
    try:
        prov = open_provisioner(site, secrets)
    except FleetError as exc:
        raise ActionError(f"assign: {exc}") from None
    follow = _Follow(node, image, site, secrets, bmc, prov, t)
    current: str = "assign"  # where a failure happened: the assignment, then a phase
    booted = False  # the node fetched its new assignment: from then on it stays
    mark: float | None = None
    cycled = False  # the power cycle was asked for: the node boots the override

    def enter(name: StepName | NodeState, detail: str) -> None:
        nonlocal current
        current = name
        phase(name, detail)

    try:
        detail = await follow.within("assign", t.assigned, lambda: _assign(follow, kind), backstop=0.0)
        mark = await _mark(prov, node)
        enter(StepName.ASSIGNED, detail)
        cycled = True  # from the request on, the node may be rebooting

        state = await bmc.power_state()
        if state == PowerState.ON:
            await bmc.power(PowerAction.CYCLE)
            how = "power cycled"
        else:
            await bmc.power(PowerAction.ON)
            how = "powered on (was off)" if state == PowerState.OFF else f"powered on (was {state.value})"
        enter(StepName.REBOOTING, how)
        started = time.time()

        seen = await follow.within("rebooting", t.rebooting, lambda: _booted(follow, mark))
        booted = True
        if mark is not None:  # the provisioner saw the boot: the firmware has read the override
            seen += await _clear_quirk(follow)
        enter(StepName.INSTALLING, seen)

        if not node.host:
            await follow.within("installing", t.installing, lambda: _installed(follow, _powered(follow)))
            await _clear_quirk(follow)
            enter(NodeState.DONE, f"{image.ref} handed to the node by the {kind} provisioner; the running version is "
                          f"not verified (no host address in the inventory){await _confirm(prov, node)}")
            return
        ref = await follow.within("installing", t.installing, lambda: _installed(follow, _answers(follow)))
        enter(StepName.VERIFYING, f"OS answers, reports {ref}{await _clear_quirk(follow)}")
        await follow.within("verifying", t.verifying, lambda: _reports(follow, ref))
        took = time.time() - started
        enter(NodeState.DONE, f"running {image.ref} ({took:.0f} s after the reboot){await _confirm(prov, node)}")
    except ActionError as exc:
        booted = booted or await _fetched_since(follow, mark)
        if follow.assigned and not booted:
            undone = await _undo(follow, left, cycled)
            raise ActionError(f"{exc}; {undone}") from exc
        await _left_after_boot(follow, left, booted, current)
        if follow.quirk:
            raise ActionError(f"{exc}{await _clear_quirk(follow)}") from exc
        raise
    except DriverError as exc:
        booted = booted or await _fetched_since(follow, mark)
        if follow.assigned and not booted:
            undone = f"; {await _undo(follow, left, cycled)}"
        else:
            await _left_after_boot(follow, left, booted, current)
            undone = await _clear_quirk(follow)
        raise ActionError(f"{current}: {exc.title}: {exc}{undone}") from exc
    except asyncio.CancelledError:
        # an abort: undo what can be undone, bounded, whatever else is cancelled meanwhile
        async def undo() -> None:
            fetched = booted or await _fetched_since(follow, mark)
            if follow.assigned and not fetched:
                await _undo(follow, left, cycled)
            else:
                await _left_after_boot(follow, left, fetched, current)
                await _clear_quirk(follow)

        undoing = asyncio.ensure_future(_bounded(undo(), 4 * _ROLLBACK_TIMEOUT))
        while not undoing.done():  # a second cancel (quitting, another `c`) must not cut it short
            try:
                await asyncio.shield(undoing)
            except asyncio.CancelledError:
                pass
        raise
    finally:
        await prov.close()


async def _bounded(coro: Coroutine[Any, Any, None], seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await coro
    except TimeoutError:
        pass


async def _fetched_since(f: _Follow, mark: float | None) -> bool:
    """True when the provisioner saw the node fetch its assignment since ``mark`` (a boot
    this reimage did not notice yet: its install runs on its own)."""
    if mark is None or not f.assigned:
        return False
    try:
        async with asyncio.timeout(_ROLLBACK_TIMEOUT):
            seen = await f.prov.fetches(f.node, mark) or []
    except (TimeoutError, FleetError):
        return False
    return any(fetch.status == 200 for fetch in seen)


async def _power_word(f: _Follow) -> str:
    try:
        async with asyncio.timeout(5.0):  # what is left is read, not waited for
            return (await f.bmc.power_state()).value
    except (TimeoutError, DriverError):
        return "unknown"


async def _undo(f: _Follow, left: Left, cycled: bool) -> str:
    """The node never fetched this reimage's assignment: put the previous one back and
    clear the boot override; ``left`` says what is left, the words say what was done."""
    words = await _take_back(f.prov, f.node)
    left.rolled_back = words.startswith("rolled back")
    left.assignment = "previous" if left.rolled_back else "new"
    left.assignment_detail = words.split(": ", 1)[-1] if left.rolled_back else f"{f.image.ref}: {words}"
    f.quirk = None  # cleared below either way
    try:
        async with asyncio.timeout(_ROLLBACK_TIMEOUT):
            seen = await clear_override(f.bmc)
        left.boot_override = "cleared"
        words += f"; {seen}"
    except (TimeoutError, DriverError) as exc:
        left.boot_override = "set"
        left.rolled_back = False
        why = "no answer" if isinstance(exc, TimeoutError) else str(exc)
        words += f"; the boot override was not cleared ({why}): clear it by hand"
    left.power = await _power_word(f)
    # with the override cleared the node boots its disk; with it still set it boots the network,
    # and installs whatever is assigned then (the previous image, or the new one if not rolled back)
    left.install_pending = left.boot_override == "set" and cycled
    return words


async def _left_after_boot(f: _Follow, left: Left, booted: bool, current: str) -> None:
    """What is left once the node may have fetched the new assignment (nothing to undo)."""
    if not f.assigned:
        left.assignment = "previous"
        left.assignment_detail = "nothing assigned"
        left.install_pending = False
        left.power = await _power_word(f)
        return
    left.assignment = "new"
    left.assignment_detail = f.image.ref
    left.boot_override = "consumed" if booted else None
    left.power = await _power_word(f)
    # a node that fetched its script runs the installer on its own until it reports the image
    left.install_pending = booted and current in ("rebooting", "installing")


#: seconds a rollback after a failure may take (it runs after the phase's own time is up)
_ROLLBACK_TIMEOUT = 15.0


async def _take_back(prov: ProvisionerBackend, node: Node) -> str:
    """Undo this reimage's assignment (the node never fetched it); what was done, for the error."""
    try:
        async with asyncio.timeout(_ROLLBACK_TIMEOUT):
            restored = await prov.rollback(node)
    except TimeoutError:
        return f"the new assignment is still in place (rollback: no answer in {_ROLLBACK_TIMEOUT:g} s)"
    except FleetError as exc:
        return f"the new assignment is still in place (rollback failed: {exc})"
    if restored is None:
        return "the new assignment is still in place (no previous one recorded)"
    if restored.image is None and restored.detail == "no boot script":
        return "rolled back: the new boot script was removed (the node had none)"
    return f"rolled back: the previous assignment is restored ({restored.image or restored.detail or 'none'})"


async def _confirm(prov: ProvisionerBackend, node: Node) -> str:
    """The reimage finished: its assignment becomes the known-good one (see the module docstring).

    A failure here does not undo the reimage (the node runs the image); it is said in the
    result, and a later reimage keeps the older record for rollback.
    """
    try:
        async with asyncio.timeout(_ROLLBACK_TIMEOUT):
            await prov.confirm(node)
    except TimeoutError:
        return f"; the provisioner did not mark the assignment verified in {_ROLLBACK_TIMEOUT:g} s"
    except FleetError as exc:
        return f"; the provisioner could not mark the assignment verified ({exc})"
    return ""


async def _assign(f: _Follow, kind: str) -> str:
    node, image = f.node, f.image
    try:
        old = await f.prov.assign(node, image)
    except DriverError as exc:
        raise ActionError(f"assign: {kind} provisioner: {exc}") from exc
    except ActionError as exc:
        raise ActionError(f"assign: {exc}") from exc
    f.assigned = True
    target = BootTarget.CD if boot_target(f.site) == "cd" else BootTarget.PXE
    try:
        await f.bmc.set_boot_override(target)
        got = await f.bmc.boot_override()
    except DriverError as exc:
        raise ActionError(f"assign: boot override {target.value} once: {exc}") from exc
    try:
        f.quirk = readback_quirk(target, got)
    except ValueError as exc:
        raise ActionError(f"assign: boot override not applied: asked {target.value.upper()} once, the BMC reports "
                          f"{exc}") from None
    was = old.image if old is not None and old.image else "nothing"
    override = (f"boot override {target.value.upper()} once" if f.quirk is None
                else f"boot override read back: {f.quirk}: will clear after boot")
    return f"{image.ref} assigned in {kind} provisioner (was {was}); {override}"


async def _clear_quirk(f: _Follow) -> str:
    """Clear an override that read back imperfectly (once); words to add to a detail or error."""
    if f.quirk is None:
        return ""
    f.quirk = None
    try:
        async with asyncio.timeout(_ROLLBACK_TIMEOUT):
            return f"; {await clear_override(f.bmc)}"
    except TimeoutError:
        return f"; the boot override was not cleared (no answer in {_ROLLBACK_TIMEOUT:g} s): clear it by hand"
    except DriverError as exc:
        return f"; the boot override was not cleared ({exc}): clear it by hand"


async def _booted(f: _Follow, mark: float | None) -> str:
    """Wait for the provisioner to see the boot (or, when it cannot, for power on)."""
    if mark is None:  # the provisioner cannot see boots (vmedia): power on is what we can know
        how = "booting from virtual CD" if boot_target(f.site) == "cd" else "booting"
        return f"{await _powered(f)}; {how}"
    while True:
        try:
            seen: list[Fetch] = await f.prov.fetches(f.node, mark) or []
        except DriverError as exc:
            f.seen = f"provisioner: {exc}"
            seen = []
        for fetch in seen:
            if fetch.status == 200:
                return f"boot seen by the provisioner ({fetch.what or 'fetch'})"
            raise ActionError(f"rebooting: the node's boot fetch got HTTP {fetch.status} from the provisioner "
                              f"({fetch.what}); nothing assigned for {f.node.mac}?")
        if not seen:
            state = await f.power()
            if state is not None:
                f.seen = f"power {state.value}, no boot fetch seen by the provisioner yet"
        await f.pause()


async def _installed(f: _Follow, then: Coroutine[Any, Any, str]) -> str:
    """The provisioner's workflow (DRP) runs to its end, then ``then`` (the OS answers)."""
    try:
        await _workflow(f)
    except BaseException:
        then.close()
        raise
    return await then


async def _workflow(f: _Follow) -> None:
    """DRP: follow the machine's Stage, CurrentTask and job to WorkflowComplete; a failed job
    fails the install.  Nothing to follow for a provisioner without workflows."""
    progress = getattr(f.prov, "progress", None)
    if progress is None:
        return
    while True:
        try:
            p = await progress(f.node)
        except DriverError as exc:
            f.seen = f"provisioner: {exc}"
            await f.pause()
            continue
        if p is None:  # no workflow (DRP bootenv mode): the install is not followed there
            return
        if p.failed:
            why = f": {'; '.join(p.errors)}" if p.errors else ""
            raise ActionError(f"installing: {p.words()}: the job failed{why}")
        if p.complete:
            return
        f.seen = p.words()
        await f.pause()


async def _powered(f: _Follow) -> str:
    while True:
        state = await f.power()
        if state == PowerState.ON:
            return "power on"
        if state is not None:
            f.seen = f"power {state.value}"
        await f.pause()


async def _answers(f: _Follow) -> str:
    while True:
        ref = await f.running()
        if ref is not None:
            return ref
        await f.pause()


async def _reports(f: _Follow, ref: str) -> str:
    want = f.image.ref
    while ref != want:
        f.seen = f"node still reports {ref}, expected {want}"
        await f.pause()
        ref = await f.running() or ref
    return ref
