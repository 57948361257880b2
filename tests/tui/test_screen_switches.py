"""The switches screen against the demo lab: switches, ports, miscabling, live cells, enter."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from console.cli.main import SiteContext
from console.secrets import Secrets
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.switches import SwitchesScreen


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


async def _polled_app(pilot, app):
    """One real poll of every switch over SNMP (system, interfaces, FDB, LLDP), drained."""
    await app.poller.sweep((), nodes=[], switches=True)
    app.drain()
    await pilot.pause()


def _plain(table: DataTable, row: str, column: str) -> str:
    cell = table.get_cell(row, column)
    return getattr(cell, "plain", str(cell))


async def test_switches_ports_and_miscabling(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(160, 40)) as pilot:  # every column, in its full form
        await _polled_app(pilot, app)
        await pilot.press("w")  # from the fleet screen
        screen = app.screen
        assert isinstance(screen, SwitchesScreen)
        switches = screen.query_one("#switches", DataTable)
        assert [k.value for k in switches.rows] == ["dal1-r01-tor", "dal1-r02-tor", "dal1-r03-tor"]
        for name in switches.rows:
            assert "✓ ok" in _plain(switches, name, "state")
            assert _plain(switches, name, "ports").endswith("/52")
        assert _plain(switches, "dal1-r03-tor", "snmp") == "v3"
        assert _plain(switches, "dal1-r01-tor", "snmp") == "v2c"
        assert "⇄" in _plain(switches, "dal1-r02-tor", "findings")  # the miscabled node's switch
        assert _plain(switches, "dal1-r01-tor", "descr")  # sysDescr, read over SNMP
        assert _plain(switches, "dal1-r01-tor", "uptime") != "-"

        # the r02 switch: n08's cable is on a spare port, not on Ethernet8
        # opened on the fleet cursor's node (dal1-r01-n01): its switch, the switch list focused
        assert switches.has_focus and screen.selected == "dal1-r01-tor"
        await pilot.press("down")
        assert screen.selected == "dal1-r02-tor"
        ports = screen.query_one("#ports", DataTable)
        assert ports.row_count == 52
        seen_port = next(k.value for k in ports.rows if _plain(ports, k.value, "seen") == "dal1-r02-n08")
        assert seen_port != "Ethernet8"
        assert _plain(ports, seen_port, "finding") == "⇄ mismatch"
        assert _plain(ports, seen_port, "expected") == "-"
        assert _plain(ports, "Ethernet8", "expected") == "dal1-r02-n08"
        assert _plain(ports, "Ethernet8", "finding") == "⇄ mismatch"
        assert seen_port in _plain(ports, "Ethernet8", "detail")
        assert _plain(ports, "Ethernet9", "finding") == "✓ match"
        assert _plain(ports, "Ethernet9", "seen") == "dal1-r02-n09"
        assert _plain(ports, "Ethernet9", "link") == "▲ up/up"
        assert _plain(ports, "Ethernet9", "speed") == "25G"

        # the r01 switch: n13 is powered off, its link is down and its MAC not learned
        await pilot.press("up")
        assert screen.selected == "dal1-r01-tor"
        assert _plain(ports, "Ethernet13", "finding") == "? unknown"
        assert _plain(ports, "Ethernet13", "link").startswith("▼ down")

        # findings only
        await pilot.press("f")
        assert set(k.value for k in ports.rows) == {"Ethernet13"}
        assert "1/52 ports shown" in str(screen.query_one("#switch-detail", Static).render())
        await pilot.press("f")
        assert ports.row_count == 52


async def test_enter_on_a_port_opens_its_node(ctx, monkeypatch):
    app = make_app(ctx, poll=False)
    opened: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await _polled_app(pilot, app)
        monkeypatch.setattr(app, "open_node", opened.append)
        app.open_screen("switches", "dal1-r02-tor")
        await pilot.pause()
        screen = app.screen
        ports = screen.query_one("#ports", DataTable)
        assert ports.has_focus
        await pilot.press("down", "down")  # Ethernet3
        assert screen.cursor_port() == "Ethernet3"
        await pilot.press("enter")
        assert opened == ["dal1-r02-n03"]
        # an uplink has no node: a notice, nothing opened
        ports.move_cursor(row=ports.get_row_index("Ethernet50"))
        await pilot.press("enter")
        assert opened == ["dal1-r02-n03"]
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_live_updates_change_cells_not_tables(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(200, 60)) as pilot:
        await _polled_app(pilot, app)
        app.open_screen("switches", "dal1-r03-tor")
        await pilot.pause()
        screen = app.screen
        switches = screen.query_one("#switches", DataTable)
        ports = screen.query_one("#ports", DataTable)
        clears: list[str] = []  # a rebuild clears a table; a live update must not
        for table in (switches, ports):
            def counting_clear(*args, _table=table, _clear=table.clear, **kwargs):
                clears.append(_table.id)
                return _clear(*args, **kwargs)
            table.clear = counting_clear
        cursor = ports.get_row_index("Ethernet20")
        ports.move_cursor(row=cursor)
        # a failed switch poll: its state cell and description change, its ports stay
        app.fleet.switch_failed("dal1-r03-tor", "timeout after 5s")
        # a node's cable found elsewhere: its expected port becomes a finding
        app.fleet.set_discovered("dal1-r03-n20", ("dal1-r03-tor", "Ethernet40"), [], True)
        app.drain()
        await pilot.pause()
        assert "error" in switches.get_cell("dal1-r03-tor", "state").plain
        assert "timeout after 5s" in switches.get_cell("dal1-r03-tor", "descr").plain
        assert ports.get_cell("Ethernet20", "finding").plain == "⇄ mismatch"
        assert ports.get_cell("Ethernet40", "seen").plain == "dal1-r03-n20"
        assert ports.get_cell("Ethernet40", "finding").plain == "⇄ mismatch"
        assert "⇄ 2" in switches.get_cell("dal1-r03-tor", "findings").plain
        assert ports.cursor_row == cursor
        assert clears == []  # updated in place
        # the next good poll heals it (real SNMP again)
        await app.poller.poll_switch("dal1-r03-tor")
        app.drain()
        await pilot.pause()
        assert "✓ ok" in switches.get_cell("dal1-r03-tor", "state").plain
        assert ports.get_cell("Ethernet20", "finding").plain != "⇄ mismatch"
        assert clears == []


async def test_columns_fit_80_columns_whole_and_the_port_line_says_the_rest(ctx):
    """At 80 columns the headers were cut (``SPEED  I``, ``UPTIM``): columns take compact
    forms or go, none is cut or scrolled to; the line under the ports says the cursor's
    port in full.  Wider, every column is back."""
    from screens.footer import KeyFooter

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await _polled_app(pilot, app)
        app.open_screen("switches", "dal1-r02-tor")
        await pilot.pause()
        screen = app.screen
        switches = screen.query_one("#switches", DataTable)
        ports = screen.query_one("#ports", DataTable)

        def labels(table):
            return [str(c.label) for c in table.columns.values()]

        assert labels(switches) == ["SWITCH", "STATE", "PORTS", "FINDINGS", "UPTIME", "AGE", "DESCR/ERROR"]
        assert labels(ports) == ["PORT", "LINK", "EXPECTED", "SEEN", "FINDING", "DETAIL"]
        for table in (switches, ports):
            assert table.virtual_size.width <= table.size.width, table.id  # nothing off to the right
            for column in table.columns.values():
                assert column.width >= len(str(column.label))  # every header whole
        assert _plain(ports, "Ethernet9", "port") == "Eth9"
        assert _plain(ports, "Ethernet9", "link") == "▲ up"
        # the miscabled port: where its node is seen, in full under the table
        ports.move_cursor(row=ports.get_row_index("Ethernet8"))
        await pilot.pause()
        line = str(screen.query_one("#port-line", Static).render())
        assert line.startswith("Ethernet8 ⇄ mismatch: dal1-r02-n08 is seen on dal1-r02-tor/")
        assert "25G" in line and "errors 0" in line
        # no node to act on here: the power, PXE and reimage keys are not offered
        assert not {"p", "x", "i"} & {key.key for key in screen.query_one(KeyFooter)._keys}

        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert labels(switches) == ["SWITCH", "STATE", "UP/PORTS", "FINDINGS", "ADDRESS", "SNMP", "UPTIME",
                                    "POLLED", "DESCRIPTION / ERROR"]
        assert labels(ports) == ["PORT", "OPER/ADMIN", "EXPECTED", "DISCOVERED", "FINDING", "SPEED", "IN b/s",
                                 "OUT b/s", "ERRORS", "ALIAS", "DETAIL"]
        assert ports.virtual_size.width <= ports.size.width
        assert screen.cursor_port() == "Ethernet8"  # the cursor kept its port
        assert _plain(ports, "Ethernet9", "link") == "▲ up/up"
