"""Find a site by name or path, load it, and (for simulated sites) bind it to its lab.

Search path for ``--site NAME``: ``./sites/``, each directory in
``$FLEET_CONSOLE_SITES`` (colon-separated), ``$XDG_CONFIG_HOME/fleet-console/sites/``
(``~/.config`` by default), ``/etc/fleet-console/sites/``, then the sites shipped
with fleet-console (``demo``).  A value containing ``/`` or ending in ``.yaml`` /
``.yml`` is a path.
"""

from __future__ import annotations

import os
from pathlib import Path

import inventory
from inventory.errors import SiteNotFound
from inventory.loader import load_site
from inventory.model import Site

__all__ = ["search_path", "find_site", "load"]

BUILTIN_SITES = Path(inventory.__file__).parent / "sites"


def search_path() -> list[Path]:
    """Directories searched for ``NAME.yaml``, in order."""
    dirs = [Path.cwd() / "sites"]
    for d in os.environ.get("FLEET_CONSOLE_SITES", "").split(":"):
        if d:
            dirs.append(Path(d).expanduser())
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    dirs.append(Path(xdg) / "fleet-console" / "sites")
    dirs.append(Path("/etc/fleet-console/sites"))
    dirs.append(BUILTIN_SITES)
    return dirs


def find_site(name_or_path: str) -> Path:
    """The file for a site name or path; SiteNotFound lists where it looked."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        p = Path(name_or_path).expanduser()
        if not p.is_file():
            raise SiteNotFound(f"site file {name_or_path} does not exist")
        return p
    for d in search_path():
        for ext in (".yaml", ".yml"):
            p = d / f"{name_or_path}{ext}"
            if p.is_file():
                return p
    looked = ", ".join(str(d) for d in search_path())
    raise SiteNotFound(f"no site named {name_or_path!r} (looked in {looked})")


def load(name_or_path: str) -> Site:
    """Find and validate a site (InventoryError / SiteNotFound on problems)."""
    return load_site(find_site(name_or_path))
