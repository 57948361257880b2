"""Simulated top-of-rack switches that answer SNMP v2c and v3 on loopback.

Each :class:`SwitchSpec` becomes one SNMP agent on its own UDP socket.  The agents
serve, computed at request time from the ports' state and the clock:

* SNMPv2-MIB ``system`` (sysUpTime moves);
* IF-MIB ``ifTable`` and ``ifXTable`` (oper status from each port's ``link``
  callable; octet and packet counters grow while a port is up, Counter32 ones wrap,
  an occasional port has a small error rate);
* LLDP-MIB local system and port tables, and ``lldpRemTable`` rows for up ports
  whose server advertises LLDP;
* BRIDGE-MIB ``dot1dBasePortTable`` and ``dot1dTpFdbTable``, Q-BRIDGE-MIB
  ``dot1qTpFdbTable`` (MACs learned on up ports).

Design: all switches of a lab share one pysnmp ``SnmpEngine`` and one asyncio
dispatcher, each switch on its own transport domain.  An engine costs ~150 ms to
build (pysnmp compiles its MIB modules per engine), so one per switch would make
40 switches take 6 s to start; sharing makes a lab start in a fraction of a
second.  A custom MIB instrumentation controller picks the switch from the
transport a request came in on, checks that the request's community or v3 user
belongs to that switch, and answers from a sorted OID list that is rebuilt only
when the set of rows changes (a link flaps, a MAC moves).  The price of sharing:
every switch reports the same SNMPv3 engine ID, and a v3 user name must have the
same keys on every switch that has it.

Faults (``SnmpLab.fault[name]``, settable at any time): ``"garbage"`` answers every
datagram with undecodable bytes, ``"silent"`` drops every datagram, and
``"nosuchobject"`` hides IF-MIB (GET answers noSuchObject, walks skip it).

OIDs are numeric constants: Debian ships no MIB files and pysnmp cannot resolve
names offline.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import random
import re
import socket
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.error import PySnmpError
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import error as smi_error
from pysnmp.smi.instrum import AbstractMibInstrumController

__all__ = ["FAULTS", "SnmpLab", "SwitchPort", "SwitchSpec"]

OID = tuple[int, ...]

#: fault modes ``SnmpLab.fault`` accepts ("" is healthy)
FAULTS = ("", "garbage", "silent", "nosuchobject")

# --------------------------------------------------------------------------- OIDs
# SNMPv2-MIB system group
SYSTEM: OID = (1, 3, 6, 1, 2, 1, 1)
SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME = SYSTEM + (1,), SYSTEM + (2,), SYSTEM + (3,)
SYS_CONTACT, SYS_NAME, SYS_LOCATION = SYSTEM + (4,), SYSTEM + (5,), SYSTEM + (6,)
SYS_SERVICES = SYSTEM + (7,)
#: our sysObjectID, under enterprise 32473 (RFC 5612: reserved for documentation)
LAB_SWITCH_OBJECT_ID: OID = (1, 3, 6, 1, 4, 1, 32473, 1, 1)

# IF-MIB
INTERFACES: OID = (1, 3, 6, 1, 2, 1, 2)
IF_NUMBER = INTERFACES + (1,)
IF_ENTRY = INTERFACES + (2, 1)
IF_INDEX, IF_DESCR, IF_TYPE, IF_MTU = (IF_ENTRY + (c,) for c in (1, 2, 3, 4))
IF_SPEED, IF_PHYS_ADDRESS, IF_ADMIN_STATUS, IF_OPER_STATUS = (IF_ENTRY + (c,) for c in (5, 6, 7, 8))
IF_LAST_CHANGE, IF_IN_OCTETS, IF_IN_UCAST_PKTS = (IF_ENTRY + (c,) for c in (9, 10, 11))
IF_IN_DISCARDS, IF_IN_ERRORS, IF_IN_UNKNOWN_PROTOS = (IF_ENTRY + (c,) for c in (13, 14, 15))
IF_OUT_OCTETS, IF_OUT_UCAST_PKTS = IF_ENTRY + (16,), IF_ENTRY + (17,)
IF_OUT_DISCARDS, IF_OUT_ERRORS = IF_ENTRY + (19,), IF_ENTRY + (20,)
IF_MIB: OID = (1, 3, 6, 1, 2, 1, 31)
IF_X_ENTRY = IF_MIB + (1, 1, 1)
IF_NAME, IF_IN_MULTICAST_PKTS, IF_IN_BROADCAST_PKTS = (IF_X_ENTRY + (c,) for c in (1, 2, 3))
IF_OUT_MULTICAST_PKTS, IF_OUT_BROADCAST_PKTS = IF_X_ENTRY + (4,), IF_X_ENTRY + (5,)
IF_HC_IN_OCTETS, IF_HC_IN_UCAST_PKTS = IF_X_ENTRY + (6,), IF_X_ENTRY + (7,)
IF_HC_OUT_OCTETS, IF_HC_OUT_UCAST_PKTS = IF_X_ENTRY + (10,), IF_X_ENTRY + (11,)
IF_LINK_UP_DOWN_TRAP_ENABLE, IF_HIGH_SPEED = IF_X_ENTRY + (14,), IF_X_ENTRY + (15,)
IF_PROMISCUOUS_MODE, IF_CONNECTOR_PRESENT = IF_X_ENTRY + (16,), IF_X_ENTRY + (17,)
IF_ALIAS, IF_COUNTER_DISCONTINUITY_TIME = IF_X_ENTRY + (18,), IF_X_ENTRY + (19,)

# LLDP-MIB (IEEE 802.1AB-2005)
LLDP_MIB: OID = (1, 0, 8802, 1, 1, 2)
LLDP_LOC = LLDP_MIB + (1, 3)
LLDP_LOC_CHASSIS_ID_SUBTYPE, LLDP_LOC_CHASSIS_ID = LLDP_LOC + (1,), LLDP_LOC + (2,)
LLDP_LOC_SYS_NAME, LLDP_LOC_SYS_DESC = LLDP_LOC + (3,), LLDP_LOC + (4,)
LLDP_LOC_PORT_ENTRY = LLDP_LOC + (7, 1)
LLDP_LOC_PORT_ID_SUBTYPE, LLDP_LOC_PORT_ID, LLDP_LOC_PORT_DESC = (LLDP_LOC_PORT_ENTRY + (c,) for c in (2, 3, 4))
LLDP_REM_ENTRY = LLDP_MIB + (1, 4, 1, 1)  # index: lldpRemTimeMark, lldpRemLocalPortNum, lldpRemIndex
LLDP_REM_CHASSIS_ID_SUBTYPE, LLDP_REM_CHASSIS_ID = LLDP_REM_ENTRY + (4,), LLDP_REM_ENTRY + (5,)
LLDP_REM_PORT_ID_SUBTYPE, LLDP_REM_PORT_ID = LLDP_REM_ENTRY + (6,), LLDP_REM_ENTRY + (7,)
LLDP_REM_PORT_DESC, LLDP_REM_SYS_NAME = LLDP_REM_ENTRY + (8,), LLDP_REM_ENTRY + (9,)
LLDP_CHASSIS_SUBTYPE_MAC, LLDP_CHASSIS_SUBTYPE_LOCAL = 4, 7
LLDP_PORT_SUBTYPE_MAC, LLDP_PORT_SUBTYPE_IFNAME = 3, 5

# BRIDGE-MIB and Q-BRIDGE-MIB
BRIDGE_MIB: OID = (1, 3, 6, 1, 2, 1, 17)
DOT1D_BASE_BRIDGE_ADDRESS, DOT1D_BASE_NUM_PORTS = BRIDGE_MIB + (1, 1), BRIDGE_MIB + (1, 2)
DOT1D_BASE_TYPE = BRIDGE_MIB + (1, 3)
DOT1D_BASE_PORT_ENTRY = BRIDGE_MIB + (1, 4, 1)
DOT1D_BASE_PORT, DOT1D_BASE_PORT_IF_INDEX = DOT1D_BASE_PORT_ENTRY + (1,), DOT1D_BASE_PORT_ENTRY + (2,)
DOT1D_TP_FDB_ENTRY = BRIDGE_MIB + (4, 3, 1)  # index: MAC (6 sub-ids)
DOT1D_TP_FDB_ADDRESS, DOT1D_TP_FDB_PORT, DOT1D_TP_FDB_STATUS = (DOT1D_TP_FDB_ENTRY + (c,) for c in (1, 2, 3))
DOT1Q_TP_FDB_ENTRY = BRIDGE_MIB + (7, 1, 2, 2, 1)  # index: dot1qFdbId (= VLAN), MAC (6 sub-ids)
DOT1Q_TP_FDB_PORT, DOT1Q_TP_FDB_STATUS = DOT1Q_TP_FDB_ENTRY + (2,), DOT1Q_TP_FDB_ENTRY + (3,)
FDB_STATUS_LEARNED = 3

#: subtrees the "nosuchobject" fault hides
_IF_MIB_SUBTREES = (INTERFACES, IF_MIB)
#: what a "garbage" switch sends back: a BER SEQUENCE claiming 255 bytes it never sends
GARBAGE_REPLY = b"\x30\x81\xff" + b"\xde\xad\xbe\xef" * 4

_COUNTER32 = 1 << 32
_GAUGE32_MAX = (1 << 32) - 1
_AVG_FRAME = 800  # bytes per packet, to derive packet counters from octets


# --------------------------------------------------------------------------- specs
@dataclass
class SwitchPort:
    """One front-panel port of a simulated switch."""

    ifindex: int
    name: str  # "Ethernet1"
    alias: str = ""  # ifAlias, e.g. the node name
    speed_mbps: int = 25000
    admin_up: bool = True
    node_mac: str | None = None  # MAC learned on this port (FDB)
    #: (remote chassis id = MAC, remote port id, remote sysName) the server advertises
    lldp: tuple[str, str, str] | None = None
    #: oper status source (e.g. ``lambda: machine.powered``); None: up when admin up
    link: Callable[[], bool] | None = None
    vlan: int = 100
    #: more MACs learned here, e.g. servers behind an uplink (FDB ambiguity)
    extra_macs: tuple[str, ...] = ()


@dataclass
class SwitchSpec:
    """A simulated switch: where it listens, its credentials and its ports."""

    name: str
    address: str  # must be in 127.0.0.0/8
    port: int  # 0: ephemeral
    community: str  # v2c read community
    v3_user: str | None = None  # SNMPv3 user, authPriv with SHA and AES-128
    v3_auth_key: str | None = None
    v3_priv_key: str | None = None
    sys_descr: str = "Fleet Lab ToR switch, 48x25G + 8x100G"
    ports: list[SwitchPort] = field(default_factory=list)
    chassis_mac: str = ""  # "": derived from the name
    sys_contact: str = "noc@lab.invalid"
    sys_location: str = "lab"


def _mac_bytes(text: str) -> bytes | None:
    """Six octets from ``aa:bb:..``, ``aa-bb-..``, ``aabb.ccdd.eeff`` or 12 hex digits."""
    digits = re.sub(r"[:.\-]", "", text)
    if len(digits) != 12 or not re.fullmatch(r"[0-9a-fA-F]{12}", digits):
        return None
    return bytes.fromhex(digits)


class _FaultMap(dict[str, str]):
    """``switch name -> fault``; rejects unknown modes so a typo is not a healthy switch."""

    def __setitem__(self, name: str, mode: str) -> None:
        if mode not in FAULTS:
            raise ValueError(f"unknown SNMP fault {mode!r}; expected one of {FAULTS}")
        super().__setitem__(name, mode)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for name, mode in dict(*args, **kwargs).items():
            self[name] = mode


# --------------------------------------------------------------------------- one switch
class _PortState:
    """What a port has done since the lab started: link history and traffic."""

    def __init__(self, switch: str, port: SwitchPort, now: float) -> None:
        # Seeded per switch and port so every run shows the same traffic mix.
        rng = random.Random(f"{switch}/{port.ifindex}")
        self.util_in = rng.uniform(0.02, 0.3)
        self.util_out = rng.uniform(0.02, 0.3)
        # About one port in eight has a marginal optic or cable.
        self.error_rate = rng.uniform(2e-6, 1e-5) if rng.random() < 0.125 else 0.0
        # Real counters rarely start at zero; a large base makes Counter32 wrap early.
        self.base_in = rng.randrange(1 << 40)
        self.base_out = rng.randrange(1 << 40)
        self.bytes_in = 0.0  # carried since the lab started
        self.bytes_out = 0.0
        self.t = now
        self.up = False
        self.last_change = 0  # sysUpTime ticks at the last oper status change


class _SwitchAgent:
    """The MIB view of one switch: rows rebuilt on shape changes, values on demand."""

    def __init__(self, spec: SwitchSpec, clock: Callable[[], float], faults: _FaultMap) -> None:
        self.spec = spec
        self._clock = clock
        self._faults = faults
        self.started = clock()
        self.now = self.started
        mac = _mac_bytes(spec.chassis_mac) if spec.chassis_mac else None
        # Locally administered (02:...) so a derived MAC never collides with a vendor's.
        self.chassis_mac = mac or b"\x02" + hashlib.sha1(spec.name.encode()).digest()[:5]
        self.v2c_security_name = ""  # set by SnmpLab when it configures the engine
        self._states: dict[int, _PortState] = {}
        self._shape: tuple | None = None
        self._oids: list[OID] = []
        self._getters: list[Callable[[], Any]] = []
        self._index: dict[OID, int] = {}
        self._objects: set[OID] = set()
        self._last_request: object = None

    # -- state -----------------------------------------------------------------
    @property
    def fault(self) -> str:
        """The switch's current fault mode ("" when healthy)."""
        return self._faults.get(self.spec.name, "")

    def ticks(self, t: float | None = None) -> int:
        """sysUpTime (hundredths of a second) at ``t`` (default: the last refresh)."""
        return int(((self.now if t is None else t) - self.started) * 100) % _COUNTER32

    def refresh(self, request: object = None) -> None:
        """Sample every port's link and accrue traffic up to now.

        ``request`` identifies the SNMP message being answered: a GETBULK calls us
        once per repetition, and one sample per message gives the manager a
        consistent snapshot (as a real agent's would be) at a fraction of the cost.
        """
        if request is not None and request is self._last_request:
            return
        self._last_request = request
        self.sample()
        shape = self._shape_key()
        if shape != self._shape:
            self._rebuild()
            self._shape = shape

    def sample(self) -> None:
        """Read every port's link and accrue its traffic up to now (no table rebuild)."""
        self.now = now = self._clock()
        for port in self.spec.ports:
            state = self._states.get(port.ifindex)
            if state is None:
                state = self._states[port.ifindex] = _PortState(self.spec.name, port, now)
                state.up = self._oper_up(port)
                continue
            up = self._oper_up(port)
            dt = max(0.0, now - state.t)
            state.t = now
            # Only time the port was up at both samples counts: a down link carries nothing.
            if up and state.up:
                rate = port.speed_mbps * 125_000  # bytes per second at line rate
                state.bytes_in += rate * state.util_in * dt
                state.bytes_out += rate * state.util_out * dt
            if up != state.up:
                state.up = up
                state.last_change = self.ticks(now)

    @staticmethod
    def _oper_up(port: SwitchPort) -> bool:
        if not port.admin_up:
            return False
        if port.link is None:
            return True
        try:
            return bool(port.link())
        except Exception:  # a broken link source reads as a dead link, not a dead agent
            return False

    def _shape_key(self) -> tuple:
        """Everything that decides which OIDs exist (values are read live)."""
        return tuple(
            (p.ifindex, self._states[p.ifindex].up, self._states[p.ifindex].last_change,
             p.node_mac, p.extra_macs, p.lldp, p.vlan)
            for p in self.spec.ports
        )

    # -- the OID table ---------------------------------------------------------
    def _rebuild(self) -> None:
        rows: dict[OID, Callable[[], Any]] = {}
        objects: set[OID] = set()

        def scalar(oid: OID, fn: Callable[[], Any]) -> None:
            objects.add(oid)
            rows[oid + (0,)] = fn

        def column(oid: OID, index: OID, fn: Callable[..., Any], *args: Any) -> None:
            objects.add(oid)
            rows.setdefault(oid + index, functools.partial(fn, *args))

        spec, octets = self.spec, rfc1902.OctetString
        scalar(SYS_DESCR, lambda: octets(spec.sys_descr))
        scalar(SYS_OBJECT_ID, lambda: rfc1902.ObjectIdentifier(LAB_SWITCH_OBJECT_ID))
        scalar(SYS_UPTIME, lambda: rfc1902.TimeTicks(self.ticks()))
        scalar(SYS_CONTACT, lambda: octets(spec.sys_contact))
        scalar(SYS_NAME, lambda: octets(spec.name))
        scalar(SYS_LOCATION, lambda: octets(spec.sys_location))
        scalar(SYS_SERVICES, lambda: rfc1902.Integer32(6))  # layers 2 and 3
        scalar(IF_NUMBER, lambda: rfc1902.Integer32(len(spec.ports)))
        scalar(LLDP_LOC_CHASSIS_ID_SUBTYPE, lambda: rfc1902.Integer32(LLDP_CHASSIS_SUBTYPE_MAC))
        scalar(LLDP_LOC_CHASSIS_ID, lambda: octets(self.chassis_mac))
        scalar(LLDP_LOC_SYS_NAME, lambda: octets(spec.name))
        scalar(LLDP_LOC_SYS_DESC, lambda: octets(spec.sys_descr))
        scalar(DOT1D_BASE_BRIDGE_ADDRESS, lambda: octets(self.chassis_mac))
        scalar(DOT1D_BASE_NUM_PORTS, lambda: rfc1902.Integer32(len(spec.ports)))
        scalar(DOT1D_BASE_TYPE, lambda: rfc1902.Integer32(2))  # transparent-only

        fdb: dict[tuple[int, bytes], int] = {}  # (vlan, mac) -> bridge port; first port wins
        ports = sorted(spec.ports, key=lambda p: p.ifindex)
        for bridge_port, port in enumerate(ports, start=1):
            state, idx = self._states[port.ifindex], (port.ifindex,)
            for oid, fn in _IF_COLUMNS:
                column(oid, idx, fn, self, port, state)
            column(LLDP_LOC_PORT_ID_SUBTYPE, idx, lambda: rfc1902.Integer32(LLDP_PORT_SUBTYPE_IFNAME))
            column(LLDP_LOC_PORT_ID, idx, lambda p: octets(p.name), port)
            column(LLDP_LOC_PORT_DESC, idx, lambda p: octets(p.alias), port)
            column(DOT1D_BASE_PORT, (bridge_port,), rfc1902.Integer32, bridge_port)
            column(DOT1D_BASE_PORT_IF_INDEX, (bridge_port,), rfc1902.Integer32, port.ifindex)
            if not state.up:
                continue
            if port.lldp:
                # lldpRemTimeMark: sysUpTime when the neighbour appeared (link up).
                rem_idx = (state.last_change, port.ifindex, 1)
                for oid, value in _lldp_remote_columns(port.lldp):
                    column(oid, rem_idx, lambda v: v, value)
            for text in ((port.node_mac,) if port.node_mac else ()) + tuple(port.extra_macs):
                mac = _mac_bytes(text)
                if mac is not None:
                    fdb.setdefault((port.vlan, mac), bridge_port)
        for (vlan, mac), bridge_port in fdb.items():
            column(DOT1Q_TP_FDB_PORT, (vlan, *mac), rfc1902.Integer32, bridge_port)
            column(DOT1Q_TP_FDB_STATUS, (vlan, *mac), rfc1902.Integer32, FDB_STATUS_LEARNED)
            # dot1dTpFdbTable has no VLAN in its index: a MAC seen in two VLANs shows once.
            column(DOT1D_TP_FDB_ADDRESS, tuple(mac), octets, mac)
            column(DOT1D_TP_FDB_PORT, tuple(mac), rfc1902.Integer32, bridge_port)
            column(DOT1D_TP_FDB_STATUS, tuple(mac), rfc1902.Integer32, FDB_STATUS_LEARNED)

        self._oids = sorted(rows)
        self._getters = [rows[oid] for oid in self._oids]
        self._index = {oid: i for i, oid in enumerate(self._oids)}
        self._objects = objects

    def _hidden(self, oid: OID) -> bool:
        return self.fault == "nosuchobject" and any(oid[: len(t)] == t for t in _IF_MIB_SUBTREES)

    def get(self, oid: OID) -> Any:
        """The value at ``oid``, or noSuchObject / noSuchInstance as SNMPv2 says."""
        i = self._index.get(oid)
        if i is not None and not self._hidden(oid):
            return self._getters[i]()
        if not self._hidden(oid) and any(oid[:n] in self._objects for n in range(len(oid))):
            return rfc1905.noSuchInstance
        return rfc1905.noSuchObject

    def get_next(self, oid: OID) -> tuple[OID, Any] | None:
        """The first OID after ``oid`` with its value; None at the end of the MIB view."""
        i = bisect_right(self._oids, oid)
        while i < len(self._oids) and self._hidden(self._oids[i]):
            i += 1
        if i == len(self._oids):
            return None
        return self._oids[i], self._getters[i]()

    def check_access(self, security_model: int, security_name: bytes, security_level: int) -> None:
        """Let through only this switch's own community or v3 user.

        Raising plain ``PySnmpError`` makes pysnmp's command responder drop the
        request without an answer: a community valid on another switch of the lab
        must look exactly like a wrong one.  SNMPv1 is not served (a ToR switch is
        polled with v2c or v3, and v1 cannot carry Counter64).  A v3 request below
        authPriv never gets here: pysnmp's USM already answers it with an
        "unsupported security level" report.
        """
        spec = self.spec
        if security_model == 2 and security_name == self.v2c_security_name.encode():
            return
        if security_model == 3 and spec.v3_user and security_name == spec.v3_user.encode() \
                and security_level == 3:
            return
        raise PySnmpError(f"{spec.name}: request with foreign credentials dropped")


def _counter32(v: float) -> rfc1902.Counter32:
    return rfc1902.Counter32(int(v) % _COUNTER32)


def _port_counters(port: SwitchPort, s: _PortState) -> dict[str, int]:
    """Every traffic counter of a port, all derived from the octets it carried."""
    in_octets, out_octets = s.base_in + int(s.bytes_in), s.base_out + int(s.bytes_out)
    in_pkts, out_pkts = in_octets // _AVG_FRAME, out_octets // _AVG_FRAME
    carried_in = int(s.bytes_in) // _AVG_FRAME
    carried_out = int(s.bytes_out) // _AVG_FRAME
    return {
        "in_octets": in_octets, "out_octets": out_octets,
        "in_mcast": in_pkts // 200, "in_bcast": in_pkts // 1000,
        "out_mcast": out_pkts // 200, "out_bcast": out_pkts // 1000,
        "in_ucast": in_pkts - in_pkts // 200 - in_pkts // 1000,
        "out_ucast": out_pkts - out_pkts // 200 - out_pkts // 1000,
        "in_errors": int(carried_in * s.error_rate), "out_errors": int(carried_out * s.error_rate / 4),
        "in_discards": carried_in // 50_000_000, "out_discards": carried_out // 20_000_000,
    }


def _port_mac(agent: _SwitchAgent, port: SwitchPort) -> bytes:
    return ((int.from_bytes(agent.chassis_mac, "big") + port.ifindex) % (1 << 48)).to_bytes(6, "big")


def _c(key: str, kind: Callable[[int], Any]) -> Callable[[_SwitchAgent, SwitchPort, _PortState], Any]:
    return lambda a, p, s: kind(_port_counters(p, s)[key])


_I = rfc1902.Integer32
_C64 = rfc1902.Counter64
#: (column, fn(agent, port, state)) for the per-port IF-MIB rows
_IF_COLUMNS: list[tuple[OID, Callable[[_SwitchAgent, SwitchPort, _PortState], Any]]] = [
    (IF_INDEX, lambda a, p, s: _I(p.ifindex)),
    (IF_DESCR, lambda a, p, s: rfc1902.OctetString(p.name)),
    (IF_TYPE, lambda a, p, s: _I(6)),  # ethernetCsmacd
    (IF_MTU, lambda a, p, s: _I(9216)),
    (IF_SPEED, lambda a, p, s: rfc1902.Gauge32(min(p.speed_mbps * 1_000_000, _GAUGE32_MAX))),
    (IF_PHYS_ADDRESS, lambda a, p, s: rfc1902.OctetString(_port_mac(a, p))),
    (IF_ADMIN_STATUS, lambda a, p, s: _I(1 if p.admin_up else 2)),
    (IF_OPER_STATUS, lambda a, p, s: _I(1 if s.up else 2)),
    (IF_LAST_CHANGE, lambda a, p, s: rfc1902.TimeTicks(s.last_change)),
    (IF_IN_OCTETS, _c("in_octets", _counter32)),
    (IF_IN_UCAST_PKTS, _c("in_ucast", _counter32)),
    (IF_IN_DISCARDS, _c("in_discards", _counter32)),
    (IF_IN_ERRORS, _c("in_errors", _counter32)),
    (IF_IN_UNKNOWN_PROTOS, lambda a, p, s: rfc1902.Counter32(0)),
    (IF_OUT_OCTETS, _c("out_octets", _counter32)),
    (IF_OUT_UCAST_PKTS, _c("out_ucast", _counter32)),
    (IF_OUT_DISCARDS, _c("out_discards", _counter32)),
    (IF_OUT_ERRORS, _c("out_errors", _counter32)),
    (IF_NAME, lambda a, p, s: rfc1902.OctetString(p.name)),
    (IF_IN_MULTICAST_PKTS, _c("in_mcast", _counter32)),
    (IF_IN_BROADCAST_PKTS, _c("in_bcast", _counter32)),
    (IF_OUT_MULTICAST_PKTS, _c("out_mcast", _counter32)),
    (IF_OUT_BROADCAST_PKTS, _c("out_bcast", _counter32)),
    (IF_HC_IN_OCTETS, _c("in_octets", _C64)),
    (IF_HC_IN_UCAST_PKTS, _c("in_ucast", _C64)),
    (IF_HC_OUT_OCTETS, _c("out_octets", _C64)),
    (IF_HC_OUT_UCAST_PKTS, _c("out_ucast", _C64)),
    (IF_LINK_UP_DOWN_TRAP_ENABLE, lambda a, p, s: _I(1)),
    (IF_HIGH_SPEED, lambda a, p, s: rfc1902.Gauge32(p.speed_mbps)),
    (IF_PROMISCUOUS_MODE, lambda a, p, s: _I(2)),  # false
    (IF_CONNECTOR_PRESENT, lambda a, p, s: _I(1)),  # true
    (IF_ALIAS, lambda a, p, s: rfc1902.OctetString(p.alias)),
    (IF_COUNTER_DISCONTINUITY_TIME, lambda a, p, s: rfc1902.TimeTicks(0)),
]


def _lldp_remote_columns(lldp: tuple[str, str, str]) -> list[tuple[OID, Any]]:
    """lldpRemTable values for what a server advertises.

    Some servers (lldpd's default) send their MAC as the port ID: a MAC-shaped port
    ID is sent as subtype macAddress with six octets, anything else as interfaceName.
    """
    chassis, port_id, sys_name = lldp
    chassis_mac, port_mac = _mac_bytes(chassis), _mac_bytes(port_id)
    octets, integer = rfc1902.OctetString, rfc1902.Integer32
    return [
        (LLDP_REM_CHASSIS_ID_SUBTYPE,
         integer(LLDP_CHASSIS_SUBTYPE_MAC if chassis_mac else LLDP_CHASSIS_SUBTYPE_LOCAL)),
        (LLDP_REM_CHASSIS_ID, octets(chassis_mac or chassis.encode())),
        (LLDP_REM_PORT_ID_SUBTYPE, integer(LLDP_PORT_SUBTYPE_MAC if port_mac else LLDP_PORT_SUBTYPE_IFNAME)),
        (LLDP_REM_PORT_ID, octets(port_mac or port_id.encode())),
        (LLDP_REM_PORT_DESC, octets(port_id)),
        (LLDP_REM_SYS_NAME, octets(sys_name)),
    ]


# --------------------------------------------------------------------------- pysnmp glue
class _LabInstrumentation(AbstractMibInstrumController):
    """pysnmp's view of the lab: routes each request to the switch it was sent to."""

    def __init__(self, agents: dict[OID, _SwitchAgent]) -> None:
        self._agents = agents  # transport domain -> switch

    def _agent(self, context: dict[str, Any]) -> _SwitchAgent:
        request = context["snmpEngine"].observer.get_execution_context("rfc3412.receiveMessage:request")
        agent = self._agents.get(tuple(request["transportDomain"]))
        if agent is None:
            raise PySnmpError("request on a transport with no switch")  # dropped
        agent.check_access(int(request["securityModel"]), bytes(request["securityName"]),
                           int(request["securityLevel"]))
        agent.refresh(request)
        return agent

    def read_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        """GET: one value (or noSuchObject/noSuchInstance) per requested OID."""
        agent = self._agent(context)
        return [(name, agent.get(tuple(name))) for name, _ in var_binds]

    def read_next_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        """GETNEXT (and each GETBULK repetition): the successor of every requested OID."""
        agent = self._agent(context)
        out = []
        for name, _ in var_binds:
            found = agent.get_next(tuple(name))
            out.append((name, rfc1905.endOfMibView) if found is None
                       else (rfc1902.ObjectName(found[0]), found[1]))
        return out

    def write_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        """SET: the lab's switches are read-only, as a read community would see them."""
        self._agent(context)
        raise smi_error.NoAccessError(idx=0)


class _SwitchTransport(udp.UdpAsyncioTransport):
    """pysnmp's UDP transport with the switch's transport-level faults in front."""

    def __init__(self, agent: _SwitchAgent, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._switch = agent
        self.ready: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.DatagramTransport) -> None:
        super().connection_made(transport)
        if not self.ready.done():
            self.ready.set_result(None)

    def datagram_received(self, datagram: bytes, address: Any) -> None:
        fault = self._switch.fault
        if fault == "silent":
            return
        if fault == "garbage":
            if self.transport is not None:
                self.transport.sendto(GARBAGE_REPLY, address)
            return
        super().datagram_received(datagram, address)


class SnmpLab:
    """A set of simulated switches served by one in-process pysnmp engine.

    Call :meth:`add` for every switch, then ``await start()`` on the loop that will
    serve them, and ``await stop()`` when done.  ``fault[name]`` changes a switch's
    behaviour at any time (see :data:`FAULTS`).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fault = _FaultMap()
        self._clock = clock
        self._specs: list[SwitchSpec] = []
        self._agents: dict[OID, _SwitchAgent] = {}
        self._engine: engine.SnmpEngine | None = None
        self._sockets: list[socket.socket] = []

    def add(self, spec: SwitchSpec) -> None:
        """Register a switch; it answers once :meth:`start` has run."""
        if self._engine is not None:
            raise RuntimeError("add switches before start()")
        if any(s.name == spec.name for s in self._specs):
            raise ValueError(f"duplicate switch name {spec.name!r}")
        if ipaddress.ip_address(spec.address) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"{spec.name}: the lab listens on 127.0.0.0/8 only, not {spec.address}")
        v3 = (spec.v3_user, spec.v3_auth_key, spec.v3_priv_key)
        if any(v3) and not all(v3):
            raise ValueError(f"{spec.name}: SNMPv3 needs a user, an auth key and a priv key")
        if any(len(k) < 8 for k in v3[1:] if k):
            raise ValueError(f"{spec.name}: SNMPv3 keys need at least 8 characters (RFC 3414)")
        ifindexes = [p.ifindex for p in spec.ports]
        if len(set(ifindexes)) != len(ifindexes) or any(i <= 0 for i in ifindexes):
            raise ValueError(f"{spec.name}: ifindexes must be unique and positive")
        for other in self._specs:
            if spec.v3_user and other.v3_user == spec.v3_user and v3 != (
                    other.v3_user, other.v3_auth_key, other.v3_priv_key):
                raise ValueError(f"SNMPv3 user {spec.v3_user!r} has different keys on "
                                 f"{other.name} and {spec.name}; the lab's switches share one engine")
        self._specs.append(spec)
        self.fault[spec.name] = ""

    async def start(self) -> dict[str, int]:
        """Bind every switch's socket and start answering; returns {name: UDP port}."""
        if self._engine is not None:
            raise RuntimeError("SnmpLab already started")
        loop = asyncio.get_running_loop()
        agents = [_SwitchAgent(spec, self._clock, self.fault) for spec in self._specs]
        # Building the engine is ~150 ms of CPU (MIB modules compile): off the loop.
        snmp_engine = await asyncio.to_thread(self._build_engine, agents)
        dispatcher = AsyncioDispatcher(loop=loop)
        snmp_engine.register_transport_dispatcher(dispatcher)
        self._engine = snmp_engine
        ports: dict[str, int] = {}
        transports = []
        try:
            for number, agent in enumerate(agents):
                # Bind ourselves: port 0 needs the real port back, and a bind error
                # should surface here rather than inside an asyncio future.
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._sockets.append(sock)
                sock.bind((agent.spec.address, agent.spec.port))
                sock.setblocking(False)
                ports[agent.spec.name] = sock.getsockname()[1]
                domain = udp.DOMAIN_NAME + (number,)  # one domain per switch: how we tell them apart
                transport = _SwitchTransport(agent, loop)
                config.add_transport(snmp_engine, domain, transport.open_server_mode(sock=sock))
                self._agents[domain] = agent
                transports.append(transport)
                # Start the port history now; the OID table is built on the first
                # request (~15 ms for 40 ports), so many switches start fast.
                agent.sample()
            await asyncio.gather(*(t.ready for t in transports))
        except BaseException:
            await self.stop()
            raise
        return ports

    def _build_engine(self, agents: list[_SwitchAgent]) -> engine.SnmpEngine:
        snmp_engine = engine.SnmpEngine()
        # One community table row per distinct community string: pysnmp maps a
        # community to the first matching row, so duplicates would be ambiguous.
        communities: dict[str, str] = {}
        users: set[str] = set()
        for agent in agents:
            spec = agent.spec
            if spec.community not in communities:
                communities[spec.community] = f"lab-community-{len(communities) + 1}"
                config.add_v1_system(snmp_engine, communities[spec.community], spec.community)
            agent.v2c_security_name = communities[spec.community]
            if spec.v3_user and spec.v3_user not in users:
                users.add(spec.v3_user)
                config.add_v3_user(
                    snmp_engine, spec.v3_user,
                    config.USM_AUTH_HMAC96_SHA, spec.v3_auth_key,
                    config.USM_PRIV_CFB128_AES, spec.v3_priv_key,
                )
        # No VACM rows: access control is per switch, in _SwitchAgent.check_access.
        snmp_context = context.SnmpContext(snmp_engine)
        snmp_context.unregister_context_name(b"")
        snmp_context.register_context_name(b"", _LabInstrumentation(self._agents))
        for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder,
                          cmdrsp.BulkCommandResponder, cmdrsp.SetCommandResponder):
            responder(snmp_engine, snmp_context)
        return snmp_engine

    async def stop(self) -> None:
        """Close every socket and the dispatcher; safe to call more than once."""
        snmp_engine, self._engine = self._engine, None
        if snmp_engine is not None and snmp_engine.transport_dispatcher is not None:
            snmp_engine.close_dispatcher()  # closes each transport and the timer task
        for sock in self._sockets:
            sock.close()  # the transports own them once started; this covers a failed start
        self._sockets.clear()
        self._agents.clear()
        # Let asyncio run the transports' connection_lost and the timer's cancellation.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
