"""Files in shared places that say what is run or who may act: only we or root may have written them.

:func:`check_chain` checks a file and every directory above it: each must be owned by
us or root, and none writable by group or others (a sticky directory, such as
``/tmp``, excepted for the directories).  A symbolic link is checked as itself and as
its target, so a link is followed only where both are equally safe.  The site file
(:mod:`console.sitefile`) and the site service's operators file
(:mod:`console.service.operators`) use it, each with its own words and errors.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_chain", "owner_words"]


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
