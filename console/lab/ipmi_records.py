"""SDR, SEL and FRU records of the lab's IPMI BMCs, built from a lab :class:`Machine`.

Split out of :mod:`console.lab.ipmi_bmc` (which serves them): the SDR repository with
full sensor records and readings (IPMI 2.0 sections 35 and 43), system event records for
the machine's events (section 32), and the FRU inventory image (Platform Management FRU
Information Storage Definition 1.0).  Pure data: no sockets, no sessions.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from console.lab.machine import Machine, SelEvent, SensorReading

__all__ = ["BMC_SLAVE_ADDRESS", "EVENT_ONLY_SENSORS", "_SensorTable", "_checksum", "_fru_image", "_le16", "_le32",
           "_sel_record", "_sel_record_id"]

BMC_SLAVE_ADDRESS = 0x20


def _checksum(data: bytes | bytearray) -> int:
    """IPMI two's-complement checksum: the byte that makes ``sum(data) + it`` zero mod 256."""
    return -sum(data) & 0xFF


def _le16(value: int) -> bytes:
    return struct.pack("<H", value & 0xFFFF)


def _le32(value: float) -> bytes:
    return struct.pack("<I", int(value) & 0xFFFFFFFF)


# ==================================================================== sensors
@dataclass(frozen=True)
class _Kind:
    """How one kind of machine sensor is presented in IPMI."""

    sensor_type: int  # IPMI 2.0 table 42-3
    m: int  # linear conversion: value = M * raw * 10**r_exp (B is 0 for every lab sensor)
    r_exp: int


# Resolutions chosen so every machine threshold is an exact raw value and the range has
# headroom: 1 degree C up to 255, 50 RPM up to 12,750, 0.08 V up to 20.4 V, 5 W up to 1,275 W.
_KINDS = {
    "temperature": _Kind(0x01, 1, 0),
    "fan": _Kind(0x04, 50, 0),
    "voltage": _Kind(0x02, 8, -2),
    "power": _Kind(0x0B, 5, 0),  # "other units-based"; with unit Watts pyghmi calls it "Power"
}
# Sensor unit type codes, IPMI 2.0 table 43-15.
_UNITS = {"Cel": 1, "C": 1, "V": 4, "A": 5, "W": 6, "RPM": 18, "%": 0}
# Entity IDs, IPMI 2.0 table 43-13.
ENTITY_PROCESSOR, ENTITY_SYSTEM_BOARD, ENTITY_POWER_SUPPLY, ENTITY_FAN, ENTITY_AIR_INLET = 0x03, 0x07, 0x0A, 0x1D, 0x37

_THRESHOLDS = ("lnc", "lcr", "unc", "ucr")  # non-critical = the machine's "warning"


def _auto_kind(reading: SensorReading) -> _Kind:
    """A scale for a sensor kind the table does not know: smallest 1/2/5 step covering 1.5x its range."""
    values = [abs(v) for v in (reading.value, reading.lower_critical, reading.lower_warning,
                               reading.upper_warning, reading.upper_critical) if v is not None]
    full = max(values, default=1.0) * 1.5 or 1.0
    for r_exp in range(-3, 5):
        for m in (1, 2, 5):
            if 255 * m * 10.0**r_exp >= full:
                return _Kind(0x0B, m, r_exp)
    return _Kind(0x0B, 500, 4)


@dataclass
class _SensorEntry:
    """One sensor's static description: number, scale, and the thresholds it has shown."""

    number: int
    name: str
    kind: _Kind
    unit: int
    entity: int
    instance: int
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_raw(self, value: float) -> int:
        return max(0, min(255, round(value / (self.kind.m * 10.0**self.kind.r_exp))))


class _SensorTable:
    """The SDR repository (full sensor records, IPMI 2.0 section 43.1) and sensor readings.

    Records are built from ``machine.sensors()``.  Machines drop some thresholds while off
    (fans have no lower limits then), so thresholds are merged over time: once a sensor has
    shown a threshold it stays in its record.  When that changes the records, the "most
    recent addition" timestamp changes with them, which is what tells caching clients
    (pyghmi keys its SDR cache on it) to read the repository again.
    """

    def __init__(self, machine: Machine) -> None:
        self._machine = machine
        self._by_name: dict[str, _SensorEntry] = {}
        self.records: list[bytes] = []
        self.addition_timestamp = 0
        self.current()

    def current(self) -> dict[int, SensorReading]:
        """Read the machine's sensors now, by sensor number (updating the records if needed)."""
        readings = self._machine.sensors()
        changed = False
        out: dict[int, SensorReading] = {}
        for reading in readings:
            entry = self._by_name.get(reading.name)
            if entry is None:
                entry = self._new_entry(reading)
                self._by_name[reading.name] = entry
                changed = True
            for key, value in zip(_THRESHOLDS, (reading.lower_warning, reading.lower_critical,
                                                reading.upper_warning, reading.upper_critical), strict=True):
                if value is not None and entry.thresholds.get(key) != value:
                    entry.thresholds[key] = value
                    changed = True
            out[entry.number] = reading
        if changed:
            full = [self._full_record(e) for e in self._by_name.values()]
            self.records = full + [_event_only_record(len(full) + i + 1, number, sensor_type, entity, name)
                                   for i, (number, sensor_type, entity, name) in enumerate(EVENT_ONLY_SENSORS)]
            # A content hash, not a clock: identical repositories look identical to caches,
            # different ones never do.  Mapped into 2020..2023 so it reads as a plausible date.
            self.addition_timestamp = 1_577_836_800 + zlib.crc32(b"".join(self.records)) % 100_000_000
        return out

    def entry(self, number: int) -> _SensorEntry | None:
        for e in self._by_name.values():
            if e.number == number:
                return e
        return None

    def number_of(self, name: str) -> int | None:
        e = self._by_name.get(name)
        return e.number if e else None

    def _new_entry(self, reading: SensorReading) -> _SensorEntry:
        kind = _KINDS.get(reading.kind) or _auto_kind(reading)
        lowered = reading.name.lower()
        if reading.kind == "fan":
            entity = ENTITY_FAN
        elif reading.kind == "power":
            entity = ENTITY_POWER_SUPPLY
        elif "inlet" in lowered:
            entity = ENTITY_AIR_INLET
        elif lowered.startswith("cpu"):
            entity = ENTITY_PROCESSOR
        else:
            entity = ENTITY_SYSTEM_BOARD
        m = re.match(r"[A-Za-z]+(\d+)", reading.name)  # CPU2 Temp -> 2, FAN3 -> 3, 12V -> 1
        instance = int(m.group(1)) & 0x7F if m else 1
        return _SensorEntry(len(self._by_name) + 1, reading.name, kind, _UNITS.get(reading.unit, 0), entity, instance)

    @staticmethod
    def _full_record(e: _SensorEntry) -> bytes:
        """Full Sensor Record (type 01h), IPMI 2.0 table 43-1; byte numbers from the table."""
        t = e.thresholds
        readable = ((1 if "lnc" in t else 0) | (2 if "lcr" in t else 0)
                    | (8 if "unc" in t else 0) | (16 if "ucr" in t else 0))
        # Assertion mask bits 11:0 (threshold going low/high events, table 43-1 bytes 15-16);
        # bits 14:12 say which lower thresholds Get Sensor Reading compares against.
        events = ((0x001 if "lnc" in t else 0) | (0x004 if "lcr" in t else 0)
                  | (0x080 if "unc" in t else 0) | (0x200 if "ucr" in t else 0))
        lower_cmp = (0x1000 if "lnc" in t else 0) | (0x2000 if "lcr" in t else 0)
        upper_cmp = (0x1000 if "unc" in t else 0) | (0x2000 if "ucr" in t else 0)
        m, r_exp = e.kind.m, e.kind.r_exp
        name = e.name.encode("ascii", "replace")[:16]

        def raw(key: str) -> int:
            return e.to_raw(t[key]) if key in t else 0

        body = bytes([
            BMC_SLAVE_ADDRESS, 0x00, e.number,  # 6-8: owner ID, owner LUN, sensor number
            e.entity, e.instance,  # 9-10
            0x67,  # 11: init scanning/events/type; events and scanning enabled
            0x44,  # 12: auto re-arm, no hysteresis, thresholds readable (not settable)
            e.kind.sensor_type, 0x01,  # 13-14: sensor type, event/reading type "threshold"
        ]) + _le16(events | lower_cmp) + _le16(events | upper_cmp) + bytes([
            readable, 0x00,  # 19-20: readable / settable threshold masks
            0x00, e.unit, 0x00,  # 21-23: unsigned, no rate or modifier; base unit; no modifier unit
            0x00,  # 24: linear
            m & 0xFF, (m >> 2) & 0xC0,  # 25-26: M (10 bits, two's complement), tolerance 0
            0x00, 0x00,  # 27-28: B = 0, accuracy 0
            0x00,  # 29: accuracy, direction unspecified
            ((r_exp & 0x0F) << 4) | 0x00,  # 30: R exponent, B exponent
            0x00, 0, 0, 0,  # 31-34: no nominal/normal readings given
            0xFF, 0x00,  # 35-36: sensor maximum / minimum reading
            0, raw("ucr"), raw("unc"), 0, raw("lcr"), raw("lnc"),  # 37-42: UNR UCR UNC LNR LCR LNC
            0, 0,  # 43-44: hysteresis
            0, 0, 0,  # 45-47: reserved, OEM
            0xC0 | len(name),  # 48: ID string, 8-bit ASCII
        ]) + name
        return _le16(e.number) + bytes([0x51, 0x01, len(body)]) + body

    def reading_bytes(self, number: int) -> bytes | None:
        """Get Sensor Reading response data (IPMI 2.0 section 35.14), or None if no such sensor."""
        readings = self.current()
        entry, reading = self.entry(number), readings.get(number)
        if entry is None or reading is None:
            return None
        if reading.value is None:
            return bytes([0x00, 0xE0, 0x00, 0x80])  # events+scanning enabled, reading unavailable
        v = reading.value
        # Compared as the machine compares (SensorReading.status), so IPMI and the machine agree.
        status = 0
        if reading.lower_warning is not None and v <= reading.lower_warning:
            status |= 0x01
        if reading.lower_critical is not None and v <= reading.lower_critical:
            status |= 0x03  # at or below LCR is also below LNC
        if reading.upper_warning is not None and v >= reading.upper_warning:
            status |= 0x08
        if reading.upper_critical is not None and v >= reading.upper_critical:
            status |= 0x18
        return bytes([entry.to_raw(v), 0xC0, status, 0x80])

    def thresholds_bytes(self, number: int) -> bytes | None:
        """Get Sensor Thresholds response data (IPMI 2.0 section 35.9)."""
        self.current()
        e = self.entry(number)
        if e is None:
            return None
        # Readable mask, then LNC, LCR, LNR, UNC, UCR, UNR (no non-recoverable thresholds here).
        order = ("lnc", "lcr", None, "unc", "ucr", None)
        readable = sum(1 << i for i, key in enumerate(order) if key in e.thresholds)
        return bytes([readable] + [e.to_raw(e.thresholds[k]) if k in e.thresholds else 0 for k in order])


# ======================================================================== SEL
# How machine events become IPMI system event records (IPMI 2.0 section 32.1, and the
# sensor-specific offsets of table 42-3).  Matched on the message text first; sensors the
# SDR does not describe as threshold sensors are its event-only sensors (below).
_EVENT_RULES: list[tuple[re.Pattern[str], int, int]] = [
    (re.compile(r"log area reset|cleared", re.I), 0x10, 0x02),  # Event Logging Disabled: log area reset/cleared
    (re.compile(r"^S0/G0", re.I), 0x22, 0x00),  # ACPI power state: S0/G0 working
    (re.compile(r"^S5/G2", re.I), 0x22, 0x05),  # S5/G2 soft-off
    (re.compile(r"power up", re.I), 0x1D, 0x00),  # System boot/restart initiated: by power up
    (re.compile(r"hard reset", re.I), 0x1D, 0x01),
    (re.compile(r"warm reset", re.I), 0x1D, 0x02),
    (re.compile(r"^installed ", re.I), 0x1F, 0x08),  # OS boot: installation completed
    (re.compile(r"boot completed", re.I), 0x1F, 0x01),  # OS boot: C: (hard disk) boot completed
    (re.compile(r"AC lost|input lost", re.I), 0x08, 0x03),  # Power Supply: input lost (AC/DC)
    (re.compile(r"throttled", re.I), 0x07, 0x0A),  # Processor: automatically throttled
]
_SENSOR_TYPE_CODES = {
    "temperature": 0x01, "voltage": 0x02, "current": 0x03, "fan": 0x04, "processor": 0x07, "power supply": 0x08,
    "system event": 0x12, "event logging disabled": 0x10, "system boot initiated": 0x1D,
    "os boot": 0x1F, "system acpi power state": 0x22,
}
#: The BMC's event-only sensors (Event-Only Sensor Records, IPMI 2.0 table 43-3): number,
#: sensor type, entity, name.  Real BMCs describe the sensors their discrete events come
#: from, so a SEL reader names them ("ACPI State", not "sensor A1h").
EVENT_ONLY_SENSORS: tuple[tuple[int, int, int, str], ...] = (
    (0xA0, 0x10, ENTITY_SYSTEM_BOARD, "Event Log"),
    (0xA1, 0x22, ENTITY_SYSTEM_BOARD, "ACPI State"),
    (0xA2, 0x1D, ENTITY_SYSTEM_BOARD, "System Boot"),
    (0xA3, 0x1F, ENTITY_SYSTEM_BOARD, "OS Boot"),
    (0xA4, 0x12, ENTITY_SYSTEM_BOARD, "System Event"),
    (0xA5, 0x08, ENTITY_POWER_SUPPLY, "PSU2"),
    (0xA6, 0x07, ENTITY_PROCESSOR, "CPU1 Status"),
)
_EVENT_ONLY_BY_NAME = {name: number for number, _, _, name in EVENT_ONLY_SENSORS}
_EVENT_ONLY_SENSOR_NUMBERS = {sensor_type: number for number, sensor_type, _, _ in EVENT_ONLY_SENSORS}
_THRESHOLD_EVENT = re.compile(r"(lower|upper) (non-critical|critical|non-recoverable) going (low|high)", re.I)
_THRESHOLD_OFFSETS = {("lower", "non-critical"): 0, ("lower", "critical"): 2, ("lower", "non-recoverable"): 4,
                      ("upper", "non-critical"): 6, ("upper", "critical"): 8, ("upper", "non-recoverable"): 10}
_READING_AND_THRESHOLD = re.compile(r"reading\s+(-?[\d.]+).*?threshold\s+(-?[\d.]+)", re.I)


def _event_only_record(record_id: int, number: int, sensor_type: int, entity: int, name: str) -> bytes:
    """Event-Only Sensor Record (type 03h), IPMI 2.0 table 43-3; sensor-specific events (6Fh)."""
    raw = name.encode("ascii", "replace")[:16]
    body = bytes([
        BMC_SLAVE_ADDRESS, 0x00, number,  # owner ID, owner LUN, sensor number
        entity, 0x01,  # entity ID, instance 1
        sensor_type, 0x6F,  # sensor type, event/reading type "sensor-specific"
        0x00, 0x00,  # record sharing: one sensor
        0x00, 0x00,  # reserved, OEM
        0xC0 | len(raw),  # ID string, 8-bit ASCII
    ]) + raw
    return _le16(record_id) + bytes([0x51, 0x03, len(body)]) + body


def _sel_record_id(event: SelEvent) -> int:
    """SEL record IDs are 16-bit and 0000h/FFFFh are reserved: fold the machine's counter."""
    return (event.id - 1) % 0xFFFE + 1


def _sel_record(event: SelEvent, sensors: _SensorTable) -> bytes:
    """The 16-byte system event record (type 02h) for one machine event."""
    sensor_type = _SENSOR_TYPE_CODES.get(event.sensor_type.lower(), 0x12)
    reading_type, offset, data2, data3 = 0x6F, 0x00, 0xFF, 0xFF  # sensor-specific, no extra data
    threshold = _THRESHOLD_EVENT.search(event.message)
    if threshold:
        side, level, direction = (g.lower() for g in threshold.groups())
        reading_type = 0x01
        offset = _THRESHOLD_OFFSETS[(side, level)] + (1 if direction == "high" else 0)
    else:
        for pattern, rule_type, rule_offset in _EVENT_RULES:
            if pattern.search(event.message):
                sensor_type, offset = rule_type, rule_offset
                break
    number = sensors.number_of(event.sensor) if threshold else None
    if number is None:
        number = _EVENT_ONLY_BY_NAME.get(event.sensor) or _EVENT_ONLY_SENSOR_NUMBERS.get(sensor_type, 0xAF)
    data1 = offset
    if threshold and (values := _READING_AND_THRESHOLD.search(event.message)):
        entry = sensors.entry(number)
        if entry is not None:
            # Event data 1 bits 7:6 = 01b "trigger reading in byte 2", 5:4 = 01b "threshold in byte 3".
            data1 |= 0x50
            data2, data3 = entry.to_raw(float(values.group(1))), entry.to_raw(float(values.group(2)))
    direction_bit = 0x00 if event.asserted else 0x80
    return (_le16(_sel_record_id(event)) + bytes([0x02]) + _le32(event.timestamp)
            + bytes([BMC_SLAVE_ADDRESS, 0x00, 0x04, sensor_type, number, direction_bit | reading_type,
                     data1, data2, data3]))


# ======================================================================== FRU
def _fru_field(text: str) -> bytes:
    """A type/length-prefixed FRU field, 8-bit ASCII+Latin-1 (Platform Management FRU spec 13)."""
    raw = text.encode("latin-1", "replace")[:63]
    return bytes([0xC0 | len(raw)]) + raw


def _fru_area(prefix: bytes, fields: list[str]) -> bytes:
    """A FRU info area: prefix (version, length, ...), fields, end marker, padding, checksum."""
    body = bytearray(prefix) + b"".join(_fru_field(f) for f in fields) + b"\xc1"
    body += bytes(-(len(body) + 1) % 8)  # the area, checksum included, is a multiple of 8 bytes
    body[1] = (len(body) + 1) // 8
    body.append(_checksum(body))
    return bytes(body)


def _fru_image(machine: Machine) -> bytes:
    """FRU device 0: chassis, board and product info areas describing the machine."""
    spec = machine.spec
    # Board manufacturing date: minutes since 1996-01-01 (fixed, so the image is deterministic).
    minutes = (1_672_531_200 - 820_454_400) // 60  # 2023-01-01
    chassis = _fru_area(bytes([0x01, 0x00, 0x17]), [spec.model, machine.serial_number])  # 17h rack mount
    board = _fru_area(bytes([0x01, 0x00, 0x00]) + minutes.to_bytes(3, "little"),
                      [spec.vendor, f"{spec.model} mainboard", machine.serial_number, f"{spec.model}-MB", ""])
    product = _fru_area(bytes([0x01, 0x00, 0x00]),
                        [spec.vendor, spec.model, spec.model, "", machine.serial_number, machine.name, ""])
    header = bytearray([0x01, 0x00, 1, 1 + len(chassis) // 8, 1 + (len(chassis) + len(board)) // 8, 0x00, 0x00])
    header.append(_checksum(header))
    return bytes(header) + chassis + board + product
