"""The Activity screen: the site's journal newest first, live, filtered with ``/``."""

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


def column(table: DataTable, key: str) -> list[str]:
    out = []
    for row in table.ordered_rows:
        cell = table.get_cell(row.key, key)
        out.append(getattr(cell, "plain", cell))
    return out


async def test_activity_lists_entries_newest_first_live_and_filtered(ctx):
    ticket = f"ACT{secrets.token_hex(3)}"  # this test's entries, whatever else the session journalled
    journal = Journal("demo", operator="tester", ticket=ticket, plan="p1")
    journal.write(action="power cycle", node="dal1-r01-n21", step="power-cycle", result="started")
    journal.write(action="power cycle", node="dal1-r01-n21", step="power-cycle", result="ok",
                  detail="read back on after 0.4 s")
    journal.write(action="pxe", node="dal1-r02-n21", step="boot-pxe", result="failed",
                  error="setting the boot override failed: HTTP 500")
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, ActivityScreen)
        table = screen.query_one("#activity", DataTable)
        await pilot.press("slash", *ticket.lower())
        assert screen.filter_text == ticket.lower()
        assert column(table, "node") == ["dal1-r02-n21", "dal1-r01-n21", "dal1-r01-n21"]  # newest first
        assert column(table, "result") == ["failed", "ok", "started"]
        assert column(table, "operator") == ["tester"] * 3
        assert column(table, "ticket") == [ticket] * 3
        assert "HTTP 500" in column(table, "error")[0]
        assert "HTTP 500" in str(screen.query_one("#entry").render())  # the highlighted entry in full
        # a second word narrows it: action or node
        await pilot.press("space", "p", "x", "e")
        assert column(table, "node") == ["dal1-r02-n21"]
        await pilot.press("enter")
        # live: an entry written now shows up on top within a couple of seconds
        journal.write(action="pxe", node="dal1-r02-n21", step="reboot", result="ok")
        await wait_until(lambda: len(screen.shown) == 2, what="the new entry")
        assert column(table, "step") == ["reboot", "boot-pxe"]
        # escape clears the filter first, then goes back
        await pilot.press("escape")
        assert screen.filter_text == "" and not screen.query_one("#filter", Input).display
        assert table.row_count >= 4
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


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
