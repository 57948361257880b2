"""Find a site by name or path, load it, and (for simulated sites) bind it to its lab.

Search path for ``--site NAME``: each directory in ``$FLEET_CONSOLE_SITES``
(colon-separated), ``$XDG_CONFIG_HOME/fleet-console/sites/`` (``~/.config`` by
default), ``/etc/fleet-console/sites/``, then the sites shipped with fleet-console
(``demo``), then the site of a running lab by that name (``fleet-console lab --nodes
1000 --protocol ipmi`` serves ``lab-1000-ipmi``, generated in the runtime directory).
The current directory is never searched: the console runs as root on shared hosts,
and a site file names ``cmd:`` secrets it runs.  A value containing
``/`` or ending in ``.yaml`` / ``.yml`` is a path.

Whichever way it was found, a site file is used only when nobody but us and root
could have written it (OpenSSH's ``StrictModes``): the file and every directory
above it must be owned by us or root and not writable by group or others (a sticky
directory such as ``/tmp`` may be, its entries are then checked for their owner).
That check lives in :mod:`console.sitefile` (the lab's state reader needs it too)
and is re-exported here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from console.secrets import Secrets
from console.sitefile import BUILTIN_SITES, UntrustedSite, check_site_file
from inventory.errors import SiteNotFound
from inventory.loader import load_site
from inventory.model import Site

if TYPE_CHECKING:  # only named in annotations: a site without a lab never imports the lab
    from console.lab.lab import Lab
    from console.lab.state import LabState

__all__ = ["search_path", "find_site", "load", "check_site_file", "UntrustedSite", "SiteContext"]


def search_path() -> list[Path]:
    """Directories searched for ``NAME.yaml``, in order."""
    dirs = []
    for d in os.environ.get("FLEET_CONSOLE_SITES", "").split(":"):
        if d:
            dirs.append(Path(d).expanduser())
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    dirs.append(Path(xdg) / "fleet-console" / "sites")
    dirs.append(Path("/etc/fleet-console/sites"))
    dirs.append(BUILTIN_SITES)
    return dirs


def find_site(name_or_path: str) -> Path:
    """The file for a site name or path; SiteNotFound lists where it looked, UntrustedSite
    says which file or directory others could have written."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        p = Path(name_or_path).expanduser()
        if not p.is_file():
            raise SiteNotFound(f"site file {name_or_path} does not exist")
        check_site_file(p)
        return p
    for d in search_path():
        for ext in (".yaml", ".yml"):
            p = d / f"{name_or_path}{ext}"
            if p.is_file():
                check_site_file(p)
                return p
    running = _running_lab_site(name_or_path)
    if running is not None:
        return running
    looked = ", ".join(str(d) for d in search_path())
    hint = ""
    if re.fullmatch(r"lab-\d+-(ipmi|redfish|mixed)", name_or_path):
        nodes, protocol = name_or_path.split("-")[1:]
        hint = ("; a generated lab's site is found while it runs: "
                f"fleet-console lab --nodes {nodes} --protocol {protocol}")
    raise SiteNotFound(f"no site named {name_or_path!r} (looked in {looked}{hint})")


def _running_lab_site(name: str) -> Path | None:
    """The site file a running lab of site ``name`` serves (``fleet-console lab --nodes N``
    writes its generated site into the private runtime directory), or None."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        return None
    from console.lab.state import read_state  # the lab machinery only when a name was not found

    state = read_state(name)  # checks the state file and the site file it names
    return Path(state["site_file"]) if state is not None else None


def load(name_or_path: str) -> Site:
    """Find and validate a site (InventoryError / SiteNotFound on problems)."""
    return load_site(find_site(name_or_path))


@dataclass(frozen=True)
class SiteContext:
    """A loaded site plus what is needed to talk to it: what every action, command and
    screen is given.  ``lab`` is a lab this process started (stopped on exit),
    ``lab_state`` one another process runs; both None for a real site."""

    site: Site
    secrets: Secrets
    lab: Lab | None = None
    lab_state: LabState | None = None

    @property
    def lab_login_file(self) -> Path | None:
        """The file holding a simulated site's host login password (``login.password``, 0600,
        in the lab's directory), when this site is a lab and the file exists; else None."""
        if self.lab is not None:
            where = Path(self.lab.lab_dir)
        elif self.lab_state is not None:
            where = Path(self.lab_state["secrets_file"]).parent
        else:
            return None
        path = where / "login.password"
        return path if path.is_file() else None
