"""Operator locks: a node under an action by one operator is locked for everyone else on this host.

One lock file per node, ``<lock dir>/<site>/<node>.lock``, holding JSON: owner
(operator), pid, host, created and expires (unix seconds), action and plan id.
The lock directory is shared by every user of the host: ``$FLEET_CONSOLE_LOCKS``
or ``/var/tmp/fleet-console-locks`` (created world-writable with the sticky bit,
as ``/tmp``, so operators can lock but not delete each other's files).

A lock file is created with ``O_CREAT | O_EXCL`` (atomic: of two operators, one
wins).  Acquiring a *set* of nodes is all or nothing and happens under an
``flock`` on the site directory's ``.guard`` file, so checking, reclaiming and
creating are one step for every process on the host.  A lock stops counting when
it has expired, or when its process is gone (same host, pid no longer alive);
the next acquirer reclaims it.  A stale lock another user owns cannot be deleted
in a sticky directory: it then still counts as held, and the message says why.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from console.journal import current_operator

__all__ = ["LockInfo", "Locks", "lock_dir", "DEFAULT_TTL"]

#: seconds a lock lasts unless renewed (an action longer than this renews it)
DEFAULT_TTL = 2 * 3600.0


def lock_dir() -> Path:
    """The host-wide lock directory (``$FLEET_CONSOLE_LOCKS`` or ``/var/tmp/fleet-console-locks``)."""
    return Path(os.environ.get("FLEET_CONSOLE_LOCKS") or "/var/tmp/fleet-console-locks")


@dataclass(frozen=True)
class LockInfo:
    """Who holds one node's lock."""

    node: str
    owner: str
    pid: int
    host: str
    created: float
    expires: float
    action: str = ""
    plan: str = ""
    token: str = ""  # which Locks object (run) in that process holds it

    def describe(self) -> str:
        """One line for the operator: ``locked by alice (pid 123 on host1, power cycle, until 14:02:11 UTC)``."""
        until = time.strftime("%H:%M:%S UTC", time.gmtime(self.expires))
        what = f", {self.action}" if self.action else ""
        return f"locked by {self.owner} (pid {self.pid} on {self.host}{what}, until {until})"

    def stale(self, now: float | None = None) -> str | None:
        """Why this lock no longer counts (expired / process gone), or None when it is live."""
        now = time.time() if now is None else now
        if self.expires <= now:
            return "expired"
        if self.host == socket.gethostname() and not _alive(self.pid):
            return f"process {self.pid} is gone"
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class Locks:
    """The locks of one site, as seen by one operator process.

    ``owner`` defaults to the journal's operator name; ``pid`` to this process.
    """

    def __init__(self, site: str, *, directory: Path | None = None, owner: str | None = None,
                 ttl: float = DEFAULT_TTL) -> None:
        if not site or "/" in site or site in (".", ".."):
            raise ValueError(f"not a site name: {site!r}")
        self.site = site
        self.base = Path(directory) if directory is not None else lock_dir()
        self.dir = self.base / site
        self.owner = owner or current_operator()
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.ttl = ttl
        #: tells apart two runs in one process (the TUI can run several actions at once)
        self.token = secrets.token_hex(8)
        self._mine: dict[str, LockInfo] = {}

    # ------------------------------------------------------------- queries
    def _path(self, node: str) -> Path:
        if not node or "/" in node or node.startswith("."):
            raise ValueError(f"not a node name: {node!r}")
        return self.dir / f"{node}.lock"

    def _read(self, node: str) -> LockInfo | None:
        try:
            data = json.loads(self._path(node).read_text())
            return LockInfo(**{k: data[k] for k in LockInfo.__dataclass_fields__ if k in data})
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError, OSError):
            # half-written or foreign junk: treat as held until it expires by age
            try:
                st = self._path(node).stat()
            except FileNotFoundError:
                return None
            return LockInfo(node, "unknown", 0, "?", st.st_mtime, st.st_mtime + self.ttl)

    def held_by(self, node: str) -> LockInfo | None:
        """The live lock on ``node`` held by someone else (another operator or process), else None."""
        info = self._read(node)
        if info is None or info.stale() is not None:
            return None
        if self._ours(info):
            return None
        return info

    def _ours(self, info: LockInfo) -> bool:
        return info.pid == self.pid and info.host == self.host and info.token == self.token

    def mine(self) -> list[str]:
        """Nodes this object holds locks on."""
        return sorted(self._mine)

    # ------------------------------------------------------------- changes
    def _ensure_dirs(self) -> None:
        if not self.base.exists():
            try:
                self.base.mkdir(parents=True, exist_ok=True)
                os.chmod(self.base, 0o1777)  # shared by every operator on the host, like /tmp
            except PermissionError:
                pass
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.dir.stat().st_uid == os.getuid():
                os.chmod(self.dir, 0o1777)
        except OSError:
            pass

    @contextmanager
    def _guard(self) -> Iterator[None]:
        self._ensure_dirs()
        path = self.dir / ".guard"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                if os.fstat(fd).st_uid == os.getuid():
                    os.fchmod(fd, 0o666)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def acquire(self, nodes: Iterable[str], *, action: str = "", plan: str = "",
                ttl: float | None = None) -> dict[str, LockInfo]:
        """Lock every node in ``nodes``, or none of them.

        Returns ``{}`` when all are now ours; otherwise ``{node: LockInfo}`` of the ones
        someone else holds (and nothing was locked).  Stale locks are reclaimed.
        """
        names = sorted(set(nodes))
        ttl = self.ttl if ttl is None else ttl
        with self._guard():
            held: dict[str, LockInfo] = {}
            stale: list[str] = []
            for n in names:
                info = self._read(n)
                if info is None:
                    continue
                if self._ours(info):
                    continue  # ours already: renewed below
                if info.stale() is None:
                    held[n] = info
                else:
                    stale.append(n)
            for n in stale:
                try:
                    self._path(n).unlink()
                except FileNotFoundError:
                    pass
                except PermissionError:  # another user's stale lock in the sticky directory
                    info = self._read(n)
                    if info is not None:
                        held[n] = LockInfo(n, info.owner, info.pid, info.host, info.created, info.expires,
                                           f"stale ({info.stale()}) but not removable by {self.owner}", info.plan,
                                           info.token)
            if held:
                return held
            now = time.time()
            created: list[str] = []
            try:
                for n in names:
                    info = LockInfo(n, self.owner, self.pid, self.host, now, now + ttl, action, plan, self.token)
                    mine = n in self._mine or self._read(n) is not None
                    self._write(n, info, exclusive=not mine)
                    created.append(n)
                    self._mine[n] = info
            except FileExistsError:  # impossible under the guard unless someone skipped it
                for n in created:
                    self._remove(n)
                raise
        return {}

    def _write(self, node: str, info: LockInfo, *, exclusive: bool) -> None:
        path = self._path(node)
        data = (json.dumps(asdict(info)) + "\n").encode()
        if exclusive:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        else:  # renewing our own lock: replace it atomically
            tmp = path.with_name(f".{node}.{self.pid}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not exclusive:
            os.replace(tmp, path)

    def renew(self, ttl: float | None = None) -> None:
        """Push the expiry of every lock we hold ``ttl`` seconds into the future."""
        ttl = self.ttl if ttl is None else ttl
        now = time.time()
        with self._guard():
            for n, info in list(self._mine.items()):
                on_disk = self._read(n)
                if on_disk is None or not self._ours(on_disk):
                    self._mine.pop(n)  # reclaimed by someone after it expired: no longer ours
                    continue
                new = LockInfo(n, info.owner, info.pid, info.host, info.created, now + ttl, info.action, info.plan,
                               info.token)
                self._write(n, new, exclusive=False)
                self._mine[n] = new

    def _remove(self, node: str) -> None:
        info = self._read(node)
        if info is not None and self._ours(info):
            try:
                self._path(node).unlink()
            except FileNotFoundError:
                pass
        self._mine.pop(node, None)

    def release(self, nodes: Iterable[str] | None = None) -> None:
        """Release our locks on ``nodes`` (all of ours when None); never touches anyone else's."""
        names = list(self._mine) if nodes is None else list(nodes)
        if not names:
            return
        try:
            with self._guard():
                for n in names:
                    self._remove(n)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                raise

    def __enter__(self) -> "Locks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

