"""The one interface every serial-console transport gives: a byte stream with a break.

A :class:`ConsoleStream` is one live connection to one node's serial console,
whatever carries it (IPMI Serial-over-LAN on the BMC, or an SSH console such as
OpenBMC's host console on port 2200, iDRAC's ``console com2`` or iLO's ``vsp``).
Transports live beside this module (:mod:`console.serial.sol`,
:mod:`console.serial.sshcon`); the broker (:mod:`console.serial.broker`) keeps at
most one stream per node and shares it among viewers.

Errors are :class:`~console.errors.DriverError` subclasses, so a console that
fails is that node's trouble, never the process's:

* :class:`ConsoleBusy`: someone else holds the console (another SOL client on the
  BMC, or another holder in the broker); retry with ``force=True`` to take it over.
* :class:`ConsoleLost`: the stream ended under us (the BMC dropped the session,
  the SSH channel closed); the broker reconnects, an attached terminal says so.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from console.errors import DriverError

__all__ = ["ConsoleBusy", "ConsoleLost", "ConsoleStream"]


class ConsoleBusy(DriverError):
    """The console is held by another client; taking it over needs ``force``."""

    title = "console busy"


class ConsoleLost(DriverError):
    """The console stream ended (BMC dropped the session, channel closed)."""

    title = "console lost"


@runtime_checkable
class ConsoleStream(Protocol):
    """One open connection to one node's serial console."""

    #: the node's name
    node: str
    #: what carries it, for banners and logs: ``"IPMI SOL 127.1.1.3:623"``, ``"SSH 127.1.2.4:2200"``
    description: str

    async def open(self, *, force: bool = False) -> None:
        """Connect.  Raises :class:`ConsoleBusy` when held elsewhere and not ``force``;
        with ``force`` the other holder is deactivated first (SOL) or ignored (SSH)."""
        ...

    async def read(self) -> bytes:
        """The next output bytes (waits for them); ``b""`` once closed by us.
        Raises :class:`ConsoleLost` when the other end drops the stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Send keystrokes to the node."""
        ...

    async def send_break(self) -> None:
        """Send a serial break (SysRq on Linux)."""
        ...

    async def resize(self, cols: int, rows: int) -> None:
        """Tell the far end the terminal size where the transport can (SSH); else nothing."""
        ...

    async def close(self) -> None:
        """Disconnect (deactivate the SOL payload, close the channel); idempotent."""
        ...
