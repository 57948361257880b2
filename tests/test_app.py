"""The fleet screen against the demo lab: live data, filter, marks, sort, stale banner."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable, Input, Static

from console.cli import SiteContext
from console.poller import PollConfig
from console.secrets import Secrets
from screens.app import make_app


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


FAST = PollConfig(power_interval=1.0, sensors_interval=60, events_interval=60, identity_interval=600,
                  image_interval=2.0, switch_interval=5, timeout=3.0, min_interval=0.0)


async def wait_until(pilot, predicate, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError("condition not met in time")


async def test_fleet_screen_shows_live_state_and_filters(ctx):
    app = make_app(ctx, poll_config=FAST, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        assert table.row_count == 89
        await wait_until(pilot, lambda: all(st.last_success for st in app.fleet.nodes.values()))
        print("all polled", flush=True)
        await wait_until(pilot, lambda: "off" in table.get_cell("dal1-r01-n13", "power").plain)
        print("n13 off", flush=True)
        assert "critical" in table.get_cell("dal1-r01-n07", "health").plain
        assert "READ-ONLY" in app.sub_title
        summary = str(app.screen.query_one("#summary", Static).render())
        assert "89/89 shown" in summary
        # filter with the selection syntax and state words
        await pilot.press("slash")
        for ch in "off":
            await pilot.press(ch)
        await pilot.pause()
        assert set(app.screen.shown) == {"dal1-r01-n13", "dal1-r03-n20", "dal1-r03-n21"}
        assert table.row_count == 3
        await pilot.press("escape")
        assert table.row_count == 89
        await pilot.press("slash")
        for ch in "rack=r02&drift":
            await pilot.press(ch)
        await pilot.pause()
        assert app.screen.shown == [f"dal1-r02-n0{i}" for i in range(1, 6)]
        # marks: `a` marks all filtered, space toggles the row under the cursor
        await pilot.press("enter")  # leave the filter input
        await pilot.press("a")
        assert app.screen.marked == set(app.screen.shown)
        await pilot.press("space")
        assert len(app.screen.marked) == 4
        assert "4 marked" in str(app.screen.query_one("#summary", Static).render())


async def test_bad_filter_is_marked_not_raised(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash")
        for ch in "@nosuch":
            await pilot.press(ch)
        await pilot.pause()
        inp = app.screen.query_one("#filter", Input)
        assert inp.has_class("bad") and "unknown group" in str(inp.tooltip)
        assert app.screen.query_one(DataTable).row_count == 89  # the last good view stays


async def test_stale_banner_when_nothing_answers(ctx):
    bad = ctx.site.model_copy(update={"nodes": tuple(n.model_copy(update={"bmc": n.bmc.model_copy(update={"port": 9})})
                                                     for n in ctx.site.nodes[:5]), "switches": (), "racks": ()})
    bad._index = None
    app = make_app(SiteContext(bad, ctx.secrets), poll_config=PollConfig(timeout=0.5, power_interval=0.5,
                                                                         image_interval=1e6, min_interval=0))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: all(st.error for st in app.fleet.nodes.values()))
        await pilot.pause(1.2)
        banner = app.screen.query_one("#banner", Static)
        assert banner.display and "no BMC has answered" in str(banner.render())
