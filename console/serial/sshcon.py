"""SSH serial consoles (asyncssh) as a :class:`~console.serial.stream.ConsoleStream`.

A BMC's ``console: {kind: ssh, ...}`` names where: OpenBMC serves the host console
on port 2200 (no command), iDRAC needs ``console com2``, iLO ``vsp``.  The address
defaults to the BMC's, the port to 22, the user and password to the BMC's.  A PTY is
requested (``xterm``, 80x24 until :meth:`SshConsoleStream.resize` says otherwise);
a break is an SSH ``break`` request of 500 ms.

Host keys are checked as :mod:`console.drivers.ssh` does: against the console's
``known_hosts``, else the site's ``ssh.known_hosts`` (``lab:known_hosts`` is the
running lab's file; ``ignore`` turns the check off and is meant for labs only; none
at all means asyncssh's default, ``~/.ssh/known_hosts``).  The operator's own keys
are never offered unasked.

Bounds: connecting and logging in must finish within ``connect_timeout``; reads are
at most :data:`MAX_CHUNK` bytes each and unread output beyond :data:`MAX_UNREAD` is
dropped, oldest first.  SSH has no "someone else holds it": ``force`` changes nothing
(a BMC that allows one console session ends the other one itself).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncssh

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.secrets import Secrets
from console.serial.stream import ConsoleLost, Unread
from console.text import visible
from inventory.model import Node, SerialConsole, SshConfig

__all__ = ["SshConsoleStream", "MAX_CHUNK", "MAX_UNREAD", "CONNECT_TIMEOUT"]

log = logging.getLogger(__name__)

#: seconds to connect, log in and open the console channel
CONNECT_TIMEOUT = 10.0
#: largest chunk one read returns
MAX_CHUNK = 16 * 1024
#: unread output kept; beyond it the oldest bytes are dropped (an overrun)
MAX_UNREAD = 1024 * 1024
#: milliseconds of an SSH break
BREAK_MS = 500


class _Session(asyncssh.SSHClientSession):
    """Hands the channel's output to its stream."""

    def __init__(self, stream: SshConsoleStream) -> None:
        self._stream = stream

    def data_received(self, data: Any, datatype: Any) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        self._stream._deliver(bytes(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream._ended(f"{type(exc).__name__}: {exc}" if exc else "the channel closed")

    def exit_status_received(self, status: int) -> None:
        self._stream._ended(f"the console command exited with status {status}")


class SshConsoleStream:
    """One node's console over SSH (see the module docstring)."""

    def __init__(self, node: Node, ssh: SshConfig, secrets: Secrets, *,
                 connect_timeout: float = CONNECT_TIMEOUT, term_type: str = "xterm",
                 size: tuple[int, int] = (80, 24)) -> None:
        console = node.bmc.console or SerialConsole(kind="ssh")
        self.node = node.name
        self._console = console
        self._bmc = node.bmc
        self._ssh = ssh
        self._secrets = secrets
        self.host = console.address or node.bmc.address
        self.port = console.port or 22
        command = f" ({visible(console.command)})" if console.command else ""
        self.description = f"SSH {self.host}:{self.port}{command}"
        self._timeout = connect_timeout
        self._term_type = term_type
        self._size = size
        self._conn: asyncssh.SSHClientConnection | None = None
        self._chan: asyncssh.SSHClientChannel | None = None
        self._out = Unread(MAX_UNREAD, MAX_CHUNK)
        self._ready = self._out.ready
        self._error: ConsoleLost | None = None
        self._closed = False

    # -- from asyncssh's callbacks (on our loop) ------------------------------------------
    def _deliver(self, data: bytes) -> None:
        if self._closed:
            return
        self._out.put(data)

    def _ended(self, why: str) -> None:
        if self._closed or self._error is not None:
            return
        self._error = ConsoleLost(f"{self.node}: SSH console {self.host}:{self.port} lost: {visible(why)}")
        self._ready.set()

    # -- settings --------------------------------------------------------------------------
    def _known_hosts(self) -> Any:
        kh = self._console.known_hosts or self._ssh.known_hosts
        if kh is None:
            return ()  # asyncssh's default: ~/.ssh/known_hosts
        if kh == "ignore":
            return None
        if kh.startswith("lab:"):
            return self._secrets.resolve(kh).get()
        return kh

    async def _options(self) -> dict[str, Any]:
        password_ref = self._console.password or self._bmc.password
        kwargs: dict[str, Any] = {
            "port": self.port,
            "username": self._console.username or self._bmc.username,
            "password": (await self._secrets.aresolve(password_ref)).get(),
            "client_keys": None,  # never the operator's own keys
            "agent_path": None,
        }
        kh = self._known_hosts()
        if kh != ():
            kwargs["known_hosts"] = kh
        return kwargs

    # -- the ConsoleStream interface ------------------------------------------------------
    async def open(self, *, force: bool = False) -> None:
        if self._conn is not None:
            raise RuntimeError("SshConsoleStream.open called twice")
        kwargs = await self._options()
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self._timeout):
                self._conn = await asyncssh.connect(self.host, **kwargs)
                cols, rows = self._size
                self._chan, _ = await self._conn.create_session(
                    lambda: _Session(self), self._console.command, request_pty=True,
                    term_type=self._term_type, term_size=(cols, rows), encoding=None)
        except BaseException as exc:
            await self._drop_connection()
            if isinstance(exc, TimeoutError):
                raise Timeout(f"{self.node}: SSH console {where}: no answer in {self._timeout:g} s") from exc
            if isinstance(exc, asyncssh.PermissionDenied):
                raise AuthFailed(f"{self.node}: SSH console {where}: permission denied") from exc
            if isinstance(exc, asyncssh.HostKeyNotVerifiable):
                raise AuthFailed(f"{self.node}: SSH console {where}: host key not verifiable (known_hosts)") from exc
            if isinstance(exc, ConnectionRefusedError):
                raise Unreachable(f"{self.node}: SSH console {where}: connection refused") from exc
            if isinstance(exc, asyncssh.ChannelOpenError):
                raise ProtocolError(f"{self.node}: SSH console {where}: channel refused: "
                                    f"{visible(exc.reason)}") from exc
            if isinstance(exc, asyncssh.ConnectionLost | asyncssh.DisconnectError):
                raise Unreachable(f"{self.node}: SSH console {where}: {type(exc).__name__}: "
                                  f"{visible(str(exc))}") from exc
            if isinstance(exc, OSError):
                raise Unreachable(f"{self.node}: SSH console {where}: "
                                  f"{visible(exc.strerror or type(exc).__name__)}") from exc
            if isinstance(exc, asyncssh.Error):
                raise ProtocolError(f"{self.node}: SSH console {where}: {type(exc).__name__}") from exc
            raise
        log.info("%s: SSH console open on %s", self.node, where)

    async def read(self) -> bytes:
        return await self._out.take(lambda: self._closed, lambda: self._error)

    @property
    def dropped(self) -> int:
        """Bytes dropped because nobody read them in time."""
        return self._out.dropped

    def _channel(self) -> asyncssh.SSHClientChannel:
        if self._closed:
            raise ConsoleLost(f"{self.node}: SSH console is closed")
        if self._error is not None:
            raise self._error
        if self._chan is None:
            raise ConsoleLost(f"{self.node}: SSH console is not open")
        return self._chan

    async def write(self, data: bytes) -> None:
        if not data:
            return
        chan = self._channel()
        try:
            chan.write(data)
        except (asyncssh.Error, OSError, BrokenPipeError) as exc:
            self._ended(str(exc) or type(exc).__name__)
            raise self._error or ConsoleLost(self.node) from exc

    async def send_break(self) -> None:
        chan = self._channel()
        try:
            chan.send_break(BREAK_MS)
        except (asyncssh.Error, OSError) as exc:
            raise DriverError(f"{self.node}: SSH break not sent: {type(exc).__name__}") from exc

    async def resize(self, cols: int, rows: int) -> None:
        self._size = (max(1, cols), max(1, rows))
        if self._chan is not None and not self._closed and self._error is None:
            try:
                self._chan.change_terminal_size(*self._size)
            except (asyncssh.Error, OSError) as exc:
                log.info("%s: SSH console resize not sent: %s", self.node, type(exc).__name__)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        await self._drop_connection()
        log.info("%s: SSH console closed", self.node)

    async def _drop_connection(self) -> None:
        chan, self._chan = self._chan, None
        conn, self._conn = self._conn, None
        if chan is not None:
            chan.close()
        if conn is not None:
            conn.close()
            try:
                async with asyncio.timeout(5):
                    await conn.wait_closed()
            except (TimeoutError, asyncssh.Error, OSError):
                pass
