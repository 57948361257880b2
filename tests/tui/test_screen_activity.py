"""The Activity screen: the site's journal a row per plan, newest last, live, filtered with ``/``."""

from __future__ import annotations

import secrets

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input

from console.cli.main import SiteContext
from console.ops.journal import Journal
from console.secrets import Secrets
from screens.actions import ActionCommands
from screens.activity import ActivityScreen
from screens.app import make_app
from screens.fleet import FleetScreen
from tests.support import wait_until


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def plain(table: DataTable, row: str, key: str) -> str:
    cell = table.get_cell(row, key)
    return getattr(cell, "plain", cell)


async def test_activity_is_a_row_per_plan_newest_last_live_and_filtered(ctx):
    ticket = f"ACT{secrets.token_hex(3)}"  # this test's entries, whatever else the session journalled
    cycle, pxe = f"c{secrets.token_hex(4)}", f"x{secrets.token_hex(4)}"
    journal = Journal("demo", operator="tester", ticket=ticket, plan=cycle, action="power cycle")
    journal.write(step="plan", result="started", detail="2 nodes")
    journal.write(node="dal1-r01-n21", step="power-cycle", result="started")
    journal.write(node="dal1-r01-n22", step="power-cycle", result="started")
    journal.write(node="dal1-r01-n21", step="power-cycle", result="ok", detail="read back on after 0.4 s")
    journal.write(node="dal1-r01-n22", step="power-cycle", result="failed", error="no answer from the BMC")
    journal.write(step="summary", result="failed", detail="1 done, 1 failed")
    later = Journal("demo", operator="tester", ticket=ticket, plan=pxe, action="pxe")
    later.write(node="dal1-r02-n21", step="boot-pxe", result="failed",
                error="setting the boot override failed: HTTP 500")
    later.write(step="summary", result="failed", detail="1 failed")
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, ActivityScreen)
        table = screen.query_one("#activity", DataTable)
        plan_rows = [str(row.key.value) for row in table.ordered_rows]
        # one row per plan, oldest first, newest last (as `fleet-console activity`); the cursor on the newest
        assert plan_rows[-2:] == [f"plan:{cycle}", f"plan:{pxe}"]
        assert table.cursor_row == table.row_count - 1
        row = f"plan:{cycle}"
        assert plain(table, row, "action") == "▸ power cycle"
        assert plain(table, row, "node") == "2 nodes"
        assert plain(table, row, "operator") == "tester"
        assert plain(table, row, "result") == "1 ok, 1 failed"
        assert plain(table, f"plan:{pxe}", "node") == "dal1-r02-n21"
        assert plain(table, f"plan:{pxe}", "result") == "1 failed"
        # every column whole at 80: no sideways scrolling, the headers as they are
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert [str(c.label) for c in table.columns.values()] == ["TIME", "OPERATOR", "ACTION", "NODE", "RESULT"]
        # enter opens the plan into its steps, oldest first, under its row; again closes it
        await pilot.press("k", "enter")
        assert screen.cursor_row()[1] is None and plain(table, row, "action") == "▾ power cycle"
        steps = [e["step"] for e in screen.shown]
        assert steps == ["plan", "power-cycle", "power-cycle", "power-cycle", "power-cycle", "summary"]
        assert table.row_count == len(plan_rows) + 6
        await pilot.press("j", "j", "j", "j", "j")  # the failed step
        group, entry = screen.cursor_row()
        assert (entry["node"], entry["result"]) == ("dal1-r01-n22", "failed")
        assert "no answer from the BMC" in str(screen.query_one("#entry").render())  # in full, under the table
        await pilot.press("enter")  # closes it from a step's row too; the cursor back on the plan
        assert table.row_count == len(plan_rows) and screen.cursor_row()[0].key == row
        assert "1 ok, 1 failed" in str(screen.query_one("#entry").render())
        # live: an entry written now shows up within a couple of seconds; a cursor on the last row follows it
        await pilot.press("G")
        newer = f"n{secrets.token_hex(4)}"
        Journal("demo", operator="tester", ticket=ticket, plan=newer, action="reimage flatcar@4152.2.0").write(
            node="dal1-r03-n21", step="assign", result="started")
        await wait_until(lambda: f"plan:{newer}" in table.rows, what="the new plan")
        assert table.cursor_row == table.row_count - 1
        assert plain(table, f"plan:{newer}", "action") == "▸ reimage flatcar@4152.2.0"  # whole at 80 columns
        assert plain(table, f"plan:{newer}", "result").startswith("▶ running")
        # the filter: plans with a match, open, with the matching steps only
        await pilot.press("slash", *ticket.lower(), "space", *"failed")
        assert screen.filter_text == f"{ticket.lower()} failed"
        assert [(e["node"], e["result"]) for e in screen.shown] == [
            ("dal1-r01-n22", "failed"), (None, "failed"), ("dal1-r02-n21", "failed"), (None, "failed")]
        assert f"plan:{newer}" not in table.rows
        await pilot.press("enter")
        # escape clears the filter first, then goes back
        await pilot.press("escape")
        assert screen.filter_text == "" and not screen.query_one("#filter", Input).display
        assert screen.shown == []  # closed again
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_activity_columns_fit_the_width(ctx):
    Journal("demo", operator="tester", plan=f"w{secrets.token_hex(4)}", action="power off").write(
        node="dal1-r01-n20", step="power-off", result="ok")
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("l")
        table = app.screen.query_one("#activity", DataTable)
        assert [str(c.label) for c in table.columns.values()] == [
            "TIME UTC", "OPERATOR", "ACTION", "NODE", "TICKET", "RESULT"]
        assert table.virtual_size.width <= table.scrollable_content_region.width
        await pilot.press("g")
        top = app.screen.cursor_row()
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        assert [str(c.label) for c in table.columns.values()] == ["TIME", "OPERATOR", "ACTION", "NODE", "RESULT"]
        assert app.screen.cursor_row() == top  # the cursor kept its row


async def test_activity_and_actions_from_the_palette(ctx):
    app = make_app(ctx, poll=False, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        # the actions are in the palette too (and read-only refuses them there as well)
        hits = [hit.text async for hit in ActionCommands(app.screen).search("power cycle")]
        assert "power cycle selected nodes" in hits and "reimage selected nodes" not in hits
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"activity screen")
        commands = app.screen.query_one(CommandList)
        await wait_until(lambda: commands.option_count > 0, what="palette hits")
        await pilot.pause()
        assert commands.get_option_at_index(0).hit.text == "activity screen"
        await pilot.press("down", "enter")
        await wait_until(lambda: isinstance(app.screen, ActivityScreen), what="the activity screen")
