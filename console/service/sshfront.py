"""The site service's SSH front door: each operator's console session, served over SSH.

``fleet-console --site S serve --listen 127.0.0.1:2222 --operators FILE`` starts one
:class:`SshFront` next to the :class:`~console.service.server.SiteService`.  What it does:

- **Authentication** by public key only (passwords, keyboard-interactive, host-based
  and GSS are off): the user name is the operator's name in the operators file
  (:mod:`console.service.operators`), the key one of theirs.  The file is read again
  on SIGHUP and whenever it changed (checked at each login); a refused key is logged
  with its fingerprint, never the key itself.  An operator removed from the file loses
  their open sessions.
- **The host key** is generated on first start (ed25519) and kept 0600 in the service's
  state directory, opened with ``O_NOFOLLOW`` and checked for owner and mode.
- **A shell** with a PTY runs ``fleet-console --site S`` (the console) as a child on a
  new pseudo-terminal, with ``FLEET_SERVICE`` (the service's socket),
  ``FLEET_SERVICE_TOKEN`` (a session token the service resolves to the operator's
  Identity) and ``FLEET_OPERATOR`` (display only); the terminal type and size come from
  the client, window changes reach the child (TIOCSWINSZ and SIGWINCH).  A shell
  without a PTY is refused with a message.
- **An exec** (``ssh alice@host status --json``) runs that fleet-console command (split
  with :func:`shlex.split`, never a shell; only the commands in :data:`EXEC_COMMANDS`,
  never ``--site``) on pipes, or on a PTY when the client asked for one
  (``ssh -t alice@host console NODE``), and hands its exit status back.
- **Limits**: sessions per operator and in total, and an idle timeout for terminal
  sessions (the operators file's ``limits``).  When the session ends the child is
  sent SIGHUP, then SIGKILL after a grace, and its token is revoked.  When the service
  stops, every session is told why before it is closed.

The child process is this Python running ``console.cli.main`` with ``-P`` (the working
directory is not put on ``sys.path``); its environment is the service's, with the
three variables above set (and ``FLEET_CONSOLE_READ_ONLY=1`` for a viewer: the service
refuses their actions anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import shlex
import signal
import stat
import struct
import sys
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from console.service.identity import Identity, SessionTokens
from console.service.operators import Limits, Operator, Operators, OperatorsError, file_stamp, load_operators
from console.text import visible
from console.trust import write_whole
from inventory.errors import FleetError

__all__ = ["EXEC_COMMANDS", "ExecRefused", "SshFront", "SshFrontError", "SshSession", "exec_argv",
           "load_host_key", "parse_listen"]

log = logging.getLogger(__name__)

#: fleet-console commands an operator may run over SSH as an exec request
EXEC_COMMANDS = frozenset({"status", "switches", "sensors", "events", "timeline", "activity", "power", "pxe",
                           "reimage", "console", "audit", "validate"})
#: global options that may come before the command
_GLOBAL_FLAGS = frozenset({"--read-only", "--debug"})
#: the longest exec command line accepted
MAX_COMMAND = 4096
#: seconds between SIGHUP and SIGKILL for a child whose session ended
KILL_GRACE = 3.0
#: seconds to wait for a child's last output after it exited
DRAIN_GRACE = 2.0
#: bytes of client input kept for a child that does not read before the channel is paused
_MAX_PENDING_INPUT = 256 * 1024
#: bytes of child output queued on the channel before reading from the child pauses
_CHANNEL_HIGH_WATER = 256 * 1024
_TERM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_HOST_KEY = "ssh_host_ed25519_key"
_MAX_HOST_KEY_BYTES = 64 * 1024

# Run as the child on a PTY: make the PTY (its stdin) the controlling terminal of the new
# session (start_new_session), so hangups and SIGWINCH reach it, then become the console.
_CTTY_SHIM = ("import fcntl, os, sys, termios\n"
              "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
              "os.execv(sys.argv[1], sys.argv[1:])\n")


class SshFrontError(FleetError):
    """The SSH front door cannot start: a bad --listen, operators file or host key."""

    title = "SSH front door"


class ExecRefused(Exception):
    """An exec request that is not a fleet-console command an operator may run."""


class _Service(Protocol):
    tokens: SessionTokens
    socket_path: Path


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:2222`` for IPv6; port 0: any free one) as (host, port)."""
    text = listen.strip()
    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise SshFrontError(f"--listen {visible(listen)!r}: expected HOST:PORT, e.g. 127.0.0.1:2222")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise SshFrontError(f"--listen {visible(listen)!r}: the port must be a number") from None
    if not 0 <= port <= 65535:
        raise SshFrontError(f"--listen {visible(listen)!r}: the port must be 0-65535")
    return host, port


def exec_argv(command: str) -> list[str]:
    """The fleet-console arguments an exec request's command line asks for.

    ExecRefused says why when it is not one an operator may run: not a command of
    :data:`EXEC_COMMANDS`, ``--site`` (the service serves one site), or ``audit --csv``
    to a file (it would be written as the service's user)."""
    if len(command) > MAX_COMMAND:
        raise ExecRefused(f"the command is {len(command)} characters; the most accepted is {MAX_COMMAND}")
    if any(ord(c) < 32 and c not in "\t" or ord(c) == 127 for c in command):
        raise ExecRefused("the command has control characters")
    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise ExecRefused(f"cannot split the command: {exc}") from None
    if args and args[0] == "fleet-console":
        args = args[1:]
    if args in (["--version"], ["--help"], ["-h"]):
        return args
    i = 0
    while i < len(args) and args[i] in _GLOBAL_FLAGS:
        i += 1
    name = args[i] if i < len(args) else ""
    if name not in EXEC_COMMANDS:
        allowed = ", ".join(sorted(EXEC_COMMANDS))
        what = f"{visible(name)!r} is not a command you may run here" if name else "no command given"
        raise ExecRefused(f"{what}; run one of: {allowed} (or log in without a command for the console)")
    for j, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        opt, eq, value = arg.partition("=")
        if len(opt) >= 3 and "--site".startswith(opt):
            raise ExecRefused("--site is not accepted: this service serves one site")
        if name == "audit" and len(opt) >= 3 and "--csv".startswith(opt):
            value = value if eq else (args[j + 1] if j + 1 < len(args) else "")
            if value != "-":
                raise ExecRefused("audit --csv writes only to stdout here: use --csv -")
    return args


# --- the host key ------------------------------------------------------------------------


def _check_key_dir(path: Path) -> int:
    """Open ``path`` (created 0700 when missing) as a directory fd; it must be ours, not open to others."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise SshFrontError(f"cannot use {path} for the SSH host key: {why}") from None
    st = os.fstat(dfd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(dfd)
        raise SshFrontError(f"refusing {path} for the SSH host key: owner uid {st.st_uid}, mode "
                            f"{stat.S_IMODE(st.st_mode):04o}; it must be yours and not writable by others "
                            f"(chmod 700 {path})")
    return dfd


def load_host_key(directory: Path) -> asyncssh.SSHKey:
    """The service's SSH host key in ``directory``, generated (ed25519, 0600) on first use.

    The file is opened without following links and must be a regular file of ours with
    no group or other permission; otherwise SshFrontError says what to fix."""
    dfd = _check_key_dir(directory)
    where = directory / _HOST_KEY
    try:
        try:
            fd = os.open(_HOST_KEY, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return _new_host_key(dfd, where)
        except OSError as exc:
            why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise SshFrontError(f"cannot read the SSH host key {where}: {why}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SshFrontError(f"refusing the SSH host key {where}: not a regular file")
            if st.st_uid != os.geteuid():
                raise SshFrontError(f"refusing the SSH host key {where}: owned by uid {st.st_uid}, not by you")
            if st.st_mode & 0o077:
                raise SshFrontError(f"refusing the SSH host key {where}: mode {stat.S_IMODE(st.st_mode):04o} "
                                    f"lets others read it; run: chmod 600 {where}")
            data = os.read(fd, _MAX_HOST_KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > _MAX_HOST_KEY_BYTES:
            raise SshFrontError(f"refusing the SSH host key {where}: larger than {_MAX_HOST_KEY_BYTES} bytes")
        try:
            return asyncssh.import_private_key(data)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SshFrontError(f"cannot read the SSH host key {where}: {exc} "
                                f"(move it away and a new one is made)") from None
    finally:
        os.close(dfd)


def _new_host_key(dfd: int, where: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    write_whole(dfd, _HOST_KEY, key.export_private_key())
    log.info("generated the SSH host key %s (%s)", where, key.get_fingerprint())
    return key


# --- sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SshSessionInfo:
    """One SSH session, as :meth:`SshFront.sessions` tells it."""

    identity: Identity
    since: float  # time.time() when it started
    peer: str
    kind: str  # "console" (a shell), or "exec: COMMAND"
    pid: int | None


class _Server(asyncssh.SSHServer):
    """One SSH connection: authentication, and the sessions it opens."""

    def __init__(self, front: SshFront) -> None:
        self._front = front
        self.conn: asyncssh.SSHServerConnection | None = None
        self.operator: Operator | None = None
        self.key: asyncssh.SSHKey | None = None
        self.peer = "?"
        self.sessions: set[SshSession] = set()

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        if not self._front._accept_connection(self):
            log.warning("ssh: refused a connection from %s: too many connections", self.peer)
            conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._front._connections.discard(self)

    def begin_auth(self, username: str) -> bool:
        self._front._maybe_reload()
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        op = self._front.operators.match(username, key)
        if op is None:
            known = username in self._front.operators.operators
            log.warning("ssh: refused %s key %s for %s %r from %s", key.get_algorithm(), key.get_fingerprint(),
                        "operator" if known else "unknown user", visible(username[:64]), self.peer)
            return False
        self.operator, self.key = op, key
        return True

    def auth_completed(self) -> None:
        if self.operator is not None and self.key is not None:
            log.info("ssh: %s (%s) logged in from %s with key %s", self.operator.name, self.operator.role,
                     self.peer, self.key.get_fingerprint())

    def session_requested(self) -> SshSession | bool:
        if self.operator is None:
            return False
        session = SshSession(self._front, self, self.operator)
        self.sessions.add(session)
        return session


class SshSession(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel: a console on a PTY, or one command."""

    def __init__(self, front: SshFront, server: _Server, operator: Operator) -> None:
        self._front = front
        self._server = server
        self.operator = operator
        self.identity = Identity(operator.name, operator.role, "ssh")
        self.since = time.time()
        self._loop = asyncio.get_event_loop()
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._term: str | None = None
        self._size = (80, 24, 0, 0)
        self._command: str | None = None
        self._shell = False
        self._proc: asyncio.subprocess.Process | None = None
        self._pty_fd: int | None = None
        self._in_fd: int | None = None
        self._out: dict[int, int | None] = {}  # fd -> None (stdout) or EXTENDED_DATA_STDERR
        self._reading = False
        self._output_done = asyncio.Event()
        self._inbuf = bytearray()
        self._in_eof = False
        self._input_paused = False
        self._last_input = time.monotonic()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._end_message: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.done = asyncio.Event()

    # -- what the client asked for

    @property
    def kind(self) -> str:
        return f"exec: {visible(self._command[:80])}" if self._command is not None else "console"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan
        chan.set_write_buffer_limits(high=_CHANNEL_HIGH_WATER)

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Any) -> bool:
        self._term = term_type if _TERM.match(term_type or "") else "xterm"
        self._size = term_size
        return True

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._size = (width, height, pixwidth, pixheight)
        self._touch()
        if self._pty_fd is not None:
            self._set_winsize()
            if self._proc is not None and self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc.pid, signal.SIGWINCH)

    def shell_requested(self) -> bool:
        self._shell = True
        return True

    def exec_requested(self, command: str | bytes) -> bool:
        if isinstance(command, bytes):
            command = command.decode("utf-8", "replace")
        if command.strip():
            self._command = command
        else:
            self._shell = True
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._touch()
        self._inbuf += data
        self._flush_input()

    def eof_received(self) -> bool:
        self._in_eof = True
        self._flush_input()
        return True  # half-open: the command's output still goes back

    def pause_writing(self) -> None:
        self._reading_on(False)

    def resume_writing(self) -> None:
        self._reading_on(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self._task is None or self._task.done():
            self._finish()
        elif self._proc is not None and self._proc.returncode is None:
            asyncio.ensure_future(self._terminate())

    # -- running the child

    async def _run(self) -> None:
        try:
            await self._run_child()
        except Exception as exc:  # never a traceback to the client; the log has it
            log.exception("ssh: session of %s failed", self.operator.name)
            self._say(f"fleet-console: the session failed: {visible(str(exc))}")
            self._exit(1)
        finally:
            self._finish()

    async def _run_child(self) -> None:
        chan = self._chan
        assert chan is not None
        if self._command is None and self._term is None:
            self._say("fleet-console: the console needs a terminal: log in with ssh -t (or run one command: "
                      "ssh -p PORT NAME@HOST status --json)")
            self._exit(2)
            return
        args: list[str] = []
        if self._command is not None:
            try:
                args = exec_argv(self._command)
            except ExecRefused as exc:
                self._say(f"fleet-console: refused: {exc}")
                self._exit(2)
                return
        why = self._front._admit(self)
        if why is not None:
            self._say(f"fleet-console: {why}")
            self._exit(1)
            return
        token = self._front.service.tokens.issue(self.identity)
        try:
            argv = [*self._front.command, *self._front.site_args, *args]
            env = self._front.child_env(self.identity, token, self._term)
            if self._term is not None:
                await self._spawn_pty(argv, env)
            else:
                await self._spawn_pipes(argv, env)
            log.info("ssh: %s started %s (pid %s)", self.operator.name, self.kind, self.pid)
            self._schedule_idle()
            assert self._proc is not None
            status = await self._proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._output_done.wait(), DRAIN_GRACE)
            self._reading_on(False)
            if self._end_message is not None:
                self._say(self._end_message)
                self._exit(1)
            elif status < 0:
                name = signal.Signals(-status).name.removeprefix("SIG") if -status in signal.valid_signals() \
                    else "KILL"
                if not self._closed:
                    chan.exit_with_signal(name)
            else:
                self._exit(status)
        finally:
            self._front.service.tokens.revoke(token)

    async def _spawn_pty(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        self._pty_fd = master
        self._set_winsize()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CTTY_SHIM, *argv, stdin=slave, stdout=slave, stderr=slave,
                env=env, start_new_session=True, close_fds=True)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._in_fd = master
        self._out = {master: None}
        self._reading_on(True)
        self._flush_input()

    async def _spawn_pipes(self, argv: list[str], env: dict[str, str]) -> None:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=in_r, stdout=out_w, stderr=err_w, env=env, start_new_session=True, close_fds=True)
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        for fd in (in_w, out_r, err_r):
            os.set_blocking(fd, False)
        self._in_fd = in_w
        self._out = {out_r: None, err_r: asyncssh.EXTENDED_DATA_STDERR}
        self._reading_on(True)
        self._flush_input()

    def _set_winsize(self) -> None:
        if self._pty_fd is None:
            return
        cols, rows, pw, ph = (max(1, min(int(v), 4096)) if i < 2 else max(0, min(int(v), 65535))
                              for i, v in enumerate(self._size))
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._pty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, pw, ph))

    # -- moving bytes

    def _reading_on(self, on: bool) -> None:
        if on == self._reading:
            return
        self._reading = on
        for fd in self._out:
            if on:
                self._loop.add_reader(fd, self._on_readable, fd)
            else:
                self._loop.remove_reader(fd)

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the PTY's other side is closed
            data = b""
        if not data:
            self._loop.remove_reader(fd)
            self._out.pop(fd, None)
            if fd != self._in_fd:
                os.close(fd)
            if not self._out:
                self._output_done.set()
            return
        chan = self._chan
        if chan is None or self._closed:
            return
        try:
            if self._out.get(fd) is None:
                chan.write(data)
            else:
                chan.write_stderr(data)
        except (OSError, asyncssh.Error):
            self._closed = True

    def _flush_input(self) -> None:
        fd = self._in_fd
        if fd is None:
            if len(self._inbuf) > _MAX_PENDING_INPUT and self._chan is not None and not self._input_paused:
                self._input_paused = True
                self._chan.pause_reading()
            return
        while self._inbuf:
            try:
                n = os.write(fd, self._inbuf)
            except BlockingIOError:
                self._loop.add_writer(fd, self._flush_input)
                if len(self._inbuf) > _MAX_PENDING_INPUT and self._chan is not None and not self._input_paused:
                    self._input_paused = True
                    self._chan.pause_reading()
                return
            except OSError:  # the child closed its input (EPIPE) or the PTY (EIO): drop what it will not read
                self._inbuf.clear()
                break
            del self._inbuf[:n]
        self._loop.remove_writer(fd)
        if self._input_paused and self._chan is not None:
            self._input_paused = False
            self._chan.resume_reading()
        if self._in_eof and self._pty_fd is None and fd in (self._in_fd,):
            os.close(fd)
            self._in_fd = None

    def _say(self, message: str) -> None:
        """Tell the client ``message`` (on the terminal, or stderr for a command)."""
        chan = self._chan
        if chan is None or self._closed:
            return
        with contextlib.suppress(OSError, asyncssh.Error):
            if self._term is not None:
                chan.write(("\r\n" + message.replace("\n", "\r\n") + "\r\n").encode())
            else:
                chan.write_stderr((message + "\n").encode())

    def _exit(self, status: int) -> None:
        if self._chan is not None and not self._closed:
            with contextlib.suppress(OSError, asyncssh.Error):
                self._chan.exit(status)

    # -- ending

    def _touch(self) -> None:
        self._last_input = time.monotonic()

    def _schedule_idle(self) -> None:
        idle = self._front.operators.limits.idle_minutes * 60
        if idle <= 0 or self._term is None or self._closed:
            return
        left = self._last_input + idle - time.monotonic()
        if left <= 0:
            minutes = self._front.operators.limits.idle_minutes
            shown = f"{minutes:g} minute{'s' if minutes != 1 else ''}"
            log.info("ssh: closing %s's idle session (%s without input)", self.operator.name, shown)
            asyncio.ensure_future(self.end(f"fleet-console: closed after {shown} without input"))
            return
        self._idle_handle = self._loop.call_later(left, self._schedule_idle)

    async def end(self, message: str) -> None:
        """Stop the child (SIGHUP, then SIGKILL), tell the client ``message`` and close."""
        if self._end_message is None:
            self._end_message = message
        if self._task is None:
            self._say(message)
            self._exit(1)
            return
        await self._terminate()
        await self.done.wait()

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        for sig in (signal.SIGHUP, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # its own session and group: the console and what it started
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE)
                return
            except TimeoutError:
                continue

    def _finish(self) -> None:
        if self.done.is_set():
            return
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._reading_on(False)
        for fd in list(self._out):
            if fd != self._in_fd:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._out.clear()
        if self._in_fd is not None:
            self._loop.remove_writer(self._in_fd)
            with contextlib.suppress(OSError):
                os.close(self._in_fd)
            self._in_fd = None
        self._front._release(self)
        self._server.sessions.discard(self)
        self.done.set()


# --- the front door ----------------------------------------------------------------------


class SshFront:
    """The SSH server of one site service (see the module's docstring).

    ``command`` (for tests) replaces the fleet-console command line the sessions run;
    ``site`` is the ``--site`` value given to it (default: the service's)."""

    def __init__(self, service: _Service, listen: str, operators: Path, host_key_dir: Path, *,
                 site: str | None = None, command: Sequence[str] | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.service = service
        self.listen = listen
        self.operators_path = Path(operators)
        self.host_key_dir = Path(host_key_dir)
        self._host, self._port = parse_listen(listen)
        self.command = list(command) if command is not None else [sys.executable, "-P", "-m", "console.cli.main"]
        site = _site_arg(site) if site is not None else _service_site(service)
        self.site_args = ["--site", site] if site else []
        self._extra_env = dict(extra_env or {})
        self.operators: Operators = Operators(self.operators_path, {}, Limits(), (0, 0, 0, 0))
        self._bad_stamp: tuple[int, int, int, int] | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[_Server] = set()
        self._active: set[SshSession] = set()
        self.bound_port: int | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Read the operators file and the host key, and listen; SshFrontError says what is wrong."""
        try:
            self.operators = load_operators(self.operators_path)
        except OperatorsError as exc:
            raise SshFrontError(str(exc)) from None
        key = await asyncio.to_thread(load_host_key, self.host_key_dir)
        try:
            self._acceptor = await asyncssh.listen(
                self._host, self._port, server_factory=lambda: _Server(self), server_host_keys=[key],
                encoding=None, line_editor=False, allow_pty=True, public_key_auth=True, password_auth=False,
                kbdint_auth=False, host_based_auth=False, gss_host=None, agent_forwarding=False,
                x11_forwarding=False, allow_scp=False, login_timeout=30, keepalive_interval=60,
                reuse_address=True)
        except OSError as exc:
            raise SshFrontError(f"cannot listen on {visible(self.listen)}: {exc.strerror or exc}") from None
        self.bound_port = self._acceptor.sockets[0].getsockname()[1]
        log.info("ssh: listening on %s port %s for %d operators (host key %s)", self._host, self.bound_port,
                 len(self.operators.operators), key.get_fingerprint())

    async def stop(self, reason: str) -> None:
        """Tell every session ``reason``, end them (their children stopped) and stop listening."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
        message = f"fleet-console: the site service is stopping ({visible(reason)}); this session ends"
        sessions = [s for c in list(self._connections) for s in list(c.sessions)]
        if sessions:
            await asyncio.gather(*(s.end(message) for s in sessions), return_exceptions=True)
        for conn in list(self._connections):
            if conn.conn is not None:
                conn.conn.close()
        for conn in list(self._connections):
            if conn.conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.conn.wait_closed(), 5)
        if acceptor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(acceptor.wait_closed(), 5)

    def sessions(self) -> list[SshSessionInfo]:
        """Every session running a console or a command now."""
        return [SshSessionInfo(s.identity, s.since, s._server.peer, s.kind, s.pid)
                for s in sorted(self._active, key=lambda s: s.since)]

    # -- the operators file

    def reload(self) -> None:
        """Read the operators file again (``serve`` calls it on SIGHUP); a bad file keeps the last
        good one, logged."""
        self._maybe_reload(force=True)

    def _maybe_reload(self, force: bool = False) -> None:
        stamp = file_stamp(self.operators_path)
        if not force and (stamp == self.operators.stamp or stamp == self._bad_stamp):
            return
        try:
            new = load_operators(self.operators_path)
        except OperatorsError as exc:
            self._bad_stamp = stamp
            log.error("ssh: keeping the operators loaded before: %s", visible(str(exc)))
            return
        self._bad_stamp = None
        self.operators = new
        log.info("ssh: operators file read again: %d operators", len(new.operators))
        for conn in list(self._connections):
            op, key = conn.operator, conn.key
            if op is None or key is None:
                continue
            now = new.match(op.name, key)
            if now is not None and now.role == op.role:
                continue
            if now is None:
                log.warning("ssh: %s's key %s was removed; closing their connection", op.name,
                            key.get_fingerprint())
                message = "fleet-console: your access was removed from the operators file"
            else:  # a session keeps the role it logged in with: a changed role needs a new login
                log.warning("ssh: %s's role changed from %s to %s; closing their connection", op.name, op.role,
                            now.role)
                message = (f"fleet-console: your role changed in the operators file ({op.role} -> {now.role}); "
                           "log in again")
            asyncio.ensure_future(self._drop(conn, message))

    async def _drop(self, conn: _Server, message: str) -> None:
        await asyncio.gather(*(s.end(message) for s in list(conn.sessions)), return_exceptions=True)
        if conn.conn is not None:
            conn.conn.close()

    # -- limits

    def _accept_connection(self, conn: _Server) -> bool:
        if len(self._connections) >= self.operators.limits.sessions_total + 32:
            return False
        self._connections.add(conn)
        return True

    def _admit(self, session: SshSession) -> str | None:
        limits = self.operators.limits
        if len(self._active) >= limits.sessions_total:
            log.warning("ssh: refused a session of %s: %d sessions, the limit", session.operator.name,
                        len(self._active))
            return (f"the site service already has {len(self._active)} sessions, its limit "
                    f"(limits.sessions_total); try again later")
        mine = sum(1 for s in self._active if s.operator.name == session.operator.name)
        if mine >= limits.sessions_per_operator:
            log.warning("ssh: refused a session of %s: %d sessions already", session.operator.name, mine)
            return (f"{session.operator.name} already has {mine} sessions, the most one operator may have "
                    f"(limits.sessions_per_operator); close one first")
        self._active.add(session)
        return None

    def _release(self, session: SshSession) -> None:
        self._active.discard(session)

    # -- the child's environment

    def child_env(self, identity: Identity, token: str, term: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLEET_SERVICE", "SSH_")) and k not in ("FLEET_OPERATOR", "TERM")}
        env.update(self._extra_env)
        env["FLEET_SERVICE"] = str(self.service.socket_path)
        env["FLEET_SERVICE_TOKEN"] = token
        env["FLEET_OPERATOR"] = identity.name
        if term is not None:
            env["TERM"] = term
        else:
            env.pop("TERM", None)
        if identity.role == "viewer":
            env["FLEET_CONSOLE_READ_ONLY"] = "1"
        return env


def _site_arg(site: str) -> str:
    """``site`` as the child is given it: a path made absolute (the child may run elsewhere)."""
    return os.path.abspath(site) if os.sep in site or site.endswith((".yaml", ".yml")) else site


def _service_site(service: object) -> str | None:
    """The --site value of ``service``'s site (a path made absolute), when it says."""
    for attr in ("site_arg", "site_ref", "site_name"):
        value = getattr(service, attr, None)
        if isinstance(value, str) and value:
            return _site_arg(value)
    name = getattr(getattr(service, "site", None), "name", None)
    return name if isinstance(name, str) and name else None

