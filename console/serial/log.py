"""Per-node console logs on disk: timestamped lines, markers, size-based rotation.

``$XDG_STATE_HOME/fleet-console/<site>/console/<node>.log`` (the base is
:func:`console.ops.journal.state_dir`), rotated to ``<node>.log.1`` .. ``.N`` when it
would grow past ``max_bytes``.  Every line starts with its UTC time, then ``|`` for
what the node printed or ``*`` for a marker the console wrote itself (attach,
detach, takeover, lost, reconnected, ...)::

    2026-12-07T04:05:06.123Z | dal1-r01-n01 login: root
    2026-12-07T04:05:09.870Z * takeover: bob took the console from alice

Output is kept as the node sent it (ANSI sequences included, ``\\r`` before a line
end dropped); a line the node is still printing (a prompt) is written at once and
continued by the next chunk.  A node cannot forge a marker: its text always follows
``| ``.

Files are the user's alone: the directories are 0700 and the files 0600, each opened
relative to its parent's descriptor with ``O_NOFOLLOW`` (a planted symbolic link is
refused, never followed) and checked after opening to be ours (a regular file, or a
directory, owned by our user; a looser mode of ours is tightened).

:func:`read_log` gives the log back, rotated files first, oldest first, optionally
with ANSI sequences stripped and only the last lines.  The text is the node's: show
it through :func:`console.text.visible` unless writing it to a terminal on purpose.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from pathlib import Path

from console.ops.journal import state_dir
from console.text import visible

__all__ = ["ConsoleLog", "LogError", "log_path", "read_log", "ansi_stripped", "colours_only", "MAX_BYTES",
           "BACKUPS"]

#: a log file is rotated before it grows past this many bytes
MAX_BYTES = 4 * 1024 * 1024
#: rotated files kept (``<node>.log.1`` .. ``.N``)
BACKUPS = 5

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO never hangs

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte ESC sequences, 8-bit CSI
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# SGR (colours, bold): the only sequence :func:`colours_only` passes; it asks nothing of the terminal
_SGR = re.compile(r"\x1b\[[0-9;:]{0,64}m")


class LogError(OSError):
    """A console log cannot be opened or read safely (the message says which file and why)."""


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name or "") or len(name) > 200:
        raise LogError(f"not a {kind} name: {visible(name)!r}")
    return name


def log_path(site: str, node: str) -> Path:
    """Where the console log of ``node`` on ``site`` is written."""
    return state_dir() / _check_name("site", site) / "console" / f"{_check_name('node', node)}.log"


def _open_dir(parent_fd: int | None, name: str, *, create: bool) -> int:
    """Open directory ``name`` (relative to ``parent_fd``, or a path), created 0700 when asked;
    it must be ours; a looser mode is tightened."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LogError(f"{name} is not a directory (a symbolic link?): not following it") from None
        raise
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise LogError(f"{name} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o700)
    return fd


def _console_dir(site: str, *, create: bool) -> int:
    """A descriptor of ``<state>/<site>/console`` (created when asked)."""
    base = state_dir()
    if create:
        base.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_dir(None, str(base), create=create)
    try:
        for part in (_check_name("site", site), "console"):
            nfd = _open_dir(fd, part, create=create)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_file(fd: int, name: str) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        raise LogError(f"{name} is not a regular file of ours")
    return st


def _stamp(now: float) -> bytes:
    t = time.gmtime(now)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(now * 1000) % 1000:03d}Z").encode()


class ConsoleLog:
    """The on-disk log of one node's console (see the module docstring).

    Not thread-safe: one writer (the node's broker session) on one event loop.
    """

    def __init__(self, site: str, node: str, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                 clock=time.time) -> None:
        self.site = _check_name("site", site)
        self.node = _check_name("node", node)
        self.name = f"{self.node}.log"
        self.max_bytes = max(1024, max_bytes)
        self.backups = max(1, backups)
        self._clock = clock
        self._dir: int | None = None
        self._fd: int | None = None
        self._size = 0
        self._at_line_start = True

    @property
    def path(self) -> Path:
        return log_path(self.site, self.node)

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        if self._dir is None:
            self._dir = _console_dir(self.site, create=True)
        try:
            fd = os.open(self.name, _APPEND_FLAGS, 0o600, dir_fd=self._dir)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LogError(f"{self.path} is a symbolic link: not following it") from None
            raise
        try:
            st = _check_file(fd, str(self.path))
            if st.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._size = fd, st.st_size
        if st.st_size:
            # a line left unfinished by an earlier process is ended, so ours start with their time
            self._at_line_start = self._ends_with_newline(fd, st.st_size)
            if not self._at_line_start:
                self._write_raw(b"\n")
                self._at_line_start = True
        return fd

    @staticmethod
    def _ends_with_newline(fd: int, size: int) -> bool:
        return os.pread(fd, 1, size - 1) == b"\n"

    def _write_raw(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        self._size += len(data)

    def _rotate(self) -> None:
        assert self._dir is not None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        d = self._dir
        for i in range(self.backups - 1, 0, -1):
            try:
                os.rename(f"{self.name}.{i}", f"{self.name}.{i + 1}", src_dir_fd=d, dst_dir_fd=d)
            except FileNotFoundError:
                pass
        try:
            os.rename(self.name, f"{self.name}.1", src_dir_fd=d, dst_dir_fd=d)
        except FileNotFoundError:
            pass
        self._at_line_start = True
        self._open()

    def _emit(self, data: bytes) -> None:
        """Write ``data`` (whole lines, or the start of one), rotating first when it would not fit."""
        self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            if not self._at_line_start:
                self._write_raw(b"\n")
            self._rotate()
        self._write_raw(data)

    def write(self, data: bytes) -> None:
        """What the node printed: each line begins with its time."""
        if not data:
            return
        self._open()
        stamp = _stamp(self._clock()) + b" | "
        out = bytearray()
        for piece in data.replace(b"\r\n", b"\n").splitlines(keepends=True):
            chunk = stamp + piece if self._at_line_start else piece
            if self._size + len(out) + len(chunk) > self.max_bytes and self._size + len(out):
                if out:
                    self._write_raw(bytes(out))
                    out.clear()
                if not self._at_line_start:
                    self._write_raw(b"\n")
                self._rotate()
                chunk = stamp + piece  # the new file's first line starts with its time too
            out += chunk
            self._at_line_start = piece.endswith(b"\n")
        if out:
            self._write_raw(bytes(out))

    def marker(self, kind: str, who: str | None = None, detail: str = "") -> None:
        """A line of our own: ``* kind: who detail``."""
        rest = " ".join(visible(x) for x in (who, detail) if x)
        text = visible(kind) + (f": {rest}" if rest else "")
        self._open()
        prefix = b"" if self._at_line_start else b"\n"
        self._emit(prefix + _stamp(self._clock()) + b" * " + text.encode() + b"\n")
        self._at_line_start = True

    def close(self) -> None:
        for attr in ("_fd", "_dir"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                try:
                    os.close(fd)
                except OSError:
                    pass


def ansi_stripped(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves, titles)."""
    return _ANSI.sub("", text)


def colours_only(text: str) -> str:
    """``text`` made safe to write to a terminal, its colours kept: SGR sequences (colour,
    bold) pass; every other escape sequence and control character is shown as
    :func:`console.text.visible` shows it (``^[]52;c;...``), newlines and tabs kept.  A
    node's log cannot set the clipboard (OSC 52), the window title, or make the terminal
    answer (DA, DECRQSS) into the reader's shell.  Colours are reset at the end."""
    out: list[str] = []
    pos = 0
    coloured = False
    for m in _SGR.finditer(text):
        out.append(visible(text[pos:m.start()], newlines=True).replace("^I", "\t"))
        out.append(m.group())
        coloured = True
        pos = m.end()
    out.append(visible(text[pos:], newlines=True).replace("^I", "\t"))
    if coloured:
        out.append("\x1b[0m")
    return "".join(out)


def read_log(site: str, node: str, *, strip_ansi: bool = False, lines: int | None = None,
             max_bytes: int = (BACKUPS + 1) * MAX_BYTES) -> str:
    """The console log of ``node``: rotated files first, oldest first; "" when there is none.

    ``strip_ansi`` removes ANSI sequences; ``lines`` keeps only the last N lines; at most
    ``max_bytes`` (the newest) are read.  LogError when a file is not ours."""
    name = f"{_check_name('node', node)}.log"
    _check_name("site", site)
    try:
        dfd = _console_dir(site, create=False)
    except FileNotFoundError:
        return ""
    chunks: list[bytes] = []
    budget = max_bytes
    try:
        for fname in [name] + [f"{name}.{i}" for i in range(1, 1000)]:  # newest first
            try:
                fd = os.open(fname, _READ_FLAGS, dir_fd=dfd)
            except FileNotFoundError:
                if fname == name:
                    continue  # rotated files without a current one: still read them
                break
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise LogError(f"{fname} is a symbolic link: not following it") from None
                raise
            try:
                st = _check_file(fd, fname)
                take = min(st.st_size, budget)
                data = os.pread(fd, take, st.st_size - take) if take else b""
            finally:
                os.close(fd)
            chunks.append(data)
            budget -= len(data)
            if budget <= 0:
                break
    finally:
        os.close(dfd)
    text = b"".join(reversed(chunks)).decode("utf-8", "replace")
    if strip_ansi:
        text = ansi_stripped(text)
    if lines is not None:
        if lines <= 0:
            return ""
        kept = text.split("\n")  # only "\n" ends a log line (a node's text may hold \r, \x85, U+2028)
        if kept and not kept[-1]:
            kept.pop()
            text = "".join(line + "\n" for line in kept[-lines:])
        else:
            text = "\n".join(kept[-lines:])
    return text
