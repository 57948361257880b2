"""Issue 16, items 2-4 on the fleet screen (demo lab inventory, polling off):

- the filter forgives as k9s and htop do (``n19``, ``db01``, ``r02 critical``), and a
  filter that means nothing empties the table and says why in full at 80 columns;
- every bad row says why at 80 columns (the WHY column: a failing sensor with its
  reading, the port a node was seen on instead of its own);
- the sort shows in the header (``▲``/``▼``), ``S`` reverses, rows re-sort as their
  values change with the cursor on its node, AGE sorts oldest first.
"""

from __future__ import annotations

import pytest
from textual.widgets import Static

from console.cli.main import SiteContext
from console.drivers.bmc import Sensor
from console.secrets import Secrets
from inventory.ranges import natural_key
from screens.app import make_app
from screens.table import FleetTable


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


async def filter_to(pilot, text: str) -> None:
    """``/``, the text, enter: as the operator types it."""
    await pilot.press("slash", *text, "enter")


async def changed(app, pilot) -> None:
    """What the poller would send: the fleet's changes, drained into the screen."""
    app.drain()
    await pilot.pause()


def lines_of(widget) -> list[str]:
    return [strip.text for strip in widget.render_lines(widget.region.size.region)]


# --------------------------------------------------------------------------- item 2: the filter forgives
async def test_the_filter_forgives_names_parts_and_spaces(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        app.fleet.node_ok("dal1-r02-n05", "power", power="on", health="critical")
        app.fleet.node_ok("dal1-r01-n05", "power", power="on", health="critical")
        await changed(app, pilot)
        await filter_to(pilot, "n19")
        assert screen.shown == ["dal1-r01-n19", "dal1-r02-n19", "dal1-r03-n19"]
        assert screen.filter_problem is None and table.row_count == 3
        await filter_to(pilot, "db01")
        assert screen.shown == ["dal1-r03-db01"]
        await filter_to(pilot, "r02 critical")  # space: and
        assert screen.shown == ["dal1-r02-n05"]
        await filter_to(pilot, "R02  Critical, n19")  # case, several spaces, a union
        assert screen.shown == ["dal1-r01-n19", "dal1-r02-n05", "dal1-r02-n19", "dal1-r03-n19"]
        await filter_to(pilot, "zz-nothing")  # found nowhere: no rows, and nothing to fix
        assert table.row_count == 0 and screen.filter_problem is None
        await filter_to(pilot, "rack=r03&dal1-r01-n[01-03]")  # the selection syntax still works
        assert screen.shown == [] and screen.filter_problem is None


async def test_a_rejected_filter_empties_the_table_and_says_why_in_full(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        await filter_to(pilot, "r02 @nosuch")
        assert table.row_count == 0 and screen.shown == []
        assert "unknown group @nosuch" in screen.filter_problem
        why = screen.query_one("#filter-problem", Static)
        assert why.display
        await pilot.pause()
        said = "".join(lines_of(why)).replace(" ", "")
        assert "unknowngroup@nosuch;knowngroups:@canary,@gpu" in said, lines_of(why)  # wrapped, not cut
        assert "0/89 shown" in str(screen.query_one("#summary", Static).render())
        await filter_to(pilot, "r02")
        assert len(screen.shown) == 30 and not why.display


# --------------------------------------------------------------------------- item 3: WHY
async def test_every_bad_row_says_why_at_80_columns(ctx):
    app = make_app(ctx, poll=False, clock=lambda: 1000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        fleet = app.fleet
        psu = Sensor("PSU1", "power", 275.0, "W", "critical", upper_critical=250.0, upper_warning=230.0)
        fan = Sensor("Fan2", "fan", 8000.0, "RPM", "ok")
        fleet.node_ok("dal1-r01-n03", "power", power="on", health="critical")
        fleet.node_ok("dal1-r01-n03", "sensors", sensors=[fan, psu])
        miscabled = fleet.site.node("dal1-r01-n08")
        want = miscabled.switch_port
        assert want is not None
        fleet.node_ok("dal1-r01-n08", "power", power="on", health="ok", discovered_port=(want.switch, "Ethernet40"))
        fleet.node_ok("dal1-r01-n09", "power", power="on", health="ok")  # a healthy one
        await changed(app, pilot)
        keys = [c.key for c in table.columns]
        assert keys[-1] == "why" and "port" not in keys
        width = {c.key: c.width for c in table.columns}["why"]
        critical = table.get_cell("dal1-r01-n03", "why")
        assert critical.plain == "✗ PSU1 275 W > 250"
        cabling = table.get_cell("dal1-r01-n08", "why").plain
        short = want.port.replace("Ethernet", "Eth")
        assert cabling == f"⇄ port Eth40, want {short}"  # miscabled: seen on Eth40
        assert len(cabling) <= width and len(critical.plain) <= width  # said whole at 80 columns
        assert table.get_cell("dal1-r01-n09", "why").plain == ""
        shot = app.export_screenshot()
        assert "PSU1&#160;275&#160;W&#160;&gt;&#160;250" in shot or "PSU1 275 W &gt; 250" in shot
        screen.sort_by("why")  # the worst first
        assert table.keys[:2] == ["dal1-r01-n03", "dal1-r01-n08"]


@pytest.mark.parametrize("size", [(80, 24), (160, 40)])
async def test_the_table_draws_the_columns_cells(ctx, size):
    """Issue 14: a column's cell is defined once (console.live.columns): the table draws
    each column's Cell, full or compact, the screen only giving its state word a look."""
    from console.live.columns import BY_KEY
    from console.live.fleet import NodeActivity
    from screens.columns import cell_text
    from screens.common import STYLES

    app = make_app(ctx, poll=False, clock=lambda: 1000.0)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        fleet = app.fleet
        miscabled = fleet.site.node("dal1-r01-n08")
        want = miscabled.switch_port
        assert want is not None
        fleet.node_ok(miscabled.name, "power", power="on", health="ok", discovered_port=(want.switch, "Ethernet40"))
        fleet.node_ok("dal1-r02-n01", "image", image_running="flatcar@3975.2.2")  # drift
        fleet.node_failed("dal1-r01-n03", "power", "unreachable: no [b]answer[/b]\x1b[2J")
        fleet.set_activity("dal1-r02-n01", NodeActivity("lock", "power cycle", owner="bob"))
        await changed(app, pilot)
        keys = [c.key for c in table.columns]
        compact = {key for key, _, width in screen.columns if BY_KEY[key].narrow == width != BY_KEY[key].width}
        assert compact if size[0] == 80 else not compact
        names = ["dal1-r01-n08", "dal1-r02-n01", "dal1-r01-n03", "dal1-r01-n09"]
        table.replace_rows(names)  # all on screen
        for name in names:
            for key in keys:
                if key == "mark":
                    continue
                cell = BY_KEY[key].cell(fleet, name, "compact" if key in compact else "full", 1000.0)
                drawn, wanted = table.get_cell(name, key), cell_text(key, cell)
                looks = (drawn.plain, drawn.style, drawn.spans), (wanted.plain, wanted.style, wanted.spans)
                assert looks[0] == looks[1], (name, key)
        assert table.get_cell("dal1-r01-n03", "name").style == "bold"  # its WHY says the error in red
        why = table.get_cell("dal1-r01-n03", "why")
        assert why.plain == "⊘ unreachable: no [b]answer[/b]^[[2J" and why.style == STYLES["error"]  # text, not markup
        lock = table.get_cell("dal1-r02-n01", "why")
        assert lock.plain.startswith("◆ locked by bob: power cycle  ≠ 3975.2.2, want ")
        if "port" in keys:
            port = table.get_cell("dal1-r01-n08", "port")
            assert port.plain == f"⇄ {want.port}" and port.style == STYLES["mismatch"]


# --------------------------------------------------------------------------- item 4: sort
def labels(table) -> dict[str, str]:
    return {c.key: c.label for c in table.columns}


async def test_sort_shows_in_the_header_and_S_reverses(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(FleetTable)
        assert "▲" not in "".join(labels(table).values())
        await pilot.press("s")
        assert labels(table)["name"] == "NODE ▲" and table.row_key_at(0) == "dal1-r01-gpu01"
        await pilot.press("S")
        assert labels(table)["name"] == "NODE ▼"
        assert table.row_key_at(0) == max(app.screen.shown, key=natural_key)
        await pilot.press("s")  # the next column, in its own order
        assert labels(table)["rack"].endswith("▲") and labels(table)["name"] == "NODE"
        assert not app._notifications  # the header says it: no toast over the rows
        header = lines_of(table)[0]
        assert "▲" in header


async def test_rows_re_sort_live_and_the_cursor_stays_on_its_node(ctx):
    app = make_app(ctx, poll=False, clock=lambda: 1000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        fleet = app.fleet
        screen.sort_by("power")  # unknown (nothing polled yet), off, on
        table.move_cursor(row=4)
        mine = table.cursor_key
        other = table.row_key_at(2)
        fleet.node_ok(other, "power", power="on", health="ok")  # another row moves down
        await changed(app, pilot)
        assert table.row_key_at(table.row_count - 1) == other
        assert table.cursor_key == mine
        fleet.node_ok(mine, "power", power="off", health="ok")  # the cursor's own row moves
        await changed(app, pilot)
        assert table.keys.index(mine) == table.row_count - 2  # off, before the one on
        assert table.cursor_key == mine and table.cursor_in_view
        assert screen.shown == table.keys


async def test_age_sorts_oldest_first(ctx):
    now = [1000.0]
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        names = list(screen.shown)
        for i, name in enumerate(names):
            now[0] = 1000.0 + i
            app.fleet.node_ok(name, "power", power="on", health="ok")
        await changed(app, pilot)
        screen.sort_by("age")
        assert table.keys == names  # polled first is the oldest
        assert labels(table)["age"] == "AGE ▲"
        now[0] = 2000.0
        app.fleet.node_ok(names[0], "power", power="on", health="ok")  # polled again: now the youngest
        await changed(app, pilot)
        assert table.keys[-1] == names[0] and table.keys[0] == names[1]
