"""Several systems behind one Redfish service (a blade enclosure, a chassis manager, sushy-tools).

The site addresses four systems of one service: same address and port, each node its own
``bmc.system``.  The lab serves them as one simulated BMC with four ComputerSystems, each
its own machine, and counts on its side what the service saw: sessions created, requests,
and the most requests it ever had in flight at once.  Each answer takes a few milliseconds
(``Lab.redfish_latency``), as on a real BMC, so overlapping requests would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from console.drivers import open_bmc
from console.drivers.bmc import PowerState
from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from tests.support import wait_for, wait_until

SITE = """\
site: blades
lab: {}
defaults:
  bmc: {protocol: redfish, scheme: http, address: 127.3.81.1, port: 8081, username: admin, password: "lab:bmc"}
racks:
  - name: r01
    nodes:
      - name: bl-r01-n[01-04]
        u: "[1-4]"
        mac: "52:54:00:81:00:[01-04]"
        bmc: {system: "Blade[1-4]"}
      - name: bl-r01-solo
        u: 10
        mac: "52:54:00:81:00:10"
        bmc: {address: 127.3.81.2}
"""
BLADES = [f"bl-r01-n0{i}" for i in range(1, 5)]
LATENCY = 0.005  # seconds the lab's BMCs take per answer


@pytest.fixture
def lab(site_lab):
    site_lab.redfish_latency(LATENCY)
    yield site_lab
    site_lab.redfish_latency(0)
    for name in BLADES:  # every test starts from four machines that are on
        site_lab.call(name, {"cmd": "power", "node": name, "action": "on"})
        wait_for(lambda name=name: site_lab.machine(name)["powered"], what=f"{name} powered on")


def power(lab, name: str, action: str) -> None:
    lab.call(name, {"cmd": "power", "node": name, "action": action})


def counted(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in ("logins", "requests")}


async def test_one_session_polls_every_system_of_the_service(lab, site_ctx):
    site, secrets = site_ctx
    assert len({(site.node(n).bmc.address, site.node(n).bmc.effective_port) for n in BLADES}) == 1
    before = lab.redfish_stats(BLADES[0])
    fleet = Fleet(site)
    poller = Poller(site, fleet, secrets, PollConfig(timeout=5, min_interval=0))
    try:
        for _ in range(3):
            await poller.sweep(("power", "boot"), switches=False)
        records = {n: fleet.record(n) for n in BLADES}
        assert {n: (r["power"], r["error"]) for n, r in records.items()} == {n: ("on", None) for n in BLADES}
        power(lab, "bl-r01-n03", "off")
        await poller.sweep(("power",), switches=False)
        assert {n: fleet.record(n)["power"] for n in BLADES} == {
            "bl-r01-n01": "on", "bl-r01-n02": "on", "bl-r01-n03": "off", "bl-r01-n04": "on"}
        assert fleet.record("bl-r01-solo")["power"] == "on"
    finally:
        await poller.aclose()
    after = lab.redfish_stats(BLADES[0])
    seen = counted(before, after)
    assert seen["logins"] == 1, seen  # one session for four systems and four sweeps
    assert seen["requests"] > 4 * 4  # it did read every system on every sweep
    assert after["max_in_flight"] == 1
    assert after["sessions"] == 0  # logged out


async def test_the_polling_loop_keeps_one_request_in_flight_on_the_service(lab, site_ctx):
    site, secrets = site_ctx
    before = lab.redfish_stats(BLADES[0])
    fleet = Fleet(site)
    cfg = PollConfig(power_interval=0.1, boot_interval=0.2, sensors_interval=0.3, events_interval=0.3,
                     identity_interval=0.5, image_interval=600, switch_interval=600, timeout=5, min_interval=0.0)
    poller = Poller(site, fleet, secrets, cfg)
    poller.start()
    try:
        # every job of every system, several times over
        await wait_until(lambda: all(fleet.nodes[n].last_success for n in BLADES) and
                         lab.redfish_stats(BLADES[0])["requests"] - before["requests"] > 200,
                         what="several polls of every system")
        power(lab, "bl-r01-n02", "off")
        await wait_until(lambda: fleet.record("bl-r01-n02")["power"] == "off", what="n02 seen off")
        assert [fleet.record(n)["power"] for n in BLADES] == ["on", "off", "on", "on"]
        assert not [fleet.record(n)["error"] for n in BLADES if fleet.record(n)["error"]]
    finally:
        await poller.aclose()
    after = lab.redfish_stats(BLADES[0])
    assert counted(before, after)["logins"] == 1
    assert after["max_in_flight"] == 1
    assert after["sessions"] == 0


async def test_a_driver_for_another_system_shares_the_session(lab, site_ctx):
    site, secrets = site_ctx
    before = lab.redfish_stats(BLADES[0])
    first = open_bmc(site.node(BLADES[0]), secrets, timeout=5)
    second = first.for_system(site.node(BLADES[1]).bmc)
    try:
        power(lab, BLADES[1], "off")
        for _ in range(100):  # a power change applies after a moment, as on real BMCs
            states = (await first.power_state(), await second.power_state())
            if states == (PowerState.ON, PowerState.OFF):
                break
        assert states == (PowerState.ON, PowerState.OFF)
        await second.close()  # the session is the first driver's: still logged in
        assert lab.redfish_stats(BLADES[0])["sessions"] == before["sessions"] + 1
        assert await first.power_state() == PowerState.ON
    finally:
        await second.close()
        await first.close()
    after = lab.redfish_stats(BLADES[0])
    assert counted(before, after)["logins"] == 1
    assert after["sessions"] == before["sessions"]


def test_status_json_lists_every_system(tmp_path):
    """`lab` for the site in one process, `status --json` in another: four records, one service."""
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    site_file = tmp_path / "blades.yaml"
    site_file.write_text(SITE)
    lab = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", str(site_file), "lab", "--ephemeral",
                            "--json", "--time-scale", "0.02"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, env=env)
    try:
        lab.stdout.readline()
        json.loads(lab.stdout.readline())
        r = subprocess.run([sys.executable, "-m", "console.cli.main", "--site", str(site_file), "status", "--json"],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        records = {rec["name"]: rec for rec in json.loads(r.stdout)}
        assert sorted(records) == sorted([*BLADES, "bl-r01-solo"])
        assert {records[n]["bmc"]["address"] for n in BLADES} == {"127.3.81.1"}
        assert all(records[n]["power"] == "on" and records[n]["error"] is None for n in records)
    finally:
        lab.terminate()
        lab.wait(30)
        lab.stdout.close()


def test_a_service_split_across_lab_workers_is_refused(tmp_path):
    """The lab serves a service's systems as one BMC: one worker must hold them all."""
    from console.errors import LabError
    from console.lab.lab import Lab
    from inventory.loader import load_site_text

    text = SITE.replace("      - name: bl-r01-solo", "  - name: r02\n    nodes:\n      - name: bl-r02-n01\n"
                        "        bmc: {system: Blade9}\n      - name: bl-r01-solo")
    lab = Lab(load_site_text(text, "split.yaml"), ephemeral=True, runtime=tmp_path, nodes_per_worker=4)
    with pytest.raises(LabError, match="nodes bl-r01-n01 and bl-r02-n01 share the BMC 127.3.81.1:8081 but fall "
                                       "in different lab workers"):
        lab.start()
    assert not lab.lab_dir.exists()  # refused before anything was made
