"""Find a running lab: a state file in the runtime directory, checked to be alive.

``fleet-console --site demo lab`` writes ``lab-<site>.json`` (endpoints, the site
file it serves, its pid) and ``lab-<site>/secrets.json`` (mode 0600).  Other
commands for that site read them, check the lab answers, and use it; a stale file
(dead pid, nothing listening) is ignored and removed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from console.lab.lab import Lab, runtime_dir

__all__ = ["write_state", "read_state", "remove_state", "LabState"]


class LabState(dict):
    """A running lab's published state: site_file, endpoints, secrets_file, pid."""

    def secrets(self) -> dict[str, str]:
        """The lab's generated secrets (read from the 0600 file)."""
        return json.loads(Path(self["secrets_file"]).read_text())


def _state_path(site: str) -> Path:
    return runtime_dir() / f"lab-{site}.json"


def _atomic_write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_state(lab: Lab, site_file: str) -> Path:
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


def _alive(pid: int) -> bool:
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


def read_state(site: str) -> LabState | None:
    """The running lab for ``site``, or None (a stale state file is removed)."""
    path = _state_path(site)
    try:
        state = LabState(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None
    workers = state.get("endpoints", {}).get("workers", [])
    if _alive(state.get("pid", -1)) and all(_alive(w) for w in workers) and _answers(state["endpoints"]["provisioner_url"]):
        return state
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return None


def remove_state(site: str, pid: int) -> None:
    """Remove the state file if it is ours."""
    path = _state_path(site)
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    if state.get("pid") == pid:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
