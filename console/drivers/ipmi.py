"""IPMI driver: one :class:`IpmiDriver` per BMC, speaking RMCP+ (``lanplus``) on ONE session.

Everything goes through :class:`console.drivers.rmcp.RmcpSession`, an asyncio RMCP+
client with one kept session per BMC (one :class:`asyncio.Lock` per driver):

- the poll path -- power state and chassis fault bits (Get Chassis Status), chassis
  control, boot flags -- and the threshold half of :meth:`IpmiDriver.health`
  (:mod:`console.drivers.ipmi_health`) are sent from the event loop directly, because
  pyghmi's threads cost the poller far more CPU per poll (``rmcp``'s docstring);
- sensors (values, thresholds), SEL, FRU/identity and discrete sensor health still use
  pyghmi's decoding, but not pyghmi's sessions: a pyghmi ``Command`` is given
  :class:`_OnPollSession` in place of its session object (the interface pyghmi's own
  in-band ``localsession`` offers), whose ``raw_command`` sends each request on the
  same RMCP+ session.  So a BMC holds one session while it is polled, as the README
  promises, where a pyghmi session of its own would make two.

What health needs from the SDR (which sensors to read) is read once per driver and
checked again on each new session (Get Device ID, Get SDR Repository Info); given an
:class:`~console.drivers.sdrcache.SdrCache` (:meth:`IpmiDriver.use_sdr_cache`), it is
taken from there when the BMC's stamp matches, so a console restart walks no SDR, and
BMCs with equal stamps share one walk (on probation: see :mod:`~console.drivers.sdrcache`).

pyghmi is blocking: its calls run on a bounded thread pool that lives here and only
here (:func:`shared_pool`, 32 threads, shared by every driver that is not given its own
``executor``); each request it makes hops back to the event loop and waits for the
answer.  One call runs per driver at a time, within ``timeout``; a call that runs out
of time is cut off at its next request.  The ``Command`` is kept, so the SDR is read
once per driver.

Every pyghmi or socket exception is mapped to :mod:`console.errors` in one place,
:func:`map_error`, and re-raised ``from`` the original.  Messages never hold the password.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyghmi.exceptions as pyghmi_exc
from pyghmi.ipmi import command as pyghmi_command
from pyghmi.ipmi import sdr as pyghmi_sdr
from pyghmi.ipmi.private import util as pyghmi_util

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.secrets import Secret
from inventory.model import Bmc

from . import ipmi_health
from . import ipmi_values as iv
from .bmc import BootOverride, BootTarget, Event, Identity, PowerAction, PowerState, Sensor, worst_health
from .ipmi_fixes import MALFORMED
from .rmcp import CommandFailed, RmcpSession
from .sdrcache import SdrCache

__all__ = ["POOL_SIZE", "IpmiDriver", "map_error", "shared_pool"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Threads in the pool shared by drivers that are not given an executor.
POOL_SIZE = 32
#: How long past its timeout a pyghmi call may take before the asyncio side gives up on
#: the thread (one stuck in pyghmi's own code between two requests).
_GRACE = 1.0

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
    if isinstance(exc, MALFORMED):
        return ProtocolError(f"{where}: malformed reply ({type(exc).__name__}: {text})")
    if isinstance(exc, pyghmi_exc.PyghmiException):
        return DriverError(f"{where}: {text}")
    return DriverError(f"{where}: unexpected {type(exc).__name__}: {text}")


#: equal SDR summaries, shared by the drivers that read them (see _sensor_health_now)
_SDRS: dict[ipmi_health.SdrSummary, ipmi_health.SdrSummary] = {}


# --------------------------------------------------------------------------- the driver
class IpmiDriver:
    """A :class:`~console.drivers.bmc.BmcDriver` for one BMC over IPMI 2.0 (RMCP+).

    No I/O happens until the first call.  ``timeout`` bounds each call, login included;
    ``executor`` replaces the shared pool (tests, or a caller that sizes its own).
    """

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
        # ... and one pyghmi call, should one outlive its caller (made with the first call:
        # the poll path never takes it, and a poller keeps ten thousand drivers)
        self._thread_lock: threading.Lock | None = None
        self._command: Any = None  # pyghmi's Command on _OnPollSession, made on first use and kept
        self._thresholds: dict[str, tuple[float | None, ...]] | None = None
        self._sensor_health: tuple[str, float] | None = None
        self._chassis_health: str | None = None
        self._closed = False
        self._rmcp: RmcpSession | None = None
        self._sdr: ipmi_health.SdrSummary | None = None  # read on the poll session (or cached)
        self._stamp: ipmi_health.SdrStamp | None = None  # what vouched for _sdr
        self._sdr_shared = False  # _sdr was walked on another BMC with the same stamp
        self._sdr_login = -1  # the poll session's login that last checked the stamp
        self._sdr_cache: SdrCache | None = None

    def __repr__(self) -> str:
        return f"IpmiDriver({self._where!r}, user={self.bmc.username!r})"

    def use_sdr_cache(self, cache: SdrCache) -> None:
        """Take SDR summaries from ``cache`` and keep those read in it (the poller's, per site)."""
        self._sdr_cache = cache

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
        (docs/protocols.md), so their read-back always says none.
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
        records, scale = await self._call("event log",
                                          lambda c: (list(c.get_event_log()), iv.sdr_scale(c.init_sdr())))
        return [iv.event_from(r, scale) for r in records[-limit:]] if limit > 0 else []

    async def identity(self) -> Identity:
        """FRU 0 (+ Device ID, GUID), firmware versions, and any MACs an OEM inventory lists."""
        return await self._call("identity", _read_identity)

    async def close(self) -> None:
        """Log out (Close Session, waiting a moment for the BMC to confirm).

        Idempotent; never raises.  A BMC that does not confirm is left to expire the session itself.
        """
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            if self._rmcp is not None:
                await self._rmcp.close()  # never raises
                self._rmcp = None

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
        if rmcp is None or self._closed or self._lock.locked():
            return await self._on_poll_session(what, lambda session: session.request(netfn, command, data))
        async with self._lock:
            try:
                return await rmcp.request(netfn, command, data)
            except CommandFailed as exc:
                raise DriverError(f"{self._where}: {what}: the BMC refused: completion code {exc.code:02x}h") from exc
            except Unreachable:
                raise  # names the address and is about the BMC, not what was asked of it
            except DriverError as exc:
                raise type(exc)(f"{self._where}: {what}: {exc.message.removeprefix(self._where + ': ')}") from exc

    def _session(self) -> RmcpSession:
        """The poll session (made on first use; call with the driver's lock held)."""
        if self._rmcp is None:
            self._rmcp = RmcpSession(self.address, self.port, self.bmc.username.encode(),
                                     self._password.get().encode(), timeout=self.timeout, owner_lock=self._lock)
        return self._rmcp

    async def _on_poll_session(self, what: str, fn: Callable[[RmcpSession], Awaitable[T]]) -> T:
        """``await fn(session)`` on the poll session under the driver's lock, errors mapped."""
        if self._closed:
            raise DriverError(f"{self._where}: driver is closed")
        async with self._lock:
            try:
                return await fn(self._session())
            except CommandFailed as exc:
                raise DriverError(f"{self._where}: {what}: the BMC refused: completion code {exc.code:02x}h") from exc
            except Unreachable:
                raise  # names the address and is about the BMC, not what was asked of it
            except DriverError as exc:
                raise type(exc)(f"{self._where}: {what}: {exc.message.removeprefix(self._where + ': ')}") from exc

    async def _sensor_health_now(self) -> str:
        """The sensor half of :meth:`health`: threshold states on the poll session
        (:mod:`console.drivers.ipmi_health`); pyghmi's tables when the SDR has discrete sensors."""
        async def read(session: RmcpSession) -> str | None:
            if self._sdr is None or not session.is_open or self._sdr_login != session.logins:
                await self._check_sdr(session)  # a new session (or one to come): the stamp first
            elif self._sdr_shared and not self._shared_sdr_vouched():
                await self._check_sdr(session, own=True)  # its stamp turned out to vouch for other SDRs
            assert self._sdr is not None
            if self._sdr.has_discrete:
                return None
            try:
                return await ipmi_health.threshold_health(session, self._sdr.thresholds, shared=self._sdr_shared)
            except ipmi_health.SdrMismatch:  # another BMC's SDR (same stamp) lists a sensor this one lacks
                await self._check_sdr(session, own=True)
                return await ipmi_health.threshold_health(session, self._sdr.thresholds)

        word = await self._on_poll_session("health", read)
        if word is None:  # discrete states need pyghmi's tables (decoded on the same session)
            word = iv.health_word((await self._call("health", lambda c: c.get_health())).get("health"))
        return word

    def _shared_sdr_vouched(self) -> bool:
        cache, stamp, sdr = self._sdr_cache, self._stamp, self._sdr
        return cache is None or stamp is None or sdr is None or cache.vouches(stamp, sdr)

    async def _check_sdr(self, session: RmcpSession, own: bool = False) -> None:
        """On a new session: the BMC's SDR stamp; the summary kept (here or in the cache)
        under the same stamp, or walked on a BMC with the same stamp, else a walk of the
        repository (kept in the cache).  ``own``: walk this BMC's, under the stamp it gave."""
        if own:
            stamp = self._stamp
        else:
            stamp = await ipmi_health.read_stamp(session)  # logs in if needed
            self._sdr_login = session.logins
            if self._sdr is not None and (stamp is None or stamp == self._stamp):
                return  # unchanged (or a BMC that cannot say: read once per driver, as before)
            if self._stamp is not None:  # the BMC's SDR or firmware changed: pyghmi's copy too
                self._thresholds = None
                if self._command is not None:
                    self._command._sdr = None
        cache, key = self._sdr_cache, _cache_key(self.address, self.port)
        if cache is not None and stamp is not None:
            sdr, self._sdr_shared = await cache.summary(key, stamp, lambda: ipmi_health.read_sensor_refs(session),
                                                        own=own, wait=self.timeout)
        else:
            sdr, self._sdr_shared = await ipmi_health.read_sensor_refs(session), False
        # BMCs of one model list the same sensors: one copy for all (10,000 BMCs
        # held 8 MB of equal summaries), bounded should every BMC differ
        self._sdr = _SDRS.setdefault(sdr, sdr) if len(_SDRS) < 1024 else sdr
        self._stamp = stamp

    async def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(command)`` (pyghmi) on the pool, one at a time, within ``timeout``;
        its requests go out on the poll session."""
        if self._closed:
            raise DriverError(f"{self._where}: driver is closed")
        async with self._lock:
            session = self._session()
            if self._command is None:
                self._command = _command_on(self.address, _OnPollSession(self._where, asyncio.get_running_loop(),
                                                                         self.bmc.username.encode()))
            bridge: _OnPollSession = self._command.ipmi_session
            bridge.session = session
            if self._thread_lock is None:
                self._thread_lock = threading.Lock()
            deadline = time.monotonic() + self.timeout
            future = asyncio.wrap_future(self._executor.submit(self._work, what, fn, deadline))
            try:
                done, _ = await asyncio.wait({future}, timeout=self.timeout + _GRACE)
            finally:
                if not future.done():  # cut the thread off at its next request
                    future.add_done_callback(_retrieve)
                    await bridge.stop()
            if not done:
                raise Timeout(f"{self._where}: {what}: no answer in {self.timeout:g} s")
            return future.result()

    def _work(self, what: str, fn: Callable[[Any], T], deadline: float) -> T:
        """In a pool thread: the call, with the error mapping (the one place)."""
        where = f"{self._where}: {what}"
        if time.monotonic() >= deadline:  # queued behind busy workers: leave the session alone
            raise Timeout(f"{where}: no free IPMI worker thread within {self.timeout:g} s")
        lock = self._thread_lock
        assert lock is not None  # made by _call before it submits this
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Timeout(f"{where}: an earlier request to this BMC is still running")
        bridge: _OnPollSession = self._command.ipmi_session
        try:
            bridge.arm(deadline)
            return fn(self._command)
        except CommandFailed as exc:
            raise DriverError(f"{where}: the BMC refused: completion code {exc.code:02x}h") from exc
        except Unreachable:
            raise
        except DriverError as exc:
            raise type(exc)(f"{where}: {exc.message.removeprefix(self._where + ': ')}") from exc
        except Exception as exc:
            raise map_error(exc, where, self._password.get()) from exc
        finally:
            bridge.disarm()
            lock.release()

    def _read_sensors(self, cmd: Any) -> list[Sensor]:
        if self._thresholds is None:
            self._thresholds = _read_thresholds(cmd)
        sensors = [iv.sensor_from(r, self._thresholds.get(r.name)) for r in cmd.get_sensor_data()]
        self._sensor_health = (worst_health([x.health for x in sensors]), time.monotonic())
        return sensors


class _OnPollSession:
    """What pyghmi's ``Command`` needs of a session (``raw_command`` answering pyghmi's
    response dict, as its in-band ``localsession.Session`` does), on our RMCP+ session.

    ``raw_command`` is called in a pool thread; it runs the request on the event loop and
    waits for it.  Only while armed (a driver call is running, within its deadline):
    a call cut off by its caller fails at its next request instead of going on.
    """

    ipmiversion = 2.0

    def __init__(self, where: str, loop: asyncio.AbstractEventLoop, userid: bytes) -> None:
        self.where = where
        self.loop = loop
        self.userid = userid  # pyghmi's OEM modules read these two
        self.password = None
        self.session: RmcpSession | None = None
        self._deadline: float | None = None
        self._task: asyncio.Task | None = None

    def arm(self, deadline: float) -> None:
        self._deadline = deadline

    def disarm(self) -> None:
        self._deadline = None

    async def stop(self) -> None:
        """On the loop: disarm, and end the request in flight (so none outlives the driver's lock)."""
        self._deadline = None
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    def raw_command(self, netfn: int, command: int, bridge_request: Any = None, data: Any = (),
                    retry: bool = True, delay_xmit: Any = None, timeout: Any = None, waitall: bool = False,
                    rslun: int = 0) -> dict[str, Any]:
        deadline = self._deadline
        left = None if deadline is None else deadline - time.monotonic()
        if left is None or left <= 0:
            raise Timeout(f"{self.where}: no answer in time")
        if bridge_request:
            raise DriverError(f"{self.where}: bridged IPMI requests are not supported")
        future = asyncio.run_coroutine_threadsafe(self._request(netfn, command, bytes(data), rslun, left), self.loop)
        try:
            return future.result(left + _GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Timeout(f"{self.where}: no answer in time") from None
        except concurrent.futures.CancelledError:
            raise Timeout(f"{self.where}: no answer in time") from None

    async def _request(self, netfn: int, command: int, data: bytes, lun: int, left: float) -> dict[str, Any]:
        self._task = asyncio.current_task()
        session = self.session
        if session is None or self._deadline is None:
            raise Timeout(f"{self.where}: no answer in time")
        try:
            reply, code = await session.request(netfn, command, data, lun=lun, timeout=left), 0
        except CommandFailed as exc:
            reply, code = b"", exc.code
        finally:
            self._task = None
        rsp: dict[str, Any] = {"netfn": netfn + 1, "command": command, "code": code, "data": bytearray(reply)}
        if code:
            rsp["error"] = pyghmi_util.get_ipmi_error(rsp) or f"completion code {code:02x}h"
        return rsp

    def pause(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, (self._deadline or 0) - time.monotonic())))

    def register_keepalive(self, cmd: Any, callback: Any) -> None:
        return None  # the RMCP+ session keeps itself alive

    def logout(self, *args: Any) -> dict[str, Any]:
        return {"success": True}  # the driver closes the RMCP+ session


def _command_on(address: str, session: _OnPollSession) -> Any:
    """A pyghmi ``Command`` for ``address`` whose requests go through ``session``.

    ``Command.__init__`` would open a pyghmi session of its own (or /dev/ipmi0): its
    attributes are set here as it sets them, without that."""
    cmd = pyghmi_command.Command.__new__(pyghmi_command.Command)
    cmd.onlogon = None
    cmd.bmc = address
    cmd._sdrcachedir = None
    cmd._sdr = None
    cmd._oem = None
    cmd._oemknown = False
    cmd._netchannel = None
    cmd._ipv6support = None
    cmd.certverify = None
    cmd.kwargs = {}
    cmd.ipmi_session = session
    return cmd


def _cache_key(address: str, port: int) -> str:
    """A BMC's key in the SDR cache."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _words(o: BootOverride) -> str:
    if o.target is BootTarget.NONE:
        return o.target.value
    return f"{o.target.value} ({'persistent' if o.persistent else 'once'})"


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
        readable = data[0]
        lw, lc = _threshold(cmd, entry, readable & 0x01, data[1]), _threshold(cmd, entry, readable & 0x02, data[2])
        uw, uc = _threshold(cmd, entry, readable & 0x08, data[4]), _threshold(cmd, entry, readable & 0x10, data[5])
        if entry.linearization == 7:  # 1/x: lower and upper swap meaning
            lw, lc, uw, uc = uw, uc, lw, lc
        out[entry.name] = (lc, lw, uw, uc)
    return out


def _threshold(cmd: Any, entry: Any, readable: int, raw: int) -> float | None:
    """One threshold byte in the sensor's units by the SDR's formula; None when the BMC
    marks it not readable."""
    if not readable:
        return None
    if entry.numeric_format == 2:
        raw = pyghmi_sdr.twos_complement(raw, 8)
    elif entry.numeric_format == 1:
        raw = pyghmi_sdr.ones_complement(raw, 8)
    return round(entry.decode_value(cmd, raw), 3)
