"""Operator locks: a node under an action by one operator is locked for everyone else on this host.

One lock file per node, ``<lock dir>/<site>/<node>.lock``, holding JSON: owner
(operator), pid, host, created and expires (unix seconds), action and plan id.
The lock directory is shared by every user of the host: ``$FLEET_CONSOLE_LOCKS``
or ``/var/tmp/fleet-console-locks`` (created world-writable with the sticky bit,
as ``/tmp``, so operators can lock but not delete each other's files).

A lock file is created with ``O_CREAT | O_EXCL`` (atomic: of two operators, one
wins).  Acquiring a *set* of nodes is all or nothing and happens under an
``flock`` on the site directory's ``.guard`` file, so checking, reclaiming and
creating are one step for every process on the host.  Waiting for that flock is
bounded (:data:`GUARD_WAIT`): past it :class:`LockBusy` names the guard and, when
``/proc/locks`` tells, the process holding it.  A lock stops counting when it has
expired, when its process is gone (same host, pid no longer alive), or when it
claims to last longer than :data:`MAX_TTL` from now (forged or broken); the next
acquirer reclaims it.  A stale lock another user owns cannot be deleted in a
sticky directory: it then still counts as held, and the message says why.

Root acts in this directory, and so can anyone else, so it is treated as OpenSSH
treats ``~/.ssh`` (``safe_path``):

- every directory above the lock directory must be owned by root or by us and not
  writable by others (unless sticky, as ``/var/tmp``);
- the lock directory and the site directory are opened with ``O_NOFOLLOW`` one
  level at a time (``dir_fd``) and must be owned by root or by us and not writable
  by others -- or be sticky shared directories (created ``1777``), where each
  file's owner is checked instead;
- every file in them is opened with ``O_NOFOLLOW`` relative to the site directory's
  descriptor (never by path), created with ``O_EXCL``, checked with ``fstat``, and
  ``fchmod`` is only ever applied to a file or directory this process just created;
- a lock's owner is the uid of its file, not only the name written in it: a file
  of bob's that says ``alice`` is described as ``bob (claims alice)``.  A root-owned
  file's name is taken as written (operators act as root through sudo).

Everything that goes wrong is a :class:`LockError` (a ``FleetError``), one line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import pwd
import secrets
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from console.errors import FleetError
from console.ops.journal import current_operator

__all__ = ["LockInfo", "Locks", "LockError", "LockBusy", "LockCancelled", "lock_dir",
           "DEFAULT_TTL", "MAX_TTL", "GUARD_WAIT"]

#: seconds a lock lasts unless renewed.  Short, because the lock follows its plan: the
#: runner renews it every ttl/3 while the plan runs and releases it at the end, so a lock
#: left by a console that hung or lost its host outlives it by at most this long
#: (a dead process on this host is reclaimed at once).
DEFAULT_TTL = 10 * 60.0
#: no lock may last longer than this from now; one that claims to is forged or broken
MAX_TTL = 24 * 3600.0
#: seconds to wait for another process's guard flock before giving up
GUARD_WAIT = 5.0

_SLACK = 300.0  # a writer's clock may run a little ahead of ours
_MAX_LOCK_BYTES = 64 * 1024  # a lock file is ~250 bytes; anything larger is junk
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO never hangs us
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class LockError(FleetError):
    """The lock directory is unsafe or unusable, or a lock cannot be taken, renewed or released."""

    title = "lock refused"


class LockBusy(LockError):
    """Another process held the site's guard flock for longer than we wait."""

    title = "lock busy"


class LockCancelled(LockError):
    """Waiting for the guard was given up because the caller was cancelled (nothing was locked)."""

    title = "cancelled"


def lock_dir() -> Path:
    """The host-wide lock directory (``$FLEET_CONSOLE_LOCKS`` or ``/var/tmp/fleet-console-locks``)."""
    return Path(os.environ.get("FLEET_CONSOLE_LOCKS") or "/var/tmp/fleet-console-locks")


def user_name(uid: int) -> str:
    """The login name of ``uid``, or ``uid N`` when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return f"uid {uid}"


def _clean(text: str, limit: int = 80) -> str:
    """A string read from a file, safe to show: control characters made visible (as ``cat -v``), cut short."""
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if code < 32:
            out.append("^" + chr(code + 64))
        elif code == 127:
            out.append("^?")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(text) > limit else "")


def _until(expires: float) -> str:
    try:
        return time.strftime("%H:%M:%S UTC", time.gmtime(expires))
    except (OverflowError, ValueError, OSError):
        return "a time beyond any calendar"


@dataclass(frozen=True)
class LockInfo:
    """Who holds one node's lock.

    ``owner`` is the name written in the file; ``uid`` the file's real owner (None
    for a lock not read from disk).  ``problem`` says why a stale lock still counts.
    """

    node: str
    owner: str
    pid: int
    host: str
    created: float
    expires: float
    action: str = ""
    plan: str = ""
    token: str = ""  # which Locks object (run) in that process holds it
    uid: int | None = field(default=None, compare=False)
    problem: str = field(default="", compare=False)
    ino: int = field(default=0, compare=False, repr=False)

    def who(self) -> str:
        """The holder: the name in the file, or ``bob (claims alice)`` when the file's owner is someone else."""
        claimed = _clean(self.owner, 64)
        if self.uid is None or self.uid == 0:
            return claimed  # root wrote it: operators act as root through sudo, the name is theirs
        real = user_name(self.uid)
        return claimed if real == self.owner else f"{real} (claims {claimed})"

    def describe(self) -> str:
        """One line for the operator: ``locked by alice (pid 123 on host1, power cycle, until 14:02:11 UTC)``."""
        what = f", {_clean(self.action)}" if self.action else ""
        text = f"locked by {self.who()} (pid {self.pid} on {_clean(self.host, 64)}{what}, until {_until(self.expires)})"
        return f"{text}; {self.problem}" if self.problem else text

    def stale(self, now: float | None = None) -> str | None:
        """Why this lock no longer counts (expired, forged, process gone), or None when it is live."""
        now = time.time() if now is None else now
        if self.expires <= now:
            return "expired"
        if self.expires > now + MAX_TTL + _SLACK:
            year = time.strftime("%Y", time.gmtime(min(self.expires, 2.5e11)))
            return f"its expiry (year {year}) is beyond the {MAX_TTL / 3600:g} h limit: forged or broken"
        if self.created > now + _SLACK:
            return "it was created in the future: forged or broken"
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
    except OverflowError:
        return False
    return True


def _os_problem(exc: OSError, where: str, dir_fd: int | None = None) -> LockError:
    """An OSError met opening ``where``, as one line (``dir_fd``: look at what is there, to say what it is)."""
    if exc.errno == errno.ENOTDIR and dir_fd is not None:  # O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR
        try:
            if stat.S_ISLNK(os.stat(os.path.basename(where), dir_fd=dir_fd, follow_symlinks=False).st_mode):
                exc = OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        except OSError:
            pass
    if exc.errno == errno.ELOOP:
        return LockError(f"{where} is a symbolic link: refusing to follow it (remove it, or ask root to)")
    if exc.errno == errno.ENOTDIR:
        return LockError(f"{where} is not a directory")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return LockError(f"cannot use {where}: permission denied")
    return LockError(f"cannot use {where}: {exc.strerror or exc}")


def _check_ancestor(st: os.stat_result, where: str) -> None:
    """A directory above the lock directory: root's or ours, and nobody else may rename what is in it."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        trusted = "root" if me == 0 else f"root or {user_name(me)}"
        raise LockError(f"unsafe lock directory: {where} is owned by {user_name(st.st_uid)}, not by {trusted}")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise LockError(f"unsafe lock directory: {where} is writable by others and not sticky "
                        f"(mode {stat.S_IMODE(st.st_mode):04o})")


def _check_lock_dir(st: os.stat_result, where: str) -> None:
    """The lock directory or a site directory: private (root's or ours) or a sticky shared one."""
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"{where} is not a directory")
    if st.st_mode & stat.S_ISVTX and st.st_uid in (0, os.geteuid()):
        return  # shared like /tmp: nobody can rename or delete what is not theirs; files are checked one by one
    # a sticky directory protects files from everyone but its owner: one owned by another
    # user (who made it first) lets that user delete every operator's locks
    _check_ancestor(st, where)


def _removable(dir_st: os.stat_result, file_uid: int | None) -> bool:
    """Can we delete a file owned by ``file_uid`` from this directory (sticky rules)?"""
    me = os.geteuid()
    if me == 0:
        return True
    if dir_st.st_mode & stat.S_ISVTX and file_uid != me and dir_st.st_uid != me:
        return False
    return True


def _guard_holders(st: os.stat_result) -> list[int]:
    """Pids holding an flock on the file ``st`` describes, from ``/proc/locks`` (empty when it cannot tell)."""
    try:
        with open("/proc/locks", "rb") as f:
            text = f.read(1 << 20).decode("ascii", "replace")
    except OSError:
        return []
    exact: list[int] = []
    same_inode: list[int] = []
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; a waiter's line has "->" after the number
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        try:
            pid = int(parts[4])
            major, minor, ino = parts[5].split(":")
            if int(ino) != st.st_ino or pid <= 0:
                continue
            dev = (int(major, 16), int(minor, 16))
        except ValueError:
            continue
        (exact if dev == (os.major(st.st_dev), os.minor(st.st_dev)) else same_inode).append(pid)
    return sorted(set(exact or same_inode))  # overlay filesystems show the lower device


def _process(pid: int) -> str:
    """``pid 1234 (python3, user bob)``, as far as /proc tells."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            comm = _clean(f.read(64).decode("utf-8", "replace").strip(), 32)
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({comm}, user {user_name(uid)})"


class Locks:
    """The locks of one site, as seen by one operator process.

    ``owner`` defaults to the journal's operator name; ``pid`` to this process.
    ``ttl`` (capped at :data:`MAX_TTL`) is how long a lock lasts unless renewed;
    ``wait`` how long to wait for another process's guard flock.
    """

    def __init__(self, site: str, *, directory: Path | None = None, owner: str | None = None,
                 ttl: float = DEFAULT_TTL, wait: float = GUARD_WAIT) -> None:
        if not site or "/" in site or "\0" in site or site in (".", ".."):
            raise ValueError(f"not a site name: {site!r}")
        self.site = site
        self.base = Path(os.path.abspath(Path(directory) if directory is not None else lock_dir()))
        self.dir = self.base / site
        self.owner = owner or current_operator()
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.ttl = self._ttl(ttl)
        self.wait = max(0.0, float(wait))
        #: tells apart two runs in one process (the TUI can run several actions at once)
        self.token = secrets.token_hex(8)
        self._mine: dict[str, LockInfo] = {}

    @staticmethod
    def _ttl(ttl: float) -> float:
        if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"a lock's ttl must be a positive number of seconds, got {ttl!r}")
        return min(float(ttl), MAX_TTL)

    # ------------------------------------------------------------- directories
    @staticmethod
    def _name(node: str) -> str:
        if not node or "/" in node or "\0" in node or node.startswith(".") or len(node) > 200:
            raise ValueError(f"not a node name: {node!r}")
        return f"{node}.lock"

    def _path(self, node: str) -> Path:
        return self.dir / self._name(node)

    def _open_base_parent(self, create: bool) -> int | None:
        """The lock directory's parent, opened, with every directory from it up to ``/`` checked."""
        parent = os.path.dirname(str(self.base))
        if not os.path.basename(str(self.base)):
            raise LockError(f"not a lock directory: {self.base}")
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.makedirs(parent, 0o755, exist_ok=True)
                fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise _os_problem(exc, parent) from exc
        except OSError as exc:
            raise _os_problem(exc, parent) from exc
        try:
            self._check_ancestors(fd, os.path.realpath(parent))
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _check_ancestors(fd: int, where: str) -> None:
        """Walk ``..`` from ``fd`` up to the root, checking each directory (the real ones, past any symlink)."""
        cur = os.dup(fd)
        try:
            while True:
                st = os.fstat(cur)
                _check_ancestor(st, where)
                up = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cur)
                ust = os.fstat(up)
                os.close(cur)
                cur = up
                if (ust.st_dev, ust.st_ino) == (st.st_dev, st.st_ino):
                    return  # the root is its own parent
                where = os.path.dirname(where) or "/"
        finally:
            os.close(cur)

    @staticmethod
    def _open_dir(parent_fd: int, name: str, where: str, *, create: bool) -> int | None:
        """``name`` under ``parent_fd``: never through a symlink, created ``1777`` when missing, then checked."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                return None
            made = True
            try:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            except FileExistsError:
                made = False  # another operator was first: check theirs
            except OSError as exc:
                raise _os_problem(exc, where) from exc
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except OSError as exc:
                raise _os_problem(exc, where, parent_fd) from exc
            if made and os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o1777)  # ours, just made: shared by every operator on the host, like /tmp
        except OSError as exc:
            raise _os_problem(exc, where, parent_fd) from exc
        try:
            _check_lock_dir(os.fstat(fd), where)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _site_fd(self, *, create: bool) -> int | None:
        """The site's lock directory, opened and checked (None when it does not exist and ``create`` is false)."""
        parent = self._open_base_parent(create)
        if parent is None:
            return None
        try:
            base = self._open_dir(parent, self.base.name, str(self.base), create=create)
        finally:
            os.close(parent)
        if base is None:
            return None
        try:
            return self._open_dir(base, self.site, str(self.dir), create=create)
        finally:
            os.close(base)

    @contextmanager
    def _site(self, *, create: bool = True) -> Iterator[int | None]:
        fd = self._site_fd(create=create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    # ------------------------------------------------------------- the guard
    def _open_guard(self, dfd: int) -> int:
        where = str(self.dir / ".guard")
        for _ in range(5):
            made = False
            try:
                fd = os.open(".guard", _READ_FLAGS, dir_fd=dfd)
            except FileNotFoundError:
                try:  # read-only is enough for flock, and nothing is ever written to it
                    fd = os.open(".guard", os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o644, dir_fd=dfd)
                    made = True
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise _os_problem(exc, where) from exc
            except OSError as exc:
                raise _os_problem(exc, where) from exc
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                os.close(fd)
                kind = "not a regular file" if not stat.S_ISREG(st.st_mode) else "a hard link to another file"
                raise LockError(f"{where} is {kind} (owned by {user_name(st.st_uid)}): refusing it")
            if made:
                os.fchmod(fd, 0o644)  # ours, just made: every operator must be able to open it, whatever our umask
            return fd
        raise LockError(f"{where} keeps appearing and disappearing: is another program playing with it?")

    @contextmanager
    def _guard(self, dfd: int, wait: float | None = None,
               stop: Callable[[], bool] | None = None) -> Iterator[None]:
        """The site's guard flock, waited for at most ``wait`` seconds, or until ``stop()`` says so.

        It polls (non-blocking attempts), so the wait is bounded, signals are handled
        meanwhile, and a cancelled caller stops waiting at the next attempt.
        """
        wait = self.wait if wait is None else wait
        fd = self._open_guard(dfd)
        try:
            deadline = time.monotonic() + wait
            pause = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if stop is not None and stop():
                        raise LockCancelled(f"stopped waiting for {self.dir / '.guard'}: cancelled") from None
                    if time.monotonic() >= deadline:
                        raise LockBusy(self._busy(fd, wait)) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.1)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _busy(self, fd: int, wait: float) -> str:
        holders = _guard_holders(os.fstat(fd))
        others = [p for p in holders if p != os.getpid()]
        if others:
            by = f" by {', '.join(_process(p) for p in others[:3])}"
        else:
            by = " by this process (another action in it)" if holders else " by another process"
        return (f"{self.dir / '.guard'} is held{by} for more than {wait:g} s: no node was locked "
                f"(try again; if it stays held, that process is stuck)")

    # ------------------------------------------------------------- reading
    def _junk(self, node: str, st: os.stat_result) -> LockInfo:
        # half-written, foreign or hostile: held until it expires by age, owned by whoever owns the file
        return LockInfo(node, user_name(st.st_uid), 0, "?", st.st_mtime, st.st_mtime + self.ttl,
                        "unreadable lock file", uid=st.st_uid, ino=st.st_ino)

    def _read(self, dfd: int, node: str) -> LockInfo | None:
        name = self._name(node)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError:  # a symlink, unreadable, ...: judged by its own inode, never followed
            try:
                return self._junk(node, os.stat(name, dir_fd=dfd, follow_symlinks=False))
            except FileNotFoundError:
                return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return self._junk(node, st)
            chunks, size = [], 0
            while size <= _MAX_LOCK_BYTES:
                chunk = os.read(fd, _MAX_LOCK_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError:
            return self._junk(node, st)
        finally:
            os.close(fd)
        if size > _MAX_LOCK_BYTES:
            return self._junk(node, st)
        info = _parse(node, b"".join(chunks), st)
        return info if info is not None else self._junk(node, st)

    def _ours(self, info: LockInfo) -> bool:
        return (info.pid == self.pid and info.host == self.host and info.token == self.token
                and info.uid in (None, os.geteuid()))

    def _counts(self, info: LockInfo, dir_st: os.stat_result, now: float) -> LockInfo | None:
        """``info`` when it holds the node against us (live, or stale but not ours to remove), else None."""
        if self._ours(info):
            return None
        why = info.stale(now)
        if why is None:
            return info
        if _removable(dir_st, info.uid):
            return None
        return self._unremovable(info, why)

    def _unremovable(self, info: LockInfo, why: str) -> LockInfo:
        owner = user_name(info.uid) if info.uid is not None else "its owner"
        return replace(info, problem=f"stale ({why}), but not removable by {user_name(os.geteuid())}: only {owner} "
                                     f"or root can delete {self._path(info.node)}")

    def held(self, nodes: Iterable[str]) -> dict[str, LockInfo]:
        """``{node: LockInfo}`` of the nodes in ``nodes`` that someone else holds (one directory walk for all)."""
        names = sorted(set(nodes))
        for n in names:
            self._name(n)
        with self._site(create=False) as dfd:
            if dfd is None:
                return {}
            dir_st = os.fstat(dfd)
            now = time.time()
            out: dict[str, LockInfo] = {}
            for n in names:
                info = self._read(dfd, n)
                counted = self._counts(info, dir_st, now) if info is not None else None
                if counted is not None:
                    out[n] = counted
            return out

    def held_by(self, node: str) -> LockInfo | None:
        """The live lock on ``node`` held by someone else (another operator or process), else None."""
        return self.held([node]).get(node)

    def mine(self) -> list[str]:
        """Nodes this object holds locks on."""
        return sorted(self._mine)

    # ------------------------------------------------------------- changes
    def _unlink(self, dfd: int, node: str, ino: int) -> None:
        """Delete ``node``'s lock file if it is still the file we read (inode ``ino``)."""
        name = self._name(node)
        try:
            if os.stat(name, dir_fd=dfd, follow_symlinks=False).st_ino == ino:
                os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass

    def _create(self, dfd: int, info: LockInfo) -> None:
        name = self._name(info.node)
        fd = os.open(name, _CREATE_FLAGS, 0o644, dir_fd=dfd)
        try:
            os.fchmod(fd, 0o644)  # ours, just made: readable by the other operators, whatever our umask
            _write_all(fd, _encode(info))
        except BaseException:
            os.close(fd)
            os.unlink(name, dir_fd=dfd)
            raise
        os.close(fd)

    def _replace(self, dfd: int, info: LockInfo) -> None:
        """Replace our own lock file atomically: a fresh temp file (O_EXCL, never a symlink), then rename."""
        tmp = f".{info.node}.{self.pid}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, _CREATE_FLAGS, 0o644, dir_fd=dfd)
        try:
            try:
                os.fchmod(fd, 0o644)
                _write_all(fd, _encode(info))
            finally:
                os.close(fd)
            os.replace(tmp, self._name(info.node), src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            raise

    def acquire(self, nodes: Iterable[str], *, action: str = "", plan: str = "", ttl: float | None = None,
                stop: Callable[[], bool] | None = None) -> dict[str, LockInfo]:
        """Lock every node in ``nodes``, or none of them.

        Returns ``{}`` when all are now ours; otherwise ``{node: LockInfo}`` of the ones
        someone else holds (and nothing was locked).  Stale locks are reclaimed.  Raises
        :class:`LockError` when the directory is unsafe, :class:`LockBusy` when the guard
        stays held past ``wait``, :class:`LockCancelled` when ``stop()`` turns true meanwhile.
        Blocking (up to ``wait``): call it from a thread in async code.
        """
        names = sorted(set(nodes))
        for n in names:
            self._name(n)
        ttl = self.ttl if ttl is None else self._ttl(ttl)
        with self._site(create=True) as dfd:
            assert dfd is not None  # create=True makes the directory or raises
            with self._guard(dfd, stop=stop):
                try:
                    return self._acquire(dfd, names, action, plan, ttl)
                except OSError as exc:
                    raise _os_problem(exc, str(self.dir)) from exc

    def _acquire(self, dfd: int, names: list[str], action: str, plan: str, ttl: float) -> dict[str, LockInfo]:
        now = time.time()
        held: dict[str, LockInfo] = {}
        stale: list[LockInfo] = []
        present: set[str] = set()
        for n in names:
            info = self._read(dfd, n)
            if info is None:
                continue
            present.add(n)
            if self._ours(info):
                continue  # ours already: renewed below
            if info.stale(now) is None:
                held[n] = info
            else:
                stale.append(info)
        for info in stale:
            try:
                self._unlink(dfd, info.node, info.ino)
                present.discard(info.node)
            except PermissionError:  # another user's stale lock in the sticky directory
                held[info.node] = self._unremovable(info, info.stale(now) or "stale")
        if held:
            return held
        created: list[str] = []
        try:
            for n in names:
                info = LockInfo(n, self.owner, self.pid, self.host, now, now + ttl, action, plan, self.token)
                if n in present:
                    self._replace(dfd, info)
                else:
                    self._create(dfd, info)
                    created.append(n)
                self._mine[n] = info
        except FileExistsError:  # someone wrote a lock without taking the guard: undo, report it
            for n in created:
                self._remove(dfd, n)
            other = self._read(dfd, n)
            return {n: other or LockInfo(n, "unknown", 0, "?", now, now + ttl)}
        return {}

    def renew(self, ttl: float | None = None) -> None:
        """Push the expiry of every lock we hold ``ttl`` seconds (at most :data:`MAX_TTL`) into the future."""
        ttl = self.ttl if ttl is None else self._ttl(ttl)
        if not self._mine:
            return
        with self._site(create=False) as dfd:
            if dfd is None:
                self._mine.clear()  # the directory is gone, and our locks with it
                return
            with self._guard(dfd):
                now = time.time()
                for n, info in list(self._mine.items()):
                    on_disk = self._read(dfd, n)
                    if on_disk is None or not self._ours(on_disk):
                        self._mine.pop(n)  # reclaimed by someone after it expired: no longer ours
                        continue
                    new = replace(info, expires=now + ttl)
                    try:
                        self._replace(dfd, new)
                    except OSError as exc:
                        raise _os_problem(exc, str(self._path(n))) from exc
                    self._mine[n] = new

    def _remove(self, dfd: int, node: str) -> None:
        info = self._read(dfd, node)
        if info is not None and self._ours(info):
            self._unlink(dfd, node, info.ino)
        self._mine.pop(node, None)

    def release(self, nodes: Iterable[str] | None = None) -> None:
        """Release our locks on ``nodes`` (all of ours when None); never touches anyone else's.

        When the guard stays held, our own files are removed without it: each is checked
        to be ours, and removed only if it is still that file.
        """
        names = list(self._mine) if nodes is None else list(nodes)
        if not names:
            return
        with self._site(create=False) as dfd:
            if dfd is None:
                for n in names:
                    self._mine.pop(n, None)
                return
            try:
                with self._guard(dfd):
                    self._release(dfd, names)
            except LockBusy:
                self._release(dfd, names)

    def _release(self, dfd: int, names: list[str]) -> None:
        for n in names:
            try:
                self._remove(dfd, n)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM):
                    raise _os_problem(exc, str(self._path(n))) from exc
                self._mine.pop(n, None)

    def __enter__(self) -> Locks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _encode(info: LockInfo) -> bytes:
    data = asdict(info)
    for private in ("uid", "problem", "ino"):  # facts about the file, not claims in it
        data.pop(private)
    return (json.dumps(data) + "\n").encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value  # NaN never compares; infinity is judged (forged)


def _parse(node: str, raw: bytes, st: os.stat_result) -> LockInfo | None:
    """A lock file's JSON as a LockInfo owned by the file's uid, or None when it is not a lock."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    created, expires = _number(data.get("created")), _number(data.get("expires"))
    pid = data.get("pid")
    texts = {k: data.get(k, "") for k in ("owner", "host", "action", "plan", "token")}
    if created is None or expires is None or not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if not all(isinstance(v, str) for v in texts.values()) or not texts["owner"]:
        return None
    return LockInfo(node, texts["owner"], pid, texts["host"], created, expires, texts["action"], texts["plan"],
                    texts["token"], uid=st.st_uid, ino=st.st_ino)
