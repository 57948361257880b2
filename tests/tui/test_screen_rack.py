"""The rack screen against the demo lab: blocks, state classes, cursor keys, enter, escape."""

from __future__ import annotations

import pytest

from console.cli.main import SiteContext
from console.secrets import Secrets
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.rack import LEGEND_ITEMS, NodeBlock, RackScreen


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


async def _open(app, pilot) -> RackScreen:
    await app.poller.sweep(("power",), switches=False)
    app.drain()
    screen = RackScreen()
    app.push_screen(screen)
    await pilot.pause()
    return screen


@pytest.mark.parametrize("width", [80, 40, 200])
async def test_the_legend_breaks_between_entries(ctx, width):
    """Never inside one ("⇄" at the end of a line, "miscabled" on the next), and it follows
    the width."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(width, 24)) as pilot:
        screen = RackScreen()
        app.push_screen(screen)
        await pilot.pause()
        drawn = screen.query_one("#legend")
        lines = [strip.text for strip in drawn.render_lines(drawn.region.size.region)]
        assert all(any(item in line for line in lines) for item in LEGEND_ITEMS), lines
        assert len(lines) == {80: 2, 40: 3, 200: 1}[width]


async def test_racks_blocks_and_states(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        racks = screen.query(".rack")
        assert len(racks) == 3
        names = {n.name for n in ctx.site.nodes}
        assert set(screen.blocks) == names
        assert {b.node_name for b in screen.query(NodeBlock)} == names
        critical = screen.blocks["dal1-r01-n07"]
        assert critical.has_class("state-error")
        assert str(critical.render()).split()[1:3] == ["n07", "✗"]
        off = screen.blocks["dal1-r01-n13"]
        assert off.has_class("state-off")
        assert str(off.render()).split()[1:3] == ["n13", "○"]
        gpu = screen.blocks["dal1-r01-gpu01"]
        assert gpu.size.height == 4
        assert "critical" in str(screen.query_one("#legend").render())
        # a change updates that block
        app.fleet.node_failed("dal1-r02-n05", "power", "unreachable")
        app.drain()
        await pilot.pause()
        assert screen.blocks["dal1-r02-n05"].has_class("state-error")


async def test_cursor_keys_enter_escape(ctx, monkeypatch):
    app = make_app(ctx, poll=False)
    opened: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        monkeypatch.setattr(app, "open_node", opened.append)
        assert screen.cursor == "dal1-r01-n01"
        await pilot.press("up")
        assert screen.cursor == "dal1-r01-n02"
        await pilot.press("up", "up")
        assert screen.cursor == "dal1-r01-n04"
        await pilot.press("down")
        assert screen.cursor == "dal1-r01-n03"
        await pilot.press("right")
        assert screen.cursor == "dal1-r02-n03"
        await pilot.press("right")
        assert screen.cursor == "dal1-r03-n03"
        await pilot.press("right")  # no rack further right: stays
        assert screen.cursor == "dal1-r03-n03"
        await pilot.press("left", "left")
        assert screen.cursor == "dal1-r01-n03"
        assert screen.blocks["dal1-r01-n03"].has_class("-cursor")
        assert not screen.blocks["dal1-r01-n01"].has_class("-cursor")
        # the multi-U gpu node above n28, then over to r02's nearest node
        screen.select("dal1-r01-n28")
        await pilot.press("up")
        assert screen.cursor == "dal1-r01-gpu01"
        await pilot.press("right")
        assert screen.cursor == "dal1-r02-n30"
        await pilot.press("enter")
        assert opened == ["dal1-r02-n30"]
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_click_selects_then_opens(ctx, monkeypatch):
    app = make_app(ctx, poll=False)
    opened: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(app, pilot)
        monkeypatch.setattr(app, "open_node", opened.append)
        block = screen.blocks["dal1-r01-n03"]
        await pilot.click(block)
        assert screen.cursor == "dal1-r01-n03"
        assert opened == []
        await pilot.click(block)
        assert opened == ["dal1-r01-n03"]


async def test_small_terminal(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(app, pilot)
        await pilot.press("right", "right", "up")
        assert screen.cursor == "dal1-r03-n02"
        await pilot.press("q")
        assert isinstance(app.screen, FleetScreen)
