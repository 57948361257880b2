"""The lab's IPMI BMC simulator (console.lab.ipmi_bmc), driven only by third-party clients.

Every protocol check goes through Debian's ``ipmitool`` (``-I lanplus -C 3``) or freeipmi's
``ipmi-power``, so the simulator is held to what real tools accept, not to what our own
driver happens to send.  The machines run on an asyncio loop in a background thread with
``time_scale=0.01`` and a frozen clock, so power transitions take milliseconds and sensor
readings are deterministic.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import pytest

from console.lab.ipmi_bmc import IpmiLab
from console.lab.machine import BootDevice, Machine, MachineSpec, Phase
from tests.support import wait_for

pytestmark = pytest.mark.thirdparty

IPMITOOL = shutil.which("ipmitool")
IPMI_POWER = shutil.which("ipmi-power")
needs_ipmitool = pytest.mark.skipif(IPMITOOL is None, reason="ipmitool not installed (Debian package: ipmitool)")
needs_freeipmi = pytest.mark.skipif(IPMI_POWER is None, reason="ipmi-power not installed (Debian package: freeipmi-tools)")

USER, PASSWORD = "admin", "secret"
FROZEN_NOW = 1_700_000_000.0  # a frozen machine clock makes sensor readings exact
ADDRESS_A, ADDRESS_B = "127.77.0.1", "127.77.0.2"


@dataclass
class LabBmc:
    """One served BMC as a client sees it, plus the machine behind it."""

    machine: Machine
    address: str
    port: int


def ipmitool(bmc: LabBmc, *args: str, password: str = PASSWORD, user: str = USER, cipher: str | None = "3",
             check: bool = True, stdin=None) -> subprocess.CompletedProcess[str]:
    """Run ipmitool against one lab BMC (1 s per try, one retry: failures are quick)."""
    cmd = [IPMITOOL, "-I", "lanplus", "-H", bmc.address, "-p", str(bmc.port), "-U", user, "-P", password,
           "-N", "1", "-R", "1"]
    if cipher is not None:
        cmd += ["-C", cipher]
    result = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, stdin=stdin)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}: rc={result.returncode} {result.stderr}"
    return result


def ipmi_power(*bmcs: LabBmc, args: tuple[str, ...] = ("--stat",), password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    """Run freeipmi's ipmi-power over IPMI 2.0 against one or more lab BMCs."""
    hosts = ",".join(f"{b.address}:{b.port}" for b in bmcs)
    cmd = [IPMI_POWER, "-D", "LAN_2_0", "-h", hosts, "-u", USER, "-p", password,
           "--session-timeout=3000", "--retransmission-timeout=500", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


class SolClient:
    """``ipmitool sol activate`` in a subprocess: type into its stdin, collect its stdout."""

    def __init__(self, bmc: LabBmc) -> None:
        cmd = [IPMITOOL, "-I", "lanplus", "-C", "3", "-H", bmc.address, "-p", str(bmc.port),
               "-U", USER, "-P", PASSWORD, "sol", "activate"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(4096):
            with self._lock:
                self._out += chunk

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._out)

    def expect(self, pattern: bytes, timeout: float = 5.0) -> None:
        wait_for(lambda: pattern in self.output, timeout, f"{pattern!r} on the SOL console; got {self.output[-300:]!r}")

    def type(self, keys: bytes) -> None:
        self.proc.stdin.write(keys)
        self.proc.stdin.flush()

    def quit(self) -> int:
        """Leave with ipmitool's escape sequence (``~.`` at the start of a line)."""
        self.type(b"\r~.")
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        """Kill ipmitool if it still runs (SIGKILL: it cannot deactivate or log out) and clean up."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        self.proc.stdin.close()
        self.proc.stdout.close()


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def lab(machine_loop) -> Iterator[tuple[IpmiLab, LabBmc, LabBmc]]:
    """Two BMCs on different loopback addresses, ephemeral ports; checks nothing is left behind."""
    ipmi_lab = IpmiLab()
    ipmi_lab.sol_retry_interval = 0.1  # a vanished SOL console is given up after ~0.3 s
    ipmi_lab.sol_max_tries = 3
    bmcs = []
    for address, name, fault in ((ADDRESS_A, "lab-a", "fan"), (ADDRESS_B, "lab-b", None)):
        spec = MachineSpec(name=name, mac=f"52:54:00:77:00:{address[-1]}0", bmc_address=address,
                           host_address=f"127.78.0.{address[-1]}", image=("flatcar", "3975.2.0"), fault=fault)
        machine = Machine(spec, machine_loop, time_scale=0.01, clock=lambda: FROZEN_NOW)
        port = ipmi_lab.add(machine, address, 0, USER.encode(), PASSWORD.encode())
        assert port != 0
        bmcs.append(LabBmc(machine, address, port))
    ipmi_lab.start()
    yield ipmi_lab, bmcs[0], bmcs[1]
    ipmi_lab.stop()
    ipmi_lab.stop()  # idempotent
    assert not [t for t in threading.enumerate() if t.name == "ipmi-lab"], "serving thread left running"
    for bmc in bmcs:  # every socket is closed: its address and port can be bound again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((bmc.address, bmc.port))


# --------------------------------------------------------------------- tests
def test_add_binds_only_the_given_loopback_address(machine_loop):
    ipmi_lab = IpmiLab()
    spec = MachineSpec(name="bind", mac="52:54:00:77:01:01", bmc_address="127.77.1.1", host_address="127.78.1.1")
    machine = Machine(spec, machine_loop, time_scale=0.01)
    try:
        port = ipmi_lab.add(machine, "127.77.1.1", 0, b"admin", b"secret")
        # Bound to 127.77.1.1 only: the same port is still free on another loopback address.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.77.1.2", port))
        with pytest.raises(ValueError, match="loopback"):
            ipmi_lab.add(machine, "192.0.2.10", 0, b"admin", b"secret")
    finally:
        ipmi_lab.stop()  # never started: stop still closes the sockets


@needs_freeipmi
def test_250_bmcs_in_one_process(machine_loop):
    """A rack row's worth of BMCs on one thread; half are added while the lab is serving."""
    ipmi_lab = IpmiLab()
    bmcs = []
    try:
        for i in range(1, 251):
            address = f"127.77.2.{i}"
            spec = MachineSpec(name=f"row-{i:03d}", mac=f"52:54:00:77:02:{i:02x}", bmc_address=address,
                               host_address=f"127.78.2.{i}", powered=i % 2 == 0)
            machine = Machine(spec, machine_loop, time_scale=0.01)
            bmcs.append(LabBmc(machine, address, ipmi_lab.add(machine, address, 0, b"admin", b"secret")))
            if i == 125:
                ipmi_lab.start()
        result = ipmi_power(*bmcs, args=("--stat", "--fanout=250"))
        states = dict(line.split(": ") for line in result.stdout.splitlines())
        assert states == {b.address: "on" if b.machine.powered else "off" for b in bmcs}
        wait_for(lambda: ipmi_lab.session_count() == 0, what="freeipmi to close every session it opened")
    finally:
        ipmi_lab.stop()


@needs_ipmitool
def test_power_status_off_on_cycle_reset_soft(lab):
    _, a, _ = lab
    assert "Chassis Power is on" in ipmitool(a, "power", "status").stdout
    ipmitool(a, "power", "off")
    assert not a.machine.powered
    assert "Chassis Power is off" in ipmitool(a, "power", "status").stdout
    ipmitool(a, "power", "on")
    wait_for(lambda: a.machine.phase == Phase.RUNNING, what="boot after power on")
    assert "Chassis Power is on" in ipmitool(a, "power", "status").stdout
    boots = a.machine.boots
    ipmitool(a, "power", "cycle")
    wait_for(lambda: a.machine.boots > boots and a.machine.phase == Phase.RUNNING, what="boot after cycle")
    boots = a.machine.boots
    ipmitool(a, "power", "reset")
    wait_for(lambda: a.machine.boots > boots and a.machine.phase == Phase.RUNNING, what="boot after reset")
    ipmitool(a, "power", "soft")  # ACPI shutdown: the running OS powers off
    wait_for(lambda: not a.machine.powered, what="ACPI soft-off")
    status = ipmitool(a, "chassis", "status").stdout
    assert re.search(r"System Power\s+: off", status) and re.search(r"Cooling/Fan Fault\s+: true", status)


@needs_freeipmi
def test_ipmi_power_stat_off_on_with_cipher_suite_3(lab):
    _, a, b = lab
    result = ipmi_power(a, b)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:2]) == [f"{ADDRESS_A}: on", f"{ADDRESS_B}: on"]
    assert ipmi_power(a, args=("-I", "3", "--stat")).stdout.strip() == f"{ADDRESS_A}: on"
    assert ipmi_power(a, args=("--off",)).stdout.strip() == f"{ADDRESS_A}: ok"
    assert not a.machine.powered and b.machine.powered
    assert ipmi_power(a, args=("-I", "3", "--on")).stdout.strip() == f"{ADDRESS_A}: ok"
    wait_for(lambda: a.machine.powered, what="power on")


@needs_ipmitool
def test_bootdev_pxe_once_reads_back_and_is_consumed_by_the_next_boot(lab):
    _, a, _ = lab
    ipmitool(a, "chassis", "bootdev", "pxe")
    assert (a.machine.boot_override, a.machine.boot_override_persistent) == (BootDevice.PXE, False)
    flags = ipmitool(a, "chassis", "bootparam", "get", "5").stdout
    assert "Boot Flag Valid" in flags and "Options apply to only next boot" in flags and "Force PXE" in flags

    ipmitool(a, "power", "cycle")
    wait_for(lambda: a.machine.phase == Phase.RUNNING and a.machine.boots >= 2, what="boot after cycle")
    assert a.machine.last_boot_source == BootDevice.PXE
    assert a.machine.boot_override == BootDevice.NONE  # a one-time override is used up
    assert "Boot Flag Invalid" in ipmitool(a, "chassis", "bootparam", "get", "5").stdout

    ipmitool(a, "chassis", "bootdev", "disk", "options=persistent")
    assert (a.machine.boot_override, a.machine.boot_override_persistent) == (BootDevice.DISK, True)
    flags = ipmitool(a, "chassis", "bootparam", "get", "5").stdout
    assert "Options apply to all future boots" in flags and "Force Boot from default Hard-Drive" in flags
    ipmitool(a, "chassis", "bootdev", "none")
    assert a.machine.boot_override == BootDevice.NONE


#: Half the resolution each kind of sensor is encoded with (see _KINDS in ipmi_bmc), plus slack.
TOLERANCE = {"Cel": 0.51, "RPM": 25.1, "V": 0.041, "W": 2.51}


@needs_ipmitool
def test_sdr_elist_and_sensor_list_show_machine_sensors(lab):
    _, a, _ = lab
    expected = {s.name: s for s in a.machine.sensors()}

    rows = [[c.strip() for c in line.split("|")] for line in ipmitool(a, "sdr", "list").stdout.splitlines()]
    assert [r[0] for r in rows] == list(expected)
    for name, reading, status in rows:
        sensor = expected[name]
        value, unit = reading.split(" ", 1)
        assert abs(float(value) - sensor.value) <= TOLERANCE[sensor.unit], (name, reading, sensor.value)
        assert unit == {"Cel": "degrees C", "RPM": "RPM", "V": "Volts", "W": "Watts"}[sensor.unit]
        assert status == ("cr" if sensor.status == "critical" else "ok"), name
    assert expected["FAN3"].status == "critical"  # the machine's fan fault

    elist = {r[0]: r for r in ([c.strip() for c in line.split("|")]
                               for line in ipmitool(a, "sdr", "elist").stdout.splitlines())}
    assert elist["FAN3"][2] == "lcr" and elist["FAN3"][4] == "0 RPM"
    assert elist["CPU1 Temp"][2] == "ok"

    sensors = {r[0]: r for r in ([c.strip() for c in line.split("|")]
                                 for line in ipmitool(a, "sensor", "list").stdout.splitlines())}
    # name | value | unit | status | LNR | LCR | LNC | UNC | UCR | UNR
    assert sensors["12V"][3] == "ok" and sensors["12V"][5:9] == ["10.800", "11.200", "12.800", "13.200"]
    assert sensors["FAN3"][3] == "cr" and sensors["FAN3"][5] == "1000.000"
    assert sensors["CPU1 Temp"][2] == "degrees C" and sensors["CPU1 Temp"][7:9] == ["85.000", "95.000"]


@needs_ipmitool
def test_sel_list_elist_and_clear(lab):
    _, a, _ = lab
    listing = ipmitool(a, "sel", "list").stdout
    assert "Log area reset/cleared" in listing and "Lower Critical going low" in listing
    assert len(listing.splitlines()) == len(a.machine.events())
    elist = ipmitool(a, "sel", "elist").stdout
    assert re.search(r"Fan FAN3 \| Lower Critical going low\s*\| Asserted \| Reading 0 < Threshold 1000 RPM", elist)

    ipmitool(a, "power", "off")
    assert "S5/G2: soft-off" in ipmitool(a, "sel", "list").stdout

    assert "Clearing SEL" in ipmitool(a, "sel", "clear").stdout
    assert [e.message for e in a.machine.events()] == ["Log area reset/cleared"]
    listing = ipmitool(a, "sel", "list").stdout.splitlines()
    assert len(listing) == 1 and "Log area reset/cleared" in listing[0]


@needs_ipmitool
def test_identity_device_id_guid_and_fru(lab):
    _, a, _ = lab
    info = ipmitool(a, "mc", "info").stdout
    assert re.search(r"Firmware Revision\s+: 2\.71", info) and re.search(r"IPMI Version\s+: 2\.0", info)
    assert re.search(r"Manufacturer ID\s+: 32473", info)
    # SMBIOS byte order, as pyghmi decodes it.  (Without the argument ipmitool guesses the order
    # from the UUID version nibble, which the machine's md5-derived UUIDs do not set.)
    guid = ipmitool(a, "mc", "guid", "smbios").stdout
    assert str(a.machine.uuid) in guid.lower()
    fru = ipmitool(a, "fru", "print", "0").stdout
    assert re.search(r"Product Manufacturer\s+: Fleet Lab", fru)
    assert re.search(r"Product Name\s+: FL-1000", fru)
    assert re.search(rf"Product Serial\s+: {a.machine.serial_number}", fru)


@needs_ipmitool
def test_sol_replays_history_types_keys_and_logs_out(lab):
    ipmi_lab, _, b = lab
    b.machine.serial.write("fleet-lab history marker\n")
    sol = SolClient(b)
    try:
        sol.expect(b"fleet-lab history marker")  # the last ~2 KB are replayed on activation
        assert ipmi_lab.session_count(ADDRESS_B) == 1
        sol.type(b"root\r")
        sol.expect(b"Password: ")
        sol.type(b"pw\r")
        sol.expect(b"root@lab-b:~# ")
        sol.type(b"hostname\r")
        sol.expect(b"hostname\r\nlab-b\r\n")
        assert sol.quit() == 0
    finally:
        sol.kill()
    wait_for(lambda: ipmi_lab.session_count() == 0, what="ipmitool to close its session")


@needs_ipmitool
def test_sol_second_activation_is_refused_until_deactivated(lab):
    _, a, _ = lab
    a.machine.serial.write("first console attached\n")
    first = SolClient(a)
    try:
        first.expect(b"first console attached")
        second = ipmitool(a, "sol", "activate", check=False, stdin=subprocess.DEVNULL)
        assert second.returncode != 0
        assert "SOL payload already active on another session" in second.stderr
        ipmitool(a, "sol", "deactivate")  # taken over from a third session, as an operator would
        again = ipmitool(a, "sol", "activate", stdin=subprocess.DEVNULL)  # stdin at EOF: attach, then leave
        assert "SOL Session operational" in again.stdout
    finally:
        first.kill()


@needs_ipmitool
def test_sol_console_vanishing_mid_send_leaves_the_bmc_working(lab):
    ipmi_lab, a, b = lab
    a.machine.serial.write("about to vanish\n")
    sol = SolClient(a)
    sol.expect(b"about to vanish")
    sol.kill()  # SIGKILL: no deactivate, no session close
    a.machine.serial.write("x" * 20_000 + "\n")  # output the dead console will never acknowledge
    assert "Chassis Power is on" in ipmitool(a, "power", "status").stdout
    # After a few unacknowledged retransmissions (0.1 s apart here) the payload is free again,
    # long before the dead client's session would time out (60 s).
    wait_for(lambda: "SOL Session operational" in ipmitool(a, "sol", "activate", check=False,
                                                            stdin=subprocess.DEVNULL).stdout,
             timeout=5, what="SOL payload released")
    assert ipmi_lab.session_count(ADDRESS_A) == 1  # the dead client's session is still open ...
    ipmi_lab.session_timeout = 1.0
    wait_for(lambda: ipmi_lab.session_count(ADDRESS_A) == 0, timeout=5, what="idle session timeout")  # ... until idle
    assert "Chassis Power is on" in ipmitool(b, "power", "status").stdout


@needs_ipmitool
def test_wrong_password_and_unknown_user_fail_fast(lab):
    ipmi_lab, a, _ = lab
    started = time.monotonic()
    wrong = ipmitool(a, "-v", "power", "status", password="not-the-password", check=False)  # -v: say why
    assert wrong.returncode != 0 and "RAKP 2 HMAC is invalid" in wrong.stderr
    unknown = ipmitool(a, "-v", "power", "status", user="mallory", check=False)
    assert unknown.returncode != 0 and "unauthorized name" in unknown.stderr
    assert time.monotonic() - started < 3.0  # answered, not timed out
    assert ipmi_lab.session_count() == 0
    if IPMI_POWER:
        assert "password invalid" in ipmi_power(a, password="not-the-password").stdout


@needs_ipmitool
def test_only_cipher_suite_3_is_offered(lab):
    _, a, _ = lab
    refused = ipmitool(a, "power", "status", cipher="17", check=False)
    assert refused.returncode != 0 and "invalid authentication algorithm" in refused.stderr
    # Without -C ipmitool asks for the cipher suite list and picks suite 3 from it.
    started = time.monotonic()
    assert "Chassis Power is on" in ipmitool(a, "power", "status", cipher=None).stdout
    assert time.monotonic() - started < 3.0


@needs_ipmitool
def test_two_bmcs_are_independent(lab):
    ipmi_lab, a, b = lab
    fan3_a = next(line for line in ipmitool(a, "sdr", "list").stdout.splitlines() if line.startswith("FAN3"))
    fan3_b = next(line for line in ipmitool(b, "sdr", "list").stdout.splitlines() if line.startswith("FAN3"))
    assert fan3_a.endswith("cr") and fan3_b.endswith("ok")  # only a has the fan fault
    ipmitool(a, "power", "off")
    ipmitool(b, "chassis", "bootdev", "pxe")
    assert "Chassis Power is off" in ipmitool(a, "power", "status").stdout
    assert "Chassis Power is on" in ipmitool(b, "power", "status").stdout
    assert a.machine.boot_override == BootDevice.NONE and b.machine.boot_override == BootDevice.PXE
    assert "Boot Flag Invalid" in ipmitool(a, "chassis", "bootparam", "get", "5").stdout
    assert str(a.machine.uuid) in ipmitool(a, "mc", "guid", "smbios").stdout.lower()
    assert str(b.machine.uuid) in ipmitool(b, "mc", "guid", "smbios").stdout.lower()
    b.machine.serial.write("console of b\n")
    sol = SolClient(b)
    try:
        sol.expect(b"console of b")
        assert (ipmi_lab.session_count(ADDRESS_A), ipmi_lab.session_count(ADDRESS_B)) == (0, 1)
        assert sol.quit() == 0
    finally:
        sol.kill()
