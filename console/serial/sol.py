"""IPMI Serial-over-LAN as a :class:`~console.serial.stream.ConsoleStream`, through pyghmi.

pyghmi's :class:`pyghmi.ipmi.console.Console` is driven by whichever thread calls
``Session.wait_for_rsp``: packets are received by pyghmi's own I/O thread, but
decoded, acknowledged and handed to the console's callback only inside that call.
This module keeps one **pump thread** that calls it while any SOL stream is open
(started with the first, joined after the last), woken as soon as a packet is
queued, so every console's output flows without a caller waiting.  A console's
callback hands bytes to the stream's asyncio loop with ``call_soon_threadsafe``;
unread output is bounded (:data:`MAX_UNREAD`, oldest dropped, as a UART overrun
would).  Keys and breaks are sent from the pump thread without waiting for the
BMC's acknowledgement (unacknowledged packets are sent again each second, and after
five sends the stream is lost); the calls that wait for an answer (activation,
deactivation, logout) run on a small thread pool.  The event loop never blocks, and an
open has one deadline for all of it: a pump held up by a BMC that stopped answering fails
the open in time (saying where the pump is stuck), and a console built after its stream
gave up is logged out on a thread of its own.

Beyond stock pyghmi:

* A BMC that deactivates the payload says so with bit 4 of the operation/status byte
  (IPMI 2.0 table 15-2), with or without a NACK; pyghmi only looks at it in a NACK
  that answers its own packet, so a takeover by another client went unnoticed until
  the next keepalive (about 29 s).  The console here reports it at once:
  :class:`~console.serial.stream.ConsoleLost`.
* A held payload (completion code 80h) without ``force`` raises
  :class:`~console.serial.stream.ConsoleBusy` naming the session that holds it (Get
  Payload Instance Info); with ``force`` pyghmi deactivates it first.
* **The BMC's first packets are not lost.**  A BMC sends the first SOL data (its replay of
  recent output) right behind its answer to Activate Payload.  pyghmi installs the
  console's SOL handler only after the thread that asked has read that answer, while
  packets are processed by whichever thread pumps first (here the pump, or the activating
  thread itself), and drops a SOL packet for a session without a handler, unacknowledged:
  the console saw nothing until the BMC's retransmission (1 s on the lab, after which a
  short reimage's console had already been closed, empty).  Here the handler is installed
  before Activate Payload is sent; SOL packets that arrive before the answer is read are
  kept and handled, in order, once the payload is active.
* **A session of its own.**  pyghmi would reuse one RMCP+ session for every console with
  the same BMC and credentials; a second console of this process on the same node would
  then activate SOL on its sibling's session (the BMC cannot tell them apart) and take its
  packets.  Each stream gets its own session (pyghmi's session reuse is keyed on Kg, which
  defaults to the password: each stream passes the password as Kg, as a key that equals
  only itself), and logs it out when it closes, so no BMC session slot leaks.

Credentials come from the site's secrets and go only to pyghmi, never to a log or an
error message.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from console.errors import AuthFailed, DriverError, Timeout, Unreachable
from console.secrets import Secrets
from console.serial.stream import ConsoleBusy, ConsoleLost, ConsoleTaken, Unread
from console.text import visible
from inventory.model import Node

__all__ = ["SolStream", "MAX_UNREAD", "OPEN_TIMEOUT"]

log = logging.getLogger(__name__)

#: unread output kept per stream; beyond it the oldest bytes are dropped (an overrun)
MAX_UNREAD = 1024 * 1024
#: largest chunk one read returns
MAX_CHUNK = 16 * 1024
#: seconds to log in and activate the payload
OPEN_TIMEOUT = 10.0
#: the pump's round when nothing arrives: pyghmi's timers (login retransmits, keepalives) run this often
_PUMP_ROUND = 0.1
#: seconds after which a key press still waiting for the pump is logged, with where the pump is
SLOW_SEND = 3.0
#: seconds the pump's idle round waits for pyghmi's I/O thread to answer its wake
IDLE_WAKE = 0.5
#: seconds before an unacknowledged SOL packet is sent again, and how many sends before the BMC is gone
_SOL_RETRY = 1.0
_SOL_TRIES = 5

_BUSY_TEXT = "SOL Session active for another client"
#: what the stream says when the BMC deactivated the payload under it (a takeover, or the BMC)
_DEACTIVATED_TEXT = "the BMC deactivated SOL (another client took it over, or the BMC ended it)"
_AUTH_TEXTS = ("Unauthorized name", "Incorrect password", "Invalid RAKP4 integrity", "Unauthorized role",
               "Invalid username")


# ----------------------------------------------------------------------------- the pump
class _NotifyingDeque(collections.deque):
    """pyghmi's queue of sessions with packets to process, which also wakes the pump."""

    def __init__(self, items: Any, wake: threading.Event) -> None:
        super().__init__(items)
        self.wake = wake

    def append(self, item: Any) -> None:
        super().append(item)
        self.wake.set()


class _Pump:
    """The one thread that runs pyghmi's event loop while SOL streams are open.

    It sleeps on an event that pyghmi's I/O thread sets when a packet is queued (the
    queue is swapped for a :class:`_NotifyingDeque`), so output and acknowledgements
    are handled as they arrive; pyghmi's own wait misses a packet that arrived just
    before it started waiting until a retransmission timer fires (docs/protocols.md).
    Sends (keys, breaks) run on this thread too and never wait for acknowledgements
    (the console class below retransmits from :meth:`tick`); calls that do wait for an
    answer (activation, deactivation, logout) run on :attr:`io`, a small thread pool.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.wake = threading.Event()
        self._calls: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]] = collections.deque()
        self.consoles: set[Any] = set()
        self.io: concurrent.futures.ThreadPoolExecutor | None = None
        self.unanswered = 0  # idle wakes pyghmi's I/O thread did not answer in time (_poller_for)

    def acquire(self) -> None:
        from pyghmi.ipmi.private import session as pyghmi_session

        with self._lock:
            self._users += 1
            if not isinstance(pyghmi_session.sessionqueue, _NotifyingDeque):
                old = pyghmi_session.sessionqueue
                pyghmi_session.sessionqueue = _NotifyingDeque(old, self.wake)
                while old:  # queued by pyghmi's I/O thread between the copy and the swap
                    pyghmi_session.sessionqueue.append(old.popleft())
            if not getattr(pyghmi_session._poller, "bounded_on_the_pump", False):
                pyghmi_session._poller = self._poller_for(pyghmi_session._poller)
            if self.io is None:
                self.io = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="sol-io")
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,), name="sol-pump", daemon=True)
                self._thread.start()

    def _poller_for(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """pyghmi's ``_poller`` (is a packet waiting?), with the pump's idle look bounded.

        pyghmi's own queues an event for its I/O thread, wakes that thread (which then also
        ``select``s again, now with the sockets of sessions opened since), and waits for the
        event with no time limit, even for ``timeout=0``.  A wake that went unanswered held
        the pump, and every console's keys and opens with it, for ten seconds and more
        (seen under load).  On the pump thread this does the same, but always sends the
        wake and waits at most :data:`IDLE_WAKE`: packets wake the pump themselves
        (:class:`_NotifyingDeque`)."""
        from pyghmi.ipmi.private import session as pyghmi_session

        def poller(timeout: float = 0) -> Any:
            if timeout != 0 or threading.current_thread() is not self._thread:
                return original(timeout=timeout)
            if pyghmi_session.sessionqueue:
                return pyghmi_session.sessionqueue
            answered = threading.Event()
            pyghmi_session.ioqueue.append((pyghmi_session._monotonic_time(), answered, None))
            sock = pyghmi_session.iosockets[0]
            try:
                getattr(sock, "fd", sock).sendto(b"\x01", (pyghmi_session.myself, sock.getsockname()[1]))
            except OSError:  # the I/O thread still finds the event on its next round
                pass
            if not answered.wait(IDLE_WAKE):
                self.unanswered += 1
                if self.unanswered == 1 or self.unanswered % 100 == 0:
                    log.warning("SOL: pyghmi's I/O thread left %d wakes unanswered (alive: %s)", self.unanswered,
                                getattr(pyghmi_session.iothread, "is_alive", lambda: None)())
            return pyghmi_session.sessionqueue

        poller.bounded_on_the_pump = True  # type: ignore[attr-defined]
        return poller

    def release(self) -> None:
        """Drop a user; the last one stops the thread and the pool (call off the event loop)."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread, self._thread = self._thread, None
            io, self.io = self.io, None
            self._stop.set()
            self.wake.set()
        thread.join(timeout=5)
        if io is not None:
            io.shutdown(wait=True)

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn`` on the pump thread; its result as a future."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.append((fn, fut))
        self.wake.set()
        return fut

    def where(self) -> str:
        """The pump thread's stack, for a log line when it is stuck."""
        thread = self._thread
        frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
        return "".join(traceback.format_stack(frame)) if frame is not None else "(not running)"

    def _run(self, stop: threading.Event) -> None:
        from pyghmi.ipmi.private import session as pyghmi_session

        while not stop.is_set():
            self.wake.wait(_PUMP_ROUND)
            self.wake.clear()
            while self._calls and not stop.is_set():
                fn, fut = self._calls.popleft()
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:
                        fut.set_exception(exc)
            if stop.is_set():
                break
            try:
                pyghmi_session.Session.wait_for_rsp(timeout=0)
                now = time.monotonic()
                for console in list(self.consoles):
                    console.tick(now)
            except Exception:  # a console's callback failed: that console's trouble, not the pump's
                log.exception("SOL: pyghmi event loop")
        with self._lock:
            if self._thread is not None:  # a new user started the next pump: the calls are its own
                return
            while self._calls:  # stopped with no user left: nobody will run these
                self._calls.popleft()[1].cancel()

    async def run(self, fn: Callable[[], Any], node: str) -> Any:
        """``fn()`` on the pump thread, awaited; a call the stopping pump dropped is a lost console,
        never a cancellation of the task that waits for it."""
        fut = self.call(fn)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if fut.cancelled() and (task is None or not task.cancelling()):
                raise ConsoleLost(f"{node}: SOL stopped before the call ran") from None
            raise


_pump = _Pump()

class _OwnKey(bytes):
    """A BMC key (Kg) equal only to itself: pyghmi's session reuse (same BMC, user, password
    and Kg) then never hands this stream's session to another console (module docstring).
    Its bytes are the password, which is what Kg is when a BMC has none set (IPMI 2.0
    section 13.31), so the login is the same."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:  # never the password
        return "<BMC key>"

    __str__ = __repr__


def _console_class() -> type:
    """pyghmi's Console with the additions the module docstring lists (imported lazily)."""
    global _Console
    if _Console is not None:
        return _Console
    from pyghmi.ipmi import console as pyghmi_console
    from pyghmi.ipmi.private import session as pyghmi_session

    class Console(pyghmi_console.Console):
        _sent_at = 0.0
        _tries = 0
        discarded = False  # built for a stream that gave up waiting: never activated, logged out

        def __init__(self, *args: Any, on_active: Callable[[], None], **kwargs: Any) -> None:
            self.on_active: Callable[[], None] | None = on_active  # called once the payload is active
            self._activating = threading.Lock()
            # SOL packets that came before the answer to Activate Payload was read (None: none
            # are held back); the lock keeps them, and those after, in order across threads.
            self._early: list[Any] | None = None
            self._sol_lock = threading.RLock()
            super().__init__(*args, **kwargs)

        def _got_session(self, response: Any) -> None:
            # Activation waits for the BMC's answer: not on the pump thread.
            io = _pump.io
            if io is None or threading.current_thread().name != "sol-pump":
                self._activate(response)
            else:
                io.submit(self._activate, response)

        def _activate(self, response: Any) -> None:
            with self._activating:
                if self.discarded:
                    return
                try:
                    self._activate_payload(response)
                except Exception as exc:  # e.g. NotImplementedError for a SOL port other than the session's
                    self._print_error(f"SOL activation failed: {type(exc).__name__}: {exc}")
                    return
            if self.connected and not self.broken and self.on_active is not None:
                callback, self.on_active = self.on_active, None
                callback()

        def discard(self) -> None:
            """Undo a console its stream gave up on (on a thread of its own): let its login and
            any activation under way end, deactivate what was activated, and log out, so the
            BMC keeps no session of ours.  Pumps pyghmi itself: the pump may have stopped."""
            self.out_handler = lambda _data: None
            self.on_active = None
            session = self.ipmi_session
            deadline = time.monotonic() + OPEN_TIMEOUT
            while (session is not None and session.logging and not session.broken
                   and time.monotonic() < deadline):
                pyghmi_session.Session.wait_for_rsp(timeout=0.05)
            with self._activating:
                try:
                    if self.activated:
                        self.close()
                    if session is not None and session.logged:
                        session.logout()
                except Exception:  # a BMC gone by now: nothing left to end
                    pass
                self.broken = True

        def _activate_payload(self, response: Any) -> None:
            """pyghmi's ``Console._got_session``, with the SOL handler in place before the request
            (see the module docstring: the BMC's first packet follows its answer at once)."""
            if "error" in response:
                self._print_error(response["error"])
                return
            session = self.ipmi_session
            if session is None:  # still in pyghmi's constructor: it calls again
                self.callgotsession = response
                return
            previous = session.sol_handler  # none on a session of our own; pyghmi tells it if there is
            with self._sol_lock:
                self._early = []
            session.sol_handler = self._got_sol_payload
            try:
                rsp = session.raw_command(netfn=6, command=0x48, data=(1, 1, 192, 0, 0, 0))
                if rsp.get("code") == 0x80 and self.force_session:
                    session.raw_command(netfn=6, command=0x49, data=(1, 1, 0, 0, 0, 0))  # its holder's, any
                    rsp = session.raw_command(netfn=6, command=0x48, data=(1, 1, 192, 0, 0, 0))
                refused = _activation_refused(rsp)
                if refused:
                    self._print_error(refused)
                    return
                data = rsp["data"]
                self.activated = True
                self.maxoutcount = (data[5] << 8) + data[4]
                ports = (self.port, struct.unpack("<H", struct.pack(">H", self.port))[0])  # either byte order
                if data[8] + (data[9] << 8) not in ports:
                    raise NotImplementedError("Non-standard SOL Port Number")
                if previous is not None and getattr(previous, "__self__", None) is not self:
                    previous({"error": "Session Disconnected"})
                self.keepaliveid = session.register_keepalive(cmd={"netfn": 6, "command": 0x4B, "data": (1, 1)},
                                                              callback=self._got_payload_instance_info)
                with self._sol_lock:
                    self.connected = True
                    early, self._early = self._early or [], None
                    for payload in early:
                        self._on_sol_payload(payload)
            finally:
                if not self.connected:
                    with self._sol_lock:
                        self._early = None
                    if session.sol_handler == self._got_sol_payload:
                        session.sol_handler = None
            self._sendpendingoutput()

        def _got_sol_payload(self, payload: Any) -> None:
            with self._sol_lock:
                if self._early is not None:  # activating: handled once the payload is active
                    self._early.append(payload)
                    return
                self._on_sol_payload(payload)

        def _on_sol_payload(self, payload: Any) -> None:
            super()._got_sol_payload(payload)
            if (not isinstance(payload, dict) and len(payload) >= 4 and payload[3] & 0x10
                    and not self.broken):
                self.activated = False
                self._print_error(_DEACTIVATED_TEXT)

        def _sendoutput(self, output: Any, sendbreak: bool = False) -> None:
            # pyghmi's waits here for the acknowledgement, pumping; ours sends and returns,
            # and tick() retransmits.
            seq: int = getattr(self, "myseq", 0)
            self.myseq = (seq + 1) & 0xF or 1
            if isinstance(output, str):
                output = output.encode("utf-8")
            payload = bytearray((self.myseq, 0, 0, 0x10 if sendbreak else 0)) + output
            self.lasttextsize = len(output)
            self.awaitingack = True
            self.lastpayload = payload
            self._sent_at, self._tries = time.monotonic(), 1
            self.send_payload(payload, retry=False, needskeepalive=not output)

        def tick(self, now: float) -> None:
            if not self.awaitingack or self.broken or now - self._sent_at < _SOL_RETRY:
                return
            if self._tries >= _SOL_TRIES:
                self.awaitingack = False
                self._print_error("the BMC stopped acknowledging")
                return
            self._tries += 1
            self._sent_at = now
            try:
                self.send_payload(self.lastpayload, retry=False)
            except Exception as exc:
                self._print_error(str(exc))

    _Console = Console
    return Console


_Console: type | None = None


_SOL_ACTIVATE_CODES = {0x81: "SOL is disabled", 0x82: "Maximum SOL session count reached",
                       0x83: "Cannot activate payload with encryption",
                       0x84: "Cannot activate payload without encryption"}


def _activation_refused(rsp: Any) -> str:
    """Why Activate Payload failed, in pyghmi's words ('' when it did not)."""
    from pyghmi.ipmi.private import constants

    if not isinstance(rsp, dict):
        return "SOL activation: no answer"
    code = rsp.get("code")
    if code == 0xFFFF and "error" in rsp:  # pyghmi's own: no answer ("timeout")
        return str(rsp["error"])
    if code:
        if code in constants.ipmi_completion_codes:
            return str(constants.ipmi_completion_codes[code])
        if code == 0x80:
            return _BUSY_TEXT
        return _SOL_ACTIVATE_CODES.get(code, f"SOL encountered Unrecognized error code {code}")
    if "error" in rsp:
        return str(rsp["error"])
    if len(rsp.get("data") or b"") < 10:
        return "SOL activation: a short answer from the BMC"
    return ""


# ----------------------------------------------------------------------------- the stream
class SolStream:
    """One node's IPMI SOL console (see the module docstring)."""

    def __init__(self, node: Node, secrets: Secrets, *, open_timeout: float = OPEN_TIMEOUT) -> None:
        if node.bmc.protocol != "ipmi":
            raise ValueError(f"{node.name}: SOL needs an IPMI BMC")
        self.node = node.name
        self._bmc = node.bmc
        self._secrets = secrets
        self.description = f"IPMI SOL {node.bmc.address}:{node.bmc.effective_port}"
        self._open_timeout = open_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._console: Any = None
        self._session: Any = None
        self._out = Unread(MAX_UNREAD, MAX_CHUNK)
        self._ready = self._out.ready
        self._active = False
        self._error: DriverError | None = None
        self._closed = False
        self._pumping = False
        self._close_lock = asyncio.Lock()

    # -- called on pyghmi threads -------------------------------------------------------
    def _on_io(self, data: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, data)
        except RuntimeError:  # the loop is closed: nobody reads any more
            pass

    def _on_active(self) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._activated)
            except RuntimeError:
                pass

    # -- on the event loop --------------------------------------------------------------
    def _activated(self) -> None:
        if self._error is None:
            self._active = True
        self._ready.set()

    def _deliver(self, data: Any) -> None:
        if isinstance(data, dict):
            if "error" in data:
                self._fail(str(data["error"]))
            elif "info" in data:
                log.info("%s: SOL: %s", self.node, visible(str(data["info"])))
            self._ready.set()
            return
        if self._closed or not data:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        self._out.put(data)

    def _fail(self, message: str) -> None:
        if self._error is not None or self._closed:
            return
        text = visible(message)
        if not self._active:
            if message == _BUSY_TEXT:
                self._error = ConsoleBusy(f"{self.node}: SOL on {self._where} is held by another client; "
                                          "force takes it over")
            elif any(t in message for t in _AUTH_TEXTS):
                self._error = AuthFailed(f"{self.node}: IPMI login to {self._where} refused: {text}")
            elif message in ("timeout", "Session failed to initialize"):
                self._error = Unreachable(f"{self.node}: no IPMI answer from {self._where}")
            else:
                self._error = ConsoleLost(f"{self.node}: SOL on {self._where} failed: {text}")
        else:
            lost = ConsoleTaken if message == _DEACTIVATED_TEXT else ConsoleLost
            self._error = lost(f"{self.node}: SOL on {self._where} lost: {text}")
        self._active = False

    @property
    def _where(self) -> str:
        return f"{self._bmc.address}:{self._bmc.effective_port}"

    # -- the ConsoleStream interface ----------------------------------------------------
    async def open(self, *, force: bool = False) -> None:
        if self._console is not None:
            raise RuntimeError("SolStream.open called twice")
        self._loop = asyncio.get_running_loop()
        password = (await self._secrets.aresolve(self._bmc.password)).get().encode()
        user = self._bmc.username.encode()
        cls = _console_class()
        await self._loop.run_in_executor(None, _pump.acquire)
        self._pumping = True

        abandoned, handover = threading.Event(), threading.Lock()

        def construct() -> None:
            console = cls(self._bmc.address, user, password, self._on_io, port=self._bmc.effective_port,
                          force=force, on_active=self._on_active, kg=_OwnKey(password))
            with handover:
                if abandoned.is_set():  # open() stopped waiting: nobody will close this one
                    console.discarded = True
                    threading.Thread(target=console.discard, name="sol-io-discard", daemon=True).start()
                    return
                self._console = console
                _pump.consoles.add(console)
                self._session = console.ipmi_session  # this stream's own (the module docstring)

        started = time.monotonic()
        try:
            try:
                # The pump runs pyghmi's calls one after another; one stuck behind a BMC that
                # stopped answering must not hold this open past its deadline.
                await asyncio.wait_for(_pump.run(construct, self.node), self._open_timeout)
            except TimeoutError:
                log.warning("%s: SOL pump busy for %g s; it is at:\n%s", self.node, self._open_timeout,
                            _pump.where())
                raise Timeout(f"{self.node}: SOL on {self._where}: no session after "
                              f"{self._open_timeout:g} s") from None
            except Exception as exc:  # pyghmi raises IpmiException (bad address), socket errors
                raise Unreachable(f"{self.node}: cannot reach {self._where}: "
                                  f"{visible(str(exc)) or type(exc).__name__}") from exc
            finally:
                # Built, failed, timed out or cancelled (a pane closed): from here a console that
                # construct() finishes late is its own to discard.
                with handover:
                    abandoned.set()
            try:
                await asyncio.wait_for(self._wait_active(),
                                       max(0.0, self._open_timeout - (time.monotonic() - started)))
            except TimeoutError:
                raise Timeout(f"{self.node}: SOL on {self._where} not active after "
                              f"{self._open_timeout:g} s") from None
        except BaseException as exc:
            if isinstance(exc, ConsoleBusy):
                exc = ConsoleBusy(f"{exc}{await self._holder()}")
            await self._shutdown(deactivate=True)  # active only when cancelled after activation
            if isinstance(exc, DriverError) and exc is not self._error:
                raise exc from None
            raise
        log.info("%s: SOL active on %s%s", self.node, self._where, " (forced)" if force else "")

    async def _wait_active(self) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if self._active:
                return
            self._ready.clear()
            await self._ready.wait()

    async def _holder(self) -> str:
        """`` (BMC session 0x...)``: who holds the payload, when the BMC says."""
        session = self._session
        if session is None or self._loop is None:
            return ""

        def ask() -> str:
            try:
                rsp = session.raw_command(netfn=6, command=0x4B, data=(1, 1))
            except Exception:
                return ""
            data = bytes(rsp.get("data") or b"") if isinstance(rsp, dict) and not rsp.get("code") else b""
            if len(data) < 4:
                return ""
            owner = struct.unpack("<I", data[:4])[0]
            return f" (BMC session {owner:#010x})" if owner else ""

        try:
            io = _pump.io
            if io is None:
                return ""
            return await asyncio.wait_for(self._loop.run_in_executor(io, ask), 5)
        except TimeoutError:
            return ""

    async def read(self) -> bytes:
        return await self._out.take(lambda: self._closed, lambda: self._error)

    @property
    def dropped(self) -> int:
        """Bytes dropped because nobody read them in time."""
        return self._out.dropped

    def _check_usable(self) -> Any:
        if self._closed:
            raise ConsoleLost(f"{self.node}: SOL stream is closed")
        if self._error is not None:
            raise self._error
        if self._console is None or not self._active:
            raise ConsoleLost(f"{self.node}: SOL is not open")
        return self._console

    async def _send(self, what: str, call: Callable[[Any], None]) -> None:
        console = self._check_usable()
        sending = asyncio.ensure_future(_pump.run(lambda: call(console), self.node))
        try:
            try:
                await asyncio.wait_for(asyncio.shield(sending), SLOW_SEND)
            except TimeoutError:  # a send is a packet: the pump is held up by something else
                log.warning("%s: SOL %s waited %g s for the pump; it is at:\n%s", self.node, what, SLOW_SEND,
                            _pump.where())
                await sending
        except Exception as exc:  # pyghmi: "Session no longer connected"
            self._fail(f"{what}: {exc}")
        finally:
            sending.cancel()
        if self._error is not None:
            raise self._error

    async def write(self, data: bytes) -> None:
        if data:
            await self._send("write", lambda c: c.send_data(bytes(data)))

    async def send_break(self) -> None:
        await self._send("break", lambda c: c.send_break())

    async def resize(self, cols: int, rows: int) -> None:
        """SOL carries no terminal size."""

    async def close(self) -> None:
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._ready.set()
            await self._shutdown(deactivate=True)
            log.info("%s: SOL closed", self.node)

    async def _shutdown(self, *, deactivate: bool) -> None:
        console, self._console = self._console, None
        session, self._session = self._session, None
        loop = self._loop or asyncio.get_running_loop()
        active = self._active
        self._active = False

        def finish() -> None:
            if console is not None:
                _pump.consoles.discard(console)
                console.out_handler = lambda _data: None  # nothing more reaches a closed stream
                try:
                    if deactivate and active:
                        console.close()  # deactivate the payload (one request, waits for the answer)
                    elif console.ipmi_session is not None:
                        console.ipmi_session.unregister_keepalive(console.keepaliveid)
                except Exception:  # a dead BMC: nothing to deactivate
                    pass
                console.broken = True
                handler = getattr(session, "sol_handler", None)
                if handler is not None and getattr(handler, "__self__", None) is console:
                    session.sol_handler = None  # so logout does not deactivate a payload twice
            if session is not None:
                try:
                    session.logout()
                except Exception:
                    pass

        # Once begun, the ending runs to its end, cancelled or not (a pane closed, a follower
        # done with the node): a logout still queued for an I/O thread when the task waiting
        # for it was cancelled would otherwise never be sent, and the BMC would keep the
        # session until it expires (a minute, of a handful it allows).
        pumping, self._pumping = self._pumping, False
        io = _pump.io  # held open by this stream's use of the pump, if it has one
        finished = io.submit(finish) if io is not None else None

        def end() -> None:
            try:
                if finished is not None:
                    finished.exception()  # finish() keeps its own errors
                else:
                    finish()
            finally:
                if pumping:
                    _pump.release()

        await asyncio.shield(loop.run_in_executor(None, end))
