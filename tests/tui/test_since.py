"""Issue 18 item 7: the fleet table says since when a row is bad (WHY), and since when a node is off."""

from __future__ import annotations

from console.live.fleet import Fleet
from console.secrets import Secrets
from console.site import SiteContext
from screens.app import make_app
from screens.table import FleetTable
from tests.tui.test_fleet_find_and_sort import changed


async def test_why_and_power_say_since_when_from_a_minute_on(demo_lab):
    now = [1_000_000.0]
    ctx = SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    async with app.run_test(size=(160, 40)) as pilot:
        fleet: Fleet = app.fleet
        table = app.screen.query_one(FleetTable)
        miscabled = fleet.site.node("dal1-r01-n08")
        want = miscabled.switch_port
        assert want is not None
        fleet.node_ok("dal1-r01-n02", "power", power="on", health="ok")
        fleet.node_ok("dal1-r01-n08", "power", power="on", health="ok", discovered_port=(want.switch, "Ethernet40"))
        fleet.node_ok("dal1-r01-n05", "power", power="on", health="ok")
        await changed(app, pilot)
        now[0] += 60.0
        fleet.node_ok("dal1-r01-n02", "power", power="on", health="ok")  # ok a minute ago ...
        fleet.node_ok("dal1-r01-n05", "power", power="off", health="ok")  # ... and off since then
        fleet.node_failed("dal1-r01-n02", "power", "unreachable: no answer")  # failing since then
        await changed(app, pilot)
        # fresh: nothing more is said
        assert table.get_cell("dal1-r01-n02", "why").plain == "⊘ unreachable: no answer"
        now[0] += 14 * 60.0
        fleet.node_ok("dal1-r01-n08", "power", power="on", health="ok", discovered_port=(want.switch, "Ethernet40"))
        await changed(app, pilot)
        app.screen._refresh_ages()  # what the screen's once-a-second tick does
        await pilot.pause()
        assert table.get_cell("dal1-r01-n02", "why").plain == "⊘ unreachable: no answer · 14m"
        assert table.get_cell("dal1-r01-n05", "power").plain == "○ off 14m"
        # cabling was wrong when the console first looked: at least that long
        assert table.get_cell("dal1-r01-n08", "why").plain.endswith("· ≥15m")


async def test_node_detail_status_line_says_since_when(demo_lab):
    from screens.node import NodeScreen

    now = [2_000_000.0]
    ctx = SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    async with app.run_test(size=(160, 40)) as pilot:
        fleet: Fleet = app.fleet
        fleet.node_ok("dal1-r01-n04", "power", power="on", health="ok")
        now[0] += 120.0
        fleet.node_ok("dal1-r01-n04", "power", power="on", health="critical")
        now[0] += 14 * 60.0
        await changed(app, pilot)
        screen = NodeScreen("dal1-r01-n04")
        app.push_screen(screen)
        await pilot.pause()
        line = screen.status_line().plain
        assert "✗ critical 14m" in line, line
        assert "● on ≥16m" in line, line  # on at least since the console first saw it
