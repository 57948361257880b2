"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Callable, TypeVar

from console.drivers import open_bmc
from console.ops.reimage import PhaseTimeouts, reimage_node

__all__ = ["FAST_PHASES", "children", "ended", "heal_when_hung", "redfish_requests", "reimage_phases", "wait_for",
           "wait_until"]

#: reimage phase limits for a lab at time_scale 0.02: generous, and polled often
FAST_PHASES = PhaseTimeouts(assigned=30, rebooting=30, installing=30, verifying=30, poll=0.05)

T = TypeVar("T")


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the parenthesised command name (proc(5)):
    state, parent pid, ...  OSError when there is no such process."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def ended(pid: int) -> bool:
    """The process has exited: gone, or a zombie nobody has reaped yet.  The run's first
    process adopts orphans (tests/conftest.py) and reaps them only at the end, so a process
    whose parent died stays a zombie until then."""
    try:
        state = _stat(pid)[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def children(pid: int) -> dict[int, tuple[str, str]]:
    """``pid``'s children now: child pid -> (state letter, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
            if int(fields[1]) != pid:
                continue
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry)] = (fields[0], command.strip())
    return found


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition",
             interval: float = 0.01) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it is true and return its value;
    fail after ``timeout`` seconds.  For code outside an event loop (labs, threads)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


async def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 50 ms until it is true; fail after ``timeout`` seconds.

    Not pilot.pause(): that waits for an idle screen, which never comes while polling runs.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def redfish_requests(lab, node: str) -> int:
    """How many requests ``node``'s Redfish BMC in ``lab`` has taken so far."""
    return lab.redfish_stats(node)["requests"]


async def heal_when_hung(lab, node: str, before: int, timeout: float = 30.0) -> None:
    """Once ``node``'s Redfish BMC (faulted "hang") has taken a request after the first
    ``before``, clear the fault.  The lab holds the request it took until the lab stops, so
    the code under test still sees it hang; what it does next (rollback, logout, read back)
    is answered at once instead of waiting out its own time limits.  Run it as a task beside
    the code under test; the BMC must see no other client meanwhile."""
    await wait_until(lambda: redfish_requests(lab, node) > before, timeout, f"a request hung at {node}'s BMC")
    lab.fault("redfish", node, "")


async def reimage_phases(site, secrets, name: str, ref: str, timeouts: PhaseTimeouts = FAST_PHASES,
                         on_phase: Callable[[str], None] | None = None) -> list[tuple[str, str]]:
    """Reimage node ``name`` to image ``ref`` over a BMC session of its own; the phases it
    went through, as (phase, detail).  ``on_phase(phase)`` is called as each begins."""
    node, image = site.node(name), site.image(ref)
    phases: list[tuple[str, str]] = []

    def phase(p: str, detail: str) -> None:
        phases.append((p, detail))
        if on_phase:
            on_phase(p)

    bmc = open_bmc(node, secrets)
    try:
        await reimage_node(node, image, site=site, secrets=secrets, bmc=bmc, phase=phase, timeouts=timeouts)
    finally:
        await bmc.close()
    return phases


def none_left_open(before: dict[str, int], after: dict[str, int]) -> bool:
    """No more BMC sessions of any kind at the lab than before: what was opened was logged
    out.  Not "as many": the lab is shared, and a session another test left closing when
    ``before`` was read may have ended since."""
    return all(after.get(kind, 0) <= n for kind, n in before.items()) and set(after) <= set(before)
