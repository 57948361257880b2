"""SVG snapshots of node detail's IPMI event lines and its help, at 80x24 and 160x48.

The same frozen demo lab and app as tests/tui/test_snapshots.py (its fixtures, imported);
the SVGs live in ``snapshots/test_snapshots_node/``.  (Node detail of a Redfish node with
a failed power supply is ``test_node`` there.)  Regenerate with ``--snapshot-update``
after a deliberate change, and look at them.

pyghmi moves SEL times onto this machine's clock (by the BMC's offset from it), so an
IPMI node's event times would follow the wall clock: while the opening poll reads the
event log, pyghmi's SEL reader is given the lab's frozen clock.
"""

from __future__ import annotations

import asyncio
import time
import types

import pytest

from tests.tui.test_snapshots import FROZEN, SIZES, app, empty_journal, settled, snapshot, swept  # noqa: F401

#: the demo's overheating IPMI node: a critical and a warning sensor, and a processor event
OVERTEMP = "dal1-r03-n11"


def _frozen_sel_clock(monkeypatch) -> None:
    """pyghmi's SEL reader sees the lab's frozen "now" (its other time functions are the real ones)."""
    from pyghmi.ipmi import events

    clock = types.SimpleNamespace(time=lambda: FROZEN, localtime=time.localtime, strftime=time.strftime)
    monkeypatch.setattr(events, "time", clock)


async def _open(app, pilot, name: str) -> None:  # noqa: F811
    from screens.node import NodeScreen

    app.push_screen(NodeScreen(name))
    await pilot.pause()
    for _ in range(600):  # its opening poll (sensors, events) against the frozen lab
        if not getattr(app.screen, "polling", False):
            break
        await asyncio.sleep(0.05)
    app.drain()
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_node_ipmi_events(snap_compare, app, monkeypatch, size):  # noqa: F811
    """An IPMI node running hot: failing sensors with the threshold each crossed, and the
    event log (focused, so it is in view at 80x24) as decoded SEL lines."""
    _frozen_sel_clock(monkeypatch)
    seen = {}

    async def open_events(pilot):
        await _open(app, pilot, OVERTEMP)
        await pilot.press("tab", "tab", "tab", "tab")  # failing, state, sensors, identity -> events
        await settled(pilot)
        seen["focused"] = app.screen.focused.id
        seen["events"] = [e.message for e in app.fleet.nodes[OVERTEMP].events or []]

    assert snap_compare(app, run_before=open_events, terminal_size=size)
    assert seen["focused"] == "events"
    assert "CPU1 Status (Processor): Processor automatically throttled  asserted" in seen["events"]


@pytest.mark.parametrize("size", SIZES)
def test_node_help(snap_compare, app, size):  # noqa: F811
    """Help over node detail: the screen's summary whole and wrapped, then its keys."""

    async def open_help(pilot):
        await _open(app, pilot, "dal1-r01-n07")
        await pilot.press("question_mark")
        await settled(pilot)

    assert snap_compare(app, run_before=open_help, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_node_help_reading(snap_compare, app, size):  # noqa: F811
    """Help over node detail, scrolled to how its lines read (a failing sensor, an event)."""

    async def open_help(pilot):
        await _open(app, pilot, "dal1-r01-n07")
        await pilot.press("question_mark")
        await settled(pilot)
        notes = app.screen.query_one("#help-notes")
        app.screen.query_one("#help-body").scroll_to_widget(notes, animate=False, top=True)
        await settled(pilot)

    assert snap_compare(app, run_before=open_help, terminal_size=size)
