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

import asyncio
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from console.errors import DriverError

__all__ = ["ConsoleBusy", "ConsoleLost", "ConsoleStream", "ConsoleTaken", "Unread"]


class ConsoleBusy(DriverError):
    """The console is held by another client; taking it over needs ``force``."""

    title = "console busy"


class ConsoleLost(DriverError):
    """The console stream ended (BMC dropped the session, channel closed)."""

    title = "console lost"


class ConsoleTaken(ConsoleLost):
    """The BMC ended the stream as it does when another client takes the console over: a
    client that reconnects at once could seize it back between the other's deactivation
    and activation, so it waits a little longer first."""


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


class Unread:
    """A transport's output that nobody has read yet, as a UART's receive buffer.

    Bounded: beyond ``limit`` bytes the oldest are dropped and counted (an overrun,
    never unbounded memory for a console nobody reads).  :attr:`ready` wakes the
    reader; transports also set it on any change of state (error, close), so one event
    serves every wait of the stream.
    """

    def __init__(self, limit: int, chunk: int) -> None:
        self.limit = limit
        self.chunk = chunk
        self.dropped = 0
        self.ready = asyncio.Event()
        self._buf = bytearray()

    def put(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self.limit:
            cut = len(self._buf) - self.limit
            del self._buf[:cut]
            self.dropped += cut
        self.ready.set()

    async def take(self, closed: Callable[[], bool], error: Callable[[], BaseException | None]) -> bytes:
        """At most :attr:`chunk` bytes, waiting for them; ``b""`` once ``closed()``; what
        ``error()`` gives is raised once the buffer is drained."""
        while True:
            if self._buf:
                data = bytes(self._buf[:self.chunk])
                del self._buf[:self.chunk]
                return data
            if closed():
                return b""
            if (exc := error()) is not None:
                raise exc
            self.ready.clear()
            await self.ready.wait()
