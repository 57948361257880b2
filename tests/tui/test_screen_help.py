"""Help: `?` opens it on any screen with that screen's keys; escape, q and ? close it."""

from __future__ import annotations

import html
import io

import pytest
from rich.console import Console
from textual.widgets import Input, Static

from console.cli.main import SiteContext
from console.secrets import Secrets
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.help import HelpScreen
from screens.rack import RackScreen
from screens.switches import SwitchesScreen


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def _text(screen: HelpScreen, selector: str) -> str:
    """What a section shows, as plain text."""
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(screen.query_one(selector, Static).content)
    return console.export_text()


async def test_help_on_the_fleet_screen_opens_and_closes(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        keys = _text(help_screen, "#help-keys")
        for what in ("Filter", "Mark", "Sort", "Racks", "Switches", "Detail"):
            assert what in keys, what
        assert "/" in keys and "w" in keys
        assert "Quit" in _text(help_screen, "#help-app-keys")
        selection = _text(help_screen, "#help-selection")
        for example in ("dal1-r02-n[01-10]", "@gpu", "rack=r01", "role!=gpu", "drift", "&", "-TERM", "all"):
            assert example in selection, example
        symbols = _text(help_screen, "#help-symbols")
        assert "⇄ mismatch" in symbols and "≠ drift" in symbols and "○ off" in symbols
        assert "✗ critical" in symbols and "⊘ error" in symbols  # one meaning per symbol
        assert "↻<1m" in symbols and "polled within" in symbols  # the summary's freshness
        await pilot.press("question_mark")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("question_mark")
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("question_mark")
        await pilot.press("q")  # closes help, does not quit the app
        assert isinstance(app.screen, FleetScreen)
        assert app.is_running


async def test_help_lists_the_current_screens_keys(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(RackScreen())
        await pilot.pause()
        await pilot.press("question_mark")  # the rack screen has no `?` of its own: the app's
        assert isinstance(app.screen, HelpScreen)
        keys = _text(app.screen, "#help-keys")
        assert "Detail" in keys and "Back" in keys and "esc, q" in keys
        assert "Filter" not in keys
        await pilot.press("escape")
        assert isinstance(app.screen, RackScreen)
        app.push_screen(SwitchesScreen())
        await pilot.pause()
        await pilot.press("question_mark")
        assert "Findings only" in _text(app.screen, "#help-keys")
        await pilot.press("q")
        assert isinstance(app.screen, SwitchesScreen)


async def test_question_mark_in_the_filter_is_text(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash", "question_mark")
        assert isinstance(app.screen, FleetScreen)
        assert app.screen.query_one("#filter", Input).value == "?"


async def test_node_detail_help_is_whole_and_readable_at_80_columns(ctx):
    """The screen's summary in whole sentences, wrapped; how to read its lines; it scrolls."""
    from screens.node import NodeScreen

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(NodeScreen("dal1-r01-n07"))
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        doc = help_screen.query_one("#help-doc", Static)
        summary = " ".join(line.strip() for line in _text(help_screen, "#help-doc").splitlines())
        assert summary.endswith("the arrows and page keys scroll.")  # not cut after its first source line
        assert "network and image" in summary
        assert doc.region.width <= 80 and doc.region.height >= 3  # wrapped to the pane, every line shown
        shot = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert "power, network and" in shot and "node's journal." in shot  # on screen, not cut
        notes = _text(help_screen, "#help-notes")
        assert "FAN3 0 RPM < 1000 RPM (lower critical)" in notes
        assert "PSU2 (Power Supply): Power Supply AC lost  asserted" in notes
        keys = _text(help_screen, "#help-keys")
        assert "Refresh" in keys and "Racks" in keys and "Sections" in keys
        body = help_screen.query_one("#help-body")
        assert body.max_scroll_y > 0
        await pilot.press("end")
        await pilot.pause()
        assert body.scroll_y == body.max_scroll_y  # the symbols at the end are reachable
        await pilot.press("escape")
        assert isinstance(app.screen, NodeScreen)
        await app.poller.aclose()


def test_first_paragraph_is_whole_sentences():
    from screens.help import first_paragraph

    assert first_paragraph("One thing,\n    then another.\n\n    Details.") == "One thing, then another."
    assert first_paragraph("Keys ``c`` and ``q``.") == "Keys c and q."
    assert first_paragraph(None) == ""
