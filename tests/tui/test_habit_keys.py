"""Habit keys (k9s, htop, less) on every table and on the racks, and screens that open
where the operator is: racks on the current node, switches on its switch and port."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Input, Static

from console.cli.main import SiteContext
from console.drivers.bmc import PowerState
from console.secrets import Secrets
from screens.activity import ActivityScreen
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.jobs import JobsScreen
from screens.node import NodeScreen
from screens.rack import RackScreen, RackSlots
from screens.switches import SwitchesScreen
from screens.table import FleetTable, HabitDataTable


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def _fleet_table(app) -> FleetTable:
    assert isinstance(app.screen, FleetScreen)
    return app.screen.query_one(FleetTable)


async def _on_node(app, pilot, name: str) -> None:
    """The fleet table's cursor on ``name``."""
    table = _fleet_table(app)
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()


async def test_fleet_table_habit_keys(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = _fleet_table(app)
        assert table.has_focus and table.row_count == 89
        page = table._page()
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 88 and table.cursor_in_view
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("ctrl+d")
        assert table.cursor_row == page // 2
        await pilot.press("ctrl+u")
        assert table.cursor_row == 0
        await pilot.press("ctrl+f")
        assert table.cursor_row == page and table.cursor_in_view
        await pilot.press("ctrl+b")
        assert table.cursor_row == 0
        await pilot.press("pagedown", "end")
        assert table.cursor_row == 88
        await pilot.press("home")
        assert table.cursor_row == 0
        # n / N: no search set, nothing moves; with one, the next / previous match (wrapping)
        await pilot.press("n")
        assert table.cursor_row == 0
        table.search = lambda key: key.startswith("dal1-r03-")
        await pilot.press("n")
        first = table.cursor_key
        assert first is not None and first.startswith("dal1-r03-")
        await pilot.press("n")
        assert table.cursor_key != first and str(table.cursor_key).startswith("dal1-r03-")
        await pilot.press("N")
        assert table.cursor_key == first
        await pilot.press("N")  # wraps to the last match
        assert table.cursor_key == "dal1-r03-db01"


async def test_n_steps_through_the_last_filters_rows_once_it_is_cleared(ctx):
    """The filter as a search: ``/off`` enter, escape to see every row again, then ``n``
    and ``N`` jump between the rows the filter matched (the powered-off nodes)."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        off = {"dal1-r01-n13", "dal1-r03-n20"}
        for name in off:
            app.fleet.node_ok(name, "power", power=PowerState.OFF)
        app.drain()
        await pilot.pause()
        table = app.screen.query_one(FleetTable)
        await pilot.press("slash", *"off", "enter")
        await pilot.pause()
        assert set(app.screen.shown) >= off
        await pilot.press("escape")  # every row again
        await pilot.pause()
        assert len(app.screen.shown) == len(app.fleet.nodes)
        table.focus()
        await pilot.press("home", "n")
        first = table.cursor_key
        assert first in off
        await pilot.press("n")
        assert table.cursor_key in off and table.cursor_key != first
        await pilot.press("N")
        assert table.cursor_key == first


async def test_typing_j_and_k_in_the_filter_is_text(ctx):
    """The habit keys are the table's: in the filter line they are letters."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = _fleet_table(app)
        await pilot.press("slash", "j", "k", "g", "G", "n")
        line = app.screen.query_one("#filter", Input)
        assert line.has_focus and line.value == "jkgGn"
        assert table.cursor_row == 0


class _Rows(App):
    def compose(self) -> ComposeResult:
        yield HabitDataTable(id="t")

    def on_mount(self) -> None:
        table = self.query_one(HabitDataTable)
        table.add_column("NAME", key="name")
        for i in range(100):
            table.add_row(f"row{i:03d}", key=f"row{i:03d}")
        table.focus()


async def test_data_table_habit_keys():
    """The DataTable of switches, activity and jobs takes the same keys."""
    app = _Rows()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(HabitDataTable)
        await pilot.press("j", "j", "k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 99
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("ctrl+d")
        half = table.cursor_row
        assert 5 <= half <= 12
        await pilot.press("ctrl+u")
        assert table.cursor_row == 0
        await pilot.press("ctrl+f")
        assert table.cursor_row > half
        await pilot.press("ctrl+b")
        assert table.cursor_row == 0
        table.search = lambda key: key.endswith("5")
        await pilot.press("n", "n")
        assert table.cursor_row == 15
        await pilot.press("N", "N")
        assert table.cursor_row == 95  # wrapped


async def test_activity_and_jobs_tables_take_the_habit_keys(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, screen_type, table_id in (("l", ActivityScreen, "#activity"), ("J", JobsScreen, "#jobs")):
            await pilot.press(key)
            assert isinstance(app.screen, screen_type)
            table = app.screen.query_one(table_id, HabitDataTable)
            assert table.has_focus
            await pilot.press("G", "g", "j", "k", "ctrl+d", "ctrl+u")  # on an empty table too: nothing breaks
            assert table.cursor_row <= 0
            await pilot.press("escape")
            assert isinstance(app.screen, FleetScreen)


def _tops(screen: RackScreen) -> set[int]:
    """The U on the top line of each rack."""
    return {slots.rack_height - round(slots.scroll_y) for slots in screen.query(RackSlots)}


@pytest.mark.parametrize("node", ["dal1-r02-n19", "dal1-r03-n05"])
async def test_racks_open_on_the_current_node(ctx, node):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await _on_node(app, pilot, node)
        await pilot.press("r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RackScreen)
        assert screen.cursor == node
        block = screen.blocks[node]
        assert block.region.height and screen.query_one("#racks").region.contains_region(block.region)
        assert len(_tops(screen)) == 1  # the racks scroll together
        where = str(screen.query_one("#where", Static).render())
        assert node in where and f"U{block.bottom_u}" in where


async def test_rack_habit_keys_and_following(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RackScreen)
        assert screen.cursor == "dal1-r01-n01"
        await pilot.press("k", "k")
        assert screen.cursor == "dal1-r01-n03"
        await pilot.press("j")
        assert screen.cursor == "dal1-r01-n02"
        await pilot.press("ctrl+u")
        half_up = screen.blocks[screen.cursor].bottom_u
        assert half_up >= 6
        await pilot.press("ctrl+d")
        assert screen.blocks[screen.cursor].bottom_u < half_up
        await pilot.press("g")
        top = screen.blocks[screen.cursor]
        assert top is screen.columns[0][0]
        assert top.region.height and screen.query_one("#racks").region.contains_region(top.region)
        assert _tops(screen) == {top.top_u} or len(_tops(screen)) == 1
        await pilot.press("G")
        assert screen.cursor == "dal1-r01-n01"
        await pilot.press("pageup")
        up = screen.blocks[screen.cursor].bottom_u
        assert up > 10
        await pilot.press("pagedown")
        assert screen.blocks[screen.cursor].bottom_u < up
        await pilot.press("ctrl+b", "ctrl+f")
        await pilot.press("end", "home")
        assert screen.cursor == top.node_name
        # the frame of each rack says which U it shows
        assert all(str(rack.border_subtitle or "").startswith("U") for rack in screen.query(".rack"))
        await pilot.press("right")
        assert screen.cursor.startswith("dal1-r02-")
        assert len(_tops(screen)) == 1


@pytest.mark.parametrize("node", ["dal1-r02-n19", "dal1-r03-n05"])
async def test_switches_open_on_the_nodes_switch_and_port(ctx, node):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.poller.sweep((), nodes=[], switches=True)
        app.drain()
        await pilot.pause()
        await _on_node(app, pilot, node)
        await pilot.press("w")
        screen = app.screen
        assert isinstance(screen, SwitchesScreen)
        where = ctx.site.node(node).switch_port
        assert where is not None and screen.selected == where.switch
        switches = screen.query_one("#switches", HabitDataTable)
        assert switches.has_focus
        assert screen.cursor_port() == where.port
        # habit keys on the switch list and the ports
        await pilot.press("G")
        assert switches.cursor_row == switches.row_count - 1
        await pilot.press("tab")
        ports = screen.query_one("#ports", HabitDataTable)
        assert ports.has_focus
        await pilot.press("g")
        assert ports.cursor_row == 0
        await pilot.press("j", "ctrl+d", "ctrl+u", "k")
        assert ports.cursor_row == 0


async def test_node_detail_r_opens_racks_ctrl_r_refreshes(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(NodeScreen("dal1-r03-n05"))
        await pilot.pause()
        keys = {b.key: b.action for b in app.screen.BINDINGS}  # type: ignore[union-attr]
        assert keys["ctrl+r"] == "refresh" and keys["r"] == "app.racks"
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RackScreen) and app.screen.cursor == "dal1-r03-n05"
        await pilot.press("w")
        assert isinstance(app.screen, SwitchesScreen) and app.screen.selected == "dal1-r03-tor"
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RackScreen)


async def test_help_lists_the_habit_keys(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        rows = app.screen.rows  # type: ignore[attr-defined]
        keys = {keys for _, keys, _ in rows}
        assert any("j" in k.split(", ") for k in keys) and any("G" in k.split(", ") for k in keys)
        assert "^d" in keys and any("n" in k.split(", ") for k in keys)
        await pilot.press("escape", "r")
        await pilot.pause()
        await pilot.press("question_mark")
        rows = app.screen.rows  # type: ignore[attr-defined]
        whats = {what for _, _, what in rows}
        assert {"Top node", "Half a screen down", "A screen up"} <= whats
