"""Command palette (ctrl+p): jump to a node, a rack, a switch, or one of the screens.

:class:`FleetCommands` is a Textual command :class:`~textual.command.Provider`:
:meth:`~FleetCommands.discover` lists the screens and racks before anything is
typed; :meth:`~FleetCommands.search` fuzzy-matches what is typed against every
"go to node/rack/switch" command and the screens.

Names and addresses come from the site file: the palette shows them as text
(:func:`_shown`, :func:`_highlight`), never as markup, which Textual's own
``Matcher.highlight`` and a ``str`` help text would parse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from console.text import visible
from screens.appref import FleetAppMixin

if TYPE_CHECKING:  # screens.app imports this module: only the type is needed here
    from screens.app import FleetConsoleApp

__all__ = ["FleetCommands", "go_to_node", "go_to_rack", "go_to_switch", "go_to_screen", "open_timeline"]

#: screens the palette offers: name -> help text
SCREENS = {
    "fleet": "every node in one table",
    "racks": "racks drawn as columns of U slots",
    "switches": "switches, their ports, and cabling findings",
    "jobs": "this console's running and recent actions: reopen, cancel (J)",
    "audit": "image audit: desired, assigned and running image per node; reimage the drifted (A)",
    "who": "who is connected to the site service, and the locks, runs and consoles each holds (W)",
}


def _shown(text: str) -> Content:
    """Palette text from the site file: plain text, control characters visible."""
    return Content(visible(text))


def _highlight(matcher: Matcher, text: str) -> Content:
    """``matcher.highlight(text)`` without reading ``text`` as markup."""
    shown = visible(text)
    content = Content(shown)
    score, offsets = matcher.fuzzy_search.match(matcher.query, shown)
    if score:
        for offset in offsets:
            if not shown[offset].isspace():
                content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


def go_to_node(app: FleetConsoleApp, name: str) -> None:
    """Open node ``name``'s detail screen."""
    app.open_node(name)


async def go_to_rack(app: FleetConsoleApp, rack: str) -> None:
    """Open the rack screen (or use the one on top) with the cursor on ``rack``'s lowest node."""
    from screens.rack import RackScreen

    screen = app.screen
    if not isinstance(screen, RackScreen):
        screen = RackScreen()
        await app.push_screen(screen)
    column = next((c for c, r in zip(screen.columns, app.fleet.site.racks, strict=False) if r.name == rack), None)
    if column:
        screen.select(column[-1].node_name)
    else:
        app.notify(visible(f"rack {rack} has no nodes placed in U slots"), severity="warning", markup=False)


def go_to_switch(app: FleetConsoleApp, name: str) -> None:
    """Open the switches screen (or use the one on top) with switch ``name`` selected."""
    from screens.switches import SwitchesScreen

    if isinstance(app.screen, SwitchesScreen):
        app.screen.select_switch(name)
    else:
        app.open_screen("switches", name)


def open_console(app: FleetConsoleApp, name: str) -> None:
    """Watch ``name``'s serial console."""
    from screens.console import ConsoleScreen

    app.push_screen(ConsoleScreen([name]))


def open_timeline(app: FleetConsoleApp, name: str) -> None:
    """Open ``name``'s incident timeline."""
    app.open_screen("timeline", name)


def go_to_screen(app: FleetConsoleApp, which: str) -> None:
    """Show the fleet screen (back to it), or open the racks or switches screen."""
    from screens.fleet import FleetScreen

    if which == "fleet":
        while not isinstance(app.screen, FleetScreen) and len(app.screen_stack) > 1:
            app.pop_screen()
        return
    from screens.audit import AuditScreen
    from screens.jobs import JobsScreen
    from screens.rack import RackScreen
    from screens.switches import SwitchesScreen
    from screens.who import WhoScreen

    current = {"racks": RackScreen, "switches": SwitchesScreen, "jobs": JobsScreen, "audit": AuditScreen,
               "who": WhoScreen}[which]
    if not isinstance(app.screen, current):
        app.open_screen(which)


class FleetCommands(FleetAppMixin, Provider):
    """Palette commands for this site: nodes, racks, switches and screens."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        """(text, callback, help) for every command, screens first."""
        app = self.console
        site = app.fleet.site
        out: list[tuple[str, Callable, str]] = [
            (f"{which} screen", partial(go_to_screen, app, which), help_text)
            for which, help_text in SCREENS.items()
        ]
        out += [(f"go to rack {r.name}", partial(go_to_rack, app, r.name),
                 f"row {r.row}, {len(r.nodes)} nodes") for r in site.racks]
        out += [(f"go to switch {s.name}", partial(go_to_switch, app, s.name), f"{s.address}, its ports")
                for s in site.switches]
        out += [(f"go to node {n.name}", partial(go_to_node, app, n.name), f"rack {n.rack}, U {n.u or '-'}")
                for n in site.nodes]
        out.append(("serial console (marked nodes, else the cursor's)", app.action_consoles,
                    "watch the nodes' serial consoles: t types, a attaches the terminal, ~. returns"))
        out += [(f"serial console of {n.name}", partial(open_console, app, n.name),
                 "watch its serial console: t types, a attaches the terminal")
                for n in site.nodes]
        out.append(("incident timeline (the cursor's node)", app.action_timeline,
                    "the node's incident story: state changes, BMC events, console, image, actions (T)"))
        out += [(f"incident timeline of {n.name}", partial(open_timeline, app, n.name),
                 "its incident story: state changes, BMC events, console, image changes, actions")
                for n in site.nodes]
        return out

    async def discover(self) -> Hits:
        """Before anything is typed: the screens and the racks, then Textual's own
        commands (theme, keys, screenshot, quit), which the app gets from here rather
        than from Textual's provider so that they come after the fleet's."""
        for text, command, help_text in self._commands():
            if not text.startswith(("go to node", "incident timeline of ")):
                # Hit.help is typed str, but the palette draws it with Content.from_markup,
                # which takes a Content as it is (a str would be read as markup)
                help_content = _shown(help_text)
                yield DiscoveryHit(_shown(text), command, text=text, help=help_content)  # type: ignore[arg-type]
        from screens.actions import ActionCommands  # the actions and Activity: the fleet's too

        for hit in ActionCommands(self.screen, self.match_style).discovery_hits():
            yield hit
        for name, help_text, callback, discover in self.app.get_system_commands(self.screen):
            if discover:
                yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        """Everything whose text fuzzy-matches ``query``."""
        matcher = self.matcher(query)
        for i, (text, command, help_text) in enumerate(self._commands()):
            score = matcher.match(text)
            if score > 0:
                help_content = _shown(help_text)  # a Content, not markup: see discover
                yield Hit(score, _highlight(matcher, text), command, text=text, help=help_content)  # type: ignore[arg-type]
            if i % 500 == 499:
                await asyncio.sleep(0)  # thousands of nodes: let the palette stay responsive
        for name, help_text, callback, *_ in self.app.get_system_commands(self.screen):
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
