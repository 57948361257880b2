"""The SNMP driver against the lab's in-process switch agents (127.82.0.x, ephemeral ports).

One switch, ``sw1``, serves v2c and v3 authPriv; its ports' ``link`` callables read a
dict the tests flip, and a fake clock moves counters and sysUpTime exactly when a test
says so.  Every test gets its own event loop, hence its own shared engine, closed by
the ``engine`` fixture.
"""

from __future__ import annotations

import time
from dataclasses import FrozenInstanceError, dataclass, replace

import pytest

from console.drivers.snmp import (
    IF_DESCR,
    Evidence,
    FdbEntry,
    Interface,
    LldpNeighbour,
    PortMap,
    SnmpClient,
    close_shared_engine,
    discover_ports,
    rates,
    shared_engine,
)
from console.errors import AuthFailed, DriverError, ProtocolError, Timeout
from console.lab.snmp_agent import SnmpLab, SwitchPort, SwitchSpec
from console.secrets import Secrets
from inventory.model import SnmpConfig, Switch

pytestmark = pytest.mark.timeout(30)

ADDRESS = "127.82.0.1"
N1_MAC, N2_MAC, N4_MAC = "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:04"
BEHIND_UPLINK = ("52:54:00:bb:00:01", "52:54:00:bb:00:02")
SECRETS = {
    "COMMUNITY": "public-82", "WRONG_COMMUNITY": "not-it",
    "AUTH": "authpass-82", "PRIV": "privpass-82", "WRONG": "wrongpass-82",
}


class FakeClock:
    """Monotonic seconds that move only when a test advances them."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Env:
    lab: SnmpLab
    port: int
    clock: FakeClock
    links: dict[int, bool]
    secrets: Secrets

    def switch(self, **snmp: str) -> Switch:
        config = SnmpConfig(**snmp) if snmp else SnmpConfig(community="env:COMMUNITY")
        return Switch(name="sw1", address=ADDRESS, port=self.port, snmp=config)

    def v3(self, auth: str = "env:AUTH", priv: str = "env:PRIV") -> Switch:
        return self.switch(version="3", username="fleet", auth_key=auth, priv_key=priv)

    def client(self, switch: Switch | None = None, **kw: float) -> SnmpClient:
        return SnmpClient(switch or self.switch(), self.secrets, **({"timeout": 1.0, "retries": 0} | kw))


@pytest.fixture
async def engine():
    """The shared engine of this test's loop, closed at the end as the app does at shutdown."""
    yield shared_engine()
    close_shared_engine()


@pytest.fixture
async def env(engine):
    clock = FakeClock()
    links = {1: True, 2: True, 4: False}
    lab = SnmpLab(clock=clock)
    lab.add(SwitchSpec(
        name="sw1", address=ADDRESS, port=0, community=SECRETS["COMMUNITY"],
        v3_user="fleet", v3_auth_key=SECRETS["AUTH"], v3_priv_key=SECRETS["PRIV"],
        ports=[
            SwitchPort(1, "Ethernet1", alias="n1", node_mac=N1_MAC, lldp=(N1_MAC, "eno1", "n1"),
                       link=lambda: links[1]),
            # lldpd's default: the MAC as port ID
            SwitchPort(2, "Ethernet2", alias="n2", node_mac=N2_MAC, lldp=(N2_MAC, N2_MAC, "n2"),
                       link=lambda: links[2]),
            SwitchPort(3, "Ethernet3", alias="spare", admin_up=False),
            SwitchPort(4, "Ethernet4", alias="n4", node_mac=N4_MAC, lldp=(N4_MAC, "eno1", "n4"),
                       speed_mbps=1000, link=lambda: links[4]),
            SwitchPort(49, "Ethernet49", alias="uplink", speed_mbps=100000, extra_macs=BEHIND_UPLINK),
        ],
    ))
    ports = await lab.start()
    try:
        yield Env(lab, ports["sw1"], clock, links, Secrets(environ=SECRETS))
    finally:
        await lab.stop()


# --------------------------------------------------------------------------- reads
@pytest.mark.parametrize("version", ["2c", "3"])
async def test_reads_everything(env: Env, version: str) -> None:
    client = env.client(env.switch() if version == "2c" else env.v3())
    try:
        system = await client.system()
        assert system.name == "sw1" and system.descr.startswith("Fleet Lab")
        assert system.object_id == "1.3.6.1.4.1.32473.1.1" and system.uptime_s >= 0

        ifaces = {i.ifindex: i for i in await client.interfaces()}
        assert sorted(ifaces) == [1, 2, 3, 4, 49]
        e1 = ifaces[1]
        assert (e1.name, e1.alias, e1.admin_up, e1.oper_up, e1.speed_mbps) == ("Ethernet1", "n1", True, True, 25000)
        assert e1.counters_64 and e1.in_octets > 2**32  # the lab's bases are 40-bit: HC counters read
        assert e1.mac is not None and len(e1.mac) == 17
        assert (ifaces[3].admin_up, ifaces[3].oper_up) == (False, False)
        assert (ifaces[4].oper_up, ifaces[4].speed_mbps, ifaces[49].speed_mbps) == (False, 1000, 100000)

        assert await client.lldp_neighbours() == [
            LldpNeighbour("Ethernet1", N1_MAC, "eno1", "eno1", "n1"),
            LldpNeighbour("Ethernet2", N2_MAC, N2_MAC, N2_MAC, "n2"),
        ]
        assert await client.fdb() == [
            FdbEntry(N1_MAC, 100, "Ethernet1", 1),
            FdbEntry(N2_MAC, 100, "Ethernet2", 2),
            FdbEntry(BEHIND_UPLINK[0], 100, "Ethernet49", 49),
            FdbEntry(BEHIND_UPLINK[1], 100, "Ethernet49", 49),
        ]
    finally:
        await client.close()
    with pytest.raises(DriverError, match="closed"):
        await client.system()


async def test_secrets_are_resolved_lazily_and_never_shown(env: Env) -> None:
    client = env.client(env.switch(community="env:NOT_SET"))  # constructing resolves nothing
    from console.errors import SecretError
    with pytest.raises(SecretError):
        await client.system()
    assert SECRETS["COMMUNITY"] not in repr(env.client())


async def test_clients_share_one_engine_concurrently(env: Env, engine) -> None:
    import asyncio

    v2c, v3 = env.client(), env.client(env.v3())
    results = await asyncio.gather(v2c.system(), v3.interfaces(), v2c.fdb(), v3.lldp_neighbours(), v2c.interfaces())
    assert results[0].name == "sw1" and len(results[1]) == 5 and len(results[2]) == 4 and len(results[3]) == 2
    assert shared_engine() is engine  # no engine per client


async def test_fdb_falls_back_to_the_bridge_mib(engine) -> None:
    from pysnmp.proto import rfc1902

    from console.drivers import snmp

    class NoQBridge(SnmpClient):
        async def _walk(self, *columns):  # the switch has BRIDGE-MIB only
            table = {
                snmp.DOT1D_BASE_PORT_IF_INDEX: {(1,): rfc1902.Integer32(11), (2,): rfc1902.Integer32(12)},
                snmp.IF_NAME: {(11,): rfc1902.OctetString("xe-0/0/1"), (12,): rfc1902.OctetString("xe-0/0/2")},
                snmp.DOT1D_TP_FDB_PORT: {(0x52, 0x54, 0, 0, 0, 1): rfc1902.Integer32(2),
                                         (0x52, 0x54, 0, 0, 0, 2): rfc1902.Integer32(0),  # port unknown
                                         (0x52, 0x54, 0, 0, 0, 3): rfc1902.Integer32(1)},
                snmp.DOT1D_TP_FDB_STATUS: {(0x52, 0x54, 0, 0, 0, 3): rfc1902.Integer32(4)},  # self
            }
            return {c: table.get(c, {}) for c in columns}

    switch = Switch(name="old", address=ADDRESS, port=9, snmp=SnmpConfig(community="env:COMMUNITY"))
    client = NoQBridge(switch, Secrets(environ=SECRETS))
    assert await client.fdb() == [FdbEntry("52:54:00:00:00:01", None, "xe-0/0/2", 12)]


# --------------------------------------------------------------------------- failures
async def test_wrong_community_is_a_timeout(env: Env) -> None:
    # An agent that does not know a community does not answer (RFC 3584): no AuthFailed possible.
    client = env.client(env.switch(community="env:WRONG_COMMUNITY"), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        await client.system()
    assert time.monotonic() - started < 2
    assert SECRETS["WRONG_COMMUNITY"] not in str(info.value)


@pytest.mark.parametrize("keys", [("env:WRONG", "env:PRIV"), ("env:AUTH", "env:WRONG")], ids=["auth", "priv"])
async def test_wrong_v3_key_is_auth_failed(env: Env, keys: tuple[str, str]) -> None:
    # pysnmp 7.1.30 gets the agent's Report PDU: WrongDigest (auth key) or DecryptionError (priv key).
    with pytest.raises(AuthFailed) as info:
        await env.client(env.v3(*keys)).system()
    assert all(v not in str(info.value) for v in SECRETS.values())
    # The right keys still work on the same shared engine afterwards.
    assert (await env.client(env.v3()).system()).name == "sw1"


async def test_fault_garbage_is_a_protocol_error(env: Env) -> None:
    env.lab.fault["sw1"] = "garbage"
    client = env.client(timeout=0.3)
    for read in (client.system, client.interfaces):
        with pytest.raises(ProtocolError, match="undecodable"):
            await read()
    env.lab.fault["sw1"] = ""
    assert (await client.system()).name == "sw1"


async def test_fault_silent_is_a_timeout(env: Env) -> None:
    env.lab.fault["sw1"] = "silent"
    client = env.client(timeout=0.2, retries=1)
    with pytest.raises(Timeout, match="0.2 s x 2"):
        await client.interfaces()
    env.lab.fault["sw1"] = ""
    assert len(await client.interfaces()) == 5


async def test_fault_nosuchobject(env: Env) -> None:
    env.lab.fault["sw1"] = "nosuchobject"
    client = env.client()
    with pytest.raises(ProtocolError, match="no IF-MIB data"):
        await client.interfaces()
    with pytest.raises(ProtocolError, match="NoSuchObject"):
        await client._get(IF_DESCR + (1,))  # a GET of a hidden object
    assert (await client.system()).name == "sw1"  # the rest still answers
    assert len(await client.fdb()) == 4


# --------------------------------------------------------------------------- live state
async def test_counters_move_and_rates_are_positive(env: Env) -> None:
    client = env.client()
    before, t0 = await client.interfaces(), env.clock()
    env.clock.advance(10)
    after, t1 = await client.interfaces(), env.clock()
    got = rates(before, t0, after, t1)
    in_bps, out_bps, in_err, out_err = got[1]
    assert 0.02 * 25e9 <= in_bps <= 0.3 * 25e9 and out_bps > 0  # the lab's 2-30 % of 25G
    assert in_err is not None and in_err >= 0 and out_err is not None and out_err >= 0
    assert got[4][:2] == (0.0, 0.0) and got[3][:2] == (0.0, 0.0)  # link down, admin down


async def test_link_down_drops_oper_fdb_and_lldp(env: Env) -> None:
    client = env.client()
    env.links[1] = False  # node n1 powered off
    ifaces = {i.ifindex: i for i in await client.interfaces()}
    assert ifaces[1].oper_up is False and ifaces[1].admin_up is True
    assert N1_MAC not in {e.mac for e in await client.fdb()}
    assert [n.sys_name for n in await client.lldp_neighbours()] == ["n2"]
    env.links[1] = env.links[4] = True
    assert [n.sys_name for n in await client.lldp_neighbours()] == ["n1", "n2", "n4"]
    assert {e.mac: e.port for e in await client.fdb()}[N4_MAC] == "Ethernet4"


async def test_discover_ports_against_the_lab(env: Env) -> None:
    client = env.client()
    fdb, lldp = await client.fdb(), await client.lldp_neighbours()
    found = discover_ports(fdb, lldp, {"n1": N1_MAC, "n2": N2_MAC.upper(), "x": BEHIND_UPLINK[0], "gone": N4_MAC})
    assert found["n1"] == [Evidence("Ethernet1", "fdb", False), Evidence("Ethernet1", "lldp", False)]
    assert found["n2"] == [Evidence("Ethernet2", "fdb", False), Evidence("Ethernet2", "lldp", False)]
    assert found["x"] == [Evidence("Ethernet49", "fdb", True)]  # behind the uplink: ambiguous
    assert found["gone"] == []  # link down


@pytest.mark.parametrize(("auth", "priv"), [("sha", "aes"), ("sha256", "aes256"), ("md5", "des")])
def test_v3_protocols_map_to_pysnmp(auth: str, priv: str) -> None:
    from console.drivers import snmp

    switch = Switch(name="s", address=ADDRESS, snmp=SnmpConfig(
        version="3", username="fleet", auth_protocol=auth, auth_key="env:AUTH",
        priv_protocol=priv, priv_key="env:PRIV"))
    data = SnmpClient(switch, Secrets(environ=SECRETS))._auth_data()
    assert data.authentication_protocol == snmp._AUTH_PROTOCOLS[auth]
    assert data.privacy_protocol == snmp._PRIV_PROTOCOLS[priv]
    assert len(set(snmp._AUTH_PROTOCOLS.values())) == 3 and len(set(snmp._PRIV_PROTOCOLS.values())) == 3


# --------------------------------------------------------------------------- pure helpers
def _iface(ifindex: int = 1, **kw: object) -> Interface:
    base = dict(name=f"Ethernet{ifindex}", alias="", admin_up=True, oper_up=True, speed_mbps=10000,
                in_octets=0, out_octets=0, in_errors=0, out_errors=0, in_discards=0, out_discards=0,
                mac=None, counters_64=True)
    return Interface(ifindex, **(base | kw))  # type: ignore[arg-type]


def test_rates_counter32_wrap_and_reset() -> None:
    prev = [_iface(1, in_octets=2**32 - 1000, out_octets=5000, in_errors=2**32 - 1, counters_64=False)]
    cur = [_iface(1, in_octets=9000, out_octets=6000, in_errors=3, counters_64=False)]
    assert rates(prev, 0.0, cur, 1.0) == {1: (10000 * 8.0, 1000 * 8.0, 4.0, 0.0)}
    # Down by far more than a wrap at line rate could explain: the switch reset the counter.
    prev = [_iface(1, in_octets=1_000_000_000, in_errors=500, counters_64=False)]
    cur = [_iface(1, in_octets=100, in_errors=10, counters_64=False)]
    assert rates(prev, 0.0, cur, 1.0)[1] == (None, 0.0, None, 0.0)


def test_rates_counter64_and_edges() -> None:
    prev = [_iface(1, in_octets=2**64 - 100), _iface(2, in_octets=10**12), _iface(3)]
    cur = [_iface(1, in_octets=400), _iface(2, in_octets=5), _iface(9)]
    got = rates(prev, 10.0, cur, 12.0)
    assert got[1][0] == 500 * 8 / 2  # 64-bit wrap
    assert got[2][0] is None  # 64-bit counters going down: a reset
    assert set(got) == {1, 2}  # only interfaces in both samples
    assert rates(prev, 10.0, cur, 10.0) == {}
    mixed = rates([_iface(1, counters_64=False)], 0, [_iface(1)], 1)
    assert mixed == {1: (None, None, None, None)}


def test_discover_ports_miscabled_ambiguous_and_lldp_only() -> None:
    fdb = [
        FdbEntry("52:54:00:00:00:01", 100, "Ethernet7", 7),  # n1's MAC, on the wrong port
        FdbEntry("52:54:00:00:00:02", 100, "Ethernet48", 48),
        FdbEntry("52:54:00:00:00:03", 100, "Ethernet48", 48),  # uplink: two MACs learned
        FdbEntry("52:54:00:00:00:03", 200, "Ethernet48", 48),
    ]
    lldp = [
        LldpNeighbour("Ethernet9", "aa:aa:aa:aa:aa:aa", "eno1", "eno1", "n4"),  # by name only
        LldpNeighbour("Ethernet10", "local-chassis", "52:54:00:00:00:05", "", "host"),  # by port-id MAC
    ]
    macs = {"n1": "52:54:00:00:00:01", "n2": "52-54-00-00-00-02", "n4": "52:54:00:00:00:04",
            "n5": "5254.0000.0005", "n6": "52:54:00:00:00:06"}
    found = discover_ports(fdb, lldp, macs)
    assert found["n1"] == [Evidence("Ethernet7", "fdb", False)]  # inventory says Ethernet1: miscabled
    assert found["n2"] == [Evidence("Ethernet48", "fdb", True)]
    assert found["n4"] == [Evidence("Ethernet9", "lldp", False)]
    assert found["n5"] == [Evidence("Ethernet10", "lldp", False)]
    assert found["n6"] == []


def test_port_map_recomputes_the_nodes_a_switch_sees_saw_or_should_see() -> None:
    macs = {"n1": "52:54:00:00:00:01", "n2": "52:54:00:00:00:02", "n3": "52:54:00:00:00:03",
            "n9": "52:54:00:00:00:09"}
    ports = PortMap(macs, ["sw-a", "sw-b"], cabled={"sw-a": ["n1", "n2", "no-mac"], "sw-b": ["n3", "n9"]})
    a_fdb = [FdbEntry("52:54:00:00:00:01", 100, "Ethernet1", 1), FdbEntry("52:54:00:00:00:03", 100, "Ethernet3", 3)]
    # the first switch's tables: every node with a MAC (so n9, seen nowhere, is said so too)
    assert ports.update("sw-a", a_fdb, []) == {"n1", "n2", "n3", "n9"}
    assert ports.evidence("n3") == [("sw-a", Evidence("Ethernet3", "fdb", False))]
    # sw-b sees n3 too: its own nodes, cabled or seen, not sw-a's
    b_lldp = [LldpNeighbour("Ethernet3", "52:54:00:00:00:03", "eno1", "eno1", "n3")]
    assert ports.update("sw-b", [], b_lldp) == {"n3", "n9"}
    assert ports.evidence("n3") == [("sw-a", Evidence("Ethernet3", "fdb", False)),
                                    ("sw-b", Evidence("Ethernet3", "lldp", False))]
    # n3 leaves sw-a: sw-a's next poll recomputes it (it saw it), and n2 (cabled to it)
    assert ports.update("sw-a", a_fdb[:1], []) == {"n1", "n2", "n3"}
    assert ports.evidence("n3") == [("sw-b", Evidence("Ethernet3", "lldp", False))]
    assert ports.evidence("n9") == []
    # the same answers discover_ports gives a switch, node by node
    assert {n: [ev for sw, ev in ports.evidence(n) if sw == "sw-a"] for n in macs} == discover_ports(a_fdb[:1], [], macs)


def test_interface_is_frozen() -> None:
    i = _iface()
    with pytest.raises(FrozenInstanceError):
        i.in_octets = 5  # type: ignore[misc]
    assert replace(i, in_octets=5).in_octets == 5


async def test_the_client_socket_is_bound_to_the_source_address_not_the_wildcard(env: Env, engine) -> None:
    """pysnmp's client socket was bound to 0.0.0.0 (every interface of a shared jump host)."""
    from console.drivers.route import source_address

    client = env.client()
    try:
        assert (await client.system()).name == "sw1"
        transport = engine.transport_dispatcher.get_transport(client._target.TRANSPORT_DOMAIN)
        local = transport.transport.get_extra_info("sockname")
        assert local[0] == source_address(ADDRESS, env.port) != "0.0.0.0"
    finally:
        await client.close()
