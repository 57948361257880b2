"""SVG snapshots of every screen at 80x24 and 160x48 (pytest-textual-snapshot).

The SVGs live in ``snapshots/test_snapshots/`` at the top level (see its README); after a
deliberate visual change regenerate them with ``python3 -m pytest
tests/tui/test_snapshots.py --snapshot-update`` and look at them.

Determinism: the demo lab runs with a frozen clock (sensors, event logs, counters
and uptimes stand still), one full sweep of every poll job over it fills a Fleet
once per worker process (``frozen_sweep`` in tests/tui/conftest.py, shared by every
snapshot module), and each app gets a copy of that state with polling off and a
frozen app clock.  The screens show the inventory as written (the lab's
ephemeral ports would differ on every run); the app's poller still talks to the
lab, for the node screen's opening poll.  The action journal is a fresh empty one.

The Activity and action cases get a journal and lock directory of their own, a fixed
operator ($FLEET_OPERATOR) and a fixed plan id (a plan's id is otherwise random):
Activity shows a journal written with fixed times; the confirmation dialog plans
against the frozen lab (its power states are fixed); the progress screen shows a
finished power cycle with the cursor on the skipped node, because a done node's
steps show how many seconds each took, which differs run to run.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import tempfile
import types
from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion

from console import site as sites
from console.cli.main import SiteContext
from console.live.fleet import Fleet
from console.live.poller import NODE_JOBS, PollConfig, Poller
from console.ops.options import RunOptions
from screens.app import make_app

SNAPSHOTS = Path(__file__).resolve().parents[2] / "snapshots"
#: the lab's and the app's frozen "now": 2026-01-01T00:00:00Z
FROZEN = 1_767_225_600.0
#: the app's clock runs a little after the sweep, so ages read "7s"
APP_NOW = FROZEN + 7
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
#: a node whose BMC rejects our credentials, so the ERROR column has something to show
AUTH_FAIL = "dal1-r02-n12"


class SnapshotsDirSVG(SVGImageExtension):
    """The plugin's SVG extension, storing the files in snapshots/<test module>/ at the top level."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(SNAPSHOTS / test_location.basename)


class _SnapshotsDirAssertion(SnapshotAssertion):
    """snap_compare asks for the plugin's own extension: hand it ours instead."""

    def use_extension(self, extension_class=None):
        if extension_class is SVGImageExtension:
            extension_class = SnapshotsDirSVG
        return super().use_extension(extension_class)


@pytest.fixture
def snapshot(snapshot):
    return _SnapshotsDirAssertion(session=snapshot.session, extension_class=SnapshotsDirSVG,
                                  test_location=snapshot.test_location,
                                  update_snapshots=snapshot.update_snapshots)


@pytest.fixture(scope="module")
def empty_journal():
    """A fresh action journal: other tests' activity must not reach the node screen."""
    saved = os.environ.get("XDG_STATE_HOME")
    with tempfile.TemporaryDirectory(prefix="fleet-snap-state-") as path:
        os.environ["XDG_STATE_HOME"] = path
        try:
            yield path
        finally:
            if saved is None:
                os.environ.pop("XDG_STATE_HOME", None)
            else:
                os.environ["XDG_STATE_HOME"] = saved


async def _sweep(site, secrets) -> Fleet:
    fleet = Fleet(site, clock=lambda: FROZEN)
    poller = Poller(site, fleet, secrets, PollConfig(timeout=30.0, min_interval=0.0))
    try:
        await poller.sweep(NODE_JOBS, switches=True)
    finally:
        await poller.aclose()
    return fleet


@pytest.fixture(scope="module")
def swept(frozen_sweep, empty_journal):
    """(lab, effective site, secrets, Fleet after one complete sweep) over a frozen demo lab:
    the worker's one (tests/tui/conftest.py), with this module's empty journal in place."""
    return frozen_sweep


@pytest.fixture
def app(swept):
    """A fresh app holding a copy of the swept state, polling off, clock frozen."""
    lab, site, secrets, fleet = swept
    app = make_app(SiteContext(site, secrets), poll=False, clock=lambda: APP_NOW)
    app.fleet.site = sites.load("demo")  # the inventory as written: no ephemeral ports on screen
    app.fleet.nodes.update(copy.deepcopy(fleet.nodes))
    app.fleet.switches.update(copy.deepcopy(fleet.switches))
    app.fleet.last_sweep_at = fleet.last_sweep_at
    return app


async def settled(pilot, rounds: int = 20) -> None:
    """Pause until two screenshots in a row agree (tables size their columns on idle)."""
    previous = None
    for _ in range(rounds):
        await pilot.pause()
        shot = re.sub(r"terminal-\d+-", "terminal-", pilot.app.export_screenshot())
        if shot == previous:
            return
        previous = shot


@pytest.mark.parametrize("size", SIZES)
def test_fleet(snap_compare, app, size):
    """The fleet table: columns fit the width (compact forms and no PORT at 80)."""
    assert snap_compare(app, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_fleet_filtered(snap_compare, app, size):
    """Filtered with a state word: the three powered-off nodes."""
    assert snap_compare(app, press=["slash", "o", "f", "f", "enter"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_fleet_marks(snap_compare, app, size):
    """Three marked nodes (dots in the first column, the count in the summary)."""
    assert snap_compare(app, press=["space", "space", "down", "space"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_racks(snap_compare, app, size):
    """The rack elevations."""
    pytest.importorskip("screens.rack")
    assert snap_compare(app, press=["r"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_node(snap_compare, app, size):
    """Node detail of the node with the failed power supply (a Redfish BMC).

    Not an IPMI node: pyghmi moves SEL timestamps onto the local clock (by the BMC's
    offset from it), so their event times would follow the wall clock.
    """
    node = pytest.importorskip("screens.node")

    async def open_node(pilot):
        app.push_screen(node.NodeScreen("dal1-r02-n19"))
        await pilot.pause()
        for _ in range(600):  # its opening poll (sensors, events) against the frozen lab
            if not getattr(app.screen, "polling", False):
                break
            await asyncio.sleep(0.05)
        app.drain()  # what the app's 0.1 s timer does, now rather than maybe
        await settled(pilot)

    assert snap_compare(app, run_before=open_node, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_switches(snap_compare, app, size):
    """The switches and their ports (one unplugged node in the demo site)."""
    pytest.importorskip("screens.switches")
    assert snap_compare(app, press=["w"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, app, size):
    """Help over the fleet screen."""
    pytest.importorskip("screens.help")
    assert snap_compare(app, press=["question_mark"], terminal_size=size)


# --------------------------------------------------------------------------- activity, actions
#: the operator every journal entry of the cases below names
OPERATOR = "alice"
#: the plan id the action cases show (a fresh plan's id is random: token_hex)
PLAN_ID = "5eed0c1e"


@pytest.fixture
def own_state(tmp_path, monkeypatch):
    """A journal and lock directory of this test alone, a fixed operator and a fixed plan id.

    The action cases write to the journal and take locks; neither may reach the
    module's empty journal (the node screen shows a node's journal) nor another test.
    """
    import console.ops.actions

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("FLEET_CONSOLE_LOCKS", str(tmp_path / "locks"))
    monkeypatch.setenv("FLEET_OPERATOR", OPERATOR)
    fixed_ids = types.SimpleNamespace(token_hex=lambda nbytes=4: PLAN_ID)
    monkeypatch.setattr(console.ops.actions, "pysecrets", fixed_ids)  # what Plan ids come from
    return tmp_path


#: a small journal: a PXE reboot, then a power cycle with a ticket (one node failed, the
#: protected node skipped); (action, ticket, plan, [(seconds after FROZEN, node, step,
#: result, error, detail)])
_JOURNAL = (
    ("pxe", None, "e5f6a7b8", [
        (1.000, None, "plan", "started", None,
         "1 nodes, racks r01, switches dal1-r01-tor; skipped 0; fanout 10, canary 0, max failures -, stagger 0 s"),
        (1.200, "dal1-r01-n07", "boot-pxe", "ok", None, "boot override PXE once requested"),
        (1.300, "dal1-r01-n07", "verify-boot", "ok", None, "read back: pxe once"),
        (4.900, "dal1-r01-n07", "reboot", "ok", None, "reset; read back on after 3.5 s (seen on)"),
        (4.950, None, "summary", "ok", None, "1 done"),
    ]),
    ("power cycle", "INC-4711", "a1b2c3d4", [
        (60.120, None, "plan", "started", None,
         "3 nodes, racks r02, switches dal1-r02-tor; skipped 1; fanout 10, canary 0, max failures -, stagger 0 s"),
        (60.125, "dal1-r03-db01", "plan", "skipped", "protected (override with --force-protected)", None),
        (60.310, "dal1-r02-n01", "power-cycle", "started", None, "power off and on again, then read the power "
         "state back until it is on (up to 120 s)"),
        (60.312, "dal1-r02-n02", "power-cycle", "started", None, None),
        (60.315, "dal1-r02-n12", "power-cycle", "started", None, None),
        (60.402, "dal1-r02-n12", "power-cycle", "failed",
         "BMC rejected the credentials: HTTP 401 Unauthorized from the Redfish service at the node's BMC", None),
        (62.540, "dal1-r02-n01", "power-cycle", "ok", None, "read back on after 2.1 s (seen off -> on)"),
        (62.610, "dal1-r02-n02", "power-cycle", "ok", None, "read back on after 2.2 s (seen off -> on)"),
        (62.650, None, "summary", "failed", None, "2 done, 1 failed, 1 skipped"),
    ]),
)


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_journal(site: str) -> int:
    """Write _JOURNAL with fixed times (and the fixed operator) through the Journal; the entry count."""
    from console.ops.journal import Journal

    count = 0
    for action, ticket, plan, entries in _JOURNAL:
        journal = Journal(site, action=action, ticket=ticket, plan=plan)
        for offset, node, step, result, error, detail in entries:
            journal.write(time=_iso(FROZEN + offset), node=node, step=step, result=result, error=error,
                          detail=detail)
            count += 1
    return count


@pytest.mark.parametrize("size", SIZES)
def test_activity(snap_compare, app, own_state, size):
    """The Activity screen (``l``) over a small journal: a row per plan, newest last, the
    power cycle opened (enter) into its steps, the cursor on the failed step.

    The lines under the table show that entry in full (its error is longer than the
    column).  At 80 columns the compact columns: the time of day only, no TICKET.
    """
    pytest.importorskip("screens.activity")
    written = _write_journal(app.ctx.site.name)
    seen = {}

    async def open_activity(pilot):
        await pilot.press("l", "enter", *["down"] * 6)
        await settled(pilot)
        screen = app.screen
        seen["screen"] = type(screen).__name__
        seen["entries"] = list(getattr(screen, "entries", ()))
        seen["cursor"] = screen.cursor_row()[1] if seen["entries"] else None

    assert snap_compare(app, run_before=open_activity, terminal_size=size)
    assert seen["screen"] == "ActivityScreen"
    assert len(seen["entries"]) == written
    assert seen["entries"][-1]["time"] == _iso(FROZEN + 62.65)  # newest last
    assert {e["operator"] for e in seen["entries"]} == {OPERATOR}
    assert (seen["cursor"]["node"], seen["cursor"]["result"]) == ("dal1-r02-n12", "failed")


@pytest.mark.parametrize("size", SIZES)
def test_activity_plans(snap_compare, app, own_state, size):
    """The Activity screen as it opens: one row per plan (action, nodes, result counts,
    operator, time), the cursor on the newest, at the bottom; the plan said in full below."""
    pytest.importorskip("screens.activity")
    _write_journal(app.ctx.site.name)

    async def open_activity(pilot):
        await pilot.press("l")
        await settled(pilot)

    assert snap_compare(app, run_before=open_activity, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_switches_port(snap_compare, app, size):
    """The r02 switch's ports with the cursor on the miscabled Ethernet8: the line under
    the ports says where its node is seen, in full."""
    pytest.importorskip("screens.switches")
    assert snap_compare(app, press=["w", "down", "tab", *["down"] * 7], terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_toasts(snap_compare, app, size):
    """Two notifications at the top right, over the header and the summary, not over the rows."""

    async def notify(pilot):
        app.notify("power cycle finished: 3 done, 1 skipped", severity="warning", timeout=600)
        app.notify("reimage flatcar@4152.2.0 continues in the background; its end will be notified",
                   timeout=600)
        for _ in range(50):
            await pilot.pause()
            if len(app.screen.query("Toast")) == 2:
                break
        await settled(pilot)

    assert snap_compare(app, run_before=notify, terminal_size=size)


async def _until(pilot, done, what: str, seconds: float = 60.0) -> None:
    """Sleep in small steps (the lab answers in real time) until ``done()``; fail naming ``what``."""
    for _ in range(int(seconds / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _filter(pilot, text: str) -> None:
    """``/``, ``text`` pasted, enter: the filter as one change, not one per key typed."""
    from textual import events

    await pilot.press("slash")
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()
    assert pilot.app.focused.value == text, pilot.app.focused.value
    await pilot.press("enter")


def _no_blink(screen) -> None:
    """A focused Input blinks its cursor every 0.5 s: keep it steadily shown for the snapshot."""
    from textual.widgets import Input

    for box in screen.query(Input):
        box.cursor_blink = False


@pytest.mark.parametrize("size", SIZES)
def test_confirm(snap_compare, app, own_state, size):
    """Power cycle on three marked nodes: the plan read from the BMCs, Confirm waiting for "3"."""
    actions = pytest.importorskip("screens.actions")
    seen = {}

    async def plan_cycle(pilot):
        await pilot.press("space", "space", "down", "space", "p", "c")
        await _until(pilot, lambda: isinstance(app.screen, actions.ConfirmScreen)
                     and (app.screen.plan is not None or app.screen.error is not None), "the plan")
        _no_blink(app.screen)
        await settled(pilot)
        seen["error"] = app.screen.error
        seen["targets"] = [n.node for n in app.screen.plan.targets] if app.screen.plan else []
        seen["confirm disabled"] = app.screen.query_one("#confirm").disabled

    assert snap_compare(app, run_before=plan_cycle, terminal_size=size)
    assert seen["error"] is None
    assert seen["targets"] == ["dal1-r01-n01", "dal1-r01-n02", "dal1-r01-n04"]
    assert seen["confirm disabled"] is True


@pytest.mark.parametrize("size", SIZES)
def test_progress(snap_compare, app, own_state, size):
    """A finished power cycle: three nodes done, the protected one skipped, its row under the cursor.

    Marked through the filter: the protected database node and three r03 nodes, so
    the plan acts on 3 and skips 1.  The cursor stays on the first row, the skipped
    node, so the steps box says why it was skipped: a done node's steps show how
    long each took (seconds that differ run to run).
    """
    actions = pytest.importorskip("screens.actions")
    seen = {}
    app.run_options = RunOptions(poll_interval=0.05)  # the fast lab's power is read back at once

    async def run_cycle(pilot):
        await _filter(pilot, "dal1-r03-db01,dal1-r03-n[01-03]")
        await pilot.press("a", "p", "c")
        await _until(pilot, lambda: isinstance(app.screen, actions.ConfirmScreen)
                     and (app.screen.plan is not None or app.screen.error is not None), "the plan")
        await pilot.press("3", "enter")
        await _until(pilot, lambda: isinstance(app.screen, actions.ProgressScreen) and app.screen.finished,
                     "the run to finish")
        await settled(pilot)
        screen = app.screen
        seen["phases"] = {name: s.phase for name, s in screen.states.items()}
        seen["cursor"] = screen._cursor_node()
        seen["error"] = screen.error

    assert snap_compare(app, run_before=run_cycle, terminal_size=size)
    assert seen["error"] is None
    assert seen["phases"] == {"dal1-r03-db01": "skipped", "dal1-r03-n01": "done",
                              "dal1-r03-n02": "done", "dal1-r03-n03": "done"}
    assert seen["cursor"] == "dal1-r03-db01"


def test_confirm_protected(snap_compare, app, own_state):
    """The protected database node and two others at 80x24: the dialog lists the protected
    node skipped and how to include it (typing its name), over the count field and the
    buttons, which fit."""
    actions = pytest.importorskip("screens.actions")
    seen = {}

    async def plan_off(pilot):
        await _filter(pilot, "dal1-r03-db01,dal1-r03-n[01-02]")
        await pilot.press("a", "p", "f")
        await _until(pilot, lambda: isinstance(app.screen, actions.ConfirmScreen)
                     and (app.screen.plan is not None or app.screen.error is not None), "the plan")
        _no_blink(app.screen)
        await settled(pilot)
        seen["error"] = app.screen.error
        seen["protected"] = list(app.screen.protected)
        seen["targets"] = [n.node for n in app.screen.plan.targets] if app.screen.plan else []

    assert snap_compare(app, run_before=plan_off, terminal_size=(80, 24))
    assert seen["error"] is None
    assert seen["protected"] == ["dal1-r03-db01"]
    assert seen["targets"] == ["dal1-r03-n01", "dal1-r03-n02"]


@pytest.mark.parametrize("size", SIZES)
def test_audit(snap_compare, app, size):
    """The image audit of the frozen demo lab (A): images by version, then the nodes not ok,
    drift first (dal1-r01-n20: the same version, another digest), the powered-off hosts unknown."""
    pytest.importorskip("screens.audit")

    async def audit(pilot):
        await pilot.press("A")
        for _ in range(1200):  # one SSH read per node against the lab
            if getattr(app.screen, "report", None) is not None:
                break
            await asyncio.sleep(0.05)
        await settled(pilot)

    assert snap_compare(app, run_before=audit, terminal_size=size)
