"""Find a running lab: a state file in the runtime directory, checked to be alive.

``fleet-console --site demo lab`` writes ``lab-<site>.json`` (endpoints, the site
file it serves, its pid) and ``lab-<site>-<pid>-<n>/secrets.json`` (mode 0600) in
the private runtime directory (:func:`console.lab.lab.runtime_dir`).  Other
commands for that site read them, check the lab answers, and use it.  Both files
are opened without following symbolic links and must be ours (a state file names
a site file whose ``cmd:`` secrets we would run).  A stale state file (dead pid,
nothing listening) is removed, with its lab directory, and so are the directories
of labs of that site whose process is gone (a lab killed with SIGKILL).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any, Protocol

from console.errors import LabError
from console.lab.runtime import runtime_dir
from console.sitefile import check_site_file
from inventory.model import Site

__all__ = ["write_state", "read_state", "remove_state", "LabState"]

#: a state or secrets file larger than this is not one we wrote (a 10,000-node lab's is ~2 MB)
MAX_STATE_BYTES = 64 * 1024 * 1024


class LabState(dict):
    """A running lab's published state: site_file, endpoints, secrets_file, pid."""

    def secrets(self) -> dict[str, str]:
        """The lab's generated secrets (read from the 0600 file, which must be ours)."""
        text = _read_own_file(Path(self["secrets_file"]), "secrets file")
        if text is None:
            raise LabError(f"the lab's secrets file {self['secrets_file']} is gone (did the lab stop?)")
        return json.loads(text)


def _state_path(site: str) -> Path:
    return runtime_dir() / f"lab-{site}.json"


def _read_own_file(path: Path, what: str) -> str | None:
    """A file of ours, or None when there is none.

    Opened with O_NOFOLLOW and checked after opening (fstat): a regular file owned by
    us, not writable by group or others.  LabError otherwise, naming the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LabError(f"refusing the lab {what} {path}: it is a symbolic link; remove it") from None
        raise LabError(f"cannot read the lab {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LabError(f"refusing the lab {what} {path}: it is not a regular file; remove it")
        if st.st_uid != os.geteuid():
            raise LabError(f"refusing the lab {what} {path}: it is owned by uid {st.st_uid}, not by you "
                           f"(uid {os.geteuid()}); remove it")
        if st.st_mode & 0o022:
            raise LabError(f"refusing the lab {what} {path}: it is writable by group or others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}); remove it")
        data = f.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise LabError(f"refusing the lab {what} {path}: larger than {MAX_STATE_BYTES // 2**20} MB")
    return data.decode("utf-8", errors="replace")


def _atomic_write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PublishedLab(Protocol):
    """What :func:`write_state` publishes of a started :class:`~console.lab.lab.Lab`."""

    @property
    def site(self) -> Site: ...

    @property
    def lab_dir(self) -> Path: ...

    @property
    def secrets(self) -> dict[str, str]: ...

    @property
    def endpoints(self) -> dict[str, Any]: ...

    @property
    def time_scale(self) -> float: ...


def write_state(lab: PublishedLab, site_file: str) -> Path:
    """Publish a started lab for other commands."""
    secrets_file = lab.lab_dir / "secrets.json"
    _atomic_write(secrets_file, json.dumps(lab.secrets), 0o600)
    state = {
        "pid": os.getpid(),
        "site": lab.site.name,
        "site_file": site_file,
        "started": time.time(),
        "endpoints": lab.endpoints,
        "secrets_file": str(secrets_file),
        "time_scale": lab.time_scale,
    }
    path = _state_path(lab.site.name)
    _atomic_write(path, json.dumps(state, indent=1), 0o600)
    return path


#: the file beside a lab's secrets that holds the simulated hosts' login password
LOGIN_FILE = "login.password"


def write_login_file(lab: PublishedLab) -> Path:
    """Write the lab hosts' console/SSH login password to ``lab_dir/login.password`` (0600),
    so an operator can log in at a simulated console without the password reaching a screen."""
    path = lab.lab_dir / LOGIN_FILE
    _atomic_write(path, lab.secrets["ssh"] + "\n", 0o600)
    return path


def _alive(pid: int) -> bool:
    if pid <= 0:  # kill(0) and kill(-1) signal groups: never "alive"
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(url: str) -> bool:
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def _load(path: Path) -> LabState | None:
    text = _read_own_file(path, "state file")
    if text is None:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        return LabState()  # half-written or damaged: stale
    return LabState(state) if isinstance(state, dict) else LabState()


def _live(state: LabState) -> bool:
    try:
        workers = state.get("endpoints", {}).get("workers", [])
        return (_alive(int(state.get("pid", -1))) and all(_alive(int(w)) for w in workers)
                and _answers(state["endpoints"]["provisioner_url"]))
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


def read_state(site: str) -> LabState | None:
    """The running lab for ``site``, or None.

    A stale state file is removed with its lab directory, as are the directories
    left by labs of this site whose process is gone.  LabError when the runtime
    directory or a file in it is not ours.
    """
    path = _state_path(site)
    state = _load(path)
    if state is not None and _live(state):
        # the lab serves this site file and we will run its cmd: secrets: it must be trusted
        check_site_file(Path(state["site_file"]))
        return state
    if state is not None:
        _unlink(path)
        secrets_file = state.get("secrets_file")
        if isinstance(secrets_file, str):
            _remove_lab_dir(Path(secrets_file).parent, site)
    _remove_orphans(site)
    return None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _remove_lab_dir(path: Path, site: str) -> None:
    """Remove a lab's directory: only one of ours, directly in the runtime directory,
    named for this site; never through a symbolic link (rmtree works on descriptors)."""
    runtime = runtime_dir()
    if path.parent != runtime or not re.fullmatch(rf"lab-{re.escape(site)}-\d+-\d+", path.name):
        return
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return
    shutil.rmtree(path, ignore_errors=True)


def _remove_orphans(site: str) -> None:
    """Remove ``lab-<site>-<pid>-<n>/`` directories whose lab process is gone."""
    runtime = runtime_dir()
    pattern = re.compile(rf"lab-{re.escape(site)}-(\d+)-\d+")
    try:
        names = os.listdir(runtime)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        if m and not _alive(int(m.group(1))):
            _remove_lab_dir(runtime / name, site)


def remove_state(site: str, pid: int) -> None:
    """Remove the state file if it is ours."""
    path = _state_path(site)
    try:
        state = _load(path)
    except LabError:
        return
    if state is not None and state.get("pid") == pid:
        _unlink(path)
