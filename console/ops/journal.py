"""The activity journal: every action step on the fleet, append-only, one JSON line each.

One file per site: ``$XDG_STATE_HOME/fleet-console/<site>/journal.jsonl``
(``~/.local/state`` when ``XDG_STATE_HOME`` is unset), mode 0600.  Each entry is
written with a single ``write(2)`` on an ``O_APPEND`` descriptor and ``fsync``-ed
before :meth:`Journal.write` returns, so a crash loses at most the entry being
written, and a reader skips that one torn last line and reads the rest.

Entry keys (every entry has all of them; unused ones are ``null``):

``time``      ISO 8601 UTC with milliseconds, e.g. ``2026-11-27T02:10:03.120Z``
``operator``  who acted: ``$FLEET_OPERATOR`` when set (the SSH gateway sets it to
              the authenticated identity), else the login name; control characters
              in it are written visibly (``^[``), see :func:`console.text.visible`
``action``    e.g. ``power on``, ``pxe``, ``reimage flatcar@4081.2.1``
``node``      node name (``null`` for whole-plan entries)
``step``      e.g. ``plan``, ``power-on``, ``verify-power``, ``installing``
``result``    ``started``, ``ok``, ``failed``, ``skipped`` or ``cancelled``
``error``     why a step failed or was skipped
``ticket``    the operator's ticket reference (``--ticket INC-123``)
``plan``      an id shared by every entry of one run
``detail``    free text (blast radius, a phase's detail)

Never a secret: only these keys exist, values are short strings written by the
action engine, and error texts come from drivers, which never include passwords.
Lines are pure ASCII (JSON ``\\uXXXX`` escapes for the rest): an error text a BMC
sent with a control character in it cannot reach the terminal of whoever runs
``tail -f`` on the journal.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import json
import os
import threading
from pathlib import Path
from typing import Any

from console.text import visible

__all__ = ["Journal", "read_entries", "journal_path", "state_dir", "current_operator", "RESULTS", "KEYS"]

#: the keys of every entry, in the order they are written
KEYS = ("time", "operator", "action", "node", "step", "result", "error", "ticket", "plan", "detail")
#: the values ``result`` takes
RESULTS = ("started", "ok", "failed", "skipped", "cancelled")
#: longest value kept for a free-text field (a runaway error text must not bloat the journal)
_MAX_TEXT = 2000


def state_dir() -> Path:
    """``$XDG_STATE_HOME/fleet-console`` (``~/.local/state/fleet-console`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fleet-console"


def journal_path(site: str) -> Path:
    """Where the journal of ``site`` lives."""
    if not site or "/" in site or site in (".", ".."):
        raise ValueError(f"not a site name: {site!r}")
    return state_dir() / site / "journal.jsonl"


def current_operator() -> str:
    """``$FLEET_OPERATOR`` if set, else the login name (``unknown`` if there is none).

    Control characters in it are made visible (``^[``): the name comes from the
    environment and is shown on every screen and journal entry."""
    who = os.environ.get("FLEET_OPERATOR")
    if who:
        return visible(who)
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no LOGNAME: still journal, say so
        return "unknown"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal:
    """Appends entries to one site's journal (thread-safe; safe across processes).

    ``operator`` defaults to :func:`current_operator`; ``defaults`` are fields
    every entry of this writer carries unless given (e.g. ``plan`` and ``ticket``).
    """

    def __init__(self, site: str, *, operator: str | None = None, path: Path | None = None,
                 **defaults: Any) -> None:
        unknown = set(defaults) - set(KEYS)
        if unknown:
            raise TypeError(f"unknown journal field(s): {', '.join(sorted(unknown))}")
        self.site = site
        self.path = Path(path) if path is not None else journal_path(site)
        self.operator = operator or current_operator()
        self.defaults = defaults
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> dict[str, Any]:
        """Append one entry and fsync it; returns the entry as written.

        Unknown keys are a programming error (TypeError): the journal holds only the
        documented keys, so nothing else (a password, a token) can slip in.
        """
        unknown = set(fields) - set(KEYS)
        if unknown:
            raise TypeError(f"unknown journal field(s): {', '.join(sorted(unknown))}")
        result = fields.get("result")
        if result is not None and result not in RESULTS:
            raise ValueError(f"journal result must be one of {', '.join(RESULTS)}, not {result!r}")
        entry: dict[str, Any] = {}
        for key in KEYS:
            value = fields.get(key, self.defaults.get(key))
            if key == "time" and value is None:
                value = _now()
            elif key == "operator" and value is None:
                value = self.operator
            if value is not None and not isinstance(value, str):
                value = str(value)
            if isinstance(value, str) and len(value) > _MAX_TEXT:
                value = value[:_MAX_TEXT] + "..."
            entry[key] = value
        line = (json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # writers of other processes wait; closing releases it
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a crash tore the last line: do not glue ours onto it
                view = memoryview(line)
                while view:  # one write(2) in practice; loop only for a partial write
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry


def read_entries(site: str, *, node: str | None = None, limit: int = 50,
                 path: Path | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` entries of a site's journal, **oldest first (newest last)**.

    ``node`` keeps only that node's entries.  Lines that do not parse (the torn
    last line a crash mid-write leaves behind) are skipped; the rest is returned.
    A missing journal is an empty list.  ``limit`` <= 0 means every entry.  The
    file is read backwards in blocks, so the last entries of a long journal are cheap.
    """
    p = Path(path) if path is not None else journal_path(site)
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    with f:
        for line in _lines_backwards(f):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(entry, dict):
                continue
            if node is not None and entry.get("node") != node:
                continue
            out.append(entry)
            if 0 < limit <= len(out):
                break
    out.reverse()
    return out


def _lines_backwards(f, block: int = 64 * 1024):
    """The lines of a binary file, last first (without their newlines)."""
    f.seek(0, os.SEEK_END)
    pos = f.tell()
    tail = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step) + tail
        lines = chunk.split(b"\n")
        tail = lines[0]  # may be the end of a line that starts in an earlier block
        yield from reversed(lines[1:])
    yield tail
