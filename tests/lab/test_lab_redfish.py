"""The lab's Redfish BMC simulator, checked from the outside with curl.

Every HTTP exchange here goes through ``/usr/bin/curl`` (run as an asyncio
subprocess so the lab keeps serving on the test's loop): a real client on real
sockets is the cross-check that the simulator speaks Redfish and not just
"whatever our own driver expects".  Resource shapes are compared with the
published mockups in ``tests/data/redfish-mockups``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import ssl
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.lab import tls
from console.lab.machine import BootDevice, Machine, MachineSpec
from console.lab.redfish_bmc import FLAVORS, RedfishLab

CURL = "/usr/bin/curl"
USER, PASSWORD = "root", "calvin"
MOCKUPS = Path(__file__).resolve().parents[1] / "data" / "redfish-mockups"

IMAGE = ("flatcar", "3815.2.0")


def curl_test(fn):
    """Mark a test that talks through curl: ``thirdparty``, and skipped where curl is absent."""
    return pytest.mark.thirdparty(pytest.mark.skipif(not os.access(CURL, os.X_OK), reason="curl not installed")(fn))


# --------------------------------------------------------------------------- helpers
@dataclass
class Reply:
    """What curl saw: exit code, status, headers (lower-case names) and body."""

    exit: int
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


async def curl(url: str, **kw: Any) -> Reply:
    """One request with curl (:func:`curl_many`'s options); never blocks the loop the lab is
    serving on."""
    return (await curl_many([url], **kw))[0]


async def curl_many(urls: list[str], *, user: str | None = f"{USER}:{PASSWORD}", method: str | None = None,
                    body: Any = None, headers: tuple[str, ...] = (), max_time: float = 5.0,
                    insecure: bool = True, extra: tuple[str, ...] = ()) -> list[Reply]:
    """Each of ``urls`` with one curl, on one kept-alive connection per host (as a browser
    or a Redfish client walking a tree would): a reply each, in order."""
    args = [CURL, "-sS", "-i", "--max-time", str(max_time)]
    if insecure:
        args.append("-k")
    if user is not None:
        args += ["-u", user]
    if method:
        args += ["-X", method]
    if body is not None:
        args += ["-H", "Content-Type: application/json",
                 "--data-binary", body if isinstance(body, str) else json.dumps(body)]
    for h in headers:
        args += ["-H", h]
    return await _curl(args, extra, urls)


_END = b"\n<<<curl transfer ended, exit "  # written after each transfer (-w): splits the output


async def _curl(args: list[str], extra: tuple[str, ...], urls: list[str]) -> list[Reply]:
    if len(urls) > 1:
        args = [*args, "-w", _END.decode() + "%{exitcode}>>>\n"]
    proc = await asyncio.create_subprocess_exec(*args, *extra, *urls, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if len(urls) == 1:
        return [Reply(proc.returncode) if proc.returncode else _reply(out)]
    # each transfer's output, then the end marker with its exit code, then the next one's
    replies: list[Reply] = []
    parts = out.split(_END)
    text = parts[0]
    for part in parts[1:]:
        code, _, following = part.partition(b">>>\n")
        replies.append(Reply(int(code)) if int(code) else _reply(text))
        text = following
    assert len(replies) == len(urls), (len(replies), len(urls), out[-300:])
    return replies


def _reply(out: bytes) -> Reply:
    head, _, payload = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return Reply(0, int(lines[0].split()[1]), hdrs, payload)


@dataclass
class Node:
    """One served BMC as a test sees it."""

    machine: Machine
    address: str
    port: int
    scheme: str

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.address}:{self.port}"

    async def get(self, path: str, **kw: Any) -> Reply:
        return await curl(self.base + path, **kw)

    async def get_json(self, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.get(path, **kw)
        assert r.status == 200, (path, r.status, r.body[:300])
        return r.json()


def make_machine(name: str, address: str, **spec: Any) -> Machine:
    """A machine on the running loop, a hundred times faster than life."""
    n = int(ipaddress.IPv4Address(address)) & 0xFFFF
    mac = f"52:54:00:aa:{n >> 8:02x}:{n & 0xFF:02x}"
    spec.setdefault("image", IMAGE)
    ms = MachineSpec(name=name, mac=mac, bmc_address=address, host_address=address.replace("127.78.", "127.79.", 1),
                     **spec)
    return Machine(ms, loop=asyncio.get_running_loop(), time_scale=0.01)


async def serve(lab: RedfishLab, *addresses: str, flavor: str = "dmtf", scheme: str = "https", systems: int = 1,
                **spec: Any) -> list[Node]:
    """Add one BMC per address (ephemeral ports), start the lab, return the nodes."""
    machines = []
    for i, address in enumerate(addresses):
        m = make_machine(f"{flavor}-{address.rsplit('.', 2)[-2]}-{address.rsplit('.', 1)[-1]}", address, **spec)
        lab.add(m, address, 0, scheme=scheme, username=USER, password=PASSWORD, flavor=flavor, systems=systems)
        machines.append(m)
    ports = await lab.start()
    return [Node(m, a, ports[m.name], scheme) for m, a in zip(machines, addresses)]


async def eventually(check, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Poll an async predicate until it holds (power changes take time, as on real BMCs)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(interval)


def odata_ids(doc: Any) -> list[str]:
    """Every @odata.id anywhere in a document."""
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "@odata.id" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(odata_ids(v))
    elif isinstance(doc, list):
        for v in doc:
            out.extend(odata_ids(v))
    return out


async def crawl(node: Node, **kw: Any) -> dict[str, dict[str, Any]]:
    """Follow every @odata.id reachable from /redfish/v1; each must answer 200 with JSON."""
    seen: dict[str, dict[str, Any]] = {}
    frontier = ["/redfish/v1"]
    while frontier:
        replies = await curl_many([node.base + p for p in frontier], **kw)
        found: list[str] = []
        for path, r in zip(frontier, replies):
            assert r.exit == 0 and r.status == 200, (path, r.exit, r.status, r.body[:300])
            assert r.headers["content-type"].startswith("application/json")
            doc = r.json()
            assert doc["@odata.id"] == path, "a resource names itself by the URI it is served at"
            seen[path] = doc
            for ref in odata_ids(doc):
                ref = ref.split("#", 1)[0]
                if ref not in seen and ref not in found and ref not in frontier:
                    found.append(ref)
        frontier = found
    return seen


def error_id(r: Reply) -> str:
    """The Base registry message name of a Redfish error body (checking its shape on the way)."""
    err = r.json()["error"]
    info = err["@Message.ExtendedInfo"]
    assert isinstance(info, list) and info and isinstance(err["message"], str)
    assert info[0]["MessageId"].startswith("Base.1.")
    return info[0]["MessageId"].rsplit(".", 1)[-1]


@pytest.fixture
def lab(redfish_lab):
    """The in-process Redfish lab (conftest), stopped after each test."""
    return redfish_lab


# --------------------------------------------------------------------------- service root and auth
@curl_test
async def test_service_root_is_public_and_links_everything(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.1.1")
    versions = await node.get_json("/redfish", user=None)
    assert versions == {"v1": "/redfish/v1/"}
    root = await node.get_json("/redfish/v1/", user=None)
    assert root["@odata.id"] == "/redfish/v1"
    assert root["@odata.type"].startswith("#ServiceRoot.v1_")
    for key in ("Systems", "Chassis", "Managers", "SessionService", "AccountService"):
        assert root[key]["@odata.id"] == f"/redfish/v1/{key}"
    assert root["Links"]["Sessions"]["@odata.id"] == "/redfish/v1/SessionService/Sessions"
    assert (await node.get("/redfish/v1", user=None)).status == 200


@curl_test
async def test_bad_or_missing_credentials_get_401_with_challenge(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.1.2")
    for user in (None, f"{USER}:wrong", f"nobody:{PASSWORD}"):
        r = await node.get("/redfish/v1/Systems", user=user)
        assert r.status == 401
        assert r.headers["www-authenticate"].lower().startswith("basic")
        assert error_id(r) == "NoValidSession"
    r = await node.get("/redfish/v1/Systems", user=None, headers=("X-Auth-Token: not-a-token",))
    assert r.status == 401
    # Unknown paths do not leak to anonymous clients: 401 first, 404 only once authenticated.
    assert (await node.get("/redfish/v1/Nope", user=None)).status == 401
    assert (await node.get("/redfish/v1/Systems")).status == 200


# --------------------------------------------------------------------------- systems, power, boot
@curl_test
async def test_systems_collection_and_system_fields(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.2.1")
    m = node.machine
    coll = await node.get_json("/redfish/v1/Systems")
    assert coll["Members@odata.count"] == 1
    uri = coll["Members"][0]["@odata.id"]
    assert uri == "/redfish/v1/Systems/437XR1138R2"
    sys_ = await node.get_json(uri)
    assert sys_["Id"] == "437XR1138R2"
    assert (sys_["Manufacturer"], sys_["Model"], sys_["SerialNumber"]) == (m.spec.vendor, m.spec.model, m.serial_number)
    assert sys_["UUID"] == str(m.uuid) and sys_["HostName"] == m.name and sys_["BiosVersion"] == m.spec.bios_version
    assert sys_["PowerState"] == "On"
    assert sys_["Status"] == {"State": "Enabled", "Health": "OK", "HealthRollup": "OK"}
    boot = sys_["Boot"]
    assert boot["BootSourceOverrideEnabled"] == "Disabled" and boot["BootSourceOverrideMode"] == "UEFI"
    assert {"None", "Pxe", "Hdd", "Cd", "BiosSetup"} <= set(boot["BootSourceOverrideTarget@Redfish.AllowableValues"])
    reset = sys_["Actions"]["#ComputerSystem.Reset"]
    assert reset["target"] == f"{uri}/Actions/ComputerSystem.Reset"
    assert {"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "Nmi"} <= set(
        reset["ResetType@Redfish.AllowableValues"])
    nics = await node.get_json(sys_["EthernetInterfaces"]["@odata.id"])
    nic = await node.get_json(nics["Members"][0]["@odata.id"])
    assert nic["MACAddress"].lower() == m.mac
    logs = await node.get_json(sys_["LogServices"]["@odata.id"])
    assert logs["Members"][0]["@odata.id"].endswith("/LogServices/SEL")


@curl_test
async def test_reset_on_forceoff_and_graceful_shutdown_change_power_state(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.2.2", powered=False)
    uri = "/redfish/v1/Systems/437XR1138R2"
    target = f"{uri}/Actions/ComputerSystem.Reset"

    async def power_is(state: str) -> bool:
        return (await node.get_json(uri))["PowerState"] == state

    assert await power_is("Off")
    r = await node.get(target, method="POST", body={"ResetType": "On"})
    assert r.status in (200, 204)
    await eventually(lambda: power_is("On"))
    assert node.machine.powered
    r = await node.get(target, method="POST", body={"ResetType": "ForceOff"})
    assert r.status in (200, 204)
    await eventually(lambda: power_is("Off"))
    assert not node.machine.powered
    # Back on, wait for the OS, then ask it to shut down politely.
    await node.get(target, method="POST", body={"ResetType": "PowerCycle"})
    await eventually(lambda: power_is("On"))
    await eventually(lambda: asyncio.sleep(0, node.machine.ssh_up))
    assert (await node.get(target, method="POST", body={"ResetType": "GracefulShutdown"})).status == 204
    await eventually(lambda: power_is("Off"))


@curl_test
async def test_reset_rejects_bad_requests_with_redfish_errors(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.2.3")
    target = "/redfish/v1/Systems/437XR1138R2/Actions/ComputerSystem.Reset"
    r = await node.get(target, method="POST", body={"ResetType": "Explode"})
    assert r.status == 400 and error_id(r) == "ActionParameterValueNotInList"
    assert r.json()["error"]["@Message.ExtendedInfo"][0]["MessageArgs"][0] == "Explode"
    r = await node.get(target, method="POST", body={})
    assert r.status == 400 and error_id(r) == "ActionParameterMissing"
    r = await node.get(target, method="POST", body="{not json")
    assert r.status == 400 and error_id(r) == "MalformedJSON"
    r = await node.get("/redfish/v1/Systems/nope/Actions/ComputerSystem.Reset", method="POST",
                       body={"ResetType": "On"})
    assert r.status == 404
    assert node.machine.powered, "no rejected request may touch the machine"


@curl_test
async def test_boot_override_patch_reads_back_and_reaches_the_machine(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.2.4")
    m = node.machine
    uri = "/redfish/v1/Systems/437XR1138R2"

    async def boot() -> dict[str, Any]:
        return (await node.get_json(uri))["Boot"]

    r = await node.get(uri, method="PATCH", body={"Boot": {"BootSourceOverrideTarget": "Pxe",
                                                          "BootSourceOverrideEnabled": "Once",
                                                          "BootSourceOverrideMode": "UEFI"}})
    assert r.status in (200, 204)
    assert (m.boot_override, m.boot_override_persistent) == (BootDevice.PXE, False)
    b = await boot()
    assert (b["BootSourceOverrideTarget"], b["BootSourceOverrideEnabled"]) == ("Pxe", "Once")

    await node.get(uri, method="PATCH", body={"Boot": {"BootSourceOverrideTarget": "Hdd",
                                                      "BootSourceOverrideEnabled": "Continuous"}})
    assert (m.boot_override, m.boot_override_persistent) == (BootDevice.DISK, True)
    assert (await boot())["BootSourceOverrideEnabled"] == "Continuous"

    await node.get(uri, method="PATCH", body={"Boot": {"BootSourceOverrideEnabled": "Disabled"}})
    assert m.boot_override == BootDevice.NONE
    assert (await boot())["BootSourceOverrideTarget"] == "None"

    # A target alone arms it once; the next boot consumes it and the read-back says so.
    await node.get(uri, method="PATCH", body={"Boot": {"BootSourceOverrideTarget": "BiosSetup"}})
    assert (await boot())["BootSourceOverrideEnabled"] == "Once"
    await node.get(f"{uri}/Actions/ComputerSystem.Reset", method="POST", body={"ResetType": "ForceRestart"})
    await eventually(lambda: asyncio.sleep(0, m.boot_override == BootDevice.NONE))
    assert (await boot())["BootSourceOverrideEnabled"] == "Disabled"
    assert m.last_boot_source == BootDevice.BIOS

    r = await node.get(uri, method="PATCH", body={"Boot": {"BootSourceOverrideTarget": "Floppy"}})
    assert r.status == 400 and error_id(r) == "PropertyValueNotInList"
    r = await node.get(uri, method="PATCH", body={"PowerState": "Off"})
    assert r.status == 400 and error_id(r) == "PropertyNotWritable"
    r = await node.get(uri, method="PATCH", body={"Bogus": 1})
    assert r.status == 400 and error_id(r) == "PropertyUnknown"


@curl_test
async def test_patch_honours_if_match(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.2.5")
    uri = "/redfish/v1/Systems/437XR1138R2"
    etag = (await node.get(uri)).headers["etag"]
    body = {"Boot": {"BootSourceOverrideTarget": "Pxe"}}
    r = await node.get(uri, method="PATCH", body=body, headers=('If-Match: W/"00000000"',))
    assert r.status == 412 and error_id(r) == "PreconditionFailed"
    assert node.machine.boot_override == BootDevice.NONE
    assert (await node.get(uri, method="PATCH", body=body, headers=(f"If-Match: {etag}",))).status == 204
    assert node.machine.boot_override == BootDevice.PXE


# --------------------------------------------------------------------------- chassis, sensors, logs
@curl_test
async def test_thermal_power_and_sensors_follow_the_machine(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.3.1", fault="overtemp")
    m = node.machine
    truth = {s.name: s for s in m.sensors()}
    chassis = await node.get_json("/redfish/v1/Chassis/1U")
    assert chassis["Links"]["ComputerSystems"] == [{"@odata.id": "/redfish/v1/Systems/437XR1138R2"}]
    assert chassis["Status"]["Health"] == "Critical"
    assert (await node.get_json("/redfish/v1/Systems/437XR1138R2"))["Status"]["Health"] == "Critical"

    thermal = await node.get_json(chassis["Thermal"]["@odata.id"])
    temps = {t["Name"]: t for t in thermal["Temperatures"]}
    assert set(temps) == {n for n, s in truth.items() if s.kind == "temperature"}
    cpu = temps["CPU1 Temp"]
    assert abs(cpu["ReadingCelsius"] - truth["CPU1 Temp"].value) < 2
    assert cpu["UpperThresholdCritical"] == 95.0 and cpu["UpperThresholdNonCritical"] == 85.0
    assert cpu["Status"] == {"State": "Enabled", "Health": "Critical"}
    fans = {f["Name"]: f for f in thermal["Fans"]}
    assert fans["FAN1"]["ReadingUnits"] == "RPM" and abs(fans["FAN1"]["Reading"] - truth["FAN1"].value) < 100
    assert fans["FAN1"]["LowerThresholdCritical"] == 1000.0

    power = await node.get_json(chassis["Power"]["@odata.id"])
    watts = power["PowerControl"][0]["PowerConsumedWatts"]
    assert abs(watts - truth["PSU1 Input Power"].value) < 20
    assert power["Voltages"][0]["Name"] == "12V" and abs(power["Voltages"][0]["ReadingVolts"] - 12.05) < 0.1

    sensors = await node.get_json(chassis["Sensors"]["@odata.id"])
    assert sensors["Members@odata.count"] == len(truth)
    cpu_sensor = await node.get_json("/redfish/v1/Chassis/1U/Sensors/CPU1Temp")
    assert cpu_sensor["ReadingUnits"] == "Cel" and cpu_sensor["ReadingType"] == "Temperature"
    assert cpu_sensor["Thresholds"]["UpperCritical"] == {"Reading": 95.0}
    assert cpu_sensor["Thresholds"]["UpperCaution"] == {"Reading": 85.0}
    assert cpu_sensor["Status"]["Health"] == "Critical"
    fan_sensor = await node.get_json("/redfish/v1/Chassis/1U/Sensors/FAN3")
    assert fan_sensor["ReadingUnits"] == "RPM" and fan_sensor["Thresholds"]["LowerCritical"] == {"Reading": 1000.0}


@curl_test
async def test_ilo_reports_fans_in_percent_and_has_no_sensors_collection(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.3.2", flavor="ilo")
    chassis = await node.get_json("/redfish/v1/Chassis/1")
    assert "Sensors" not in chassis
    assert (await node.get("/redfish/v1/Chassis/1/Sensors")).status == 404
    fans = (await node.get_json(chassis["Thermal"]["@odata.id"]))["Fans"]
    assert {f["ReadingUnits"] for f in fans} == {"Percent"}
    assert all(0 <= f["Reading"] <= 100 for f in fans)


@curl_test
async def test_sel_entries_mirror_machine_events_and_clear(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.3.3", fault="fan")
    m = node.machine
    log = await node.get_json("/redfish/v1/Systems/437XR1138R2/LogServices/SEL")
    entries = await node.get_json(log["Entries"]["@odata.id"])
    events = m.events()
    assert entries["Members@odata.count"] == len(events) == 2
    fan = entries["Members"][1]
    assert fan["EntryType"] == "SEL" and fan["Severity"] == "Critical" and fan["SensorType"] == "Fan"
    assert fan["Message"] == events[1].message and fan["Name"] == "FAN3"
    created = dt.datetime.fromisoformat(fan["Created"])
    assert created.tzinfo is not None and abs(created.timestamp() - events[1].timestamp) < 1
    one = await node.get_json(fan["@odata.id"])
    assert one["Id"] == fan["Id"]

    clear = log["Actions"]["#LogService.ClearLog"]["target"]
    assert (await node.get(clear, method="POST", body={})).status in (200, 204)
    after = await node.get_json(log["Entries"]["@odata.id"])
    assert after["Members@odata.count"] == 1 and "cleared" in after["Members"][0]["Message"]
    await node.get("/redfish/v1/Systems/437XR1138R2/Actions/ComputerSystem.Reset", method="POST",
                   body={"ResetType": "ForceOff"})
    assert (await node.get_json(log["Entries"]["@odata.id"]))["Members@odata.count"] == 2


# --------------------------------------------------------------------------- sessions
@curl_test
async def test_session_login_token_and_logout(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.4.1")
    r = await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST",
                       body={"UserName": USER, "Password": PASSWORD})
    assert r.status == 201
    token, location = r.headers["x-auth-token"], r.headers["location"]
    assert location.startswith("/redfish/v1/SessionService/Sessions/")
    assert r.json()["UserName"] == USER and "Password" not in r.json()
    assert lab.session_count() == lab.session_count(node.address) == 1

    auth = (f"X-Auth-Token: {token}",)
    assert (await node.get("/redfish/v1/Systems", user=None, headers=auth)).status == 200
    coll = await node.get_json("/redfish/v1/SessionService/Sessions", user=None, headers=auth)
    assert [x["@odata.id"] for x in coll["Members"]] == [location]
    assert (await node.get_json(location, user=None, headers=auth))["UserName"] == USER

    assert (await node.get(location, user=None, headers=auth, method="DELETE")).status in (200, 204)
    assert lab.session_count() == 0
    assert (await node.get("/redfish/v1/Systems", user=None, headers=auth)).status == 401

    r = await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST",
                       body={"UserName": USER, "Password": "wrong"})
    assert r.status == 401 and lab.session_count() == 0


@curl_test
async def test_sessions_expire_when_idle_and_are_limited(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.4.2")
    login = {"UserName": USER, "Password": PASSWORD}
    lab.session_timeout = 1.0
    r = await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST", body=login)
    token = (f"X-Auth-Token: {r.headers['x-auth-token']}",)
    await asyncio.sleep(0.5)
    assert (await node.get("/redfish/v1/Systems", user=None, headers=token)).status == 200  # use keeps it alive
    await asyncio.sleep(0.6)
    assert lab.session_count() == 1, "idle time counts from the last use, not from login"
    await asyncio.sleep(1.0)
    assert lab.session_count() == 0
    assert (await node.get("/redfish/v1/Systems", user=None, headers=token)).status == 401

    lab.session_timeout = 1800
    lab.max_sessions = 2
    for _ in range(2):
        assert (await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST",
                               body=login)).status == 201
    r = await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST", body=login)
    assert r.status == 503 and error_id(r) == "SessionLimitExceeded"
    assert (await node.get_json("/redfish/v1/SessionService"))["SessionTimeout"] == 1800
    # A manager reset forgets every session, as a rebooted BMC does.
    assert (await node.get("/redfish/v1/Managers/BMC/Actions/Manager.Reset", method="POST",
                           body={"ResetType": "GracefulRestart"})).status == 204
    assert lab.session_count() == 0


# --------------------------------------------------------------------------- transports and isolation
@curl_test
async def test_http_and_https_bmcs_and_a_verifiable_certificate(lab: RedfishLab) -> None:
    plain = make_machine("plain", "127.78.5.1")
    secure = make_machine("secure", "127.78.5.2")
    lab.add(plain, "127.78.5.1", 0, scheme="http", username=USER, password=PASSWORD)
    lab.add(secure, "127.78.5.2", 0, scheme="https", username=USER, password=PASSWORD, flavor="idrac")
    ports = await lab.start()
    http_url = f"http://127.78.5.1:{ports['plain']}/redfish/v1/Systems"
    https_url = f"https://127.78.5.2:{ports['secure']}/redfish/v1/Systems"
    assert (await curl(http_url)).status == 200
    assert (await curl(https_url)).status == 200
    # Each socket speaks only its own scheme.
    assert (await curl(http_url.replace("http://", "https://"), max_time=2)).exit != 0
    assert (await curl(https_url.replace("https://", "http://"), max_time=2)).status in (0, 400)
    # The certificate names the address: curl verifies it without -k.
    assert lab.cert_file is not None and lab.cert_file.is_file()
    r = await curl(https_url, insecure=False, extra=("--cacert", str(lab.cert_file)))
    assert r.exit == 0 and r.status == 200


@curl_test
async def test_two_bmcs_are_independent(lab: RedfishLab) -> None:
    a, b = await serve(lab, "127.78.5.3", "127.78.5.4")
    sys_uri = "/redfish/v1/Systems/437XR1138R2"
    await a.get(f"{sys_uri}/Actions/ComputerSystem.Reset", method="POST", body={"ResetType": "ForceOff"})
    await b.get(sys_uri, method="PATCH", body={"Boot": {"BootSourceOverrideTarget": "Pxe"}})
    assert (await a.get_json(sys_uri))["PowerState"] == "Off"
    assert (await b.get_json(sys_uri))["PowerState"] == "On"
    assert (await a.get_json(sys_uri))["Boot"]["BootSourceOverrideTarget"] == "None"
    assert (await b.get_json(sys_uri))["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert (await a.get_json(sys_uri))["Name"] == a.machine.name
    await a.get("/redfish/v1/SessionService/Sessions", user=None, method="POST",
                body={"UserName": USER, "Password": PASSWORD})
    assert (lab.session_count(a.address), lab.session_count(b.address)) == (1, 0)
    lab.fault[a.address] = "http500"
    assert (await a.get(sys_uri)).status == 500 and (await b.get(sys_uri)).status == 200


@curl_test
async def test_same_address_two_ports_dispatch_by_local_socket(lab: RedfishLab) -> None:
    m1, m2 = make_machine("port-a", "127.78.5.5"), make_machine("port-b", "127.78.5.5")
    lab.add(m1, "127.78.5.5", 0, username=USER, password=PASSWORD)
    lab.add(m2, "127.78.5.5", 0, username="admin", password="secret", flavor="openbmc")
    ports = await lab.start()
    one = await curl(f"https://127.78.5.5:{ports['port-a']}/redfish/v1/Systems/437XR1138R2")
    two = await curl(f"https://127.78.5.5:{ports['port-b']}/redfish/v1/Systems/system", user="admin:secret")
    assert one.json()["Name"] == "port-a" and two.json()["Name"] == "port-b"
    assert (await curl(f"https://127.78.5.5:{ports['port-b']}/redfish/v1/Systems")).status == 401


@curl_test
async def test_multi_system_bmc(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.5.6", systems=3)
    coll = await node.get_json("/redfish/v1/Systems")
    ids = [x["@odata.id"].rsplit("/", 1)[-1] for x in coll["Members"]]
    assert ids == ["437XR1138R2", "437XR1138R3", "437XR1138R4"]
    machines = lab.machines(node.address)
    assert list(machines) == ids and machines["437XR1138R2"] is node.machine
    assert len({m.mac for m in machines.values()}) == 3
    await node.get("/redfish/v1/Systems/437XR1138R3/Actions/ComputerSystem.Reset", method="POST",
                   body={"ResetType": "ForceOff"})
    assert (await node.get_json("/redfish/v1/Systems/437XR1138R3"))["PowerState"] == "Off"
    assert (await node.get_json("/redfish/v1/Systems/437XR1138R2"))["PowerState"] == "On"
    assert node.machine.powered and not machines["437XR1138R3"].powered
    chassis = await node.get_json("/redfish/v1/Chassis/1U")
    assert len(chassis["Links"]["ComputerSystems"]) == 3
    assert (await node.get("/redfish/v1/Systems/437XR1138R5")).status == 404


@curl_test
@pytest.mark.parametrize("flavor", sorted(FLAVORS))
async def test_virtual_media_insert_and_eject_by_navigation(lab: RedfishLab, flavor: str) -> None:
    (node,) = await serve(lab, "127.78.6.1", flavor=flavor)
    system = await node.get_json((await node.get_json("/redfish/v1/Systems"))["Members"][0]["@odata.id"])
    holder = system
    if "VirtualMedia" not in system:  # per flavor, the drive hangs off the system or the manager
        holder = await node.get_json(system["Links"]["ManagedBy"][0]["@odata.id"])
    coll = await node.get_json(holder["VirtualMedia"]["@odata.id"])
    cd = await node.get_json(coll["Members"][0]["@odata.id"])
    assert "CD" in cd["MediaTypes"] and cd["Inserted"] is False
    url = "http://127.79.0.1:8080/images/rescue.iso"
    insert = cd["Actions"]["#VirtualMedia.InsertMedia"]["target"]
    r = await node.get(insert, method="POST", body={"Image": url, "Inserted": True, "WriteProtected": True})
    assert r.status in (200, 204)
    assert lab.virtual_media(node.machine.name) == url
    cd = await node.get_json(cd["@odata.id"])
    assert (cd["Image"], cd["Inserted"], cd["ImageName"]) == (url, True, "rescue.iso")
    r = await node.get(insert, method="POST", body={"Inserted": True})
    assert r.status == 400 and error_id(r) == "ActionParameterMissing"
    assert (await node.get(cd["Actions"]["#VirtualMedia.EjectMedia"]["target"], method="POST", body={})).status == 204
    assert lab.virtual_media(node.machine.name) is None


@curl_test
async def test_unknown_paths_404_and_wrong_methods_405(lab: RedfishLab) -> None:
    (node,) = await serve(lab, "127.78.6.2")
    for path in ("/redfish/v1/Nope", "/redfish/v1/Systems/1", "/redfish/v1/Chassis/1U/Sensors/Nope",
                 "/redfish/v1/Managers/BMC/LogServices", "/redfish/v1/Systems/437XR1138R2/VirtualMedia",
                 "/redfish/v1/Systems/437XR1138R2/LogServices/SEL/Entries/999", "/redfish/v2"):
        r = await node.get(path)
        assert r.status == 404, path
        assert error_id(r) == "ResourceMissingAtURI"
    r = await node.get("/redfish/v1/Systems", method="DELETE")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
    assert error_id(r) == "OperationNotAllowed"
    assert (await node.get("/redfish/v1/Systems/437XR1138R2", method="POST", body={})).status == 405
    assert (await node.get("/redfish/v1/SessionService/Sessions/NOPE", method="DELETE")).status == 404


# --------------------------------------------------------------------------- faults
@curl_test
@pytest.mark.parametrize("mode", ["malformed_json", "hang", "http500", "auth_fail"])
async def test_fault_modes(lab: RedfishLab, mode: str) -> None:
    bad, good = await serve(lab, "127.78.7.1", "127.78.7.2")
    login = {"UserName": USER, "Password": PASSWORD}
    r = await bad.get("/redfish/v1/SessionService/Sessions", user=None, method="POST", body=login)
    token = (f"X-Auth-Token: {r.headers['x-auth-token']}",)
    lab.fault[bad.address] = mode
    if mode == "malformed_json":
        r = await bad.get("/redfish/v1/Systems")
        assert r.status == 200 and r.headers["content-type"].startswith("application/json")
        with pytest.raises(ValueError):
            json.loads(r.body)
        with pytest.raises(ValueError):
            json.loads((await bad.get("/redfish/v1", user=None)).body)
    elif mode == "hang":
        started = time.monotonic()
        r = await bad.get("/redfish/v1", user=None, max_time=0.5)
        assert r.exit == 28, "curl's own timeout fired: the BMC accepted and never answered"
        assert time.monotonic() - started < 3
    elif mode == "http500":
        for path in ("/redfish/v1", "/redfish/v1/Systems"):
            r = await bad.get(path)
            assert r.status == 500 and error_id(r) == "InternalError"
    else:
        assert (await bad.get("/redfish/v1", user=None)).status == 200
        assert (await bad.get("/redfish/v1/Systems")).status == 401
        assert (await bad.get("/redfish/v1/Systems", user=None, headers=token)).status == 401
        r = await bad.get("/redfish/v1/SessionService/Sessions", user=None, method="POST", body=login)
        assert r.status == 401
    assert (await good.get("/redfish/v1/Systems")).status == 200, "faults are per BMC"
    lab.fault[bad.address] = ""
    assert (await bad.get_json("/redfish/v1/Systems"))["Members@odata.count"] == 1
    assert (await bad.get("/redfish/v1/Systems", user=None, headers=token)).status == 200


@curl_test
async def test_stop_drops_hung_requests_promptly(cert_dir: Path) -> None:
    lab = RedfishLab(cert_dir=str(cert_dir))
    try:
        (node,) = await serve(lab, "127.78.7.3")
        lab.fault[node.address] = "hang"
        hung = asyncio.create_task(node.get("/redfish/v1/Systems", max_time=20))
        await asyncio.sleep(0.3)
        assert not hung.done()
        started = time.monotonic()
        await lab.stop()
        r = await asyncio.wait_for(hung, 5)
        assert r.exit != 0 and time.monotonic() - started < 3
        await lab.stop()  # idempotent
    finally:
        await lab.stop()


# --------------------------------------------------------------------------- layout per flavor
EXPECTED = {
    "dmtf": ["/redfish/v1/Systems/437XR1138R2/LogServices/SEL/Entries/1", "/redfish/v1/Chassis/1U/Sensors/CPU1Temp",
             "/redfish/v1/Managers/BMC/VirtualMedia/CD1", "/redfish/v1/Chassis/1U/Thermal"],
    "idrac": ["/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Sel/Entries/1",
              "/redfish/v1/Systems/System.Embedded.1/VirtualMedia/1", "/redfish/v1/Chassis/System.Embedded.1/Power",
              "/redfish/v1/Systems/System.Embedded.2"],
    "ilo": ["/redfish/v1/Systems/1/LogServices/IML/Entries/1", "/redfish/v1/Managers/1/VirtualMedia/2",
            "/redfish/v1/Chassis/1/Thermal"],
    "openbmc": ["/redfish/v1/Systems/system/LogServices/EventLog/Entries/1",
                "/redfish/v1/Managers/bmc/VirtualMedia/Slot_0", "/redfish/v1/Chassis/chassis/Sensors/FAN1"],
}
EXPECTED["sushy"] = EXPECTED["dmtf"]


@curl_test
@pytest.mark.parametrize("flavor", sorted(FLAVORS))
async def test_every_flavor_is_navigable_from_the_service_root(lab: RedfishLab, flavor: str) -> None:
    (node,) = await serve(lab, "127.78.8.1", flavor=flavor, systems=2 if flavor == "idrac" else 1)
    r = await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST",
                       body={"UserName": USER, "Password": PASSWORD})
    token = (f"X-Auth-Token: {r.headers['x-auth-token']}",)
    docs = await crawl(node, user=None, headers=token)  # the crawl itself runs on the session
    for path in EXPECTED[flavor]:
        assert path in docs, f"{flavor}: {path} not reachable"
    assert len(docs) >= 20
    f = FLAVORS[flavor]
    for path, doc in docs.items():
        if f.odata_context:
            assert doc["@odata.context"].startswith("/redfish/v1/$metadata#"), path
        else:
            assert "@odata.context" not in doc, path
    if f.manufacturer:
        system = next(d for d in docs.values() if d["@odata.type"].startswith("#ComputerSystem."))
        assert system["Manufacturer"] == f.manufacturer
    assert lab.session_count() == 1


# --------------------------------------------------------------------------- shapes vs published mockups
def _schema(doc: dict[str, Any]) -> str | None:
    t = doc.get("@odata.type")
    return t.lstrip("#").split(".")[0] if isinstance(t, str) else None


def _mockup_docs(name: str) -> dict[str, list[dict[str, Any]]]:
    """Every JSON document of one mockup set, by schema name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((MOCKUPS / name).rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(doc, dict) and (schema := _schema(doc)):
            out.setdefault(schema, []).append(doc)
    return out


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(v), "null")


def _type_clashes(mine: Any, theirs: Any, where: str) -> list[str]:
    """Keys both documents have whose JSON types differ (null matches anything: nullable)."""
    if mine is None or theirs is None:
        return []
    if _kind(mine) != _kind(theirs):
        return [f"{where}: ours {_kind(mine)}, mockup {_kind(theirs)}"]
    out: list[str] = []
    if isinstance(mine, dict):
        for k in mine.keys() & theirs.keys():
            out += _type_clashes(mine[k], theirs[k], f"{where}.{k}")
    elif isinstance(mine, list) and mine and theirs:
        for item in mine:
            out += _type_clashes(item, theirs[0], f"{where}[]")
    return out


MOCKUP_FOR = {"dmtf": "dmtf-public-rackmount1", "idrac": "dell-idrac-bmclib-fixtures",
              "ilo": "hpe-ilo5-dl325-gen10plus", "openbmc": "openbmc-stock",
              "sushy": "dmtf-public-rackmount1"}  # sushy-tools serves the DMTF layout


@curl_test
@pytest.mark.skipif(not MOCKUPS.is_dir(), reason="redfish mockups not present")
@pytest.mark.parametrize("flavor", sorted(FLAVORS))
async def test_json_types_match_the_published_mockups(lab: RedfishLab, flavor: str) -> None:
    (node,) = await serve(lab, "127.78.9.1", flavor=flavor, fault="fan")
    # A live session, so the crawl reaches a Session resource too.
    await node.get("/redfish/v1/SessionService/Sessions", user=None, method="POST",
                   body={"UserName": USER, "Password": PASSWORD})
    docs = await crawl(node)
    theirs = _mockup_docs(MOCKUP_FOR[flavor])
    if flavor != "dmtf":  # vendor captures are partial: fill the gaps from the DMTF reference
        for schema, found in _mockup_docs(MOCKUP_FOR["dmtf"]).items():
            theirs.setdefault(schema, found)
    clashes: list[str] = []
    compared: set[str] = set()
    for path, doc in docs.items():
        schema = _schema(doc)
        assert schema, f"{path} has no @odata.type"
        if schema.endswith("Collection"):
            assert doc["@odata.type"] == f"#{schema}.{schema}"
        else:
            assert doc["@odata.type"].split(".")[-1] == schema and ".v1_" in doc["@odata.type"], path
        for ref in theirs.get(schema, []):
            compared.add(schema)
            clashes += _type_clashes(doc, ref, f"{path} vs mockup {ref.get('@odata.id')}")
    assert not clashes, "\n".join(clashes[:20])
    core = {"ServiceRoot", "ComputerSystem", "ComputerSystemCollection", "Chassis", "Thermal", "Power",
            "Manager", "LogService", "LogEntry", "LogEntryCollection", "SessionService", "Session",
            "EthernetInterface", "VirtualMedia", "AccountService", "ManagerAccount"}
    if FLAVORS[flavor].sensors:
        core.add("Sensor")
    assert core <= compared, f"not compared: {core - compared}"


# --------------------------------------------------------------------------- scale
@curl_test
async def test_a_thousand_bmcs_start_quickly_in_one_process(lab: RedfishLab, cert_dir: Path) -> None:
    loop_machines = []
    for i in range(1000):
        address = f"127.78.{100 + i // 250}.{i % 250 + 1}"
        m = make_machine(f"scale-{i:04d}", address)
        lab.add(m, address, 0, username=USER, password=PASSWORD, flavor=sorted(FLAVORS)[i % 4])
        loop_machines.append((m, address))
    started = time.perf_counter()
    ports = await lab.start()
    elapsed = time.perf_counter() - started
    print(f"\n1000 HTTPS BMCs started in {elapsed:.3f} s")
    assert len(ports) == 1000 and len(set(ports.values())) >= 1 and elapsed < 10
    for m, address in (loop_machines[0], loop_machines[499], loop_machines[999]):
        r = await curl(f"https://{address}:{ports[m.name]}/redfish/v1/Systems", insecure=False,
                       extra=("--cacert", str(lab.cert_file)))
        assert r.status == 200
        sys_uri = r.json()["Members"][0]["@odata.id"]
        assert (await curl(f"https://{address}:{ports[m.name]}{sys_uri}")).json()["Name"] == m.name
    started = time.perf_counter()
    await lab.stop()
    assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------- construction and TLS (no curl)
async def test_add_refuses_what_the_lab_must_not_serve(cert_dir: Path) -> None:
    lab = RedfishLab(cert_dir=str(cert_dir))
    m = make_machine("v", "127.78.10.1")
    for address in ("10.0.0.1", "192.168.1.1", "::1", "0.0.0.0"):
        with pytest.raises(ValueError):
            lab.add(m, address, 0, username=USER, password=PASSWORD)
    with pytest.raises(ValueError):
        lab.add(m, "127.78.10.1", 0, username=USER, password=PASSWORD, flavor="supermicro")
    with pytest.raises(ValueError):
        lab.add(m, "127.78.10.1", 0, username=USER, password=PASSWORD, scheme="ftp")
    with pytest.raises(ValueError):
        lab.add(m, "127.78.10.1", 0, username=USER, password=PASSWORD, systems=0)
    lab.add(m, "127.78.10.1", 18443, username=USER, password=PASSWORD)
    with pytest.raises(ValueError):
        lab.add(m, "127.78.10.1", 18443, username=USER, password=PASSWORD)
    await lab.stop()  # before start: harmless
    await lab.stop()


async def test_a_port_clash_fails_start_and_leaves_nothing_bound(cert_dir: Path) -> None:
    first, second = RedfishLab(cert_dir=str(cert_dir)), RedfishLab(cert_dir=str(cert_dir))
    try:
        first.add(make_machine("clash-a", "127.78.10.6"), "127.78.10.6", 0, username=USER, password=PASSWORD)
        port = (await first.start())["clash-a"]
        second.add(make_machine("clash-b", "127.78.10.7"), "127.78.10.7", 0, username=USER, password=PASSWORD)
        second.add(make_machine("clash-c", "127.78.10.6"), "127.78.10.6", port, username=USER, password=PASSWORD)
        with pytest.raises(OSError):
            await second.start()
        with pytest.raises(OSError):  # the BMC bound before the clash was released again
            await asyncio.open_connection("127.78.10.7", second._bmcs[0].port)
    finally:
        await second.stop()
        await first.stop()


async def test_http_only_lab_needs_no_certificate() -> None:
    lab = RedfishLab()
    try:
        m = make_machine("plain-only", "127.78.10.2")
        lab.add(m, "127.78.10.2", 0, scheme="http", username=USER, password=PASSWORD)
        ports = await lab.start()
        assert ports["plain-only"] > 0 and lab.cert_file is None
        with pytest.raises(RuntimeError):
            await lab.start()
    finally:
        await lab.stop()


async def test_lab_without_cert_dir_uses_and_removes_a_private_certificate() -> None:
    lab = RedfishLab()
    try:
        lab.add(make_machine("tmpcert", "127.78.10.3"), "127.78.10.3", 0, username=USER, password=PASSWORD)
        await lab.start()
        cert_file = lab.cert_file
        assert cert_file is not None and cert_file.is_file()
    finally:
        await lab.stop()
    assert not cert_file.exists()


def test_cert_is_cached_grown_and_loopback_only(tmp_path: Path) -> None:
    cert, key = tls.ensure_cert(tmp_path, ["127.78.0.1", "127.78.0.2"])
    first = cert.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert tls.ensure_cert(tmp_path, ["127.78.0.2"])[0].read_bytes() == first, "a covering cert is reused"
    tls.ensure_cert(tmp_path, ["127.78.0.3"])
    from cryptography import x509

    sans = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "127.78.0.1", "127.78.0.2", "127.78.0.3"} <= ips
    assert all("*" not in name for name in sans.get_values_for_type(x509.DNSName))
    with pytest.raises(ValueError):
        tls.ensure_cert(tmp_path, ["8.8.8.8"])


async def test_python_ssl_verifies_the_lab_certificate_by_ip(tmp_path: Path) -> None:
    server_ctx = tls.server_context(["127.78.10.4"], tmp_path)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_client, "127.78.10.4", 0, ssl=server_ctx)
    try:
        port = server.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / tls.CERT_NAME))
        reader, writer = await asyncio.open_connection("127.78.10.4", port, ssl=client_ctx)
        assert await reader.read() == b"ok"
        writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            # The same certificate does not vouch for an address it does not name.
            other = await asyncio.start_server(on_client, "127.78.10.5", 0, ssl=server_ctx)
            try:
                await asyncio.open_connection("127.78.10.5", other.sockets[0].getsockname()[1], ssl=client_ctx)
            finally:
                other.close()
                await other.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
