"""Files in shared places that say what is run or who may act: only we or root may have written them.

:func:`check_chain` checks a file and every directory above it: each must be owned by
us or root, and none writable by group or others (a sticky directory, such as
``/tmp``, excepted for the directories).  A symbolic link is checked as itself and as
its target, so a link is followed only where both are equally safe.  The site file
(:mod:`console.sitefile`) and the site service's operators file
(:mod:`console.service.operators`) use it, each with its own words and errors.

:func:`open_private_dir` and :func:`write_whole` are for what we keep ourselves (caches,
histories, keys, boot scripts): a 0700 directory of ours opened without following a link,
and a file in it (0600 unless others must read it) written whole (a new file, synced,
renamed over the old) or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_chain", "open_private_dir", "owner_words", "write_whole"]


def owner_words(uid: int) -> str:
    """``uid 1001 (bob)``, or ``uid 1001`` when the uid has no name."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_chain(given: Path, path: Path, *, what: str, why: str, untrusted: Callable[[str], Exception],
                unreadable: Callable[[str], Exception]) -> None:
    """Raise ``untrusted(message)`` unless ``path`` (the file) and each directory above it are
    ours or root's and not writable by others; ``unreadable(message)`` when one cannot be
    checked or the file is not a regular file.  ``what`` names the file (``site file``),
    ``given`` is how the operator named it, ``why`` says why it matters."""
    me = os.geteuid()
    for i, p in enumerate([path, *path.parents]):
        try:
            lst = os.lstat(p)
            st = os.stat(p) if stat.S_ISLNK(lst.st_mode) else lst
        except OSError as exc:
            raise unreadable(f"{what} {given}: cannot check {p}: {exc.strerror}") from None
        for s in (lst, st):  # a symbolic link someone else made, or its target
            if s.st_uid not in (0, me):
                raise untrusted(f"refusing {what} {given}: {p} is owned by {owner_words(s.st_uid)}, not by you or "
                                f"root ({why}); keep it where only you or root can write")
        if i == 0 and not stat.S_ISREG(st.st_mode):
            raise unreadable(f"{what} {given} is not a regular file")
        if st.st_mode & 0o022 and (i == 0 or not st.st_mode & stat.S_ISVTX):
            raise untrusted(f"refusing {what} {given}: {p} is writable by group or others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod go-w {p}")


def open_private_dir(path: Path, *, create: bool, refused: Callable[[str], Exception]) -> int | None:
    """``path`` as a directory descriptor, opened without following a symbolic link; None if
    it is missing and not ``create`` (which makes it, and the directories above it, 0700).
    ``refused(why)`` is raised for a link, a non-directory, or a directory not ours or open
    to group or others; other errors are raised as the OSError they are."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refused(f"{path} is a symbolic link or not a directory") from None
        raise
    st = os.fstat(dfd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(dfd)
        raise refused(f"{path} is not a 0700 directory of yours (owner uid {st.st_uid}, "
                      f"mode {stat.S_IMODE(st.st_mode):04o})")
    return dfd


def write_whole(dfd: int, name: str, data: bytes, *, mode: int = 0o600) -> None:
    """``data`` as the file ``name`` (``mode``, whatever the umask; 0600 unless others must
    read it) in the directory ``dfd``, whole or not at all: a new temporary file beside it
    (never through a link), synced, then renamed over it.  Raises OSError, the temporary
    file removed."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
