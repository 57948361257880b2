"""pyghmi results -> :mod:`console.drivers.bmc` value types (pure functions, no I/O).

Kept apart from :mod:`console.drivers.ipmi` so the conversions can be read (and tested)
without a BMC, as ``redfish_values`` is for Redfish.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .bmc import BootOverride, BootTarget, Event, Identity, PowerAction, Sensor

__all__ = [
    "BOOTDEV_FOR_TARGET",
    "CHASSIS_CONTROL",
    "POWER_REQUEST",
    "boot_flags_from",
    "boot_flags_request",
    "boot_override_from",
    "SENSOR_EVENTS",
    "SENSOR_TYPES",
    "THRESHOLD_EVENTS",
    "event_from",
    "sdr_scale",
    "health_word",
    "identity_from",
    "sensor_from",
]

#: ``Command.set_bootdev`` names per override target.
BOOTDEV_FOR_TARGET: dict[BootTarget, str] = {
    BootTarget.NONE: "default",
    BootTarget.PXE: "network",
    BootTarget.DISK: "hd",
    BootTarget.CD: "optical",
    BootTarget.BIOS: "setup",
}

#: ``Command.get_bootdev`` names back to targets ("safe" is "hard drive, safe mode").
_TARGET_FOR_BOOTDEV: dict[str, BootTarget] = {
    "default": BootTarget.NONE,
    "network": BootTarget.PXE,
    "hd": BootTarget.DISK,
    "safe": BootTarget.DISK,
    "optical": BootTarget.CD,
    "setup": BootTarget.BIOS,
}

#: ``Command.set_power`` states per action.  CYCLE is not here: pyghmi's ``boot`` is
#: "on if off, else *reset*" (a warm reset, not a power cycle), so the driver sends
#: Chassis Control "power cycle" itself (or "on" when the chassis is off).
POWER_REQUEST: dict[PowerAction, str] = {
    PowerAction.ON: "on",
    PowerAction.OFF: "off",
    PowerAction.SOFT: "shutdown",
    PowerAction.RESET: "reset",
}

#: Chassis Control (IPMI 2.0 section 28.3) data byte per action.  The driver sends ON for
#: CYCLE when the chassis is off (a power cycle does nothing to a chassis that is off).
CHASSIS_CONTROL: dict[PowerAction, int] = {
    PowerAction.OFF: 0x00,
    PowerAction.ON: 0x01,
    PowerAction.CYCLE: 0x02,
    PowerAction.RESET: 0x03,
    PowerAction.SOFT: 0x05,
}

#: Boot device selector, Get/Set System Boot Options parameter 5, data 2 bits 5:2
#: (IPMI 2.0 table 28-14).  Selectors not listed read back as OTHER.
_TARGET_FOR_SELECTOR: dict[int, BootTarget] = {
    0x0: BootTarget.NONE,
    0x1: BootTarget.PXE,
    0x2: BootTarget.DISK,
    0x3: BootTarget.DISK,  # hard drive, safe mode
    0x5: BootTarget.CD,
    0x6: BootTarget.BIOS,
    0x8: BootTarget.CD,  # remotely connected CD/DVD
}
_SELECTOR_FOR_TARGET: dict[BootTarget, int] = {
    BootTarget.NONE: 0x0, BootTarget.PXE: 0x1, BootTarget.DISK: 0x2, BootTarget.CD: 0x5, BootTarget.BIOS: 0x6,
}


def boot_flags_from(data: bytes) -> BootOverride:
    """Get System Boot Options parameter 5 response data (after the completion code) ->
    BootOverride.  Flags not valid (or the parameter marked invalid) read as NONE, once,
    as pyghmi's ``get_bootdev`` reads them, with the device their selector still names in
    ``unflagged``; a selector with no name here reads as OTHER.

    Raises ValueError for a reply too short or for another parameter.
    """
    if len(data) < 4 or data[1] & 0x7F != 5:
        raise ValueError(f"not a boot flags reply ({bytes(data[:8]).hex()})")
    if data[1] & 0x80:
        return BootOverride(BootTarget.NONE, persistent=False)
    target = _TARGET_FOR_SELECTOR.get((data[3] >> 2) & 0x0F, BootTarget.OTHER)
    if not data[2] & 0x80:
        return BootOverride(BootTarget.NONE, persistent=False,
                            unflagged=None if target is BootTarget.NONE else target)
    if target is BootTarget.NONE:
        return BootOverride(BootTarget.NONE, persistent=False)
    return BootOverride(target, persistent=bool(data[2] & 0x40))


def boot_flags_request(target: BootTarget, persistent: bool) -> bytes:
    """Set System Boot Options parameter 5 request data, as pyghmi's ``set_bootdev`` sends it.

    Raises ValueError for OTHER (it names no device).
    """
    if target not in _SELECTOR_FOR_TARGET:
        raise ValueError(f"boot override {target.value!r} cannot be set")
    if target is BootTarget.NONE:
        return bytes([5, 0, 0, 0, 0, 0])
    flags = 0x80 | (0x40 if persistent else 0)
    return bytes([5, flags, _SELECTOR_FOR_TARGET[target] << 2, 0, 0, 0])


# pyghmi.constants.Health bits: Ok 0, Warning 1, Critical 2, Failed 4.
_WARNING, _CRITICAL, _FAILED = 1, 2, 4


def health_word(bits: int | None) -> str:
    """pyghmi's health bit set as ok / warning / critical (failed counts as critical)."""
    if bits is None:
        return "unknown"
    if bits & (_CRITICAL | _FAILED):
        return "critical"
    if bits & _WARNING:
        return "warning"
    return "ok"


def boot_override_from(result: Mapping[str, Any]) -> BootOverride:
    """``get_bootdev()`` -> BootOverride.  No override reads as NONE, not persistent.

    pyghmi says ``persistent: True`` when the boot flags are not valid (no override at
    all); that is not an override the operator set, so it is reported as once/NONE.
    Devices with no name here (pyghmi returns e.g. "floppy", or the int) read as OTHER.
    """
    target = _TARGET_FOR_BOOTDEV.get(result.get("bootdev"), BootTarget.OTHER)  # type: ignore[arg-type]
    if target is BootTarget.NONE:
        return BootOverride(BootTarget.NONE, persistent=False)
    return BootOverride(target, persistent=bool(result.get("persistent")))


_UNITS = {"°C": "C", "C": "C", "°F": "F", "RPM": "RPM", "V": "V", "W": "W", "%": "%", "A": "A"}
_KINDS = {"temperature": "temperature", "fan": "fan", "voltage": "voltage", "power": "power",
          "power supply": "power"}  # pyghmi sensor type names; others: by unit, else "other"


def sensor_from(reading: Any, thresholds: tuple[float | None, ...] | None) -> Sensor:
    """A pyghmi ``SensorReading`` (plus thresholds lc, lw, uw, uc) -> Sensor."""
    unit = _UNITS.get(str(reading.units or "").strip(), str(reading.units or "").strip())
    kind = _KINDS.get(str(reading.type or "").lower())
    if kind is None:
        kind = {"C": "temperature", "RPM": "fan", "V": "voltage", "W": "power"}.get(unit, "other")
    lc, lw, uw, uc = thresholds or (None, None, None, None)
    if getattr(reading, "unavailable", 0):
        return Sensor(reading.name, kind, None, unit, "unknown", lc, lw, uw, uc)
    value = reading.value
    return Sensor(
        name=reading.name,
        kind=kind,
        value=None if value is None else round(float(value), 3),
        unit=unit,
        health=health_word(reading.health),
        lower_critical=lc,
        lower_warning=lw,
        upper_warning=uw,
        upper_critical=uc,
    )


def _unix_time(record: Mapping[str, Any]) -> float | None:
    # pyghmi renders SEL times as *local* ISO 8601 (after correcting for the BMC's clock),
    # so mktime, not calendar.timegm, turns them back into unix seconds.
    stamp = record.get("timestamp")
    if not stamp:
        return None
    try:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


# ------------------------------------------------------------------ SEL events
#: Sensor type codes, IPMI 2.0 table 42-3 (the names a line shows after the sensor's own).
SENSOR_TYPES: dict[int, str] = {
    0x01: "Temperature", 0x02: "Voltage", 0x03: "Current", 0x04: "Fan", 0x05: "Physical Security",
    0x06: "Platform Security", 0x07: "Processor", 0x08: "Power Supply", 0x09: "Power Unit",
    0x0A: "Cooling Device", 0x0B: "Other Units", 0x0C: "Memory", 0x0D: "Drive Slot",
    0x0E: "POST Memory Resize", 0x0F: "System Firmware Progress", 0x10: "Event Logging Disabled",
    0x11: "Watchdog", 0x12: "System Event", 0x13: "Critical Interrupt", 0x14: "Button/Switch",
    0x15: "Module/Board", 0x16: "Microcontroller", 0x17: "Add-in Card", 0x18: "Chassis", 0x19: "Chip Set",
    0x1A: "Other FRU", 0x1B: "Cable/Interconnect", 0x1C: "Terminator", 0x1D: "System Boot Initiated",
    0x1E: "Boot Error", 0x1F: "OS Boot", 0x20: "OS Stop/Shutdown", 0x21: "Slot/Connector",
    0x22: "System ACPI Power State", 0x23: "Watchdog", 0x24: "Platform Alert", 0x25: "Entity Presence",
    0x27: "LAN", 0x28: "Management Subsystem Health", 0x29: "Battery", 0x2A: "Session Audit",
    0x2B: "Version Change", 0x2C: "FRU State",
}

_C, _W, _O = "critical", "warning", "ok"
#: Sensor-specific event offsets (event/reading type 6Fh), IPMI 2.0 table 42-3, for the
#: common sensor types: (sensor type, offset) -> (words, severity when asserted).  The
#: spec's words, shortened; pyghmi's own table is used for the types not here.
SENSOR_EVENTS: dict[tuple[int, int], tuple[str, str]] = {
    (0x05, 0x00): ("General chassis intrusion", _W),
    (0x07, 0x00): ("Processor IERR", _C), (0x07, 0x01): ("Processor thermal trip", _C),
    (0x07, 0x02): ("Processor FRB1/BIST failure", _C), (0x07, 0x03): ("Processor FRB2/hang in POST", _C),
    (0x07, 0x04): ("Processor FRB3/startup failure", _C), (0x07, 0x05): ("Processor configuration error", _C),
    (0x07, 0x06): ("Uncorrectable CPU-complex error", _C), (0x07, 0x07): ("Processor presence detected", _O),
    (0x07, 0x08): ("Processor disabled", _W), (0x07, 0x09): ("Terminator presence detected", _O),
    (0x07, 0x0A): ("Processor automatically throttled", _W),
    (0x07, 0x0B): ("Uncorrectable machine check exception", _C),
    (0x07, 0x0C): ("Correctable machine check error", _W),
    (0x08, 0x00): ("Power Supply presence detected", _O), (0x08, 0x01): ("Power Supply failure detected", _C),
    (0x08, 0x02): ("Power Supply predictive failure", _W), (0x08, 0x03): ("Power Supply AC lost", _C),
    (0x08, 0x04): ("Power Supply input lost or out of range", _C),
    (0x08, 0x05): ("Power Supply input out of range", _W), (0x08, 0x06): ("Power Supply configuration error", _W),
    (0x08, 0x07): ("Power Supply inactive", _O),
    (0x0C, 0x00): ("Correctable ECC", _W), (0x0C, 0x01): ("Uncorrectable ECC", _C), (0x0C, 0x02): ("Parity error", _W),
    (0x0C, 0x03): ("Memory scrub failed", _C), (0x0C, 0x04): ("Memory device disabled", _W),
    (0x0C, 0x05): ("Correctable ECC logging limit reached", _W), (0x0C, 0x06): ("Memory presence detected", _O),
    (0x0C, 0x07): ("Memory configuration error", _C), (0x0C, 0x08): ("Memory spare", _O),
    (0x0C, 0x09): ("Memory automatically throttled", _W), (0x0C, 0x0A): ("Memory critical overtemperature", _C),
    (0x0D, 0x00): ("Drive present", _O), (0x0D, 0x01): ("Drive fault", _C),
    (0x0D, 0x02): ("Drive predictive failure", _W),
    (0x0D, 0x03): ("Hot spare", _O), (0x0D, 0x04): ("Consistency check in progress", _O),
    (0x0D, 0x05): ("Drive in critical array", _C), (0x0D, 0x06): ("Drive in failed array", _C),
    (0x0D, 0x07): ("Rebuild in progress", _O), (0x0D, 0x08): ("Rebuild aborted", _C),
    (0x10, 0x00): ("Correctable memory error logging disabled", _W), (0x10, 0x01): ("Event type logging disabled", _W),
    (0x10, 0x02): ("Log area reset/cleared", _O), (0x10, 0x03): ("All event logging disabled", _W),
    (0x10, 0x04): ("SEL full", _W), (0x10, 0x05): ("SEL almost full", _O),
    (0x12, 0x00): ("System reconfigured", _O), (0x12, 0x01): ("OEM system boot event", _O),
    (0x12, 0x02): ("Undetermined system hardware failure", _C), (0x12, 0x03): ("Entry added to auxiliary log", _O),
    (0x12, 0x04): ("PEF action", _O), (0x12, 0x05): ("Timestamp clock sync", _O),
    (0x1D, 0x00): ("Initiated by power up", _O), (0x1D, 0x01): ("Initiated by hard reset", _O),
    (0x1D, 0x02): ("Initiated by warm reset", _O), (0x1D, 0x03): ("User requested PXE boot", _O),
    (0x1D, 0x04): ("Automatic boot to diagnostic", _O), (0x1D, 0x05): ("OS initiated hard reset", _O),
    (0x1D, 0x06): ("OS initiated warm reset", _O), (0x1D, 0x07): ("System restart", _O),
    (0x1E, 0x00): ("No bootable media", _C), (0x1E, 0x02): ("PXE server not found", _W),
    (0x1E, 0x03): ("Invalid boot sector", _C), (0x1E, 0x04): ("Timeout waiting for boot selection", _W),
    (0x1F, 0x00): ("A: boot completed", _O), (0x1F, 0x01): ("C: boot completed", _O),
    (0x1F, 0x02): ("PXE boot completed", _O), (0x1F, 0x03): ("Diagnostic boot completed", _O),
    (0x1F, 0x04): ("CD-ROM boot completed", _O), (0x1F, 0x05): ("ROM boot completed", _O),
    (0x1F, 0x06): ("Boot completed", _O), (0x1F, 0x07): ("OS installation started", _O),
    (0x1F, 0x08): ("OS installation completed", _O), (0x1F, 0x09): ("OS installation aborted", _W),
    (0x1F, 0x0A): ("OS installation failed", _C),
    (0x20, 0x00): ("Critical stop during OS load", _C), (0x20, 0x01): ("Run-time critical stop", _C),
    (0x20, 0x02): ("OS graceful stop", _O), (0x20, 0x03): ("OS graceful shutdown", _O),
    (0x20, 0x04): ("Soft shutdown initiated by PEF", _O), (0x20, 0x05): ("Agent not responding", _W),
    (0x22, 0x00): ("S0/G0 working", _O), (0x22, 0x01): ("S1 sleeping", _O), (0x22, 0x02): ("S2 sleeping", _O),
    (0x22, 0x03): ("S3 sleeping", _O), (0x22, 0x04): ("S4 suspend to disk", _O), (0x22, 0x05): ("S5/G2 soft-off", _O),
    (0x22, 0x06): ("S4/S5 soft-off", _O), (0x22, 0x07): ("G3 mechanical off", _O), (0x22, 0x08): ("Sleeping", _O),
    (0x22, 0x09): ("G1 sleeping", _O), (0x22, 0x0A): ("S5 entered by override", _O), (0x22, 0x0B): ("Legacy ON", _O),
    (0x22, 0x0C): ("Legacy OFF", _O), (0x22, 0x0E): ("Unknown", _O),
    (0x23, 0x00): ("Watchdog timer expired", _W), (0x23, 0x01): ("Watchdog hard reset", _C),
    (0x23, 0x02): ("Watchdog power down", _C), (0x23, 0x03): ("Watchdog power cycle", _C),
    (0x23, 0x08): ("Watchdog timer interrupt", _W),
    (0x29, 0x00): ("Battery low", _W), (0x29, 0x01): ("Battery failed", _C),
    (0x29, 0x02): ("Battery presence detected", _O),
}

#: Threshold event offsets (event/reading type 01h), IPMI 2.0 table 42-2: words, and how
#: the reading compares with the threshold when it is asserted
THRESHOLD_EVENTS: dict[int, tuple[str, str]] = {
    0x0: ("Lower Non-critical going low", "<"), 0x1: ("Lower Non-critical going high", ">"),
    0x2: ("Lower Critical going low", "<"), 0x3: ("Lower Critical going high", ">"),
    0x4: ("Lower Non-recoverable going low", "<"), 0x5: ("Lower Non-recoverable going high", ">"),
    0x6: ("Upper Non-critical going low", "<"), 0x7: ("Upper Non-critical going high", ">"),
    0x8: ("Upper Critical going low", "<"), 0x9: ("Upper Critical going high", ">"),
    0xA: ("Upper Non-recoverable going low", "<"), 0xB: ("Upper Non-recoverable going high", ">"),
}
_THRESHOLD_SEVERITY = {0: _W, 1: _W, 2: _C, 3: _C, 4: _C, 5: _C, 6: _W, 7: _W, 8: _C, 9: _C, 10: _C, 11: _C}

#: ``scale(component_id, raw)`` -> the raw byte in the sensor's units, with the unit; None
#: when the SDR does not say how (see :func:`sdr_scale`)
Scale = Callable[[str, int], "tuple[float, str] | None"]
_UNNAMED = re.compile(r"^Sensor (\d+)\.(\d+)\.(\d+)$")


def sdr_scale(sdr: Any) -> Scale:
    """A :data:`Scale` over pyghmi's SDR (``Command.init_sdr()``): an event's trigger
    reading and threshold bytes in the units the sensor reads in.  Only the linear and
    the fixed non-linear formulas are used (no request to the BMC)."""
    sensors = getattr(sdr, "sensors", None) or {}

    def scale(component_id: str, raw: int) -> tuple[float, str] | None:
        entry = sensors.get(component_id)
        linearization = getattr(entry, "linearization", None)
        if entry is None or linearization is None or linearization > 11 or getattr(entry, "numeric_format", 3) == 3:
            return None
        try:
            if entry.numeric_format == 2:
                raw = raw - 256 if raw & 0x80 else raw
            elif entry.numeric_format == 1:
                raw = -(~raw & 0x7F) if raw & 0x80 else raw
            value = float(entry.decode_value(None, raw))
        except (ArithmeticError, ValueError, TypeError, AttributeError):
            return None
        unit = str(getattr(entry, "unit_suffix", "") or "").strip()
        return round(value, 3), _UNITS.get(unit, unit)

    return scale


def _number(value: float) -> str:
    return f"{value:g}"


def _threshold_words(record: Mapping[str, Any], offset: int, scale: Scale | None) -> str:
    """``Lower Critical going low, reading 0 RPM < threshold 1000 RPM``."""
    words, op = THRESHOLD_EVENTS[offset]
    component = str(record.get("component_id") or "")
    trigger, limit = record.get("triggered_value"), record.get("threshold_value")
    if scale is None or not isinstance(trigger, int) or not isinstance(limit, int):
        return words
    got, at = scale(component, trigger), scale(component, limit)
    if got is None or at is None:
        return words
    unit = f" {got[1]}" if got[1] else ""
    return f"{words}, reading {_number(got[0])}{unit} {op} threshold {_number(at[0])}{unit}"


def _sensor_label(record: Mapping[str, Any], type_name: str) -> tuple[str, str]:
    """(name, label): ``PSU2`` and ``PSU2 (Power Supply)``; a sensor the SDR does not name
    is ``sensor A1h (System ACPI Power State)``."""
    component = str(record.get("component") or "")
    unnamed = _UNNAMED.match(component)
    if unnamed:
        number = f"sensor {int(unnamed.group(2)):02X}h"
        return "", f"{number} ({type_name})" if type_name else number
    if not component:
        return "", type_name or "event"
    same = not type_name or type_name.lower() == component.lower()
    return component, component if same else f"{component} ({type_name})"


def _raw_standard(data: Any) -> dict[str, Any] | None:
    """A system event record pyghmi could not decode (it keeps bytes 3-15 as ``oemdata``):
    timestamp, generator ID, EvM revision, sensor type, number, event type/direction, data
    1-3 (IPMI 2.0 table 32-1), as the fields pyghmi would have given."""
    try:
        raw = bytes(data)
    except (TypeError, ValueError):
        return None
    if len(raw) != 13:
        return None
    sensor_type, number, dir_type, data1 = raw[7], raw[8], raw[9], raw[10]
    out: dict[str, Any] = {
        "component_type_id": sensor_type, "component": f"Sensor {raw[4]}.{number}.{raw[5] & 0x03}",
        "component_id": f"{raw[4]}.{number}.{raw[5] & 0x03}",
        "event_id": f"{dir_type & 0x7F}.{data1 & 0x0F}", "deassertion": bool(dir_type & 0x80),
    }
    if data1 & 0xC0 == 0x40:
        out["triggered_value"] = raw[11]
    if data1 & 0x30 == 0x10:
        out["threshold_value"] = raw[12]
    return out


def event_from(record: Mapping[str, Any], scale: Scale | None = None) -> Event:
    """One ``get_event_log()`` record -> Event, as a line reads:
    ``PSU2 (Power Supply): Power Supply AC lost  asserted``,
    ``FAN3 (Fan): Lower Critical going low, reading 0 RPM < threshold 1000 RPM  asserted``.

    The sensor's name is the SDR's (pyghmi's); the words for a threshold event are table
    42-2's with the trigger reading and threshold in the sensor's units (``scale``, from
    :func:`sdr_scale`); for a sensor-specific event, :data:`SENSOR_EVENTS` (table 42-3), else
    pyghmi's own words.  A record pyghmi could not decode is decoded from its bytes; an OEM
    record is shown as its bytes.  ``sensor`` is the sensor's name (its type when unnamed).
    The words come from the BMC's SDR and SEL: whoever shows them makes them visible.
    """
    record = dict(record)
    if "event_id" not in record and "oemid" not in record and "timecode" in record and "oemdata" in record:
        record.update(_raw_standard(record["oemdata"]) or {})
    ident = str(record.get("record_id", ""))
    stamp = _unix_time(record)
    if "event_id" not in record and "event" not in record:  # OEM: only bytes
        data = record.get("oemdata")
        hexed = bytes(data).hex(" ") if isinstance(data, (bytes, bytearray)) else ""
        return Event(id=ident, timestamp=stamp, severity="ok", message=f"OEM record: {hexed}".strip(), sensor="")
    try:
        reading_type, offset = (int(x) for x in str(record.get("event_id", "")).split(".", 1))
    except ValueError:
        reading_type, offset = -1, -1
    type_code = record.get("component_type_id")
    type_name = SENSOR_TYPES.get(type_code, "") if isinstance(type_code, int) else ""
    type_name = type_name or str(record.get("component_type") or "")
    deasserted = bool(record.get("deassertion"))
    severity = health_word(int(record.get("severity") or 0))
    if reading_type == 0x01 and offset in THRESHOLD_EVENTS:
        words = _threshold_words(record, offset, scale)
        severity = _O if deasserted else _THRESHOLD_SEVERITY[offset]
    elif reading_type == 0x6F and isinstance(type_code, int) and (type_code, offset) in SENSOR_EVENTS:
        words, asserted_severity = SENSOR_EVENTS[(type_code, offset)]
        severity = _O if deasserted else asserted_severity
    else:
        words = str(record.get("event") or "").removesuffix(" deasserted") or (
            f"event {reading_type:02X}h offset {offset:X}h" if reading_type >= 0 else "event")
    if record.get("event_data"):
        words += f" ({record['event_data']})"
    name, label = _sensor_label(record, type_name)
    state = "deasserted" if deasserted else "asserted"
    return Event(
        id=ident,
        timestamp=stamp,
        severity=severity,
        message=f"{label}: {words}  {state}",
        sensor=name or type_name,
    )


_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$", re.IGNORECASE)


def _macs_in(entry: Mapping[str, Any]) -> list[str]:
    """MAC-looking values under keys that mention a MAC (OEM inventories carry them)."""
    found = []
    for key, value in entry.items():
        if "mac" in str(key).lower() and isinstance(value, str) and _MAC.match(value.strip()):
            found.append(value.strip().lower().replace("-", ":"))
    return found


def identity_from(system: Mapping[str, Any], firmware: Iterable[tuple[str, Mapping[str, Any]]],
                  others: Iterable[Mapping[str, Any]] = ()) -> Identity:
    """The ``System`` inventory entry, ``get_firmware()`` items and other inventory entries."""

    def first(*keys: str) -> str:
        for key in keys:
            value = system.get(key)
            if value not in (None, ""):
                return str(value).strip()
        return ""

    bmc_version = ""
    bios_version = ""
    for name, info in firmware:
        version = str((info or {}).get("version") or "")
        lowered = name.lower()
        if lowered.startswith("bmc") and not bmc_version:
            bmc_version = version
        elif ("bios" in lowered or "uefi" in lowered) and not bios_version:
            bios_version = version
    macs: list[str] = []
    for entry in (system, *others):
        for mac in _macs_in(entry):
            if mac not in macs:
                macs.append(mac)
    return Identity(
        vendor=first("Manufacturer", "Board manufacturer"),
        model=first("Product name", "Model", "Board product name"),
        serial=first("Serial Number", "Chassis serial number", "Board serial number"),
        uuid=first("UUID").lower(),
        bios_version=bios_version,
        bmc_firmware=bmc_version or first("firmware_version"),
        macs=tuple(macs),
    )
