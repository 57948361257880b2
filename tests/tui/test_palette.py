"""The command palette: jump to a node, a rack, a switch or a screen."""

from __future__ import annotations


import pytest
from textual.command import CommandPalette, CommandList

from console.cli.main import SiteContext
from console.secrets import Secrets
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.palette import FleetCommands
from screens.rack import RackScreen
from screens.switches import SwitchesScreen
from tests.support import wait_until


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


async def _hits(app, query: str) -> list[str]:
    provider = FleetCommands(app.screen)
    return [hit.text async for hit in provider.search(query)]


async def test_palette_finds_a_node_and_opens_it(ctx, monkeypatch):
    app = make_app(ctx, poll=False)
    opened: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        monkeypatch.setattr(app, "open_node", opened.append)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"dal1-r03-n11")
        commands = app.screen.query_one(CommandList)
        await wait_until(lambda: commands.option_count > 0)
        await pilot.pause()
        first = commands.get_option_at_index(0)
        assert first.hit.text == "go to node dal1-r03-n11"
        assert commands.get_option_at_index(1).hit.text == "serial console of dal1-r03-n11"
        commands.highlighted = 0
        await pilot.press("enter")
        await wait_until(lambda: opened)
        assert opened == ["dal1-r03-n11"]


async def test_search_ranks_and_filters(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(100, 30)):
        hits = await _hits(app, "dal1-r03-n11")
        assert "go to node dal1-r03-n11" in hits
        assert "go to node dal1-r01-n01" not in hits
        assert await _hits(app, "r02-tor") == ["go to switch dal1-r02-tor"]
        assert "go to rack r03" in await _hits(app, "rack r03")
        assert "switches screen" in await _hits(app, "switches")
        provider = FleetCommands(app.screen)
        discovered = [hit.text async for hit in provider.discover()]
        assert discovered[:3] == ["fleet screen", "racks screen", "switches screen"]
        assert "go to rack r01" in discovered and not any(t.startswith("go to node") for t in discovered)
        assert "power cycle selected nodes" in discovered  # the actions too: one provider orders them


async def test_rack_switch_and_screen_commands(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        provider = FleetCommands(app.screen)
        by_text = {text: command for text, command, _ in provider._commands()}
        await by_text["go to rack r03"]()
        await pilot.pause()
        assert isinstance(app.screen, RackScreen)
        assert app.screen.cursor == "dal1-r03-n01"
        await by_text["go to rack r02"]()  # the rack screen on top is reused
        assert app.screen.cursor == "dal1-r02-n01"
        by_text["go to switch dal1-r03-tor"]()
        await pilot.pause()
        assert isinstance(app.screen, SwitchesScreen) and app.screen.selected == "dal1-r03-tor"
        by_text["go to switch dal1-r01-tor"]()  # the switches screen on top is reused
        await pilot.pause()
        assert app.screen.selected == "dal1-r01-tor"
        assert len(app.screen_stack) == 3  # fleet, racks, switches
        by_text["fleet screen"]()
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        by_text["switches screen"]()
        await pilot.pause()
        assert isinstance(app.screen, SwitchesScreen)


async def test_the_fleets_commands_come_before_textuals_own(ctx):
    """Before anything is typed, the screens and racks are listed above Textual's own
    commands (theme, keys, screenshot, quit); those are still there, and found by search."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await wait_until(lambda: isinstance(app.screen, CommandPalette))
        options = app.screen.query_one(CommandList)

        def texts() -> list[str]:
            return [str(options.get_option_at_index(i).prompt).split("\n")[0] for i in range(options.option_count)]

        system = [name for name, *_ in app.get_system_commands(app.screen)]
        racks = [f"go to rack {r.name}" for r in app.fleet.site.racks]
        # every discovery hit has arrived (the palette adds them in batches as they come)
        await wait_until(lambda: any(t.startswith("Quit") for t in texts()) and set(racks) <= set(texts()))
        shown = texts()
        last_fleet = max(i for i, t in enumerate(shown) if t.endswith(" screen") or t.startswith("go to rack")
                         or t.endswith(" selected nodes"))
        first_textual = min(i for i, t in enumerate(shown) if t in system)
        assert last_fleet < first_textual, "\n".join(shown)
        await pilot.press(*"theme")
        await wait_until(lambda: any("theme" in t.lower() for t in texts()))
