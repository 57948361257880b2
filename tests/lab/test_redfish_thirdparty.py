"""Third-party Redfish clients drive every lab Redfish flavor.

* OpenStack's ``sushy``, as Ironic uses it: find the system, power it on and off and
  reset it, set a one-time and a continuous boot device and read them back, insert and
  eject virtual media, and read the processor, memory and storage summaries.
* DMTF's Redfish Protocol Validator, run offline in one subprocess for all flavors (SSDP
  discovery, which multicasts off the machine, is left out).  Its failures must be at most
  the ones listed and explained in ``docs/redfish-conformance.md``: a regression fails here.

One lab (one BMC per flavor, HTTPS with the lab's certificate) serves the whole module.
sushy is synchronous, so its calls run in a thread while the lab serves on the test loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from console.lab.machine import Machine, MachineSpec
from console.lab.redfish_bmc import FLAVORS, RedfishLab

sushy = pytest.importorskip("sushy")
pytestmark = [pytest.mark.thirdparty, pytest.mark.asyncio(loop_scope="module")]

USER, PASSWORD = "root", "calvin"
DOC = Path(__file__).resolve().parents[2] / "docs" / "redfish-conformance.md"
T = TypeVar("T")


class Lab:
    def __init__(self, lab: RedfishLab, bases: dict[str, str], machines: dict[str, Machine]) -> None:
        self.lab, self.bases, self.machines = lab, bases, machines

    def sushy(self, flavor: str) -> Any:
        assert self.lab.cert_file is not None
        return sushy.Sushy(self.bases[flavor] + "/redfish/v1", username=USER, password=PASSWORD,
                           verify=str(self.lab.cert_file))


@pytest.fixture(scope="module", autouse=True)
def _no_ca_bundle_from_the_environment() -> Any:
    # requests lets REQUESTS_CA_BUNDLE override a session's own verify setting: use the lab's certificate.
    mp = pytest.MonkeyPatch()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        mp.delenv(name, raising=False)
    yield
    mp.undo()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(cert_dir: Path) -> AsyncIterator[Lab]:
    rf = RedfishLab(cert_dir=str(cert_dir))
    loop = asyncio.get_running_loop()
    machines: dict[str, Machine] = {}
    for i, flavor in enumerate(sorted(FLAVORS), 1):
        address = f"127.78.30.{i}"
        spec = MachineSpec(name=f"tp-{flavor}", mac=f"52:54:00:ab:30:{i:02x}", bmc_address=address,
                           host_address=f"127.79.30.{i}", image=("flatcar", "3815.2.0"))
        machines[flavor] = Machine(spec, loop=loop, time_scale=0.01)
        rf.add(machines[flavor], address, 0, scheme="https", username=USER, password=PASSWORD, flavor=flavor)
    try:
        ports = await rf.start()
        yield Lab(rf, {f: f"https://127.78.30.{i}:{ports[f'tp-{f}']}" for i, f in enumerate(sorted(FLAVORS), 1)},
                  machines)
    finally:
        await rf.stop()


async def off_loop(fn: Callable[[], T]) -> T:
    """Run a blocking client call in a thread, with a bound so a hung exchange fails the test."""
    return await asyncio.wait_for(asyncio.to_thread(fn), timeout=30)


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await off_loop(check):
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- sushy, as Ironic uses it
@pytest.mark.parametrize("flavor", sorted(FLAVORS))
async def test_sushy_power_boot_media_and_inventory(lab: Lab, flavor: str) -> None:
    conn = await off_loop(lambda: lab.sushy(flavor))
    try:
        system = await off_loop(lambda: conn.get_system_collection().get_members()[0])
        assert system.uuid == str(lab.machines[flavor].uuid)

        # Power, as Ironic's power interface does it: act, then poll the state.
        def power_is(state: str) -> Callable[[], bool]:
            def check() -> bool:
                system.refresh()
                return system.power_state == state
            return check

        await off_loop(lambda: system.reset_system(sushy.RESET_FORCE_OFF))
        await eventually(power_is(sushy.POWER_STATE_OFF), "off")
        await off_loop(lambda: system.reset_system(sushy.RESET_ON))
        await eventually(power_is(sushy.POWER_STATE_ON), "on")
        assert sushy.RESET_FORCE_RESTART in await off_loop(system.get_allowed_reset_system_values)
        await off_loop(lambda: system.reset_system(sushy.RESET_FORCE_RESTART))
        # Off again, as Ironic has a node while it sets the boot device: a booting machine would
        # consume a one-time override before the read-back.
        await off_loop(lambda: system.reset_system(sushy.RESET_FORCE_OFF))
        await eventually(power_is(sushy.POWER_STATE_OFF), "off after the restart")

        # Boot device once, then continuous, each read back.
        allowed = await off_loop(system.get_allowed_system_boot_source_values)
        assert {sushy.BOOT_SOURCE_TARGET_PXE, sushy.BOOT_SOURCE_TARGET_HDD, sushy.BOOT_SOURCE_TARGET_CD,
                sushy.BOOT_SOURCE_TARGET_USB if flavor != "idrac" else sushy.BOOT_SOURCE_TARGET_UEFI_HTTP} <= allowed
        await off_loop(lambda: system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE,
                                                               enabled=sushy.BOOT_SOURCE_ENABLED_ONCE))
        await off_loop(system.refresh)
        assert system.boot.target == sushy.BOOT_SOURCE_TARGET_PXE
        # sushy-tools reports every override as Continuous (its known quirk, kept by the lab)
        once = sushy.BOOT_SOURCE_ENABLED_CONTINUOUS if flavor == "sushy" else sushy.BOOT_SOURCE_ENABLED_ONCE
        assert system.boot.enabled == once
        await off_loop(lambda: system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_HDD,
                                                               enabled=sushy.BOOT_SOURCE_ENABLED_CONTINUOUS))
        await off_loop(system.refresh)
        assert (system.boot.target, system.boot.enabled) == (sushy.BOOT_SOURCE_TARGET_HDD,
                                                             sushy.BOOT_SOURCE_ENABLED_CONTINUOUS)

        # Virtual media wherever the flavor keeps it (Ironic looks at the system, then the manager).
        def drives() -> list[Any]:
            try:
                return list(system.virtual_media.get_members())
            except (sushy.exceptions.MissingAttributeError, sushy.exceptions.ResourceNotFoundError):
                return list(system.managers[0].virtual_media.get_members())

        cd = next(d for d in await off_loop(drives) if sushy.VIRTUAL_MEDIA_CD in d.media_types)
        url = "http://127.79.30.250/boot.iso"
        await off_loop(lambda: cd.insert_media(url, inserted=True, write_protected=True))
        await off_loop(cd.refresh)
        assert (cd.image, cd.inserted) == (url, True)
        assert lab.lab.virtual_media(f"tp-{flavor}") == url
        await off_loop(cd.eject_media)
        await off_loop(cd.refresh)
        assert not cd.inserted and lab.lab.virtual_media(f"tp-{flavor}") is None

        # The inventory Ironic's inspection reads (sushy counts processors in threads: 2 x 32).
        def inventory() -> dict[str, Any]:
            return {
                "cpus": system.processors.summary.count, "arch": system.processors.summary.architecture,
                "memory": system.memory_summary.size_gib,
                "simple": system.simple_storage.disks_sizes_bytes,
                "drives": system.storage.drives_sizes_bytes, "volumes": system.storage.volumes_sizes_bytes,
                "nics": {n.mac_address for n in system.ethernet_interfaces.get_members()},
                "bios": system.bios.attributes.get("BootMode"), "secure": system.secure_boot.enabled,
            }

        inv = await off_loop(inventory)
        assert inv["cpus"] == 64 and inv["arch"] == sushy.PROCESSOR_ARCH_x86 and inv["memory"] == 256
        assert inv["simple"] == inv["drives"] == inv["volumes"] == [960_197_124_096]
        assert inv["nics"] == {lab.machines[flavor].mac.upper()}
        assert inv["bios"] == "Uefi" and inv["secure"] is False

        # Writable indicator LED, as Ironic's management interface sets it.
        await off_loop(lambda: system.set_indicator_led(sushy.INDICATOR_LED_BLINKING))
        await off_loop(system.refresh)
        assert system.indicator_led == sushy.INDICATOR_LED_BLINKING
    finally:
        await off_loop(conn.__del__)  # what Ironic's cache does on eviction: DELETE the session
    assert lab.lab.session_count(lab.bases[flavor].split("//")[1].split(":")[0]) == 0, "sushy logs out"


# --------------------------------------------------------------------------- DMTF Protocol Validator
_VALIDATOR = r'''
import contextlib, io, json, logging, sys
from redfish_protocol_validator import etags, resources, service_details, sessions, utils
from redfish_protocol_validator.console_scripts import perform_tests
from redfish_protocol_validator.constants import Result
from redfish_protocol_validator.system_under_test import SystemUnderTest

etags.STABILITY_DELAY_SEC = 0          # a two-second pause per run: nothing changes the lab meanwhile
service_details.test_discovery = lambda sut: None  # SSDP multicasts off the machine: not here
def no_ssdp(*a, **k):
    raise RuntimeError("SSDP is not run against the lab")
utils.discover_ssdp = no_ssdp
logging.basicConfig(level=logging.CRITICAL)
cfg = json.load(sys.stdin)
out = {}
for name, rhost in cfg["targets"].items():
    sut = SystemUnderTest(rhost, cfg["user"], cfg["password"], verify=cfg["ca"])
    sut.set_avoid_http_redirect(True)
    with contextlib.redirect_stdout(io.StringIO()):
        sut.login()
        resources.read_target_resources(sut, func=resources.get_default_resources)
        no_auth = sessions.no_auth_session(sut)
        resources.read_uris_no_auth(sut, no_auth)
        resources.data_modification_requests(sut)
        resources.data_modification_requests_no_auth(sut, no_auth)
        resources.unsupported_requests(sut)
        resources.basic_auth_requests(sut)
        resources.http_requests(sut)
        resources.bad_auth_requests(sut)
        sessions.bad_login(sut)
        perform_tests(sut)
        sut.logout()
    rows = [{"assertion": getattr(a, "name", str(a)), "result": e["result"].name, "status": e["status"],
             "uri": e["uri"], "msg": e["msg"]}
            for a, entries in sut.results.items() for e in entries if e["result"] in (Result.FAIL, Result.WARN)]
    out[name] = {"rows": rows, "summary": {r.name: sut.summary_count(r) for r in Result}}
print(json.dumps(out))
'''


def known_failures() -> set[str]:
    """The assertions docs/redfish-conformance.md lists as failing, with the reason (its table's first column)."""
    text = DOC.read_text()
    section = text.split("## Known Protocol Validator failures", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`([A-Z0-9_]+)`", section, flags=re.MULTILINE))


@pytest.mark.skipif(not __import__("importlib").util.find_spec("redfish_protocol_validator"),
                    reason="redfish-protocol-validator not installed")
async def test_dmtf_protocol_validator_fails_only_the_documented_assertions(lab: Lab) -> None:
    assert lab.lab.cert_file is not None
    cfg = {"targets": lab.bases, "user": USER, "password": PASSWORD, "ca": str(lab.lab.cert_file)}
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _VALIDATOR, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(cfg).encode()), timeout=100)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert PASSWORD.encode() not in out
    results = json.loads(out)
    allowed = known_failures()
    assert allowed, "the documented list is empty or was not found"
    for flavor in sorted(FLAVORS):
        got = results[flavor]
        assert got["summary"]["PASS"] >= 300, (flavor, got["summary"])  # the run really happened
        failed = [r for r in got["rows"] if r["result"] == "FAIL"]
        unexplained = [r for r in failed if r["assertion"] not in allowed]
        assert not unexplained, f"{flavor}: " + json.dumps(unexplained, indent=1)[:3000]
        assert all(not (isinstance(r["status"], int) and r["status"] >= 500 and r["status"] != 501)
                   for r in got["rows"]), f"{flavor}: a 5xx"
