"""Serial consoles through the site service: one SOL/SSH session per node for every operator.

The service keeps one :class:`~console.serial.broker.ConsoleBroker` (:class:`ServiceConsoles`):
at most one console session per node, whoever watches it (TUI panes, attached terminals,
SSH front-door sessions).  A client asks over the protocol (``console_open``, then
``console_acquire`` / ``console_write`` / ``console_break`` / ``console_resize`` /
``console_release`` / ``console_close``) and is sent the console's history, then its live
output and events.  Roles are enforced here: a ``viewer`` watches only, an ``operator``
types (``console-input``), only an ``admin`` forces a takeover from another holder
(``console-force``).  Holders are named by the service, ``alice (ssh)``, so every
operator's screen says who types.

The service journals the consoles itself, under the name it authenticated (``alice
(ssh)``), so a client that lies or crashes cannot keep them out of the journal: a
``console`` entry when a client starts watching a node's console (``watch``), becomes
its writer (``attach``; a forced one is first a ``takeover`` naming whom it was taken
from), lets the writer go but watches on (``release``), and stops watching, itself or
because its connection ended (``detach``).  Its clients journal none of these.

Output to a slow client is bounded: each client's view of a console keeps at most
:data:`VIEW_BUFFER` bytes waiting (the oldest dropped, and the client told how many);
it is sent only while the client's queue is short, so a console never fills it and a
slow reader never holds the service up.  A console nobody watches any more is closed
after :data:`LINGER_S` seconds (its BMC session logged out).

:class:`RemoteConsoleBroker` and :class:`RemoteConsoleSession` are the client side, with
the interface of :class:`~console.serial.broker.ConsoleBroker` /
:class:`~console.serial.broker.ConsoleSession`, so :func:`console.serial.attach.attach_session`
and the TUI's console panes work on them unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import DriverError, FleetError, SecretError
from console.ops.journal import Journal
from console.serial.broker import RING_BYTES, ConsoleBroker, ConsoleEvent, ConsoleSession
from console.serial.stream import ConsoleBusy, ConsoleLost
from console.service import protocol as p
from console.service.client import ServiceClient, ServiceGone, ServiceRefused
from console.service.identity import Identity, allows, needed_role
from console.text import visible

if TYPE_CHECKING:
    from console.service.server import SiteService, _Session

__all__ = ["ServiceConsoles", "RemoteConsoleBroker", "RemoteConsoleSession", "ConsoleRefused", "holder_name",
           "VIEW_BUFFER", "LINGER_S"]

log = logging.getLogger(__name__)

#: console output waiting for one client, at most (bytes); past it the oldest is dropped
VIEW_BUFFER = 256 * 1024
#: console messages are sent to a client only while its queue holds fewer than this
QUEUE_ROOM = p.QUEUE_MAX // 4
#: how soon a view held back by a full queue tries again (seconds)
RETRY_S = 0.05
#: events kept for a client that reads too slowly (the oldest dropped past it)
VIEW_EVENTS = 256
#: how long a console nobody watches stays open (seconds): a pane closed and reopened keeps it
LINGER_S = 30.0
#: how long a console request may take (a forced takeover reopens the BMC's SOL: longer)
CONSOLE_OP_S = 15.0
CONSOLE_FORCE_S = 60.0


class ConsoleRefused(DriverError):
    """The site service refused a console request (a role that does not allow it, ...)."""

    title = "console refused"


def holder_name(identity: Identity) -> str:
    """How the service names a console holder: ``alice (ssh)``."""
    return f"{identity.name} ({identity.via})"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("console data that is not base64") from None


# ================================================================== the service's side
class _View:
    """One client's subscription to one console: what waits for it, bounded, in order."""

    def __init__(self, consoles: ServiceConsoles, s: _Session, session: ConsoleSession) -> None:
        self.consoles = consoles
        self.s = s
        self.node = session.node
        self.session = session
        #: output (bytearray, coalesced) and event messages, in order
        self.items: deque[bytearray | p.ConsoleEventMsg] = deque()
        self.size = 0
        self.dropped = 0
        self.scheduled: asyncio.TimerHandle | asyncio.Handle | None = None
        self.unsubscribe: Callable[[], None] | None = None

    def feed(self, item: bytes | ConsoleEvent) -> None:
        """The session's subscriber: never blocks, never raises."""
        if isinstance(item, bytes | bytearray):
            if not item:
                return
            last = self.items[-1] if self.items else None
            if isinstance(last, bytearray) and len(last) < p.CONSOLE_CHUNK:
                last += item
            else:
                self.items.append(bytearray(item))
            self.size += len(item)
            self._trim()
        else:
            self.items.append(self.consoles.event_message(self.s, self.session, item))
            events = [i for i in self.items if isinstance(i, p.ConsoleEventMsg)]
            if len(events) > VIEW_EVENTS:
                self.items.remove(events[0])
        self._schedule(0.0)

    def _trim(self) -> None:
        while self.size > VIEW_BUFFER:
            oldest = next((i for i in self.items if isinstance(i, bytearray)), None)
            if oldest is None:
                return
            cut = min(len(oldest), self.size - VIEW_BUFFER)
            del oldest[:cut]
            self.size -= cut
            self.dropped += cut
            if not oldest:
                self.items.remove(oldest)

    def _schedule(self, delay: float) -> None:
        if self.scheduled is not None:
            return
        loop = asyncio.get_running_loop()
        self.scheduled = loop.call_soon(self.flush) if delay <= 0 else loop.call_later(delay, self.flush)

    def flush(self) -> None:
        self.scheduled = None
        s = self.s
        if s.dropped is not None or self.unsubscribe is None:
            return
        if s.queue.qsize() >= QUEUE_ROOM:  # the client reads slowly: hold on (bounded) and look again
            self._schedule(RETRY_S)
            return
        send = self.consoles.service._send
        while self.items:
            item = self.items.popleft()
            if isinstance(item, bytearray):
                self.size -= len(item)
                for i in range(0, len(item), p.CONSOLE_CHUNK):
                    send(s, p.ConsoleOutput(node=self.node, data=_b64(bytes(item[i:i + p.CONSOLE_CHUNK])),
                                            dropped=self.dropped))
                    self.dropped = 0
            else:
                send(s, item)
            if s.queue.qsize() >= QUEUE_ROOM and self.items:
                self._schedule(RETRY_S)
                return
        if self.dropped:  # output dropped and nothing after it yet: say so now
            send(s, p.ConsoleOutput(node=self.node, dropped=self.dropped))
            self.dropped = 0

    def close(self) -> None:
        if self.unsubscribe is not None:
            self.unsubscribe()
            self.unsubscribe = None
        if self.scheduled is not None:
            self.scheduled.cancel()
            self.scheduled = None
        self.items.clear()


class ServiceConsoles:
    """The site service's consoles: one broker, every client's views, holders by session."""

    def __init__(self, service: SiteService, *, linger: float = LINGER_S) -> None:
        self.service = service
        self.linger = linger
        self._broker: ConsoleBroker | None = None
        #: (client session id, node) -> that client's view of the node's console
        self._views: dict[tuple[str, str], _View] = {}
        #: node -> the client session that holds (types on) it
        self._holder_sid: dict[str, str] = {}
        #: node -> the client session letting go of it now (its detach event is its own)
        self._releasing: dict[str, str] = {}
        self._linger: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def broker(self) -> ConsoleBroker:
        if self._broker is None:
            self._broker = ConsoleBroker(self.service.ctx)
        return self._broker

    # ------------------------------------------------------------ who is who
    def holders(self) -> dict[str, str]:
        """node -> the client session that types on it."""
        return dict(self._holder_sid)

    def watching(self, sid: str) -> list[str]:
        """The nodes whose console client ``sid`` watches."""
        return sorted(node for (vsid, node) in self._views if vsid == sid)

    def _holds(self, s: _Session, session: ConsoleSession) -> bool:
        return session.holder == holder_name(s.identity) and self._holder_sid.get(session.node) == s.id

    def event_message(self, s: _Session, session: ConsoleSession, event: ConsoleEvent) -> p.ConsoleEventMsg:
        """``event`` as client ``s`` is told of it (whether it is about that client itself)."""
        mine = event.who is not None and event.who == holder_name(s.identity)
        if event.kind in ("attach", "takeover"):
            mine = mine and self._holder_sid.get(session.node) == s.id
        elif event.kind == "detach":
            mine = mine and self._releasing.get(session.node) == s.id
        else:
            mine = False
        return p.ConsoleEventMsg(node=session.node, kind=event.kind, who=event.who, who_is_you=mine,
                                 detail=event.detail, time=event.time, state=session.state, holder=session.holder,
                                 holder_is_you=self._holds(s, session), error=session.error)

    # ------------------------------------------------------------ requests
    async def answer(self, s: _Session, msg: Any) -> dict[str, Any]:
        """Answer one console request: ``{"ok": true, ...}`` or ``{"ok": false, "kind": ...,
        "error": ...}`` (kind ``refused``, ``busy``, ``lost``, ``no_console`` or ``error``),
        so a client raises what a local session would have."""
        try:
            return await self._answer(s, msg)
        except _Refused as exc:
            return {"ok": False, "kind": "refused", "error": str(exc)}
        except ConsoleBusy as exc:
            return {"ok": False, "kind": "busy", "error": str(exc)}
        except ConsoleLost as exc:
            return {"ok": False, "kind": "lost", "error": str(exc)}
        except (DriverError, SecretError) as exc:
            kind = "no_console" if type(exc).__name__ == "NoConsole" else "error"
            return {"ok": False, "kind": kind, "error": str(exc)}

    def _check(self, s: _Session, what: str) -> None:
        if not allows(s.identity.role, what):
            need = needed_role(what) or "?"
            raise _Refused(f"refused by the site service: {s.identity.name} is {s.identity.role}; "
                           f"{'forcing a console takeover' if what == 'console-force' else 'typing on a console'} "
                           f"needs the {need} role")

    def _view(self, s: _Session, node: str) -> _View:
        view = self._views.get((s.id, node))
        if view is None:
            raise _Refused(f"{visible(node)}: this client does not watch that console (open it first)")
        return view

    async def _answer(self, s: _Session, msg: Any) -> dict[str, Any]:
        if self._closed or self.service.stopping is not None:
            raise ConsoleLost("the site service is stopping: its consoles are closed")
        if isinstance(msg, p.ConsoleOpen):
            return await self._open(s, msg.node)
        if isinstance(msg, p.ConsoleClose):
            await self._close_view(s, msg.node)
            return {"ok": True}
        if isinstance(msg, p.ConsoleAcquire):
            return await self._acquire(s, msg.node, msg.force)
        if isinstance(msg, p.ConsoleRelease):
            await self._release(s, msg.node)
            return {"ok": True}
        if isinstance(msg, p.ConsoleWrite | p.ConsoleBreak):
            self._check(s, "console-input")
            session = self._view(s, msg.node).session
            if not self._holds(s, session):
                holder = f"{visible(session.holder)} holds it" if session.holder else "nobody holds it"
                raise ConsoleBusy(f"{visible(msg.node)}: not the console's writer ({holder}); acquire it first")
            if isinstance(msg, p.ConsoleWrite):
                await session.write(holder_name(s.identity), _unb64(msg.data))
            else:
                await session.send_break(holder_name(s.identity))
            return {"ok": True}
        if isinstance(msg, p.ConsoleResize):
            session = self._view(s, msg.node).session
            if not allows(s.identity.role, "console-input") or not self._holds(s, session):
                return {"ok": True, "ignored": "only the console's writer sets its size"}
            await session.resize(msg.cols, msg.rows)
            return {"ok": True}
        raise _Refused(f"not a console request: {msg.type}")

    async def _open(self, s: _Session, node: str) -> dict[str, Any]:
        if not allows(s.identity.role, "watch"):
            raise _Refused(f"refused by the site service: {s.identity.name} may not watch consoles")
        key = (s.id, node)
        session = await self.broker.session(node)  # NoConsole for a node without one
        if s.dropped is not None or self._closed:
            raise ConsoleLost("the client went away")
        old = self._views.pop(key, None)
        if old is not None:  # opened again: history and state again, one subscription
            old.close()
        else:
            self._journal(s, node, "watch", session.description)
        handle = self._linger.pop(node, None)
        if handle is not None:
            handle.cancel()
        view = _View(self, s, session)
        # state and history, then the subscription, in one step of the loop: nothing is lost between
        self.service._send(s, p.ConsoleOpened(node=node, description=session.description, state=session.state,
                                              holder=session.holder, holder_is_you=self._holds(s, session),
                                              error=session.error, history=_b64(session.history())))
        view.unsubscribe = session.subscribe(view.feed)
        self._views[key] = view
        log.info("console %s watched by %s", visible(node), visible(holder_name(s.identity)))
        return {"ok": True, "state": session.state}

    async def _acquire(self, s: _Session, node: str, force: bool) -> dict[str, Any]:
        self._check(s, "console-input")
        session = self._view(s, node).session
        me = holder_name(s.identity)
        if self._holds(s, session):
            return {"ok": True, "holder": me}
        other_sid = self._holder_sid.get(node)
        other_session = other_sid is not None and other_sid != s.id and other_sid in self._live_sids()
        held_elsewhere = (session.holder not in (None, me) or session.state == "busy"
                          or (session.holder == me and other_session))
        if held_elsewhere and not force:
            who = (f"{visible(session.holder)} (another session)" if session.holder == me
                   else visible(session.holder) if session.holder else "another client of the BMC")
            raise ConsoleBusy(f"{visible(node)}: {who} is typing on this console; force takes it over")
        if held_elsewhere:
            self._check(s, "console-force")
        previous = self._holder_sid.get(node)
        taken_from = (f"{session.holder}, another session" if session.holder == me
                      else session.holder or "another client of the BMC")
        if session.holder == me and previous not in (None, s.id):
            # the same operator from another session: that one lets go first (they are told)
            self._releasing[node] = previous
            try:
                await session.release(me)
            finally:
                self._releasing.pop(node, None)
        self._holder_sid[node] = s.id
        try:
            await session.acquire(me, force=force)
        except BaseException:
            if self._holder_sid.get(node) == s.id:
                if previous is not None and session.holder is not None:
                    self._holder_sid[node] = previous
                else:
                    self._holder_sid.pop(node, None)
            raise
        log.info("console %s held by %s%s", visible(node), visible(me), " (forced)" if held_elsewhere else "")
        if held_elsewhere:
            self._journal(s, node, "takeover", f"from {taken_from}")
        self._journal(s, node, "attach", session.description)
        return {"ok": True, "holder": me}

    def _live_sids(self) -> set[str]:
        return {sid for sid, _node in self._views}

    async def _release(self, s: _Session, node: str, *, closing: bool = False) -> None:
        session = self._views.get((s.id, node))
        if session is None or self._holder_sid.get(node) != s.id:
            return
        del self._holder_sid[node]
        self._releasing[node] = s.id
        try:
            await session.session.release(holder_name(s.identity))
        finally:
            self._releasing.pop(node, None)
        if not closing:
            self._journal(s, node, "release", "no longer the writer; still watching")

    async def _close_view(self, s: _Session, node: str) -> None:
        held = self._holder_sid.get(node) == s.id and (s.id, node) in self._views
        await self._release(s, node, closing=True)
        view = self._views.pop((s.id, node), None)
        if view is not None:
            view.close()
            self._journal(s, node, "detach", "stopped watching" + (" (was the writer)" if held else ""))
        self._maybe_linger(node)

    def _maybe_linger(self, node: str) -> None:
        """Close ``node``'s console after :attr:`linger` seconds if nobody watches it by then."""
        if self._closed or node in self._linger or any(n == node for _sid, n in self._views):
            return
        if node in self._holder_sid:
            return
        loop = asyncio.get_running_loop()
        self._linger[node] = loop.call_later(self.linger, self._expire, node)

    def _expire(self, node: str) -> None:
        self._linger.pop(node, None)
        if self._closed or any(n == node for _sid, n in self._views) or node in self._holder_sid:
            return
        session = self.broker.sessions().get(node)
        if session is not None and session.watchers == 0 and session.holder is None:
            log.info("console %s: nobody watches it; closed", visible(node))
            self._spawn(session.close())

    def _journal(self, s: _Session, node: str, step: str, detail: str) -> None:
        """A ``console`` entry in the site's journal, under the name the service gave ``s``."""
        try:
            Journal(self.service.site.name, operator=holder_name(s.identity)).write(
                action="console", node=node, step=step, result="ok", detail=visible(detail))
        except (OSError, ValueError) as exc:  # the journal's trouble must not keep anyone off a console
            log.warning("console %s: %s not journalled: %s", visible(node), step, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def client_gone(self, s: _Session) -> None:
        """Client ``s`` is gone: its views end, and what it held is let go (others told)."""
        for key in [k for k in self._views if k[0] == s.id]:
            view = self._views.pop(key)
            view.close()
            node = key[1]
            held = self._holder_sid.get(node) == s.id
            if held:
                del self._holder_sid[node]
                self._spawn(view.session.release(holder_name(s.identity)))
            self._journal(s, node, "detach", f"connection ended: {s.dropped or 'disconnected'}"
                          + (" (was the writer)" if held else ""))
            self._maybe_linger(node)

    async def close(self) -> None:
        """Close every console (logging out of its BMC session); idempotent."""
        self._closed = True
        for handle in self._linger.values():
            handle.cancel()
        self._linger.clear()
        for view in self._views.values():
            view.close()
        self._views.clear()
        self._holder_sid.clear()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._broker is not None:
            await self._broker.close()


class _Refused(FleetError):
    """A console request the service will not do (the text says why)."""


# ================================================================== the client's side
def _raise(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply's data, or the error a local session would have raised."""
    if reply.get("ok", False):
        return reply
    text = visible(str(reply.get("error") or "refused by the site service"))[:2000]
    kind = reply.get("kind")
    if kind == "busy":
        raise ConsoleBusy(text)
    if kind == "lost":
        raise ConsoleLost(text)
    if kind == "no_console":
        from console.serial import NoConsole

        raise NoConsole(text)
    if kind == "refused":
        raise ConsoleRefused(text)
    raise DriverError(text)


class RemoteConsoleSession:
    """A node's console in the site service, as a :class:`ConsoleSession` is used.

    ``who`` given to :meth:`acquire`, :meth:`write`, ... is only this process's name for
    itself: the service names the holder (``alice (ssh)``) and decides who may type.
    Events about this client carry that local name again, so an attached terminal or a pane
    knows its own doings from others'."""

    def __init__(self, broker: RemoteConsoleBroker, node: str) -> None:
        self.node = node
        self.description = ""
        self.state = "connecting"
        self.error: str | None = None
        self._broker = broker
        self._holder: str | None = None
        self._holder_is_me = False
        self._me: str | None = None  # the name this process acquired it as
        self._ring = bytearray()
        self._subs: list[Callable[[bytes | ConsoleEvent], None]] = []

    # -- what the service tells ----------------------------------------------------------
    def _opened(self, msg: p.ConsoleOpened) -> None:
        self.description = msg.description
        self.state, self.error = msg.state, msg.error
        self._holder, self._holder_is_me = msg.holder, msg.holder_is_you
        try:
            self._ring = bytearray(_unb64(msg.history)[-RING_BYTES:])
        except ValueError:
            self._ring = bytearray()

    def _output(self, msg: p.ConsoleOutput) -> None:
        try:
            data = _unb64(msg.data) if msg.data else b""
        except ValueError:
            return
        if msg.dropped:
            self._publish(f"\r\n[fleet-console: {msg.dropped} bytes of console output not shown: "
                          "this client read too slowly]\r\n".encode())
        if data:
            self._ring += data
            if len(self._ring) > RING_BYTES:
                del self._ring[: len(self._ring) - RING_BYTES]
            self._publish(data)

    def _event(self, msg: p.ConsoleEventMsg) -> None:
        self.state, self.error = msg.state, msg.error
        self._holder, self._holder_is_me = msg.holder, msg.holder_is_you
        who = (self._me or msg.who) if msg.who_is_you else msg.who
        self._publish(ConsoleEvent(msg.kind, who, msg.detail, msg.time))

    def _gone(self, why: str) -> None:
        if self.state == "closed":
            return
        self.state, self.error = "closed", why
        self._holder, self._holder_is_me = None, False
        self._publish(ConsoleEvent("closed", None, why, time.time()))

    def _publish(self, item: bytes | ConsoleEvent) -> None:
        for cb in list(self._subs):
            try:
                cb(item)
            except Exception:
                log.exception("console %s: a subscriber failed", self.node)

    # -- the ConsoleSession interface -----------------------------------------------------
    @property
    def holder(self) -> str | None:
        """Who types: this process's own name when it is this client, else the service's name."""
        if self._holder_is_me and self._me is not None:
            return self._me
        return self._holder

    @holder.setter
    def holder(self, value: str | None) -> None:  # the service's word replaces it at its next message
        self._holder, self._holder_is_me = value, False

    @property
    def watchers(self) -> int:
        return len(self._subs)

    def history(self) -> bytes:
        return bytes(self._ring)

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        self._subs.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subs.remove(callback)

        return unsubscribe

    async def wait_started(self) -> None:
        return None

    async def _ask(self, msg: p._Msg, timeout: float = CONSOLE_OP_S) -> dict[str, Any]:
        if self.state == "closed":
            raise ConsoleLost(f"{self.node}: the console is closed" + (f": {self.error}" if self.error else ""))
        return _raise(await self._broker._request(msg, timeout))

    async def acquire(self, who: str, *, force: bool = False) -> None:
        previous = self._me
        self._me = who  # before the reply: the attach event that comes first names us
        try:
            await self._ask(p.ConsoleAcquire(id=0, node=self.node, force=force),
                            CONSOLE_FORCE_S if force else CONSOLE_OP_S)
        except BaseException:
            if not self._holder_is_me:
                self._me = previous
            raise

    async def release(self, who: str) -> None:
        if self.state == "closed":
            return
        await self._ask(p.ConsoleRelease(id=0, node=self.node))

    async def write(self, who: str, data: bytes) -> None:
        for i in range(0, len(data), p.CONSOLE_CHUNK):
            await self._ask(p.ConsoleWrite(id=0, node=self.node, data=_b64(data[i:i + p.CONSOLE_CHUNK])))

    async def send_break(self, who: str) -> None:
        await self._ask(p.ConsoleBreak(id=0, node=self.node))

    async def resize(self, cols: int, rows: int) -> None:
        if self.state != "open" or not self._holder_is_me:
            return  # only the writer sizes the far end's terminal
        await self._ask(p.ConsoleResize(id=0, node=self.node, cols=max(1, min(cols, 1000)),
                                        rows=max(1, min(rows, 1000))))

    async def close(self) -> None:
        """Stop watching it from this process (the service keeps it for the others)."""
        if self.state == "closed":
            return
        self._broker._forget(self)
        with contextlib.suppress(FleetError):
            await self._broker._request(p.ConsoleClose(id=0, node=self.node), CONSOLE_OP_S)
        self._gone("")


class _ConsoleLines:
    """Between a :class:`ServiceClient` and its stream: console messages go to ``dispatch``,
    every other line on to the client (which knows only the rest of the protocol)."""

    _PREFIX = b'{"type":"console_'

    def __init__(self, reader: asyncio.StreamReader, dispatch: Callable[[Any], None]) -> None:
        self._reader = reader
        self._dispatch = dispatch

    async def readline(self) -> bytes:
        while True:
            line = await self._reader.readline()
            if not line.startswith(self._PREFIX):
                return line
            try:
                msg = p.decode(line)
            except p.ProtocolError:
                return line  # the client says what is wrong with it, and ends
            try:
                self._dispatch(msg)
            except Exception:
                log.exception("a console message failed")


class RemoteConsoleBroker:
    """The site service's consoles, as a :class:`ConsoleBroker` is used (one connection)."""

    def __init__(self, path: Path, *, token: str | None = None, client: str = "console") -> None:
        self.path = path
        self.token = token
        self.kind = client
        self.welcome: p.Welcome | None = None
        self._client: ServiceClient | None = None
        self._sessions: dict[str, RemoteConsoleSession] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def me(self) -> str | None:
        """The service's name for this client as a console holder (``alice (ssh)``)."""
        if self.welcome is None:
            return None
        ident = self.welcome.identity
        return holder_name(Identity(ident.name, ident.role, ident.via))

    async def _connected(self) -> ServiceClient:
        if self._closed:
            raise ConsoleLost("the console broker is closed")
        if self._client is not None and self._client.gone is None:
            return self._client
        if self._client is not None:  # that connection ended (its sessions were closed): a new one
            old, self._client = self._client, None
            await old.close()
        client = ServiceClient(self.path, token=self.token, client=self.kind)
        client.on_gone = self._gone
        try:
            self.welcome = await client.connect()
        except (ServiceGone, ServiceRefused) as exc:
            raise ConsoleLost(f"the site service: {exc}") from None
        # The client's reader has not read yet (connect() started it without yielding):
        # console messages are taken off its stream here, in order, the rest go on to it.
        assert client._reader is not None
        client._reader = _ConsoleLines(client._reader, self._message)  # type: ignore[assignment]
        self._client = client
        return client

    async def _request(self, msg: p._Msg, timeout: float) -> dict[str, Any]:
        client = await self._connected()
        try:
            return await client.request(msg, timeout=timeout)
        except ServiceRefused as exc:
            raise ConsoleRefused(str(exc)) from None
        except ServiceGone as exc:
            raise ConsoleLost(f"the site service: {exc}") from None

    def _message(self, msg: Any) -> None:
        session = self._sessions.get(getattr(msg, "node", ""))
        if session is None:
            return
        if isinstance(msg, p.ConsoleOpened):
            session._opened(msg)
        elif isinstance(msg, p.ConsoleOutput):
            session._output(msg)
        elif isinstance(msg, p.ConsoleEventMsg):
            session._event(msg)

    def _gone(self, why: str) -> None:
        for session in list(self._sessions.values()):
            session._gone(f"the site service: {why}")
        self._sessions.clear()

    def _forget(self, session: RemoteConsoleSession) -> None:
        if self._sessions.get(session.node) is session:
            del self._sessions[session.node]

    async def session(self, node: str) -> RemoteConsoleSession:
        """``node``'s console in the service (NoConsole, ConsoleLost, ConsoleRefused as it says)."""
        async with self._lock:
            session = self._sessions.get(node)
            if session is not None and session.state != "closed":
                return session
            session = RemoteConsoleSession(self, node)
            self._sessions[node] = session  # before asking: the state and history come before the reply
            try:
                _raise(await self._request(p.ConsoleOpen(id=0, node=node), CONSOLE_OP_S))
            except BaseException:
                self._forget(session)
                raise
            return session

    def sessions(self) -> dict[str, RemoteConsoleSession]:
        return dict(self._sessions)

    async def close(self) -> None:
        """Stop watching every console (the service keeps them for others) and disconnect."""
        self._closed = True
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            session._gone("")
        if self._client is not None:
            await self._client.close()
