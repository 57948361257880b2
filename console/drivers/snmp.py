"""SNMP driver: one :class:`SnmpClient` per switch, reading IF-MIB, LLDP-MIB and the FDB.

How it talks (see ``docs/protocols.md``, section SNMP):

- pysnmp 7's asyncio high-level API with numeric OIDs only (Debian ships no MIB files
  and pysnmp cannot resolve ``IF-MIB`` names offline) and ``lookupMib=False`` on replies.
- One shared ``SnmpEngine`` per event loop (:func:`shared_engine`): the first request on a
  new engine costs ~250 ms, and pysnmp's dispatcher and sockets belong to the loop that
  created them.  :func:`close_shared_engine` closes it at shutdown; a client's
  :meth:`SnmpClient.close` never does.
- Tables are read by our own column-parallel GETBULK walk (:meth:`SnmpClient._walk`):
  every column of a table goes in one request, and each column stops as soon as its
  reply leaves the column's subtree (what ``lexicographicMode=False`` does in
  pysnmp's ``bulk_walk_cmd``, for one column at a time).
- Credentials are resolved on the first request (``secrets.resolve(ref).get()``).

Errors: pysnmp *returns* ``errorIndication`` / ``errorStatus`` instead of raising; both,
and the exceptions it does raise, are mapped in one place, :meth:`SnmpClient._request`:

- no reply before the timeout (``RequestTimedOut``) -> :class:`~console.errors.Timeout`,
  unless datagrams did come back from the switch but none decoded: then
  :class:`~console.errors.ProtocolError` ("undecodable replies");
- USM failures (unknown user, wrong digest, decryption error, unknown community...)
  -> :class:`~console.errors.AuthFailed`;
- a non-zero ``errorStatus``, ``noSuchObject``/``noSuchInstance`` on a GET, a reply we
  cannot use, anything else -> :class:`~console.errors.ProtocolError`.

Messages name the switch and the OID, never the community or a key.

A v2c switch that does not know our community does not answer at all (RFC 3584): a
wrong community is a :class:`Timeout`, not :class:`AuthFailed`.  With v3, pysnmp 7.1.30
gets a Report PDU for a wrong auth key (``WrongDigest``) or priv key (``DecryptionError``)
and we raise :class:`AuthFailed`; an agent that drops such requests silently gives
:class:`Timeout`.

Pure helpers for the poller and screens: :func:`rates` (counter deltas per second,
Counter32 wrap and resets handled) and :func:`discover_ports` (where each node's MAC
is seen, from the FDB and LLDP, with ambiguity flagged).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import weakref
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pyasn1.error import PyAsn1Error
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_MD5,
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC192_SHA256,
    USM_PRIV_CBC56_DES,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB256_AES,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
)
from pysnmp.proto import errind, rfc1905
from pysnmp.proto.rfc1902 import ObjectName

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout
from console.secrets import Secrets
from inventory.model import Switch

from .route import source_address

__all__ = [
    "Evidence",
    "FdbEntry",
    "Interface",
    "LldpNeighbour",
    "PortMap",
    "SnmpClient",
    "SwitchSystem",
    "close_shared_engine",
    "discover_ports",
    "mac_index",
    "rates",
    "shared_engine",
    "sightings",
]

OID = tuple[int, ...]

# --------------------------------------------------------------------------- OIDs
# Numeric on purpose (no MIB files offline); the same values as console.lab.snmp_agent.
SYS_DESCR: OID = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID: OID = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME: OID = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME: OID = (1, 3, 6, 1, 2, 1, 1, 5, 0)

_IF_ENTRY: OID = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IF_DESCR, IF_SPEED, IF_PHYS_ADDRESS = _IF_ENTRY + (2,), _IF_ENTRY + (5,), _IF_ENTRY + (6,)
IF_ADMIN_STATUS, IF_OPER_STATUS = _IF_ENTRY + (7,), _IF_ENTRY + (8,)
IF_IN_OCTETS, IF_IN_DISCARDS, IF_IN_ERRORS = _IF_ENTRY + (10,), _IF_ENTRY + (13,), _IF_ENTRY + (14,)
IF_OUT_OCTETS, IF_OUT_DISCARDS, IF_OUT_ERRORS = _IF_ENTRY + (16,), _IF_ENTRY + (19,), _IF_ENTRY + (20,)
_IF_X_ENTRY: OID = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
IF_NAME, IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS = _IF_X_ENTRY + (1,), _IF_X_ENTRY + (6,), _IF_X_ENTRY + (10,)
IF_HIGH_SPEED, IF_ALIAS = _IF_X_ENTRY + (15,), _IF_X_ENTRY + (18,)

_LLDP_LOC_PORT_ENTRY: OID = (1, 0, 8802, 1, 1, 2, 1, 3, 7, 1)
LLDP_LOC_PORT_ID = _LLDP_LOC_PORT_ENTRY + (3,)
_LLDP_REM_ENTRY: OID = (1, 0, 8802, 1, 1, 2, 1, 4, 1, 1)  # index: timeMark, localPortNum, remIndex
LLDP_REM_CHASSIS_ID_SUBTYPE, LLDP_REM_CHASSIS_ID = _LLDP_REM_ENTRY + (4,), _LLDP_REM_ENTRY + (5,)
LLDP_REM_PORT_ID_SUBTYPE, LLDP_REM_PORT_ID = _LLDP_REM_ENTRY + (6,), _LLDP_REM_ENTRY + (7,)
LLDP_REM_PORT_DESC, LLDP_REM_SYS_NAME = _LLDP_REM_ENTRY + (8,), _LLDP_REM_ENTRY + (9,)
_LLDP_CHASSIS_SUBTYPE_MAC, _LLDP_PORT_SUBTYPE_MAC = 4, 3

DOT1D_BASE_PORT_IF_INDEX: OID = (1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2)  # index: bridge port
DOT1D_TP_FDB_PORT: OID = (1, 3, 6, 1, 2, 1, 17, 4, 3, 1, 2)  # index: MAC
DOT1D_TP_FDB_STATUS: OID = (1, 3, 6, 1, 2, 1, 17, 4, 3, 1, 3)
DOT1Q_TP_FDB_PORT: OID = (1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 2)  # index: FDB id (VLAN), MAC
DOT1Q_TP_FDB_STATUS: OID = (1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 3)
#: dot1dTpFdbStatus / dot1qTpFdbStatus values that are not a host behind a port
_FDB_NOT_A_HOST = {2, 4}  # invalid, self

#: varbinds asked for per GETBULK (columns x repetitions)
_BULK_BUDGET = 100

_AUTH_PROTOCOLS = {"sha": USM_AUTH_HMAC96_SHA, "sha256": USM_AUTH_HMAC192_SHA256, "md5": USM_AUTH_HMAC96_MD5}
#: aes256 is the Reeder key extension (Cisco's); net-snmp's "AES-256" uses Blumenthal's.
_PRIV_PROTOCOLS = {"aes": USM_PRIV_CFB128_AES, "aes256": USM_PRIV_CFB256_AES, "des": USM_PRIV_CBC56_DES}

#: errorIndications that mean "the agent refused our credentials"
_AUTH_INDICATIONS = (
    errind.UnknownUserName, errind.WrongDigest, errind.AuthenticationFailure, errind.AuthenticationError,
    errind.DecryptionError, errind.UnknownSecurityName, errind.UnsupportedSecurityLevel,
    errind.UnknownCommunityName, errind.UnsupportedAuthProtocol, errind.UnsupportedPrivProtocol,
    errind.NoAuthentication, errind.NoEncryption,
)


# --------------------------------------------------------------------------- values
@dataclass(frozen=True)
class SwitchSystem:
    """SNMPv2-MIB ``system``: what the switch says it is."""

    descr: str
    name: str
    uptime_s: float
    object_id: str  # dotted sysObjectID


@dataclass(frozen=True)
class Interface:
    """One ifTable + ifXTable row.

    Octet counters are the 64-bit HC ones when the switch has them (``counters_64``),
    else the Counter32 ones; error and discard counters are always Counter32.
    """

    ifindex: int
    name: str  # ifName, else ifDescr
    alias: str
    admin_up: bool
    oper_up: bool
    speed_mbps: int
    in_octets: int
    out_octets: int
    in_errors: int
    out_errors: int
    in_discards: int
    out_discards: int
    mac: str | None
    counters_64: bool = True


@dataclass(frozen=True)
class LldpNeighbour:
    """A device the switch hears on one of its ports (lldpRemTable)."""

    local_port: str  # our ifName
    chassis_id: str  # normalised MAC when subtype macAddress
    port_id: str  # normalised MAC when it looks like one
    port_descr: str
    sys_name: str


@dataclass(frozen=True)
class FdbEntry:
    """A MAC the switch learned on a port (Q-BRIDGE, else BRIDGE FDB)."""

    mac: str
    vlan: int | None  # None from dot1dTpFdbTable, which has no VLAN
    port: str  # ifName ("" when the bridge port maps to no known interface)
    ifindex: int | None


@dataclass(frozen=True)
class Evidence:
    """One observation of where a node is cabled: evidence, not truth."""

    port: str
    source: Literal["fdb", "lldp"]
    ambiguous: bool


# --------------------------------------------------------------------------- engine
_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SnmpEngine] = weakref.WeakKeyDictionary()


def shared_engine() -> SnmpEngine:
    """The process's SnmpEngine for the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None:
        engine = _engines[loop] = SnmpEngine()
    return engine


def close_shared_engine() -> None:
    """Close the shared engine's dispatcher and sockets (at shutdown; safe to repeat)."""
    for loop, engine in list(_engines.items()):
        if not loop.is_closed() and engine.transport_dispatcher is not None:
            engine.close_dispatcher()
        _engines.pop(loop, None)


class _ListeningTransport(udp.UdpAsyncioTransport):
    """pysnmp's client UDP transport, noting when each peer last sent us anything.

    pysnmp drops a datagram it cannot decode without a word, so a switch answering
    garbage would look like a dead one; this tells the two apart.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard: dict[tuple[str, int], float] = {}

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:  # noqa: N803 (pysnmp's name)
        self.heard[tuple(transportAddress[:2])] = time.monotonic()
        super().datagram_received(datagram, transportAddress)


class _Target(UdpTransportTarget):
    PROTO_TRANSPORT = _ListeningTransport


#: The transport domain per local source address: pysnmp opens one socket per domain and
#: engine, bound to the first target's local address, so each source address gets a
#: domain of its own (``udp.DOMAIN_NAME + (n,)``, as pysnmp's examples do for a second
#: interface).  Never the wildcard: the socket does not listen on every interface.
_domains: dict[str, tuple[int, ...]] = {}


def _domain(source: str) -> tuple[int, ...]:
    if source not in _domains:
        _domains[source] = udp.DOMAIN_NAME + (len(_domains),) if _domains else udp.DOMAIN_NAME
    return _domains[source]


# --------------------------------------------------------------------------- the client
class SnmpClient:
    """Reads one switch over SNMP v2c or v3 (authPriv).

    ``engine`` defaults to :func:`shared_engine`; ``timeout`` is per attempt, and a
    request is sent ``1 + retries`` times before it is a :class:`Timeout`.
    """

    def __init__(
        self,
        switch: Switch,
        secrets: Secrets,
        *,
        engine: SnmpEngine | None = None,
        timeout: float = 2.0,
        retries: int = 1,
    ) -> None:
        self.switch = switch
        self._secrets = secrets
        self._engine = engine
        self._timeout = timeout
        self._retries = retries
        self._auth: CommunityData | UsmUserData | None = None
        self._target: UdpTransportTarget | None = None
        self._closed = False

    def __repr__(self) -> str:
        sw = self.switch
        return f"SnmpClient({sw.name!r}, {sw.address}:{sw.port}, v{sw.snmp.version})"

    async def close(self) -> None:
        """Forget credentials and target; the shared engine stays open for other clients."""
        self._closed = True
        self._auth = None
        self._target = None

    # -- public reads ------------------------------------------------------------
    async def system(self) -> SwitchSystem:
        """sysDescr, sysName, sysUpTime and sysObjectID."""
        got = await self._get(SYS_DESCR, SYS_NAME, SYS_UPTIME, SYS_OBJECT_ID)
        try:
            return SwitchSystem(
                descr=_text(got[SYS_DESCR]),
                name=_text(got[SYS_NAME]),
                uptime_s=int(got[SYS_UPTIME]) / 100,
                object_id=".".join(str(x) for x in tuple(got[SYS_OBJECT_ID])),
            )
        except (TypeError, ValueError, PyAsn1Error) as exc:
            raise ProtocolError(f"{self.switch.name}: unusable system group") from exc

    async def interfaces(self) -> list[Interface]:
        """Every interface, ifTable joined with ifXTable by ifIndex, sorted by ifIndex."""
        cols = await self._walk(
            IF_DESCR, IF_SPEED, IF_PHYS_ADDRESS, IF_ADMIN_STATUS, IF_OPER_STATUS,
            IF_IN_OCTETS, IF_IN_DISCARDS, IF_IN_ERRORS, IF_OUT_OCTETS, IF_OUT_DISCARDS, IF_OUT_ERRORS,
            IF_NAME, IF_ALIAS, IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_HIGH_SPEED,
        )
        indexes = sorted({i[0] for c in (IF_DESCR, IF_OPER_STATUS, IF_NAME) for i in cols[c] if len(i) == 1})
        if not indexes:
            raise ProtocolError(f"{self.switch.name}: no IF-MIB data")
        out = []
        try:
            for ifindex in indexes:
                out.append(_interface(cols, ifindex))
        except (TypeError, ValueError, PyAsn1Error) as exc:
            raise ProtocolError(f"{self.switch.name}: unusable IF-MIB row {ifindex}") from exc
        return out

    async def lldp_neighbours(self) -> list[LldpNeighbour]:
        """LLDP neighbours (lldpRemTable), local port as our ifName."""
        cols = await self._walk(
            LLDP_REM_CHASSIS_ID_SUBTYPE, LLDP_REM_CHASSIS_ID, LLDP_REM_PORT_ID_SUBTYPE, LLDP_REM_PORT_ID,
            LLDP_REM_PORT_DESC, LLDP_REM_SYS_NAME, IF_NAME, LLDP_LOC_PORT_ID,
        )
        if_names = {i[0]: _text(v) for i, v in cols[IF_NAME].items() if len(i) == 1}
        loc_ports = {i[0]: _text(v) for i, v in cols[LLDP_LOC_PORT_ID].items() if len(i) == 1}
        out = []
        try:
            for index in sorted(cols[LLDP_REM_CHASSIS_ID]):
                if len(index) != 3:
                    continue
                local = index[1]  # lldpRemLocalPortNum: ifIndex on most switches
                chassis = _octets(cols[LLDP_REM_CHASSIS_ID][index])
                chassis_id = (_mac(chassis) if int(cols[LLDP_REM_CHASSIS_ID_SUBTYPE].get(index, 0))
                              == _LLDP_CHASSIS_SUBTYPE_MAC else None) or _macish(_decode(chassis))
                port = _octets(cols[LLDP_REM_PORT_ID].get(index, b""))
                port_id = (_mac(port) if int(cols[LLDP_REM_PORT_ID_SUBTYPE].get(index, 0))
                           == _LLDP_PORT_SUBTYPE_MAC else None) or _macish(_decode(port))
                out.append(LldpNeighbour(
                    local_port=if_names.get(local) or loc_ports.get(local) or str(local),
                    chassis_id=chassis_id,
                    port_id=port_id,
                    port_descr=_text(cols[LLDP_REM_PORT_DESC].get(index, b"")),
                    sys_name=_text(cols[LLDP_REM_SYS_NAME].get(index, b"")),
                ))
        except (TypeError, ValueError, PyAsn1Error) as exc:
            raise ProtocolError(f"{self.switch.name}: unusable lldpRemTable row") from exc
        return out

    async def fdb(self) -> list[FdbEntry]:
        """Learned MACs: Q-BRIDGE dot1qTpFdbPort, else BRIDGE dot1dTpFdbPort (no VLAN)."""
        cols = await self._walk(DOT1Q_TP_FDB_PORT, DOT1Q_TP_FDB_STATUS, DOT1D_BASE_PORT_IF_INDEX, IF_NAME)
        rows: list[tuple[bytes, int | None, Any]] = []
        for index, port in cols[DOT1Q_TP_FDB_PORT].items():
            if len(index) == 7 and not _skip_fdb(cols[DOT1Q_TP_FDB_STATUS].get(index)):
                rows.append((bytes(index[1:]), index[0], port))
        if not cols[DOT1Q_TP_FDB_PORT]:
            bridge = await self._walk(DOT1D_TP_FDB_PORT, DOT1D_TP_FDB_STATUS)
            for index, port in bridge[DOT1D_TP_FDB_PORT].items():
                if len(index) == 6 and not _skip_fdb(bridge[DOT1D_TP_FDB_STATUS].get(index)):
                    rows.append((bytes(index), None, port))
        try:
            if_index = {i[0]: int(v) for i, v in cols[DOT1D_BASE_PORT_IF_INDEX].items() if len(i) == 1}
            if_names = {i[0]: _text(v) for i, v in cols[IF_NAME].items() if len(i) == 1}
            out = []
            for mac, vlan, bridge_port in rows:
                if int(bridge_port) == 0:  # "not known" (RFC 4188)
                    continue
                ifindex = if_index.get(int(bridge_port))
                out.append(FdbEntry(
                    mac=_mac(mac) or mac.hex(), vlan=vlan,
                    port=if_names.get(ifindex, "") if ifindex is not None else "", ifindex=ifindex,
                ))
        except (TypeError, ValueError, PyAsn1Error) as exc:
            raise ProtocolError(f"{self.switch.name}: unusable FDB row") from exc
        return sorted(out, key=lambda e: (e.ifindex or 0, e.vlan or 0, e.mac))

    # -- the wire ------------------------------------------------------------------
    async def _get(self, *oids: OID) -> dict[OID, Any]:
        """GET: {oid: value}; noSuchObject / noSuchInstance is a ProtocolError."""
        var_binds = await self._request("GET", oids, get_cmd)
        out: dict[OID, Any] = {}
        for name, value in var_binds:
            oid = tuple(name)
            if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)):
                raise ProtocolError(f"{self.switch.name}: {_dotted(oid)} not available ({type(value).__name__})")
            out[oid] = value
        missing = [o for o in oids if o not in out]
        if missing:
            raise ProtocolError(f"{self.switch.name}: reply lacks {_dotted(missing[0])}")
        return out

    async def _walk(self, *columns: OID) -> dict[OID, dict[OID, Any]]:
        """Walk several table columns side by side: {column: {index: value}}.

        One GETBULK carries every column still being walked; a column is done when its
        next OID leaves its subtree or the agent says endOfMibView.
        """
        result: dict[OID, dict[OID, Any]] = {c: {} for c in columns}
        cursor = {c: c for c in columns}
        active = list(columns)
        while active:
            reps = max(1, _BULK_BUDGET // len(active))
            var_binds = await self._request("GETBULK", [cursor[c] for c in active], bulk_cmd, 0, reps)
            if not var_binds:
                raise ProtocolError(f"{self.switch.name}: empty GETBULK reply under {_dotted(active[0])}")
            done: set[OID] = set()
            for i, (name, value) in enumerate(var_binds):
                column = active[i % len(active)]
                if column in done:
                    continue
                oid = tuple(name)
                if isinstance(value, rfc1905.EndOfMibView) or oid[: len(column)] != column:
                    done.add(column)
                    continue
                if oid <= cursor[column]:
                    raise ProtocolError(f"{self.switch.name}: OID not increasing at {_dotted(oid)}")
                cursor[column] = oid
                result[column][oid[len(column):]] = value
            active = [c for c in active if c not in done]
        return result

    async def _request(self, kind: str, oids: Iterable[OID], command: Any, *args: Any) -> tuple:
        """Send one request; every pysnmp failure becomes a DriverError here, and only here."""
        if self._closed:
            raise DriverError(f"{self.switch.name}: SNMP client is closed")
        oids = list(oids)
        where = f"{self.switch.name}: {kind} {_dotted(oids[0])}"
        auth = self._auth_data()
        engine = self._engine or shared_engine()
        started = time.monotonic()
        try:
            target = await self._transport_target()
            indication, status, index, var_binds = await command(
                engine, auth, target, ContextData(), *args,
                *(ObjectType(ObjectIdentity(ObjectName(o))) for o in oids),
                lookupMib=False,
            )
        except (PySnmpError, PyAsn1Error) as exc:
            raise ProtocolError(f"{where}: {type(exc).__name__}") from exc
        if indication:
            raise self._indication_error(indication, where, engine, started)
        if status and int(status):
            name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
            raise ProtocolError(f"{where}: agent answered {name} (index {int(index)})")
        try:
            return tuple((name, value) for name, value in var_binds)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"{where}: malformed varbinds") from exc

    def _indication_error(self, indication: Any, where: str, engine: SnmpEngine, started: float) -> DriverError:
        if isinstance(indication, errind.RequestTimedOut) or "before timeout" in str(indication):
            if self._heard_since(engine, started):
                err: DriverError = ProtocolError(f"{where}: undecodable replies")
            else:
                err = Timeout(f"{where}: no SNMP response in {self._timeout:g} s x {1 + self._retries}")
        elif isinstance(indication, _AUTH_INDICATIONS):
            err = AuthFailed(f"{where}: {indication}")
        else:
            err = ProtocolError(f"{where}: {indication}")
        err.__cause__ = indication if isinstance(indication, BaseException) else None
        return err

    def _heard_since(self, engine: SnmpEngine, started: float) -> bool:
        """Did the switch send us any datagram since ``started`` (decodable or not)?"""
        dispatcher = engine.transport_dispatcher
        if self._target is None:
            return False
        transport = dispatcher.get_transport(self._target.TRANSPORT_DOMAIN) if dispatcher is not None else None
        heard = getattr(transport, "heard", {})
        return heard.get(tuple(self._target.transport_address[:2]), 0.0) >= started

    async def _transport_target(self) -> UdpTransportTarget:
        if self._target is None:
            target = await _Target.create(
                (self.switch.address, self.switch.port), timeout=self._timeout, retries=self._retries)
            source = source_address(*target.transport_address[:2])  # resolved by create()
            target.TRANSPORT_DOMAIN = _domain(source)
            self._target = target.set_local_address((source, 0))
        return self._target

    def _auth_data(self) -> CommunityData | UsmUserData:
        """Credentials, resolved on first use (SecretError when a reference fails)."""
        if self._auth is None:
            snmp = self.switch.snmp
            if snmp.version == "2c":
                assert snmp.community is not None  # the model validates it
                self._auth = CommunityData(self._secrets.resolve(snmp.community).get(), mpModel=1)
            else:
                assert snmp.username and snmp.auth_key and snmp.priv_key
                self._auth = UsmUserData(
                    snmp.username,
                    self._secrets.resolve(snmp.auth_key).get(),
                    self._secrets.resolve(snmp.priv_key).get(),
                    authProtocol=_AUTH_PROTOCOLS[snmp.auth_protocol],
                    privProtocol=_PRIV_PROTOCOLS[snmp.priv_protocol],
                )
        return self._auth


# --------------------------------------------------------------------------- value helpers
_MAC_TEXT = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$"
                       r"|^[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4}){2}$"
                       r"|^[0-9a-fA-F]{12}$")


def _dotted(oid: OID) -> str:
    return ".".join(str(x) for x in oid)


def _octets(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if hasattr(value, "asOctets"):
        return value.asOctets()
    raise TypeError(f"expected an OCTET STRING, got {type(value).__name__}")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\x00")


def _text(value: Any) -> str:
    return _decode(_octets(value))


def _mac(raw: bytes) -> str | None:
    """``aa:bb:cc:dd:ee:ff`` from six octets, else None."""
    return ":".join(f"{b:02x}" for b in raw) if len(raw) == 6 else None


def _macish(text: str) -> str:
    """A MAC-looking string normalised to ``aa:bb:..``; anything else unchanged."""
    if _MAC_TEXT.match(text):
        return _mac(bytes.fromhex(re.sub(r"[:.\-]", "", text))) or text
    return text


@functools.lru_cache(maxsize=1 << 16)  # the same node MACs, normalised for every switch poll
def _normal_mac(text: str | None) -> str | None:
    return _macish(text.strip()).lower() if text else None


def _skip_fdb(status: Any) -> bool:
    return status is not None and int(status) in _FDB_NOT_A_HOST


def _interface(cols: dict[OID, dict[OID, Any]], ifindex: int) -> Interface:
    """One interface from the walked IF-MIB columns (raises TypeError/ValueError/PyAsn1Error
    on a value of the wrong kind)."""
    idx = (ifindex,)

    def col(oid: OID, default: Any = None) -> Any:
        return cols[oid].get(idx, default)

    hc_in, hc_out = col(IF_HC_IN_OCTETS), col(IF_HC_OUT_OCTETS)
    counters_64 = hc_in is not None and hc_out is not None
    high_speed = col(IF_HIGH_SPEED)
    speed = int(high_speed) if high_speed else int(col(IF_SPEED, 0)) // 1_000_000
    name = col(IF_NAME)
    return Interface(
        ifindex=ifindex,
        name=_text(name) if name is not None else _text(col(IF_DESCR, b"")),
        alias=_text(col(IF_ALIAS, b"")),
        admin_up=int(col(IF_ADMIN_STATUS, 2)) == 1,
        oper_up=int(col(IF_OPER_STATUS, 2)) == 1,
        speed_mbps=speed,
        in_octets=int(hc_in if counters_64 else col(IF_IN_OCTETS, 0)),
        out_octets=int(hc_out if counters_64 else col(IF_OUT_OCTETS, 0)),
        in_errors=int(col(IF_IN_ERRORS, 0)),
        out_errors=int(col(IF_OUT_ERRORS, 0)),
        in_discards=int(col(IF_IN_DISCARDS, 0)),
        out_discards=int(col(IF_OUT_DISCARDS, 0)),
        mac=_mac(_octets(col(IF_PHYS_ADDRESS, b""))),
        counters_64=counters_64,
    )


# --------------------------------------------------------------------------- pure helpers
RateRow = tuple[float | None, float | None, float | None, float | None]


def rates(prev: list[Interface], prev_t: float, cur: list[Interface], cur_t: float) -> dict[int, RateRow]:
    """``{ifindex: (in_bps, out_bps, in_err_per_s, out_err_per_s)}`` between two samples.

    A counter that went down wrapped when the wrapped delta is plausible (at most the
    port's line rate for octets, less than half the counter's range for errors);
    otherwise the switch reset it and the rate is None.  Interfaces present in only
    one sample are left out; a non-positive interval gives no rates at all.
    """
    dt = cur_t - prev_t
    if dt <= 0:
        return {}
    before = {i.ifindex: i for i in prev}
    out: dict[int, RateRow] = {}
    for now in cur:
        was = before.get(now.ifindex)
        if was is None:
            continue
        octet_bits = 64 if (now.counters_64 and was.counters_64) else 32
        if now.counters_64 != was.counters_64:
            out[now.ifindex] = (None, None, None, None)  # the counter source changed under us
            continue
        line_bytes = now.speed_mbps * 125_000 * dt * 1.05 if now.speed_mbps else None
        out[now.ifindex] = (
            _per_second(was.in_octets, now.in_octets, dt, octet_bits, line_bytes, scale=8),
            _per_second(was.out_octets, now.out_octets, dt, octet_bits, line_bytes, scale=8),
            _per_second(was.in_errors, now.in_errors, dt, 32, None),
            _per_second(was.out_errors, now.out_errors, dt, 32, None),
        )
    return out


def _per_second(before: int, after: int, dt: float, bits: int, most: float | None, *,
                scale: int = 1) -> float | None:
    """A counter's change per second (times ``scale``: 8 turns octets into bits), None
    when it was reset rather than wrapped (see :func:`_delta`)."""
    d = _delta(before, after, bits, most)
    return None if d is None else d * scale / dt


def _delta(before: int, after: int, bits: int, most: float | None) -> int | None:
    d = after - before
    if d >= 0:
        return d
    wrapped = d + (1 << bits)
    limit = most if most is not None else (1 << (bits - 1))
    return wrapped if 0 <= wrapped <= limit else None


def discover_ports(
    fdb: list[FdbEntry], lldp: list[LldpNeighbour], macs: Mapping[str, str],
) -> dict[str, list[Evidence]]:
    """Where each node (``{name: mac}``) appears on the switch: FDB and LLDP evidence.

    An FDB hit on a port that learned more than one MAC (an uplink, a hypervisor) is
    ambiguous, as confluent's macmap warns.  LLDP counts when the neighbour's chassis
    ID or port ID is the node's MAC, or its sysName is the node's name.  Nodes seen
    nowhere map to an empty list.
    """
    seen = sightings(fdb, lldp, mac_index(macs), macs)
    return {node: seen.get(node, []) for node in macs}


def mac_index(macs: Mapping[str, str]) -> dict[str, list[str]]:
    """``{name: mac}`` turned round: each normalised MAC with the nodes that have it."""
    out: dict[str, list[str]] = {}
    for node, raw in macs.items():
        mac = _normal_mac(raw)
        if mac:
            out.setdefault(mac, []).append(node)
    return out


def sightings(fdb: list[FdbEntry], lldp: list[LldpNeighbour], by_mac: Mapping[str, list[str]],
              names: Container[str]) -> dict[str, list[Evidence]]:
    """:func:`discover_ports` for the nodes the switch sees only: work in proportion to its
    tables, not to the site (``by_mac`` from :func:`mac_index`; ``names``, the nodes an LLDP
    sysName may name).  The poller runs it after every switch poll."""
    per_port: dict[str, set[str]] = {}
    for e in fdb:
        per_port.setdefault(e.port, set()).add(e.mac.lower())
    out: dict[str, list[Evidence]] = {}
    for port in sorted(per_port):
        learned = per_port[port]
        for mac in learned:
            for node in by_mac.get(mac, ()):
                out.setdefault(node, []).append(Evidence(port, "fdb", ambiguous=len(learned) > 1))
    for n in lldp:
        nodes = [node for named in {_normal_mac(n.chassis_id), _normal_mac(n.port_id)} if named
                 for node in by_mac.get(named, ())]
        if n.sys_name in names:
            nodes.append(n.sys_name)
        ev = Evidence(n.local_port, "lldp", ambiguous=False)
        for node in nodes:
            found = out.setdefault(node, [])
            if ev not in found:
                found.append(ev)
    return out


class PortMap:
    """What every switch last said of where nodes are, kept per switch, so that a switch's
    poll recomputes the nodes it sees, saw, or should see (cabled to it in the inventory),
    not the whole site: with one switch a rack, recomputing every node after every switch
    poll grew with switches x nodes, and kept a poller's process busy at 5,000 nodes."""

    def __init__(self, macs: Mapping[str, str], switches: Iterable[str],
                 cabled: Mapping[str, Iterable[str]] | None = None) -> None:
        """``macs``: ``{node: mac}``; ``switches``: every switch, in the order evidence is
        listed; ``cabled``: each switch's nodes by the inventory."""
        self.macs = dict(macs)
        self._by_mac = mac_index(macs)
        #: switch -> {node: evidence}, in the site's switch order
        self._seen: dict[str, dict[str, list[Evidence]]] = {s: {} for s in switches}
        self._cabled = {s: [n for n in nodes if n in self.macs] for s, nodes in (cabled or {}).items()}
        self._first = True

    def update(self, switch: str, fdb: list[FdbEntry], lldp: list[LldpNeighbour]) -> set[str]:
        """Take ``switch``'s tables; return the nodes to recompute: those it sees or saw, and
        those cabled to it (every node with a MAC the first time, so that nodes seen nowhere
        are said so too)."""
        new = sightings(fdb, lldp, self._by_mac, self.macs)
        old = self._seen.get(switch, {})
        self._seen[switch] = new
        if self._first:
            self._first = False
            return set(self.macs)
        return {*old, *new, *self._cabled.get(switch, ())}

    def evidence(self, node: str) -> list[tuple[str, Evidence]]:
        """Every switch's evidence for ``node``, as (switch, evidence), in switch order."""
        return [(switch, ev) for switch, seen in self._seen.items() for ev in seen.get(node, ())]
