"""Serial consoles: one stream interface, IPMI SOL and SSH transports, a broker, logs.

- :mod:`console.serial.stream`: the :class:`ConsoleStream` interface and its errors;
- :mod:`console.serial.sol`: IPMI Serial-over-LAN (pyghmi);
- :mod:`console.serial.sshcon`: SSH consoles (asyncssh: OpenBMC's port 2200, iDRAC
  ``console com2``, iLO ``vsp``);
- :mod:`console.serial.broker`: one session per node per process, shared by every
  viewer, one writer at a time, reconnecting;
- :mod:`console.serial.log`: the per-node on-disk log.

:func:`open_stream` picks the transport from the inventory: a BMC's ``console:``
entry, else SOL for an IPMI BMC; a Redfish BMC without one has no serial console
(:class:`NoConsole`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.errors import DriverError
from console.serial.stream import ConsoleBusy, ConsoleLost, ConsoleStream
from console.text import visible

if TYPE_CHECKING:
    from console.site import SiteContext
    from inventory.model import Node

__all__ = ["ConsoleBusy", "ConsoleLost", "ConsoleStream", "NoConsole", "open_stream", "console_kind"]


class NoConsole(DriverError):
    """The node has no serial console the inventory names (or is not in it)."""

    title = "no serial console"


def console_kind(node: Node) -> str:
    """``sol`` or ``ssh``: how ``node``'s console is reached; NoConsole when it has none."""
    console = node.bmc.console
    if console is not None:
        if console.kind == "sol" and node.bmc.protocol != "ipmi":
            raise NoConsole(f"{visible(node.name)}: console kind sol needs an IPMI BMC "
                            f"(this one speaks {node.bmc.protocol}); use kind: ssh")
        return console.kind
    if node.bmc.protocol == "ipmi":
        return "sol"
    raise NoConsole(f"{visible(node.name)}: its Redfish BMC has no serial console in the inventory "
                    "(add bmc.console: {kind: ssh, port: 2200} for OpenBMC, or a command for iDRAC/iLO)")


def open_stream(ctx: SiteContext, node: str) -> ConsoleStream:
    """A stream to ``node``'s serial console (not opened yet: call ``open()``).

    NoConsole when the site has no such node or the node has no console."""
    try:
        n = ctx.site.node(node)
    except KeyError:
        raise NoConsole(f"no node named {visible(node)!r} in site {ctx.site.name}") from None
    if console_kind(n) == "sol":
        from console.serial.sol import SolStream

        return SolStream(n, ctx.secrets)
    from console.serial.sshcon import SshConsoleStream

    return SshConsoleStream(n, ctx.site.ssh, ctx.secrets)
