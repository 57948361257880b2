"""Follow the serial consoles of the nodes a reimage runs on: the boot in each node's log,
and its last console line as progress.

While a reimage runs (the ``reimage`` command and the TUI's progress screen alike), a
:class:`ConsoleFollower` keeps a :class:`~console.serial.broker.ConsoleSession` open for
each target node, so the whole boot (firmware, iPXE, the installer, the reboot, the
kernel) lands in the node's console log (:mod:`console.serial.log`), and it tells its
caller the node's last console line whenever that changes (``on_line(node, line)``).

Bounded and polite:

* at most :data:`MAX_FOLLOWED` sessions at once; the first ones are opened before the
  run starts (in the plan's order, which is the order nodes are launched in), and when
  more nodes wait, a node that ended gives its session up to the next;
* a console is never taken from anyone: a console held by another client (an operator
  attached, ``ipmitool sol activate``) is left alone, and a session opened for it is
  closed again;
* a node without a serial console (a Redfish BMC without ``bmc.console``) is skipped
  quietly: the reimage goes on without its console;
* :meth:`ConsoleFollower.close` closes the sessions the follower opened, except those
  somebody else watches meanwhile (a console pane in the TUI).

The last line is what a person watching would read last: ANSI sequences removed, a line
overwritten with a carriage return read as its last version, blank lines passed over,
and a line still being printed (``login: ``) counted.  It is the node's text: show it
through :func:`console.text.visible`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable

from console.errors import DriverError, SecretError
from console.serial.broker import ConsoleBroker, ConsoleEvent, ConsoleSession
from console.serial.log import ansi_stripped

__all__ = ["ConsoleFollower", "LastLine", "MAX_FOLLOWED", "OPEN_WAIT"]

log = logging.getLogger(__name__)

#: the most console sessions a follower keeps open at once
MAX_FOLLOWED = 64
#: seconds :meth:`ConsoleFollower.start` waits for the first sessions to open (they go on after)
OPEN_WAIT = 5.0
#: characters of a line kept (a node that never ends its line cannot grow memory)
LINE_CHARS = 512


class LastLine:
    """The last line worth reading of a console's output (see the module docstring)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""  # text after the last newline (a line still being printed)
        self._done = ""  # the last non-blank complete line
        self.line = ""

    @staticmethod
    def _clean(raw: str) -> str:
        text = ansi_stripped(raw)
        if "\r" in text:  # a line redrawn in place: what is left on it is its last version
            parts = [p for p in text.split("\r") if p.strip()]
            text = parts[-1] if parts else ""
        return text.strip()

    def feed(self, data: bytes) -> bool:
        """Take more output; True when the last line changed."""
        text = self._pending + self._decoder.decode(data)
        *complete, pending = text.split("\n")
        for raw in reversed(complete):
            cleaned = self._clean(raw[-LINE_CHARS:])
            if cleaned:
                self._done = cleaned
                break
        self._pending = pending[-4 * LINE_CHARS:]  # room for escape sequences in a long prompt
        current = self._clean(self._pending)[-LINE_CHARS:] or self._done
        if current == self.line:
            return False
        self.line = current
        return True


class ConsoleFollower:
    """Console sessions for the nodes of one run (see the module docstring).

    Use it on the broker's event loop: :meth:`start` before the run, :meth:`node_ended`
    as each node ends, :meth:`close` after the run.  ``on_line(node, line)`` is called
    on that loop whenever a node's last console line changes; it must not block.
    """

    def __init__(self, broker: ConsoleBroker, nodes: Iterable[str], *,
                 on_line: Callable[[str, str], None] | None = None, limit: int = MAX_FOLLOWED) -> None:
        self.broker = broker
        self.limit = max(1, limit)
        self.on_line = on_line
        self._waiting: list[str] = list(dict.fromkeys(nodes))  # not opened yet, in launch order
        self._opening: dict[str, asyncio.Task[None]] = {}
        #: node -> its session, while followed
        self.sessions: dict[str, ConsoleSession] = {}
        #: node -> why its console is not followed (no console, held by another client, ...)
        self.skipped: dict[str, str] = {}
        self._owned: set[str] = set()  # sessions this follower opened (it closes them)
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._lines: dict[str, LastLine] = {}
        self._ended: set[str] = set()
        self._closed = False

    # ------------------------------------------------------------------ queries
    def last_line(self, node: str) -> str | None:
        """The node's last console line ("" before it printed one), None when not followed."""
        tracker = self._lines.get(node)
        return tracker.line if tracker is not None else None

    @property
    def in_use(self) -> int:
        """Nodes with a session open, being opened, or being given up now.  Counted by node: a
        node whose opening just ended is in ``sessions`` before its task leaves ``_opening``
        (the task's done callback runs a loop turn later), and counted once."""
        return len(self.sessions.keys() | {k.removeprefix("~") for k in self._opening})

    # ------------------------------------------------------------------ control
    async def start(self, wait: float = OPEN_WAIT) -> None:
        """Open the first sessions and wait (at most ``wait`` seconds) for their first attempts;
        the ones still connecting go on in the background."""
        self._fill()
        pending = list(self._opening.values())
        if pending:
            await asyncio.wait(pending, timeout=wait)

    def node_ended(self, node: str) -> None:
        """``node``'s part of the run ended: when other nodes wait for a session, its own is given
        up for them; otherwise it stays open until :meth:`close` (the boot's end is logged)."""
        if self._closed or node in self._ended:
            return
        self._ended.add(node)
        if node in self._waiting:  # ended before its turn came: nothing to follow any more
            self._waiting.remove(node)
            return
        if not self._waiting or node not in self.sessions:
            return
        task = asyncio.get_running_loop().create_task(self._release(node), name=f"console-follow-end-{node}")
        self._opening[f"~{node}"] = task  # counted until released: never more than the limit
        task.add_done_callback(functools.partial(self._done_opening, f"~{node}"))

    async def close(self) -> None:
        """Stop following: every session this follower opened is closed, unless someone else
        watches it now (a console pane)."""
        self._closed = True
        self._waiting.clear()
        tasks = list(self._opening.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for node in list(self.sessions):
            await self._release(node)

    # ------------------------------------------------------------------ machinery
    def _fill(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self.in_use < self.limit and not self._closed:
            node = self._waiting.pop(0)
            task = loop.create_task(self._open(node), name=f"console-follow-{node}")
            self._opening[node] = task
            task.add_done_callback(functools.partial(self._done_opening, node))

    def _done_opening(self, key: str, _task: asyncio.Task[None]) -> None:
        self._opening.pop(key, None)
        if not self._closed:
            self._fill()

    async def _open(self, node: str) -> None:
        existed = node in self.broker.sessions()
        try:
            session = await self.broker.session(node)
        except (DriverError, SecretError) as exc:  # no console, a closed broker, a secret missing
            self.skipped[node] = str(exc)
            return
        if not existed:
            self._owned.add(node)
        if session.state == "busy":  # held by another client: leave it to them, never force
            self.skipped[node] = session.error or "held by another client"
            if node in self._owned and not _watched(session):
                self._owned.discard(node)
                await session.close()
            return
        if self._closed or node in self._ended:
            if node in self._owned and not _watched(session):
                self._owned.discard(node)
                await session.close()
            return
        tracker = LastLine()
        self._lines[node] = tracker
        self.sessions[node] = session
        history = session.history()
        if history:
            self._feed(node, tracker, history[-4096:])

        def output(item: bytes | ConsoleEvent) -> None:
            if isinstance(item, bytes):
                self._feed(node, tracker, item)

        self._unsubscribe[node] = session.subscribe(output)

    def _feed(self, node: str, tracker: LastLine, data: bytes) -> None:
        if tracker.feed(data) and self.on_line is not None:
            try:
                self.on_line(node, tracker.line)
            except Exception:  # a broken display must not break the console
                log.exception("console follower: on_line failed for %s", node)

    async def _release(self, node: str) -> None:
        session = self.sessions.pop(node, None)
        unsubscribe = self._unsubscribe.pop(node, None)
        if unsubscribe is not None:
            unsubscribe()
        if session is None or node not in self._owned:
            return
        self._owned.discard(node)
        if not _watched(session):
            with contextlib.suppress(Exception):
                await session.close()


def _watched(session: ConsoleSession) -> bool:
    """True when someone else subscribes to ``session`` or types on it."""
    return session.watchers > 0 or session.holder is not None
