"""The engine's errors, and the whole error hierarchy in one picture.

::

    FleetError                  base: every error fleet-console raises on purpose (inventory.errors)
    ├── InventoryError          a site file is wrong, each problem located (inventory.errors)
    ├── SelectionError          a node selection is malformed or matches nothing (inventory.errors)
    ├── RangeError              a node range is malformed or too large (inventory.ranges)
    ├── SiteNotFound            no site file of that name in the trusted places (inventory.errors)
    │   └── UntrustedSite       found, but someone else could have written it (console.sitefile)
    ├── SecretError             a credential reference cannot be resolved (inventory.errors)
    ├── DriverError             talking to a BMC, switch or host failed
    │   ├── Unreachable         nothing answers
    │   ├── AuthFailed          our credentials were refused
    │   ├── Timeout             no answer in time
    │   ├── ProtocolError       an answer we cannot understand
    │   │   └── Missing         HTTP 404 for a URL the Redfish service linked (console.drivers.redfish_http)
    │   └── CommandFailed       an IPMI completion code other than 00h (console.drivers.rmcp)
    ├── LabError                the embedded lab could not start or be found
    ├── ActionError             an action step on one node failed
    │   └── PlanError           the request cannot be planned: bad input (console.ops.actions)
    ├── LockError               a lock cannot be taken, renewed or released (console.ops.locks)
    │   ├── LockBusy            another process held the site's guard too long
    │   └── LockCancelled       the wait for the guard was cancelled
    └── BootServeError          the site's boot scripts cannot be served (console.provision.bootserve)

Every driver maps its library's exceptions to a :class:`DriverError` at a single
place and re-raises ``from exc``, so a node's failure becomes that node's state and
never stops the poll of the others.  The inventory's errors are re-exported here so
the engine imports every error from one module.
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
