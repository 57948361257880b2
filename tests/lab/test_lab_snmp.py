"""The lab's simulated switches, checked with net-snmp's own clients and with pysnmp.

Two switches listen on 127.79.0.1 and 127.79.0.2 (ephemeral ports); their ports'
``link`` callables read a dict the tests flip, and a fake clock makes traffic
counters and sysUpTime move exactly when a test says so.  The net-snmp tools run
as asyncio subprocesses: the agents live on the test's own event loop, so a
blocking ``subprocess.run`` would starve them.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from console.lab.snmp_agent import (
    DOT1D_BASE_PORT_IF_INDEX,
    DOT1Q_TP_FDB_ENTRY,
    DOT1Q_TP_FDB_PORT,
    IF_ENTRY,
    IF_HC_IN_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_OCTETS,
    IF_LAST_CHANGE,
    IF_NAME,
    IF_OPER_STATUS,
    IF_SPEED,
    IF_X_ENTRY,
    LLDP_REM_CHASSIS_ID,
    LLDP_REM_CHASSIS_ID_SUBTYPE,
    LLDP_REM_ENTRY,
    LLDP_REM_PORT_ID,
    LLDP_REM_PORT_ID_SUBTYPE,
    LLDP_REM_SYS_NAME,
    SYS_NAME,
    SYS_UPTIME,
    SnmpLab,
    SwitchPort,
    SwitchSpec,
)

pytestmark = pytest.mark.timeout(60)

NET_SNMP = all(shutil.which(tool) for tool in ("snmpget", "snmpwalk", "snmpbulkwalk"))


def uses_net_snmp(test):
    """Mark a cross-check with Debian's net-snmp clients; skipped clearly when they are absent."""
    test = pytest.mark.skipif(not NET_SNMP, reason="net-snmp clients (snmpget, snmpwalk, snmpbulkwalk) not installed")(test)
    return pytest.mark.thirdparty(test)


V3 = ("labuser", "authpass-1", "privpass-1")
V3_ARGS = ["-v3", "-l", "authPriv", "-u", V3[0], "-a", "SHA", "-A", V3[1], "-x", "AES", "-X", V3[2]]
N1_MAC, N2_MAC, N4_MAC = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:04"
BEHIND_UPLINK = ("52:54:00:bb:00:01", "52:54:00:bb:00:02")


def dotted(oid: tuple[int, ...]) -> str:
    return ".".join(map(str, oid))


class FakeClock:
    """Monotonic seconds that move only when a test advances them."""

    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Lab:
    lab: SnmpLab
    ports: dict[str, int]
    clock: FakeClock
    links: dict[tuple[str, int], bool]
    tmp: Path
    addresses: dict[str, str]

    def host(self, name: str) -> str:
        return f"{self.addresses[name]}:{self.ports[name]}"


def _link(links: dict[tuple[str, int], bool], key: tuple[str, int]):
    return lambda: links[key]


@pytest.fixture
async def env(tmp_path: Path):
    clock = FakeClock()
    links = {("sw1", 1): True, ("sw1", 2): True, ("sw1", 4): False, ("sw2", 1): True}
    lab = SnmpLab(clock=clock)
    lab.add(SwitchSpec(
        name="sw1", address="127.79.0.1", port=0, community="public-a",
        v3_user=V3[0], v3_auth_key=V3[1], v3_priv_key=V3[2],
        ports=[
            SwitchPort(1, "Ethernet1", alias="n1", node_mac=N1_MAC, lldp=(N1_MAC, "eno1", "n1"),
                       link=_link(links, ("sw1", 1))),
            # This server's LLDP agent sends its MAC as the port ID (lldpd's default).
            SwitchPort(2, "Ethernet2", alias="n2", node_mac=N2_MAC, lldp=(N2_MAC, N2_MAC, "n2"),
                       link=_link(links, ("sw1", 2))),
            SwitchPort(3, "Ethernet3", alias="spare", admin_up=False),
            SwitchPort(4, "Ethernet4", alias="n4", node_mac=N4_MAC, lldp=(N4_MAC, "eno1", "n4"),
                       speed_mbps=1000, link=_link(links, ("sw1", 4))),
            SwitchPort(49, "Ethernet49", alias="uplink", speed_mbps=100000, extra_macs=BEHIND_UPLINK),
        ],
    ))
    lab.add(SwitchSpec(
        name="sw2", address="127.79.0.2", port=0, community="public-b",
        v3_user="otheruser", v3_auth_key="otherauth-1", v3_priv_key="otherpriv-1",
        ports=[SwitchPort(1, "Ethernet1", alias="n9", node_mac="52:54:00:aa:00:09",
                          lldp=("52:54:00:aa:00:09", "eno1", "n9"), link=_link(links, ("sw2", 1)))],
    ))
    ports = await lab.start()
    try:
        yield Lab(lab, ports, clock, links, tmp_path, {"sw1": "127.79.0.1", "sw2": "127.79.0.2"})
    finally:
        await lab.stop()


async def net_snmp(env: Lab, tool: str, *args: str, timeout: int = 2, retries: int = 1) -> tuple[int, str, str]:
    """Run a net-snmp client with numeric OIDs, enums and timeticks; (rc, stdout, stderr)."""
    cmd = [tool, "-On", "-Oe", "-Ot", "-t", str(timeout), "-r", str(retries), *args]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # Keep net-snmp's persistent state (engine boots, cert indexes) out of /var/lib.
        env={**os.environ, "SNMP_PERSISTENT_DIR": str(env.tmp / "net-snmp")},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode, out.decode(), err.decode()


_LINE = re.compile(r"^\.(?P<oid>[\d.]+) = (?:(?P<type>[\w-]+): )?(?P<value>.*)$")


def parse(out: str) -> dict[str, object]:
    """``{oid: value}`` from ``-On`` output: ints, str for STRING, bytes for Hex-STRING."""
    values: dict[str, object] = {}
    for line in out.splitlines():
        m = _LINE.match(line)
        assert m, f"unparsed net-snmp line: {line!r}"
        kind, value = m["type"], m["value"].strip()
        if kind == "STRING":
            values[m["oid"]] = value.strip('"')
        elif kind == "Hex-STRING":
            values[m["oid"]] = bytes.fromhex(value)
        elif kind in ("INTEGER", "Counter32", "Counter64", "Gauge32") or (kind is None and value.isdigit()):
            values[m["oid"]] = int(value)
        else:
            values[m["oid"]] = value
    return values


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def octets(value: object) -> bytes:
    """net-snmp prints an octet string as STRING when it happens to be printable."""
    return value.encode() if isinstance(value, str) else value  # type: ignore[return-value]


async def snmpget(env: Lab, switch: str, *oids: tuple[int, ...], community: str | None = None) -> dict[str, object]:
    community = community or {"sw1": "public-a", "sw2": "public-b"}[switch]
    rc, out, err = await net_snmp(env, "snmpget", "-v2c", "-c", community, env.host(switch), *map(dotted, oids))
    assert rc == 0, err
    return parse(out)


async def walk(env: Lab, tool: str, switch: str, root: tuple[int, ...], *auth: str) -> dict[str, object]:
    auth = auth or ("-v2c", "-c", {"sw1": "public-a", "sw2": "public-b"}[switch])
    extra = ["-Cr25"] if tool == "snmpbulkwalk" else []
    rc, out, err = await net_snmp(env, tool, *auth, *extra, env.host(switch), dotted(root))
    assert rc == 0, err
    return parse(out)


# --------------------------------------------------------------------------- net-snmp
@uses_net_snmp
async def test_snmpget_sysname_and_uptime_moves(env: Lab) -> None:
    one = await snmpget(env, "sw1", SYS_NAME + (0,), SYS_UPTIME + (0,))
    assert one[dotted(SYS_NAME + (0,))] == "sw1"
    assert (await snmpget(env, "sw2", SYS_NAME + (0,)))[dotted(SYS_NAME + (0,))] == "sw2"
    env.clock.advance(12.5)
    two = await snmpget(env, "sw1", SYS_UPTIME + (0,))
    assert two[dotted(SYS_UPTIME + (0,))] - one[dotted(SYS_UPTIME + (0,))] == 1250


@uses_net_snmp
async def test_walk_iftable_and_ifxtable(env: Lab) -> None:
    if_table = await walk(env, "snmpwalk", "sw1", IF_ENTRY[:-1])
    if_x = await walk(env, "snmpwalk", "sw1", IF_X_ENTRY[:-1])
    col = lambda table, oid, i: table[f"{dotted(oid)}.{i}"]  # noqa: E731
    assert [col(if_x, IF_NAME, i) for i in (1, 2, 3, 4, 49)] == [
        "Ethernet1", "Ethernet2", "Ethernet3", "Ethernet4", "Ethernet49"]
    assert [col(if_table, IF_ENTRY + (2,), i) for i in (1, 49)] == ["Ethernet1", "Ethernet49"]
    # Up, up, admin down, link down (its node is off), up.
    assert [col(if_table, IF_OPER_STATUS, i) for i in (1, 2, 3, 4, 49)] == [1, 1, 2, 2, 1]
    assert [col(if_table, IF_ENTRY + (7,), i) for i in (1, 3)] == [1, 2]
    # ifSpeed is a Gauge32: 25G and 100G both read as its maximum, ifHighSpeed tells them apart.
    assert [col(if_table, IF_SPEED, i) for i in (1, 4, 49)] == [4294967295, 1_000_000_000, 4294967295]
    assert [col(if_x, IF_HIGH_SPEED, i) for i in (1, 4, 49)] == [25000, 1000, 100000]
    assert col(if_x, IF_X_ENTRY + (18,), 1) == "n1"
    assert col(if_table, IF_ENTRY + (3,), 1) == 6
    # The clock is frozen, so GETBULK must see exactly what GETNEXT saw, counters included.
    assert await walk(env, "snmpbulkwalk", "sw1", IF_X_ENTRY[:-1]) == if_x
    assert await walk(env, "snmpbulkwalk", "sw1", IF_ENTRY[:-1]) == if_table


@uses_net_snmp
async def test_bulkwalk_lldp_remote_table_and_fdb(env: Lab) -> None:
    lldp = await walk(env, "snmpbulkwalk", "sw1", LLDP_REM_ENTRY[:-1])
    rows: dict[int, dict[tuple[int, ...], object]] = {}
    for oid, value in lldp.items():
        parts = tuple(int(x) for x in oid.split("."))
        column, (_time_mark, local_port, _rem_index) = parts[:-3], parts[-3:]
        rows.setdefault(local_port, {})[column] = value
    assert sorted(rows) == [1, 2]  # port 4's link is down, 3 and 49 have no LLDP neighbour
    assert rows[1][LLDP_REM_CHASSIS_ID_SUBTYPE] == 4
    assert octets(rows[1][LLDP_REM_CHASSIS_ID]) == mac(N1_MAC)
    assert (rows[1][LLDP_REM_PORT_ID_SUBTYPE], rows[1][LLDP_REM_PORT_ID]) == (5, "eno1")
    assert rows[1][LLDP_REM_SYS_NAME] == "n1"
    assert rows[2][LLDP_REM_PORT_ID_SUBTYPE] == 3
    assert octets(rows[2][LLDP_REM_PORT_ID]) == mac(N2_MAC)

    assert await fdb(env, "sw1") == {
        (100, mac(N1_MAC)): 1, (100, mac(N2_MAC)): 2,
        (100, mac(BEHIND_UPLINK[0])): 49, (100, mac(BEHIND_UPLINK[1])): 49,
    }


async def fdb(env: Lab, switch: str) -> dict[tuple[int, bytes], int]:
    """``{(vlan, mac): ifindex}`` the way a poller gets it: Q-BRIDGE FDB + bridge port map."""
    base = await walk(env, "snmpbulkwalk", switch, DOT1D_BASE_PORT_IF_INDEX)
    if_index = {int(oid.rsplit(".", 1)[1]): v for oid, v in base.items()}
    entries = await walk(env, "snmpbulkwalk", switch, DOT1Q_TP_FDB_ENTRY[:-1])
    out = {}
    prefix = dotted(DOT1Q_TP_FDB_PORT) + "."
    for oid, bridge_port in entries.items():
        if oid.startswith(prefix):
            vlan, *octs = (int(x) for x in oid[len(prefix):].split("."))
            out[(vlan, bytes(octs))] = if_index[bridge_port]
    return out


@uses_net_snmp
async def test_v3_authpriv_walk(env: Lab) -> None:
    system = await walk(env, "snmpwalk", "sw1", SYS_NAME[:-1], *V3_ARGS)
    assert system[dotted(SYS_NAME + (0,))] == "sw1"
    if_x = await walk(env, "snmpbulkwalk", "sw1", IF_NAME, *V3_ARGS)
    assert len(if_x) == 5
    wrong_key = [arg if arg != V3[1] else "wrong-auth-key" for arg in V3_ARGS]
    rc, _, err = await net_snmp(env, "snmpget", *wrong_key, env.host("sw1"), dotted(SYS_NAME + (0,)),
                                timeout=1, retries=0)
    assert rc != 0 and "Authentication failure" in err
    # sw1's user is unknown to sw2: no answer, as if the user did not exist at all.
    rc, _, err = await net_snmp(env, "snmpget", *V3_ARGS, env.host("sw2"), dotted(SYS_NAME + (0,)),
                                timeout=1, retries=0)
    assert rc != 0 and "Timeout" in err


@uses_net_snmp
async def test_wrong_community_gets_no_answer(env: Lab) -> None:
    for community in ("wrong", "public-b"):  # unknown anywhere; valid only on sw2
        rc, out, err = await net_snmp(env, "snmpget", "-v2c", "-c", community, env.host("sw1"),
                                      dotted(SYS_NAME + (0,)), timeout=1, retries=0)
        assert rc != 0 and out == "" and "Timeout" in err


@uses_net_snmp
async def test_counters_move_only_on_up_ports(env: Lab) -> None:
    oids = [IF_HC_IN_OCTETS + (1,), IF_IN_OCTETS + (1,), IF_HC_IN_OCTETS + (4,), IF_HC_IN_OCTETS + (3,)]
    before = await snmpget(env, "sw1", *oids)
    env.clock.advance(10)
    after = await snmpget(env, "sw1", *oids)
    hc1, c32, hc4, hc3 = (dotted(o) for o in oids)
    moved = after[hc1] - before[hc1]
    # 25G at the 2-30 % utilisation the lab draws, for 10 s.
    assert 0.02 * 25e9 / 8 * 10 <= moved <= 0.3 * 25e9 / 8 * 10
    # One request is one snapshot: the Counter32 is the Counter64 modulo 2**32.
    assert after[c32] == after[hc1] % 2**32
    assert after[hc4] == before[hc4] and after[hc3] == before[hc3]  # link down, admin down


@uses_net_snmp
async def test_an_occasional_port_has_a_small_error_rate(tmp_path: Path) -> None:
    clock = FakeClock()
    lab = SnmpLab(clock=clock)
    lab.add(SwitchSpec("tor9", "127.79.0.9", 0, "public", ports=[SwitchPort(i, f"Ethernet{i}") for i in range(1, 41)]))
    env = Lab(lab, await lab.start(), clock, {}, tmp_path, {"tor9": "127.79.0.9"})
    try:
        clock.advance(60)
        errors = await walk(env, "snmpbulkwalk", "tor9", IF_ENTRY + (14,), "-v2c", "-c", "public")
    finally:
        await lab.stop()
    erring = [v for v in errors.values() if v]
    assert 1 <= len(erring) <= 15, errors  # a few of 40, not none and not most
    # Small: at most 1e-5 of the packets 60 s at <= 30 % of 25G carry (800-byte frames).
    most_packets = 25e9 / 8 * 0.3 * 60 / 800
    assert all(v <= most_packets * 1e-5 for v in erring), erring


@uses_net_snmp
async def test_link_down_changes_oper_status_and_drops_fdb_and_lldp(env: Lab) -> None:
    status = dotted(IF_OPER_STATUS + (1,))
    assert (await snmpget(env, "sw1", IF_OPER_STATUS + (1,)))[status] == 1
    env.clock.advance(3)
    env.links[("sw1", 1)] = False  # node n1 powered off
    got = await snmpget(env, "sw1", IF_OPER_STATUS + (1,), IF_LAST_CHANGE + (1,), SYS_UPTIME + (0,))
    assert got[status] == 2
    assert got[dotted(IF_LAST_CHANGE + (1,))] == got[dotted(SYS_UPTIME + (0,))]
    assert (100, mac(N1_MAC)) not in await fdb(env, "sw1")
    lldp = await walk(env, "snmpbulkwalk", "sw1", LLDP_REM_SYS_NAME)
    assert sorted(lldp.values()) == ["n2"]

    env.clock.advance(7)
    env.links[("sw1", 1)] = True
    env.links[("sw1", 4)] = True
    lldp = await walk(env, "snmpbulkwalk", "sw1", LLDP_REM_SYS_NAME)
    assert sorted(lldp.values()) == ["n1", "n2", "n4"]
    uptime = (await snmpget(env, "sw1", SYS_UPTIME + (0,)))[dotted(SYS_UPTIME + (0,))]
    # lldpRemTimeMark is when the neighbour appeared: now, for the ports that just came up.
    marks = {oid.split(".")[-2]: int(oid.split(".")[-3]) for oid in lldp}
    assert marks == {"1": uptime, "2": 0, "4": uptime}
    assert (await fdb(env, "sw1"))[(100, mac(N4_MAC))] == 4


@uses_net_snmp
async def test_fault_garbage_fails_cleanly(env: Lab) -> None:
    env.lab.fault["sw1"] = "garbage"
    started = time.monotonic()
    rc, out, err = await net_snmp(env, "snmpget", "-v2c", "-c", "public-a", env.host("sw1"),
                                  dotted(SYS_NAME + (0,)), timeout=1, retries=0)
    assert rc != 0 and out == "" and time.monotonic() - started < 5
    assert (await snmpget(env, "sw2", SYS_NAME + (0,)))[dotted(SYS_NAME + (0,))] == "sw2"
    env.lab.fault["sw1"] = ""
    assert (await snmpget(env, "sw1", SYS_NAME + (0,)))[dotted(SYS_NAME + (0,))] == "sw1"


@uses_net_snmp
async def test_fault_silent_times_out(env: Lab) -> None:
    env.lab.fault["sw2"] = "silent"
    rc, out, err = await net_snmp(env, "snmpget", "-v2c", "-c", "public-b", env.host("sw2"),
                                  dotted(SYS_NAME + (0,)), timeout=1, retries=0)
    assert rc != 0 and "Timeout" in err
    assert (await snmpget(env, "sw1", SYS_NAME + (0,)))[dotted(SYS_NAME + (0,))] == "sw1"


@uses_net_snmp
async def test_fault_nosuchobject_hides_if_mib(env: Lab) -> None:
    env.lab.fault["sw1"] = "nosuchobject"
    got = await snmpget(env, "sw1", IF_ENTRY + (2, 1), SYS_NAME + (0,))
    assert got[dotted(IF_ENTRY + (2, 1))].startswith("No Such Object")
    assert got[dotted(SYS_NAME + (0,))] == "sw1"
    # A walk finds nothing under ifTable, so snmpwalk GETs the root: noSuchObject.
    rc, out, _ = await net_snmp(env, "snmpwalk", "-v2c", "-c", "public-a", env.host("sw1"), dotted(IF_ENTRY[:-1]))
    assert rc == 0 and "No Such Object" in out and "Ethernet" not in out
    # ifXTable is the last subtree this agent has, so hiding it leaves the end of the MIB.
    rc, out, _ = await net_snmp(env, "snmpbulkwalk", "-v2c", "-c", "public-a", env.host("sw1"), dotted(IF_NAME))
    assert rc == 0 and "Ethernet" not in out
    assert len(await walk(env, "snmpbulkwalk", "sw1", LLDP_REM_SYS_NAME)) == 2  # the rest still answers
    env.lab.fault["sw1"] = ""
    assert len(await walk(env, "snmpwalk", "sw1", IF_NAME)) == 5


# --------------------------------------------------------------------------- pysnmp client
async def test_pysnmp_client_sees_moving_counters_in_real_time() -> None:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData, ContextData, ObjectIdentity, ObjectType, SnmpEngine, UdpTransportTarget,
        UsmUserData, bulk_walk_cmd, get_cmd, usmAesCfb128Protocol, usmHMACSHAAuthProtocol,
    )

    lab = SnmpLab()  # the real clock
    lab.add(SwitchSpec("sw1", "127.79.0.1", 0, "public", v3_user=V3[0], v3_auth_key=V3[1], v3_priv_key=V3[2],
                       ports=[SwitchPort(i, f"Ethernet{i}") for i in range(1, 5)]))
    ports = await lab.start()
    client = SnmpEngine()
    try:
        target = await UdpTransportTarget.create(("127.79.0.1", ports["sw1"]), timeout=2, retries=1)
        v2c = CommunityData("public", mpModel=1)
        oid = ObjectType(ObjectIdentity(dotted(IF_HC_IN_OCTETS + (1,))))
        first = await get_cmd(client, v2c, target, ContextData(), oid)
        await asyncio.sleep(0.3)
        second = await get_cmd(client, v2c, target, ContextData(), oid)
        assert first[0] is None and second[0] is None
        assert int(second[3][0][1]) > int(first[3][0][1])

        v3 = UsmUserData(V3[0], V3[1], V3[2], authProtocol=usmHMACSHAAuthProtocol,
                         privProtocol=usmAesCfb128Protocol)
        names = []
        async for error, status, _, var_binds in bulk_walk_cmd(
                client, v3, target, ContextData(), 0, 25, ObjectType(ObjectIdentity(dotted(IF_NAME))),
                lexicographicMode=False):
            assert error is None and not status
            names += [str(value) for _, value in var_binds]
        assert names == ["Ethernet1", "Ethernet2", "Ethernet3", "Ethernet4"]

        lab.fault["sw1"] = "garbage"
        quick = await UdpTransportTarget.create(("127.79.0.1", ports["sw1"]), timeout=0.5, retries=0)
        error, *_ = await get_cmd(client, v2c, quick, ContextData(), oid)
        assert error is not None  # a timeout reported, not an exception raised
    finally:
        client.close_dispatcher()
        await lab.stop()


# --------------------------------------------------------------------------- lifecycle
async def test_stop_is_idempotent_and_frees_the_sockets() -> None:
    lab = SnmpLab()
    lab.add(SwitchSpec("sw1", "127.79.0.1", 0, "public", ports=[SwitchPort(1, "Ethernet1")]))
    port = (await lab.start())["sw1"]
    with pytest.raises(RuntimeError):
        await lab.start()
    await lab.stop()
    await lab.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.79.0.1", port))  # would fail with EADDRINUSE if a socket leaked


def test_add_rejects_bad_specs() -> None:
    lab = SnmpLab()
    with pytest.raises(ValueError, match="127.0.0.0/8"):
        lab.add(SwitchSpec("x", "10.0.0.1", 0, "public"))
    with pytest.raises(ValueError, match="ifindex"):
        lab.add(SwitchSpec("x", "127.79.0.1", 0, "public", ports=[SwitchPort(1, "a"), SwitchPort(1, "b")]))
    lab.add(SwitchSpec("a", "127.79.0.1", 0, "public", v3_user="u", v3_auth_key="k" * 8, v3_priv_key="p" * 8))
    with pytest.raises(ValueError, match="different keys"):
        lab.add(SwitchSpec("b", "127.79.0.2", 0, "public", v3_user="u", v3_auth_key="z" * 8, v3_priv_key="p" * 8))
    with pytest.raises(ValueError, match="duplicate"):
        lab.add(SwitchSpec("a", "127.79.0.3", 0, "public"))
    with pytest.raises(ValueError, match="unknown SNMP fault"):
        lab.fault["a"] = "nosuchobjects"


async def test_25_switches_of_40_ports_start_quickly() -> None:
    lab = SnmpLab()
    for n in range(1, 26):
        lab.add(SwitchSpec(
            f"tor{n}", f"127.79.1.{n}", 0, "public", v3_user=V3[0], v3_auth_key=V3[1], v3_priv_key=V3[2],
            ports=[SwitchPort(i, f"Ethernet{i}", node_mac=f"52:54:00:{n:02x}:00:{i:02x}",
                              lldp=(f"52:54:00:{n:02x}:00:{i:02x}", "eno1", f"n{n}-{i}")) for i in range(1, 41)],
        ))
    started = time.monotonic()
    try:
        ports = await lab.start()
        elapsed = time.monotonic() - started
        assert len(ports) == 25 and elapsed < 5, f"25 switches took {elapsed:.2f} s to start"
    finally:
        await lab.stop()
