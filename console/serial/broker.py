"""One console session per node per process, shared by every viewer.

:class:`ConsoleBroker` keeps at most one :class:`ConsoleSession` per node.  A session
owns the node's :class:`~console.serial.stream.ConsoleStream` (opened when the
session is first asked for), keeps what the node printed in a ring buffer
(:meth:`ConsoleSession.history`), writes it to the node's on-disk log
(:mod:`console.serial.log`) and hands every chunk and every :class:`ConsoleEvent` to
its subscribers, in order, on the broker's event loop.

**One writer, many watchers.**  Anyone may watch; only the holder types.
:meth:`ConsoleSession.acquire` makes a viewer the holder, raising
:class:`~console.serial.stream.ConsoleBusy` when another one holds it; with
``force`` the holder changes and everyone is told (a ``takeover`` event naming both),
so the previous holder's next write is refused.

**The BMC's own holder.**  When another client (``ipmitool sol activate``, a
colleague's console) holds the node's SOL, the session's state is ``busy`` and it
does not take it: only ``acquire(who, force=True)`` does, explicitly.  Until then it
tries again every :data:`BUSY_RETRY` seconds, never forcing.

**Reconnection.**  When the stream is lost (the BMC dropped it, the channel closed)
the session says so (``lost``), waits (0.5 s, doubling to 30 s, with jitter) and
opens it again (``reconnected``).  What the node printed meanwhile is gone, as on a
real console; a lab BMC replays its last lines on activation.

States: ``connecting`` (first open), ``open``, ``lost`` (retrying), ``busy`` (held
by another client), ``closed``.  ``error`` is the last failure, shown as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from console.errors import DriverError, SecretError
from console.serial import open_stream
from console.serial.log import ConsoleLog
from console.serial.stream import ConsoleBusy, ConsoleLost, ConsoleStream, ConsoleTaken
from console.text import visible

if TYPE_CHECKING:
    from console.site import SiteContext

__all__ = ["ConsoleBroker", "ConsoleEvent", "ConsoleSession", "RING_BYTES"]

log = logging.getLogger(__name__)

#: what a session keeps of the node's output in memory
RING_BYTES = 256 * 1024
#: reconnection backoff: first wait, longest wait (seconds)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: how often a console held by another client is tried again (never forcing)
BUSY_RETRY = 10.0
#: the first wait after the BMC ended the stream as in a takeover (ConsoleTaken)
TAKEN_WAIT = 3.0


@dataclass(frozen=True)
class ConsoleEvent:
    """Something that happened to a session: ``kind`` is attach, detach, takeover, lost,
    reconnected, busy or closed; ``who`` the viewer it concerns (None for the stream's
    own events); ``detail`` a sentence; ``time`` the wall clock."""

    kind: str
    who: str | None
    detail: str
    time: float


Subscriber = Callable[[bytes | ConsoleEvent], None]


class ConsoleSession:
    """One node's shared console (see the module docstring).  Use it on the broker's loop."""

    def __init__(self, broker: ConsoleBroker, node: str, stream_factory: Callable[[], ConsoleStream],
                 description: str, console_log: ConsoleLog | None, ring_bytes: int) -> None:
        self.node = node
        self.description = description
        self.state = "connecting"
        self.holder: str | None = None
        self.error: str | None = None
        self._broker = broker
        self._factory = stream_factory
        self._log = console_log
        self._ring = bytearray()
        self._ring_bytes = ring_bytes
        self._subs: list[Subscriber] = []
        self._stream: ConsoleStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.get_running_loop().create_future()
        self._force = asyncio.Event()  # acquire(force) asks the runner to take the BMC's console
        self._taken = False  # the last stream ended as in a takeover (see _pump)
        self._forced: asyncio.Future[None] | None = None
        self._force_who: str | None = None

    # -- viewers ---------------------------------------------------------------------------
    def history(self) -> bytes:
        """What the node printed so far (the last ``ring_bytes``)."""
        return bytes(self._ring)

    @property
    def watchers(self) -> int:
        """How many subscribers the session has now (panes, attached terminals, followers)."""
        return len(self._subs)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every later output chunk and event; returns the unsubscribe function.

        Callbacks run on the broker's loop and must not block; one that raises is logged
        and kept."""
        self._subs.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subs.remove(callback)

        return unsubscribe

    def _publish(self, item: bytes | ConsoleEvent) -> None:
        for cb in list(self._subs):
            try:
                cb(item)
            except Exception:
                log.exception("console %s: a subscriber failed", self.node)

    def _event(self, kind: str, who: str | None = None, detail: str = "") -> None:
        event = ConsoleEvent(kind, who, detail, time.time())
        self._write_log(lambda lg: lg.marker(kind, who, detail))
        self._publish(event)

    def _write_log(self, action: Callable[[ConsoleLog], None]) -> None:
        if self._log is None:
            return
        try:
            action(self._log)
        except OSError as exc:  # a full disk or a planted file: the console goes on, unlogged
            log.warning("console %s: log disabled: %s", self.node, exc)
            self._log.close()
            self._log = None

    def _output(self, data: bytes) -> None:
        self._ring += data
        if len(self._ring) > self._ring_bytes:
            del self._ring[: len(self._ring) - self._ring_bytes]
        self._write_log(lambda lg: lg.write(data))
        self._publish(data)

    # -- the holder ------------------------------------------------------------------------
    async def acquire(self, who: str, *, force: bool = False) -> None:
        """Become the one writer.  ConsoleBusy when another viewer holds it (or another client
        holds the BMC's SOL) and not ``force``; with ``force`` the holder is replaced (told by a
        ``takeover`` event) and a console held elsewhere is taken over."""
        if self.state == "closed":
            raise ConsoleLost(f"{self.node}: the console is closed")
        if self.state == "busy":
            if not force:
                raise ConsoleBusy(self.error or f"{self.node}: the console is held by another client")
            await self._take_over(who)
            if self.holder is None or self.holder == who:
                self.holder = who
                return
        if self.holder is not None and self.holder != who:
            if not force:
                raise ConsoleBusy(f"{self.node}: {visible(self.holder)} is typing on this console; "
                                  "force takes it over")
            previous, self.holder = self.holder, who
            self._event("takeover", who, f"from {visible(previous)}")
            return
        if self.holder != who:
            self.holder = who
            self._event("attach", who)

    async def _take_over(self, who: str) -> None:
        loop = asyncio.get_running_loop()
        self._force_who = who
        self._forced = loop.create_future()
        self._force.set()
        try:
            await asyncio.shield(self._forced)
        finally:
            self._forced = None

    async def release(self, who: str) -> None:
        """Stop being the writer (nothing when ``who`` does not hold it)."""
        if self.holder == who:
            self.holder = None
            self._event("detach", who)

    def _writer(self, who: str) -> ConsoleStream:
        if self.state == "closed":
            raise ConsoleLost(f"{self.node}: the console is closed")
        if self.holder != who:
            holder = f"{visible(self.holder)} holds it" if self.holder else "nobody holds it"
            raise ConsoleBusy(f"{self.node}: not the console's writer ({holder}); acquire it first")
        if self.state != "open" or self._stream is None:
            raise ConsoleLost(f"{self.node}: the console is {self.state}" + (f": {self.error}" if self.error else ""))
        return self._stream

    async def write(self, who: str, data: bytes) -> None:
        """Send keys; only the holder may."""
        stream = self._writer(who)
        await stream.write(data)

    async def send_break(self, who: str) -> None:
        """Send a serial break; only the holder may."""
        stream = self._writer(who)
        await stream.send_break()
        self._write_log(lambda lg: lg.marker("break", who))

    async def resize(self, cols: int, rows: int) -> None:
        """Tell the far end the terminal size (SSH consoles); nothing where the transport cannot."""
        stream = self._stream
        if stream is not None and self.state == "open":
            await stream.resize(cols, rows)

    # -- the runner ------------------------------------------------------------------------
    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"console-{self.node}")

    async def wait_started(self) -> None:
        """Until the first open attempt has ended (whatever its outcome)."""
        await asyncio.shield(self._first)

    def _first_done(self) -> None:
        if not self._first.done():
            self._first.set_result(None)

    async def _open(self, force: bool) -> ConsoleStream:
        stream = self._factory()
        try:
            await stream.open(force=force)
        except BaseException:
            with contextlib.suppress(Exception):
                await stream.close()
            raise
        return stream

    async def _run(self) -> None:
        delay = BACKOFF_FIRST
        opened_before = False
        try:
            while True:
                force = self._force.is_set()
                self._force.clear()
                try:
                    stream = await self._open(force)
                except ConsoleBusy as exc:
                    self._resolve_forced(exc)
                    if self.state != "busy":
                        self.state, self.error = "busy", str(exc)
                        self._event("busy", None, str(exc))
                    self._first_done()
                    await self._wait_retry(BUSY_RETRY)
                    continue
                except (DriverError, SecretError, OSError) as exc:
                    self._resolve_forced(exc)
                    text = str(exc) if isinstance(exc, DriverError | SecretError) else visible(str(exc))
                    if self.state in ("connecting", "busy") or self.error != text:
                        log.info("console %s: %s", self.node, text)
                    self.error = text
                    if self.state != "lost":
                        self.state = "lost"
                        if opened_before or self._first.done():
                            self._event("lost", None, text)
                    self._first_done()
                    await self._wait_retry(delay)
                    delay = min(BACKOFF_MAX, delay * 2)
                    continue
                was = self.state
                self._stream, self.state, self.error = stream, "open", None
                delay = BACKOFF_FIRST
                self._resolve_forced(None)
                if force:
                    self._event("takeover", self._force_who, f"from another client of {stream.description}")
                elif opened_before or was in ("lost", "busy"):
                    self._event("reconnected", None, stream.description)
                else:
                    desc = stream.description
                    self._write_log(lambda lg, d=desc: lg.marker("open", None, d))  # type: ignore[misc]
                opened_before = True
                self._first_done()
                lost = await self._pump(stream)
                self._stream = None
                with contextlib.suppress(Exception):
                    await stream.close()
                if lost is None:  # a forced reopen was asked for while open: go round now
                    continue
                self.state, self.error = "lost", lost
                self._event("lost", None, lost)
                # taken over: let the taker's activation land before trying (never forcing)
                await self._wait_retry(max(delay, TAKEN_WAIT) if self._taken else delay)
                delay = min(BACKOFF_MAX, delay * 2)
        finally:
            self._first_done()

    def _resolve_forced(self, exc: BaseException | None) -> None:
        fut = self._forced
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    async def _wait_retry(self, delay: float) -> None:
        """Sleep ``delay`` (with jitter), or less when a forced open is asked for."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._force.wait(), delay * random.uniform(0.8, 1.2))

    async def _pump(self, stream: ConsoleStream) -> str | None:
        """Read until the stream ends; why it ended (None: a forced reopen was asked for).
        ``_taken`` says whether it ended as in another client's takeover."""
        self._taken = False
        force_wait = asyncio.ensure_future(self._force.wait())
        try:
            while True:
                read = asyncio.ensure_future(stream.read())
                done, _ = await asyncio.wait({read, force_wait}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    with contextlib.suppress(BaseException):
                        await read
                    if self.state == "open":  # open already: nothing to take over
                        self._force.clear()
                        self._resolve_forced(None)
                        force_wait = asyncio.ensure_future(self._force.wait())
                        continue
                    return None
                try:
                    data = read.result()
                except DriverError as exc:
                    self._taken = isinstance(exc, ConsoleTaken)
                    return str(exc)
                except OSError as exc:
                    return visible(str(exc)) or type(exc).__name__
                if not data:
                    return "the stream ended"
                self._output(data)
        finally:
            force_wait.cancel()

    async def close(self) -> None:
        """Close the stream and end the session (a ``closed`` event)."""
        if self.state == "closed":
            return
        self.state = "closed"
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()
        self._resolve_forced(ConsoleLost(f"{self.node}: the console closed"))
        self._event("closed", None, "")
        self._first_done()
        if self._log is not None:
            self._log.close()
            self._log = None


class ConsoleBroker:
    """Every node's console session in this process (see the module docstring)."""

    def __init__(self, ctx: SiteContext, *, log: bool = True, ring_bytes: int = RING_BYTES) -> None:
        self.ctx = ctx
        self._log = log
        self._ring_bytes = ring_bytes
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def session(self, node: str) -> ConsoleSession:
        """The node's session, opened on first use (this waits for the first attempt: look at
        ``state`` and ``error``).  NoConsole when the node is unknown or has no console."""
        async with self._lock:
            if self._closed:
                raise ConsoleLost("the console broker is closed")
            session = self._sessions.get(node)
            if session is None or session.state == "closed":
                first = open_stream(self.ctx, node)  # NoConsole before anything is started
                pending: list[ConsoleStream] = [first]

                def factory() -> ConsoleStream:
                    return pending.pop() if pending else open_stream(self.ctx, node)

                console_log = ConsoleLog(self.ctx.site.name, node) if self._log else None
                session = ConsoleSession(self, node, factory, first.description, console_log, self._ring_bytes)
                self._sessions[node] = session
                session._start()
        await session.wait_started()
        return session

    def sessions(self) -> dict[str, ConsoleSession]:
        """The sessions open now, by node (a closed one is not: the next ``session`` opens anew)."""
        return {node: s for node, s in self._sessions.items() if s.state != "closed"}

    async def close(self) -> None:
        """Close every session."""
        async with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

