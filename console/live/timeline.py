"""A node's incident timeline: one time-ordered story from everything that knows about it.

What an on-call operator reads first ("when did it go red, and who touched it"):

``poller``   the transitions the console's poller saw (:class:`~console.live.fleet.Transition`):
             power, health, polls failing or answering, cabling finding, image state
``bmc``      the BMC's event log (IPMI SEL / Redfish log entries) as last read
``console``  the node's console log (:func:`console.serial.log.read_log`): the console's
             own markers (attach, takeover, lost...) and the lines that tell a story
             (panic, error, failure, login prompt, installer, reboot), plus the last
             :data:`CONSOLE_TAIL` lines; never the whole boot chatter
``image``    the site's image audit history (``audit.jsonl``): each change of a node's
             audit state or running image
``journal``  operator actions on the node (:func:`console.ops.journal.read_entries`)

:func:`build_timeline` reads every source it is given, each bounded in size, and says
which were read and which were unavailable (and why) in :attr:`Timeline.sources`; a
source that fails is a line there, never an exception.  Reading files, it blocks:
call it off an event loop.  Every entry's text may come from outside (a BMC, a
console, a file): show it through :func:`console.text.visible`, as text, never markup.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from console.drivers.bmc import Event
from console.errors import FleetError
from console.live.fleet import Transition
from console.live.words import SYMBOLS, Rank, rank
from console.text import visible

__all__ = ["Entry", "SourceState", "Timeline", "SOURCES", "build_timeline", "transition_entries", "event_entries",
           "console_entries", "audit_entries", "journal_entries", "parse_since", "text_lines", "iso_ms", "CONSOLE_TAIL",
           "STORY"]

#: the sources, in the order the timeline lists them
SOURCES = ("poller", "bmc", "console", "image", "journal")
#: the console log's last lines always kept (what the node printed last)
CONSOLE_TAIL = 5
#: at most this much of the console log is read (the newest); the rest is older boots
CONSOLE_READ_BYTES = 2 * 1024 * 1024
#: at most this many story lines of the console log are kept (the newest)
CONSOLE_KEPT = 200
#: journal entries read (the newest), and audit history lines kept per node
JOURNAL_LIMIT = 500
AUDIT_KEPT = 200
#: at most this much of each audit history file is read (the newest)
AUDIT_READ_BYTES = 8 * 1024 * 1024
#: longest entry text kept (a runaway line must not bloat the story)
MAX_TEXT = 300

#: console lines that tell the story: kernel trouble, failures, the login prompt, the
#: installer, boots and reboots
STORY = re.compile(
    r"panic|oops|call trace|\bbug:|segfault|watchdog|error|fail|refused|denied|cannot|no bootable|"
    r"login:|installer|booting from|reboot|power down|entering setup|sysrq",
    re.IGNORECASE)
_PROGRESS = re.compile(r"installer: \d{1,2}%\s*$")  # the installer's 10%, 20%...: not the story
_CRITICAL = re.compile(r"panic|oops|call trace|\bbug:|segfault", re.IGNORECASE)
_WARNING = re.compile(r"error|fail|refused|denied|cannot|no bootable|watchdog", re.IGNORECASE)
# "2026-12-07T04:05:06.123Z | text" (the node's) or "... * marker" (the console's own)
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ([|*]) ?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")


@dataclass(frozen=True)
class Entry:
    """One line of the story.

    ``severity`` (``critical``, ``warning``, ``ok``, ``info``) decides its look;
    ``symbol`` says it without colour; ``text`` may come from outside (show it as text).
    """

    at: float
    source: str  # one of SOURCES
    severity: str
    symbol: str
    text: str
    who: str = ""  # the operator, for journal entries

    def as_json(self) -> dict[str, Any]:
        return {"time": iso_ms(self.at), "source": self.source, "severity": self.severity, "text": self.text,
                "who": self.who or None}


@dataclass(frozen=True)
class SourceState:
    """How one source was read: ``read`` (``count`` entries), ``empty``, or
    ``unavailable`` (``detail`` says why)."""

    name: str
    state: str  # read | empty | unavailable
    count: int = 0
    detail: str = ""

    def words(self) -> str:
        """``bmc: 12`` / ``console: none yet`` / ``image: unavailable (...)``."""
        if self.state == "read":
            text = f"{self.name}: {self.count}"
        elif self.state == "empty":
            text = f"{self.name}: none"
        else:
            text = f"{self.name}: unavailable"
        return text + (f" ({self.detail})" if self.detail else "")

    def as_json(self) -> dict[str, Any]:
        return {"source": self.name, "state": self.state, "count": self.count, "detail": self.detail or None}


@dataclass
class Timeline:
    """A node's story, oldest first, and how each source was read."""

    node: str
    entries: list[Entry] = field(default_factory=list)
    sources: list[SourceState] = field(default_factory=list)
    since: float | None = None
    #: the node's facts now (``power``, ``health``...): the end of the story
    now: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"node": self.node, "since": iso_ms(self.since), "now": self.now,
                "sources": [s.as_json() for s in self.sources], "entries": [e.as_json() for e in self.entries]}


def iso_ms(ts: float | None) -> str | None:
    """Unix time as ISO 8601 UTC with milliseconds (None stays None)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unix(text: Any) -> float | None:
    """An ISO 8601 time (``...Z`` or with an offset) as unix seconds; None when it is not one."""
    if not isinstance(text, str) or not text or len(text) > 40:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|w)s?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from ``now`` (``90s``, ``30m``, ``2h``, ``1d``, ``1w``) or an
    ISO 8601 time (``2026-12-07T04:00:00Z``, UTC when no offset); ValueError saying what is
    accepted otherwise."""
    m = _SINCE.match(text or "")
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2).lower()]
    at = _unix(text.strip()) if text else None
    if at is None:
        raise ValueError(f"--since {visible(text)!r}: give a duration (90s, 30m, 2h, 1d) or a time "
                         "(2026-12-07T04:00:00Z)")
    return at


# ------------------------------------------------------------------ the sources
def _severity(word: str | None) -> str:
    if word is None:
        return "info"
    r = rank(word)
    if r == Rank.FAILING:
        return "critical"
    if r == Rank.DEGRADED:
        return "warning"
    if r in (Rank.OK, Rank.ON):
        return "ok"
    return "info"


def transition_entries(transitions: Iterable[Transition]) -> list[Entry]:
    """The poller's transitions as entries: ``health ok → critical``."""
    out = []
    for t in transitions:
        word = "error" if (t.fact == "reachability" and t.new == "error") else t.new
        out.append(Entry(t.at, "poller", _severity(word), SYMBOLS.get(word, "·"), _cut(t.words())))
    return out


def event_entries(events: Iterable[Event]) -> tuple[list[Entry], int]:
    """The BMC's event log as entries; and how many had no usable time (left out)."""
    out, untimed = [], 0
    for e in events:
        if e.timestamp is None:
            untimed += 1
            continue
        text = f"{e.sensor}: {e.message}" if e.sensor else e.message
        severity = e.severity if e.severity in ("critical", "warning", "ok") else "info"
        out.append(Entry(e.timestamp, "bmc", severity, SYMBOLS.get(e.severity, "·"), _cut(f"SEL {text}")))
    return out, untimed


def console_entries(text: str, *, tail: int = CONSOLE_TAIL, kept: int = CONSOLE_KEPT) -> tuple[list[Entry], int]:
    """The story lines of a console log (:func:`console.serial.log.read_log`'s text): its
    markers, the lines :data:`STORY` matches (the newest ``kept``), and the last ``tail``
    lines.  ANSI sequences are removed.  Returns the entries and how many lines were read."""
    # only "\n" ends a log line: the node's text may hold \r, \x1e, \x85 or U+2028, which
    # str.splitlines() would also split at, letting a node start a line that reads as a marker
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    story: list[Entry] = []
    printed: list[Entry] = []
    for line in lines:
        m = _LOG_LINE.match(line)
        if m is None:
            continue  # a cut first line, or not ours
        at = _unix(m.group(1))
        if at is None:
            continue
        words = _ANSI.sub("", m.group(3)).strip()
        if not words:
            continue
        if m.group(2) == "*":
            story.append(Entry(at, "console", "info", "*", _cut(f"console {words}")))
            continue
        severity = "critical" if _CRITICAL.search(words) else "warning" if _WARNING.search(words) else "info"
        entry = Entry(at, "console", severity, "»", _cut(words))
        printed.append(entry)
        if STORY.search(words) and not _PROGRESS.search(words):
            story.append(entry)
    story = story[-kept:]
    seen = set(map(id, story))
    story += [e for e in printed[-tail:] if id(e) not in seen] if tail > 0 else []
    story.sort(key=lambda e: e.at)
    return story, len(lines)


def audit_entries(lines: Iterable[dict[str, Any]]) -> list[Entry]:
    """A node's audit history lines (oldest first) as entries: each change of its audit
    state or running image (a line repeating the last one, as a rotated file's first
    lines do, is left out)."""
    out = []
    last: tuple[Any, ...] | None = None
    for line in lines:
        at = _unix(line.get("time"))
        if at is None:
            continue
        key = (line.get("state"), line.get("running"), line.get("running_sha256"), line.get("desired"))
        if key == last:
            continue
        state = str(line.get("state") or "unknown")
        running = line.get("running")
        reason = line.get("reason")
        if last is None:
            text = f"image audit: {state}"
        elif last[0] != state:
            text = f"image audit: {last[0]} → {state}"
        else:
            text = f"image audit: {state}"
        if last is not None and last[1] != running and running is not None:
            text += f", runs {running} (was {last[1] or '?'})"
        elif reason:
            text += f": {reason}"
        elif running:
            text += f", runs {running}"
        last = key
        out.append(Entry(at, "image", _severity(state), SYMBOLS.get(state, "·"), _cut(str(text))))
    return out[-AUDIT_KEPT:]


_RESULT_SEVERITY = {"failed": "critical", "cancelled": "warning", "skipped": "warning", "ok": "ok"}


def journal_entries(entries: Iterable[dict[str, Any]]) -> list[Entry]:
    """Journal entries (``read_entries``) as entries: ``power cycle: verify-power ok``."""
    out = []
    for e in entries:
        at = _unix(e.get("time"))
        if at is None:
            continue
        action, step, result = (str(e.get(k) or "") for k in ("action", "step", "result"))
        text = action + (f": {step}" if step and step != action else "") + (f" {result}" if result else "")
        if e.get("error"):
            text += f": {e['error']}"
        if e.get("ticket"):
            text += f" [{e['ticket']}]"
        out.append(Entry(at, "journal", _RESULT_SEVERITY.get(result, "info"), "▶", _cut(text.strip()),
                         who=str(e.get("operator") or "")))
    return out


# ------------------------------------------------------------------ reading the files
def _audit_lines(site: str, node: str) -> list[dict[str, Any]]:
    """Node ``node``'s lines of the site's audit history (the rotated file's first), oldest
    first.  The files are opened as the audit opens them: no symbolic link followed, ours
    and 0600 in a 0700 directory of ours, or AuditError."""
    from console.ops.imageaudit import AuditHistory

    history = AuditHistory(site)
    dfd = history._open_dir(create=False)
    if dfd is None:
        return []
    needle = json.dumps(node).encode()
    out: list[dict[str, Any]] = []
    try:
        for name in (history.FILE + ".1", history.FILE):
            try:
                fd = history._open_file(dfd, name, os.O_RDONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            try:
                size = os.fstat(fd).st_size
                start = max(0, size - AUDIT_READ_BYTES)
                data = os.pread(fd, size - start, start)
            finally:
                os.close(fd)
            chunks = data.split(b"\n")
            if start:
                chunks = chunks[1:]  # cut in the middle
            for chunk in chunks:
                if needle not in chunk:
                    continue
                try:
                    entry = json.loads(chunk)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(entry, dict) and entry.get("kind") == "node" and entry.get("node") == node:
                    out.append(entry)
    finally:
        os.close(dfd)
    return out


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def build_timeline(site: str, node: str, *, transitions: Iterable[Transition] | None = None,
                   events: Iterable[Event] | None = None, events_error: str | None = None,
                   since: float | None = None, now: dict[str, str] | None = None,
                   console: bool = True, image: bool = True, journal: bool = True,
                   poller_note: str = "") -> Timeline:
    """Node ``node``'s story on ``site``, entries at or after ``since``, oldest first.

    ``transitions``: what the poller saw (None: no poller history to give, said so with
    ``poller_note``); ``events``: the BMC's event log as read (None: not read, with
    ``events_error`` saying why).  ``console``, ``image``, ``journal``: read those files.
    Each source read or not is in :attr:`Timeline.sources`; nothing here raises for a
    source that cannot be read.  Blocks on file reads: call it off an event loop."""
    tl = Timeline(node, since=since, now=dict(now or {}))
    entries: list[Entry] = []

    def add(name: str, got: list[Entry], detail: str = "") -> None:
        kept = [e for e in got if since is None or e.at >= since]
        entries.extend(kept)
        if since is not None and len(kept) != len(got):
            detail = ", ".join(x for x in (detail, f"{len(got) - len(kept)} before --since") if x)
        tl.sources.append(SourceState(name, "read" if kept else "empty", len(kept), detail))

    if transitions is None:
        tl.sources.append(SourceState("poller", "unavailable", detail=poller_note or "no poller history"))
    else:
        add("poller", transition_entries(transitions), poller_note)

    if events is None:
        tl.sources.append(SourceState("bmc", "unavailable", detail=events_error or "event log not read yet"))
    else:
        got, untimed = event_entries(events)
        add("bmc", got, f"{untimed} without a time, left out" if untimed else "")

    if console:
        try:
            from console.serial.log import read_log

            text = read_log(site, node, max_bytes=CONSOLE_READ_BYTES)
        except (OSError, ValueError) as exc:
            tl.sources.append(SourceState("console", "unavailable", detail=_why(exc)))
        else:
            if not text:
                tl.sources.append(SourceState("console", "empty", detail="no console log yet"))
            else:
                got, count = console_entries(text)
                add("console", got, f"story lines of {count}")

    if image:
        try:
            lines = _audit_lines(site, node)
        except (OSError, ValueError, FleetError) as exc:  # AuditError: owner, mode, a link
            tl.sources.append(SourceState("image", "unavailable", detail=_why(exc)))
        else:
            if not lines:
                tl.sources.append(SourceState("image", "empty",
                                              detail="no audit history yet; fleet-console audit writes it"))
            else:
                add("image", audit_entries(lines))

    if journal:
        try:
            from console.ops.journal import read_entries

            got_journal = journal_entries(read_entries(site, node=node, limit=JOURNAL_LIMIT))
        except (OSError, ValueError) as exc:
            tl.sources.append(SourceState("journal", "unavailable", detail=_why(exc)))
        else:
            add("journal", got_journal)

    order = {name: i for i, name in enumerate(SOURCES)}
    entries.sort(key=lambda e: (e.at, order.get(e.source, 9)))
    tl.entries = entries
    return tl


def text_lines(tl: Timeline) -> list[str]:
    """The timeline as plain lines (time, source, symbol, text), every outside string
    made visible: for the CLI."""
    out = []
    for e in tl.entries:
        when = iso_ms(e.at) or "-"
        who = f"{e.who}: " if e.who else ""
        out.append(visible(f"{when[:19].replace('T', ' ')}  {e.source:<7}  {e.symbol} {who}{e.text}"))
    return out

