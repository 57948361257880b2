"""SVG snapshots of the timeline screen (``T``) at 80x24 and 160x48, and the key that opens it.

The same frozen demo lab and app as tests/tui/test_snapshots.py (its fixtures, imported);
the SVGs live in ``snapshots/test_snapshots_timeline/``.  Regenerate with
``--snapshot-update`` after a deliberate change, and look at them.

The story is fixed: the Redfish node with the failed power supply went from ok to
critical three hours before the app's frozen "now" as the poller saw it (the app's
Fleet is fed at fixed times), its polls failed for a minute an hour later, an operator
power-cycled it (a journal written with fixed times), its console printed a kernel
panic and its login prompt (a console log with fixed times, one line with an escape
sequence in it), and the audit history saw its image drift and come back.  Its BMC
event log is the frozen lab's.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from console.live.words import iso
from console.ops.journal import Journal
from console.serial.log import ConsoleLog
from tests.tui.test_snapshots import (  # noqa: F401
    APP_NOW,
    FROZEN,
    SIZES,
    app,
    empty_journal,
    settled,
    snapshot,
    swept,
)

#: the demo's Redfish node with a failed power supply
NODE = "dal1-r02-n19"
H = 3600.0


@pytest.fixture(scope="module")
def story_files(empty_journal):  # noqa: F811
    """The journal, console log and audit history of the story, written once for the module."""
    journal = Journal("demo", operator="alice")
    journal.write(time=iso(FROZEN - 2.5 * H), action="power cycle", node=NODE, step="plan", result="started",
                  ticket="INC-1207", plan="p-0001")
    journal.write(time=iso(FROZEN - 2.5 * H + 40), action="power cycle", node=NODE, step="power-cycle",
                  result="ok", ticket="INC-1207", plan="p-0001")
    stamps = iter([FROZEN - 2.5 * H + 45, FROZEN - 2.5 * H + 50, FROZEN - 2.5 * H + 60, FROZEN - 2.5 * H + 70])
    log = ConsoleLog("demo", NODE, clock=lambda: next(stamps))
    log.write(b"Kernel panic - not syncing: \x1b[1mFatal machine check\x1b[0m\n")
    log.write(b"reboot: Restarting system\n")
    log.write(b"EXT4-fs (sda9): mounted filesystem\n")
    log.write(b"dal1-r02-n19 login: ")
    log.close()
    base = Path(empty_journal) / "fleet-console" / "demo"
    fd = os.open(base / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for when, state, running in ((FROZEN - 26 * H, "drift", "flatcar@3975.2.2"),
                                     (FROZEN - 24 * H, "ok", "flatcar@4081.2.1")):
            f.write(json.dumps({"kind": "node", "node": NODE, "time": iso(when), "state": state,
                                "running": running, "desired": "flatcar@4081.2.1", "reason": ""}) + "\n")
    return empty_journal


def _seen_by_the_poller(app) -> None:  # noqa: F811
    """Feed the app's Fleet the node's story at fixed times, ending in its swept state."""
    fleet, st = app.fleet, app.fleet.nodes[NODE]
    power, health, events = st.power, st.health, st.events
    clock = fleet.clock
    try:
        for at, call in ((FROZEN - 4 * H, lambda: fleet.node_ok(NODE, "power", power="on", health="ok")),
                         (FROZEN - 3 * H, lambda: fleet.node_ok(NODE, "power", power="on", health=health)),
                         (FROZEN - 2 * H, lambda: fleet.node_failed(
                             NODE, "power", "unreachable: no answer from 127.1.2.19:80 after 10 s")),
                         (FROZEN - 2 * H + 60, lambda: fleet.node_ok(NODE, "power", power=power, health=health))):
            fleet.clock = lambda at=at: at
            call()
    finally:
        fleet.clock = clock
    st.events = events


async def _open(app, pilot) -> None:  # noqa: F811
    from screens.timeline import TimelineScreen

    _seen_by_the_poller(app)
    app.push_screen(TimelineScreen(NODE))
    await pilot.pause()
    for _ in range(600):  # the files, read off the event loop
        if getattr(app.screen, "files", None) is not None:
            break
        await asyncio.sleep(0.05)
    app.drain()
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_timeline(snap_compare, app, story_files, size):  # noqa: F811
    """The story of a node that went red: what the poller saw, the BMC's events, the
    console's panic, the operator's power cycle, the image audit; newest at the bottom."""
    seen = {}

    async def open_timeline(pilot):
        await _open(app, pilot)
        screen = app.screen
        seen["sources"] = {s.name: s.state for s in screen.sources}
        seen["texts"] = [e.text for e in screen.entries]
        seen["now"] = screen.now_line().plain

    assert snap_compare(app, run_before=open_timeline, terminal_size=size)
    assert seen["sources"] == {"poller": "read", "bmc": "read", "console": "read", "image": "read",
                               "journal": "read"}
    assert "health ok → critical" in seen["texts"] and "Kernel panic - not syncing: Fatal machine check" in seen["texts"]
    assert "✗ critical 3h" in seen["now"] and "● on ≥4h" in seen["now"]


def test_T_opens_the_cursors_node(app, story_files):  # noqa: F811
    """``T`` from the fleet table opens the timeline of the node under the cursor."""
    from screens.fleet import FleetScreen
    from screens.table import FleetTable
    from screens.timeline import TimelineScreen

    async def run() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, FleetScreen)
            under = app.screen.query_one(FleetTable).cursor_key
            await pilot.press("T")
            await pilot.pause()
            assert isinstance(app.screen, TimelineScreen) and app.screen.node_name == under
            assert app.current_node() == under
            await pilot.press("T")  # already there: nothing more
            await pilot.pause()
            assert len([s for s in app.screen_stack if isinstance(s, TimelineScreen)]) == 1
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, FleetScreen)

    asyncio.run(run())
