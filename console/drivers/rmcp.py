"""An asyncio IPMI 2.0 RMCP+ client for the poll path (chassis status, control, boot flags).

Why it exists beside pyghmi: pyghmi's blocking design (one I/O thread, waiter threads
that poll every few milliseconds, per-call thread hand-offs, a global lock) costs the
poller far more CPU per poll than the crypto and the BMC do, so sweeping a thousand BMCs
with it was slower than freeipmi logging in afresh to each.  This client speaks the same
wire protocol from the event loop: one non-blocking UDP socket per loop and address
family, drained on readiness, replies routed by our session ID, no threads.  A CBC
``Cipher`` object built per packet or an ``asyncio.wait`` per try would cost more than
the AES and HMAC themselves, hence :class:`_Aes` and :meth:`_exchange`.  The numbers
are in ``bench/README.md`` (``poll_sweep.py``).

Scope: cipher suite 3 only (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), the one every
BMC we support offers and the lab serves; one session per :class:`RmcpSession`; one
request in flight per session (an :class:`asyncio.Lock`).  Each request is retransmitted
with a fresh session sequence number (``retry_interval``, doubling) until the call's
deadline.  The session stays at User level (enough to poll) until a request outside
:data:`USER_LEVEL` asks for more (Set Session Privilege Level, once).  An idle session is
kept alive (Get Device ID every ``keepalive_interval`` seconds without traffic) so the
BMC does not expire it between polls; :meth:`close`
sends Close Session and waits (bounded) for the answer.  SDR/sensors, SEL and FRU are
decoded by pyghmi, whose requests ``console.drivers.ipmi`` sends on this same session.

Errors are :mod:`console.errors` classes: a BMC that refuses the user or the password
-> :class:`AuthFailed`; no answer at all to a login -> :class:`Unreachable` ("no answer
from ADDRESS:PORT after N s"); no answer later -> :class:`Timeout` (or
:class:`ProtocolError` when only undecodable packets came back); a completion code other than 00h ->
:class:`CommandFailed` (a :class:`DriverError`).  Messages never hold the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import logging
import os
import socket
import struct
import weakref
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable

from .route import source_address

__all__ = ["CommandFailed", "RmcpSession", "PRIV_ADMIN", "PRIV_OPERATOR", "PRIV_USER"]

log = logging.getLogger(__name__)

RMCP_HEADER = b"\x06\x00\xff\x07"  # RMCP 1.0, class IPMI
AUTH_RMCP_PLUS = 0x06
PAYLOAD_IPMI = 0x00
PAYLOAD_OPEN_REQ, PAYLOAD_OPEN_RSP = 0x10, 0x11
PAYLOAD_RAKP1, PAYLOAD_RAKP2, PAYLOAD_RAKP3, PAYLOAD_RAKP4 = 0x12, 0x13, 0x14, 0x15
PRIV_USER, PRIV_OPERATOR, PRIV_ADMIN = 2, 3, 4
BMC_ADDR, CONSOLE_ADDR = 0x20, 0x81
NAME_ONLY_LOOKUP = 0x10
#: RMCP+ status codes (IPMI 2.0 table 13-15) that mean "not you" rather than "not now".
_AUTH_STATUS = {0x09: "invalid role", 0x0A: "unauthorized role", 0x0C: "invalid name length",
                0x0D: "unauthorized name", 0x0F: "invalid integrity check value (wrong password?)",
                0x02: "invalid session ID", 0x12: "illegal parameter"}
_OTHER_STATUS = {0x01: "no free session slots", 0x04: "cipher suite 3 refused (authentication)",
                 0x05: "cipher suite 3 refused (integrity)", 0x10: "cipher suite 3 refused (confidentiality)",
                 0x11: "no cipher suite match"}

#: Close Session waits at most this long for the BMC's answer (seconds).
CLOSE_TIMEOUT = 1.0
#: Requests a User-level session may send (IPMI 2.0 appendix G): reading power, sensors,
#: the SDR, SEL and FRU.  A session asks for its privilege (Set Session Privilege Level)
#: before its first request outside this set, not at login: a poll needs only these.
USER_LEVEL = frozenset({
    (0x00, 0x01),  # Get Chassis Status
    (0x04, 0x25), (0x04, 0x27), (0x04, 0x2D), (0x04, 0x2F),  # sensor hysteresis, thresholds, reading, type
    (0x06, 0x01), (0x06, 0x37),  # Get Device ID, Get System GUID
    (0x0A, 0x10), (0x0A, 0x11),  # FRU inventory area info, Read FRU data
    (0x0A, 0x20), (0x0A, 0x22), (0x0A, 0x23),  # SDR repository info, Reserve SDR, Get SDR
    (0x0A, 0x40), (0x0A, 0x41), (0x0A, 0x42), (0x0A, 0x43), (0x0A, 0x48),  # SEL info .. entries, time
})
CC_INSUFFICIENT_PRIVILEGE = 0xD4


class CommandFailed(DriverError):
    """The BMC answered a request with a completion code other than 00h."""

    title = "IPMI command failed"

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- the socket
class _Endpoint:
    """One non-blocking UDP socket shared by every session of one loop and source address.

    A single socket keeps this process's descriptor count low (pyghmi, in the same
    process, uses ``select()`` and breaks on descriptors past 1,023) and is drained in
    one go on readiness.  Replies are routed by the console session ID we chose, and
    taken only from the address and port the session talks to.  The socket is bound to
    the source address the kernel picks for the BMCs it serves (a fleet on one
    management network: one socket), never to the wildcard, so it does not listen on
    every interface of a shared jump host.
    """

    RCVBUF = 4 * 1024 * 1024  # a sweep of a thousand BMCs answers in a burst

    def __init__(self, loop: asyncio.AbstractEventLoop, family: int, source: str) -> None:
        self.loop = loop
        self.key = (family, source)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, self.RCVBUF)
            except OSError:
                pass
        try:
            self.sock.bind((source, 0))
        except OSError:
            self.sock.close()
            raise
        self.routes: dict[int, RmcpSession] = {}
        self.by_addr: dict[tuple[str, int], list[RmcpSession]] = {}  # a list: mostly one each
        # Keepalives: one timer for every session of this socket, not one each.  Ten
        # thousand timer handles in the loop's heap made every other timer (a retransmit,
        # a poll's time limit) pay for them in Python-level comparisons.
        self.kept: set[RmcpSession] = set()
        self._tick = 5.0
        self._ticker: asyncio.TimerHandle | None = None
        loop.add_reader(self.sock.fileno(), self._drain)

    def send(self, packet: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(packet, addr)
        except (BlockingIOError, InterruptedError):
            pass  # a full send buffer drops it, as the network would: the retransmit covers it
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EINVAL):
                raise Unreachable(f"{addr[0]}: {exc.strerror}") from exc
            raise

    def register(self, session: RmcpSession) -> None:
        self.routes[session.console_id] = session
        peers = self.by_addr.setdefault(session.addr, [])
        if session not in peers:
            peers.append(session)

    def keep_alive(self, session: RmcpSession) -> None:
        """Check ``session`` for idleness from now on (every quarter of its keepalive interval)."""
        self.kept.add(session)
        tick = min(5.0, max(0.05, session.keepalive_interval / 4))
        if self._ticker is None or tick < self._tick:
            self._tick = min(self._tick, tick)
            if self._ticker is not None:
                self._ticker.cancel()
            self._ticker = self.loop.call_later(self._tick, self._keepalives)

    def _keepalives(self) -> None:
        self._ticker = None
        now = self.loop.time()
        for session in list(self.kept):
            session._keepalive_due(now)
        if self.kept:
            self._ticker = self.loop.call_later(self._tick, self._keepalives)

    def unregister(self, session: RmcpSession) -> None:
        self.kept.discard(session)
        if self.routes.get(session.console_id) is session:
            del self.routes[session.console_id]
        peers = self.by_addr.get(session.addr)
        if peers is not None:
            if session in peers:
                peers.remove(session)
            if not peers:
                del self.by_addr[session.addr]
        if not self.routes:
            self.close()

    def close(self) -> None:
        if _endpoints.get(self.loop, {}).get(self.key) is self:
            del _endpoints[self.loop][self.key]
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        try:
            self.loop.remove_reader(self.sock.fileno())
        except Exception:  # the loop is closed already
            pass
        self.sock.close()

    def _drain(self) -> None:
        for _ in range(1024):  # bounded, so the loop gets to run callbacks in between
            try:
                data, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("RMCP+ receive: %s", exc)
                continue
            self._route(data, (addr[0], addr[1]))

    def _route(self, data: bytes, addr: tuple[str, int]) -> None:
        session = None
        if len(data) >= 16 and data[:4] == RMCP_HEADER and data[4] == AUTH_RMCP_PLUS:
            ptype = data[5] & 0x3F
            if ptype in (PAYLOAD_OPEN_RSP, PAYLOAD_RAKP2, PAYLOAD_RAKP4):
                if len(data) >= 24:
                    session = self.routes.get(struct.unpack_from("<I", data, 20)[0])
            else:
                session = self.routes.get(struct.unpack_from("<I", data, 6)[0])
        if session is not None and session.addr == addr:
            session._received(data)
            return
        for peer in list(self.by_addr.get(addr, ())):  # junk from a BMC we talk to: note it on its sessions
            peer._junk(f"undecodable {len(data)}-byte packet")


_endpoints: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, str], _Endpoint]] = \
    weakref.WeakKeyDictionary()


def _endpoint(address: str, port: int) -> _Endpoint:
    loop = asyncio.get_running_loop()
    key = (_family(address), source_address(address, port))
    per_loop = _endpoints.setdefault(loop, {})
    ep = per_loop.get(key)
    if ep is None:
        ep = per_loop[key] = _Endpoint(loop, *key)
    return ep


def _new_console_id(ep: _Endpoint) -> int:
    while True:
        sid = struct.unpack("<I", os.urandom(4))[0]
        if sid and sid not in ep.routes:
            return sid


class _Random:
    """Random bytes for IVs, read from the OS 4 KiB at a time (one syscall per 256 packets)."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf, self._pos = os.urandom(4096), 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out


_random = _Random()


class _Aes:
    """AES-CBC-128 for one session's short messages, on one reusable ECB context per
    direction: building a CBC ``Cipher`` per packet cost more than the AES itself."""

    __slots__ = ("_enc", "_dec")

    def __init__(self, key: bytes) -> None:
        self._enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self._dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()

    def encrypt(self, iv: bytes, clear: bytes) -> bytes:
        out = []
        prev = int.from_bytes(iv, "big")
        for i in range(0, len(clear), 16):
            block = self._enc.update((int.from_bytes(clear[i:i + 16], "big") ^ prev).to_bytes(16, "big"))
            out.append(block)
            prev = int.from_bytes(block, "big")
        return b"".join(out)

    def decrypt(self, iv: bytes, data: bytes) -> bytes:
        plain = self._dec.update(data)
        n = len(data)
        chained = int.from_bytes(iv + data[:n - 16], "big")
        return (int.from_bytes(plain, "big") ^ chained).to_bytes(n, "big")


def _sha1_96(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha1")[:12]


def _checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


#: the lock of a session whose owner's lock guards it: one for all (nothing in it changes)
_NO_LOCK = contextlib.nullcontext()


# --------------------------------------------------------------------------- the session
class RmcpSession:
    """One RMCP+ session with one BMC (cipher suite 3).

    No I/O until :meth:`request` (which logs in when needed).  ``timeout`` bounds each
    call, login included.  Not thread-safe: use it from one event loop.
    """

    #: First retransmit after this many seconds; doubles per try (bounded by the deadline).
    RETRY_INTERVAL = 0.5
    #: Seconds without traffic after which a keepalive request is sent.
    KEEPALIVE_INTERVAL = 20.0

    # Slots, not a dict: a poller keeps one session per BMC, ten thousand at a large site.
    __slots__ = ("address", "port", "addr", "timeout", "privilege", "retry_interval", "keepalive_interval",
                 "_username", "_password", "_where", "_owner_lock", "_lock", "_ep", "console_id",
                 "_managed_id", "_k1", "_aes", "_seq", "_rq_seq", "_logged_in", "_waiter", "_expect", "_packet",
                 "_framed", "_deadline", "_interval", "_timer", "_note", "_pinging", "_last_traffic", "_closed",
                 "_privileged", "logins", "__weakref__")

    def __init__(self, address: str, port: int, username: bytes, password: bytes, *,
                 timeout: float = 5.0, privilege: int = PRIV_ADMIN, owner_lock: asyncio.Lock | None = None) -> None:
        if len(username) > 16 or len(password) > 20:
            raise AuthFailed(f"{address}: IPMI user names are at most 16 bytes and passwords 20")
        self.address = address
        self.port = port
        self.addr = (address, port)
        self.retry_interval = self.RETRY_INTERVAL
        self.keepalive_interval = self.KEEPALIVE_INTERVAL
        self.timeout = timeout
        self.privilege = privilege
        self._username = username
        self._password = password
        self._where = f"{address}:{port}" if port != 623 else address
        # One request in flight: our own lock, or the caller's per-BMC one (the driver's, so
        # that keepalives never overlap its other client's requests).  With ``owner_lock``
        # the caller holds it around request() and close(), and only keepalives take it.
        self._owner_lock = owner_lock
        self._lock: Any = _NO_LOCK if owner_lock is not None else asyncio.Lock()
        self._ep: _Endpoint | None = None
        self.console_id = 0
        self._managed_id = 0
        self._k1 = b""
        self._aes: _Aes | None = None
        self._seq = 0  # outbound session sequence number
        self._rq_seq = 0  # IPMI request sequence (6 bits)
        self._logged_in = False
        self._privileged = False  # Set Session Privilege Level sent in this session
        self._waiter: asyncio.Future | None = None
        self._expect: Any = None
        # the request in flight (see _exchange): what to send, until when, how often
        self._packet = b""
        self._framed = False
        self._deadline = 0.0
        self._interval = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._note = ""
        self._pinging = False  # a keepalive request is under way
        self._last_traffic = 0.0
        self._closed = False
        self.logins = 0  # how many times this object logged in (tests, bench)

    def __repr__(self) -> str:
        return f"RmcpSession({self._where!r}, open={self._logged_in})"

    def _hostport(self) -> str:
        """``address:port`` (``[v6]:port``), said only when a login fails: not kept per session."""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @property
    def is_open(self) -> bool:
        """True while a session is established with the BMC."""
        return self._logged_in

    # ------------------------------------------------------------- public API
    async def request(self, netfn: int, command: int, data: bytes = b"", *, lun: int = 0,
                      timeout: float | None = None) -> bytes:
        """Send one IPMI request in the session; returns the response data (after the
        completion code).  Logs in first when needed; raises :class:`CommandFailed` for a
        completion code other than 00h.  ``timeout`` shortens the session's own."""
        if self._closed:
            raise DriverError(f"{self._where}: session is closed")
        async with self._lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + (self.timeout if timeout is None else min(timeout, self.timeout))
            try:
                if not self._logged_in:
                    await self._login(deadline)
                if not self._privileged and (netfn, command) not in USER_LEVEL:
                    await self._raise_privilege(deadline)
                try:
                    return await self._command(netfn, command, bytes(data), deadline, lun)
                except CommandFailed as exc:
                    # a BMC that wants more than User level for a command of USER_LEVEL
                    if exc.code != CC_INSUFFICIENT_PRIVILEGE or self._privileged:
                        raise
                await self._raise_privilege(deadline)
                return await self._command(netfn, command, bytes(data), deadline, lun)
            except (Timeout, ProtocolError):
                self._abandon()  # the next call logs in afresh
                raise

    async def close(self) -> None:
        """Close Session (waiting up to :data:`CLOSE_TIMEOUT` for the answer), then forget.

        Idempotent; never raises.
        """
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            if self._logged_in:
                loop = asyncio.get_running_loop()
                try:
                    await self._command(0x06, 0x3C, struct.pack("<I", self._managed_id),
                                        loop.time() + min(self.timeout, CLOSE_TIMEOUT))
                except DriverError as exc:
                    log.debug("%s: Close Session: %s", self._where, exc)
            self._forget()

    # ------------------------------------------------------------- login
    async def _login(self, deadline: float) -> None:
        started = asyncio.get_running_loop().time()
        self._forget()
        self._ep = _endpoint(self.address, self.port)
        self.console_id = _new_console_id(self._ep)
        self._ep.register(self)
        self._note = ""
        tag = 0
        try:
            # Open Session Request (IPMI 2.0 section 13.17): suite 3's three algorithms.
            proposal = (bytes([tag, self.privilege, 0, 0]) + struct.pack("<I", self.console_id)
                        + bytes([0, 0, 0, 8, 1, 0, 0, 0]) + bytes([1, 0, 0, 8, 1, 0, 0, 0])
                        + bytes([2, 0, 0, 8, 1, 0, 0, 0]))
            try:
                rsp = await self._exchange(self._frame0(PAYLOAD_OPEN_REQ, proposal), PAYLOAD_OPEN_RSP, deadline)
            except Timeout:
                # Not one packet back, however often we asked: nothing answers there (a BMC
                # that is down, a wrong address or port), which a slow BMC is not.
                raise Unreachable(f"no answer from {self._hostport()} after "
                                  f"{round(deadline - started, 1):g} s") from None
            self._status(rsp, "open session")
            if len(rsp) < 12:
                raise ProtocolError(f"{self._where}: short open-session response")
            managed = struct.unpack_from("<I", rsp, 8)[0]
            # RAKP 1 / 2 (section 13.20-13.21)
            rm = os.urandom(16)
            role = NAME_ONLY_LOOKUP | self.privilege
            name = self._username
            rakp1 = (bytes([tag, 0, 0, 0]) + struct.pack("<I", managed) + rm
                     + bytes([role, 0, 0, len(name)]) + name)
            rsp = await self._exchange(self._frame0(PAYLOAD_RAKP1, rakp1), PAYLOAD_RAKP2, deadline)
            self._status(rsp, "RAKP 2")
            if len(rsp) < 60:
                raise ProtocolError(f"{self._where}: short RAKP 2")
            rc, guid, code = rsp[8:24], rsp[24:40], rsp[40:60]
            ids = struct.pack("<II", self.console_id, managed)
            role_name = bytes([role, len(name)]) + name
            expected = hmac.new(self._password, ids + rm + rc + guid + role_name, hashlib.sha1).digest()
            if not hmac.compare_digest(expected, code):
                # Tell the BMC so it frees the half-open session now (RAKP 3 with an error status).
                self._ep.send(self._frame0(PAYLOAD_RAKP3, bytes([tag, 0x0F, 0, 0]) + struct.pack("<I", managed)),
                              self.addr)
                raise AuthFailed(f"{self._where}: the BMC's RAKP 2 does not match our password (wrong password)")
            # RAKP 3 / 4 (section 13.22-13.23)
            auth = hmac.new(self._password, rc + struct.pack("<I", self.console_id) + role_name, hashlib.sha1).digest()
            rakp3 = bytes([tag, 0, 0, 0]) + struct.pack("<I", managed) + auth
            sik = hmac.new(self._password, rm + rc + role_name, hashlib.sha1).digest()  # no Kg: Kuid
            # Keys before RAKP 3 goes out: should RAKP 4 be lost, the BMC may hold an
            # established session that only a signed Close Session ends (see _abandon).
            self._managed_id = managed
            self._k1 = hmac.new(sik, b"\x01" * 20, hashlib.sha1).digest()
            self._aes = _Aes(hmac.new(sik, b"\x02" * 20, hashlib.sha1).digest()[:16])
            self._seq = 0
            rsp = await self._exchange(self._frame0(PAYLOAD_RAKP3, rakp3), PAYLOAD_RAKP4, deadline)
            self._status(rsp, "RAKP 4")
            icv = hmac.new(sik, rm + struct.pack("<I", managed) + guid, hashlib.sha1).digest()[:12]
            if not hmac.compare_digest(icv, bytes(rsp[8:20])):
                raise AuthFailed(f"{self._where}: RAKP 4 integrity check failed")
            self._logged_in = True
            self._privileged = self.privilege <= PRIV_USER
            self.logins += 1
        except BaseException:
            if not self._logged_in:
                self._abandon()
            raise
        self._schedule_keepalive()

    async def _raise_privilege(self, deadline: float) -> None:
        """Sessions start at User level (IPMI 2.0 section 22.18): ask for the one we logged
        in with (or the highest below it the BMC grants)."""
        level = self.privilege
        while level > PRIV_USER:
            try:
                await self._command(0x06, 0x3B, bytes([level]), deadline)
                break
            except CommandFailed:
                level -= 1
        self._privileged = True

    def _status(self, rsp: bytes, what: str) -> None:
        if len(rsp) < 2:
            raise ProtocolError(f"{self._where}: short {what} message")
        status = rsp[1]
        if status == 0:
            return
        if status in _AUTH_STATUS:
            raise AuthFailed(f"{self._where}: {what}: {_AUTH_STATUS[status]}")
        raise DriverError(f"{self._where}: {what}: {_OTHER_STATUS.get(status, f'RMCP+ status {status:02x}h')}")

    # ------------------------------------------------------------- requests
    async def _command(self, netfn: int, command: int, data: bytes, deadline: float, lun: int = 0) -> bytes:
        self._rq_seq = (self._rq_seq + 1) & 0x3F
        rq_seq = self._rq_seq
        head = bytes([BMC_ADDR, (netfn << 2) | (lun & 0x03)])
        body = bytes([CONSOLE_ADDR, rq_seq << 2, command]) + data
        msg = head + bytes([_checksum(head)]) + body + bytes([_checksum(body)])
        reply = await self._exchange(msg, ("ipmi", rq_seq, command), deadline, framed=True)
        code = reply[0]
        if code != 0:
            raise CommandFailed(f"{self._where}: netfn {netfn:02x}h command {command:02x}h: completion code "
                                f"{code:02x}h", code)
        return reply[1:]

    async def _exchange(self, packet: bytes, expect: Any, deadline: float, *, framed: bool = False) -> bytes:
        """Send ``packet`` (with ``framed``: an IPMI message, framed afresh per try, with a new
        session sequence number) until the matching reply arrives or ``deadline`` passes.

        The retransmit state lives on the session and the timer calls a bound method: a
        closure that scheduled itself was a reference cycle per request, and at 10,000 BMCs
        the garbage collector chasing those cycles took most of a steady sweep's CPU."""
        assert self._ep is not None
        waiter = self._ep.loop.create_future()
        self._waiter, self._expect = waiter, expect
        self._packet, self._framed = packet, framed
        self._deadline, self._interval = deadline, self.retry_interval
        self._resend()
        try:
            return await waiter
        finally:
            self._waiter = self._expect = None
            self._packet = b""
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _resend(self) -> None:
        """Send the request in flight (again), or fail it once its deadline has passed."""
        self._timer = None
        waiter, ep = self._waiter, self._ep
        if waiter is None or waiter.done():
            return
        if ep is None:
            waiter.set_exception(self._no_answer())
            return
        now = ep.loop.time()
        if now >= self._deadline:
            waiter.set_exception(self._no_answer())
            return
        try:
            ep.send(self._frame(self._packet) if self._framed else self._packet, self.addr)
        except DriverError as exc:
            waiter.set_exception(exc)
            return
        self._last_traffic = now
        self._timer = ep.loop.call_at(min(now + self._interval, self._deadline), self._resend)
        self._interval *= 2

    def _no_answer(self) -> DriverError:
        if self._note:
            return ProtocolError(f"{self._where}: malformed replies ({self._note})")
        return Timeout(f"{self._where}: no answer in {self.timeout:g} s")

    def _frame0(self, ptype: int, payload: bytes) -> bytes:
        """A packet outside a session (session ID and sequence 0)."""
        return RMCP_HEADER + bytes([AUTH_RMCP_PLUS, ptype]) + bytes(8) + struct.pack("<H", len(payload)) + payload

    def _frame(self, msg: bytes) -> bytes:
        """An in-session IPMI packet: AES-CBC-128 encrypted, HMAC-SHA1-96 signed (table 13-8)."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        pad = (-(len(msg) + 1)) % 16
        clear = msg + bytes(range(1, pad + 1)) + bytes([pad])
        iv = _random.take(16)
        assert self._aes is not None
        body = iv + self._aes.encrypt(iv, clear)
        header = struct.pack("<IIH", self._managed_id, self._seq, len(body))
        packet = bytes([AUTH_RMCP_PLUS, 0xC0 | PAYLOAD_IPMI]) + header + body  # encrypted, signed
        ipad = (-(len(packet) + 2)) % 4  # auth type .. next header: a multiple of 4
        packet += b"\xff" * ipad + bytes([ipad, 0x07])
        return RMCP_HEADER + packet + _sha1_96(self._k1, packet)

    # ------------------------------------------------------------- receiving (loop callbacks)
    def _received(self, data: bytes) -> None:
        waiter, expect = self._waiter, self._expect
        if waiter is None or waiter.done():
            return  # late duplicate of an answered request
        try:
            ptype = data[5] & 0x3F
            if isinstance(expect, int):  # a handshake message
                if ptype != expect:
                    return
                length = struct.unpack_from("<H", data, 14)[0]
                waiter.set_result(bytes(data[16:16 + length]))
                return
            if ptype != PAYLOAD_IPMI or data[5] & 0xC0 != 0xC0 or self._aes is None:
                return
            signed, code = data[4:-12], data[-12:]
            if not hmac.compare_digest(_sha1_96(self._k1, signed), code):
                self._junk("integrity check failed")
                return
            length = struct.unpack_from("<H", data, 14)[0]
            body = data[16:16 + length]
            if length < 32 or length % 16:
                self._junk(f"bad encrypted payload length {length}")
                return
            clear = self._aes.decrypt(body[:16], body[16:])
            msg = clear[:len(clear) - clear[-1] - 1]
            # rqAddr, netFn/rqLUN, checksum, rsAddr, rqSeq/rsLUN, command, completion code, data, checksum
            if len(msg) < 8:
                self._junk("short IPMI message")
                return
            _, rq_seq, command = expect
            if msg[4] >> 2 != rq_seq or msg[5] != command:
                return  # an answer to an earlier try or request
            self._last_traffic = waiter.get_loop().time()
            waiter.set_result(bytes(msg[6:-1]))
        except (IndexError, struct.error, ValueError) as exc:
            self._junk(f"{type(exc).__name__}: {exc}")

    def _junk(self, note: str) -> None:
        self._note = note
        log.debug("%s: dropped a packet: %s", self._where, note)

    # ------------------------------------------------------------- keepalive, teardown
    def _schedule_keepalive(self) -> None:
        if self._ep is not None:
            self._ep.keep_alive(self)

    def _keepalive_due(self, now: float) -> None:
        """Called by the endpoint's keepalive tick: ping when idle for ``keepalive_interval``."""
        if not self._logged_in or self._closed or self._pinging:
            return
        if now - self._last_traffic < self.keepalive_interval or (self._owner_lock or self._lock).locked():
            return
        self._pinging = True
        assert self._ep is not None
        task = self._ep.loop.create_task(self._ping())
        _pings.add(task)
        task.add_done_callback(_pings.discard)

    async def _ping(self) -> None:
        try:
            if self._owner_lock is not None:
                async with self._owner_lock:
                    await self.request(0x06, 0x01)  # Get Device ID: harmless, every BMC answers it
            else:
                await self.request(0x06, 0x01)
        except DriverError as exc:
            log.debug("%s: keepalive: %s", self._where, exc)
        finally:
            self._pinging = False

    def _abandon(self) -> None:
        """Give the session up without waiting: one signed Close Session if keys exist (the
        BMC may still hold it; a silent one expires it itself), then forget it."""
        if self._ep is not None and self._k1 and self._managed_id:
            try:
                self._rq_seq = (self._rq_seq + 1) & 0x3F
                head = bytes([BMC_ADDR, 0x06 << 2])
                body = bytes([CONSOLE_ADDR, self._rq_seq << 2, 0x3C]) + struct.pack("<I", self._managed_id)
                self._ep.send(self._frame(head + bytes([_checksum(head)]) + body + bytes([_checksum(body)])), self.addr)
            except (OSError, DriverError):
                pass
        self._forget()

    def _forget(self) -> None:
        """Drop local session state (no packet sent)."""
        self._logged_in = False
        self._k1 = b""
        self._aes = None
        self._managed_id = 0
        if self._ep is not None:
            self._ep.unregister(self)
            self._ep = None


_pings: set[asyncio.Task] = set()
