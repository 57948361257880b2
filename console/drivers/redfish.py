"""Redfish driver: one :class:`RedfishDriver` per BMC, speaking DMTF Redfish over httpx.

Layers, top to bottom::

    RedfishDriver    BmcDriver semantics, navigation from /redfish/v1, vendor quirks
    RedfishSession   client, login/logout, one request at a time, error mapping (redfish_http)
    redfish_values   Redfish JSON -> PowerState, Sensor, Event... (pure functions)

How it talks (``docs/protocols.md``, section Redfish):

- One ``httpx.AsyncClient`` per BMC with keep-alive: a reused connection costs a fraction
  of a new one per request, and one client shared by a thousand BMCs is slower than one
  each.
- One SessionService session per BMC, deleted by :meth:`RedfishDriver.close` (leaked
  sessions lock BMCs out).  A 401 re-logs in once; services without a SessionService,
  or whose login answers 404/405, get HTTP Basic credentials on every request instead.
- Every URL is an ``@odata.id`` reachable from ``/redfish/v1``; nothing beyond the
  service root is guessed.  Discovered URLs are cached; live state (power, health,
  boot, sensors, logs) is read fresh on every call.
- Power changes apply later on real BMCs: :meth:`RedfishDriver.power` returns when the
  BMC accepted the request; callers poll :meth:`RedfishDriver.power_state`.
- A boot override is read back after it is set: vendors silently ignore or revert it.
- PATCH carries ``If-Match`` when the resource had an ETag (AMI-based services are
  reported to require it, see tests/data/redfish-mockups/README.md), retried once on 412.
- Vendor differences are rows of :data:`QUIRKS`, keyed by ``Bmc.flavor`` or detected from
  the Manufacturer / ServiceRoot Vendor.  Nothing else branches on a vendor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from console.errors import DriverError, ProtocolError, Timeout
from console.secrets import Secret
from inventory.model import Bmc

from . import redfish_values as rv
from .bmc import BootOverride, BootTarget, Event, Identity, PowerAction, PowerState, Sensor
from .redfish_http import RedfishSession, odata_id

__all__ = ["QUIRKS", "Quirks", "RedfishDriver", "quirks_for"]

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")


# --------------------------------------------------------------------------- vendor quirks
@dataclass(frozen=True)
class Quirks:
    """How one vendor family departs from the DMTF text.  Defaults are plain Redfish."""

    name: str
    #: clear an override with Enabled=Disabled alone, never Target=None
    clear_without_target_none: bool = False
    #: PATCH BootSourceOverrideMode back with every boot override (when the system reports one)
    send_boot_mode: bool = False
    #: ResetType preferences per action that replace the defaults, tried in order
    resets: dict[PowerAction, tuple[str, ...]] = field(default_factory=dict)


#: ResetType per action, first allowed one wins (``ResetType@Redfish.AllowableValues`` inline
#: or through ``@Redfish.ActionInfo``).  ``cycle`` without PowerCycle (iLO 5, AMI) is done as
#: ForceOff, poll until off, then On.
DEFAULT_RESETS: dict[PowerAction, tuple[str, ...]] = {
    PowerAction.ON: ("On", "ForceOn"),
    PowerAction.OFF: ("ForceOff",),
    PowerAction.SOFT: ("GracefulShutdown",),
    PowerAction.CYCLE: ("PowerCycle",),
    PowerAction.RESET: ("ForceRestart", "GracefulRestart"),
}

#: The vendor quirk table: only what docs/protocols.md or a mockup shows.  Reset types differ per
#: vendor, but every mockup states them in AllowableValues/ActionInfo, so no row needs ``resets``
#: yet; it is there for the first vendor whose allowed list misleads.
QUIRKS: dict[str, Quirks] = {
    q.name: q
    for q in (
        Quirks("generic"),
        # iDRAC9 ignores an override in some modes (metal-operator#80): the read-back catches it.
        Quirks("dell"),
        # iLO rejects BootSourceOverrideTarget "None" although it lists it (metal-operator#998).
        Quirks("hpe", clear_without_target_none=True),
        Quirks("lenovo"),
        # Supermicro needs BootSourceOverrideMode sent back (DMTF/Redfishtool#106), and may answer
        # 200 then revert (bmc-toolbox/bmclib#459): the read-back catches that.  Only Supermicro:
        # writing the mode fails on systems that do not let it change
        # (ansible-collections/community.general#3581).
        Quirks("supermicro", send_boot_mode=True),
        Quirks("openbmc"),
    )
}

#: Bmc.flavor spellings (inventory and lab names) -> QUIRKS key.
_FLAVOR_ALIASES = {
    "dell": "dell", "idrac": "dell", "hpe": "hpe", "ilo": "hpe", "lenovo": "lenovo", "xcc": "lenovo",
    "supermicro": "supermicro", "openbmc": "openbmc", "dmtf": "generic", "generic": "generic",
    "sushy": "generic",  # sushy-tools: reads every override back continuous (console.ops.bootquirk judges it)
}
#: substrings of Manufacturer / ServiceRoot Vendor (lower case) -> QUIRKS key.
_VENDOR_HINTS = (("dell", "dell"), ("hpe", "hpe"), ("hewlett", "hpe"), ("lenovo", "lenovo"),
                 ("supermicro", "supermicro"), ("openbmc", "openbmc"))


def quirks_for(flavor: str | None, *vendor_strings: str | None) -> Quirks:
    """The quirk row for an inventory flavor, else the one a vendor string names, else generic."""
    if flavor:
        key = _FLAVOR_ALIASES.get(flavor.lower())
        if key is None:
            raise DriverError(f"unknown Redfish flavor {flavor!r} (known: {', '.join(sorted(_FLAVOR_ALIASES))})")
        return QUIRKS[key]
    for text in vendor_strings:
        low = (text or "").lower()
        for hint, key in _VENDOR_HINTS:
            if hint in low:
                return QUIRKS[key]
    return QUIRKS["generic"]


#: log service Ids (lower case) that hold hardware events, best first
_EVENT_LOGS = ("sel", "iml", "eventlog")
#: log services that are never the hardware event log (other Ids rank after _EVENT_LOGS)
_NOT_EVENT_LOGS = frozenset({"journal", "hostlogger", "auditlog", "bios", "dump", "crashdump", "faultlog",
                             "debuglog", "sl", "iel", "postcodes"})
_MAX_LOG_PAGES = 50


# --------------------------------------------------------------------------- the driver
#: What reading a BMC's JSON of an unexpected shape can raise where no check caught it first
_SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)


def _at_bmc(method: Callable[Concatenate[RedfishDriver, P], Coroutine[Any, Any, T]]
            ) -> Callable[Concatenate[RedfishDriver, P], Coroutine[Any, Any, T]]:
    """Errors of a BmcDriver call name the BMC: a value error from :mod:`redfish_values`
    ("ComputerSystem.PowerState is a list...") gets the address in front, and a JSON shape
    nothing checked becomes that node's ProtocolError instead of a crash of the poll."""
    @functools.wraps(method)
    async def call(self: RedfishDriver, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except DriverError as exc:
            if exc.message.startswith(f"{self.address}:"):
                raise
            named = type(exc)(f"{self.address}: {exc.message}", detail=f"{self.address}: {exc.detail}")
            named.__dict__.update({k: v for k, v in exc.__dict__.items() if k not in ("message", "detail")})
            raise named from exc
        except _SHAPE_ERRORS as exc:
            log.warning("%s: %s: unexpected answer", self.address, method.__name__, exc_info=True)
            raise ProtocolError(f"{self.address}: {method.__name__}: unexpected answer "
                                f"({type(exc).__name__})") from exc
    return call


class RedfishDriver:
    """An open connection to one Redfish BMC (satisfies :class:`console.drivers.bmc.BmcDriver`).

    ``client`` lets a caller supply its own ``httpx.AsyncClient``: its TLS settings then
    apply and :meth:`close` leaves it open.  By default the driver owns one per BMC.
    Nothing is sent before the first call.
    """

    #: seconds between power-state polls during a ForceOff+On power cycle
    poll_interval: float = 1.0
    #: how long a ForceOff+On cycle waits for the power to drop before giving up
    cycle_off_timeout: float = 60.0
    #: seconds :meth:`health` reuses the ComputerSystem :meth:`power_state` just read, so one
    #: power + health poll costs one GET (the poller calls them back to back); any other
    #: call in between, or a second health(), reads afresh
    poll_reuse: float = 2.0

    def __init__(self, bmc: Bmc, password: Secret, *, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None, session: RedfishSession | None = None) -> None:
        if bmc.protocol != "redfish":
            raise DriverError(f"{bmc.address}: RedfishDriver needs a redfish BMC, not {bmc.protocol}")
        self.bmc = bmc
        self.address = bmc.address
        self._password = password
        # a borrowed session (for_system) is the lender's to log out
        self._owns_session = session is None
        self._http = session or RedfishSession(bmc, password, timeout=timeout, client=client)
        # discovered once, then cached
        self._system_uri: str | None = None
        self._chassis_uri: str | None = None
        self._manager_uri: str | None = None
        self._manager_known = False
        self._sensor_sources: tuple[str | None, str | None, str | None] | None = None  # Thermal, Power, Sensors
        self._log_entries_uri: str | None = None
        self._log_known = False
        self._quirks: Quirks | None = None
        self._polled: tuple[dict[str, Any], float] | None = None  # (ComputerSystem, monotonic) from power_state

    def __repr__(self) -> str:
        return f"RedfishDriver({self._http.base}, user={self.bmc.username!r})"

    @property
    def auth_mode(self) -> str:
        """``session`` (X-Auth-Token), ``basic`` (no usable SessionService) or ``none`` (not logged in yet)."""
        return self._http.auth_mode

    async def __aenter__(self) -> RedfishDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ BmcDriver
    @_at_bmc
    async def power_state(self) -> PowerState:
        """PowerState of the ComputerSystem (PoweringOn counts as on, PoweringOff as off)."""
        system = await self._system()
        self._polled = (system, time.monotonic())
        value = rv.opt_str(system, "PowerState", "ComputerSystem")
        return rv.POWER.get(value, PowerState.UNKNOWN) if value else PowerState.UNKNOWN

    @_at_bmc
    async def power(self, action: PowerAction) -> None:
        """POST ComputerSystem.Reset with the ResetType the BMC allows for ``action``.

        Returns once the BMC accepted the request; poll :meth:`power_state` for the result.
        The one exception: ``cycle`` on a BMC without PowerCycle sends ForceOff, waits (up to
        :attr:`cycle_off_timeout`) until the power is off, then sends On.
        """
        action = PowerAction(action)
        self._polled = None
        system = await self._system()
        target, allowed = await self._reset_action(system)
        quirks = await self._vendor_quirks(system)
        kind = rv.choose(quirks.resets.get(action, DEFAULT_RESETS[action]), allowed)
        on = rv.choose(DEFAULT_RESETS[PowerAction.ON], allowed)
        if kind is None and action == PowerAction.CYCLE and on and rv.choose(("ForceOff",), allowed):
            if rv.POWER.get(rv.opt_str(system, "PowerState", "ComputerSystem") or "") != PowerState.OFF:
                await self._reset(target, "ForceOff")
                await self._wait_power(PowerState.OFF, self.cycle_off_timeout)
            kind = on  # a cycle of a machine that is off powers it on, as PowerCycle does
        if kind is None:
            raise DriverError(f"{self.address}: the BMC offers no reset type for {action.value!r} "
                              f"(allowed: {', '.join(allowed or ())})")
        await self._reset(target, kind)

    @_at_bmc
    async def boot_override(self) -> BootOverride:
        """The boot override the system reports now."""
        self._polled = None  # health() reuses only a power_state() read just before it
        return rv.boot_from(await self._system())

    @_at_bmc
    async def set_boot_override(self, target: BootTarget, *, persistent: bool = False) -> None:
        """PATCH Boot on the system, then read it back (vendors silently ignore or revert it)."""
        target = BootTarget(target)
        self._polled = None
        if target not in rv.BOOT_TARGETS:
            raise DriverError(f"{self.address}: boot override {target.value!r} cannot be set (read back only)")
        uri = await self._system_url()
        system, etag = await self._http.get_with_etag(uri)
        boot = system.get("Boot")
        if not isinstance(boot, dict):
            raise DriverError(f"{self.address}: the system has no boot override (no Boot property)")
        quirks = await self._vendor_quirks(system)
        if target == BootTarget.NONE:
            body: dict[str, Any] = {"BootSourceOverrideEnabled": "Disabled"}
            if not quirks.clear_without_target_none:
                body["BootSourceOverrideTarget"] = "None"
        else:
            body = {"BootSourceOverrideTarget": rv.BOOT_TARGETS[target],
                    "BootSourceOverrideEnabled": "Continuous" if persistent else "Once"}
            for prop, value in body.items():
                allowed = boot.get(f"{prop}@Redfish.AllowableValues")
                if isinstance(allowed, list) and value not in allowed:
                    raise DriverError(f"{self.address}: the BMC does not allow {prop} {value!r} "
                                      f"(allowed: {', '.join(map(str, allowed))})")
        mode = boot.get("BootSourceOverrideMode")
        if quirks.send_boot_mode and isinstance(mode, str) and mode:  # blank on some (metal-operator#553)
            body["BootSourceOverrideMode"] = mode
        try:
            await self._http.request("PATCH", uri, json={"Boot": body}, headers={"If-Match": etag} if etag else None)
        except ProtocolError as exc:
            if getattr(exc, "status", None) != 412 or not etag:
                raise
            _, etag = await self._http.get_with_etag(uri)  # the system changed since our GET: once more
            await self._http.request("PATCH", uri, json={"Boot": body}, headers={"If-Match": etag} if etag else None)
        got = await self.boot_override()
        want = BootOverride(target, persistent and target != BootTarget.NONE)
        # asked once, read back continuous (sushy-tools, some vendors): the device is right; the
        # caller judges it and clears the override after the boot (console.ops.bootquirk)
        if got != want and not (got.target == want.target and got.persistent and not want.persistent):
            raise ProtocolError(f"{self.address}: boot override not applied: asked {_boot_words(want)}, "
                                f"the BMC reports {_boot_words(got)}")

    @_at_bmc
    async def health(self) -> str:
        """Status.HealthRollup (else Health) of the system: ok, warning, critical or unknown."""
        polled, self._polled = self._polled, None  # used once: a later health() reads afresh
        if polled is not None and time.monotonic() - polled[1] <= self.poll_reuse:
            system = polled[0]
        else:
            system = await self._system()
        status = system.get("Status")
        if status is None:
            return "unknown"
        if not isinstance(status, dict):
            raise ProtocolError(f"{self.address}: ComputerSystem Status is not an object")
        value = rv.opt_str(status, "HealthRollup", "Status") or rv.opt_str(status, "Health", "Status")
        return rv.HEALTH.get(value, "unknown") if value else "unknown"

    @_at_bmc
    async def sensors(self) -> list[Sensor]:
        """Thermal + Power of the system's chassis, or its Sensors collection when Thermal is absent."""
        self._polled = None  # health() reuses only a power_state() read just before it
        thermal, power, sensors = await self._sensor_urls()
        out: list[Sensor] = []
        if thermal is not None:
            out += rv.thermal_sensors(await self._http.get(thermal))
        elif sensors is not None:
            return await self._collection_sensors(sensors)
        if power is not None:
            out += rv.power_sensors(await self._http.get(power))
        if thermal is None and power is None:
            raise DriverError(f"{self.address}: the chassis links no Thermal, Power or Sensors resource")
        return out

    @_at_bmc
    async def events(self, limit: int = 100) -> list[Event]:
        """The last ``limit`` entries of the hardware event log (SEL, IML, EventLog), newest last.

        An empty list when the BMC exposes no event log.
        """
        self._polled = None  # health() reuses only a power_state() read just before it
        uri = await self._event_log_entries()
        if uri is None or limit <= 0:
            return []
        entries: list[dict[str, Any]] = []
        page_uri = uri
        for _ in range(_MAX_LOG_PAGES):
            page = await self._http.get(page_uri)
            for m in rv.members(page, "Members", "LogEntryCollection"):
                if not isinstance(m, dict):
                    raise ProtocolError(f"{self.address}: a log entry is not an object")
                entries.append(m)
            next_uri = page.get("Members@odata.nextLink")
            if not isinstance(next_uri, str) or not next_uri:
                break
            page_uri = next_uri
        events = [rv.event(e) for e in entries if set(e) - {"@odata.id"}]
        bare = [odata_id(e, "LogEntry") for e in entries if not set(e) - {"@odata.id"}]
        for link in bare[-limit:]:  # members given as bare links: read the last few only
            events.append(rv.event(await self._http.get(link)))
        # Services list oldest first or newest first: order by time, then by numeric Id.
        events.sort(key=lambda e: (e.timestamp if e.timestamp is not None else float("-inf"), rv.id_key(e.id)))
        return events[-limit:]

    @_at_bmc
    async def identity(self) -> Identity:
        """Manufacturer, model, serial, UUID, BIOS and BMC firmware versions, NIC MACs."""
        self._polled = None  # health() reuses only a power_state() read just before it
        system = await self._system()
        root = await self._http.service_root()
        firmware = ""
        if (manager_uri := await self._manager_url(system)) is not None:
            manager = await self._http.get_optional(manager_uri)
            firmware = rv.opt_str(manager or {}, "FirmwareVersion", "Manager") or ""
        macs: list[str] = []
        nics = system.get("EthernetInterfaces")
        if isinstance(nics, dict) and "@odata.id" in nics:
            coll = await self._http.get_optional(odata_id(nics, "EthernetInterfaces"))
            for member in rv.members(coll or {}, "Members", "EthernetInterfaceCollection"):
                nic = member if isinstance(member, dict) and "MACAddress" in member else \
                    await self._http.get(odata_id(member, "EthernetInterface"))
                mac = rv.mac(rv.opt_str(nic, "MACAddress", "EthernetInterface") or
                             rv.opt_str(nic, "PermanentMACAddress", "EthernetInterface") or "")
                if mac is not None and mac not in macs:
                    macs.append(mac)

        def prop(key: str) -> str:
            return rv.opt_str(system, key, "ComputerSystem") or ""

        return Identity(
            vendor=prop("Manufacturer") or rv.opt_str(root, "Vendor", "ServiceRoot") or "",
            model=prop("Model"),
            serial=prop("SerialNumber"),
            uuid=prop("UUID").lower(),
            bios_version=prop("BiosVersion"),
            bmc_firmware=firmware,
            macs=tuple(macs),
        )

    def for_system(self, bmc: Bmc) -> RedfishDriver:
        """A driver for another system of this service (its ``bmc.system``) over this
        driver's session: one login, one request at a time for both (a blade enclosure's
        systems).  Its :meth:`close` leaves the session alone; this driver's logs out."""
        mine = self.bmc
        if (bmc.address, bmc.effective_port, bmc.scheme, bmc.username) != \
                (mine.address, mine.effective_port, mine.scheme, mine.username):
            raise DriverError(f"{bmc.address}: not the service and user of {mine.address}'s session")
        return RedfishDriver(bmc, self._password, session=self._http)

    async def close(self) -> None:
        """Delete our session (logout) and close the client; safe to call twice.  A driver
        made by :meth:`for_system` only drops the session it borrowed."""
        if self._owns_session:
            await self._http.close()

    # ------------------------------------------------------------------ navigation
    async def _system_url(self) -> str:
        """The ComputerSystem this driver manages: ``bmc.system`` by Id, else the only one."""
        if self._system_uri is not None:
            return self._system_uri
        root = await self._http.service_root()
        if "Systems" not in root:
            raise DriverError(f"{self.address}: the service root links no Systems collection")
        coll = await self._http.get(odata_id(root["Systems"], "Systems"))
        uris = [odata_id(m, "Systems member") for m in rv.members(coll, "Members", "ComputerSystemCollection")]
        if not uris:
            raise DriverError(f"{self.address}: the Systems collection is empty")
        want = self.bmc.system
        if want is None:
            if len(uris) > 1:
                listed = ", ".join(rv.last_segment(u) for u in uris)
                raise DriverError(f"{self.address}: {len(uris)} systems ({listed}); set bmc.system to choose one")
            self._system_uri = uris[0]
            return uris[0]
        match = [u for u in uris if rv.last_segment(u).lower() == want.lower()]
        if len(match) != 1:  # the Id is usually the last path segment; read the members to be sure
            ids = []
            for uri in uris:
                ids.append(rv.opt_str(await self._http.get(uri), "Id", "ComputerSystem") or rv.last_segment(uri))
            match = [u for u, i in zip(uris, ids, strict=True) if i == want]
            if not match:
                raise DriverError(f"{self.address}: no system {want!r}; the BMC has {', '.join(ids)}")
        self._system_uri = match[0]
        return match[0]

    async def _system(self) -> dict[str, Any]:
        return await self._http.get(await self._system_url())

    async def _vendor_quirks(self, system: dict[str, Any]) -> Quirks:
        if self._quirks is None:
            root = await self._http.service_root()
            self._quirks = quirks_for(self.bmc.flavor, rv.opt_str(system, "Manufacturer", "ComputerSystem"),
                                      rv.opt_str(root, "Vendor", "ServiceRoot"))
        return self._quirks

    async def _chassis_url(self) -> str:
        """The system's chassis (Links.Chassis), else the Chassis collection member that holds it."""
        if self._chassis_uri is not None:
            return self._chassis_uri
        linked = rv.links(await self._system(), "Chassis")
        if not linked:
            root = await self._http.service_root()
            if "Chassis" not in root:
                raise DriverError(f"{self.address}: no chassis is linked from the system or the service root")
            coll = await self._http.get(odata_id(root["Chassis"], "Chassis"))
            uris = [odata_id(m, "Chassis member") for m in rv.members(coll, "Members", "ChassisCollection")]
            system_uri = await self._system_url()
            if len(uris) > 1:
                uris = [u for u in uris if rv.same_path(system_uri, rv.links(await self._http.get(u),
                                                                              "ComputerSystems"))]
            if len(uris) != 1:
                raise DriverError(f"{self.address}: cannot tell which chassis holds the system")
            linked = uris
        self._chassis_uri = linked[0]
        return linked[0]

    async def _manager_url(self, system: dict[str, Any]) -> str | None:
        if not self._manager_known:
            managers = rv.links(system, "ManagedBy")
            self._manager_uri = managers[0] if managers else None
            self._manager_known = True
        return self._manager_uri

    async def _sensor_urls(self) -> tuple[str | None, str | None, str | None]:
        if self._sensor_sources is None:
            chassis = await self._http.get(await self._chassis_url())
            found = [odata_id(chassis[p], p) if isinstance(chassis.get(p), dict) else None
                     for p in ("Thermal", "Power", "Sensors")]
            self._sensor_sources = (found[0], found[1], found[2])
        return self._sensor_sources

    async def _collection_sensors(self, uri: str) -> list[Sensor]:
        out = []
        for member in rv.members(await self._http.get(uri), "Members", "SensorCollection"):
            doc = member if isinstance(member, dict) and "Reading" in member else \
                await self._http.get(odata_id(member, "Sensor"))
            if (sensor := rv.sensor_resource(doc)) is not None:
                out.append(sensor)
        return out

    async def _event_log_entries(self) -> str | None:
        """Entries URL of the best event log under the system or its manager (found once)."""
        if self._log_known:
            return self._log_entries_uri
        system = await self._system()
        owners = [system]
        if (manager_uri := await self._manager_url(system)) is not None:
            if (manager := await self._http.get_optional(manager_uri)) is not None:
                owners.append(manager)
        services: list[str] = []
        for owner in owners:
            if isinstance(owner.get("LogServices"), dict):
                coll = await self._http.get_optional(odata_id(owner["LogServices"], "LogServices"))
                services += [odata_id(m, "LogServices member")
                             for m in rv.members(coll or {}, "Members", "LogServiceCollection")]

        def rank(uri: str) -> int:
            name = rv.last_segment(uri).lower()
            if name in _EVENT_LOGS:
                return _EVENT_LOGS.index(name)
            return 99 if name in _NOT_EVENT_LOGS else len(_EVENT_LOGS)

        best = min(((rank(u), i, u) for i, u in enumerate(services)), default=None)
        if best is not None and best[0] < 99:
            entries = (await self._http.get(best[2])).get("Entries")
            self._log_entries_uri = odata_id(entries, "LogService.Entries") if entries is not None else None
        self._log_known = True
        return self._log_entries_uri

    # ------------------------------------------------------------------ actions
    async def _reset_action(self, system: dict[str, Any]) -> tuple[str, list[str] | None]:
        """Target and allowed ResetTypes (inline, or from @Redfish.ActionInfo; None when unstated)."""
        actions = system.get("Actions")
        action = actions.get("#ComputerSystem.Reset") if isinstance(actions, dict) else None
        if not isinstance(action, dict) or not isinstance(action.get("target"), str):
            raise DriverError(f"{self.address}: the system offers no ComputerSystem.Reset action")
        allowed = action.get("ResetType@Redfish.AllowableValues")
        if allowed is None and isinstance(action.get("@Redfish.ActionInfo"), str):
            info = await self._http.get_optional(action["@Redfish.ActionInfo"])
            for param in rv.members(info or {}, "Parameters", "ActionInfo"):
                if isinstance(param, dict) and param.get("Name") == "ResetType":
                    allowed = param.get("AllowableValues")
        if allowed is not None and not (isinstance(allowed, list) and all(isinstance(v, str) for v in allowed)):
            raise ProtocolError(f"{self.address}: ResetType AllowableValues is not a list of strings")
        return action["target"], allowed

    async def _reset(self, target: str, kind: str) -> None:
        await self._http.request("POST", target, json={"ResetType": kind})

    async def _wait_power(self, want: PowerState, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.power_state() != want:
            if loop.time() >= deadline:
                raise Timeout(f"{self.address}: power did not turn {want.value} within {timeout:g} s")
            await asyncio.sleep(self.poll_interval)


def _boot_words(b: BootOverride) -> str:
    return f"{b.target.value}/{'continuous' if b.persistent else 'once'}"
