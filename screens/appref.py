"""The app, typed: how a screen or widget reaches :class:`~screens.app.FleetConsoleApp`.

``self.app`` is Textual's ``App``; what this console adds to it (the site context, the
Fleet, the run options) is reached through :func:`fleet_app` or, in a screen,
:class:`FleetAppMixin`'s ``console`` property, so mypy checks every use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

if TYPE_CHECKING:  # screens.app imports the screens: only the type is needed here
    from screens.app import FleetConsoleApp

__all__ = ["FleetAppMixin", "fleet_app"]


def fleet_app(node: DOMNode) -> FleetConsoleApp:
    """The console app ``node`` runs in."""
    return cast("FleetConsoleApp", node.app)


class FleetAppMixin:
    """For a screen or widget: ``self.console`` is the app, typed."""

    @property
    def console(self) -> FleetConsoleApp:
        """The console app this screen runs in."""
        return fleet_app(cast(DOMNode, self))
