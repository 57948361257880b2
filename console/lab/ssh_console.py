"""SSH serial consoles on the lab's BMCs, as OpenBMC serves the host console on port 2200.

A node whose inventory says ``bmc.console: {kind: ssh, ...}`` gets a real SSH server
(asyncssh) on the console address (default the BMC address) and port (2200, or an
ephemeral one when that cannot be bound), in front of its machine's serial port:

* password authentication with the BMC's lab credentials (user ``admin``, the lab's
  generated BMC password); no other method is offered;
* a session (with or without a PTY) replays the last ~2 KB of console output, then
  bridges live output to the client and the client's keys to the machine; several
  clients may be connected at once, each sees everything and each may type (OpenBMC's
  obmc-console-server does the same);
* an SSH break request (RFC 4335) is a serial BREAK for the machine;
* a session that asks for a command gets the console only when the command is the one
  the inventory names (``command:``, e.g. iDRAC's ``console com2``) or, with none named,
  for a shell; anything else is refused as a BMC shell would (exit status 127);
* a client that does not read its output loses the oldest of it beyond
  :data:`WRITE_BUFFER_LIMIT` (a UART overrun), never the lab's memory.

Lab BMCs are always powered, so their consoles always answer; what the host prints
depends on the machine's power and phase.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from console.lab.machine import Machine

__all__ = ["SshConsoles", "CONSOLE_HISTORY_BYTES", "WRITE_BUFFER_LIMIT"]

log = logging.getLogger(__name__)

#: console output replayed to a new client (the end of the machine's serial history)
CONSOLE_HISTORY_BYTES = 2048
#: output waiting for a slow client beyond this is dropped (a UART overrun)
WRITE_BUFFER_LIMIT = 256 * 1024


@dataclass
class _Console:
    machine: Machine
    address: str
    port: int
    command: str | None
    fallback: bool  # bind an ephemeral port when ``port`` is taken or needs privileges


def _replay(history: bytes) -> bytes:
    """The end of the console history, starting at a line when it was cut."""
    replay = history[-CONSOLE_HISTORY_BYTES:]
    if len(history) > CONSOLE_HISTORY_BYTES and b"\n" in replay[:256]:
        replay = replay[replay.index(b"\n") + 1:]
    return replay


class _ConsoleSession(asyncssh.SSHServerSession):
    """One client's view of a machine's serial port."""

    def __init__(self, machine: Machine, command: str | None) -> None:
        self._machine = machine
        self._command = command
        self._chan: asyncssh.SSHServerChannel | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._refused = False

    # -- requests ------------------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan

    def pty_requested(self, term_type, term_size, term_modes) -> bool:
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        if self._command is None or command.strip() != self._command:
            self._refused = True  # answered in session_started, as a BMC's shell would
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        chan = self._chan
        assert chan is not None
        if self._refused:
            chan.write(b"console: unknown command (this BMC serves its host console only)\r\n")
            chan.exit(127)
            return
        serial = self._machine.serial
        # Subscribe before reading the history; output arriving in between may then be
        # sent twice at worst, never lost (the client is a terminal: a repeated line is harmless).
        self._unsubscribe = serial.subscribe(self._on_output)
        chan.write(_replay(serial.history()))

    # -- data ------------------------------------------------------------------------------
    def _on_output(self, data: bytes) -> None:
        # the machine writes on its loop thread, a BMC front end on its own: hand over
        try:
            self._loop.call_soon_threadsafe(self._write, data)
        except RuntimeError:  # the loop is closed: the lab is stopping
            pass

    def _write(self, data: bytes) -> None:
        chan = self._chan
        if chan is None or chan.is_closing():
            return
        if chan.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return  # the client is not reading: drop, as a UART overrun would
        chan.write(data)

    def data_received(self, data, datatype) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._machine.serial.send_input(bytes(data))

    def break_received(self, msec: int) -> bool:
        self._machine.serial.send_break()
        return True

    def terminal_size_changed(self, width, height, pixwidth, pixheight) -> None:
        pass  # a serial line has no window size

    def eof_received(self) -> bool:
        return False  # close the channel: the client is done

    def connection_lost(self, exc: Exception | None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._chan = None


class _ConsoleServer(asyncssh.SSHServer):
    def __init__(self, console: _Console, username: str, password: str,
                 conns: set[asyncssh.SSHServerConnection]) -> None:
        self._console = console
        self._username = username
        self._password = password
        self._conns = conns
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and password == self._password

    def session_requested(self) -> asyncssh.SSHServerSession:
        return _ConsoleSession(self._console.machine, self._console.command)


class SshConsoles:
    """Serves the SSH consoles of many machines in one process (one listener each)."""

    def __init__(self, host_key: asyncssh.SSHKey, *, username: str, password: str) -> None:
        self._key = host_key
        self._username = username
        self._password = password
        self._pending: list[_Console] = []
        self._servers: list[asyncssh.SSHAcceptor] = []
        self._conns: set[asyncssh.SSHServerConnection] = set()  # open client connections

    def add(self, machine: Machine, address: str, port: int, *, command: str | None = None,
            fallback: bool = True) -> None:
        """Serve ``machine``'s console on address:port once started (0: ephemeral; with
        ``fallback`` an ephemeral port when ``port`` is taken or needs privileges)."""
        if not ipaddress.ip_address(address).is_loopback:
            # a console that logs anyone in with the lab's password must not reach a network
            raise ValueError(f"lab consoles bind loopback addresses only, not {address}")
        self._pending.append(_Console(machine, address, port, command or None, fallback))

    async def start(self) -> dict[str, int]:
        """Bind every console; returns {machine name: bound port}."""
        ports: dict[str, int] = {}
        pending, self._pending = self._pending, []
        for console in pending:
            server = await self._listen(console, console.port)
            self._servers.append(server)
            ports[console.machine.name] = server.sockets[0].getsockname()[1]
        return ports

    async def _listen(self, console: _Console, port: int) -> asyncssh.SSHAcceptor:
        try:
            return await asyncssh.listen(
                console.address,
                port,
                server_factory=lambda: _ConsoleServer(console, self._username, self._password, self._conns),
                server_host_keys=[self._key],
                encoding=None,  # a serial line carries bytes
                agent_forwarding=False,
                x11_forwarding=False,
                login_timeout=30,
            )
        except OSError as exc:
            if port and console.fallback and exc.errno in (errno.EADDRINUSE, errno.EACCES):
                log.debug("console of %s: %s:%d not free (%s); an ephemeral port instead",
                          console.machine.name, console.address, port, exc.strerror)
                return await self._listen(console, 0)
            raise

    async def stop(self) -> None:
        """Close every listener and connection."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for conn in list(self._conns):  # closing a listener leaves its connections open
            conn.close()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except (TimeoutError, Exception):
                pass
