"""Sensor health over the poll session: the SDR's threshold sensors and their states.

:meth:`console.drivers.ipmi.IpmiDriver.health` needs only each sensor's verdict, not its
value, so it is read here on the :class:`~console.drivers.rmcp.RmcpSession` the driver
polls with, in a few round trips, without a pool thread (pyghmi, which decodes values,
units and discrete states for :meth:`~console.drivers.ipmi.IpmiDriver.sensors`, sends
its requests on the same session, from a thread).  The verdict is pyghmi's for threshold sensors: at or past a
non-critical threshold -> warning, critical -> critical, non-recoverable -> critical
(pyghmi's "failed").  Discrete sensors need pyghmi's per-sensor-type state tables:
when the SDR lists any, :func:`read_sensor_refs` says so and the driver asks pyghmi.

Health needs no Get Sensor Thresholds: Get Sensor Reading's reply carries the present
threshold comparison status (byte 3), which is the verdict.  The threshold values only
name the crossed threshold in node detail, and are read by the sensors job.

The SDR walk is the costly part of a first poll (one Get SDR per record); what it yields
is kept per BMC by :mod:`console.drivers.sdrcache`, validated on each new session by
:func:`read_stamp` (Get Device ID and Get SDR Repository Info: two requests instead of
the walk), as freeipmi's sdr-cache does.  BMCs with equal stamps share one walk there,
as pyghmi's ``shared_sdrs`` does; a BMC on a shared summary reads its sensors with
``shared=True``, and a sensor it does not have (:class:`SdrMismatch`) makes it walk its own.

Commands: Get Device ID (IPMI 2.0 section 20.1), Get SDR Repository Info (33.9), Reserve
SDR Repository (33.11; only before a partial read: whole records at offset 0 need no
reservation), Get SDR (33.12; whole records first, 16-byte pieces if the BMC refuses),
Get Sensor Reading (35.14).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from console.errors import DriverError, ProtocolError

from .rmcp import CommandFailed, RmcpSession

__all__ = ["NOT_PRESENT", "SdrMismatch", "SensorRef", "SdrStamp", "SdrSummary", "read_sensor_refs", "read_stamp",
           "threshold_health"]

NETFN_APP, NETFN_SENSOR, NETFN_STORAGE = 0x06, 0x04, 0x0A
BMC_OWNER = 0x20
_CHUNK = 16
_MAX_RECORDS = 1024  # a repository longer than this is a loop in the BMC's linked list
#: Get Sensor Reading completion codes that say "no such sensor here": C9h parameter out
#: of range, CBh requested sensor, data or record not present, CCh invalid data field
NOT_PRESENT = frozenset({0xC9, 0xCB, 0xCC})


@dataclass(frozen=True)
class SensorRef:
    """A threshold sensor on the BMC itself: where to read it."""

    number: int
    lun: int


@dataclass(frozen=True)
class SdrSummary:
    """What health needs from the SDR: the threshold sensors, and whether discrete ones exist."""

    thresholds: tuple[SensorRef, ...]
    has_discrete: bool


@dataclass(frozen=True)
class SdrStamp:
    """What says a BMC's SDR is the one read before (freeipmi's sdr-cache checks the same).

    ``device``: the Get Device ID reply (device ID and revision, firmware revision,
    IPMI version, device support, manufacturer, product, auxiliary firmware revision:
    bytes 1-15), without its "update in progress" bit.  ``repository``: Get SDR Repository
    Info's SDR version, record count, and most recent addition and erase timestamps.
    """

    device: bytes
    repository: bytes


async def read_stamp(session: RmcpSession) -> SdrStamp | None:
    """The BMC's :class:`SdrStamp`, or None when it cannot vouch for its SDR: an update in
    progress (Get Device ID byte 3 bit 7), or no SDR repository information."""
    try:
        device = await session.request(NETFN_APP, 0x01)
    except CommandFailed:
        return None
    if len(device) < 11:
        raise ProtocolError(f"short Get Device ID reply ({len(device)} bytes)")
    if device[2] & 0x80:
        return None  # firmware or SDR update in progress: what we would read may not last
    try:
        info = await session.request(NETFN_STORAGE, 0x20)
    except CommandFailed:
        return None
    if len(info) < 13:
        return None
    return SdrStamp(bytes(device[:15]), bytes(info[:3]) + bytes(info[5:13]))


async def read_sensor_refs(session: RmcpSession) -> SdrSummary:
    """Walk the SDR repository; keep full (01h) and compact (02h) sensor records."""
    reservation: int | None = None  # none until a partial read needs one (see _record)
    refs: list[SensorRef] = []
    discrete = False
    record_id = 0
    for _ in range(_MAX_RECORDS):
        record, next_id, reservation = await _record(session, record_id, reservation)
        if len(record) >= 14 and record[3] in (0x01, 0x02):
            owner, lun, number, reading_type = record[5], record[6] & 0x03, record[7], record[13]
            if owner == BMC_OWNER:
                if reading_type == 0x01:
                    refs.append(SensorRef(number, lun))
                else:
                    discrete = True
        if next_id == 0xFFFF:
            break
        record_id = next_id
    return SdrSummary(tuple(refs), discrete)


class SdrMismatch(DriverError):
    """A sensor of a summary read from another BMC's SDR is not on this BMC (:data:`NOT_PRESENT`)."""


async def threshold_health(session: RmcpSession, refs: tuple[SensorRef, ...], *, shared: bool = False) -> str:
    """The worst threshold state of ``refs`` (ok / warning / critical).

    ``shared``: ``refs`` were read from another BMC with the same stamp, not from this
    one; a sensor this BMC says is not present (:data:`NOT_PRESENT`) then raises
    :class:`SdrMismatch` (walk this BMC's own SDR), where it is otherwise skipped."""
    worst = 0
    for ref in refs:
        try:
            data = await session.request(NETFN_SENSOR, 0x2D, bytes([ref.number]), lun=ref.lun)
        except CommandFailed as exc:  # e.g. CBh: not present (a hot-plug slot): no verdict
            if shared and exc.code in NOT_PRESENT:
                raise SdrMismatch(f"sensor {ref.number:#04x} (LUN {ref.lun}): completion code {exc.code:02X}h") from exc
            continue
        if len(data) < 3 or data[1] & 0x20 or not data[1] & 0x40:
            continue  # reading unavailable, or scanning disabled: pyghmi gives no verdict either
        status = data[2]
        if status & 0x36:  # lower/upper critical or non-recoverable
            return "critical"
        if status & 0x09:
            worst = 1
    return "warning" if worst else "ok"


async def _reserve(session: RmcpSession) -> int:
    try:
        data = await session.request(NETFN_STORAGE, 0x22)
    except CommandFailed:
        return 0  # reservations not supported: whole-record reads need none
    if len(data) < 2:
        raise ProtocolError("short Reserve SDR Repository reply")
    return struct.unpack_from("<H", data)[0]


async def _record(session: RmcpSession, record_id: int,
                  reservation: int | None) -> tuple[bytes, int, int | None]:
    """One SDR record (header included), the next record ID, and the reservation in use
    (None: not reserved yet; 0: the BMC does not do reservations)."""
    try:
        data = await session.request(NETFN_STORAGE, 0x23, struct.pack("<HHBB", reservation or 0, record_id, 0, 0xFF))
        if len(data) >= 7 and len(data) - 2 >= 5 + data[2 + 4]:
            return bytes(data[2:]), struct.unpack_from("<H", data)[0], reservation
    except CommandFailed:
        pass  # "cannot return the number of requested bytes" and friends: read in pieces
    for attempt in range(2):
        try:
            if reservation is None:
                reservation = await _reserve(session)
            head = await session.request(NETFN_STORAGE, 0x23, struct.pack("<HHBB", reservation, record_id, 0, 5))
            if len(head) < 7:
                raise ProtocolError("short SDR record header")
            next_id, record = struct.unpack_from("<H", head)[0], bytearray(head[2:7])
            length = record[4]
            while len(record) < 5 + length:
                piece = await session.request(NETFN_STORAGE, 0x23, struct.pack(
                    "<HHBB", reservation, record_id, len(record), min(_CHUNK, 5 + length - len(record))))
                if len(piece) <= 2:
                    raise ProtocolError("empty SDR record piece")
                record += piece[2:]
            return bytes(record), next_id, reservation
        except CommandFailed as exc:
            if exc.code != 0xC5 or attempt:  # C5h: reservation cancelled -- reserve again, once
                raise
            reservation = await _reserve(session)
    raise AssertionError("unreachable")
