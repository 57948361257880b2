"""Redfish resources to console values: pure functions, no I/O.

Each function takes a decoded JSON object (ComputerSystem, Thermal, Power, Sensor,
LogEntry...) and returns the value types of :mod:`console.drivers.bmc`.  Properties
Redfish marks optional may be missing or null: that gives ``None``/``""``/``unknown``.
A property of the wrong JSON type, or a string longer than :data:`MAX_STRING`, is a
:class:`ProtocolError` naming it (the driver adds the BMC's address).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from console.errors import ProtocolError

from .bmc import BootOverride, BootTarget, Event, PowerState, Sensor
from .redfish_http import odata_id

POWER = {"On": PowerState.ON, "PoweringOn": PowerState.ON, "Paused": PowerState.ON,
         "Off": PowerState.OFF, "PoweringOff": PowerState.OFF}
HEALTH = {"OK": "ok", "Warning": "warning", "Critical": "critical"}
BOOT_TARGETS = {BootTarget.NONE: "None", BootTarget.PXE: "Pxe", BootTarget.DISK: "Hdd",
                BootTarget.CD: "Cd", BootTarget.BIOS: "BiosSetup"}
_BOOT_NAMES = {v: k for k, v in BOOT_TARGETS.items()}
_UNITS = {"Cel": "C", "RPM": "RPM", "V": "V", "W": "W", "%": "%", "Percent": "%", "A": "A"}
_READING_KINDS = {"Temperature": "temperature", "Rotational": "fan", "Voltage": "voltage", "Power": "power"}
_UNIT_KINDS = {"Cel": "temperature", "RPM": "fan", "V": "voltage", "W": "power"}  # ReadingType is optional
#: sensors in these states are not there to read (Status.State)
_SKIP_STATES = frozenset({"Absent", "Disabled"})
#: Longest string property taken from a BMC (characters): names, versions, messages are short
MAX_STRING = 4096
_NO_THRESHOLDS: dict[str, float | None] = dict.fromkeys(
    ("lower_critical", "lower_warning", "upper_warning", "upper_critical"))


def _path(uri: str) -> str:
    return urlsplit(uri).path or uri


def last_segment(uri: str) -> str:
    """``/redfish/v1/Systems/1/`` -> ``1`` (usually, not always, the resource's Id)."""
    return _path(uri).rstrip("/").rsplit("/", 1)[-1]


def same_path(uri: str, others: Iterable[str]) -> bool:
    """Whether ``uri`` is one of ``others`` (trailing slash and case aside, as iLO links differ)."""
    want = _path(uri).rstrip("/").lower()
    return any(_path(u).rstrip("/").lower() == want for u in others)


def links(doc: dict[str, Any], name: str) -> list[str]:
    """The URLs in ``Links.<name>`` (a list of links, or one link)."""
    section = doc.get("Links")
    value = section.get(name) if isinstance(section, dict) else None
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ProtocolError(f"Links.{name} is not a list")
    return [odata_id(v, name) for v in value]


def members(doc: dict[str, Any], key: str, what: str) -> list[Any]:
    """``doc[key]`` as a list (missing or null: empty)."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"{what}.{key} is not a list")
    return value


def opt_str(doc: dict[str, Any], key: str, what: str) -> str | None:
    """An optional string property (``what`` names the resource in the error)."""
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{what}.{key} is a {type(value).__name__}, not a string")
    if len(value) > MAX_STRING:
        raise ProtocolError(f"{what}.{key} is {len(value)} characters long (at most {MAX_STRING})")
    return value


def num(doc: dict[str, Any], key: str, what: str) -> float | None:
    """An optional number property."""
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{what}.{key} is a {type(value).__name__}, not a number")
    return float(value)


def choose(prefs: tuple[str, ...], allowed: list[str] | None) -> str | None:
    """The first preference the BMC allows (None: none is allowed)."""
    if allowed is None:  # the BMC did not say: the first preference is the standard one
        return prefs[0]
    return next((p for p in prefs if p in allowed), None)


def boot_from(system: dict[str, Any]) -> BootOverride:
    """The boot override of a ComputerSystem (Disabled reads as target none)."""
    boot = system.get("Boot")
    if boot is None:
        return BootOverride(BootTarget.NONE)
    if not isinstance(boot, dict):
        raise ProtocolError("ComputerSystem.Boot is not an object")
    enabled = opt_str(boot, "BootSourceOverrideEnabled", "Boot") or "Disabled"
    if enabled == "Disabled":
        return BootOverride(BootTarget.NONE)
    name = opt_str(boot, "BootSourceOverrideTarget", "Boot") or "None"
    # Usb, UefiTarget, UefiHttp ...: a real override the console has no name for (not an error)
    target = _BOOT_NAMES.get(name, BootTarget.OTHER)
    return BootOverride(target, enabled == "Continuous" and target != BootTarget.NONE)


def mac(text: str) -> str | None:
    """A MAC address normalised to ``aa:bb:cc:dd:ee:ff``; None for an empty, all-zero or
    non-Ethernet value (interfaces without an address report these; they identify nothing)."""
    hexdigits = "".join(c for c in text.lower() if c in "0123456789abcdef")
    if len(hexdigits) != 12 or len(text) > 17 or hexdigits == "0" * 12:
        return None
    return ":".join(hexdigits[i:i + 2] for i in range(0, 12, 2))


def _health(status: Any, value: float | None, thresholds: dict[str, float | None]) -> str:
    if isinstance(status, dict) and isinstance(status.get("Health"), str):
        return HEALTH.get(status["Health"], "unknown")
    if value is None:
        return "unknown"
    lc, lw, uw, uc = (thresholds[k] for k in ("lower_critical", "lower_warning", "upper_warning", "upper_critical"))
    if (lc is not None and value <= lc) or (uc is not None and value >= uc):
        return "critical"
    if (lw is not None and value <= lw) or (uw is not None and value >= uw):
        return "warning"
    return "ok"


def _skip(member: dict[str, Any]) -> bool:
    status = member.get("Status")
    state = status.get("State") if isinstance(status, dict) else None
    return isinstance(state, str) and state in _SKIP_STATES


def _legacy_thresholds(m: dict[str, Any], what: str) -> dict[str, float | None]:
    """Thermal/Power ``*Threshold*`` properties; Fatal stands in for a missing Critical."""
    def pick(*keys: str) -> float | None:
        return next((v for k in keys if (v := num(m, k, what)) is not None), None)
    return {
        "lower_critical": pick("LowerThresholdCritical", "LowerThresholdFatal"),
        "lower_warning": pick("LowerThresholdNonCritical"),
        "upper_warning": pick("UpperThresholdNonCritical"),
        "upper_critical": pick("UpperThresholdCritical", "UpperThresholdFatal"),
    }


def _objects(doc: dict[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    out = []
    for m in members(doc, key, what):
        if not isinstance(m, dict):
            raise ProtocolError(f"{what}.{key} holds a {type(m).__name__}, not an object")
        if not _skip(m):
            out.append(m)
    return out


def _named(m: dict[str, Any], what: str, fallback: str) -> str:
    return opt_str(m, "Name", what) or opt_str(m, "MemberId", what) or fallback


def thermal_sensors(doc: dict[str, Any]) -> list[Sensor]:
    """Temperatures and Fans of a Thermal resource (fans in RPM or percent, as the BMC says)."""
    out = []
    for i, t in enumerate(_objects(doc, "Temperatures", "Thermal")):
        value, th = num(t, "ReadingCelsius", "Temperature"), _legacy_thresholds(t, "Temperature")
        out.append(Sensor(_named(t, "Temperature", f"Temp{i}"), "temperature", value, "C",
                          _health(t.get("Status"), value, th), **th))
    for i, f in enumerate(_objects(doc, "Fans", "Thermal")):
        value = num(f, "Reading", "Fan")
        units = opt_str(f, "ReadingUnits", "Fan") or "RPM"
        if value is None and "ReadingRPM" in f:  # Thermal v1.0 spelling
            value, units = num(f, "ReadingRPM", "Fan"), "RPM"
        th = _legacy_thresholds(f, "Fan")
        name = opt_str(f, "Name", "Fan") or opt_str(f, "FanName", "Fan") or _named(f, "Fan", f"Fan{i}")
        out.append(Sensor(name, "fan", value, _UNITS.get(units, units), _health(f.get("Status"), value, th), **th))
    return out


def power_sensors(doc: dict[str, Any]) -> list[Sensor]:
    """Voltages, PowerControl (consumed watts) and PowerSupplies (output watts) of a Power resource."""
    out = []
    for i, v in enumerate(_objects(doc, "Voltages", "Power")):
        value, th = num(v, "ReadingVolts", "Voltage"), _legacy_thresholds(v, "Voltage")
        out.append(Sensor(_named(v, "Voltage", f"Voltage{i}"), "voltage", value, "V",
                          _health(v.get("Status"), value, th), **th))
    for i, p in enumerate(_objects(doc, "PowerControl", "Power")):
        value = num(p, "PowerConsumedWatts", "PowerControl")
        if value is None and "Status" not in p:
            continue  # a PowerControl with nothing to show (OpenBMC without sensors)
        out.append(Sensor(_named(p, "PowerControl", f"Power{i}"), "power", value, "W",
                          _health(p.get("Status"), value, _NO_THRESHOLDS)))
    for i, s in enumerate(_objects(doc, "PowerSupplies", "Power")):
        value = num(s, "LastPowerOutputWatts", "PowerSupply")
        if value is None and "Status" not in s:
            continue
        out.append(Sensor(_named(s, "PowerSupply", f"PSU{i}"), "power", value, "W",
                          _health(s.get("Status"), value, _NO_THRESHOLDS)))
    return out


def sensor_resource(doc: dict[str, Any]) -> Sensor | None:
    """A Sensor resource (Chassis/Sensors member), or None when it is absent or disabled."""
    if _skip(doc):
        return None
    value = num(doc, "Reading", "Sensor")
    units = opt_str(doc, "ReadingUnits", "Sensor") or ""
    kind = _READING_KINDS.get(opt_str(doc, "ReadingType", "Sensor") or "") or _UNIT_KINDS.get(units, "other")
    if kind == "other" and doc.get("PhysicalContext") == "Fan":
        kind = "fan"  # fans in percent: ReadingType Percent
    limits = doc.get("Thresholds")
    th: dict[str, float | None] = {}
    for key, name in (("lower_critical", "LowerCritical"), ("lower_warning", "LowerCaution"),
                      ("upper_warning", "UpperCaution"), ("upper_critical", "UpperCritical")):
        entry = limits.get(name) if isinstance(limits, dict) else None
        th[key] = num(entry, "Reading", f"Thresholds.{name}") if isinstance(entry, dict) else None
    name = opt_str(doc, "Name", "Sensor") or opt_str(doc, "Id", "Sensor") or "sensor"
    return Sensor(name, kind, value, _UNITS.get(units, units), _health(doc.get("Status"), value, th), **th)


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def event(entry: dict[str, Any]) -> Event:
    """A LogEntry.  ``sensor`` is its SensorType (SEL entries; empty for IML, journal...)."""
    severity = opt_str(entry, "Severity", "LogEntry") or "OK"
    message = opt_str(entry, "Message", "LogEntry") or opt_str(entry, "Name", "LogEntry") or ""
    ident: Any = entry.get("Id")
    if isinstance(ident, int) and not isinstance(ident, bool):  # some services number their entries
        ident = str(ident)
    ident = opt_str({"Id": ident}, "Id", "LogEntry")
    if ident is None:
        ident = last_segment(opt_str(entry, "@odata.id", "LogEntry") or "")
    return Event(
        id=ident,
        timestamp=_timestamp(opt_str(entry, "Created", "LogEntry") or opt_str(entry, "EventTimestamp", "LogEntry")),
        severity={"Warning": "warning", "Critical": "critical"}.get(severity, "ok"),
        message=message,
        sensor=opt_str(entry, "SensorType", "LogEntry") or "",
    )


def id_key(ident: str) -> tuple[int, int | str]:
    """Sort key for entry Ids: numbers numerically, before other strings."""
    return (0, int(ident)) if ident.isdigit() else (1, ident)
