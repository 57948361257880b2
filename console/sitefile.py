"""Is a site file safe to use?  Only when nobody but us and root could have written it.

This is OpenSSH's ``StrictModes`` for site files: the file and every directory above
it must be owned by us or root and not writable by group or others (a sticky
directory such as ``/tmp`` may be, its entries are then checked for their owner).
A site file names ``cmd:`` secrets that are run, so a file someone else could have
written is refused with :class:`UntrustedSite`.

Both :mod:`console.site` (finding a site) and :mod:`console.lab.state` (the site file
a running lab serves) check here; :mod:`console.site` re-exports both names.
"""

from __future__ import annotations

import os
from pathlib import Path

import inventory
from console.trust import check_chain
from inventory.errors import SiteNotFound

__all__ = ["BUILTIN_SITES", "UntrustedSite", "check_site_file"]

#: the sites shipped with fleet-console: as trusted as its code
BUILTIN_SITES = Path(inventory.__file__).parent / "sites"


class UntrustedSite(SiteNotFound):
    """A site file was found but someone other than us or root could have written it."""

    title = "untrusted site file"


def _check_chain(site_file: Path, path: Path) -> None:
    """Check ``path`` (the file) and each directory above it; UntrustedSite names the culprit."""
    check_chain(site_file, path, what="site file", why="a site file names commands that are run",
                untrusted=UntrustedSite, unreadable=SiteNotFound)


def check_site_file(path: Path) -> None:
    """UntrustedSite unless only we or root could have written the site file ``path``.

    Both the path as given (made absolute) and the file it resolves to are checked, so a
    symbolic link is followed only where the link and its target are equally safe.  The
    sites shipped with fleet-console are as trusted as its code.
    """
    absolute = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    if real == absolute and real.parent == Path(os.path.realpath(BUILTIN_SITES)):
        return
    _check_chain(path, absolute)
    if real != absolute:
        _check_chain(path, real)
