"""The private runtime directory where labs publish their state (:mod:`console.lab.state`)
and generated sites (:mod:`console.lab.scale`) are written.

Below both :mod:`console.lab.lab` and :mod:`console.lab.state`, so each imports it and
neither imports the other's module for it.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Mapping
from pathlib import Path

from console.errors import LabError

__all__ = ["runtime_dir"]


def runtime_dir(*, environ: Mapping[str, str] | None = None, fallback_base: str | Path = "/tmp") -> Path:
    """``$XDG_RUNTIME_DIR/fleet-console``, else ``/tmp/fleet-console-<uid>``: a private directory.

    It is created mode 0700 if missing; an existing one must be a real directory (not a
    symbolic link) owned by us with no group or other permission bits, as ssh demands of
    ``~/.ssh``: lab state files read from here point at site files whose ``cmd:`` secrets
    we run, so a directory someone else planted is refused (LabError says why and how
    to fix it).  ``environ`` and ``fallback_base`` are for tests.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_RUNTIME_DIR")
    if base:
        parent = Path(base)
        if not parent.exists():
            os.makedirs(parent, mode=0o700, exist_ok=True)
        path = parent / "fleet-console"
    else:
        parent = Path(fallback_base)
        path = parent / f"fleet-console-{os.geteuid()}"
    _check_parent(parent, path)
    try:
        os.mkdir(path, 0o700)  # never follows a symlink planted at ``path``: EEXIST
    except FileExistsError:
        pass
    except OSError as exc:
        raise LabError(f"cannot create the runtime directory {path}: {exc.strerror}") from None
    _check_private_dir(path)
    return path


def _owner(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _check_private_dir(path: Path) -> None:
    """LabError unless ``path`` is a real directory of ours, mode 0700 or stricter."""
    fix = f"remove it (rm -rf {path}) or set XDG_RUNTIME_DIR to a private directory"
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise LabError(f"cannot use the runtime directory {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise LabError(f"refusing the runtime directory {path}: it is a symbolic link; {fix}")
    if not stat.S_ISDIR(st.st_mode):
        raise LabError(f"refusing the runtime directory {path}: it is not a directory; {fix}")
    if st.st_uid != os.geteuid():
        raise LabError(f"refusing the runtime directory {path}: it is owned by {_owner(st.st_uid)}, "
                       f"not by you ({_owner(os.geteuid())}); {fix}")
    if st.st_mode & 0o077:
        raise LabError(f"refusing the runtime directory {path}: its mode is {stat.S_IMODE(st.st_mode):04o}, "
                       f"open to group or others; run: chmod 700 {path}")


def _check_parent(parent: Path, path: Path) -> None:
    """LabError unless others cannot swap ``path`` out of ``parent`` (ours or root's, or sticky)."""
    try:
        st = os.stat(parent)
    except OSError as exc:
        raise LabError(f"cannot use the runtime directory {path}: {parent}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LabError(f"cannot use the runtime directory {path}: {parent} is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise LabError(f"refusing the runtime directory {path}: {parent} is owned by {_owner(st.st_uid)}; "
                       f"set XDG_RUNTIME_DIR to a directory of yours")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise LabError(f"refusing the runtime directory {path}: {parent} is writable by group or others "
                       f"(mode {stat.S_IMODE(st.st_mode):04o}) and not sticky; set XDG_RUNTIME_DIR "
                       f"to a private directory")
