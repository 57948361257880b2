"""SVG snapshots of every screen at 80x24 and 160x48 (pytest-textual-snapshot).

The SVGs live in ``snapshots/test_snapshots/`` at the top level (see its README); after a
deliberate visual change regenerate them with ``python3 -m pytest
tests/test_snapshots.py --snapshot-update`` and look at them.

Determinism: the demo lab runs with a frozen clock (sensors, event logs, counters
and uptimes stand still), one full sweep of every poll job over it fills a Fleet
once per module, and each app gets a copy of that state with polling off and a
frozen app clock.  The screens show the inventory as written (the lab's
ephemeral ports would differ on every run); the app's poller still talks to the
lab, for the node screen's opening poll.  The action journal is a fresh empty one.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import tempfile
from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion

from console import site as sites
from console.cli import SiteContext
from console.fleet import Fleet
from console.poller import NODE_JOBS, PollConfig, Poller
from console.secrets import Secrets
from screens.app import make_app

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
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
def swept(private_runtime_dir, empty_journal):
    """(lab, effective site, secrets, Fleet after one complete sweep) over a frozen demo lab."""
    from console.lab.lab import Lab

    lab = Lab(sites.load("demo"), ephemeral=True, time_scale=0.02, frozen_time=FROZEN)
    lab.start()
    try:
        lab.fault("redfish", AUTH_FAIL, "auth_fail")
        site = lab.effective_site()
        secrets = Secrets(lab=lab.secrets)
        fleet = asyncio.run(_sweep(site, secrets))
        unread = [n for n, st in fleet.nodes.items() if st.last_success is None and n != AUTH_FAIL]
        assert not unread, f"the sweep left nodes unread: {unread}"
        assert all(st.last_success for st in fleet.switches.values()), "a switch was not read"
        yield lab, site, secrets, fleet
    finally:
        lab.stop()


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
