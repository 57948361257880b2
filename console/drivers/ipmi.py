"""IPMI driver: one :class:`IpmiDriver` per BMC, speaking RMCP+ (``lanplus``).

Two clients, one BMC at a time (one :class:`asyncio.Lock` per driver covers both):

- the poll path -- power state and chassis fault bits (Get Chassis Status), chassis
  control, boot flags -- goes through :class:`console.drivers.rmcp.RmcpSession`, an
  asyncio RMCP+ client: one kept session, no threads.  It replaced pyghmi there because
  of measured speed (``rmcp``'s docstring: 1,000 lab BMCs, pyghmi 1.23 s per steady
  sweep, slower than freeipmi; see the issue 3 report for the numbers after);
- the sensor half of :meth:`IpmiDriver.health` (every ``health_ttl`` seconds) is read on
  the same session too: the SDR's threshold sensors once, then Get Sensor Reading each
  (:mod:`console.drivers.ipmi_health`); only a BMC whose SDR lists discrete sensors
  gets pyghmi for it (their states need pyghmi's tables);
- sensors (values, thresholds), SEL and FRU/identity stay on pyghmi, whose session is
  opened lazily, so a BMC that is only polled holds ONE session; one pyghmi has not
  used for ``idle_relogin`` seconds is logged out at the next poll.

How pyghmi is used (``shared/PROTOCOL-NOTES.md``, section pyghmi):

- pyghmi is blocking.  Every call runs on a bounded thread pool that lives here and only
  here (:func:`shared_pool`, 32 threads, shared by every driver that is not given its own
  ``executor``).  One request is in flight per driver (an :class:`asyncio.Lock`).
- One pyghmi ``Command`` per driver, created on first use and kept: ``get_power`` on an
  open session is one round trip, a new RMCP+ login is several.  User and password are
  passed as bytes (a second ``Command`` to the same BMC hangs with ``str``).  A session
  pyghmi has given up on is dropped and logged in again once; one idle longer than
  :attr:`IpmiDriver.idle_relogin` is replaced before use (nothing sends keepalives
  between our calls, and a BMC silently forgets an idle session).  pyghmi shares one
  session among ``Command`` objects for the same BMC and user, so sessions are
  reference-counted and :meth:`IpmiDriver.close` logs out only the last user.
- Every pyghmi or socket exception is mapped to :mod:`console.errors` in one place,
  :func:`map_error`, and re-raised ``from`` the original.  Messages never hold the password.

pyghmi 1.6.19 needs three fixes (slow reply pickup, per-call deadlines and junk packets,
a lock-order deadlock); :mod:`console.drivers.ipmi_fixes` applies them once, without
editing pyghmi, when the first driver is made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import struct
import threading
import time
from typing import Any, Awaitable, Callable, TypeVar

import pyghmi.exceptions as pyghmi_exc
from pyghmi.ipmi import command as pyghmi_command
from pyghmi.ipmi import sdr as pyghmi_sdr

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.secrets import Secret
from inventory.model import Bmc

from . import ipmi_fixes as fixes
from . import ipmi_health
from . import ipmi_values as iv
from .rmcp import CommandFailed, RmcpSession
from .bmc import BootOverride, BootTarget, Event, Identity, PowerAction, PowerState, Sensor, worst_health

__all__ = ["POOL_SIZE", "IpmiDriver", "map_error", "shared_pool"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Threads in the pool shared by drivers that are not given an executor.
POOL_SIZE = 32
#: How long past its timeout a call may take before the asyncio side gives up on the
#: thread (only when the pyghmi fixes could not be installed, or a thread is stuck
#: outside pyghmi's wait loop, e.g. resolving a host name).
_GRACE = 1.0
#: Longest :meth:`IpmiDriver.close` waits for the BMC to confirm the logout (seconds).
_LOGOUT_TIMEOUT = 2.0

# --------------------------------------------------------------------------- thread pool
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def shared_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process-wide pool for pyghmi calls (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="ipmi")
        return _pool


# Sessions in use per pyghmi Session object: pyghmi hands the same one to every Command for
# the same BMC, user and password, and a logout would end it for all of them.
_session_users: dict[Any, int] = {}
_session_users_lock = threading.Lock()


def _acquire_session(sess: Any) -> None:
    with _session_users_lock:
        _session_users[sess] = _session_users.get(sess, 0) + 1


def _release_session(sess: Any) -> bool:
    """Forget one user of ``sess``; True when it was the last (time to log out)."""
    with _session_users_lock:
        left = _session_users.get(sess, 1) - 1
        if left > 0:
            _session_users[sess] = left
            return False
        _session_users.pop(sess, None)
        return True


# --------------------------------------------------------------------------- error mapping
_AUTH_WORDS = ("incorrect password", "unauthorized name", "rakp", "integrity check", "unauthorized role",
               "privilege", "invalid username")
_TIMEOUT_WORDS = ("timeout", "timed out", "session no longer connected")
_UNREACHABLE_WORDS = ("unable to establish", "unable to transmit")


def map_error(exc: BaseException, where: str, password: str = "") -> DriverError:
    """The :mod:`console.errors` exception for a pyghmi or socket failure (the one place)."""
    if isinstance(exc, DriverError):
        return exc
    text = str(exc) or type(exc).__name__
    if password and password in text:  # never seen from pyghmi; cheap insurance
        text = text.replace(password, "********")
    lowered = text.lower()
    if isinstance(exc, fixes.DeadlineExceeded):
        return Timeout(f"{where}: no answer in time")
    if isinstance(exc, pyghmi_exc.IpmiException):
        if any(w in lowered for w in _AUTH_WORDS):
            return AuthFailed(f"{where}: {text}")
        if any(w in lowered for w in _UNREACHABLE_WORDS):
            return Unreachable(f"{where}: {text}")
        if any(w in lowered for w in _TIMEOUT_WORDS):
            return Timeout(f"{where}: {text}")
        return DriverError(f"{where}: the BMC refused: {text}")
    if isinstance(exc, OSError):
        return Unreachable(f"{where}: {text}")
    if isinstance(exc, fixes.MALFORMED):
        return ProtocolError(f"{where}: malformed reply ({type(exc).__name__}: {text})")
    if isinstance(exc, pyghmi_exc.PyghmiException):
        return DriverError(f"{where}: {text}")
    return DriverError(f"{where}: unexpected {type(exc).__name__}: {text}")


# --------------------------------------------------------------------------- the driver
class IpmiDriver:
    """A :class:`~console.drivers.bmc.BmcDriver` for one BMC over IPMI 2.0 (RMCP+).

    No I/O happens until the first call.  ``timeout`` bounds each call, login included;
    ``executor`` replaces the shared pool (tests, or a caller that sizes its own).
    """

    #: Seconds of idleness after which the session is replaced before the next call
    #: (BMCs drop idle sessions after 30-60 s; a stale one costs pyghmi seconds of retries).
    idle_relogin = 25.0
    #: Seconds the sensor half of :meth:`health` is reused (chassis fault bits are always fresh)
    health_ttl = 30.0

    def __init__(self, bmc: Bmc, password: Secret, *, timeout: float = 5.0,
                 executor: concurrent.futures.ThreadPoolExecutor | None = None) -> None:
        self.bmc = bmc
        self.address = bmc.address
        self.port = bmc.effective_port
        self.timeout = timeout
        self._password = password
        self._executor = executor or shared_pool()
        self._where = f"{self.address}:{self.port}" if self.port != 623 else self.address
        self._lock = asyncio.Lock()  # one request in flight per driver (asyncio side)
        self._thread_lock = threading.Lock()  # ... and per thread, should one outlive its caller
        self._command: Any = None
        self._last_used = 0.0
        self._thresholds: dict[str, tuple[float | None, ...]] | None = None
        self._sensor_health: tuple[str, float] | None = None
        self._chassis_health: str | None = None
        self._closed = False
        self._rmcp: RmcpSession | None = None
        self._sdr: ipmi_health.SdrSummary | None = None  # read once, on the poll session
        self._pyghmi_used = False  # pyghmi was asked for something (a login may be half-done)
        fixes.install()

    def __repr__(self) -> str:
        return f"IpmiDriver({self._where!r}, user={self.bmc.username!r})"

    # ------------------------------------------------------------- BmcDriver
    async def power_state(self) -> PowerState:
        """Chassis power (Get Chassis Status, on the poll session)."""
        data = await self._poll("power state", 0x00, 0x01)
        if len(data) < 3:
            raise ProtocolError(f"{self._where}: short Get Chassis Status reply ({len(data)} bytes)")
        # Get Chassis Status answers power and the chassis fault bits in one round trip:
        # byte 1 bit 3 power fault, bit 4 power control fault; byte 3 bit 3 cooling/fan fault
        faults = "critical" if (data[0] & 0x18 or (len(data) > 2 and data[2] & 0x08)) else "ok"
        self._chassis_health = faults
        return PowerState.ON if data[0] & 0x01 else PowerState.OFF

    async def power(self, action: PowerAction) -> None:
        """Chassis Control; returns when the BMC accepted it (poll :meth:`power_state`)."""
        action = PowerAction(action)
        what = f"power {action.value}"
        if action in (PowerAction.ON, PowerAction.OFF, PowerAction.CYCLE):
            # As pyghmi's set_power: no request for the state the chassis is already in;
            # IPMI "power cycle" does nothing to a chassis that is off, so that one is "on".
            status = await self._poll(what, 0x00, 0x01)
            if not status:
                raise ProtocolError(f"{self._where}: empty Get Chassis Status reply")
            on = bool(status[0] & 0x01)
            if (action is PowerAction.ON and on) or (action is PowerAction.OFF and not on):
                return
            if action is PowerAction.CYCLE and not on:
                action = PowerAction.ON
        await self._poll(what, 0x00, 0x02, bytes([iv.CHASSIS_CONTROL[action]]))

    async def boot_override(self) -> BootOverride:
        """Get System Boot Options, boot flags (parameter 5)."""
        return self._boot_flags(await self._poll("boot override", 0x00, 0x09, b"\x05\x00\x00"))

    async def set_boot_override(self, target: BootTarget, *, persistent: bool = False) -> None:
        """Set the boot flags, then read them back.

        A different target read back raises ProtocolError.  ``none`` read back after
        setting a device is only logged: some BMCs never set the flags' valid bit
        (PROTOCOL-NOTES), so their read-back always says none.
        """
        target = BootTarget(target)
        if target is BootTarget.OTHER:
            raise DriverError(f"{self._where}: boot override 'other' cannot be set (read back only)")
        persistent = persistent and target is not BootTarget.NONE
        what = f"set boot override {target.value}"
        # As pyghmi's set_bootdev (which real BMCs are used to): boot info acknowledge first.
        await self._poll(what, 0x00, 0x08, b"\x03\x08")
        await self._poll(what, 0x00, 0x08, iv.boot_flags_request(target, persistent))
        got = self._boot_flags(await self._poll(what, 0x00, 0x09, b"\x05\x00\x00"))
        want = BootOverride(target, persistent)
        if got == want:
            return
        if got.target is BootTarget.NONE:
            log.warning("%s: boot override %s read back as none (valid bit not kept by this BMC?)",
                        self._where, target.value)
            return
        raise ProtocolError(f"{self._where}: boot override not applied: asked {_words(want)}, "
                            f"the BMC reports {_words(got)}")

    async def health(self) -> str:
        """The worst sensor state the BMC reports, with the chassis fault bits.

        Reading every sensor costs a round trip each, so the sensor half is cached for
        ``health_ttl`` seconds (refreshed by :meth:`sensors` too); the chassis fault bits
        from the last :meth:`power_state` are always current.
        """
        cached = self._sensor_health
        if cached is None or time.monotonic() - cached[1] > self.health_ttl:
            cached = (await self._sensor_health_now(), time.monotonic())
            self._sensor_health = cached
        return worst_health([cached[0], self._chassis_health or "ok"])

    async def sensors(self) -> list[Sensor]:
        """Every SDR sensor with its reading; thresholds read once per session."""
        return await self._call("sensors", self._read_sensors)

    async def events(self, limit: int = 100) -> list[Event]:
        """The last ``limit`` SEL entries, oldest first."""
        records = await self._call("event log", lambda c: list(c.get_event_log()))
        return [iv.event_from(r) for r in records[-limit:]] if limit > 0 else []

    async def identity(self) -> Identity:
        """FRU 0 (+ Device ID, GUID), firmware versions, and any MACs an OEM inventory lists."""
        return await self._call("identity", _read_identity)

    async def close(self) -> None:
        """Log out (when no other driver shares the session) and wait for the BMC to confirm.

        Idempotent; never raises.  A BMC that does not confirm within 2 s (or ``timeout``)
        is left to expire the session itself.
        """
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            if self._rmcp is not None:
                await self._rmcp.close()  # never raises
                self._rmcp = None
            if self._command is None and not self._pyghmi_used:
                return  # pyghmi never logged in: nothing to log out (and no thread to wake)
            try:
                await asyncio.wrap_future(self._executor.submit(self._logout))
            except Exception as exc:  # closing must not fail the caller
                log.debug("%s: logout: %s", self._where, exc)

    # ------------------------------------------------------------- machinery
    def _boot_flags(self, data: bytes) -> BootOverride:
        try:
            return iv.boot_flags_from(data)
        except ValueError as exc:
            raise ProtocolError(f"{self._where}: boot override: {exc}") from None

    async def _poll(self, what: str, netfn: int, command: int, data: bytes = b"") -> bytes:
        """One request on the poll session (:mod:`console.drivers.rmcp`), one at a time.

        :meth:`_on_poll_session` inlined: this is the path every poll takes."""
        rmcp = self._rmcp
        if rmcp is None or self._closed or self._lock.locked() or self._command is not None:
            return await self._on_poll_session(what, lambda session: session.request(netfn, command, data))
        async with self._lock:
            try:
                return await rmcp.request(netfn, command, data)
            except CommandFailed as exc:
                raise DriverError(f"{self._where}: {what}: the BMC refused: completion code {exc.code:02x}h") from exc
            except DriverError as exc:
                raise type(exc)(f"{self._where}: {what}: {exc.message.removeprefix(self._where + ': ')}") from exc

    async def _on_poll_session(self, what: str, fn: Callable[[RmcpSession], Awaitable[T]]) -> T:
        """``await fn(session)`` on the poll session under the driver's lock, errors mapped."""
        if self._closed:
            raise DriverError(f"{self._where}: driver is closed")
        async with self._lock:
            if self._rmcp is None:
                self._rmcp = RmcpSession(self.address, self.port, self.bmc.username.encode(),
                                         self._password.get().encode(), timeout=self.timeout, owner_lock=self._lock)
            try:
                reply = await fn(self._rmcp)
            except CommandFailed as exc:
                raise DriverError(f"{self._where}: {what}: the BMC refused: completion code {exc.code:02x}h") from exc
            except DriverError as exc:
                raise type(exc)(f"{self._where}: {what}: {exc.message.removeprefix(self._where + ': ')}") from exc
            if self._command is not None and time.monotonic() - self._last_used > self.idle_relogin:
                # the pyghmi session would be replaced at its next use anyway: free the slot now
                await asyncio.wrap_future(self._executor.submit(self._logout_idle))
            return reply

    async def _sensor_health_now(self) -> str:
        """The sensor half of :meth:`health`: threshold states on the poll session
        (:mod:`console.drivers.ipmi_health`); pyghmi only when the SDR has discrete sensors."""
        async def read(session: RmcpSession) -> str | None:
            if self._sdr is None:
                self._sdr = await ipmi_health.read_sensor_refs(session)
            if self._sdr.has_discrete:
                return None
            return await ipmi_health.threshold_health(session, self._sdr.thresholds)

        word = await self._on_poll_session("health", read)
        if word is None:  # discrete states need pyghmi's tables (a second, kept session)
            word = iv.health_word((await self._call("health", lambda c: c.get_health())).get("health"))
        return word

    async def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(command)`` on the pool, one at a time, within ``timeout``."""
        if self._closed:
            raise DriverError(f"{self._where}: driver is closed")
        async with self._lock:
            self._pyghmi_used = True
            deadline = time.monotonic() + self.timeout
            future = asyncio.wrap_future(self._executor.submit(self._work, what, fn, deadline))
            try:
                done, _ = await asyncio.wait({future}, timeout=self.timeout + _GRACE)
            finally:
                if not future.done():  # the thread stays behind: collect its outcome quietly
                    future.add_done_callback(_retrieve)
            if not done:
                raise Timeout(f"{self._where}: {what}: no answer in {self.timeout:g} s")
            return future.result()

    def _work(self, what: str, fn: Callable[[Any], T], deadline: float) -> T:
        """In a pool thread: the call, with the error mapping (the one place)."""
        where = f"{self._where}: {what}"
        if time.monotonic() >= deadline:  # queued behind busy workers: leave the session alone
            raise Timeout(f"{where}: no free IPMI worker thread within {self.timeout:g} s")
        if not self._thread_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Timeout(f"{where}: an earlier request to this BMC is still running")
        try:
            with fixes.deadline(deadline):
                return self._attempt(fn)
        except fixes.DeadlineExceeded:
            malformed = self._give_up()
            if malformed:
                raise ProtocolError(f"{where}: malformed replies ({malformed})") from None
            raise Timeout(f"{where}: no answer in {self.timeout:g} s") from None
        except DriverError:
            raise
        except Exception as exc:
            raise map_error(exc, where, self._password.get()) from exc
        finally:
            self._thread_lock.release()

    def _attempt(self, fn: Callable[[Any], T]) -> T:
        kept = self._command
        cmd = self._session()
        reused = cmd is kept
        try:
            result = fn(cmd)
        except (pyghmi_exc.IpmiException, OSError):
            if not (reused and getattr(cmd.ipmi_session, "broken", False)):
                raise
            log.info("%s: IPMI session lost; logging in again", self._where)
            self._drop()
            result = fn(self._session())
        self._last_used = time.monotonic()
        return result

    def _session(self) -> Any:
        """The kept ``Command``; a new login if there is none, it broke, or it idled too long."""
        cmd = self._command
        if cmd is not None:
            sess = cmd.ipmi_session
            idle = time.monotonic() - self._last_used
            if not getattr(sess, "broken", False) and not (self._last_used and idle > self.idle_relogin):
                return cmd
            self._drop()
        cmd = pyghmi_command.Command(bmc=self.address, userid=self.bmc.username.encode(),
                                     password=self._password.get().encode(), port=self.port)
        _acquire_session(cmd.ipmi_session)
        self._command = cmd
        self._thresholds = None
        self._last_used = 0.0
        return cmd

    def _drop(self) -> None:
        """Forget the kept session, logging it out if it is still up and ours alone."""
        cmd, self._command = self._command, None
        self._thresholds = None
        if cmd is None:
            return
        sess = cmd.ipmi_session
        if _release_session(sess) and not getattr(sess, "broken", False):
            _log_out(sess)

    def _give_up(self) -> str:
        """After a deadline: abandon the session pyghmi is stuck in; say if it saw junk."""
        if self._command is not None:
            sessions = [self._command.ipmi_session]
            _release_session(self._command.ipmi_session)
            self._command = None
        else:  # the login itself ran out of time: find the half-made session
            sessions = fixes.half_open_sessions(self.address, self.port, self.bmc.username.encode())
        self._thresholds = None
        malformed = ""
        for sess in sessions:
            malformed = malformed or fixes.malformed_note(sess)
            fixes.abandon(sess)
        return malformed

    def _logout_idle(self) -> None:
        """In a pool thread: log out a pyghmi session nobody used for ``idle_relogin`` s."""
        if not self._thread_lock.acquire(timeout=self.timeout):
            return
        try:
            with fixes.deadline(time.monotonic() + min(self.timeout, _LOGOUT_TIMEOUT)):
                self._drop()
        finally:
            self._thread_lock.release()

    def _logout(self) -> None:
        # An abandoned worker ends at its deadline (it holds the thread lock until then).
        locked = self._thread_lock.acquire(timeout=self.timeout + _GRACE)
        try:
            with fixes.deadline(time.monotonic() + min(self.timeout, _LOGOUT_TIMEOUT)):
                self._drop()
        finally:
            if locked:
                self._thread_lock.release()

    def _read_sensors(self, cmd: Any) -> list[Sensor]:
        if self._thresholds is None:
            self._thresholds = _read_thresholds(cmd)
        sensors = [iv.sensor_from(r, self._thresholds.get(r.name)) for r in cmd.get_sensor_data()]
        self._sensor_health = (worst_health([x.health for x in sensors]), time.monotonic())
        return sensors


def _log_out(sess: Any) -> None:
    """Close Session, waiting for the BMC's answer (pyghmi's ``logout`` only sends it), then
    pyghmi's own cleanup.  Bounded by the worker's deadline; a BMC that does not answer
    gets the session abandoned (it expires it itself)."""
    try:
        if sess.logged:
            sess.raw_command(netfn=0x06, command=0x3C, data=tuple(struct.pack("<I", sess.sessionid)))
            sess.logged = 0  # closed on the BMC: logout() must not send it again
        sess.logout()
    except fixes.DeadlineExceeded:
        fixes.abandon(sess)
    except Exception:
        log.debug("logout from %s failed", getattr(sess, "bmc", "?"), exc_info=True)
        fixes.abandon(sess)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _words(o: BootOverride) -> str:
    return o.target.value if o.target is BootTarget.NONE else f"{o.target.value} ({'persistent' if o.persistent else 'once'})"


# --------------------------------------------------------------------------- pyghmi calls
def _read_identity(cmd: Any) -> Identity:
    inventory = cmd.get_inventory()
    name, system = next(inventory)
    if name != "System" or not isinstance(system, dict):
        raise ProtocolError(f"no System inventory entry (got {name!r})")
    others = []
    try:  # FRUs beyond FRU 0: only searched for MACs, so a failing one is skipped
        for _, entry in inventory:
            if isinstance(entry, dict):
                others.append(entry)
    except pyghmi_exc.PyghmiException as exc:
        log.debug("%s: inventory beyond FRU 0: %s", cmd.bmc, exc)
    return iv.identity_from(system, list(cmd.get_firmware()), others)


def _read_thresholds(cmd: Any) -> dict[str, tuple[float | None, ...]]:
    """Get Sensor Thresholds for every threshold sensor in the SDR: name -> (lc, lw, uw, uc).

    pyghmi's readings carry only the BMC's verdict, not the thresholds; these are read
    with the raw command (IPMI 2.0 section 35.9) and decoded with the SDR's formula.
    """
    sdr = cmd.init_sdr()
    out: dict[str, tuple[float | None, ...]] = {}
    for number in sdr.get_sensor_numbers():
        entry = sdr.sensors[number]
        if not getattr(entry, "has_thresholds", False) or getattr(entry, "numeric_format", 3) == 3:
            continue
        rsp = cmd.raw_command(netfn=0x04, command=0x27, rslun=entry.sensor_lun, data=(entry.sensor_number,))
        data = rsp.get("data") or b""
        if "error" in rsp or len(data) < 7:
            continue  # no thresholds for this one: the reading is still reported

        def decode(mask_bit: int, raw: int) -> float | None:
            if not data[0] & mask_bit:
                return None
            if entry.numeric_format == 2:
                raw = pyghmi_sdr.twos_complement(raw, 8)
            elif entry.numeric_format == 1:
                raw = pyghmi_sdr.ones_complement(raw, 8)
            return round(entry.decode_value(cmd, raw), 3)

        lw, lc = decode(0x01, data[1]), decode(0x02, data[2])
        uw, uc = decode(0x08, data[4]), decode(0x10, data[5])
        if entry.linearization == 7:  # 1/x: lower and upper swap meaning
            lw, lc, uw, uc = uw, uc, lw, lc
        out[entry.name] = (lc, lw, uw, uc)
    return out
