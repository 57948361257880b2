"""The app, typed: how a screen, widget or palette provider reaches :class:`~screens.app.FleetConsoleApp`.

``self.app`` is Textual's ``App``; what this console adds to it (the site context, the
Fleet, the run options) is reached through :func:`fleet_app` or, in a screen, widget or
command provider, :class:`FleetAppMixin`'s ``console`` property, so mypy checks every use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # screens.app imports the screens: only the type is needed here
    from textual.app import App

    from screens.app import FleetConsoleApp

__all__ = ["FleetAppMixin", "InApp", "fleet_app"]


class InApp(Protocol):
    """Anything that knows its app: a DOM node (screen, widget) or a command provider."""

    @property
    def app(self) -> App[Any]: ...


def fleet_app(node: InApp) -> FleetConsoleApp:
    """The console app ``node`` runs in."""
    return cast("FleetConsoleApp", node.app)


class FleetAppMixin:
    """For a screen, widget or command provider: ``self.console`` is the app, typed."""

    @property
    def console(self) -> FleetConsoleApp:
        """The console app this screen runs in."""
        return fleet_app(cast(InApp, self))
