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
import ssl
import tempfile
import time
import uuid as uuidlib
import weakref
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
from .redfish_inventory import ROUTES as _INVENTORY_ROUTES
from .redfish_inventory import InventoryResources, SystemExtras
from .redfish_inventory import known_ids as _inventory_ids
from .redfish_metadata import metadata_xml, service_document

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
    #: BootSourceOverrideTarget@Redfish.AllowableValues, as the flavor's capture lists them
    boot_targets: tuple[str, ...] = ("None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities", "Diags", "SDCard",
                                     "UefiTarget")
    #: reset types listed in an ActionInfo resource (@Redfish.ActionInfo, as OpenBMC does), not inline
    action_info: bool = False
    #: URIs matched regardless of case (HPE iLO)
    case_insensitive: bool = False


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
               extra_resets=("PushPowerButton",), sensors=True, fan_units="RPM", odata_context=True,
               boot_targets=("None", "Pxe", "Floppy", "Cd", "Hdd", "BiosSetup", "Utilities", "UefiTarget", "SDCard",
                             "UefiHttp")),
        Flavor(name="ilo", system_ids=("1", "{n}"), chassis_id="1", manager_id="1",
               manufacturer="HPE", vendor="HPE", log_owner="Systems", log_id="IML",
               media_owner="Managers", media_id="2", nic_id="1",
               extra_resets=("PushPowerButton",), sensors=False, fan_units="Percent", odata_context=True,
               boot_targets=("None", "Cd", "Hdd", "Usb", "SDCard", "Utilities", "Diags", "BiosSetup", "Pxe",
                             "UefiShell", "UefiHttp", "UefiTarget"), case_insensitive=True),
        Flavor(name="openbmc", system_ids=("system", "system{n}"), chassis_id="chassis", manager_id="bmc",
               manufacturer=None, vendor=None, log_owner="Systems", log_id="EventLog",
               media_owner="Managers", media_id="Slot_0", nic_id="eth0",
               extra_resets=("ForceOn",), sensors=True, fan_units="RPM", odata_context=False,
               boot_targets=("None", "Pxe", "Hdd", "Cd", "Diags", "BiosSetup", "Usb"), action_info=True),
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

# Every BootSourceOverrideTarget a capture lists -> what the simulated machine does with it: the
# machine knows five devices, so USB sticks, SD cards and UEFI targets boot its disk, UEFI HTTP
# boot is network boot, and the firmware tools stop in setup.
_BOOT_TARGETS = {
    "None": BootDevice.NONE,
    "Pxe": BootDevice.PXE,
    "UefiHttp": BootDevice.PXE,
    "Hdd": BootDevice.DISK,
    "Usb": BootDevice.DISK,
    "SDCard": BootDevice.DISK,
    "UefiTarget": BootDevice.DISK,
    "RemoteDrive": BootDevice.DISK,
    "UefiBootNext": BootDevice.DISK,
    "Cd": BootDevice.CD,
    "Floppy": BootDevice.CD,
    "BiosSetup": BootDevice.BIOS,
    "Utilities": BootDevice.BIOS,
    "Diags": BootDevice.BIOS,
    "UefiShell": BootDevice.BIOS,
}
# the name a target the machine holds is reported by, when it was not set through Redfish
_BOOT_NAMES = {BootDevice.NONE: "None", BootDevice.PXE: "Pxe", BootDevice.DISK: "Hdd", BootDevice.CD: "Cd",
               BootDevice.BIOS: "BiosSetup"}
_INDICATOR_LED = ("Lit", "Blinking", "Off")
#: seconds (times the machine's time_scale) a BMC is gone after Manager.Reset, as a real one reboots
MANAGER_RESET_SECONDS = 60.0
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
class _Account:
    """One AccountService account: the lab's own user is account 1 and cannot be deleted."""

    id: str
    username: str
    password: str
    role: str = "Administrator"
    enabled: bool = True


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


def _etags(header: str | None) -> set[str]:
    """The entity tags of an If-Match or If-None-Match header (``*`` kept as is)."""
    return {t.strip() for t in (header or "").split(",") if t.strip()}


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
    # DSP0266: a POST to a collection's Members URI creates a member, as a POST to the collection does
    "/redfish/v1/SessionService/Sessions/Members": {"POST": "post_session"},
    "/redfish/v1/SessionService/Sessions/{sid}": {"GET": "get_session", "DELETE": "delete_session"},
    "/redfish/v1/AccountService": {"GET": "get_account_service"},
    "/redfish/v1/AccountService/Accounts": {"GET": "get_accounts", "POST": "post_account"},
    "/redfish/v1/AccountService/Accounts/{acct}": {"GET": "get_account", "PATCH": "patch_account",
                                                   "DELETE": "delete_account"},
    "/redfish/v1/AccountService/Roles": {"GET": "get_roles"},
    "/redfish/v1/AccountService/Roles/{role}": {"GET": "get_role"},
    "/redfish/v1/{kind:Systems|Managers}/{owner}/ResetActionInfo": {"GET": "get_reset_action_info"},
    "/redfish/v1/odata": {"GET": "get_odata"},
    "/redfish/v1/$metadata": {"GET": "get_metadata"},
    **_INVENTORY_ROUTES,
}.items()]
_ROUTES_NOCASE = [(re.compile(p.pattern, re.IGNORECASE), m) for p, m in _ROUTES]
# Handlers that answer without credentials (DSP0266: the version document, the service root and the
# OData documents are public; POST Sessions carries its own credentials).
_PUBLIC = frozenset({"get_versions", "get_root", "get_odata", "get_metadata", "post_session"})
# Redfish roles and what each may do (the Base privilege registry, cut down to reads and writes)
_ROLES = {"Administrator": ("Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"),
          "Operator": ("Login", "ConfigureSelf", "ConfigureComponents"),
          "ReadOnly": ("Login", "ConfigureSelf")}

_ROOT = "/redfish/v1"
_MIN_PASSWORD, _MAX_PASSWORD = 8, 64
_MAX_ACCOUNTS = 16
_MANAGER_RESETS = ("ForceRestart", "GracefulRestart")


class _Bmc(InventoryResources):
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
        #: the target name last written per system (several names map to one machine device)
        self.boot_name: dict[str, str] = {}
        self.uefi_target: dict[str, str] = {}
        self.indicator = {sid: "Off" for sid in self.systems}
        self.asset_tag = {sid: "" for sid in self.systems}
        self.extras: dict[str, SystemExtras] = {}
        self.accounts = {"1": _Account("1", username, password)}
        #: monotonic time until which the BMC is rebooting (Manager.Reset); 0: up
        self.down_until = 0.0
        #: the connections clients hold to this BMC (a reboot drops them)
        self.transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()
        self.manager_id = flavor.manager_id
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
    def route(self, path: str) -> tuple[dict[str, str], dict[str, str]]:
        """Return ``(methods, params)`` for ``path`` or raise ResourceMissingAtURI.

        A case-insensitive flavor (iLO) matches any case and names ids as the BMC spells them."""
        for pattern, methods in _ROUTES:
            if m := pattern.match(path):
                return methods, m.groupdict()
        if self.flavor.case_insensitive:
            for pattern, methods in _ROUTES_NOCASE:
                if m := pattern.match(path):
                    known = {k.lower(): k for k in self._known_ids()}
                    return methods, {k: known.get(v.lower(), v) for k, v in m.groupdict().items()}
        raise _RedfishError("ResourceMissingAtURI", path)

    def _known_ids(self) -> list[str]:
        """Every path segment value this BMC serves, in its own spelling."""
        f = self.flavor
        return [*self.systems, f.chassis_id, f.manager_id, f.log_id, f.media_id, "Systems", "Managers",
                "InsertMedia", "EjectMedia", *self.sessions, *self.accounts, *_ROLES, *(self._nic_id(m) for m in
                self.systems.values()), *_inventory_ids()]

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
        """Constant-time credential check (``&``, not ``and``: both halves always run) over every account."""
        ok = False
        for a in self.accounts.values():
            match = hmac.compare_digest(username.encode(), a.username.encode()) & hmac.compare_digest(
                password.encode(), a.password.encode())
            ok |= match and a.enabled
        return ok

    def role_of(self, username: str) -> str:
        """The role of the account called ``username`` (ReadOnly if it is gone)."""
        return next((a.role for a in self.accounts.values() if a.username == username), "ReadOnly")

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
            "AccountService": _link(f"{_ROOT}/AccountService"), "UpdateService": _link(f"{_ROOT}/UpdateService"),
            "TaskService": _link(f"{_ROOT}/TaskService"), "EventService": _link(f"{_ROOT}/EventService"),
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
        reset: dict[str, Any] = {"target": f"{uri}/Actions/ComputerSystem.Reset"}
        if f.action_info:
            reset["@Redfish.ActionInfo"] = f"{uri}/ResetActionInfo"
        else:
            reset["ResetType@Redfish.AllowableValues"] = [*_COMMON_RESETS, *f.extra_resets]
        out: dict[str, Any] = {
            "@odata.id": uri, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
            "Id": sid, "Name": m.name, "SystemType": "Physical",
            "Manufacturer": f.manufacturer or m.spec.vendor, "Model": m.spec.model,
            "SerialNumber": m.serial_number, "UUID": str(m.uuid), "HostName": m.name,
            "BiosVersion": m.spec.bios_version,
            "PowerState": "On" if m.powered else "Off",
            "Status": {**_status(health), "HealthRollup": _HEALTH[health]},
            "AssetTag": self.asset_tag[sid], "IndicatorLED": self.indicator[sid],
            "Boot": {
                "BootSourceOverrideEnabled": enabled,
                "BootSourceOverrideTarget": self._boot_target(sid),
                "BootSourceOverrideTarget@Redfish.AllowableValues": list(f.boot_targets),
                "BootSourceOverrideMode": self.boot_mode[sid],
            },
            "ProcessorSummary": {"Count": 2, "Model": "Fleet Lab vCPU", "Status": _status()},
            "MemorySummary": {"TotalSystemMemoryGiB": 256, "Status": _status()},
            "EthernetInterfaces": _link(f"{uri}/EthernetInterfaces"),
            "Processors": _link(f"{uri}/Processors"), "Memory": _link(f"{uri}/Memory"),
            "Storage": _link(f"{uri}/Storage"), "SimpleStorage": _link(f"{uri}/SimpleStorage"),
            "Bios": _link(f"{uri}/Bios"), "SecureBoot": _link(f"{uri}/SecureBoot"),
            "Links": {"Chassis": [_link(self.chassis_uri)], "ManagedBy": [_link(self.manager_uri)]},
            "Actions": {"#ComputerSystem.Reset": reset},
        }
        if "UefiTarget" in f.boot_targets:
            out["Boot"]["UefiTargetBootSourceOverride"] = self.uefi_target.get(sid)
        if f.log_owner == "Systems":
            out["LogServices"] = _link(f"{uri}/LogServices")
        if f.media_owner == "Systems":
            out["VirtualMedia"] = _link(f"{uri}/VirtualMedia")
        return out

    def _boot_target(self, sid: str) -> str:
        """The override target as last written, while the machine still holds it; else the machine's own."""
        device = self.systems[sid].boot_override
        name = self.boot_name.get(sid)
        return name if name is not None and _BOOT_TARGETS[name] == device else _BOOT_NAMES[device]

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

    def _fan_reading(self, value: float | None) -> int | None:
        """Thermal.Fans Reading and its thresholds are integers in the schema (RPM or percent)."""
        if value is None:
            return None
        if self.flavor.fan_units == "RPM":
            return round(value)
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
            "EthernetInterfaces": _link(f"{uri}/EthernetInterfaces"),
            "Actions": {"#Manager.Reset": {"target": f"{uri}/Actions/Manager.Reset"}},
        }
        if self.flavor.action_info:
            out["Actions"]["#Manager.Reset"]["@Redfish.ActionInfo"] = f"{uri}/ResetActionInfo"
        else:
            out["Actions"]["#Manager.Reset"]["ResetType@Redfish.AllowableValues"] = list(_MANAGER_RESETS)
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
            "MinPasswordLength": _MIN_PASSWORD, "MaxPasswordLength": _MAX_PASSWORD, "AccountLockoutThreshold": 0,
            "Accounts": _link(f"{_ROOT}/AccountService/Accounts"), "Roles": _link(f"{_ROOT}/AccountService/Roles"),
        }

    def get_accounts(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        uri = f"{_ROOT}/AccountService/Accounts"
        return _collection(uri, "ManagerAccountCollection", "Accounts Collection",
                           [f"{uri}/{a}" for a in self.accounts])

    def _account(self, acct: str) -> _Account:
        if acct not in self.accounts:
            raise self._missing("AccountService", "Accounts", acct)
        return self.accounts[acct]

    def get_account(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        a = self._account(p["acct"])
        return {
            "@odata.id": f"{_ROOT}/AccountService/Accounts/{a.id}",
            "@odata.type": "#ManagerAccount.v1_4_0.ManagerAccount", "Id": a.id, "Name": "User Account",
            "UserName": a.username, "RoleId": a.role, "Enabled": a.enabled, "Locked": False, "Password": None,
            "Links": {"Role": _link(f"{_ROOT}/AccountService/Roles/{a.role}")},
        }

    def _account_fields(self, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        """Validate the writable ManagerAccount properties of a POST or PATCH body."""
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key in ("UserName", "Password", "RoleId"):
                if not isinstance(value, str):
                    raise _RedfishError("PropertyValueTypeError", value, key)
                if key == "RoleId" and value not in _ROLES:
                    raise _RedfishError("PropertyValueNotInList", value, key)
                if key == "Password" and not _MIN_PASSWORD <= len(value) <= _MAX_PASSWORD:
                    raise _RedfishError("PropertyValueFormatError", "(hidden)", key)
                if key == "UserName" and not re.fullmatch(r"[A-Za-z0-9_.-]{1,16}", value):
                    raise _RedfishError("PropertyValueFormatError", value, key)
                out[key] = value
            elif key == "Enabled":
                if not isinstance(value, bool):
                    raise _RedfishError("PropertyValueTypeError", value, key)
                out[key] = value
            elif creating or not key.startswith("@"):
                raise _RedfishError("PropertyNotWritable" if key in ("Id", "Name", "Locked", "Links")
                                    else "PropertyUnknown", key)
        return out

    def post_account(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        fields = self._account_fields(body, creating=True)
        for key in ("UserName", "Password", "RoleId"):
            if key not in fields:
                raise _RedfishError("CreateFailedMissingReqProperties", key)
        if any(a.username == fields["UserName"] for a in self.accounts.values()):
            raise _RedfishError("ResourceAlreadyExists", "ManagerAccount", "UserName", fields["UserName"])
        if len(self.accounts) >= _MAX_ACCOUNTS:
            raise _RedfishError("CreateLimitReachedForResource")
        new_id = str(next(n for n in range(2, _MAX_ACCOUNTS + 2) if str(n) not in self.accounts))
        self.accounts[new_id] = _Account(new_id, fields["UserName"], fields["Password"], fields["RoleId"],
                                         fields.get("Enabled", True))
        uri = f"{_ROOT}/AccountService/Accounts/{new_id}"
        return _Reply(201, self.get_account({"acct": new_id}, None), {"Location": uri})

    def patch_account(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        a = self._account(p["acct"])
        # A PATCH with only OData annotations changes nothing; one with some bad properties is refused
        # whole (DSP0266 allows either way; refusing leaves no half-applied change).
        if body and all(k.startswith("@") for k in body):
            raise _RedfishError("NoOperation")
        fields = self._account_fields(body, creating=False)
        if "UserName" in fields and any(o.username == fields["UserName"] and o is not a
                                        for o in self.accounts.values()):
            raise _RedfishError("ResourceAlreadyExists", "ManagerAccount", "UserName", fields["UserName"])
        if a.id == "1" and (fields.get("RoleId", a.role) != a.role or fields.get("Enabled", True) is False):
            raise _RedfishError("PropertyNotWritable", "RoleId" if "RoleId" in fields else "Enabled")
        a.username = fields.get("UserName", a.username)
        a.password = fields.get("Password", a.password)
        a.role = fields.get("RoleId", a.role)
        a.enabled = fields.get("Enabled", a.enabled)
        if a.id == "1":
            self.username, self.password = a.username, a.password
        return _Reply(200, self.get_account(p, None))

    def delete_account(self, p: dict[str, str], body: Any) -> _Reply:
        a = self._account(p["acct"])
        if a.id == "1":
            raise _RedfishError("OperationNotAllowed", headers={"Allow": "GET, PATCH"})
        del self.accounts[a.id]
        for sid in [s.id for s in self.sessions.values() if s.username == a.username]:
            del self.sessions[sid]
        return _Reply(204)

    def get_roles(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        uri = f"{_ROOT}/AccountService/Roles"
        return _collection(uri, "RoleCollection", "Roles Collection", [f"{uri}/{r}" for r in _ROLES])

    def get_role(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        if p["role"] not in _ROLES:
            raise self._missing("AccountService", "Roles", p["role"])
        return {
            "@odata.id": f"{_ROOT}/AccountService/Roles/{p['role']}", "@odata.type": "#Role.v1_2_0.Role",
            "Id": p["role"], "Name": f"{p['role']} Role", "RoleId": p["role"], "IsPredefined": True,
            "AssignedPrivileges": list(_ROLES[p["role"]]),
        }

    def get_reset_action_info(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        """OpenBMC's ResetActionInfo: the reset types a system or the manager takes."""
        if not self.flavor.action_info:
            raise self._missing(p["kind"], p["owner"], "ResetActionInfo")
        if p["kind"] == "Systems":
            self._system(p["owner"])
            values = [*_COMMON_RESETS, *self.flavor.extra_resets]
        elif p["owner"] == self.flavor.manager_id:
            values = list(_MANAGER_RESETS)
        else:
            raise self._missing(p["kind"], p["owner"], "ResetActionInfo")
        return {
            "@odata.id": f"{_ROOT}/{p['kind']}/{p['owner']}/ResetActionInfo",
            "@odata.type": "#ActionInfo.v1_1_2.ActionInfo", "Id": "ResetActionInfo", "Name": "Reset Action Info",
            "Parameters": [{"Name": "ResetType", "Required": True, "DataType": "String", "AllowableValues": values}],
        }

    def get_odata(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return service_document()

    def get_metadata(self, p: dict[str, str], body: Any) -> _Reply:
        return _Reply(200, raw=metadata_xml(), content_type="application/xml")

    # ------------------------------------------------------------- actions
    def patch_system(self, p: dict[str, str], body: dict[str, Any]) -> _Reply:
        sid = p["sys"]
        m = self._system(sid)
        for key in body:
            if key not in ("Boot", "AssetTag", "IndicatorLED"):
                raise _RedfishError("PropertyNotWritable" if key in self.get_system(p, None) else "PropertyUnknown",
                                    key)
        boot = body.get("Boot", {})
        if not isinstance(boot, dict):
            raise _RedfishError("PropertyValueTypeError", boot, "Boot")
        for key in boot:
            if key not in ("BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode",
                           "UefiTargetBootSourceOverride"):
                raise _RedfishError("PropertyUnknown", f"Boot/{key}")
        # Validate everything before changing anything: a rejected PATCH leaves no trace.
        tag = body.get("AssetTag", self.asset_tag[sid])
        if not isinstance(tag, str):
            raise _RedfishError("PropertyValueTypeError", tag, "AssetTag")
        if len(tag) > 64 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in tag):
            raise _RedfishError("PropertyValueFormatError", tag, "AssetTag")
        led = body.get("IndicatorLED", self.indicator[sid])
        if led not in _INDICATOR_LED:
            raise _RedfishError("PropertyValueNotInList", led, "IndicatorLED")
        target_name = boot.get("BootSourceOverrideTarget", self._boot_target(sid))
        if target_name not in self.flavor.boot_targets:
            raise _RedfishError("PropertyValueNotInList", target_name, "BootSourceOverrideTarget")
        uefi_target = boot.get("UefiTargetBootSourceOverride", self.uefi_target.get(sid))
        if "UefiTarget" not in self.flavor.boot_targets and "UefiTargetBootSourceOverride" in boot:
            raise _RedfishError("PropertyUnknown", "Boot/UefiTargetBootSourceOverride")
        if uefi_target is not None and not isinstance(uefi_target, str):
            raise _RedfishError("PropertyValueTypeError", uefi_target, "UefiTargetBootSourceOverride")
        self.asset_tag[sid], self.indicator[sid] = tag, led
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
        if uefi_target is not None:
            self.uefi_target[sid] = uefi_target
        if "BootSourceOverrideTarget" in boot:
            self.boot_name[sid] = target_name
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
        if kind != "Nmi":
            self.apply_bios(p["sys"])
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
        if kind not in _MANAGER_RESETS:
            raise _RedfishError("ActionParameterValueNotInList", kind, "ResetType", "Manager.Reset")
        self.sessions.clear()  # a rebooted BMC forgets every session, as real ones do
        # Gone for a while, as a rebooting BMC is: RedfishLab drops its connections and refuses new ones.
        self.down_until = time.monotonic() + MANAGER_RESET_SECONDS * self.machine.time_scale
        return _Reply(204, close=True)

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
        self._ssl_ctx: ssl.SSLContext | None = None
        self._sites: dict[tuple[str, int], web.BaseSite] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # BMCs coming back from a Manager.Reset
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
        self._ssl_ctx = ssl_ctx
        self._stopping = asyncio.Event()
        try:
            for b in self._bmcs:
                await self._bind(b, ssl_ctx)
        except BaseException:
            await self.stop()
            raise
        return {m.name: b.port for b in self._bmcs for m in b.nodes}

    async def _bind(self, b: _Bmc, ssl_ctx: ssl.SSLContext | None) -> None:
        """Listen on the BMC's address and port (binding ourselves gives an ephemeral port before serving)."""
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((b.address, b.port))
            site = web.SockSite(self._runner, sock, ssl_context=ssl_ctx if b.scheme == "https" else None)
            await site.start()
        except BaseException:
            sock.close()
            raise
        b.port = sock.getsockname()[1]
        self._by_socket[(b.address, b.port)] = b
        self._sites[(b.address, b.port)] = site

    async def stop(self) -> None:
        """Close every socket and drop hung requests; safe to call twice or before start()."""
        if self._stopping is not None:
            self._stopping.set()  # wakes "hang" handlers so shutdown does not wait on them
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._sites.clear()
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
        if bmc is None or transport is None:  # the connection died, or a socket we no longer serve
            raise web.HTTPServiceUnavailable()
        if bmc.down_until > time.monotonic():  # rebooting (Manager.Reset): nobody answers
            transport.abort()
            raise asyncio.CancelledError
        bmc.transports.add(transport)
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
            return self._encode(bmc, _Reply(err.status, err.body()))
        try:
            reply = await self._serve(bmc, request, refuse_all=mode == "auth_fail")
        except _RedfishError as exc:
            reply = _Reply(exc.status, exc.body(), exc.headers)
        get = request.method in ("GET", "HEAD") and reply.status == 200
        response = self._encode(bmc, reply, etag=get and reply.raw is None)
        if get and (tag := response.headers.get("ETag")) and tag in _etags(request.headers.get("If-None-Match")):
            return web.Response(status=304, headers={"OData-Version": "4.0", "ETag": tag})
        if mode == "malformed_json" and reply.body is not None:
            raw = response.body
            assert isinstance(raw, bytes)
            response.body = raw[: len(raw) // 2]  # still claims application/json; it no longer parses
        if reply.close:
            response.force_close()
        if bmc.down_until > time.monotonic():
            self._reboot(bmc, request.transport)
        return response

    async def _serve(self, bmc: _Bmc, request: web.Request, *, refuse_all: bool) -> _Reply:
        path = request.path
        if len(path) > 1:
            path = path.rstrip("/")  # "/redfish/v1/" and "/redfish/v1" are the same resource
        try:
            methods, params = bmc.route(path)
            missing = None
        except _RedfishError as exc:
            methods, params, missing = {}, {}, exc
        method = "GET" if request.method == "HEAD" else request.method
        name = methods.get(method)
        # Credentials come first, as on real BMCs: an anonymous probe learns nothing about paths.
        user = None if name in _PUBLIC else self._authenticate(bmc, request, refuse_all)
        if missing is not None:
            raise missing
        if name is None:
            allow = [*methods, "HEAD"] if "GET" in methods else list(methods)
            raise _RedfishError("OperationNotAllowed", headers={"Allow": ", ".join(allow)})
        # DSP0266: a service answers 412 to an OData-Version it does not support, and 501 to
        # query parameters it does not implement (the service root says it implements none).
        version = request.headers.get("OData-Version")
        if version is not None and version.strip() != "4.0":
            raise _RedfishError("HeaderInvalid", f"OData-Version: {version[:16]}")
        if any(k.startswith("$") for k in request.query):
            raise _RedfishError("QueryNotSupported")
        if user is not None and method != "GET":
            self._authorize(bmc, user, name, params)
        body = _json_body(await request.read()) if method in ("POST", "PATCH") else None
        if method == "PATCH" and (want := request.headers.get("If-Match")) is not None:
            getter = getattr(bmc, "get_" + name.split("_", 1)[1])
            current = self._etag(json.dumps(getter(params, None)).encode())
            if "*" not in (tags := _etags(want)) and current not in tags:
                raise _RedfishError("PreconditionFailed")
        if name == "post_session":
            result = bmc.post_session(params, body or {}, refuse_all=refuse_all)
        else:
            result = getattr(bmc, name)(params, body)
        if not isinstance(result, _Reply):
            result = _Reply(200, result)
        if method == "GET":
            # What a client may do here, that it must not cache, and the schema the body follows.
            result.headers.setdefault("Allow", ", ".join(["GET", "HEAD", *(k for k in methods if k != "GET")]))
            result.headers.setdefault("Cache-Control", "no-cache")
            if result.body is not None and isinstance(kind := result.body.get("@odata.type"), str):
                schema = kind.lstrip("#").rsplit(".", 1)[0]
                result.headers["Link"] = f"<http://redfish.dmtf.org/schemas/v1/{schema}.json>; rel=describedby"
        return result

    @staticmethod
    def _authenticate(bmc: _Bmc, request: web.Request, refuse_all: bool) -> str:
        """The user of a live X-Auth-Token or of HTTP Basic credentials; anything else is 401."""
        if not refuse_all:
            token = request.headers.get("X-Auth-Token")
            if token and (session := bmc.session_for_token(token)) is not None:
                return session.username
            auth = request.headers.get("Authorization", "")
            if auth[:6].lower() == "basic ":
                try:
                    user, sep, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    sep = ""
                if sep and bmc.check_password(user, password):
                    return user
        raise _RedfishError("NoValidSession", headers={"WWW-Authenticate": 'Basic realm="Redfish"'})

    @staticmethod
    def _authorize(bmc: _Bmc, user: str, name: str, params: dict[str, str]) -> None:
        """Writes need the role's privilege: accounts ConfigureUsers (or ConfigureSelf for one's own),
        the manager ConfigureManager, everything else ConfigureComponents; logins and logouts need none."""
        privileges = _ROLES[bmc.role_of(user)]
        if name in ("post_session", "delete_session"):
            return
        if name in ("post_account", "patch_account", "delete_account"):
            own = name == "patch_account" and bmc.accounts.get(params.get("acct", "")) is not None \
                and bmc.accounts[params["acct"]].username == user
            need = "ConfigureSelf" if own else "ConfigureUsers"
        elif name == "post_manager_reset":
            need = "ConfigureManager"
        else:
            need = "ConfigureComponents"
        if need not in privileges:
            raise _RedfishError("InsufficientPrivilege")

    def _reboot(self, bmc: _Bmc, keep: asyncio.Transport | None) -> None:
        """Manager.Reset: drop the BMC's connections, close its socket, and bring it back when it is up."""
        for t in list(bmc.transports):
            if t is not keep:
                t.abort()
        bmc.transports.clear()
        site = self._sites.pop((bmc.address, bmc.port), None)
        task = asyncio.get_running_loop().create_task(self._come_back(bmc, site))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _come_back(self, bmc: _Bmc, site: web.BaseSite | None) -> None:
        if site is not None:
            await site.stop()  # new connections are refused while the BMC boots
        await asyncio.sleep(max(0.0, bmc.down_until - time.monotonic()))
        if self._runner is not None and site is not None:
            await self._bind(bmc, self._ssl_ctx)

    @staticmethod
    def _etag(raw: bytes) -> str:
        return f'W/"{zlib.crc32(raw):08x}"'

    def _encode(self, bmc: _Bmc, reply: _Reply, *, etag: bool = False) -> web.Response:
        status, body = reply.status, reply.body
        hdrs = {"OData-Version": "4.0", **reply.headers}
        if reply.raw is not None:
            return web.Response(status=status, body=reply.raw, headers=hdrs, content_type=reply.content_type,
                                charset="utf-8")
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
