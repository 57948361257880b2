"""The Redfish driver against the lab's RedfishLab and against every published mockup.

Part 1 runs the driver against :class:`console.lab.redfish_bmc.RedfishLab` on loopback
(every flavor, HTTP and HTTPS with and without verification) and checks that what the
driver reports matches the simulated machine.  Part 2 serves each tree in
``tests/data/redfish-mockups`` read-only with a tiny aiohttp server and checks that the
driver navigates it, or says clearly what is missing.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from console.drivers.bmc import BmcDriver, BootOverride, BootTarget, PowerAction, PowerState
from console.drivers.redfish import QUIRKS, RedfishDriver, quirks_for
from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.lab.machine import Machine, MachineSpec, Phase
from console.lab.redfish_bmc import FLAVORS, RedfishLab
from console.secrets import Secret
from inventory.model import Bmc

USER, PASSWORD = "root", "calvin"
LAB_FLAVORS = ("dmtf", "idrac", "ilo", "openbmc")
MOCKUPS = Path(__file__).resolve().parents[1] / "data" / "redfish-mockups"


# --------------------------------------------------------------------------- helpers
def make_bmc(address: str, port: int, *, scheme: str = "http", verify_tls: bool = False,
             ca_bundle: str | None = None, flavor: str | None = None, system: str | None = None,
             username: str = USER) -> Bmc:
    return Bmc(protocol="redfish", address=address, port=port, scheme=scheme, username=username,
               password="env:BMC_PASSWORD", verify_tls=verify_tls, ca_bundle=ca_bundle, flavor=flavor, system=system)


def make_machine(name: str, address: str, n: int, **spec: Any) -> Machine:
    spec.setdefault("image", ("flatcar", "3815.2.0"))
    ms = MachineSpec(name=name, mac=f"52:54:00:bb:00:{n:02x}", bmc_address=address,
                     host_address=address.replace("127.80.", "127.81.", 1), **spec)
    return Machine(ms, loop=asyncio.get_running_loop(), time_scale=0.01)


async def serve_one(lab: RedfishLab, address: str, *, flavor: str = "dmtf", scheme: str = "http",
                    systems: int = 1, password: str = PASSWORD, **spec: Any) -> tuple[Machine, int]:
    m = make_machine(f"{flavor}-{address.replace('.', '-')}", address, int(address.rsplit(".", 1)[1]), **spec)
    lab.add(m, address, 0, scheme=scheme, username=USER, password=password, flavor=flavor, systems=systems)
    ports = await lab.start()
    return m, ports[m.name]


async def eventually(check, timeout: float = 5.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(interval)


def free_port(address: str) -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(redfish_lab):
    """The in-process Redfish lab (conftest), stopped after each test."""
    return redfish_lab


@pytest.fixture
async def drivers():
    """Drivers a test opens; all closed at the end, whatever happened."""
    opened: list[RedfishDriver] = []

    def open_(bmc: Bmc, **kw: Any) -> RedfishDriver:
        d = RedfishDriver(bmc, Secret(kw.pop("password", PASSWORD)), **kw)
        opened.append(d)
        return d

    yield open_
    for d in opened:
        await d.close()


TRANSPORTS = ("http", "https-insecure", "https-verified")


def bmc_for(lab: RedfishLab, address: str, port: int, transport: str, **kw: Any) -> Bmc:
    if transport == "http":
        return make_bmc(address, port, scheme="http", **kw)
    if transport == "https-insecure":
        return make_bmc(address, port, scheme="https", verify_tls=False, **kw)
    return make_bmc(address, port, scheme="https", verify_tls=True, ca_bundle=str(lab.cert_file), **kw)


# --------------------------------------------------------------------------- part 1: the lab
def test_driver_satisfies_the_interface() -> None:
    d = RedfishDriver(make_bmc("127.80.0.1", 1), Secret(PASSWORD))
    assert isinstance(d, BmcDriver)
    assert PASSWORD not in repr(d)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("flavor", LAB_FLAVORS)
async def test_lab_every_flavor_and_transport(lab: RedfishLab, drivers, flavor: str, transport: str) -> None:
    address = f"127.80.1.{1 + LAB_FLAVORS.index(flavor) * 3 + TRANSPORTS.index(transport)}"
    scheme = "http" if transport == "http" else "https"
    machine, port = await serve_one(lab, address, flavor=flavor, scheme=scheme)
    d = drivers(bmc_for(lab, address, port, transport))

    assert d.auth_mode == "none", "no I/O before the first call"
    ident = await d.identity()
    assert d.auth_mode == "session"
    assert ident.serial == machine.serial_number
    assert ident.uuid == str(machine.uuid)
    assert ident.model == machine.spec.model
    assert ident.vendor == (FLAVORS[flavor].manufacturer or machine.spec.vendor)
    assert ident.bios_version == machine.spec.bios_version
    assert ident.bmc_firmware == machine.spec.bmc_firmware
    assert ident.macs == (machine.mac,)
    assert lab.session_count(address) == 1, "one session per driver"

    assert await d.health() == "ok"
    sensors = {s.name: s for s in await d.sensors()}
    assert {"temperature", "fan", "voltage", "power"} <= {s.kind for s in sensors.values()}
    cpu = sensors["CPU1 Temp"]
    assert (cpu.unit, cpu.upper_warning, cpu.upper_critical, cpu.health) == ("C", 85.0, 95.0, "ok")
    fan = sensors["FAN1"]
    assert fan.unit == ("%" if FLAVORS[flavor].fan_units == "Percent" else "RPM")
    assert fan.value and fan.lower_critical is not None
    assert sensors["12V"].lower_critical == 10.8

    # power: off, on, cycle, each polled back as on a real BMC
    assert await d.power_state() == PowerState.ON
    await d.power(PowerAction.OFF)
    await eventually(lambda: _is(d, PowerState.OFF))
    assert not machine.powered
    await d.power(PowerAction.ON)
    await eventually(lambda: _is(d, PowerState.ON))
    boots = machine.boots
    await d.power(PowerAction.CYCLE)
    await eventually(lambda: _async(machine.boots > boots))
    await eventually(lambda: _is(d, PowerState.ON))
    # Let the boot finish: a boot in progress would consume the one-time override set below.
    await eventually(lambda: _async(machine.phase == Phase.RUNNING))

    # boot override: set once, read back, clear
    await d.set_boot_override(BootTarget.PXE)
    assert await d.boot_override() == BootOverride(BootTarget.PXE, persistent=False)
    await d.set_boot_override(BootTarget.DISK, persistent=True)
    assert await d.boot_override() == BootOverride(BootTarget.DISK, persistent=True)
    await d.set_boot_override(BootTarget.NONE)
    assert await d.boot_override() == BootOverride(BootTarget.NONE)

    events = await d.events()
    assert events, "the SEL always holds at least the 'log cleared' entry"
    # The machine may log more (its boot goes on) between our read and this line.
    assert [e.id for e in events] == [str(ev.id) for ev in machine.events()][:len(events)]
    assert any("S5/G2" in e.message for e in events), "the power off was logged"
    assert all(e.timestamp is not None for e in events)
    assert len(await d.events(limit=2)) == 2

    await d.close()
    assert lab.session_count(address) == 0, "close() logs out"
    await d.close()  # idempotent
    with pytest.raises(DriverError):
        await d.power_state()


async def _is(d: RedfishDriver, state: PowerState) -> bool:
    return await d.power_state() == state


async def _async(value: bool) -> bool:
    return value


@pytest.mark.parametrize("flavor", LAB_FLAVORS)
async def test_lab_faulty_machine_is_critical(lab: RedfishLab, drivers, flavor: str) -> None:
    address = f"127.80.2.{1 + LAB_FLAVORS.index(flavor)}"
    machine, port = await serve_one(lab, address, flavor=flavor, fault="fan")
    d = drivers(make_bmc(address, port))
    assert await d.health() == "critical"
    fan3 = next(s for s in await d.sensors() if s.name == "FAN3")
    assert fan3.health == "critical" and fan3.value == 0
    events = await d.events()
    assert events[-1].severity == "critical" and events[-1].sensor == "Fan"


async def test_lab_relogin_after_session_deleted_server_side(lab: RedfishLab, drivers) -> None:
    address = "127.80.3.1"
    _, port = await serve_one(lab, address)
    d = drivers(make_bmc(address, port))
    assert await d.power_state() == PowerState.ON
    assert lab.session_count(address) == 1
    # Another operator deletes every session (as a BMC reboot would).
    async with httpx.AsyncClient(base_url=f"http://{address}:{port}", auth=(USER, PASSWORD)) as admin:
        for member in (await admin.get("/redfish/v1/SessionService/Sessions")).json()["Members"]:
            assert (await admin.delete(member["@odata.id"])).status_code == 204
    assert lab.session_count(address) == 0
    assert await d.power_state() == PowerState.ON, "the driver logs in again by itself"
    assert lab.session_count(address) == 1
    await d.close()
    assert lab.session_count(address) == 0


async def test_close_right_after_requests_cancelled_mid_flight_still_logs_out(lab: RedfishLab, drivers) -> None:
    """Shutdown cancels polls mid-request; the logout must not wait for their connection."""
    address = "127.80.3.3"
    _, port = await serve_one(lab, address)
    d = drivers(make_bmc(address, port))
    assert await d.power_state() == PowerState.ON
    for delay in (0.0, 0.001, 0.002, 0.003, 0.005):  # cancel at different points of a request
        task = asyncio.ensure_future(d.sensors())
        await asyncio.sleep(delay)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.wait_for(d.close(), 4)
    assert lab.session_count(address) == 0


async def test_lab_relogin_after_session_expired(lab: RedfishLab, drivers) -> None:
    address = "127.80.3.2"
    _, port = await serve_one(lab, address, flavor="openbmc")
    d = drivers(make_bmc(address, port))
    await d.health()
    lab.session_timeout = 0.05
    await asyncio.sleep(0.1)
    assert lab.session_count(address) == 0
    lab.session_timeout = 1800
    assert await d.health() == "ok"
    assert lab.session_count(address) == 1


async def test_lab_401_after_relogin_is_auth_failed(lab: RedfishLab, drivers) -> None:
    address = "127.80.3.3"
    _, port = await serve_one(lab, address)
    d = drivers(make_bmc(address, port))
    await d.power_state()
    lab.fault[address] = "auth_fail"
    with pytest.raises(AuthFailed):
        await d.power_state()


async def test_lab_wrong_password_is_auth_failed_and_never_echoed(lab: RedfishLab, drivers) -> None:
    address = "127.80.3.4"
    _, port = await serve_one(lab, address)
    d = drivers(make_bmc(address, port), password="not-the-password")
    with pytest.raises(AuthFailed) as info:
        await d.identity()
    assert "not-the-password" not in str(info.value) and "not-the-password" not in info.value.detail


@pytest.mark.parametrize("mode,error", [("malformed_json", ProtocolError), ("hang", Timeout),
                                        ("http500", ProtocolError), ("auth_fail", AuthFailed)])
async def test_lab_faults(lab: RedfishLab, drivers, mode: str, error: type[DriverError]) -> None:
    address = f"127.80.4.{1 + ['malformed_json', 'hang', 'http500', 'auth_fail'].index(mode)}"
    _, port = await serve_one(lab, address)
    lab.fault[address] = mode
    d = drivers(make_bmc(address, port), timeout=0.3)
    with pytest.raises(error) as info:
        await d.power_state()
    assert info.value.__cause__ is not None or mode in ("auth_fail", "http500")
    assert PASSWORD not in str(info.value)
    if mode == "http500":
        assert "500" in str(info.value)


async def test_lab_fault_after_login(lab: RedfishLab, drivers) -> None:
    """A BMC that breaks mid-session: JSON cut in half, then a hang."""
    address = "127.80.4.10"
    _, port = await serve_one(lab, address)
    d = drivers(make_bmc(address, port), timeout=0.3)
    assert await d.power_state() == PowerState.ON
    lab.fault[address] = "malformed_json"
    with pytest.raises(ProtocolError, match="not valid JSON"):
        await d.sensors()
    lab.fault[address] = "hang"
    with pytest.raises(Timeout):
        await d.health()
    lab.fault[address] = ""
    assert await d.health() == "ok", "the driver recovers when the BMC does"


async def test_closed_port_is_unreachable(drivers) -> None:
    d = drivers(make_bmc("127.80.5.1", free_port("127.80.5.1")), timeout=1.0)
    with pytest.raises(Unreachable) as info:
        await d.power_state()
    assert isinstance(info.value.__cause__, (httpx.ConnectError, aiohttp.ClientConnectorError))  # either client
    await d.close()  # nothing to log out from; must not raise


async def test_lab_https_without_trust_is_a_clear_tls_error(lab: RedfishLab, drivers) -> None:
    address = "127.80.5.2"
    _, port = await serve_one(lab, address, scheme="https")
    d = drivers(make_bmc(address, port, scheme="https", verify_tls=True))
    with pytest.raises(ProtocolError, match="certificate verify failed"):
        await d.power_state()


async def test_lab_multi_system_needs_a_choice(lab: RedfishLab, drivers) -> None:
    address = "127.80.6.1"
    machine, port = await serve_one(lab, address, flavor="idrac", systems=2)
    with pytest.raises(DriverError, match="System.Embedded.1, System.Embedded.2"):
        await drivers(make_bmc(address, port)).power_state()
    with pytest.raises(DriverError, match="no system 'System.Embedded.9'.*System.Embedded.2"):
        await drivers(make_bmc(address, port, system="System.Embedded.9")).power_state()
    second = lab.machines(address)["System.Embedded.2"]
    d = drivers(make_bmc(address, port, system="System.Embedded.2"))
    await d.power(PowerAction.OFF)
    await eventually(lambda: _is(d, PowerState.OFF))
    assert machine.powered and not second.powered, "only the chosen system changed"
    assert (await d.identity()).macs == (second.mac,)


def recording_client(bodies: list[tuple[str, str, Any]], **kw: Any) -> httpx.AsyncClient:
    async def record(request: httpx.Request) -> None:
        if request.method in ("PATCH", "POST") and not request.url.path.endswith("/Sessions"):
            bodies.append((request.method, request.url.path, json.loads(request.content)))
    return httpx.AsyncClient(event_hooks={"request": [record]}, **kw)


async def test_quirk_supermicro_sends_boot_mode_back(lab: RedfishLab, drivers) -> None:
    address = "127.80.7.1"
    _, port = await serve_one(lab, address)
    bodies: list[tuple[str, str, Any]] = []
    async with recording_client(bodies) as client:
        d = drivers(make_bmc(address, port, flavor="supermicro"), client=client)
        await d.set_boot_override(BootTarget.CD)
        await d.close()
        assert not client.is_closed, "a client the caller passed in stays the caller's"
    (method, path, body), = bodies
    assert method == "PATCH" and path.endswith("/Systems/437XR1138R2")
    assert body == {"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once",
                             "BootSourceOverrideMode": "UEFI"}}


async def test_quirk_ilo_clears_without_target_none(lab: RedfishLab, drivers) -> None:
    address = "127.80.7.2"
    _, port = await serve_one(lab, address, flavor="ilo")
    bodies: list[tuple[str, str, Any]] = []
    async with recording_client(bodies) as client:
        d = drivers(make_bmc(address, port), client=client)  # detected from Manufacturer "HPE"
        await d.set_boot_override(BootTarget.PXE)
        await d.set_boot_override(BootTarget.NONE)
        assert await d.boot_override() == BootOverride(BootTarget.NONE)
        await d.close()
    assert lab.session_count(address) == 0
    assert bodies[-1][2] == {"Boot": {"BootSourceOverrideEnabled": "Disabled"}}


def test_quirk_table_lookup() -> None:
    assert quirks_for("ilo") is QUIRKS["hpe"] and quirks_for("xcc") is QUIRKS["lenovo"]
    assert quirks_for(None, "Dell Inc.") is QUIRKS["dell"]
    assert quirks_for(None, None, "HPE") is QUIRKS["hpe"]
    assert quirks_for(None, "Contoso") is QUIRKS["generic"]
    with pytest.raises(DriverError, match="unknown Redfish flavor"):
        quirks_for("acme")


async def test_power_and_health_poll_costs_one_system_get(lab: RedfishLab, drivers) -> None:
    address = "127.80.7.3"
    _, port = await serve_one(lab, address, fault="fan")
    gets: list[str] = []

    async def record(request: httpx.Request) -> None:
        if request.method == "GET" and "/Systems/" in request.url.path:
            gets.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        d = drivers(make_bmc(address, port), client=client)
        await d.power_state()  # warm-up: discovery of the system URL
        gets.clear()
        assert await d.power_state() == PowerState.ON
        assert await d.health() == "critical"
        assert len(gets) == 1, gets  # one poll, one GET of the ComputerSystem
        assert await d.health() == "critical"  # a second health() alone reads afresh
        assert len(gets) == 2, gets
        await d.power_state()
        d.poll_reuse = 0.0  # ... as does one after the reuse window
        await asyncio.sleep(0.01)
        await d.health()
        assert len(gets) == 4, gets
        await d.close()


def test_boot_target_without_a_console_name_reads_as_other() -> None:
    from console.drivers import redfish_values as rv

    for name in ("Usb", "UefiTarget", "UefiHttp", "SDCard"):
        got = rv.boot_from({"Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": name}})
        assert got == BootOverride(BootTarget.OTHER), name
    got = rv.boot_from({"Boot": {"BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideTarget": "Usb"}})
    assert got == BootOverride(BootTarget.OTHER, persistent=True)
    assert rv.boot_from({"Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe"}}).target \
        is BootTarget.PXE


async def test_boot_target_other_cannot_be_set(lab: RedfishLab, drivers) -> None:
    address = "127.80.7.4"
    _, port = await serve_one(lab, address)
    with pytest.raises(DriverError, match="cannot be set"):
        await drivers(make_bmc(address, port)).set_boot_override(BootTarget.OTHER)


async def test_lab_session_limit_is_a_clear_error(lab: RedfishLab, drivers) -> None:
    address = "127.80.8.1"
    _, port = await serve_one(lab, address)
    lab.max_sessions = 0
    with pytest.raises(ProtocolError, match="503.*SessionLimitExceeded"):
        await drivers(make_bmc(address, port)).health()


async def test_lab_one_connection_one_session_under_concurrency(lab: RedfishLab, drivers) -> None:
    address = "127.80.8.2"
    _, port = await serve_one(lab, address, flavor="idrac")
    d = drivers(make_bmc(address, port))
    streams: list[object] = []  # the objects themselves: ids of dead ones could be reused

    async def seen(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        if not any(stream is s for s in streams):
            streams.append(stream)

    d._http._client.event_hooks["response"].append(seen)  # the driver's own client, as configured
    results = await asyncio.gather(*(d.power_state() for _ in range(10)), d.sensors(), d.identity(), d.events())
    assert results[:10] == [PowerState.ON] * 10
    assert lab.session_count(address) == 1, "concurrent first calls log in once"
    assert len(streams) == 1, "every request rode one kept-alive connection"


async def test_close_after_the_bmc_died_does_not_raise(lab: RedfishLab, drivers) -> None:
    address = "127.80.8.3"
    _, port = await serve_one(lab, address)
    d = drivers(make_bmc(address, port), timeout=0.5)
    await d.health()
    await lab.stop()
    await d.close()
    with pytest.raises(DriverError, match="closed"):
        await d.health()


async def test_lab_stale_etag_is_retried_once(lab: RedfishLab, drivers) -> None:
    """PATCH carries If-Match; a 412 (the system changed since our GET) is retried with a fresh ETag."""
    address = "127.80.8.4"
    _, port = await serve_one(lab, address, flavor="openbmc")
    patches: list[str] = []

    async def stale_first(request: httpx.Request) -> None:
        if request.method == "PATCH":
            patches.append(request.headers.get("If-Match", ""))
            if len(patches) == 1:
                request.headers["If-Match"] = 'W/"00000000"'

    async with httpx.AsyncClient(event_hooks={"request": [stale_first]}) as client:
        d = drivers(make_bmc(address, port), client=client)
        await d.set_boot_override(BootTarget.BIOS)
        assert await d.boot_override() == BootOverride(BootTarget.BIOS)
        await d.close()
    assert len(patches) == 2 and all(p.startswith('W/"') for p in patches)


# --------------------------------------------------------------------------- part 2: the mockups
class MockupServer:
    """A mockup tree served read-only on loopback, the way a real BMC would answer GETs.

    ``/redfish`` and ``/redfish/v1`` answer anonymously; everything else wants Basic
    credentials (POST to Sessions gets 405: there is no SessionService to log in to).
    Paths match case-insensitively and with or without a trailing slash, as iLO does
    (the HPE capture links ``/redfish/v1/systems/1/bios/``).  ComputerSystem.Reset is
    recorded and moves PowerState so power actions can be checked; PATCH is refused.
    """

    def __init__(self, docs: dict[str, Any]) -> None:
        self.docs = {self.key(k): v for k, v in docs.items()}
        self.docs.setdefault("/redfish", {"v1": "/redfish/v1/"})
        self.resets: list[str] = []
        self.redirects: dict[str, str] = {}  # path (lower case) -> Location answered with 307
        self.guard_root = False  # True: even /redfish/v1 wants credentials, as some BMCs do
        self.apply_resets = True  # False: accept resets and ignore them, as a wedged BMC does
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @staticmethod
    def key(path: str) -> str:
        return path.split("#", 1)[0].rstrip("/").lower() or "/"

    @classmethod
    def from_mockup(cls, name: str) -> MockupServer:
        root = MOCKUPS / name
        docs: dict[str, Any] = {}
        if (root / "redfish" / "v1").is_dir():
            for f in (root / "redfish" / "v1").rglob("index.json"):
                docs["/" + str(f.parent.relative_to(root))] = json.loads(f.read_text(encoding="utf-8"))
        else:  # flat fixture files: each carries its own @odata.id (first file wins a duplicate id)
            for f in sorted(root.rglob("*.json")):
                doc = json.loads(f.read_text(encoding="utf-8"))
                if isinstance(doc, dict) and isinstance(doc.get("@odata.id"), str):
                    docs.setdefault(doc["@odata.id"], doc)
        return cls(docs)

    async def start(self, address: str) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket()
        try:
            sock.bind((address, 0))  # our own socket: the ephemeral port is known before serving
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def error(status: int, message_id: str) -> web.Response:
        return web.json_response({"error": {"code": f"Base.1.0.{message_id}", "message": message_id}}, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        key = self.key(request.path)
        if key not in ("/redfish", "/redfish/v1") or request.method != "GET" or self.guard_root:
            auth = request.headers.get("Authorization", "")
            want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if request.path.lower().rstrip("/").endswith("/sessions") and request.method == "POST":
                return self.error(405, "OperationNotAllowed")
            if auth != want:
                return self.error(401, "NoValidSession")
        if key in self.redirects:
            return web.Response(status=307, headers={"Location": self.redirects[key]})
        if request.method == "POST" and key.endswith("/actions/computersystem.reset"):
            kind = (await request.json()).get("ResetType")
            self.resets.append(kind)
            system = self.docs.get(key.rsplit("/actions/", 1)[0])
            if system is not None and self.apply_resets:
                system["PowerState"] = "Off" if kind in ("ForceOff", "GracefulShutdown") else "On"
            return web.Response(status=204)
        if request.method != "GET":
            return self.error(405, "OperationNotAllowed")
        if key not in self.docs:
            return self.error(404, "ResourceMissingAtURI")
        return web.json_response(self.docs[key])


@pytest.fixture
async def mockup_server():
    started: list[MockupServer] = []

    async def start(name: str, address: str = "127.80.9.1", edit=None) -> MockupServer:
        server = MockupServer.from_mockup(name)
        server.docs = copy.deepcopy(server.docs)
        if edit is not None:
            edit(server.docs)
        started.append(server)
        await server.start(address)
        return server

    yield start
    for s in started:
        await s.stop()


#: What each mockup is known to hold (from its files and the mockups README).
EXPECT: dict[str, dict[str, Any]] = {
    "dmtf-public-rackmount1": dict(system=None, power=PowerState.ON, vendor="Contoso", serial="437XR1138R2",
                                   firmware="1.45.455b66-rev4", boot=BootOverride(BootTarget.PXE), sensors=8,
                                   events=2, health="warning"),
    # Blade3's CPU temperature is Warning, but its system's HealthRollup says OK: we report the BMC's word.
    "dmtf-public-bladed": dict(system="529QB9452R6", power=PowerState.ON, vendor="Contoso", sensors=2,
                               events=None, health="ok"),
    "hpe-ilo5-dl325-gen10plus": dict(system=None, power=PowerState.ON, vendor="HPE", serial="MXQ019020B",
                                     firmware=None, boot=BootOverride(BootTarget.NONE), sensors=None, events=100,
                                     health="ok"),
    "ami-gigabyte-h262-z63": dict(system=None, power=PowerState.ON, vendor="GIGABYTE", serial="GJG9NF512A000302",
                                  boot=BootOverride(BootTarget.NONE), sensors=None, events=10, health="ok"),
    "openbmc-stock": dict(system=None, power=PowerState.OFF, vendor="", serial="", macs=(),
                          boot=BootOverride(BootTarget.NONE), sensors=0, events=0, health="ok"),
    "dell-idrac-bmclib-fixtures": dict(system=None, power=PowerState.ON, vendor="Dell Inc.",
                                       firmware="1.20.50.52", boot=BootOverride(BootTarget.NONE), sensors="error",
                                       events=2, health="ok"),
}


def mockup_names() -> list[str]:
    return sorted(p.name for p in MOCKUPS.iterdir() if p.is_dir()) if MOCKUPS.is_dir() else []


def test_every_mockup_has_expectations() -> None:
    if not MOCKUPS.is_dir():
        pytest.skip("redfish mockups not present")
    assert set(mockup_names()) == set(EXPECT), "a new mockup needs a row in EXPECT"


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
@pytest.mark.parametrize("name", sorted(EXPECT))
async def test_mockup_read_everything(mockup_server, drivers, name: str) -> None:
    exp = EXPECT[name]
    server = await mockup_server(name)
    d = drivers(make_bmc("127.80.9.1", server.port, system=exp["system"]))

    assert await d.power_state() == exp["power"]
    assert await d.health() == exp["health"]
    if "boot" in exp:
        assert await d.boot_override() == exp["boot"]

    ident = await d.identity()
    assert ident.vendor == exp["vendor"]
    if "serial" in exp:
        assert ident.serial == exp["serial"]
    if exp.get("firmware"):
        assert ident.bmc_firmware == exp["firmware"]
    if "macs" in exp:
        assert ident.macs == exp["macs"]
    assert all(len(m) == 17 and m == m.lower() for m in ident.macs)

    if exp["sensors"] == "error":
        with pytest.raises(DriverError, match="404"):  # the fixture set holds no Chassis
            await d.sensors()
    else:
        sensors = await d.sensors()
        if exp["sensors"] is not None:
            assert len(sensors) == exp["sensors"]
        assert all(s.health in ("ok", "warning", "critical", "unknown") for s in sensors)

    events = await d.events()
    if exp["events"] is not None:
        assert len(events) == exp["events"]
    stamps = [e.timestamp for e in events if e.timestamp is not None]
    assert stamps == sorted(stamps), "newest last"
    await d.close()


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_details(mockup_server, drivers) -> None:
    """Spot checks of values the driver must translate, one mockup after another."""
    server = await mockup_server("dmtf-public-rackmount1")
    d = drivers(make_bmc("127.80.9.1", server.port))
    sensors = {s.name: s for s in await d.sensors()}
    assert "CPU2 Temp" not in sensors, "a Disabled sensor is left out"
    cpu = sensors["CPU1 Temp"]
    assert (cpu.value, cpu.upper_warning, cpu.upper_critical, cpu.kind) == (41.0, 42.0, 45.0, "temperature")
    assert sensors["BaseBoard System Fan"].lower_critical == 0.0, "Fatal stands in for a missing Critical"
    assert sensors["Power Supply Bay"].health == "warning"
    ident = await d.identity()
    assert "12:44:6a:3b:04:11" in ident.macs and "aa:bb:cc:dd:ee:00" in ident.macs
    events = await d.events()
    assert [e.severity for e in events] == ["critical", "critical"]
    assert events[0].sensor == "Temperature" and events[0].message == "Temperature threshold exceeded"
    await server.stop()

    server = await mockup_server("hpe-ilo5-dl325-gen10plus", "127.80.9.2")
    d = drivers(make_bmc("127.80.9.2", server.port))
    fans = [s for s in await d.sensors() if s.kind == "fan"]
    assert len(fans) == 6 and {s.unit for s in fans} == {"%"}
    assert (await d.identity()).bmc_firmware.startswith("iLO 5")
    assert len(await d.events(limit=5)) == 5


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_bladed_needs_a_system(mockup_server, drivers) -> None:
    server = await mockup_server("dmtf-public-bladed")
    d = drivers(make_bmc("127.80.9.1", server.port))
    with pytest.raises(DriverError, match="4 systems.*529QB9450R6.*set bmc.system"):
        await d.power_state()
    d = drivers(make_bmc("127.80.9.1", server.port, system="529QB9450R6"))
    sensors = await d.sensors()
    assert [s.name for s in sensors] == ["CPU Temp", "CPU Fan"], "the blade's own chassis, not the enclosure"
    assert await d.events() == [], "the blade manager's log is empty"


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_sensors_collection_when_thermal_absent(mockup_server, drivers) -> None:
    def drop_thermal(docs: dict[str, Any]) -> None:
        chassis = docs["/redfish/v1/chassis/1u"]
        del chassis["Thermal"], chassis["Power"]

    server = await mockup_server("dmtf-public-rackmount1", edit=drop_thermal)
    d = drivers(make_bmc("127.80.9.1", server.port))
    sensors = {s.name: s for s in await d.sensors()}
    assert len(sensors) == 30, "41 members, 11 of them Absent"
    assert sensors["Ambient Temperature"].kind == "temperature", "kind from units when ReadingType is absent"
    assert sensors["CPU #1 Fan Speed"].unit == "%"
    cpu = sensors["CPU #1 Temperature"]
    assert (cpu.kind, cpu.unit, cpu.value, cpu.upper_warning, cpu.upper_critical, cpu.health) == \
        ("temperature", "C", 44.0, 42.0, 45.0, "warning")


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
@pytest.mark.parametrize("name,action,sent", [
    ("hpe-ilo5-dl325-gen10plus", PowerAction.CYCLE, ["ForceOff", "On"]),  # no PowerCycle on iLO 5
    ("ami-gigabyte-h262-z63", PowerAction.RESET, ["ForceRestart"]),  # ResetType from @Redfish.ActionInfo
    ("ami-gigabyte-h262-z63", PowerAction.CYCLE, ["ForceOff", "On"]),
    ("openbmc-stock", PowerAction.CYCLE, ["PowerCycle"]),
    ("openbmc-stock", PowerAction.RESET, ["ForceRestart"]),
    ("dell-idrac-bmclib-fixtures", PowerAction.SOFT, ["GracefulShutdown"]),
    ("dmtf-public-rackmount1", PowerAction.ON, ["On"]),
])
async def test_mockup_reset_types(mockup_server, drivers, name: str, action: PowerAction, sent: list[str]) -> None:
    server = await mockup_server(name)
    d = drivers(make_bmc("127.80.9.1", server.port))
    d.poll_interval = 0.01
    await d.power(action)
    assert server.resets == sent


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_missing_things_are_clear_errors(mockup_server, drivers) -> None:
    server = await mockup_server("ami-gigabyte-h262-z63")
    d = drivers(make_bmc("127.80.9.1", server.port))
    with pytest.raises(ProtocolError, match="405"):  # the mockup is read-only: PATCH refused
        await d.set_boot_override(BootTarget.PXE)

    def narrow(docs: dict[str, Any]) -> None:
        system = docs["/redfish/v1/systems/437xr1138r2"]
        system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"] = ["On"]
        system["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"] = ["None", "Pxe"]

    server = await mockup_server("dmtf-public-rackmount1", "127.80.9.2", edit=narrow)
    d = drivers(make_bmc("127.80.9.2", server.port))
    with pytest.raises(DriverError, match="no reset type for 'off' \\(allowed: On\\)"):
        await d.power(PowerAction.OFF)
    with pytest.raises(DriverError, match="does not allow BootSourceOverrideTarget 'BiosSetup'"):
        await d.set_boot_override(BootTarget.BIOS)
    assert server.resets == []

    def no_reset(docs: dict[str, Any]) -> None:
        del docs["/redfish/v1/systems/437xr1138r2"]["Actions"]

    server = await mockup_server("dmtf-public-rackmount1", "127.80.9.3", edit=no_reset)
    d = drivers(make_bmc("127.80.9.3", server.port))
    with pytest.raises(DriverError, match="no ComputerSystem.Reset"):
        await d.power(PowerAction.OFF)


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_basic_auth_paths(mockup_server, drivers) -> None:
    """No Links.Sessions: the SessionService is read (with Basic) and its login refused (405)."""
    def no_links(docs: dict[str, Any]) -> None:
        del docs["/redfish/v1"]["Links"]

    server = await mockup_server("dmtf-public-rackmount1", edit=no_links)
    d = drivers(make_bmc("127.80.9.1", server.port))
    assert await d.power_state() == PowerState.ON
    assert d.auth_mode == "basic"
    with pytest.raises(AuthFailed):
        await drivers(make_bmc("127.80.9.1", server.port), password="wrong").power_state()

    def no_session_service(docs: dict[str, Any]) -> None:
        del docs["/redfish/v1"]["Links"], docs["/redfish/v1"]["SessionService"]

    server = await mockup_server("openbmc-stock", "127.80.9.2", edit=no_session_service)
    server.guard_root = True
    d = drivers(make_bmc("127.80.9.2", server.port))
    assert await d.power_state() == PowerState.OFF, "root read with Basic credentials after a 401"
    with pytest.raises(AuthFailed):
        await drivers(make_bmc("127.80.9.2", server.port), password="wrong").health()


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_redirects_same_origin_only(mockup_server, drivers) -> None:
    def alias(docs: dict[str, Any]) -> None:
        docs["/redfish/v1"]["Systems"] = {"@odata.id": "/redfish/v1/SystemsAlias"}

    server = await mockup_server("dmtf-public-rackmount1", edit=alias)
    server.redirects["/redfish/v1/systemsalias"] = "/redfish/v1/Systems"
    d = drivers(make_bmc("127.80.9.1", server.port))
    assert await d.power_state() == PowerState.ON, "an alias that redirects on the BMC is followed"

    server.redirects["/redfish/v1/systemsalias"] = "http://127.80.9.99:9/redfish/v1/Systems"
    d = drivers(make_bmc("127.80.9.1", server.port))
    with pytest.raises(ProtocolError, match="redirects off the BMC"):
        await d.power_state()


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_less_common_shapes(mockup_server, drivers) -> None:
    """Log entries as bare links, and a system without Links.Chassis."""
    def bare_entries(docs: dict[str, Any]) -> None:
        entries = docs["/redfish/v1/systems/437xr1138r2/logservices/log1/entries"]
        entries["Members"] = [{"@odata.id": m["@odata.id"]} for m in entries["Members"]]

    server = await mockup_server("dmtf-public-rackmount1", edit=bare_entries)
    d = drivers(make_bmc("127.80.9.1", server.port))
    events = await d.events(limit=1)
    assert [(e.id, e.severity, e.message) for e in events] == [("2", "critical", "Temperature threshold exceeded")]

    def unlinked(docs: dict[str, Any]) -> None:
        del docs["/redfish/v1/systems/529qb9450r6"]["Links"]["Chassis"]

    server = await mockup_server("dmtf-public-bladed", "127.80.9.2", edit=unlinked)
    d = drivers(make_bmc("127.80.9.2", server.port, system="529QB9450R6"))
    assert [s.name for s in await d.sensors()] == ["CPU Temp", "CPU Fan"], "found through Chassis Links"


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_cycle_fallback_on_a_machine_that_is_off(mockup_server, drivers) -> None:
    def off(docs: dict[str, Any]) -> None:
        docs["/redfish/v1/systems/1"]["PowerState"] = "Off"

    server = await mockup_server("hpe-ilo5-dl325-gen10plus", edit=off)
    d = drivers(make_bmc("127.80.9.1", server.port))
    await d.power(PowerAction.CYCLE)
    assert server.resets == ["On"], "no ForceOff for a machine already off"
    assert await d.power_state() == PowerState.ON


@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
async def test_mockup_cycle_fallback_gives_up_when_power_stays_on(mockup_server, drivers) -> None:
    server = await mockup_server("ami-gigabyte-h262-z63")
    server.apply_resets = False
    d = drivers(make_bmc("127.80.9.1", server.port))
    d.poll_interval, d.cycle_off_timeout = 0.01, 0.1
    with pytest.raises(Timeout, match="did not turn off"):
        await d.power(PowerAction.CYCLE)
    assert server.resets == ["ForceOff"], "never On after an off that did not happen"
