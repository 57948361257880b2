"""Action steps, each defined once: its name (what the plan lists, the phase the operator
sees and the journal's ``step``), what the plan says it does, and how it runs.

A power or PXE step runs through :data:`RUNS` (one coroutine per step, given the
:class:`~console.ops.runner.Runner` and the node's open BMC driver).  A reimage's steps
are its phases (``assigned``, ``rebooting``, ``installing``, ``verifying``): the plan
lists them, :func:`console.ops.reimage.reimage_node` runs them and reports each as it
starts, in the same order, so what the operator confirmed is what they then see.

Results (:class:`Result`), a node's final states (:class:`NodeState`) and why a node is
left out of a plan (:class:`Skip`) are typed here as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from console.drivers.bmc import BmcDriver, BootTarget, PowerAction, PowerState
from console.errors import ActionError, DriverError
from console.ops.bootquirk import AfterBoot, readback_quirk

if TYPE_CHECKING:
    from console.ops.runner import Runner

__all__ = ["FINAL", "NodeState", "Result", "RUNS", "Skip", "SkipKind", "Step", "StepName", "StepRun", "REIMAGE_PHASES"]


class StepName(StrEnum):
    """Every step a node goes through; the value is what the plan, progress and journal say."""

    POWER_ON = "power-on"
    POWER_OFF = "power-off"
    POWER_CYCLE = "power-cycle"
    RESET = "reset"
    SOFT_OFF = "soft-off"
    HARD_OFF = "hard-off"
    BOOT_PXE = "boot-pxe"
    VERIFY_BOOT = "verify-boot"
    REBOOT = "reboot"
    #: added when verify-boot accepted an override with a quirk
    CLEAR_BOOT = "clear-boot"
    #: a canary's health check, after its steps
    CANARY_HEALTH = "canary-health"
    #: a whole reimage (journalled around its phases)
    REIMAGE = "reimage"
    # the reimage's phases, in order
    ASSIGNED = "assigned"
    REBOOTING = "rebooting"
    INSTALLING = "installing"
    VERIFYING = "verifying"


#: the phases :func:`console.ops.reimage.reimage_node` reports, in order (then ``done``)
REIMAGE_PHASES = (StepName.ASSIGNED, StepName.REBOOTING, StepName.INSTALLING, StepName.VERIFYING)


class Result(StrEnum):
    """What a journal entry or a step record says of a step."""

    STARTED = "started"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class NodeState(StrEnum):
    """A node's phase when it is not in a step: before it starts, and how it ended."""

    PLANNED = "planned"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


#: final node states
FINAL = (NodeState.DONE, NodeState.FAILED, NodeState.SKIPPED, NodeState.CANCELLED)


class SkipKind(StrEnum):
    """Why a node is left out: only ``already`` means there is nothing to do."""

    ALREADY = "already"  # already in the wanted state: nothing to do
    PROTECTED = "protected"  # protected in the inventory
    LOCKED = "locked"  # another operator holds it
    UNREACHABLE = "unreachable"  # no credentials, no answer, power state unknown
    REFUSED = "refused"  # the action cannot be done to it (no MAC, no ISO ...)


@dataclass(frozen=True)
class Skip:
    """Why a node is left out of a plan: the words the operator reads, and their kind."""

    reason: str
    kind: SkipKind = SkipKind.REFUSED

    @property
    def nothing_to_do(self) -> bool:
        """True when the node is already as wanted (a skip that is not a failure)."""
        return self.kind is SkipKind.ALREADY

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Step:
    """One planned step on one node: its name and what it does, in words."""

    name: StepName
    description: str


# --------------------------------------------------------------------------- plan words
def _verify(want: str, timeout: float) -> str:
    return f"read the power state back until it is {want} (up to {timeout:g} s)"


def power_on(power_timeout: float, *, instead_of_cycle: bool = False) -> Step:
    """Power on, verified; for a cycle of a node that is off, said so."""
    how = "node is off: power on instead of a cycle" if instead_of_cycle else "power on"
    return Step(StepName.POWER_ON, f"{how}, then {_verify('on', power_timeout)}")


def power_off(power_timeout: float) -> Step:
    return Step(StepName.POWER_OFF, f"hard power off, then {_verify('off', power_timeout)}")


def power_cycle(power_timeout: float) -> Step:
    return Step(StepName.POWER_CYCLE, f"power off and on again, then {_verify('on', power_timeout)}")


def reset(power_timeout: float) -> Step:
    return Step(StepName.RESET, f"warm reset, then {_verify('on', power_timeout)}")


def soft_off(wait: float) -> Step:
    return Step(StepName.SOFT_OFF, f"ACPI shutdown request, then wait up to {wait:g} s for power off")


def hard_off(hard_after: float, power_timeout: float) -> Step:
    return Step(StepName.HARD_OFF, f"if still on after {hard_after:g} s: hard power off, then "
                                   f"{_verify('off', power_timeout)}")


def pxe_steps(power_on_now: bool, power_timeout: float) -> list[Step]:
    """A PXE reboot: override, read back, then reset (on) or power on (off)."""
    boot = "reset (node is on)" if power_on_now else "power on (node is off)"
    return [
        Step(StepName.BOOT_PXE, "set the boot override to PXE, once"),
        Step(StepName.VERIFY_BOOT, "read the boot override back: it must say PXE once (vendors revert it)"),
        Step(StepName.REBOOT, f"{boot}, then {_verify('on', power_timeout)}"),
    ]


CLEAR_BOOT = Step(StepName.CLEAR_BOOT, "clear the boot override once the provisioner sees the boot")


# --------------------------------------------------------------------------- how steps run
#: a step's coroutine: (runner, node name, its BMC) -> (result, detail); ActionError/DriverError on failure
StepRun = Callable[["Runner", str, BmcDriver], Awaitable[tuple[Result, str]]]


async def _power_on(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    await r.stagger_gate()
    await driver.power(PowerAction.ON)
    return Result.OK, (await r.wait_power(driver, PowerState.ON, r.options.power_timeout))[1]


async def _power_off(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    await driver.power(PowerAction.OFF)
    return Result.OK, (await r.wait_power(driver, PowerState.OFF, r.options.power_timeout))[1]


async def _power_cycle(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    await r.stagger_gate()
    await driver.power(PowerAction.CYCLE)
    return Result.OK, (await r.wait_power(driver, PowerState.ON, r.options.power_timeout))[1]


async def _reset(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    await driver.power(PowerAction.RESET)
    return Result.OK, (await r.wait_power(driver, PowerState.ON, r.options.power_timeout))[1]


async def _soft_off(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    opts = r.options
    await driver.power(PowerAction.SOFT)
    wait = opts.hard_after if opts.hard_after is not None else opts.soft_timeout
    reached, words = await r.wait_power(driver, PowerState.OFF, wait, fail=False)
    if reached:
        return Result.OK, words
    if opts.hard_after is None:
        raise ActionError(f"the OS did not shut down: {words} (ACPI request ignored? "
                          f"use --hard-after SECONDS to force it off)")
    return Result.OK, f"{words}; forcing it off next"


async def _hard_off(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    if await driver.power_state() == PowerState.OFF:
        return Result.SKIPPED, "not needed: the OS shut down"
    await driver.power(PowerAction.OFF)
    return Result.OK, (await r.wait_power(driver, PowerState.OFF, r.options.power_timeout))[1]


async def _boot_pxe(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    from console.ops.actions import failure_reason

    try:
        await driver.set_boot_override(BootTarget.PXE, persistent=False)
    except DriverError as exc:
        raise ActionError(f"setting the boot override failed: {failure_reason(exc)}") from exc
    return Result.OK, "boot override PXE once requested"


async def _verify_boot(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    got = await driver.boot_override()
    try:
        quirk = readback_quirk(BootTarget.PXE, got)
    except ValueError as exc:
        raise ActionError(f"boot override did not stick: the BMC reports {exc}, not pxe once "
                          f"(vendors revert it; not rebooting)") from None
    if quirk is None:
        return Result.OK, "read back: pxe once"
    after = AfterBoot(r.ctx.site, r.ctx.secrets, r.ctx.site.node(node))
    r.after_boot[node] = (quirk, after)
    await after.mark()  # before the reboot: the boot to wait for is a newer one
    return Result.OK, f"read back: {quirk}: will clear after boot"


async def _clear_boot(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    quirk, after = r.after_boot.pop(node)
    cleared, words = await after.clear_when_booted(driver, r.options.boot_timeout, r.options.poll_interval)
    r.boot_notes[node] = f"{quirk}; {words}"
    # the CLI shows this last step's words
    return (Result.OK if cleared else Result.SKIPPED), f"{words}; it read back {quirk}"


async def _reboot(r: Runner, node: str, driver: BmcDriver) -> tuple[Result, str]:
    state = await driver.power_state()
    if state == PowerState.ON:
        await driver.power(PowerAction.RESET)
        how = "reset"
    elif state == PowerState.UNKNOWN:
        raise ActionError("the BMC reports power state unknown: not rebooting")
    else:
        await r.stagger_gate()
        await driver.power(PowerAction.ON)
        how = "powered on"
    return Result.OK, f"{how}; " + (await r.wait_power(driver, PowerState.ON, r.options.power_timeout))[1]


#: how each power and PXE step runs (a reimage's phases run inside the reimage flow)
RUNS: dict[StepName, StepRun] = {
    StepName.POWER_ON: _power_on,
    StepName.POWER_OFF: _power_off,
    StepName.POWER_CYCLE: _power_cycle,
    StepName.RESET: _reset,
    StepName.SOFT_OFF: _soft_off,
    StepName.HARD_OFF: _hard_off,
    StepName.BOOT_PXE: _boot_pxe,
    StepName.VERIFY_BOOT: _verify_boot,
    StepName.CLEAR_BOOT: _clear_boot,
    StepName.REBOOT: _reboot,
}
