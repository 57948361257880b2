"""A simulated server: the thing behind every lab BMC, host and switch port.

A :class:`Machine` behaves like hardware seen from its BMC: power changes take
time, a one-time boot override is consumed by the next boot, a PXE boot fetches
the per-MAC iPXE script from the provisioner over HTTP and installs the image it
names, the serial console tells the boot story and answers input, sensors drift,
and the event log records what happened.

Threading: the machine lives on one asyncio loop (its lab worker's).  Protocol
front ends running in other threads (the pyghmi IPMI server) call the public
methods freely: every state change goes through ``self._lock`` and every boot
sequence is started on the loop with ``call_soon_threadsafe``.  Reads of plain
attributes are safe from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import hashlib
import math
import random
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "BootDevice",
    "Machine",
    "MachineSpec",
    "Phase",
    "SelEvent",
    "SensorReading",
    "SerialPort",
]


class BootDevice(str, enum.Enum):  # noqa: UP042 -- StrEnum would change str() and format() of members
    """Where the machine boots from (a neutral vocabulary; front ends map it)."""

    NONE = "none"  # no override: follow the boot order
    PXE = "pxe"
    DISK = "disk"
    CD = "cd"
    BIOS = "bios"


class Phase(str, enum.Enum):  # noqa: UP042 -- StrEnum would change str() and format() of members
    """What the machine is doing, as an operator watching the console would say."""

    OFF = "off"
    POST = "post"  # firmware power-on self test
    PXE = "pxe"  # network boot: DHCP + fetching the iPXE script
    INSTALLING = "installing"  # writing a new image to disk
    BOOTING = "booting"  # kernel booting from disk
    RUNNING = "running"  # OS up, SSH answering
    HALTED = "halted"  # powered on but nothing bootable
    SHUTTING_DOWN = "shutting_down"


@dataclass(frozen=True)
class SensorReading:
    """One sensor reading with its thresholds (``None`` where the sensor has none)."""

    name: str
    kind: str  # temperature | fan | voltage | power
    unit: str  # Cel | RPM | V | W
    value: float | None
    lower_critical: float | None = None
    lower_warning: float | None = None
    upper_warning: float | None = None
    upper_critical: float | None = None

    @property
    def status(self) -> str:
        """``ok``, ``warning``, ``critical`` or ``unknown`` from value vs thresholds."""
        if self.value is None:
            return "unknown"
        v = self.value
        if (self.lower_critical is not None and v <= self.lower_critical) or (
            self.upper_critical is not None and v >= self.upper_critical
        ):
            return "critical"
        if (self.lower_warning is not None and v <= self.lower_warning) or (
            self.upper_warning is not None and v >= self.upper_warning
        ):
            return "warning"
        return "ok"


@dataclass(frozen=True)
class SelEvent:
    """One system event log entry."""

    id: int
    timestamp: float  # unix seconds
    severity: str  # ok | warning | critical
    sensor: str  # e.g. "System ACPI Power State", "FAN3"
    sensor_type: str  # IPMI sensor type name: "Fan", "Temperature", "System Event", ...
    message: str
    asserted: bool = True


@dataclass
class MachineSpec:
    """What a lab machine is made of (from the site inventory plus lab extras)."""

    name: str
    mac: str
    bmc_address: str
    host_address: str
    serial_number: str = ""
    vendor: str = "Fleet Lab"
    model: str = "FL-1000"
    bios_version: str = "1.4.2"
    bmc_firmware: str = "2.71"
    image: tuple[str, str] | None = None  # (name, version) installed on disk
    #: the installed image's sha256 (os-release IMAGE_SHA256); None: not recorded
    image_sha256: str | None = None
    powered: bool = True
    fault: str | None = None  # None | "fan" | "overtemp" | "psu"
    provisioner_url: str | None = None  # where PXE fetches its script: provisioner_url + boot_path
    #: the script's path under provisioner_url: ``{mac_dashes}`` (aa-bb-..) or ``{mac}`` (aa:bb:..,
    #: iPXE's ${netX/mac}, what DRP's default.ipxe chains to)
    boot_path: str = "/boot/{mac_dashes}.ipxe"
    seed: int = 0
    #: (user, password) the serial console's login prompt accepts; None accepts anyone
    login: tuple[str, str] | None = None


class SerialPort:
    """The machine's serial line: a ring buffer of output plus live subscribers.

    Output is bytes (CRLF line ends, as a real UART would carry).  ``subscribe``
    callbacks run on whatever thread wrote the output; subscribers that need
    another thread must hand the data over themselves.
    """

    def __init__(self, capacity: int = 64 * 1024) -> None:
        self._buf: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._capacity = capacity
        self._subs: list[Callable[[bytes], None]] = []
        self._lock = threading.Lock()
        self.input_handler: Callable[[bytes], None] | None = None
        self.break_handler: Callable[[], None] | None = None

    def write(self, data: bytes | str) -> None:
        """Emit output from the machine."""
        if isinstance(data, str):
            data = data.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        with self._lock:
            self._buf.append(data)
            self._size += len(data)
            while self._size > self._capacity and len(self._buf) > 1:
                self._size -= len(self._buf.popleft())
            subs = list(self._subs)
        for cb in subs:
            try:
                cb(data)
            except Exception:  # a broken subscriber must not break the machine
                pass

    def history(self) -> bytes:
        """Everything still in the ring buffer."""
        with self._lock:
            return b"".join(self._buf)

    def subscribe(self, callback: Callable[[bytes], None]) -> Callable[[], None]:
        """Receive every future output chunk; returns the unsubscribe function."""
        with self._lock:
            self._subs.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subs:
                    self._subs.remove(callback)

        return unsubscribe

    def send_input(self, data: bytes) -> None:
        """Keystrokes typed by an operator on a console."""
        handler = self.input_handler
        if handler is not None:
            handler(data)

    def send_break(self) -> None:
        """A serial BREAK from a console (SOL break, SSH break request)."""
        handler = self.break_handler
        if handler is not None:
            handler()


_IPXE_SET = re.compile(r"^\s*set\s+(\S+)\s+(.*?)\s*$")
_IPXE_KERNEL = re.compile(r"^\s*kernel\s+(\S+)(.*)$")
_IPXE_INITRD = re.compile(r"^\s*initrd\s+(\S+)")
_IMAGE_ARG = re.compile(r"fleet\.image=([^@\s]+)@(\S+)")
_ISO_IMAGE = re.compile(r"/images/([A-Za-z0-9._-]+)/([A-Za-z0-9._+-]+)/[^/]*\.iso$")


def parse_ipxe(script: str) -> dict[str, str]:
    """Pull what a machine needs out of an iPXE script.

    Understands ``set image-name X`` / ``set image-version Y`` / ``set image-sha256 Z``
    and a kernel command line carrying ``fleet.image=NAME@VERSION``.  Returns a dict with
    ``kernel``, ``initrd``, ``image_name``, ``image_version``, ``sha256`` (missing keys
    when absent).
    """
    out: dict[str, str] = {}
    variables: dict[str, str] = {}
    if not script.lstrip().startswith("#!ipxe"):
        raise ValueError("not an iPXE script (missing #!ipxe)")
    for raw in script.splitlines():
        line = raw.split("#", 1)[0] if not raw.startswith("#!") else ""
        if m := _IPXE_SET.match(line):
            variables[m.group(1)] = m.group(2)
            continue
        line = re.sub(r"\$\{([^}]+)\}", lambda m: variables.get(m.group(1), ""), line)
        if m := _IPXE_KERNEL.match(line):
            out["kernel"] = m.group(1)
            if im := _IMAGE_ARG.search(m.group(2)):
                out["image_name"], out["image_version"] = im.group(1), im.group(2)
        elif m := _IPXE_INITRD.match(line):
            out["initrd"] = m.group(1)
    for key, var in (("image_name", "image-name"), ("image_version", "image-version"), ("sha256", "image-sha256")):
        if var in variables:
            out[key] = variables[var]
    return out


class Machine:
    """One simulated server.  See the module docstring for the threading rules."""

    #: seconds for each step of the boot story; multiplied by ``time_scale``
    TIMINGS = {
        "power_on": 1.0,  # from "on" request to power good
        "power_off": 0.5,
        "post": 3.0,
        "pxe_dhcp": 1.0,
        "install": 6.0,
        "kernel": 3.0,
        "soft_off": 2.0,
    }

    def __init__(
        self,
        spec: MachineSpec,
        loop: asyncio.AbstractEventLoop,
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        http_get: Callable[[str], Awaitable[tuple[int, str]]] | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.mac = spec.mac.lower()
        self.loop = loop
        self.time_scale = time_scale
        self.clock = clock
        self._http_get = http_get
        self._lock = threading.RLock()
        self._rng = random.Random(spec.seed or int(hashlib.sha256(spec.name.encode()).hexdigest()[:8], 16))
        # a proper version-3 UUID: clients such as ipmitool guess byte order from the version digit
        self.uuid = uuidlib.uuid3(uuidlib.NAMESPACE_DNS, spec.name)
        self.serial_number = spec.serial_number or "FL" + hashlib.sha1(spec.name.encode()).hexdigest()[:8].upper()
        self.serial = SerialPort()
        self.serial.input_handler = self._on_serial_input
        self.serial.break_handler = self._on_serial_break
        self.image: tuple[str, str] | None = spec.image
        self.image_sha256: str | None = spec.image_sha256 if spec.image else None
        self.fault = spec.fault
        self.power_on_since: float | None = None
        self.phase = Phase.OFF
        self.boot_override = BootDevice.NONE
        self.boot_override_persistent = False
        self.boot_order = [BootDevice.DISK, BootDevice.PXE]
        self.last_boot_source: BootDevice | None = None
        self.pxe_fetches: list[tuple[float, str, int]] = []  # (when, url, http status)
        #: the ISO URL in the BMC's virtual CD drive (set by the Redfish front end), None when empty
        self.virtual_cd: str | None = None
        self.boots = 0
        self._sel: list[SelEvent] = []
        self._sel_next = 1
        self._task: asyncio.Task | None = None
        self._generation = 0  # bumps on every power transition; stale tasks stop
        self._line = b""
        self._console_state = "login"  # login | password | shell
        self._console_user = ""
        self._created = clock()
        self._add_event("ok", "Event Log", "Event Logging Disabled", "Log area reset/cleared")
        if spec.powered:
            # A machine that was already running when the lab started.
            self.power_on_since = clock() - 3600 - self._rng.random() * 86400
            self.phase = Phase.RUNNING if self.image else Phase.HALTED
            self.last_boot_source = BootDevice.DISK
            self.boots = 1
            # what its console last printed: the login prompt, or why it did not boot
            if self.image:
                self.serial.write(f"\n{self._pretty()} ({spec.host_address})\n\n{self.name} login: ")
            else:
                self.serial.write("No bootable device -- insert boot disk and press any key\n")
        if self.fault:
            self._add_fault_event()

    # ----------------------------------------------------------------- queries
    @property
    def powered(self) -> bool:
        """True when power is good (what a BMC reports as "on")."""
        return self.phase != Phase.OFF

    @property
    def ssh_up(self) -> bool:
        """The host's SSH daemon answers only when the OS is running."""
        return self.phase == Phase.RUNNING

    @property
    def uptime(self) -> float:
        """Seconds since power on (0 when off)."""
        return 0.0 if self.power_on_since is None else max(0.0, self.clock() - self.power_on_since)

    def os_release(self) -> str:
        """The /etc/os-release the running image carries (``IMAGE_SHA256``: the digest the
        installer verified, when it was given one)."""
        if not self.image:
            return ""
        name, version = self.image
        pretty = {"flatcar": "Flatcar Container Linux", "ubuntu": "Ubuntu", "rocky": "Rocky Linux"}.get(name, name)
        digest = f"IMAGE_SHA256={self.image_sha256}\n" if self.image_sha256 else ""
        return (
            f'NAME="{pretty}"\nID={name}\nVERSION={version}\nVERSION_ID={version}\n'
            f'PRETTY_NAME="{pretty} {version}"\nIMAGE_ID={name}\nIMAGE_VERSION={version}\n{digest}'
        )

    def sensors(self) -> list[SensorReading]:
        """Current sensor readings: they drift slowly and follow power and faults."""
        t = self.clock()
        on = self.powered
        seed = self._rng_seed_float()

        def wobble(period: float, amp: float, phase: float = 0.0) -> float:
            return amp * math.sin(2 * math.pi * (t / period) + seed * 6.28 + phase)

        inlet = 22.0 + wobble(900, 1.5)
        cpu = (48.0 + wobble(120, 6, 1.0)) if on else inlet + 2
        if self.fault == "overtemp" and on:
            cpu = 96.0 + wobble(60, 1.0)
        fans = []
        for i in range(1, 5):
            rpm = (7200.0 + wobble(300, 400, i)) if on else 0.0
            if self.fault == "fan" and i == 3 and on:
                rpm = 0.0
            fans.append(SensorReading(f"FAN{i}", "fan", "RPM", round(rpm, 0),
                                      1000.0 if on else None, 1800.0 if on else None, None, None))
        psu_w = (310.0 + wobble(200, 40)) if on else 9.0
        v12 = 12.05 + wobble(500, 0.04)
        if self.fault == "psu":
            v12 = 10.6
        return [
            SensorReading("Inlet Temp", "temperature", "Cel", round(inlet, 1), None, None, 38.0, 42.0),
            SensorReading("CPU1 Temp", "temperature", "Cel", round(cpu, 1), None, None, 85.0, 95.0),
            SensorReading("CPU2 Temp", "temperature", "Cel", round(cpu - 2.5, 1), None, None, 85.0, 95.0),
            *fans,
            SensorReading("PSU1 Input Power", "power", "W", round(psu_w, 0), None, None, 750.0, 900.0),
            SensorReading("12V", "voltage", "V", round(v12, 2), 10.8, 11.2, 12.8, 13.2),
        ]

    def health(self) -> str:
        """Worst sensor status: ``ok``, ``warning`` or ``critical``."""
        order = {"ok": 0, "unknown": 0, "warning": 1, "critical": 2}
        worst = max((order[s.status] for s in self.sensors()), default=0)
        return ["ok", "warning", "critical"][worst]

    def events(self) -> list[SelEvent]:
        """The event log, oldest first."""
        with self._lock:
            return list(self._sel)

    def clear_events(self) -> None:
        """Clear the event log (leaves the "log cleared" entry, as real BMCs do)."""
        with self._lock:
            self._sel.clear()
        self._add_event("ok", "Event Log", "Event Logging Disabled", "Log area reset/cleared")

    # ----------------------------------------------------------------- actions
    def power_on(self) -> None:
        """Press the power button (no effect when already on)."""
        with self._lock:
            if self.phase != Phase.OFF:
                return
            self._generation += 1
            gen = self._generation
        self._add_event("ok", "System ACPI Power State", "System ACPI Power State", "S0/G0: working")
        self._spawn(self._power_on_sequence(gen))

    def power_off(self) -> None:
        """Hard power off (immediate loss of power after a short delay)."""
        with self._lock:
            if self.phase == Phase.OFF:
                return
            self._generation += 1
            self._set_off()
        self._add_event("ok", "System ACPI Power State", "System ACPI Power State", "S5/G2: soft-off")

    def power_soft(self) -> None:
        """ACPI shutdown request: the OS shuts down when it is running, else ignored."""
        with self._lock:
            if self.phase != Phase.RUNNING:
                return  # firmware and installers ignore the ACPI button, as real ones often do
            self._generation += 1
            gen = self._generation
            self.phase = Phase.SHUTTING_DOWN
        self._spawn(self._soft_off_sequence(gen))

    def power_cycle(self) -> None:
        """Power off, then on again; on a machine that is off it just powers on."""
        with self._lock:
            was_on = self.phase != Phase.OFF
            self._generation += 1
            self._set_off()
        if was_on:
            self._add_event("ok", "System ACPI Power State", "System ACPI Power State", "S5/G2: soft-off")
        self.power_on()

    def power_reset(self) -> None:
        """Warm reset: reboot without dropping power (ignored when off, as on real BMCs)."""
        with self._lock:
            if self.phase == Phase.OFF:
                return
            self._generation += 1
            gen = self._generation
        self._add_event("ok", "System Restart", "System Boot Initiated", "Initiated by warm reset")
        self.serial.write("\n")
        self._spawn(self._boot_sequence(gen))

    def insert_media(self, url: str) -> None:
        """The BMC inserted an ISO (by URL) into the virtual CD drive."""
        with self._lock:
            self.virtual_cd = url

    def eject_media(self) -> None:
        """The BMC ejected the virtual CD."""
        with self._lock:
            self.virtual_cd = None

    def set_boot_override(self, device: BootDevice, persistent: bool = False) -> None:
        """Set the boot override; ``persistent=False`` is consumed by the next boot."""
        with self._lock:
            self.boot_override = BootDevice(device)
            self.boot_override_persistent = persistent and device != BootDevice.NONE

    # ------------------------------------------------------------- internals
    def _rng_seed_float(self) -> float:
        return (int(hashlib.sha256(self.name.encode()).hexdigest()[:6], 16) % 1000) / 1000.0

    def _set_off(self) -> None:
        self.phase = Phase.OFF
        self.power_on_since = None
        self._console_state = "login"
        self._line = b""

    def _spawn(self, coro) -> None:
        def start() -> None:
            self._task = self.loop.create_task(coro)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            start()
        else:
            self.loop.call_soon_threadsafe(start)

    async def _sleep(self, key: str) -> None:
        await asyncio.sleep(self.TIMINGS[key] * self.time_scale)

    def _current(self, gen: int) -> bool:
        return self._generation == gen

    async def _power_on_sequence(self, gen: int) -> None:
        await self._sleep("power_on")
        with self._lock:
            if not self._current(gen):
                return
            self.phase = Phase.POST
            self.power_on_since = self.clock()
        await self._boot_sequence(gen)

    async def _soft_off_sequence(self, gen: int) -> None:
        self.serial.write("\n[  OK  ] Stopped target Multi-User System.\n[  OK  ] Reached target Power-Off.\n")
        await self._sleep("soft_off")
        with self._lock:
            if not self._current(gen):
                return
            self._set_off()
        self.serial.write("reboot: Power down\n")
        self._add_event("ok", "System ACPI Power State", "System ACPI Power State", "S5/G2: soft-off")

    def _choose_boot(self) -> BootDevice:
        with self._lock:
            dev = self.boot_override
            if dev != BootDevice.NONE and not self.boot_override_persistent:
                self.boot_override = BootDevice.NONE  # a one-time override is consumed here
            if dev == BootDevice.NONE:
                dev = self.boot_order[0]
                if dev == BootDevice.DISK and not self.image:
                    dev = BootDevice.PXE
            return dev

    async def _boot_sequence(self, gen: int) -> None:
        with self._lock:
            if not self._current(gen):
                return
            self.phase = Phase.POST
            self.boots += 1
            self._console_state = "login"
        s = self.spec
        self.serial.write(
            f"\n{s.vendor} {s.model} BIOS {s.bios_version}\nCopyright (C) Fleet Lab\n"
            f"Memory Test: 262144M OK\nInitializing PCIe devices ... done\n"
        )
        await self._sleep("post")
        if not self._current(gen):
            return
        dev = self._choose_boot()
        self.last_boot_source = dev
        if dev == BootDevice.BIOS:
            self.serial.write("Entering Setup...\n\n  Main  Advanced  Boot  Security  Save & Exit\n")
            with self._lock:
                if self._current(gen):
                    self.phase = Phase.HALTED
            return
        if dev == BootDevice.PXE:
            installed = await self._pxe_boot(gen)
            if not self._current(gen):
                return
            if installed is None and self.image:
                self.serial.write("Booting from Hard Disk...\n")
        elif dev == BootDevice.CD:
            installed = await self._cd_boot(gen)
            if not self._current(gen):
                return
            if installed is None:
                self.serial.write("Booting from Hard Disk...\n")
        else:
            self.serial.write("Booting from Hard Disk...\n")
        if not self.image:
            self.serial.write("No bootable device -- insert boot disk and press any key\n")
            with self._lock:
                if self._current(gen):
                    self.phase = Phase.HALTED
            return
        with self._lock:
            if not self._current(gen):
                return
            self.phase = Phase.BOOTING
        name, version = self.image
        self.serial.write(
            f"[    0.000000] Linux version 6.6.60-{name} (build@{name}) #1 SMP PREEMPT_DYNAMIC\n"
            f"[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=ROOT console=ttyS0,115200n8\n"
            f"[    1.204511] {s.vendor} {s.model}/{s.model}, BIOS {s.bios_version}\n"
        )
        await self._sleep("kernel")
        with self._lock:
            if not self._current(gen):
                return
            self.phase = Phase.RUNNING
        self.serial.write(
            f"[    2.318840] EXT4-fs (sda9): mounted filesystem with ordered data mode\n"
            f"[  OK  ] Started sshd.socket - OpenSSH Server Socket.\n"
            f"[  OK  ] Reached target Multi-User System.\n\n"
            f"{self._pretty()} ({self.spec.host_address})\n\n{self.name} login: "
        )
        self._add_event("ok", "OS Boot", "OS Boot", "boot completed")

    async def _pxe_boot(self, gen: int) -> tuple[str, str] | None:
        """Network boot; returns the installed image, or None when nothing was booted."""
        with self._lock:
            self.phase = Phase.PXE
        self.serial.write(
            f"\niPXE 1.21.1+ -- Open Source Network Boot Firmware -- https://ipxe.org\n"
            f"net0: {self.mac} using virtio-net on 0000:00:03.0 (Ethernet) [open]\n"
            f"Configuring (net0 {self.mac})...... ok\n"
        )
        if self.spec.host_address:
            self.serial.write(f"net0: {self.spec.host_address}/255.0.0.0 gw 127.0.0.1\n")
        await self._sleep("pxe_dhcp")
        if not self._current(gen):
            return None
        base = self.spec.provisioner_url
        if not base or self._http_get is None:
            self.serial.write("No configuration methods succeeded (https://ipxe.org/040ee186)\n")
            return None
        url = base.rstrip("/") + self.spec.boot_path.format(mac=self.mac, mac_dashes=self.mac.replace(":", "-"))
        self.serial.write(f"http://{url.split('://', 1)[-1]}... ")
        try:
            status, body = await self._http_get(url)
        except Exception as exc:  # connection refused, timeout: a firmware just says so
            self.pxe_fetches.append((self.clock(), url, 0))
            self.serial.write(f"Connection refused ({type(exc).__name__})\n")
            return None
        self.pxe_fetches.append((self.clock(), url, status))
        if status != 200:
            self.serial.write(f"Error {status} (https://ipxe.org/2d0c613b)\n")
            return None
        try:
            info = parse_ipxe(body)
        except ValueError:
            self.serial.write("Exec format error (https://ipxe.org/2e008081)\n")
            return None
        self.serial.write("ok\n")
        if "image_name" not in info or "image_version" not in info:
            self.serial.write("Script names no image; exiting to next boot device\n")
            return None
        new = (info["image_name"], info["image_version"])
        self.serial.write(f"{info.get('kernel', 'vmlinuz')}... ok\n{info.get('initrd', 'initrd')}... ok\n")
        return await self._install(gen, new, info.get("sha256"))

    async def _cd_boot(self, gen: int) -> tuple[str, str] | None:
        """Boot the virtual CD: an ISO named ``.../images/NAME/VERSION/x.iso`` installs NAME@VERSION."""
        url = self.virtual_cd
        if not url:
            self.serial.write("No bootable media in virtual CD-ROM\n")
            return None
        self.serial.write(f"Booting from virtual CD-ROM ({url.rsplit('/', 1)[-1]})...\n")
        status = 0
        if self._http_get is not None:
            try:
                status, _ = await self._http_get(url)
            except Exception as exc:  # the BMC cannot read the image: the drive reads as empty
                self.serial.write(f"Virtual media: cannot read {url} ({type(exc).__name__})\n")
                return None
        if not self._current(gen):
            return None
        if status != 200:
            self.serial.write(f"Virtual media: cannot read {url} (HTTP {status})\n")
            return None
        m = _ISO_IMAGE.search(url)
        if not m:
            self.serial.write("ISOLINUX: no installer on this media\n")
            return None
        self.serial.write("ISOLINUX 6.04  Copyright (C) 1994-2015 H. Peter Anvin et al\nboot: install\n")
        return await self._install(gen, (m.group(1), m.group(2)), None)

    async def _install(self, gen: int, new: tuple[str, str], sha: str | None) -> tuple[str, str] | None:
        """The installer writes ``new`` to disk, telling the serial console; None when interrupted."""
        with self._lock:
            if not self._current(gen):
                return None
            self.phase = Phase.INSTALLING
        self.serial.write(
            f"[    0.000000] Linux version 6.6.60 (installer)\n"
            f"fleet-installer: writing {new[0]} {new[1]} to /dev/sda\n"
        )
        steps = 4
        for i in range(1, steps + 1):
            await asyncio.sleep(self.TIMINGS["install"] * self.time_scale / steps)
            if not self._current(gen):
                return None
            self.serial.write(f"fleet-installer: {i * 100 // steps}%\n")
        self.serial.write(f"fleet-installer: verified sha256 {sha[:12] if sha else '(none given)'}\n")
        with self._lock:
            self.image = new
            self.image_sha256 = sha
        self._add_event("ok", "OS Install", "System Event", f"installed {new[0]}@{new[1]}")
        self.serial.write("fleet-installer: done, rebooting from disk\nreboot: Restarting system\n")
        s = self.spec
        self.serial.write(f"\n{s.vendor} {s.model} BIOS {s.bios_version}\nBooting from Hard Disk...\n")
        return new

    def _pretty(self) -> str:
        if not self.image:
            return "unknown"
        rel = dict(
            line.split("=", 1) for line in self.os_release().splitlines() if "=" in line
        )
        return rel.get("PRETTY_NAME", "").strip('"')

    def _on_serial_input(self, data: bytes) -> None:
        if self.phase != Phase.RUNNING:
            return  # firmware and kernels ignore typing
        for ch in data:
            b = bytes([ch])
            if b in (b"\r", b"\n"):
                line = self._line.decode(errors="replace")
                self._line = b""
                self.serial.write(b"\r\n")
                self._console_line(line)
            elif b in (b"\x7f", b"\x08"):
                if self._line:
                    self._line = self._line[:-1]
                    if self._console_state != "password":
                        self.serial.write(b"\x08 \x08")
            elif b == b"\x03":
                self._line = b""
                self.serial.write(b"^C\r\n")
                self._prompt()
            else:
                self._line += b
                if self._console_state != "password":
                    self.serial.write(b)

    def _on_serial_break(self) -> None:
        if self.phase != Phase.RUNNING:
            return  # firmware ignores a BREAK; a kernel arms SysRq (shown as its help here)
        self.serial.write(
            f"\n[{self.uptime:12.6f}] SysRq : HELP : loglevel(0-9) reboot(b) crash(c) show-all-locks(d) "
            "terminate-all-tasks(e) memory-full-oom-kill(f) kill-all-tasks(i) thaw-filesystems(j) sak(k) "
            "show-backtrace-all-active-cpus(l) show-memory-usage(m) nice-all-RT-tasks(n) poweroff(o) "
            "show-registers(p) show-all-timers(q) unraw(r) sync(s) show-task-states(t) unmount(u) "
            "show-blocked-tasks(w) dump-ftrace-buffer(z)\n")

    def _prompt(self) -> None:
        if self._console_state == "login":
            self.serial.write(f"{self.name} login: ")
        elif self._console_state == "password":
            self.serial.write("Password: ")
        else:
            user = self._console_user
            self.serial.write(f"{user}@{self.name}:~{'#' if user == 'root' else '$'} ")

    def _console_line(self, line: str) -> None:
        state = self._console_state
        if state == "login":
            if line.strip():
                self._console_user = line.strip()
                self._console_state = "password"
        elif state == "password":
            login = self.spec.login
            if login is not None and (self._console_user, line) != login:
                self._console_state = "login"
                self.serial.write("\nLogin incorrect\n")
            else:
                self._console_state = "shell"
                self.serial.write(f"Last login: {time.strftime('%a %b %d %H:%M:%S', time.gmtime(self.clock()))}"
                                  " on ttyS0\n")
        else:
            cmd = line.strip()
            if cmd in ("exit", "logout"):
                self._console_state = "login"
                self.serial.write(f"logout\n\n{self._pretty()} ({self.spec.host_address})\n\n")
            elif cmd == "cat /etc/os-release":
                self.serial.write(self.os_release())
            elif cmd == "hostname":
                self.serial.write(self.name + "\n")
            elif cmd.startswith("uname"):
                release = f"6.6.60-{self.image[0] if self.image else 'x'}"
                self.serial.write(f"Linux {self.name} {release} #1 SMP x86_64 GNU/Linux\n")
            elif cmd == "uptime":
                self.serial.write(f" up {int(self.uptime // 60)} min,  1 user,  load average: 0.08, 0.03, 0.01\n")
            elif cmd == "reboot":
                self.serial.write("Rebooting.\n")
                self.power_reset()
                return
            elif cmd == "poweroff":
                self.power_soft()
                return
            elif cmd:
                self.serial.write(f"-bash: {cmd.split()[0]}: command not found\n")
        self._prompt()

    def _add_event(self, severity: str, sensor: str, sensor_type: str, message: str) -> None:
        with self._lock:
            ev = SelEvent(self._sel_next, self.clock(), severity, sensor, sensor_type, message)
            self._sel_next += 1
            self._sel.append(ev)
            if len(self._sel) > 512:  # a SEL is small and fills up, as on real BMCs
                del self._sel[0]

    def _add_fault_event(self) -> None:
        """What a BMC logs when the fault appears: the threshold crossed (as the sensors read
        it) and the component's own discrete event, worded as BMCs word their SEL entries."""
        if self.fault == "fan":
            self._add_event("critical", "FAN3", "Fan",
                            "FAN3 Lower Critical going low: reading 0 RPM < threshold 1000 RPM")
        elif self.fault == "overtemp":
            self._add_event("critical", "CPU1 Temp", "Temperature",
                            "CPU1 Temp Upper Critical going high: reading 96 C > threshold 95 C")
            self._add_event("warning", "CPU1 Status", "Processor", "CPU1 Status: Processor automatically throttled")
        elif self.fault == "psu":
            self._add_event("critical", "PSU2", "Power Supply", "PSU2: Power Supply AC lost")
            self._add_event("critical", "12V", "Voltage",
                            "12V Lower Critical going low: reading 10.6 V < threshold 10.8 V")
