"""The IPMI driver (console.drivers.ipmi) against in-process lab BMCs on 127.81.x.y.

The lab machines run on an asyncio loop in a background thread with ``time_scale=0.01``
and a frozen clock; the drivers run on a per-test thread pool that is shut down (and so
proved idle) at the end.  Every test checks that no RMCP+ session is left on any BMC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from console.drivers import ipmi
from console.drivers import ipmi_values as iv
from console.drivers.bmc import BmcDriver, BootOverride, BootTarget, PowerAction, PowerState
from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.lab.ipmi_bmc import IpmiLab
from console.lab.machine import BootDevice, Machine, MachineSpec, Phase
from console.secrets import Secret
from inventory.model import Bmc
from tests.support import wait_for

USER, PASSWORD = "admin", "s3cret-pw"
FROZEN_NOW = 1_700_000_000.0
A, B, C = "127.81.0.1", "127.81.0.2", "127.81.0.3"


async def until(read: Callable[[], Awaitable[object]], want: object, timeout: float = 5.0) -> None:
    """Poll ``read()`` (through the driver, as the poller would) until it returns ``want``."""
    deadline = time.monotonic() + timeout
    while (got := await read()) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"still {got!r}, wanted {want!r}")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ fixtures
class Lab:
    """An IpmiLab plus its machines and ports; stopped (and checked empty) at teardown."""

    def __init__(self, machine_loop: asyncio.AbstractEventLoop) -> None:
        self.ipmi = IpmiLab()
        self.loop = machine_loop
        self.machines: dict[str, Machine] = {}
        self.ports: dict[str, int] = {}

    def add(self, address: str, name: str, fault: str | None = None) -> Machine:
        spec = MachineSpec(name=name, mac="52:54:00:81:{:02x}:{:02x}".format(*map(int, address.split(".")[2:])),
                           bmc_address=address, host_address=address.replace("127.81.", "127.82."),
                           image=("flatcar", "3975.2.0"), fault=fault)
        machine = Machine(spec, self.loop, time_scale=0.01, clock=lambda: FROZEN_NOW)
        self.machines[address] = machine
        self.ports[address] = self.ipmi.add(machine, address, 0, USER.encode(), PASSWORD.encode())
        return machine


@pytest.fixture
def lab(machine_loop) -> Iterator[Lab]:
    """Three BMCs: A has a failed fan, B and C are healthy."""
    lab = Lab(machine_loop)
    lab.add(A, "ipmi-a", fault="fan")
    lab.add(B, "ipmi-b")
    lab.add(C, "ipmi-c")
    lab.ipmi.start()
    yield lab
    try:
        wait_for(lambda: lab.ipmi.session_count() == 0, what="every driver session to be closed")
    finally:
        lab.ipmi.stop()
    assert not [t for t in threading.enumerate() if t.name == "ipmi-lab"]


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-ipmi")
    yield pool
    pool.shutdown(wait=True)  # a worker stuck past its deadline would hang here


@pytest.fixture
async def connect(lab, executor):
    """``connect(address, password=..., timeout=...)`` -> IpmiDriver; all closed at teardown."""
    drivers: list[ipmi.IpmiDriver] = []

    def make(address: str, password: str = PASSWORD, timeout: float = 3.0) -> ipmi.IpmiDriver:
        bmc = Bmc(protocol="ipmi", address=address, port=lab.ports[address], username=USER,
                  password="env:UNUSED_IN_TESTS")
        driver = ipmi.IpmiDriver(bmc, Secret(password), timeout=timeout, executor=executor)
        drivers.append(driver)
        return driver

    yield make
    await asyncio.gather(*(d.close() for d in drivers))


# --------------------------------------------------------------------- tests
async def test_is_a_bmc_driver(connect):
    driver = connect(A)
    assert isinstance(driver, BmcDriver)
    assert "s3cret" not in repr(driver)


async def test_power_off_on_cycle_reset_soft_polled_back(lab, connect):
    driver, machine = connect(B), lab.machines[B]
    assert await driver.power_state() == PowerState.ON
    await driver.power(PowerAction.OFF)
    await until(driver.power_state, PowerState.OFF)
    assert not machine.powered

    await driver.power(PowerAction.ON)
    await until(driver.power_state, PowerState.ON)
    wait_for(lambda: machine.phase == Phase.RUNNING, what="boot after power on")

    boots = machine.boots
    await driver.power(PowerAction.CYCLE)
    wait_for(lambda: machine.boots > boots and machine.phase == Phase.RUNNING, what="boot after cycle")
    assert "S5/G2: soft-off" in [e.message for e in machine.events()][-3:]  # a real power cycle, not a reset

    boots = machine.boots
    await driver.power(PowerAction.RESET)
    wait_for(lambda: machine.boots > boots and machine.phase == Phase.RUNNING, what="boot after reset")

    await driver.power(PowerAction.SOFT)  # ACPI: the running OS shuts itself down
    await until(driver.power_state, PowerState.OFF)

    await driver.power(PowerAction.CYCLE)  # cycling a machine that is off powers it on
    await until(driver.power_state, PowerState.ON)
    assert lab.ipmi.session_count(B) == 1  # all of it on one session


async def test_boot_override_once_persistent_and_cleared(lab, connect):
    driver, machine = connect(B), lab.machines[B]
    assert await driver.boot_override() == BootOverride(BootTarget.NONE)

    await driver.set_boot_override(BootTarget.PXE)
    assert await driver.boot_override() == BootOverride(BootTarget.PXE, persistent=False)
    assert (machine.boot_override, machine.boot_override_persistent) == (BootDevice.PXE, False)

    await driver.set_boot_override(BootTarget.DISK, persistent=True)
    assert await driver.boot_override() == BootOverride(BootTarget.DISK, persistent=True)

    await driver.set_boot_override(BootTarget.BIOS)
    assert machine.boot_override == BootDevice.BIOS

    await driver.set_boot_override(BootTarget.NONE, persistent=True)  # "persistent none" is just none
    assert await driver.boot_override() == BootOverride(BootTarget.NONE)
    assert machine.boot_override == BootDevice.NONE


async def test_sensors_with_thresholds_and_fan_fault_is_critical(lab, connect):
    a, b = connect(A), connect(B)
    sensors = {s.name: s for s in await a.sensors()}
    expected = {s.name: s for s in lab.machines[A].sensors()}
    assert list(sensors) == list(expected)
    tolerance = {"C": 0.51, "RPM": 25.1, "V": 0.041, "W": 2.51}
    for name, want in expected.items():
        got = sensors[name]
        assert abs(got.value - want.value) <= tolerance[got.unit], (name, got.value, want.value)
        assert got.kind == want.kind
        for bound in ("lower_critical", "lower_warning", "upper_warning", "upper_critical"):
            assert getattr(got, bound) == getattr(want, bound), (name, bound)
    assert sensors["FAN3"].health == "critical" and sensors["FAN3"].value == 0.0
    assert sensors["CPU1 Temp"].unit == "C" and sensors["CPU1 Temp"].health == "ok"
    assert sensors["12V"].unit == "V"

    assert await a.health() == "critical"
    assert await b.health() == "ok"
    assert all(s.health == "ok" for s in await b.sensors())
    assert lab.ipmi.session_count(A) == 1  # thresholds, readings and health on one session


async def test_events_newest_last_with_limit(lab, connect):
    driver, machine = connect(A), lab.machines[A]
    events = await driver.events()
    assert len(events) == len(machine.events())
    fan = [e for e in events if e.sensor == "FAN3"]
    assert fan and fan[0].severity == "critical"
    assert fan[0].message == "FAN3 (Fan): Lower Critical going low, reading 0 RPM < threshold 1000 RPM  asserted"
    assert all(e.timestamp is not None for e in events)

    await driver.power(PowerAction.OFF)
    await until(driver.power_state, PowerState.OFF)
    newest = await driver.events(limit=1)
    assert len(newest) == 1 and int(newest[0].id) > int(events[-1].id)
    assert await driver.events(limit=0) == []


async def test_identity(lab, connect):
    machine = lab.machines[B]
    identity = await connect(B).identity()
    assert identity.vendor == "Fleet Lab" and identity.model == "FL-1000"
    assert identity.serial == machine.serial_number
    assert identity.uuid == str(machine.uuid)
    assert identity.bmc_firmware == "2.71"


async def test_session_is_kept_and_close_logs_out(lab, connect):
    driver = connect(B)
    await driver.power_state()
    poll = driver._rmcp
    assert lab.ipmi.session_count(B) == 1
    await driver.power_state()
    await driver.health()
    await driver.boot_override()
    assert driver._rmcp is poll and poll.logins == 1  # the same poll session
    assert lab.ipmi.session_count(B) == 1

    await driver.close()
    wait_for(lambda: lab.ipmi.session_count(B) == 0, what="logout")
    await driver.close()  # idempotent
    with pytest.raises(DriverError, match="closed"):
        await driver.power_state()


async def test_every_job_of_many_polls_runs_on_one_session(lab, connect):
    """The README's promise: one session per BMC while it is polled.  Sensors, SEL and FRU are
    decoded by pyghmi, but sent on the poll session (a pyghmi session beside it made two)."""
    driver = connect(A)
    for _ in range(3):
        assert await driver.power_state() == PowerState.ON
        assert await driver.health() == "critical"
        assert len(await driver.sensors()) == 9
        assert await driver.events()
        assert (await driver.identity()).model == "FL-1000"
        await driver.boot_override()
        assert lab.ipmi.session_count(A) == 1
    assert driver._rmcp.logins == 1


async def test_wrong_password_is_auth_failed_quickly(lab, connect):
    started = time.monotonic()
    with pytest.raises(AuthFailed) as info:
        await connect(B, password="not-the-password").power_state()
    assert time.monotonic() - started < 1.0
    assert "not-the-password" not in str(info.value) and B in str(info.value)
    assert lab.ipmi.session_count() == 0
    assert await connect(B).power_state() == PowerState.ON  # the right one still works


async def test_silent_bmc_times_out_while_another_still_works(lab, connect):
    lab.ipmi.fault[C] = "silent"
    silent, healthy = connect(C, timeout=0.5), connect(B)
    started = time.monotonic()
    results = await asyncio.gather(silent.power_state(), healthy.power_state(), healthy.sensors(),
                                   return_exceptions=True)
    elapsed = time.monotonic() - started
    assert isinstance(results[0], Unreachable), results[0]  # it never answered: not merely slow
    assert results[1] == PowerState.ON and len(results[2]) == 9
    assert 0.5 <= elapsed < 1.5
    lab.ipmi.fault.pop(C)
    assert await silent.power_state() == PowerState.ON  # recovers once the BMC answers again


@pytest.mark.parametrize("job", ["identity", "power_state", "sensors", "events"])
async def test_a_bmc_that_never_answers_is_unreachable_naming_its_address(executor, job):
    """Nothing answers at the address (a socket that reads and never replies): every call says
    so, with the address and port and how long it waited, within the call's timeout (this once
    read "identity: the BMC refused: None", 45 s later)."""
    from console.live.poller import _reason

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as deaf:
        deaf.bind(("127.0.0.250", 0))
        port = deaf.getsockname()[1]
        bmc = Bmc(protocol="ipmi", address="127.0.0.250", port=port, username=USER, password="env:UNUSED")
        driver = ipmi.IpmiDriver(bmc, Secret(PASSWORD), timeout=0.5, executor=executor)
        try:
            with pytest.raises(Unreachable) as info:
                await getattr(driver, job)()
        finally:
            await driver.close()
        assert deaf.recv(2048)  # it was asked
    assert str(info.value) == f"no answer from 127.0.0.250:{port} after 0.5 s"
    assert _reason(info.value) == f"unreachable: no answer from 127.0.0.250:{port} after 0.5 s"  # the node's ERROR


async def test_established_session_going_silent_times_out_then_recovers(lab, connect):
    driver = connect(C, timeout=0.5)
    assert await driver.power_state() == PowerState.ON
    lab.ipmi.fault[C] = "silent"
    started = time.monotonic()
    with pytest.raises(Timeout):
        await driver.power_state()
    assert time.monotonic() - started < 1.2  # the worker gave up at the deadline, not after pyghmi's ~30 s
    lab.ipmi.fault.pop(C)
    assert await driver.power_state() == PowerState.ON  # a new session
    # The abandoned session's Close Session went to a silent BMC: it idles out there.
    lab.ipmi.session_timeout = 0.3


async def test_garbage_answers_are_a_driver_error_not_a_crash(lab, connect):
    lab.ipmi.fault[C] = "garbage"
    liar, healthy = connect(C, timeout=0.5), connect(B)
    results = await asyncio.gather(liar.power_state(), healthy.power_state(), return_exceptions=True)
    assert isinstance(results[0], ProtocolError), results[0]
    assert results[1] == PowerState.ON  # another thread never trips over the junk
    with pytest.raises(DriverError):
        await liar.identity()
    assert await healthy.sensors()
    lab.ipmi.fault.pop(C)
    assert await liar.power_state() == PowerState.ON


async def test_a_call_queued_behind_busy_workers_times_out_and_keeps_its_session(lab):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-ipmi-one")

    def make(address: str, timeout: float) -> ipmi.IpmiDriver:
        bmc = Bmc(protocol="ipmi", address=address, port=lab.ports[address], username=USER, password="env:X")
        return ipmi.IpmiDriver(bmc, Secret(PASSWORD), timeout=timeout, executor=pool)

    silent, healthy = make(C, 0.6), make(B, 0.3)
    try:
        await healthy.sensors()
        kept = healthy._command
        lab.ipmi.fault[C] = "silent"
        results = await asyncio.gather(silent.sensors(), healthy.sensors(), healthy.power_state(),
                                       return_exceptions=True)
        assert isinstance(results[0], Unreachable)  # never logged in: nothing answered
        assert isinstance(results[1], Timeout) and "no free IPMI worker" in str(results[1])
        assert results[2] == PowerState.ON  # the poll path needs no worker thread
        assert await healthy.sensors()
        assert healthy._command is kept  # the healthy session was not thrown away
    finally:
        lab.ipmi.fault.pop(C, None)
        await asyncio.gather(silent.close(), healthy.close())
        pool.shutdown(wait=True)


async def test_twenty_bmcs_polled_concurrently(machine_loop, executor):
    lab = Lab(machine_loop)
    addresses = [f"127.81.1.{i}" for i in range(1, 21)]
    for i, address in enumerate(addresses):
        lab.add(address, f"ipmi-many-{i:02d}")
    lab.ipmi.start()
    drivers = [ipmi.IpmiDriver(Bmc(protocol="ipmi", address=a, port=lab.ports[a], username=USER, password="env:X"),
                               Secret(PASSWORD), timeout=5.0, executor=executor) for a in addresses]
    try:
        rounds = []
        for _ in range(5):
            started = time.monotonic()
            states = await asyncio.gather(*(d.power_state() for d in drivers))
            rounds.append(time.monotonic() - started)
            assert states == [PowerState.ON] * 20
        assert lab.ipmi.session_count() == 20  # one kept session per BMC
        assert sorted(rounds)[2] < 0.5, rounds  # no round waits for a retransmit timer
    finally:
        await asyncio.gather(*(d.close() for d in drivers))
        try:
            wait_for(lambda: lab.ipmi.session_count() == 0, what="20 logouts")
        finally:
            lab.ipmi.stop()


# ------------------------------------------------------------ pure functions
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Incorrect password provided", AuthFailed),
        ("Unauthorized name in RAKP2", AuthFailed),
        ("Invalid RAKP4 integrity code (wrong Kg?)", AuthFailed),
        ("timeout", Timeout),
        ("Session no longer connected", Timeout),
        ("Unable to establish IPMI v2 / RMCP+ session", Unreachable),
        ("Unable to transmit to specified address", Unreachable),
        ("Invalid command", DriverError),
    ],
)
def test_map_error_for_pyghmi_messages(message, expected):
    from pyghmi.exceptions import IpmiException

    mapped = ipmi.map_error(IpmiException(message), "10.0.0.1: power state")
    assert type(mapped) is expected
    assert str(mapped).startswith("10.0.0.1: power state")


def test_map_error_for_other_failures_never_shows_the_password():
    import struct

    assert isinstance(ipmi.map_error(struct.error("unpack requires a buffer"), "x"), ProtocolError)
    assert isinstance(ipmi.map_error(OSError("No route to host"), "x"), Unreachable)
    mapped = ipmi.map_error(ValueError("bad s3cret-pw here"), "x", PASSWORD)
    assert PASSWORD not in str(mapped) and isinstance(mapped, ProtocolError)


def test_values_boot_health_and_events():
    assert iv.boot_override_from({"bootdev": "default", "persistent": True}) == BootOverride(BootTarget.NONE)
    assert iv.boot_override_from({"bootdev": "network", "persistent": True}) == BootOverride(BootTarget.PXE, True)
    assert iv.boot_override_from({"bootdev": 9, "persistent": False}).target is BootTarget.OTHER
    assert iv.boot_override_from({"bootdev": "floppy", "persistent": True}) == BootOverride(BootTarget.OTHER, True)
    # Get System Boot Options parameter 5 replies: version, parameter, data 1..5
    assert iv.boot_flags_from(bytes([1, 5, 0x80, 0x04, 0, 0, 0])) == BootOverride(BootTarget.PXE)
    assert iv.boot_flags_from(bytes([1, 5, 0xC0, 0x08, 0, 0, 0])) == BootOverride(BootTarget.DISK, True)
    # not valid (OpenIPMI ipmi_sim keeps them so): none, with the device the selector names
    assert iv.boot_flags_from(bytes([1, 5, 0x00, 0x04, 0, 0, 0])) == BootOverride(BootTarget.NONE,
                                                                                unflagged=BootTarget.PXE)
    assert iv.boot_flags_from(bytes([1, 5, 0x00, 0x00, 0, 0, 0])) == BootOverride(BootTarget.NONE)
    assert iv.boot_flags_from(bytes([1, 0x85, 0x80, 0x04, 0, 0, 0])) == BootOverride(BootTarget.NONE)  # locked
    assert iv.boot_flags_from(bytes([1, 5, 0x80, 0x3C, 0, 0, 0])) == BootOverride(BootTarget.OTHER)  # floppy/USB
    with pytest.raises(ValueError):
        iv.boot_flags_from(bytes([1, 4, 0x80]))
    assert iv.boot_flags_request(BootTarget.CD, True) == bytes([5, 0xC0, 0x14, 0, 0, 0])
    assert iv.boot_flags_request(BootTarget.NONE, False) == bytes([5, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        iv.boot_flags_request(BootTarget.OTHER, False)
    assert [iv.health_word(b) for b in (0, 1, 2, 3, 4, None)] == ["ok", "warning", "critical", "critical",
                                                                  "critical", "unknown"]
    event = iv.event_from({"record_id": 7, "component": "PSU1", "event": "Failure detected", "severity": 2,
                           "deassertion": True})
    assert (event.id, event.timestamp, event.severity, event.sensor) == ("7", None, "critical", "PSU1")
    assert event.message == "PSU1: Failure detected  deasserted"
    identity = iv.identity_from({"Manufacturer": "X", "UUID": "AB-CD", "MAC Address 1": "AA-BB-CC-DD-EE-01"},
                                [("BMC Version", {"version": "1.2"}), ("UEFI", {"version": "3.4"})])
    assert (identity.uuid, identity.bmc_firmware, identity.bios_version, identity.macs) == (
        "ab-cd", "1.2", "3.4", ("aa:bb:cc:dd:ee:01",))


# ------------------------------------------------------------------ SEL lines, decoded
async def test_sel_lines_name_the_sensor_its_type_and_what_happened(machine_loop, executor):
    """The lab's faults as a BMC logs them: every line names its sensor (event-only sensors
    too, from their SDR records), its type, the event in the spec's words, and the state."""
    lab = Lab(machine_loop)
    psu = lab.add(A, "ipmi-psu", fault="psu")
    lab.add(B, "ipmi-hot", fault="overtemp")
    lab.ipmi.start()
    drivers = []
    try:
        for address in (A, B):
            bmc = Bmc(protocol="ipmi", address=address, port=lab.ports[address], username=USER,
                      password="env:UNUSED_IN_TESTS")
            drivers.append(ipmi.IpmiDriver(bmc, Secret(PASSWORD), timeout=3.0, executor=executor))
        psu.power_off()
        lines = [e.message for e in await drivers[0].events()]
        assert lines == [
            "Event Log (Event Logging Disabled): Log area reset/cleared  asserted",
            "PSU2 (Power Supply): Power Supply AC lost  asserted",
            "12V (Voltage): Lower Critical going low, reading 10.56 V < threshold 10.8 V  asserted",
            "ACPI State (System ACPI Power State): S5/G2 soft-off  asserted",
        ], lines
        events = await drivers[0].events()
        assert [e.severity for e in events] == ["ok", "critical", "critical", "ok"]
        assert [e.sensor for e in events] == ["Event Log", "PSU2", "12V", "ACPI State"]
        assert not any("Sensor 32." in line for line in lines)
        hot_lines = [e.message for e in await drivers[1].events()]
        assert ("CPU1 Temp (Temperature): Upper Critical going high, reading 96 C > threshold 95 C  asserted"
                in hot_lines)
        assert "CPU1 Status (Processor): Processor automatically throttled  asserted" in hot_lines
        # the health poll reads only the threshold sensors: event-only records change nothing there
        assert await drivers[1].health() == "critical"
    finally:
        await asyncio.gather(*(d.close() for d in drivers))
        try:
            wait_for(lambda: lab.ipmi.session_count() == 0, what="every driver session to be closed")
        finally:
            lab.ipmi.stop()


def test_event_words_from_the_tables_when_pyghmi_has_none():
    """pyghmi's record is used where it decoded; else the bytes are decoded with table 42-3."""
    # an unnamed sensor (no SDR record): its number and type
    acpi = iv.event_from({"record_id": 3, "component": "Sensor 32.161.0", "component_id": "32.161.0",
                          "component_type_id": 0x22, "event_id": "111.0", "event": "Online", "severity": 0})
    assert acpi.message == "sensor A1h (System ACPI Power State): S0/G0 working  asserted"
    assert acpi.sensor == "System ACPI Power State"
    # a deasserted sensor-specific event is over: ok
    ac = iv.event_from({"record_id": 4, "component": "PS2 Status", "component_type_id": 8, "event_id": "111.3",
                        "deassertion": True, "severity": 0})
    assert (ac.message, ac.severity) == ("PS2 Status (Power Supply): Power Supply AC lost  deasserted", "ok")
    # a record pyghmi could not decode (EvM revision 5): its bytes, decoded here
    raw = bytes([0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x05, 0x0C, 0x41, 0x6F, 0x01, 0xFF, 0xFF])
    ecc = iv.event_from({"record_id": 9, "timecode": 0, "oemdata": raw})
    assert ecc.message == "sensor 41h (Memory): Uncorrectable ECC  asserted" and ecc.severity == "critical"
    # a threshold event without a scale: the words, no numbers
    hot = iv.event_from({"record_id": 5, "component": "CPU1 Temp", "component_id": "32.2.0",
                         "component_type_id": 1, "event_id": "1.9", "triggered_value": 96, "threshold_value": 95})
    assert hot.message == "CPU1 Temp (Temperature): Upper Critical going high  asserted"
    # an OEM record: its bytes
    oem = iv.event_from({"record_id": 6, "oemid": b"\x01\x02\x03", "oemdata": b"\xaa\xbb"})
    assert oem.message == "OEM record: aa bb" and oem.sensor == ""
    # words from the BMC's SDR are kept as they came (the screens make control characters visible)
    odd = iv.event_from({"record_id": 8, "component": "FAN\x1b[2J", "component_type_id": 4, "event_id": "1.2"})
    assert odd.message.startswith("FAN\x1b[2J (Fan): Lower Critical going low")
