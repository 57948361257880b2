"""Redfish BMC simulator: many lab BMCs served by one aiohttp application.

Each simulated BMC owns one listening socket (its loopback address and port, HTTP or
HTTPS).  All sockets feed a single aiohttp ``Application`` with one catch-all route;
a request finds its BMC by the *local* address of its connection
(``transport.get_extra_info("sockname")``), never by the client-controlled Host
header.  HTTPS sockets share one ``SSLContext`` whose certificate names every lab
address (:mod:`console.lab.tls`).  A thousand BMCs are a thousand sockets and a
thousand small ``_Bmc`` objects, nothing more.

Layers, top to bottom::

    RedfishLab     lifecycle, sockets, faults, authentication, JSON/HTTP encoding
    _Bmc           one BMC: route table, sessions, resource bodies, actions
    Machine        the simulated server behind it (console.lab.machine)

Vendor layouts differ (ids, where the SEL and virtual media live, fan units): they
are rows of :data:`FLAVORS` and nothing else branches on the vendor name.
Resource shapes follow the published DMTF ``public-rackmount1`` mockup and the
vendor captures in ``tests/data/redfish-mockups``.

Faults (``RedfishLab.fault[address] = mode``, read on every request):

``"hang"``            accept the request, never answer (until the lab stops)
``"http500"``         answer every request with 500 and a Redfish error body
``"malformed_json"``  answer normally but cut every JSON body in half
``"auth_fail"``       reject every credential (the service root still answers)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import ipaddress
import json
import re
import secrets
import shutil
import socket
import tempfile
import time
import uuid as uuidlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from . import tls
from .machine import BootDevice, Machine, SelEvent, SensorReading
from .redfish_common import HEALTH as _HEALTH
from .redfish_common import RedfishError as _RedfishError
from .redfish_common import Reply as _Reply
from .redfish_common import collection as _collection
from .redfish_common import iso as _iso
from .redfish_common import json_body as _json_body
from .redfish_common import link as _link
from .redfish_common import status as _status

__all__ = ["FAULT_MODES", "FLAVORS", "Flavor", "RedfishLab"]

#: the values RedfishLab.fault accepts ("" means healthy); see the module docstring.
FAULT_MODES = ("", "malformed_json", "hang", "http500", "auth_fail")


# --------------------------------------------------------------------------- flavors
@dataclass(frozen=True)
class Flavor:
    """How one vendor family lays out its Redfish tree."""

    name: str
    system_ids: tuple[str, str]  # first system's Id; format of the n-th ({n}; {m} is n + 1)
    chassis_id: str
    manager_id: str
    manufacturer: str | None  # ComputerSystem.Manufacturer; None: the machine's own vendor
    vendor: str | None  # ServiceRoot.Vendor
    log_owner: str  # "Systems" or "Managers": which resource holds the SEL
    log_id: str
    media_owner: str  # "Systems" or "Managers": which resource holds virtual media
    media_id: str
    nic_id: str  # "{mac}": the MAC without colons
    extra_resets: tuple[str, ...]  # reset types beyond the common seven
    sensors: bool  # Chassis/<id>/Sensors collection present
    fan_units: str  # "RPM" or "Percent" (HPE reports fans in percent)
    odata_context: bool  # emit @odata.context (older vendor firmware does)
    #: BootSourceOverrideEnabled ignored when written and always reported as this (sushy-tools:
    #: "Continuous"), so a target set "Once" boots every time until the target is set to None
    boot_enabled: str | None = None


#: every vendor layout the lab serves, by the name RedfishLab.add(flavor=...) takes.
FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor(name="dmtf", system_ids=("437XR1138R2", "437XR1138R{m}"), chassis_id="1U", manager_id="BMC",
               manufacturer=None, vendor=None, log_owner="Systems", log_id="SEL",
               media_owner="Managers", media_id="CD1", nic_id="{mac}",
               extra_resets=("ForceOn", "PushPowerButton"), sensors=True, fan_units="RPM", odata_context=False),
        Flavor(name="idrac", system_ids=("System.Embedded.1", "System.Embedded.{n}"),
               chassis_id="System.Embedded.1", manager_id="iDRAC.Embedded.1",
               manufacturer="Dell Inc.", vendor="Dell", log_owner="Managers", log_id="Sel",
               media_owner="Systems", media_id="1", nic_id="NIC.Integrated.1-1-1",
               extra_resets=("PushPowerButton",), sensors=True, fan_units="RPM", odata_context=True),
        Flavor(name="ilo", system_ids=("1", "{n}"), chassis_id="1", manager_id="1",
               manufacturer="HPE", vendor="HPE", log_owner="Systems", log_id="IML",
               media_owner="Managers", media_id="2", nic_id="1",
               extra_resets=("PushPowerButton",), sensors=False, fan_units="Percent", odata_context=True),
        Flavor(name="openbmc", system_ids=("system", "system{n}"), chassis_id="chassis", manager_id="bmc",
               manufacturer=None, vendor=None, log_owner="Systems", log_id="EventLog",
               media_owner="Managers", media_id="Slot_0", nic_id="eth0",
               extra_resets=("ForceOn",), sensors=True, fan_units="RPM", odata_context=False),
        # OpenStack's sushy-tools emulator: the DMTF layout, with its boot override quirk
        Flavor(name="sushy", system_ids=("437XR1138R2", "437XR1138R{m}"), chassis_id="1U", manager_id="BMC",
               manufacturer=None, vendor=None, log_owner="Systems", log_id="SEL",
               media_owner="Managers", media_id="CD1", nic_id="{mac}",
               extra_resets=("ForceOn", "PushPowerButton"), sensors=True, fan_units="RPM", odata_context=False,
               boot_enabled="Continuous"),
    )
}

_COMMON_RESETS = ("On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "Nmi")

# GracefulRestart maps to a warm reset: the simulated OS has no reboot-by-ACPI path.
_RESETS: dict[str, Callable[[Machine], None]] = {
    "On": Machine.power_on,
    "ForceOn": Machine.power_on,
    "ForceOff": Machine.power_off,
    "GracefulShutdown": Machine.power_soft,
    "GracefulRestart": Machine.power_reset,
    "ForceRestart": Machine.power_reset,
    "PowerCycle": Machine.power_cycle,
    "Nmi": lambda m: None,
    "PushPowerButton": lambda m: m.power_soft() if m.powered else m.power_on(),
}

_BOOT_TARGETS = {
    "None": BootDevice.NONE,
    "Pxe": BootDevice.PXE,
    "Hdd": BootDevice.DISK,
    "Cd": BootDevice.CD,
    "BiosSetup": BootDevice.BIOS,
}
_BOOT_NAMES = {v: k for k, v in _BOOT_TARGETS.items()}
_BOOT_ENABLED = ("Disabled", "Once", "Continuous")
_FAN_FULL_RPM = 12000.0  # what 100 % means when a flavor reports fans in percent

def _sensor_id(s: SensorReading) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", s.name)


def _physical_context(s: SensorReading) -> str:
    if s.kind == "temperature":
        return "Intake" if "inlet" in s.name.lower() else "CPU" if "cpu" in s.name.lower() else "SystemBoard"
    return {"fan": "Fan", "power": "PowerSupply", "voltage": "VoltageRegulator"}.get(s.kind, "SystemBoard")


def _thresholds(s: SensorReading) -> dict[str, float]:
    """Thermal/Power style ``<prefix>Threshold*`` keys for the thresholds the sensor has."""
    out = {}
    for key, value in (("UpperThresholdNonCritical", s.upper_warning), ("UpperThresholdCritical", s.upper_critical),
                       ("LowerThresholdNonCritical", s.lower_warning), ("LowerThresholdCritical", s.lower_critical)):
        if value is not None:
            out[key] = value
    return out


@dataclass
class _Session:
    id: str
    token: str
    username: str
    created: float  # wall clock, for CreatedTime
    last_used: float  # monotonic, for the idle timeout


@dataclass
class _Media:
    """One virtual CD drive."""

    image: str | None = None
    inserted: bool = False
    write_protected: bool = True


@dataclass
class _Settings:
    """Knobs shared by every BMC of one lab (mutable at runtime)."""

    session_timeout: float = 1800.0
    max_sessions: int = 16
    latency: float = 0.0


# --------------------------------------------------------------------------- one BMC
def _route(template: str) -> re.Pattern[str]:
    """Compile ``/a/{name}/b/{kind:X|Y}`` into a regex with one named group per placeholder."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(?::([^}]+))?\}", template):
        out += re.escape(template[pos:m.start()]) + f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + r"\Z")


_OWNER = "/redfish/v1/{kind:Systems|Managers}/{owner}"  # logs and media hang off either, per flavor
# path template -> {HTTP method: _Bmc handler}; the same table serves every flavor.
_ROUTES: list[tuple[re.Pattern[str], dict[str, str]]] = [(_route(t), m) for t, m in {
    "/redfish": {"GET": "get_versions"},
    "/redfish/v1": {"GET": "get_root"},
    "/redfish/v1/Systems": {"GET": "get_systems"},
    "/redfish/v1/Systems/{sys}": {"GET": "get_system", "PATCH": "patch_system"},
    "/redfish/v1/Systems/{sys}/Actions/ComputerSystem.Reset": {"POST": "post_reset"},
    "/redfish/v1/Systems/{sys}/EthernetInterfaces": {"GET": "get_nics"},
    "/redfish/v1/Systems/{sys}/EthernetInterfaces/{nic}": {"GET": "get_nic"},
    _OWNER + "/LogServices": {"GET": "get_log_services"},
    _OWNER + "/LogServices/{log}": {"GET": "get_log_service"},
    _OWNER + "/LogServices/{log}/Entries": {"GET": "get_log_entries"},
    _OWNER + "/LogServices/{log}/Entries/{entry}": {"GET": "get_log_entry"},
    _OWNER + "/LogServices/{log}/Actions/LogService.ClearLog": {"POST": "post_clear_log"},
    _OWNER + "/VirtualMedia": {"GET": "get_media_collection"},
    _OWNER + "/VirtualMedia/{media}": {"GET": "get_media"},
    _OWNER + "/VirtualMedia/{media}/Actions/VirtualMedia.{verb:InsertMedia|EjectMedia}": {"POST": "post_media"},
    "/redfish/v1/Chassis": {"GET": "get_chassis_collection"},
    "/redfish/v1/Chassis/{ch}": {"GET": "get_chassis"},
    "/redfish/v1/Chassis/{ch}/Thermal": {"GET": "get_thermal"},
    "/redfish/v1/Chassis/{ch}/Power": {"GET": "get_power"},
    "/redfish/v1/Chassis/{ch}/Sensors": {"GET": "get_sensors"},
    "/redfish/v1/Chassis/{ch}/Sensors/{sensor}": {"GET": "get_sensor"},
    "/redfish/v1/Managers": {"GET": "get_managers"},
    "/redfish/v1/Managers/{mgr}": {"GET": "get_manager"},
    "/redfish/v1/Managers/{mgr}/Actions/Manager.Reset": {"POST": "post_manager_reset"},
    "/redfish/v1/SessionService": {"GET": "get_session_service"},
    "/redfish/v1/SessionService/Sessions": {"GET": "get_sessions", "POST": "post_session"},
    "/redfish/v1/SessionService/Sessions/{sid}": {"GET": "get_session", "DELETE": "delete_session"},
    "/redfish/v1/AccountService": {"GET": "get_account_service"},
    "/redfish/v1/AccountService/Accounts": {"GET": "get_accounts"},
    "/redfish/v1/AccountService/Accounts/{acct}": {"GET": "get_account"},
}.items()]
# Handlers that answer without credentials (the spec allows it; POST Sessions carries its own).
_PUBLIC = frozenset({"get_versions", "get_root", "post_session"})

_ROOT = "/redfish/v1"


class _Bmc:
    """One simulated BMC: identity, systems, sessions, and the body of every resource.

    Handlers take the route's path parameters and the parsed request body; GET
    handlers return a JSON dict, the others a :class:`_Reply`.  Unknown ids raise
    ``ResourceMissingAtURI``.
    """

    def __init__(self, machine: Machine, address: str, port: int, scheme: str, username: str, password: str,
                 flavor: Flavor, systems: int, settings: _Settings, media: dict[str, _Media],
                 members: Mapping[str, Machine] | None = None) -> None:
        self.machine = machine
        self.address = address
        self.port = port
        self.scheme = scheme
        self.username = username
        self.password = password
        self.flavor = flavor
        self.settings = settings
        self.media = media
        self.sessions: dict[str, _Session] = {}
        self.logins = 0  # sessions ever created
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.uuid = str(uuidlib.uuid5(machine.uuid, "bmc"))
        first, fmt = flavor.system_ids
        self.systems: dict[str, Machine] = {first: machine}
        for n in range(2, systems + 1):
            self.systems[fmt.format(n=n, m=n + 1)] = self._sibling(n)
        if members is not None:
            self.systems = dict(members)
        #: the machines that are nodes of their own (their names map to this BMC's port)
        self.nodes = list(members.values()) if members is not None else [machine]
        self.boot_mode = {sid: "UEFI" for sid in self.systems}
        self.chassis_uri = f"{_ROOT}/Chassis/{flavor.chassis_id}"
        self.manager_uri = f"{_ROOT}/Managers/{flavor.manager_id}"

    def _sibling(self, n: int) -> Machine:
        """Another node of a multi-node chassis: its own machine, so actions stay independent."""
        m = self.machine
        digest = binascii.crc32(f"{m.name}/{n}".encode())
        # Locally administered MAC (0x02 first octet) so it cannot collide with the inventory's.
        mac = "02:" + ":".join(f"{(digest >> s) & 0xFF:02x}" for s in (24, 16, 8, 0)) + f":{n & 0xFF:02x}"
        spec = dataclasses.replace(m.spec, name=f"{m.name}-n{n}", mac=mac, serial_number="", provisioner_url=None,
                                   seed=0)
        return Machine(spec, m.loop, time_scale=m.time_scale, clock=m.clock)

    # ------------------------------------------------------------- routing helpers
    @staticmethod
    def route(path: str) -> tuple[dict[str, str], dict[str, str]]:
        """Return ``(methods, params)`` for ``path`` or raise ResourceMissingAtURI."""
        for pattern, methods in _ROUTES:
            if m := pattern.match(path):
                return methods, m.groupdict()
        raise _RedfishError("ResourceMissingAtURI", path)

    def _missing(self, *parts: str) -> _RedfishError:
        return _RedfishError("ResourceMissingAtURI", "/".join((_ROOT, *parts)))

    def _system(self, sid: str) -> Machine:
        if sid not in self.systems:
            raise self._missing("Systems", sid)
        return self.systems[sid]

    def _check_chassis(self, ch: str) -> None:
        if ch != self.flavor.chassis_id:
            raise self._missing("Chassis", ch)

    def _owner(self, p: dict[str, str], what: str) -> Machine:
        """The machine whose log or media lives at ``/<kind>/<owner>`` (per flavor), else 404."""
        kind, owner = p["kind"], p["owner"]
        where = self.flavor.log_owner if what == "log" else self.flavor.media_owner
        if kind == where == "Systems" and owner in self.systems:
            return self.systems[owner]
        if kind == where == "Managers" and owner == self.flavor.manager_id:
            return self.machine
        raise self._missing(kind, owner, "LogServices" if what == "log" else "VirtualMedia")

    def _owner_uri(self, kind: str, sid: str) -> str:
        return f"{_ROOT}/Systems/{sid}" if kind == "Systems" else self.manager_uri

    def _system_uri(self, sid: str) -> str:
        return f"{_ROOT}/Systems/{sid}"

    # ------------------------------------------------------------- sessions
    def prune_sessions(self) -> None:
        """Forget sessions idle for longer than the session timeout."""
        limit = time.monotonic() - self.settings.session_timeout
        for sid in [s.id for s in self.sessions.values() if s.last_used < limit]:
            del self.sessions[sid]

    def check_password(self, username: str, password: str) -> bool:
        """Constant-time credential check (``&``, not ``and``: both halves always run)."""
        return hmac.compare_digest(username.encode(), self.username.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode())

    def session_for_token(self, token: str) -> _Session | None:
        """The live session holding ``token`` (refreshing its idle timer), or None."""
        self.prune_sessions()
        for s in self.sessions.values():
            if hmac.compare_digest(s.token, token):
                s.last_used = time.monotonic()
                return s
        return None

    def _session_body(self, s: _Session) -> dict[str, Any]:
        return {
            "@odata.id": f"{_ROOT}/SessionService/Sessions/{s.id}", "@odata.type": "#Session.v1_6_0.Session",
            "Id": s.id, "Name": "User Session", "Description": "Manager User Session",
            "UserName": s.username, "CreatedTime": _iso(s.created),
        }

    # ------------------------------------------------------------- GET handlers
    def get_versions(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return {"v1": "/redfish/v1/"}

    def get_root(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "@odata.id": _ROOT, "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
            "Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.15.0", "UUID": self.uuid,
            # We honour none of the query options: say so, so clients do not send $expand.
            "ProtocolFeaturesSupported": {
                "ExpandQuery": {"ExpandAll": False, "Levels": False, "Links": False, "NoLinks": False},
                "SelectQuery": False, "FilterQuery": False, "OnlyMemberQuery": False, "ExcerptQuery": False,
            },
            "Systems": _link(f"{_ROOT}/Systems"), "Chassis": _link(f"{_ROOT}/Chassis"),
            "Managers": _link(f"{_ROOT}/Managers"), "SessionService": _link(f"{_ROOT}/SessionService"),
            "AccountService": _link(f"{_ROOT}/AccountService"),
            "Links": {"Sessions": _link(f"{_ROOT}/SessionService/Sessions")},
        }
        if self.flavor.vendor:
            out["Vendor"] = self.flavor.vendor
            out["Product"] = self.machine.spec.model
        return out

    def get_systems(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return _collection(f"{_ROOT}/Systems", "ComputerSystemCollection", "Computer System Collection",
                           [self._system_uri(s) for s in self.systems])

    def get_system(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        sid = p["sys"]
        m = self._system(sid)
        uri = self._system_uri(sid)
        f = self.flavor
        health = m.health()
        target = m.boot_override
        enabled = "Disabled" if target == BootDevice.NONE else "Continuous" if m.boot_override_persistent else "Once"
        enabled = f.boot_enabled or enabled
        out: dict[str, Any] = {
            "@odata.id": uri, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
            "Id": sid, "Name": m.name, "SystemType": "Physical",
            "Manufacturer": f.manufacturer or m.spec.vendor, "Model": m.spec.model,
            "SerialNumber": m.serial_number, "UUID": str(m.uuid), "HostName": m.name,
            "BiosVersion": m.spec.bios_version,
            "PowerState": "On" if m.powered else "Off",
            "Status": {**_status(health), "HealthRollup": _HEALTH[health]},
            "Boot": {
                "BootSourceOverrideEnabled": enabled,
                "BootSourceOverrideTarget": _BOOT_NAMES[target],
                "BootSourceOverrideTarget@Redfish.AllowableValues": list(_BOOT_TARGETS),
                "BootSourceOverrideMode": self.boot_mode[sid],
            },
            "ProcessorSummary": {"Count": 2, "Model": "Fleet Lab vCPU", "Status": _status()},
            "MemorySummary": {"TotalSystemMemoryGiB": 256, "Status": _status()},
            "EthernetInterfaces": _link(f"{uri}/EthernetInterfaces"),
            "Links": {"Chassis": [_link(self.chassis_uri)], "ManagedBy": [_link(self.manager_uri)]},
            "Actions": {"#ComputerSystem.Reset": {
                "target": f"{uri}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": [*_COMMON_RESETS, *f.extra_resets],
            }},
        }
        if f.log_owner == "Systems":
            out["LogServices"] = _link(f"{uri}/LogServices")
        if f.media_owner == "Systems":
            out["VirtualMedia"] = _link(f"{uri}/VirtualMedia")
        return out

    def get_nics(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m = self._system(p["sys"])
        uri = f"{self._system_uri(p['sys'])}/EthernetInterfaces"
        return _collection(uri, "EthernetInterfaceCollection", "Ethernet Interface Collection",
                           [f"{uri}/{self._nic_id(m)}"])

    def _nic_id(self, m: Machine) -> str:
        return self.flavor.nic_id.format(mac=m.mac.replace(":", "").upper())

    def get_nic(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m = self._system(p["sys"])
        nic = self._nic_id(m)
        if p["nic"] != nic:
            raise self._missing("Systems", p["sys"], "EthernetInterfaces", p["nic"])
        mac = m.mac.upper()
        return {
            "@odata.id": f"{self._system_uri(p['sys'])}/EthernetInterfaces/{nic}",
            "@odata.type": "#EthernetInterface.v1_9_0.EthernetInterface",
            "Id": nic, "Name": "System Ethernet Interface", "Status": _status(),
            "LinkStatus": "LinkUp" if m.powered else "LinkDown",
            "MACAddress": mac, "PermanentMACAddress": mac, "SpeedMbps": 10000, "FullDuplex": True,
            "HostName": m.name,
            "IPv4Addresses": [{"Address": m.spec.host_address, "SubnetMask": "255.0.0.0", "AddressOrigin": "DHCP"}],
        }

    def get_log_services(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._owner(p, "log")
        uri = f"{self._owner_uri(p['kind'], p['owner'])}/LogServices"
        return _collection(uri, "LogServiceCollection", "Log Service Collection", [f"{uri}/{self.flavor.log_id}"])

    def _log(self, p: dict[str, str]) -> tuple[Machine, str]:
        m = self._owner(p, "log")
        if p["log"] != self.flavor.log_id:
            raise self._missing(p["kind"], p["owner"], "LogServices", p["log"])
        return m, f"{self._owner_uri(p['kind'], p['owner'])}/LogServices/{p['log']}"

    def get_log_service(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m, uri = self._log(p)
        return {
            "@odata.id": uri, "@odata.type": "#LogService.v1_5_0.LogService",
            "Id": p["log"], "Name": "System Event Log Service", "Description": "IPMI System Event Log",
            "MaxNumberOfRecords": 512, "OverWritePolicy": "WrapsWhenFull", "LogEntryType": "SEL",
            "DateTime": _iso(m.clock()), "DateTimeLocalOffset": "+00:00", "ServiceEnabled": True,
            "Status": _status(), "Entries": _link(f"{uri}/Entries"),
            "Actions": {"#LogService.ClearLog": {"target": f"{uri}/Actions/LogService.ClearLog"}},
        }

    @staticmethod
    def _entry(ev: SelEvent, uri: str) -> dict[str, Any]:
        return {
            "@odata.id": f"{uri}/{ev.id}", "@odata.type": "#LogEntry.v1_15_0.LogEntry",
            # The sensor's name travels in Name (a free string) so a client can show it as IPMI tools do.
            "Id": str(ev.id), "Name": ev.sensor, "EntryType": "SEL",
            "Severity": _HEALTH.get(ev.severity, "OK"), "Created": _iso(ev.timestamp),
            "EntryCode": "Assert" if ev.asserted else "Deassert", "SensorType": ev.sensor_type,
            "Message": ev.message,
        }

    def get_log_entries(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m, log_uri = self._log(p)
        uri = f"{log_uri}/Entries"
        entries = [self._entry(ev, uri) for ev in m.events()]
        return {"@odata.id": uri, "@odata.type": "#LogEntryCollection.LogEntryCollection",
                "Name": "Log Entry Collection", "Members@odata.count": len(entries), "Members": entries}

    def get_log_entry(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m, log_uri = self._log(p)
        for ev in m.events():
            if str(ev.id) == p["entry"]:
                return self._entry(ev, f"{log_uri}/Entries")
        raise _RedfishError("ResourceMissingAtURI", f"{log_uri}/Entries/{p['entry']}")

    def get_media_collection(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._owner(p, "media")
        uri = f"{self._owner_uri(p['kind'], p['owner'])}/VirtualMedia"
        return _collection(uri, "VirtualMediaCollection", "Virtual Media Services", [f"{uri}/{self.flavor.media_id}"])

    def _drive(self, p: dict[str, str]) -> tuple[_Media, str]:
        m = self._owner(p, "media")
        if p["media"] != self.flavor.media_id:
            raise self._missing(p["kind"], p["owner"], "VirtualMedia", p["media"])
        uri = f"{self._owner_uri(p['kind'], p['owner'])}/VirtualMedia/{p['media']}"
        return self.media.setdefault(m.name, _Media()), uri

    def get_media(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        drive, uri = self._drive(p)
        return {
            "@odata.id": uri, "@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia",
            "Id": p["media"], "Name": "Virtual CD", "MediaTypes": ["CD", "DVD"],
            "Image": drive.image, "ImageName": drive.image.rsplit("/", 1)[-1] if drive.image else None,
            "Inserted": drive.inserted, "WriteProtected": drive.write_protected,
            "ConnectedVia": "URI" if drive.inserted else "NotConnected",
            "Actions": {
                "#VirtualMedia.InsertMedia": {"target": f"{uri}/Actions/VirtualMedia.InsertMedia"},
                "#VirtualMedia.EjectMedia": {"target": f"{uri}/Actions/VirtualMedia.EjectMedia"},
            },
        }

    def get_chassis_collection(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return _collection(f"{_ROOT}/Chassis", "ChassisCollection", "Chassis Collection", [self.chassis_uri])

    def get_chassis(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_chassis(p["ch"])
        m = self.machine
        out: dict[str, Any] = {
            "@odata.id": self.chassis_uri, "@odata.type": "#Chassis.v1_14_0.Chassis",
            "Id": p["ch"], "Name": "Computer System Chassis", "ChassisType": "RackMount",
            "Manufacturer": self.flavor.manufacturer or m.spec.vendor, "Model": m.spec.model,
            "SerialNumber": m.serial_number, "PowerState": "On" if m.powered else "Off",
            "Status": _status(m.health()),
            "Thermal": _link(f"{self.chassis_uri}/Thermal"), "Power": _link(f"{self.chassis_uri}/Power"),
            "Links": {"ComputerSystems": [_link(self._system_uri(s)) for s in self.systems],
                      "ManagedBy": [_link(self.manager_uri)], "ManagersInChassis": [_link(self.manager_uri)]},
        }
        if self.flavor.sensors:
            out["Sensors"] = _link(f"{self.chassis_uri}/Sensors")
        return out

    def _fan_reading(self, value: float | None) -> float | None:
        if value is None or self.flavor.fan_units == "RPM":
            return value
        return round(100.0 * value / _FAN_FULL_RPM)

    def get_thermal(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_chassis(p["ch"])
        uri = f"{self.chassis_uri}/Thermal"
        sensors = self.machine.sensors()
        temps: list[dict[str, Any]] = []
        fans: list[dict[str, Any]] = []
        for s in sensors:
            if s.kind == "temperature":
                temps.append({
                    "@odata.id": f"{uri}#/Temperatures/{len(temps)}", "MemberId": str(len(temps)), "Name": s.name,
                    "Status": _status(s.status), "ReadingCelsius": s.value, **_thresholds(s),
                    "PhysicalContext": _physical_context(s),
                })
            elif s.kind == "fan":
                fans.append({
                    "@odata.id": f"{uri}#/Fans/{len(fans)}", "MemberId": str(len(fans)), "Name": s.name,
                    "PhysicalContext": "Fan", "Status": _status(s.status),
                    "Reading": self._fan_reading(s.value), "ReadingUnits": self.flavor.fan_units,
                    **{k: self._fan_reading(v) for k, v in _thresholds(s).items()},
                })
        return {"@odata.id": uri, "@odata.type": "#Thermal.v1_7_0.Thermal", "Id": "Thermal", "Name": "Thermal",
                "Temperatures": temps, "Fans": fans}

    def get_power(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_chassis(p["ch"])
        uri = f"{self.chassis_uri}/Power"
        sensors = self.machine.sensors()
        watts = next((s for s in sensors if s.kind == "power"), None)
        volts = [s for s in sensors if s.kind == "voltage"]
        psu_health = max((s.status for s in volts), key=["ok", "unknown", "warning", "critical"].index, default="ok")
        return {
            "@odata.id": uri, "@odata.type": "#Power.v1_7_0.Power", "Id": "Power", "Name": "Power",
            "PowerControl": [{
                "@odata.id": f"{uri}#/PowerControl/0", "MemberId": "0", "Name": "System Input Power",
                "PowerConsumedWatts": watts.value if watts else None, "PowerCapacityWatts": 1100,
                "Status": _status(watts.status if watts else "ok"),
            }],
            "Voltages": [{
                "@odata.id": f"{uri}#/Voltages/{i}", "MemberId": str(i), "Name": s.name, "Status": _status(s.status),
                "ReadingVolts": s.value, **_thresholds(s), "PhysicalContext": _physical_context(s),
            } for i, s in enumerate(volts)],
            "PowerSupplies": [{
                "@odata.id": f"{uri}#/PowerSupplies/0", "MemberId": "0", "Name": "PSU1",
                "Status": _status(psu_health), "PowerSupplyType": "AC", "PowerCapacityWatts": 1100,
                "LastPowerOutputWatts": watts.value if watts else None,
            }],
        }

    def _check_sensors(self, ch: str) -> None:
        self._check_chassis(ch)
        if not self.flavor.sensors:
            raise self._missing("Chassis", ch, "Sensors")

    def get_sensors(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_sensors(p["ch"])
        uri = f"{self.chassis_uri}/Sensors"
        return _collection(uri, "SensorCollection", "Chassis Sensors",
                           [f"{uri}/{_sensor_id(s)}" for s in self.machine.sensors()])

    def get_sensor(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_sensors(p["ch"])
        s = next((s for s in self.machine.sensors() if _sensor_id(s) == p["sensor"]), None)
        if s is None:
            raise self._missing("Chassis", p["ch"], "Sensors", p["sensor"])
        thresholds = {name: {"Reading": value} for name, value in (
            ("UpperCaution", s.upper_warning), ("UpperCritical", s.upper_critical),
            ("LowerCaution", s.lower_warning), ("LowerCritical", s.lower_critical)) if value is not None}
        kinds = {"temperature": "Temperature", "fan": "Rotational", "voltage": "Voltage", "power": "Power"}
        return {
            "@odata.id": f"{self.chassis_uri}/Sensors/{p['sensor']}", "@odata.type": "#Sensor.v1_7_0.Sensor",
            "Id": p["sensor"], "Name": s.name, "ReadingType": kinds.get(s.kind, s.kind),
            "Reading": s.value, "ReadingUnits": s.unit, "Status": _status(s.status),
            "Thresholds": thresholds, "PhysicalContext": _physical_context(s),
        }

    def get_managers(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return _collection(f"{_ROOT}/Managers", "ManagerCollection", "Manager Collection", [self.manager_uri])

    def get_manager(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        if p["mgr"] != self.flavor.manager_id:
            raise self._missing("Managers", p["mgr"])
        uri = self.manager_uri
        out: dict[str, Any] = {
            "@odata.id": uri, "@odata.type": "#Manager.v1_10_0.Manager",
            "Id": p["mgr"], "Name": "Manager", "ManagerType": "BMC", "UUID": self.uuid,
            "FirmwareVersion": self.machine.spec.bmc_firmware, "DateTime": _iso(self.machine.clock()),
            "DateTimeLocalOffset": "+00:00", "PowerState": "On", "Status": _status(),
            "Links": {"ManagerForServers": [_link(self._system_uri(s)) for s in self.systems],
                      "ManagerForChassis": [_link(self.chassis_uri)], "ManagerInChassis": _link(self.chassis_uri)},
            "Actions": {"#Manager.Reset": {"target": f"{uri}/Actions/Manager.Reset",
                                           "ResetType@Redfish.AllowableValues": ["ForceRestart", "GracefulRestart"]}},
        }
        if self.flavor.log_owner == "Managers":
            out["LogServices"] = _link(f"{uri}/LogServices")
        if self.flavor.media_owner == "Managers":
            out["VirtualMedia"] = _link(f"{uri}/VirtualMedia")
        return out

    def get_session_service(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return {
            "@odata.id": f"{_ROOT}/SessionService", "@odata.type": "#SessionService.v1_1_8.SessionService",
            "Id": "SessionService", "Name": "Session Service", "Status": _status(), "ServiceEnabled": True,
            "SessionTimeout": max(1, round(self.settings.session_timeout)),
            "Sessions": _link(f"{_ROOT}/SessionService/Sessions"),
        }

    def get_sessions(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self.prune_sessions()
        return _collection(f"{_ROOT}/SessionService/Sessions", "SessionCollection", "Session Collection",
                           [f"{_ROOT}/SessionService/Sessions/{sid}" for sid in self.sessions])

    def get_session(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self.prune_sessions()
        if p["sid"] not in self.sessions:
            raise self._missing("SessionService", "Sessions", p["sid"])
        return self._session_body(self.sessions[p["sid"]])

    def get_account_service(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return {
            "@odata.id": f"{_ROOT}/AccountService", "@odata.type": "#AccountService.v1_5_0.AccountService",
            "Id": "AccountService", "Name": "Account Service", "Status": _status(), "ServiceEnabled": True,
            "MinPasswordLength": 8, "AccountLockoutThreshold": 0,
            "Accounts": _link(f"{_ROOT}/AccountService/Accounts"),
        }

    def get_accounts(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        uri = f"{_ROOT}/AccountService/Accounts"
        return _collection(uri, "ManagerAccountCollection", "Accounts Collection", [f"{uri}/1"])

    def get_account(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        if p["acct"] != "1":
            raise self._missing("AccountService", "Accounts", p["acct"])
        return {
            "@odata.id": f"{_ROOT}/AccountService/Accounts/1", "@odata.type": "#ManagerAccount.v1_4_0.ManagerAccount",
            "Id": "1", "Name": "User Account", "UserName": self.username, "RoleId": "Administrator",
            "Enabled": True, "Locked": False, "Password": None,
        }

    # ------------------------------------------------------------- actions
    def patch_system(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        sid = p["sys"]
        m = self._system(sid)
        for key in body:
            if key != "Boot":
                raise _RedfishError("PropertyNotWritable" if key in self.get_system(p, None) else "PropertyUnknown",
                                    key)
        boot = body.get("Boot", {})
        if not isinstance(boot, dict):
            raise _RedfishError("PropertyValueTypeError", boot, "Boot")
        for key in boot:
            if key not in ("BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode"):
                raise _RedfishError("PropertyUnknown", f"Boot/{key}")
        # Validate everything before changing anything: a rejected PATCH leaves no trace.
        target_name = boot.get("BootSourceOverrideTarget", _BOOT_NAMES[m.boot_override])
        if target_name not in _BOOT_TARGETS:
            raise _RedfishError("PropertyValueNotInList", target_name, "BootSourceOverrideTarget")
        current = ("Disabled" if m.boot_override == BootDevice.NONE
                   else "Continuous" if m.boot_override_persistent else "Once")
        # Setting only a target arms it once, as most BMCs do.
        enabled = boot.get("BootSourceOverrideEnabled", "Once" if current == "Disabled" else current)
        if enabled not in _BOOT_ENABLED:
            raise _RedfishError("PropertyValueNotInList", enabled, "BootSourceOverrideEnabled")
        mode = boot.get("BootSourceOverrideMode", self.boot_mode[sid])
        if mode not in ("UEFI", "Legacy"):
            raise _RedfishError("PropertyValueNotInList", mode, "BootSourceOverrideMode")
        self.boot_mode[sid] = mode
        if self.flavor.boot_enabled:  # Enabled ignored: only a target changes anything
            if "BootSourceOverrideTarget" in boot:
                m.set_boot_override(_BOOT_TARGETS[target_name], persistent=self.flavor.boot_enabled == "Continuous")
        elif "BootSourceOverrideTarget" in boot or "BootSourceOverrideEnabled" in boot:
            device = BootDevice.NONE if enabled == "Disabled" else _BOOT_TARGETS[target_name]
            m.set_boot_override(device, persistent=enabled == "Continuous")
        return _Reply(204)

    def post_reset(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        m = self._system(p["sys"])
        action = "ComputerSystem.Reset"
        if "ResetType" not in body:
            raise _RedfishError("ActionParameterMissing", action, "ResetType")
        kind = body["ResetType"]
        if not isinstance(kind, str):
            raise _RedfishError("ActionParameterValueTypeError", kind, "ResetType", action)
        if kind not in (*_COMMON_RESETS, *self.flavor.extra_resets):
            raise _RedfishError("ActionParameterValueNotInList", kind, "ResetType", action)
        _RESETS[kind](m)
        return _Reply(204)

    def post_clear_log(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        m, _ = self._log(p)
        m.clear_events()
        return _Reply(204)

    def post_media(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        drive, _ = self._drive(p)
        action = f"VirtualMedia.{p['verb']}"
        machine = self._owner(p, "media")  # the server whose virtual CD this is
        if p["verb"] == "EjectMedia":
            drive.image, drive.inserted = None, False
            machine.eject_media()
            return _Reply(204)
        image = body.get("Image")
        if image is None:
            raise _RedfishError("ActionParameterMissing", action, "Image")
        if not isinstance(image, str) or not image:
            raise _RedfishError("ActionParameterValueTypeError", image, "Image", action)
        for key in ("Inserted", "WriteProtected"):
            if not isinstance(body.get(key, True), bool):
                raise _RedfishError("ActionParameterValueTypeError", body[key], key, action)
        drive.image = image
        drive.inserted = body.get("Inserted", True)
        drive.write_protected = body.get("WriteProtected", True)
        if drive.inserted:
            machine.insert_media(image)  # the next CD boot reads this URL
        else:
            machine.eject_media()
        return _Reply(204)

    def post_manager_reset(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        if p["mgr"] != self.flavor.manager_id:
            raise self._missing("Managers", p["mgr"])
        kind = body.get("ResetType", "GracefulRestart")
        if kind not in ("ForceRestart", "GracefulRestart"):
            raise _RedfishError("ActionParameterValueNotInList", kind, "ResetType", "Manager.Reset")
        self.sessions.clear()  # a rebooted BMC forgets every session, as real ones do
        return _Reply(204)

    def post_session(self, p: dict[str, str], body: dict[str, Any], *, refuse_all: bool = False) -> _Reply:
        user, password = body.get("UserName"), body.get("Password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise _RedfishError("ActionParameterMissing", "Session creation", "UserName/Password")
        if refuse_all or not self.check_password(user, password):
            raise _RedfishError("NoValidSession")
        self.prune_sessions()
        if len(self.sessions) >= self.settings.max_sessions:
            raise _RedfishError("SessionLimitExceeded")
        s = _Session(secrets.token_hex(8).upper(), secrets.token_urlsafe(24), user, time.time(), time.monotonic())
        self.sessions[s.id] = s
        self.logins += 1
        uri = f"{_ROOT}/SessionService/Sessions/{s.id}"
        return _Reply(201, self._session_body(s), {"X-Auth-Token": s.token, "Location": uri})

    def delete_session(self, p: dict[str, str], body: Any) -> _Reply:
        self.prune_sessions()
        if self.sessions.pop(p["sid"], None) is None:
            raise self._missing("SessionService", "Sessions", p["sid"])
        return _Reply(204)


# --------------------------------------------------------------------------- the lab
class RedfishLab:
    """Many simulated Redfish BMCs in one process, one socket each.

    Usage::

        lab = RedfishLab(cert_dir="/var/tmp/lab-tls")
        lab.add(machine, "127.78.0.1", 0, username="root", password="calvin", flavor="idrac")
        ports = await lab.start()          # {machine.name: bound port}
        lab.fault["127.78.0.1"] = "hang"   # provoke a client timeout
        await lab.stop()

    Runtime knobs: :attr:`fault` (per address), :attr:`session_timeout` (idle
    seconds before a session expires), :attr:`max_sessions` (per BMC; further
    logins get 503 SessionLimitExceeded, as on BMCs with few session slots) and
    :attr:`latency` (seconds each answer takes).  :meth:`stats` counts logins,
    requests and overlapping requests per BMC.
    """

    def __init__(self, *, cert_dir: str | None = None) -> None:
        #: address -> fault mode (see the module docstring); read on every request.
        self.fault: dict[str, str] = {}
        self._settings = _Settings()
        self._cert_dir = cert_dir
        self._tmp_dir: str | None = None
        self._bmcs: list[_Bmc] = []
        self._by_socket: dict[tuple[str, int], _Bmc] = {}  # (address, bound port) -> BMC, filled by start()
        self._media: dict[str, _Media] = {}  # machine name -> its virtual CD
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        #: the PEM certificate clients can trust (set by start() when a BMC uses HTTPS).
        self.cert_file: Path | None = None

    # ------------------------------------------------------------- settings
    @property
    def session_timeout(self) -> float:
        """Idle seconds after which a session expires (SessionService.SessionTimeout)."""
        return self._settings.session_timeout

    @session_timeout.setter
    def session_timeout(self, seconds: float) -> None:
        self._settings.session_timeout = float(seconds)

    @property
    def max_sessions(self) -> int:
        """Concurrent sessions one BMC accepts before answering 503 SessionLimitExceeded."""
        return self._settings.max_sessions

    @max_sessions.setter
    def max_sessions(self, n: int) -> None:
        self._settings.max_sessions = int(n)

    @property
    def latency(self) -> float:
        """Seconds every answer takes (0: at once); real BMCs take tens of milliseconds, and
        overlapping requests from a client then show in :meth:`stats` as ``max_in_flight``."""
        return self._settings.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._settings.latency = max(0.0, float(seconds))

    # ------------------------------------------------------------- building
    def add(self, machine: Machine, address: str, port: int, *, scheme: str = "https", username: str,
            password: str, flavor: str = "dmtf", systems: int = 1,
            members: Mapping[str, Machine] | None = None) -> None:
        """Declare one BMC fronting ``machine`` at ``address:port`` (port 0: ephemeral).

        ``systems > 1`` serves a multi-node chassis: the first ComputerSystem is
        ``machine``, the others are sibling machines created here (see
        :meth:`machines`).  ``members`` (ComputerSystem Id -> machine) serves those
        machines as the systems instead, each a node of its own; ``machine`` is one
        of them, the one the chassis and manager describe.  Raises ``ValueError`` for
        a non-loopback address, an unknown flavor or scheme, or an address/port
        already taken.
        """
        if self._runner is not None:
            raise RuntimeError("add() before start(): a running lab does not grow")
        ip = ipaddress.ip_address(address)
        if ip.version != 4 or ip not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"lab BMCs live on 127.0.0.0/8 only, not {address}")
        if flavor not in FLAVORS:
            raise ValueError(f"unknown Redfish flavor {flavor!r} (known: {', '.join(FLAVORS)})")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {scheme!r}")
        if systems < 1:
            raise ValueError("systems must be at least 1")
        if members is not None and (not members or machine not in members.values()):
            raise ValueError("members must include machine")
        if port and any((b.address, b.port) == (address, port) for b in self._bmcs):
            raise ValueError(f"{address}:{port} already has a BMC")
        self._bmcs.append(_Bmc(machine, address, port, scheme, username, password, FLAVORS[flavor], systems,
                               self._settings, self._media, members))

    async def start(self) -> dict[str, int]:
        """Bind every BMC's socket and start serving; returns ``{machine.name: bound_port}``."""
        if self._runner is not None:
            raise RuntimeError("RedfishLab already started")
        ssl_ctx = None
        https = sorted({b.address for b in self._bmcs if b.scheme == "https"})
        if https:
            if self._cert_dir is None:
                self._tmp_dir = tempfile.mkdtemp(prefix="fleet-lab-tls-")
            cert_dir = self._cert_dir or self._tmp_dir
            assert cert_dir is not None  # made just above when the caller chose none
            ssl_ctx = tls.server_context(https, cert_dir)
            self.cert_file = Path(cert_dir) / tls.CERT_NAME
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up on a hung BMC frees its handler.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await runner.setup()
        self._runner = runner
        self._stopping = asyncio.Event()
        try:
            for b in self._bmcs:
                # Binding the socket ourselves gives the ephemeral port before serving starts.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((b.address, b.port))
                    site = web.SockSite(runner, sock, ssl_context=ssl_ctx if b.scheme == "https" else None)
                    await site.start()
                except BaseException:
                    sock.close()
                    raise
                b.port = sock.getsockname()[1]
                self._by_socket[(b.address, b.port)] = b
        except BaseException:
            await self.stop()
            raise
        return {m.name: b.port for b in self._bmcs for m in b.nodes}

    async def stop(self) -> None:
        """Close every socket and drop hung requests; safe to call twice or before start()."""
        if self._stopping is not None:
            self._stopping.set()  # wakes "hang" handlers so shutdown does not wait on them
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._by_socket.clear()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
            self.cert_file = None

    # ------------------------------------------------------------- queries
    def session_count(self, address: str | None = None) -> int:
        """Live (unexpired) SessionService sessions, on one address or on all BMCs."""
        total = 0
        for b in self._bmcs:
            if address is None or b.address == address:
                b.prune_sessions()
                total += len(b.sessions)
        return total

    def stats(self) -> dict[str, dict[str, int]]:
        """Per BMC (``address:port``): sessions created (``logins``), live ``sessions``,
        ``requests`` answered and the most requests ever in flight at once (``max_in_flight``)."""
        out = {}
        for b in self._bmcs:
            b.prune_sessions()
            out[f"{b.address}:{b.port}"] = {"logins": b.logins, "sessions": len(b.sessions),
                                            "requests": b.requests, "max_in_flight": b.max_in_flight}
        return out

    def virtual_media(self, machine_name: str) -> str | None:
        """The image URL inserted in the machine's virtual CD, or None when empty."""
        drive = self._media.get(machine_name)
        return drive.image if drive is not None and drive.inserted else None

    def machines(self, address: str) -> dict[str, Machine]:
        """ComputerSystem Id -> machine for the BMC(s) at ``address`` (siblings included)."""
        out: dict[str, Machine] = {}
        for b in self._bmcs:
            if b.address == address:
                out.update(b.systems)
        return out

    # ------------------------------------------------------------- HTTP
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        bmc = self._by_socket.get(tuple(sockname[:2])) if sockname else None
        if bmc is None:  # the connection died, or a socket we no longer serve
            raise web.HTTPServiceUnavailable()
        bmc.requests += 1
        bmc.in_flight += 1
        bmc.max_in_flight = max(bmc.max_in_flight, bmc.in_flight)
        try:
            if self._settings.latency:
                await asyncio.sleep(self._settings.latency)
            return await self._answer(bmc, request)
        finally:
            bmc.in_flight -= 1

    async def _answer(self, bmc: _Bmc, request: web.Request) -> web.StreamResponse:
        mode = self.fault.get(bmc.address, "")
        if mode == "hang":
            assert self._stopping is not None
            await self._stopping.wait()
            if request.transport is not None:
                request.transport.abort()  # a hung BMC never answers: drop the connection
            # Nothing may be written now; ending the handler as cancelled tells aiohttp just that.
            raise asyncio.CancelledError
        if mode == "http500":
            err = _RedfishError("InternalError")
            return self._encode(bmc, err.status, err.body())
        try:
            status, body, headers = await self._serve(bmc, request, refuse_all=mode == "auth_fail")
        except _RedfishError as exc:
            status, body, headers = exc.status, exc.body(), exc.headers
        response = self._encode(bmc, status, body, headers, etag=request.method == "GET" and status == 200)
        if mode == "malformed_json" and body is not None:
            raw = response.body
            assert isinstance(raw, bytes)
            response.body = raw[: len(raw) // 2]  # still claims application/json; it no longer parses
        return response

    async def _serve(self, bmc: _Bmc, request: web.Request, *, refuse_all: bool
                     ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        path = request.path
        if len(path) > 1:
            path = path.rstrip("/")  # "/redfish/v1/" and "/redfish/v1" are the same resource
        try:
            methods, params = bmc.route(path)
            missing = None
        except _RedfishError as exc:
            methods, params, missing = {}, {}, exc
        name = methods.get(request.method)
        # Credentials come first, as on real BMCs: an anonymous probe learns nothing about paths.
        if name not in _PUBLIC:
            self._authenticate(bmc, request, refuse_all)
        if missing is not None:
            raise missing
        if name is None:
            raise _RedfishError("OperationNotAllowed", headers={"Allow": ", ".join(methods)})
        body = _json_body(await request.read()) if request.method in ("POST", "PATCH") else None
        if request.method == "PATCH" and (want := request.headers.get("If-Match")) not in (None, "*"):
            getter = getattr(bmc, "get_" + name.split("_", 1)[1])
            if want != self._etag(json.dumps(getter(params, None)).encode()):
                raise _RedfishError("PreconditionFailed")
        if name == "post_session":
            result = bmc.post_session(params, body or {}, refuse_all=refuse_all)
        else:
            result = getattr(bmc, name)(params, body)
        if isinstance(result, _Reply):
            return result.status, result.body, result.headers
        return 200, result, {}

    @staticmethod
    def _authenticate(bmc: _Bmc, request: web.Request, refuse_all: bool) -> None:
        """Accept a live X-Auth-Token or HTTP Basic credentials; anything else is 401."""
        if not refuse_all:
            token = request.headers.get("X-Auth-Token")
            if token and bmc.session_for_token(token) is not None:
                return
            auth = request.headers.get("Authorization", "")
            if auth[:6].lower() == "basic ":
                try:
                    user, sep, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    sep = ""
                if sep and bmc.check_password(user, password):
                    return
        raise _RedfishError("NoValidSession", headers={"WWW-Authenticate": 'Basic realm="Redfish"'})

    @staticmethod
    def _etag(raw: bytes) -> str:
        return f'W/"{zlib.crc32(raw):08x}"'

    def _encode(self, bmc: _Bmc, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None,
                *, etag: bool = False) -> web.Response:
        hdrs = {"OData-Version": "4.0", **(headers or {})}
        if body is None:
            return web.Response(status=status, headers=hdrs)
        if bmc.flavor.odata_context and "@odata.type" in body:
            kind = body["@odata.type"].lstrip("#").split(".")[0]
            body = {"@odata.context": f"/redfish/v1/$metadata#{kind}.{kind}", **body}
        raw = json.dumps(body, indent=1).encode()
        if etag:
            # The tag covers the body without @odata.context so PATCH If-Match can recompute it.
            hdrs["ETag"] = self._etag(json.dumps({k: v for k, v in body.items() if k != "@odata.context"}).encode())
        return web.Response(status=status, body=raw, headers=hdrs, content_type="application/json", charset="utf-8")
