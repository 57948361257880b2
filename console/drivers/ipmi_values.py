"""pyghmi results -> :mod:`console.drivers.bmc` value types (pure functions, no I/O).

Kept apart from :mod:`console.drivers.ipmi` so the conversions can be read (and tested)
without a BMC, as ``redfish_values`` is for Redfish.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .bmc import BootOverride, BootTarget, Event, Identity, PowerAction, Sensor

__all__ = [
    "BOOTDEV_FOR_TARGET",
    "CHASSIS_CONTROL",
    "POWER_REQUEST",
    "boot_flags_from",
    "boot_flags_request",
    "boot_override_from",
    "event_from",
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


def event_from(record: Mapping[str, Any]) -> Event:
    """One ``get_event_log()`` record -> Event."""
    text = str(record.get("event") or record.get("component_type") or "event")
    if record.get("deassertion"):
        text += " (deasserted)"
    if record.get("event_data"):
        text += f": {record['event_data']}"
    component = record.get("component") or ""
    if component:
        text = f"{component}: {text}"
    return Event(
        id=str(record.get("record_id", "")),
        timestamp=_unix_time(record),
        severity=health_word(int(record.get("severity") or 0)),
        message=text,
        sensor=str(component),
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
