"""Protocol drivers.  :func:`open_bmc` picks the right one for a node."""

from __future__ import annotations

from console.drivers.bmc import BmcDriver
from console.secrets import Secrets
from inventory.model import Node

__all__ = ["open_bmc"]


def open_bmc(node: Node, secrets: Secrets, *, timeout: float = 10.0) -> BmcDriver:
    """A driver for the node's BMC (no I/O yet; the session opens on first use).

    Raises SecretError when the password reference cannot be resolved.
    """
    password = secrets.resolve(node.bmc.password)
    if node.bmc.protocol == "ipmi":
        from console.drivers.ipmi import IpmiDriver

        return IpmiDriver(node.bmc, password, timeout=timeout)
    from console.drivers.redfish import RedfishDriver

    return RedfishDriver(node.bmc, password, timeout=timeout)
