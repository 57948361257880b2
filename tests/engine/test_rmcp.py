"""The asyncio RMCP+ client (console.drivers.rmcp) against in-process lab BMCs on 127.83.x.y.

Real packets over loopback to :class:`console.lab.ipmi_bmc.IpmiLab`; every test checks
(in the fixture) that no session is left open on any BMC.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Iterator

import pytest

from console.drivers import rmcp
from console.drivers.bmc import PowerState
from console.drivers.ipmi import IpmiDriver
from console.drivers.route import source_address
from console.errors import AuthFailed, DriverError, ProtocolError, Unreachable
from console.lab.ipmi_bmc import IpmiLab
from console.lab.machine import BootDevice, Machine, MachineSpec
from console.secrets import Secret
from inventory.model import Bmc
from tests.support import wait_for

USER, PASSWORD = b"admin", b"rmcp-pw"
OK, FAN, PSU, HOT = "127.83.0.1", "127.83.0.2", "127.83.0.3", "127.83.0.4"


class Lab:
    def __init__(self, machine_loop: asyncio.AbstractEventLoop) -> None:
        self.ipmi = IpmiLab()
        self.machines: dict[str, Machine] = {}
        self.ports: dict[str, int] = {}
        for address, fault in ((OK, None), (FAN, "fan"), (PSU, "psu"), (HOT, "overtemp")):
            spec = MachineSpec(name=f"rmcp-{address.rsplit('.', 1)[1]}", mac=f"52:54:00:83:00:0{address[-1]}",
                               bmc_address=address, host_address=address.replace("127.83.", "127.84."), fault=fault)
            self.machines[address] = Machine(spec, machine_loop, time_scale=0.01)
            self.ports[address] = self.ipmi.add(self.machines[address], address, 0, USER, PASSWORD)
        self.ipmi.start()


@pytest.fixture
def lab(machine_loop) -> Iterator[Lab]:
    lab = Lab(machine_loop)
    yield lab
    try:
        wait_for(lambda: lab.ipmi.session_count() == 0, what="every session to be closed")
    finally:
        lab.ipmi.stop()


@pytest.fixture
async def session(lab):
    """``session(address, password=..., timeout=...)`` -> RmcpSession; all closed at teardown."""
    made: list[rmcp.RmcpSession] = []

    def make(address: str, password: bytes = PASSWORD, timeout: float = 2.0) -> rmcp.RmcpSession:
        s = rmcp.RmcpSession(address, lab.ports[address], USER, password, timeout=timeout)
        made.append(s)
        return s

    yield make
    await asyncio.gather(*(s.close() for s in made))


async def test_chassis_status_power_and_fault_bits(lab, session):
    ok, fan, psu = session(OK), session(FAN), session(PSU)
    data = await ok.request(0x00, 0x01)
    assert data[0] & 0x01 == 1 and data[0] & 0x08 == 0 and data[2] & 0x08 == 0
    assert (await fan.request(0x00, 0x01))[2] & 0x08  # cooling/fan fault
    assert (await psu.request(0x00, 0x01))[0] & 0x08  # power fault
    assert lab.ipmi.session_count() == 3 and ok.logins == 1
    for _ in range(5):  # kept: no second login
        await ok.request(0x00, 0x01)
    assert ok.logins == 1 and lab.ipmi.session_count(OK) == 1


async def test_completion_code_is_command_failed(session):
    s = session(OK)
    with pytest.raises(rmcp.CommandFailed) as info:
        await s.request(0x2E, 0x01)  # an OEM netfn the lab does not know
    assert info.value.code == 0xC1
    assert (await s.request(0x06, 0x01))[0] == 0x20  # the session survives it: Get Device ID


async def test_close_logs_out_and_is_counted_by_the_lab(lab, session):
    s = session(OK)
    await s.request(0x00, 0x01)
    assert lab.ipmi.session_count(OK) == 1
    await s.close()
    assert lab.ipmi.session_count(OK) == 0  # Close Session was answered before close() returned
    await s.close()  # idempotent
    with pytest.raises(DriverError, match="closed"):
        await s.request(0x00, 0x01)


async def test_wrong_password_is_auth_failed_and_leaves_nothing_behind(lab, session):
    started = time.monotonic()
    with pytest.raises(AuthFailed) as info:
        await session(OK, password=b"wrong-password").request(0x00, 0x01)
    assert time.monotonic() - started < 1.0
    assert "wrong-password" not in str(info.value)
    # our RAKP 3 with an error status made the BMC drop the half-open session at once
    wait_for(lambda: not lab.ipmi._bmcs[0].sessions, what="the half-open session to go")


async def test_unknown_user_is_auth_failed(lab):
    s = rmcp.RmcpSession(OK, lab.ports[OK], b"nobody", PASSWORD, timeout=2.0)
    with pytest.raises(AuthFailed, match="unauthorized name"):
        await s.request(0x00, 0x01)
    await s.close()


@pytest.mark.parametrize(("fault", "error"), [("silent", Unreachable), ("garbage", ProtocolError),
                                              ("truncated", ProtocolError)])
async def test_bad_bmcs_fail_cleanly_and_recover(lab, session, fault, error):
    lab.ipmi.fault[OK] = fault
    bad, good = session(OK, timeout=0.6), session(FAN)
    started = time.monotonic()
    results = await asyncio.gather(bad.request(0x00, 0x01), good.request(0x00, 0x01), return_exceptions=True)
    assert isinstance(results[0], error), results[0]
    assert isinstance(results[1], bytes)  # the shared socket keeps serving the others
    assert time.monotonic() - started < 1.5
    lab.ipmi.fault.pop(OK)
    assert (await bad.request(0x00, 0x01))[0] & 0x01  # logs in afresh


async def test_established_session_going_silent_then_back(lab, session):
    s = session(OK, timeout=0.6)
    await s.request(0x00, 0x01)
    lab.ipmi.fault[OK] = "truncated"
    with pytest.raises(ProtocolError):
        await s.request(0x00, 0x01)
    lab.ipmi.fault.pop(OK)
    await s.request(0x00, 0x01)
    assert s.logins == 2
    # the first session was given up with a signed Close Session, which the BMC honoured
    wait_for(lambda: lab.ipmi.session_count(OK) == 1, what="the abandoned session to be closed")


async def test_keepalive_holds_an_idle_session(lab, session):
    lab.ipmi.session_timeout = 0.6
    s = session(OK)
    s.keepalive_interval = 0.2
    await s.request(0x00, 0x01)
    await asyncio.sleep(1.5)  # well past the BMC's inactivity timeout
    await s.request(0x00, 0x01)
    assert s.logins == 1 and lab.ipmi.session_count(OK) == 1


async def test_retransmits_after_a_lost_request(lab, session):
    s = session(OK)
    s.retry_interval = 0.05
    await s.request(0x00, 0x01)
    lab.ipmi.fault[OK] = "silent"
    task = asyncio.create_task(s.request(0x00, 0x01))
    await asyncio.sleep(0.08)  # the first try went nowhere
    lab.ipmi.fault.pop(OK)
    assert (await task)[0] & 0x01  # a later try got through, on the same session
    assert s.logins == 1


async def test_driver_poll_path_boot_flags_and_one_session(lab, machine_loop):
    bmc = Bmc(protocol="ipmi", address=FAN, port=lab.ports[FAN], username="admin", password="env:UNUSED")
    driver = IpmiDriver(bmc, Secret(PASSWORD.decode()), timeout=2.0)
    try:
        assert await driver.power_state() == PowerState.ON
        assert await driver.health() == "critical"  # fan fault bit (and the failed fan sensor)
        from console.drivers.bmc import BootOverride, BootTarget

        await driver.set_boot_override(BootTarget.CD, persistent=True)
        assert lab.machines[FAN].boot_override == BootDevice.CD
        assert await driver.boot_override() == BootOverride(BootTarget.CD, True)
        with pytest.raises(DriverError, match="cannot be set"):
            await driver.set_boot_override(BootTarget.OTHER)
        wait_for(lambda: lab.ipmi.session_count(FAN) == 1, what="one session per polled BMC")
    finally:
        await driver.close()


async def test_sensor_health_on_the_poll_session(lab, machine_loop):
    """Overtemperature shows in no chassis bit, only in a sensor: read on the one session."""
    drivers = {a: IpmiDriver(Bmc(protocol="ipmi", address=a, port=lab.ports[a], username="admin",
                                 password="env:UNUSED"), Secret(PASSWORD.decode()), timeout=2.0) for a in (OK, HOT)}
    try:
        for address, want in ((OK, "ok"), (HOT, "critical")):
            d = drivers[address]
            assert await d.power_state() == PowerState.ON
            assert (await d._poll("x", 0x00, 0x01))[0] & 0x08 == 0  # no chassis fault bit
            assert await d.health() == want, address
            assert d._command is None  # pyghmi never logged in
            assert d._sdr is not None and len(d._sdr.thresholds) == 9 and not d._sdr.has_discrete
            assert lab.ipmi.session_count(address) == 1
        d = drivers[HOT]
        d.health_ttl = 0.0  # refreshed on every call now: the SDR is not read again
        sdr = d._sdr
        assert await d.health() == "critical" and d._sdr is sdr
        assert d._rmcp is not None and d._rmcp.logins == 1
    finally:
        await asyncio.gather(*(d.close() for d in drivers.values()))


def test_aes_cbc_matches_the_library():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, iv = bytes(range(16)), bytes(range(16, 32))
    clear = bytes(range(48))
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    want = enc.update(clear) + enc.finalize()
    aes = rmcp._Aes(key)
    assert aes.encrypt(iv, clear) == want
    assert aes.decrypt(iv, want) == clear
    assert struct.calcsize("<IIH") == 10


async def test_the_socket_is_bound_to_the_source_address_and_takes_replies_from_the_bmc_only(lab):
    """The poller's UDP socket does not listen on every interface (it was bound to 0.0.0.0),
    and a forged reply from another address, or from the BMC's address but another port,
    is not taken as the BMC's."""
    import socket

    bmc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a BMC that never answers
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    same_host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        bmc.bind(("127.83.9.1", 0))
        forger.bind(("127.83.9.2", 0))
        same_host.bind(("127.83.9.1", 0))
        s = rmcp.RmcpSession("127.83.9.1", bmc.getsockname()[1], USER, PASSWORD, timeout=1.0)
        call = asyncio.ensure_future(s.request(0x00, 0x01))
        await asyncio.sleep(0)  # the Open Session Request is out
        local = s._ep.sock.getsockname()
        assert local[0] == source_address("127.83.9.1", 623) != "0.0.0.0"
        _, sender = bmc.recvfrom(2048)
        assert sender == local
        # An Open Session Response for our console session ID saying "no free session slots":
        # taken as the BMC's answer, the call would fail with that instead of timing out.
        payload = bytes([0, 0x01, 0, 0]) + struct.pack("<I", s.console_id) + bytes(28)
        forged = (rmcp.RMCP_HEADER + bytes([rmcp.AUTH_RMCP_PLUS, rmcp.PAYLOAD_OPEN_RSP]) + bytes(8)
                  + struct.pack("<H", len(payload)) + payload)
        forger.sendto(forged, local)
        same_host.sendto(forged, local)
        with pytest.raises(Unreachable):
            await call
        # the control: the same packet from the BMC's own address and port is its answer
        bmc.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                bmc.recv(2048)  # the first request's retransmits
        bmc.setblocking(True)
        call = asyncio.ensure_future(s.request(0x00, 0x01))
        await asyncio.sleep(0)
        _, sender = bmc.recvfrom(2048)
        payload = bytes([0, 0x01, 0, 0]) + struct.pack("<I", s.console_id) + bytes(28)
        bmc.sendto(forged[:-len(payload)] + payload, sender)
        with pytest.raises(DriverError, match="no free session slots"):
            await call
    finally:
        for sock in (bmc, forger, same_host):
            sock.close()
