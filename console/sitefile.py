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
import pwd
import stat
from pathlib import Path

import inventory
from inventory.errors import SiteNotFound

__all__ = ["BUILTIN_SITES", "UntrustedSite", "check_site_file"]

#: the sites shipped with fleet-console: as trusted as its code
BUILTIN_SITES = Path(inventory.__file__).parent / "sites"


class UntrustedSite(SiteNotFound):
    """A site file was found but someone other than us or root could have written it."""

    title = "untrusted site file"


def _who(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _check_chain(site_file: Path, path: Path) -> None:
    """Check ``path`` (the file) and each directory above it; UntrustedSite names the culprit."""
    me = os.geteuid()
    for i, p in enumerate([path, *path.parents]):
        try:
            lst = os.lstat(p)
            st = os.stat(p) if stat.S_ISLNK(lst.st_mode) else lst
        except OSError as exc:
            raise SiteNotFound(f"site file {site_file}: cannot check {p}: {exc.strerror}") from None
        for s in (lst, st):  # a symbolic link someone else made, or its target
            if s.st_uid not in (0, me):
                raise UntrustedSite(
                    f"refusing site file {site_file}: {p} is owned by {_who(s.st_uid)}, not by you or root "
                    f"(a site file names commands that are run); keep site files where only you or root can write")
        if i == 0 and not stat.S_ISREG(st.st_mode):
            raise SiteNotFound(f"site file {site_file} is not a regular file")
        writable = st.st_mode & 0o022
        if writable and (i == 0 or not st.st_mode & stat.S_ISVTX):
            raise UntrustedSite(
                f"refusing site file {site_file}: {p} is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod go-w {p}")


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
