"""Driver errors: the right-hand half of the hierarchy drawn in :mod:`inventory.errors`.

Every driver maps its library's exceptions to one of these at a single place and
re-raises ``from exc``; a node's error is state, not a crash.
"""

from __future__ import annotations

from inventory.errors import FleetError, InventoryError, SecretError, SelectionError, SiteNotFound

__all__ = [
    "FleetError",
    "InventoryError",
    "SecretError",
    "SelectionError",
    "SiteNotFound",
    "DriverError",
    "Unreachable",
    "AuthFailed",
    "Timeout",
    "ProtocolError",
    "LabError",
    "ActionError",
]


class DriverError(FleetError):
    """Talking to an endpoint failed."""

    title = "driver error"


class Unreachable(DriverError):
    """Nothing answers at the endpoint (refused, no route, no reply)."""

    title = "unreachable"


class AuthFailed(DriverError):
    """The endpoint answered but refused our credentials."""

    title = "auth failed"


class Timeout(DriverError):
    """The endpoint did not answer in time."""

    title = "timeout"


class ProtocolError(DriverError):
    """The endpoint answered with something we cannot understand."""

    title = "protocol error"


class LabError(FleetError):
    """The embedded lab could not start or be found."""

    title = "lab error"


class ActionError(FleetError):
    """An action step on one node failed (the reason is for the operator and the journal)."""

    title = "action failed"
