"""Attach a terminal to a node's serial console: raw mode, escapes, banners, resize.

:func:`attach` joins the operator's terminal (two file descriptors, stdin and
stdout) to one :class:`~console.serial.broker.ConsoleSession` until the operator
leaves (``~.``), the console closes, stdin ends or a signal (SIGTERM, SIGHUP,
SIGINT) asks it to stop.

* With a terminal on stdin it is put in raw mode (every key, Ctrl-C and Ctrl-Z
  too, goes to the node), and its settings are put back on every way out:
  leaving, an exception, a signal.  Output from the node is written to stdout as
  it arrives, bytes as they are: the operator's terminal is the node's VT.  Its
  size is sent to the console at the start and on every SIGWINCH, where the
  transport can (SSH consoles; SOL has no window size).
* Without one (a pipe or a file: a script) it works in line mode: each input line
  is sent with a carriage return (what Enter sends), escapes still work at the
  start of a line, and at the end of the input it waits until the node has been
  quiet for :data:`LINE_MODE_LINGER` seconds, so the answer to the last line is
  printed, then leaves.
* What happens to the console itself (lost, back, taken over, closed) is a one-line
  note in the stream, ``[fleet-console: ...]``; text from outside in a note (a
  holder's name, an error from the BMC) is shown through :func:`console.text.visible`.
  Notes and banners go to stdout when it is a terminal, to stderr otherwise (the
  captured stdout of a script is the console's output only).
* A watcher (``writable=False``: a read-only site, or a writer taken over by
  someone else) sees everything and sends nothing; ``~.`` and ``~?`` still work.

This module only talks to the session: the broker owns the connection, its
reconnects and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import termios
import threading
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from console.errors import DriverError
from console.serial.escape import ESCAPE, Command, Data, EscapeFilter, help_text
from console.serial.stream import ConsoleBusy
from console.text import visible

__all__ = ["AttachResult", "AttachableSession", "attach", "attach_session", "banner", "holder_text",
           "LINE_MODE_LINGER", "REPLAY_BYTES"]

log = logging.getLogger(__name__)

#: line mode: after the end of the input, leave once the node was quiet this long (seconds)
LINE_MODE_LINGER = 1.0
#: what the console printed before the attach, shown first (from a line's start)
REPLAY_BYTES = 2048
#: output waiting for a slow terminal beyond this is dropped, oldest first, and said so
OUTPUT_LIMIT = 1024 * 1024
#: one read from the terminal
READ_SIZE = 4096


class AttachableSession(Protocol):
    """What :func:`attach` uses of a :class:`~console.serial.broker.ConsoleSession`."""

    node: str
    description: str
    state: str
    holder: str | None
    error: str | None

    def history(self) -> bytes: ...

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...

    async def write(self, who: str, data: bytes) -> None: ...

    async def send_break(self, who: str) -> None: ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def acquire(self, who: str, *, force: bool = False) -> None: ...

    async def release(self, who: str) -> None: ...


@dataclass(frozen=True)
class AttachResult:
    """How an attach ended: ``how`` is ``left`` (``~.``), ``eof`` (the input ended),
    ``closed`` (the console closed under us), ``signal`` (``signal`` says which) or
    ``hangup`` (the terminal went away); :func:`attach_session` adds ``unreachable``
    (never connected), ``held`` (someone else holds it and it was not taken) and
    ``declined`` (the operator answered no), ``detail`` saying why."""

    how: str
    detail: str = ""
    signal: int | None = None


def banner(node: str, description: str, *, escape: bytes = ESCAPE, read_only: str | None = None) -> str:
    """The line printed before the console's output (no line end)."""
    e = escape.decode("ascii")
    text = (f"Connected to {visible(node)} ({visible(description)}). "
            f"Escape: {e}. leave, {e}B break, {e}? help")
    if read_only is not None:
        text += f"\nWatching read-only ({visible(read_only)}): keys are not sent."
    return text


def note(text: str) -> bytes:
    """A one-line note in the console stream (raw mode: CR LF around it)."""
    return f"\r\n[fleet-console: {visible(text)}]\r\n".encode()


def _replay(history: bytes, limit: int = REPLAY_BYTES) -> bytes:
    """The end of what the console printed, from the start of a line when there is one near."""
    if len(history) <= limit:
        return history
    tail = history[-limit:]
    cut = tail.find(b"\n", 0, 512)
    return tail[cut + 1:] if cut >= 0 else tail


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Output:
    """Writes to one descriptor from a task of its own (a slow terminal never stalls the
    loop the broker runs on), in order, bounded: past :data:`OUTPUT_LIMIT` waiting, the
    oldest output is dropped and a note says how much."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._dropped = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.broken: OSError | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())
        #: when output last arrived (loop time)
        self.last = asyncio.get_running_loop().time()
        self.ends_line = True

    def put(self, data: bytes) -> None:
        if not data or self.broken is not None:
            return
        self.last = asyncio.get_running_loop().time()
        self._chunks.append(data)
        self._size += len(data)
        while self._size > OUTPUT_LIMIT and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self._size -= len(old)
            self._dropped += len(old)
        self._idle.clear()
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                self._size = 0
                if self._dropped:
                    data = note(f"{self._dropped} bytes not shown: the terminal was too slow") + data
                    self._dropped = 0
                try:
                    await asyncio.to_thread(_write_all, self.fd, data)
                except OSError as exc:  # the terminal went away (EIO after a hangup, EPIPE)
                    self.broken = exc
                    self._chunks.clear()
                    self._idle.set()
                    return
                self.ends_line = data.endswith((b"\n", b"\r"))
            self._idle.set()

    async def drain(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        await self.drain()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def attach(session: AttachableSession, *, who: str, writable: bool = True, read_only: str | None = None,
                 stdin: int = 0, stdout: int = 1, stderr: int = 2, escape: bytes = ESCAPE,
                 replay: int = REPLAY_BYTES, linger: float = LINE_MODE_LINGER) -> AttachResult:
    """Join the terminal on ``stdin``/``stdout`` to ``session`` until the operator leaves.

    ``who`` is this attach's name in the session (the holder the caller acquired it as,
    when ``writable``); ``read_only`` is why keys are not sent (shown in the banner).
    The caller acquires and releases the session; this only reads, writes and shows.

    Signals (SIGTERM, SIGHUP, SIGINT) end the attach instead of the process: the result
    says which (``how="signal"``), and the handlers there were before are back when this
    returns, so a caller that must act on it (the TUI, on SIGHUP) raises it again with
    :func:`signal.raise_signal` after its own cleanup.
    """
    loop = asyncio.get_running_loop()
    raw = os.isatty(stdin)
    notes_to_stdout = os.isatty(stdout)
    if not writable and read_only is None:
        read_only = "watching"
    out = _Output(stdout)
    err = out if notes_to_stdout else _Output(stderr)
    done: asyncio.Future[AttachResult] = loop.create_future()
    sends: asyncio.Queue[Data | Command | None] = asyncio.Queue()
    state = {"writable": writable, "told_read_only": False}
    loop_thread = threading.get_ident()

    def finish(result: AttachResult) -> None:
        if not done.done():
            done.set_result(result)

    #: a raw terminal does not turn LF into CR LF: lines written to one end in both
    crlf = raw or notes_to_stdout

    def show_note(text: str) -> None:
        if notes_to_stdout:  # in the stream: on a line of its own, whatever the node was printing
            err.put(note(text))
        else:
            err.put(f"[fleet-console: {visible(text)}]{chr(13) if crlf else ''}\n".encode())

    def on_item(item: Any) -> None:  # the session's callback: output bytes or a ConsoleEvent
        if threading.get_ident() != loop_thread:
            loop.call_soon_threadsafe(on_item, item)
            return
        if isinstance(item, bytes | bytearray | memoryview):
            out.put(bytes(item))
            return
        kind, other, detail = getattr(item, "kind", ""), getattr(item, "who", None), getattr(item, "detail", "")
        if kind == "lost":
            show_note(f"console lost: {detail or 'the stream ended'}; reconnecting")
        elif kind == "reconnected":
            show_note("console back" + (f": {detail}" if detail else ""))
        elif kind == "takeover" and other is not None and other != who:
            if state["writable"]:
                state["writable"] = False
                show_note(f"{other} took the console over; watching read-only now (~. leaves)")
            else:
                show_note(f"{other} took the console over")
        elif kind in ("attach", "detach") and other is not None and other != who:
            show_note(f"{other} {'is typing on' if kind == 'attach' else 'left'} the console")
        elif kind == "busy":
            show_note("another client took the console on the BMC; waiting for it to come free (~. leaves)")
        elif kind == "closed":
            show_note("console closed" + (f": {detail}" if detail else ""))
            finish(AttachResult("closed", detail))

    async def resize() -> None:
        try:
            size = os.get_terminal_size(stdout if os.isatty(stdout) else stdin)
        except OSError:
            return
        if not size.columns or not size.lines:  # a pseudo-terminal nobody sized
            return
        try:
            await session.resize(size.columns, size.lines)
        except DriverError as exc:
            log.info("console %s: resize not sent: %s", session.node, exc)

    async def sender() -> None:
        """Sends keys and breaks in the order they were typed (one at a time)."""
        while True:
            item = await sends.get()
            try:
                if item is None:
                    return
                if not state["writable"]:
                    if not state["told_read_only"]:
                        state["told_read_only"] = True
                        show_note(f"read-only ({read_only or 'watching'}): keys are not sent; ~. leaves")
                    continue
                try:
                    if isinstance(item, Command):
                        await session.send_break(who)
                        show_note("break sent")
                    else:
                        await session.write(who, item.data)
                except DriverError as exc:
                    show_note(f"not sent: {exc}")
            finally:
                sends.task_done()
                out.last = loop.time()  # line mode's quiet time counts from the last key sent

    escapes = EscapeFilter(escape)
    eof = asyncio.Event()

    def handle(data: bytes) -> None:
        if not raw:
            data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")  # lines end as Enter ends them
        for item in escapes.feed(data) if data else escapes.flush():
            if done.done():
                return  # what follows ~. is not for the node
            if isinstance(item, Data):
                sends.put_nowait(item)
            elif item.kind == "leave":
                finish(AttachResult("left"))
            elif item.kind == "help":
                err.put(help_text(escape).encode() if crlf else help_text(escape).replace("\r", "").encode())
            else:
                sends.put_nowait(item)
        if not data:
            eof.set()

    def on_readable() -> None:
        try:
            data = os.read(stdin, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the terminal hung up
            loop.remove_reader(stdin)
            finish(AttachResult("hangup", str(exc)))
            return
        if not data:
            loop.remove_reader(stdin)
            if raw:  # a terminal that reads as ended has gone away
                finish(AttachResult("hangup", "the terminal closed"))
                return
        handle(data)

    async def read_file() -> None:
        """stdin a regular file (or /dev/null), which epoll cannot watch: it never blocks."""
        while not done.done():
            data = await asyncio.to_thread(os.read, stdin, READ_SIZE)
            handle(data)
            if not data:
                return

    async def linger_after_eof() -> None:
        await eof.wait()
        await sends.join()  # the script's last lines are sent, then the node's answer awaited
        while not done.done():
            quiet = loop.time() - out.last
            if quiet >= linger:
                finish(AttachResult("eof"))
                return
            await asyncio.sleep(linger - quiet)

    # -- before: banner, raw mode, signals -------------------------------------------------
    print_banner = banner(session.node, session.description, escape=escape,
                          read_only=None if writable else read_only)
    err.put((print_banner + "\n").encode())  # before raw mode: the terminal still ends lines itself
    saved_tty = termios.tcgetattr(stdin) if raw else None
    saved_signals: dict[int, Any] = {}
    tasks: list[asyncio.Task[Any]] = []
    reader_added = False
    unsubscribe: Callable[[], None] | None = None
    try:
        if saved_tty is not None:
            await out.drain()  # the banner before raw mode, as a cooked terminal writes it
            tty.setraw(stdin, termios.TCSADRAIN)

        def on_signal(signum: int, _frame: Any) -> None:
            if signum == signal.SIGWINCH:
                loop.call_soon_threadsafe(lambda: tasks.append(loop.create_task(resize())))
            else:
                loop.call_soon_threadsafe(finish, AttachResult("signal", signal.Signals(signum).name, signum))

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGWINCH):
                saved_signals[sig] = signal.signal(sig, on_signal)

        # -- attached ---------------------------------------------------------------------
        # History and subscription in one step of the loop: nothing printed in between is lost.
        out.put(_replay(session.history(), replay))
        unsubscribe = session.subscribe(on_item)
        if session.state == "closed":
            finish(AttachResult("closed", "the console is closed"))
        sending = loop.create_task(sender())
        tasks.append(sending)
        if raw:
            tasks.append(loop.create_task(resize()))
        try:
            loop.add_reader(stdin, on_readable)
            reader_added = True
        except (PermissionError, OSError, ValueError):  # a regular file: read it, it never blocks
            tasks.append(loop.create_task(read_file()))
        if not raw:
            tasks.append(loop.create_task(linger_after_eof()))
        result = await done
        if result.how in ("left", "eof"):  # keys typed before ~. still go, in order
            sends.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(sending), 5.0)
        return result
    finally:
        if reader_added:
            loop.remove_reader(stdin)
        if unsubscribe is not None:
            unsubscribe()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await out.drain()
        if saved_tty is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved_tty)
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        text = f"Left {visible(session.node)}'s console.\n"
        if notes_to_stdout and not out.ends_line:
            text = "\n" + text
        err.put(text.encode())
        await out.close()
        if err is not out:
            await err.close()


def holder_text(session: AttachableSession, error: object = "") -> str:
    """Who holds the console: a viewer of this process by name, else the BMC's other client
    (with the BMC's session number when the error gives it)."""
    if session.holder:
        return visible(session.holder)
    m = re.search(r"\((BMC session 0x[0-9a-fA-F]+)\)", str(error or session.error or ""))
    return "another client of the BMC" + (f" ({m.group(1)})" if m else "")


def _ask(question: str, stdin: int, stderr: int) -> bool:
    """A yes/no question on the terminal stdin reads from (opened afresh, as ssh asks), else on
    ``stderr``; the answer read from ``stdin`` (a cooked terminal: one line).  True for y/yes."""
    try:
        fd = os.open(os.ttyname(stdin), os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    try:
        _write_all(fd if fd >= 0 else stderr, question.encode())
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        answer = os.read(stdin, 1024)
    except OSError:
        return False
    return answer.strip().lower() in (b"y", b"yes")


def _say(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        _write_all(fd, (visible(text, newlines=True) + "\n").encode())


async def attach_session(session: AttachableSession, *, who: str, read_only: bool | str | None = None,
                         force: bool = False, journal: Any = None, stdin: int = 0, stdout: int = 1,
                         stderr: int = 2, **options: Any) -> AttachResult:
    """The whole attach as an operator meets it: become the writer (or watch), attach, let go.

    A console someone else holds (another viewer, or another client of the BMC) is never
    taken silently: with ``force`` it is taken (saying from whom); else, with a terminal
    on ``stdin``, the operator is asked "held by X; take it over? [y/N]"; without one the
    result is ``held``.  ``read_only`` (True or the reason) only watches.  ``journal`` (a
    :class:`~console.ops.journal.Journal`) gets a ``console`` entry for the attach (or
    watch), a takeover and the detach.  ``options`` go to :func:`attach`.
    """
    node = session.node
    reason = ("read-only console" if read_only is True else read_only) or None
    writable = reason is None

    def journal_write(step: str, detail: str) -> None:
        if journal is not None:
            try:
                journal.write(action="console", node=node, step=step, result="ok", detail=detail)
            except OSError as exc:  # the journal's trouble must not keep the operator off the console
                log.warning("console %s: not journalled: %s", node, exc)

    if session.state == "lost":  # never connected: say why rather than retry for ever
        return AttachResult("unreachable", f"cannot reach {node}'s console: {session.error}")
    if session.state == "closed":
        return AttachResult("closed", f"{node}'s console is closed")
    if not writable and session.state == "busy":
        return AttachResult("held", f"{node}'s console is held by {holder_text(session)}; "
                                    "a read-only console does not take it over")
    acquired = False
    try:
        if writable:
            try:
                await session.acquire(who)
                acquired = True
            except ConsoleBusy as exc:
                holder = holder_text(session, exc)
                if not force:
                    if not os.isatty(stdin):
                        return AttachResult("held", f"{node}'s console is held by {holder}")
                    question = f"{node}'s console is held by {holder}; take it over? [y/N] "
                    if not await asyncio.to_thread(_ask, visible(question), stdin, stderr):
                        return AttachResult("declined", f"left {node}'s console to {holder}")
                else:
                    _say(stderr, f"{node}'s console is held by {holder}: taking it over")
                try:
                    await session.acquire(who, force=True)
                except DriverError as exc2:
                    return AttachResult("held", f"could not take {node}'s console over: {exc2}")
                acquired = True
                journal_write("takeover", f"from {holder}")
            except DriverError as exc:
                return AttachResult("unreachable", str(exc))
        journal_write("attach" if writable else "watch",
                      session.description + ("" if writable else f"; read-only: {reason}"))
        result = await attach(session, who=who, writable=writable, read_only=reason,
                              stdin=stdin, stdout=stdout, stderr=stderr, **options)
        journal_write("detach", result.how + (f": {result.detail}" if result.detail else ""))
        return result
    finally:
        if acquired:
            with contextlib.suppress(DriverError):
                await session.release(who)
