"""The node detail screen against the demo lab: faults, drift, miscabling, errors, journal, keys, layout."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console
from textual.widgets import DataTable, Static

from console.cli.main import SiteContext
from console.live.poller import PollConfig
from console.secrets import Secrets
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.node import NodeScreen, Section
from tests.support import wait_until

# a failing BMC is retried after backoff_base seconds: keep that short for the refresh test
CONFIG = PollConfig(timeout=5.0, min_interval=0.0, backoff_base=0.1, backoff_max=0.5)


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


@pytest.fixture(autouse=True)
def private_journal(tmp_path, monkeypatch):
    """Every test reads (and may write) a journal of its own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def plain(widget: Static, width: int = 200) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def open_node(app, pilot, name: str) -> NodeScreen:
    """Open the node screen the way the other screens do, and let its opening poll land."""
    app.open_node(name)
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, NodeScreen)
    await app.workers.wait_for_complete()
    app.drain()
    await pilot.pause()
    return screen


def sensor_rows(screen: NodeScreen) -> list[tuple[str, str]]:
    """(status, name) of each sensor table row, top to bottom."""
    table = screen.query_one("#sensors-table", DataTable)
    return [(table.get_row_at(i)[0].plain, table.get_row_at(i)[1].plain) for i in range(table.row_count)]


#: the demo lab's faults: node -> the sensor that fails
FAULTED = {
    "dal1-r01-n07": "FAN3",  # fan fault, IPMI
    "dal1-r03-n11": "CPU1 Temp",  # overtemp, IPMI
    "dal1-r02-n19": "12V",  # psu fault, Redfish
}


async def test_a_faulted_node_shows_its_failing_sensor_first(ctx):
    app = make_app(ctx, poll=False, poll_config=CONFIG)
    async with app.run_test(size=(80, 24)) as pilot:
        for name, sensor in FAULTED.items():
            screen = await open_node(app, pilot, name)
            rows = sensor_rows(screen)
            assert len(rows) > 5, name
            assert rows[0] == ("✗ critical", sensor), name
            assert all("ok" in status for status, _ in rows[2:]), name  # the healthy ones come after
            failing = screen.query_one("#failing", Section)
            assert failing.display
            first = plain(screen.query_one("#failing-list", Static)).splitlines()[0]
            assert first.startswith(f"✗ critical  {sensor} "), first
            assert first.rstrip().endswith("critical)"), first  # the threshold crossed, and which
            status = plain(screen.query_one("#status", Static))
            assert status.startswith(name) and "● on" in status and "✗ critical" in status
            events = plain(screen.query_one("#events-list", Static))
            assert "critical" in events and events.index("critical") < events.index("ok")  # newest first
            # most important first, and visible without scrolling in an 80x24 pane
            assert screen.query_one("#status").region.y == 1
            assert failing.region.y < 5 and failing.region.bottom < 24
            assert screen.focused is failing
            app.pop_screen()
            await pilot.pause()
        # a healthy node: no failing section, the state section leads
        screen = await open_node(app, pilot, "dal1-r01-n01")
        assert not screen.query_one("#failing").display
        assert sensor_rows(screen) and all(status == "✓ ok" for status, _ in sensor_rows(screen))
        assert screen.focused is screen.query_one("#state")
        await app.poller.aclose()


async def test_drift_and_miscabling_are_marked(ctx):
    app = make_app(ctx, poll=False, poll_config=CONFIG)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_node(app, pilot, "dal1-r02-n01")  # the opening poll reads the image over SSH
        state = plain(screen.query_one("#state-grid", Static))
        assert "flatcar@4081.2.1" in state  # desired
        assert "≠ flatcar@3975.2.2  DRIFT" in state  # running
        assert screen.query_one("#state").has_class("-drift")
        assert "≠ image drift" in plain(screen.query_one("#status", Static))
        app.pop_screen()
        await pilot.pause()
        screen = await open_node(app, pilot, "dal1-r02-n08")  # the opening poll reads its switch
        state = plain(screen.query_one("#state-grid", Static))
        assert "port expected     dal1-r02-tor/Ethernet8" in state
        seen = app.fleet.nodes["dal1-r02-n08"].discovered_port
        assert seen is not None and seen != ("dal1-r02-tor", "Ethernet8")
        assert f"⇄ MISCABLED: expected dal1-r02-tor/Ethernet8, seen on {'/'.join(seen)}" in state
        assert screen.query_one("#state").has_class("-miscabled")
        assert "⇄ miscabled" in plain(screen.query_one("#status", Static))
        app.pop_screen()
        await pilot.pause()
        # a well-cabled neighbour, for contrast (the switch is polled already: no second switch poll)
        screen = await open_node(app, pilot, "dal1-r02-n09")
        state = plain(screen.query_one("#state-grid", Static))
        assert "✓ match" in state and "MISCABLED" not in state
        assert not screen.query_one("#state").has_class("-miscabled")
        await app.poller.aclose()


async def test_a_failing_bmc_shows_its_error_then_recovers_on_refresh(ctx, demo_lab):
    victim = "dal1-r02-n12"
    app = make_app(ctx, poll=False, poll_config=CONFIG)
    demo_lab.fault("redfish", victim, "auth_fail")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_node(app, pilot, victim)
            bar = screen.query_one("#errors", Static)
            assert bar.display
            text = plain(bar)
            assert "auth failed" in text
            assert "1 consecutive failure" in text and "last success never" in text
            assert bar.region.y == 2  # right under the status line
            status = plain(screen.query_one("#status", Static))
            assert "? unknown" in status and "⊘ poll error" in status
            app.fleet.node_failed(victim, "sensors", "timeout: no answer in time")
            app.drain()
            await pilot.pause()
            text = plain(bar)
            assert "2 consecutive failures" in text and "sensors: timeout" in text
            demo_lab.fault("redfish", victim, "")
            await pilot.press("ctrl+r")
            await app.workers.wait_for_complete()
            await wait_until(lambda: not app.fleet.nodes[victim].errors)
            app.drain()
            await pilot.pause()
            assert not bar.display
            assert "● on" in plain(screen.query_one("#status", Static))  # the same widgets, updated
            assert screen.query_one("#errors", Static) is bar
            await app.poller.aclose()
    finally:
        demo_lab.fault("redfish", victim, "")


async def test_activity_from_the_journal_newest_first(ctx, monkeypatch):
    from console.ops.journal import Journal

    name = "dal1-r01-n05"
    journal = Journal(ctx.site.name, operator="alice", ticket="INC-7")
    journal.write(action="power cycle", node=name, step="power-cycle", result="started",
                  time="2026-11-27T01:00:00.000Z")
    journal.write(action="power cycle", node=name, step="verify-power", result="failed",
                  error="still off after 60s", time="2026-11-27T01:01:00.000Z")
    journal.write(action="pxe", node="dal1-r01-n06", step="set-boot", result="ok")
    app = make_app(ctx, poll=False, poll_config=CONFIG)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_node(app, pilot, name)
        activity = plain(screen.query_one("#activity-list", Static)).splitlines()
        assert "OPERATOR" in activity[0]
        assert "verify-power" in activity[1] and "✗ failed" in activity[1] and "still off after 60s" in activity[1]
        assert "INC-7" in activity[1] and "alice" in activity[1]
        assert "power-cycle" in activity[2] and "started" in activity[2]
        assert not any("set-boot" in line for line in activity)  # another node's entry
        # a new entry shows up while the screen is open (the journal is watched)
        journal.write(action="power on", node=name, step="power-on", result="ok")
        await wait_until(lambda: "power-on" in plain(screen.query_one("#activity-list", Static)).splitlines()[1])
        app.pop_screen()
        await pilot.pause()
        # no entry for this node
        screen = await open_node(app, pilot, "dal1-r01-n02")
        assert plain(screen.query_one("#activity-list", Static)).strip() == "no activity recorded"
        app.pop_screen()
        await pilot.pause()
        monkeypatch.setitem(sys.modules, "console.ops.journal", None)  # import now raises ImportError
        screen = await open_node(app, pilot, "dal1-r01-n02")
        assert plain(screen.query_one("#activity-list", Static)).strip() == "no activity recorded"
        await app.poller.aclose()


async def test_identity_keys_and_wide_layout(ctx, demo_lab):
    name = "dal1-r03-db01"  # redfish (openbmc flavor), protected, role database
    app = make_app(ctx, poll=False, poll_config=CONFIG)
    async with app.run_test(size=(200, 60)) as pilot:
        screen = await open_node(app, pilot, name)
        ident = plain(screen.query_one("#identity-grid", Static))
        node = ctx.site.node(name)
        st = app.fleet.nodes[name]
        assert st.identity is not None
        for value in (st.identity.serial, st.identity.model, node.mac, node.bmc.address, "redfish",
                      "role             database", "protected        yes", "r03 / U30-31"):
            assert value in ident, value
        texts = [plain(w) for w in screen.query(Static) if not isinstance(w, DataTable)]
        for secret in demo_lab.secrets.values():
            assert all(secret not in t for t in texts)
        app.pop_screen()
        await pilot.pause()
        screen = await open_node(app, pilot, "dal1-r01-n07")
        # two columns side by side at 200 columns
        assert screen.has_class("-wide")
        left, right = screen.query_one("#col-left"), screen.query_one("#col-right")
        assert right.region.x >= left.region.right and right.region.y == left.region.y
        # tab walks the sections in order
        order = ["failing", "state", "sensors-section", "identity", "events", "activity"]
        seen = [screen.focused.id]
        for _ in order[1:]:
            await pilot.press("tab")
            seen.append(screen.focused.id)
        assert seen == order
        # the mouse picks a section too, also by a click on a table inside it
        await pilot.click("#identity")
        assert screen.focused.id == "identity"
        await pilot.click("#sensors-table", offset=(5, 2))
        assert screen.focused.id == "sensors-section"
        # nothing bound on the keys the action helper will use
        bound = {b.key for b in NodeScreen.BINDINGS}
        assert not bound & {"p", "x", "i", "c"}
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        screen = await open_node(app, pilot, "dal1-r01-n07")
        await pilot.press("q")
        assert isinstance(app.screen, FleetScreen)
        await app.poller.aclose()


async def test_narrow_layout_and_an_unknown_node(ctx):
    app = make_app(ctx, poll=False, poll_config=CONFIG)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_node(app, pilot, "dal1-r01-n07")
        assert screen.has_class("-narrow")
        left, right = screen.query_one("#col-left"), screen.query_one("#col-right")
        assert right.region.y >= left.region.bottom or right.region.y > 24  # below, off screen
        body = screen.query_one("#body")
        assert body.max_scroll_y > 0
        for _ in range(5):
            await pilot.press("tab")
        assert screen.focused.id == "activity"
        await pilot.pause()
        assert body.scroll_y > 0  # focusing a section scrolls it into view
        await pilot.press("escape")
        await app.poller.aclose()
        # a name that is no node
        app.open_node("dal1-r09-n99")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        assert "no node named 'dal1-r09-n99'" in plain(app.screen.query_one("#status", Static))
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_failing_sensors_say_the_threshold_and_events_read_as_lines(ctx):
    """The failing sensor's words are the fleet WHY's, in full; IPMI SEL lines are decoded."""
    from console.drivers.bmc import Event, Sensor
    from console.live.words import worst_finding

    app = make_app(ctx, poll=False, poll_config=CONFIG)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_node(app, pilot, "dal1-r01-n07")  # fan fault, IPMI
        failing = plain(screen.query_one("#failing-list", Static))
        assert "✗ critical  FAN3 0 RPM < 1000 RPM (lower critical)" in failing
        why = worst_finding(ctx.site.node("dal1-r01-n07"), app.fleet.nodes["dal1-r01-n07"])
        assert why == ("critical", "FAN3 0 RPM < 1000")  # the fleet's WHY says the same, shorter
        events = plain(screen.query_one("#events-list", Static), width=76)
        assert "EVENT" in events.splitlines()[0] and "SENSOR" not in events.splitlines()[0]
        said = " ".join(events.split())
        assert "FAN3 (Fan): Lower Critical going low, reading 0 RPM < threshold 1000 RPM asserted" in said
        assert "Event Log (Event Logging Disabled): Log area reset/cleared asserted" in said
        assert "Sensor 32." not in said
        app.pop_screen()
        await pilot.pause()
        # a power supply the BMC calls critical with no threshold, and hostile words from a BMC
        name = "dal1-r02-n19"
        screen = await open_node(app, pilot, name)
        sensors = [Sensor("PSU1", "power", 275.0, "W", "critical", upper_warning=230.0, upper_critical=250.0),
                   Sensor("PSU2", "power", 308.0, "W", "critical"),
                   Sensor("Fan\x1b[2J", "fan", 0.0, "RPM", "critical", lower_critical=500.0)]
        app.fleet.node_ok(name, "sensors", sensors=sensors)
        app.fleet.node_ok(name, "events", events=[
            Event("1", 1_767_225_600.0, "critical", "PSU2: Power Supply AC lost", sensor="Power Supply"),
            Event("2", 1_767_225_660.0, "warning", "Lower Critical going low\x1b]0;x\x07", sensor="Voltage")])
        app.drain()
        await pilot.pause()
        failing = plain(screen.query_one("#failing-list", Static))
        assert "PSU1 275 W > 250 W (upper critical)" in failing
        assert "PSU2 308 W: critical, the BMC gives no threshold" in failing
        assert "Fan^[[2J 0 RPM < 500 RPM (lower critical)" in failing  # control characters made visible
        said = " ".join(plain(screen.query_one("#events-list", Static)).split())
        assert "PSU2: Power Supply AC lost" in said  # names its type already: as it came
        assert "Voltage: Lower Critical going low^[]0;x^G" in said  # type in front, controls visible
        assert "\x1b" not in said
        await app.poller.aclose()
