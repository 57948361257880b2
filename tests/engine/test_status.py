"""Live fleet state against the demo lab: every protocol, faults, and the status command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from console.secrets import Secrets
from tests.support import none_left_open


@pytest.fixture
def lab_site(demo_lab):
    return demo_lab.effective_site(), Secrets(lab=demo_lab.secrets)


async def test_sweep_reads_every_node_over_its_protocol(demo_lab, lab_site):
    site, secrets = lab_site
    fleet = Fleet(site)
    before = demo_lab.sessions()
    poller = Poller(site, fleet, secrets, PollConfig(timeout=5, min_interval=0))
    try:
        await poller.sweep(("power", "boot", "image"))
    finally:
        await poller.aclose()
    records = {n.name: fleet.record(n.name) for n in site.nodes}
    errors = {k: r["error"] for k, r in records.items() if r["error"]}
    assert not errors
    assert records["dal1-r01-n13"]["power"] == "off"  # powered off in the lab section
    assert records["dal1-r01-n01"]["power"] == "on"
    assert records["dal1-r01-n07"]["health"] == "critical"  # failed fan, over IPMI
    assert records["dal1-r03-n11"]["health"] == "critical"  # overtemp, over Redfish (iLO flavor)
    assert records["dal1-r01-n01"]["health"] == "ok"
    image = records["dal1-r02-n03"]["image"]
    assert image.pop("read_at").endswith("Z")  # when the running image was read (ISO 8601, UTC)
    assert image == {"desired": "flatcar@4081.2.1", "running": "flatcar@3975.2.2", "state": "drift", "error": None}
    assert records["dal1-r03-n05"]["image"]["state"] == "ok"
    off = records["dal1-r03-n20"]["image"]
    assert off["state"] == "unknown" and off["error"]  # no SSH to a machine that is off: unknown, with why
    assert records["dal1-r02-n08"]["switch_port"]["finding"] == "mismatch"  # the miscabled one
    assert records["dal1-r02-n09"]["switch_port"] == {"expected": "dal1-r02-tor/Ethernet9",
                                                       "discovered": "dal1-r02-tor/Ethernet9",
                                                       "finding": "match", "link": "up"}
    assert records["dal1-r01-n13"]["switch_port"]["finding"] == "unknown"  # link down: not learned
    assert none_left_open(before, demo_lab.sessions()), before  # every session we opened was logged out


async def test_a_dead_bmc_becomes_an_error_within_two_periods_and_the_rest_stay_fresh(demo_lab, lab_site):
    site, secrets = lab_site
    fleet = Fleet(site)
    period = 0.5
    cfg = PollConfig(power_interval=period, sensors_interval=60, events_interval=60, identity_interval=600,
                     image_interval=600, switch_interval=60, timeout=1.0, min_interval=0.1,
                     backoff_base=0.2, backoff_max=1.0)
    victims = {"ipmi": site.node("dal1-r01-n03"), "redfish": site.node("dal1-r02-n12")}
    watched = [n for n in site.nodes if n.rack == "r01"][:10] + [victims["redfish"]]
    sub = site.model_copy(update={"nodes": tuple(watched), "switches": ()})
    poller = Poller(sub, fleet_sub := Fleet(sub), secrets, cfg)
    poller.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(fleet_sub.nodes[n.name].last_success for n in watched):
            await asyncio.sleep(0.1)
        assert all(fleet_sub.nodes[n.name].last_success for n in watched)
        demo_lab.fault("ipmi", victims["ipmi"].name, "silent")
        demo_lab.fault("redfish", victims["redfish"].name, "hang")
        t0 = time.time()
        budget = 2 * period + 3 * cfg.timeout + 1  # two poll periods plus the request timeouts
        while time.time() - t0 < budget and not all(fleet_sub.nodes[v.name].error for v in victims.values()):
            await asyncio.sleep(0.1)
        for v in victims.values():
            assert fleet_sub.nodes[v.name].error, v.name
            assert fleet_sub.record(v.name)["power"] == "unknown"
        fresh_since = time.time() - 2 * period - 1
        for n in watched:
            if n.name not in {v.name for v in victims.values()}:
                st = fleet_sub.nodes[n.name]
                assert st.error is None and st.last_success > fresh_since, n.name
    finally:
        demo_lab.fault("ipmi", victims["ipmi"].name, "")
        demo_lab.fault("redfish", victims["redfish"].name, "")
        await poller.aclose()


#: every kind of BMC, switch and credential the demo has, one or two of each (a demo-sized
#: lab in a process of its own costs seconds of CPU the test does not need)
STATUS_SITE = """\
site: statusdemo
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
switches:
  - {name: st-r01-tor, address: 127.3.0.71, rack: r01, snmp: {version: 2c, community: "lab:snmp"}}
  - name: st-r02-tor
    address: 127.3.0.72
    rack: r02
    snmp: {version: "3", username: fleet, auth_protocol: sha, auth_key: "lab:snmp-auth", priv_protocol: aes,
           priv_key: "lab:snmp-priv"}
racks:
  - name: r01
    nodes:
      - name: st-r01-n[01-02]
        u: "[1-2]"
        mac: "52:54:00:71:00:[01-02]"
        host: 127.2.71.[1-2]
        bmc: {address: "127.1.71.[1-2]"}
        switch_port: {switch: st-r01-tor, port: "Ethernet[1-2]"}
      - name: st-r01-n03
        u: 3
        mac: "52:54:00:71:00:03"
        host: 127.2.71.3
        bmc: {protocol: redfish, address: 127.1.71.3, scheme: http,
              console: {kind: ssh, port: 2200, known_hosts: "lab:known_hosts"}}
        switch_port: {switch: st-r01-tor, port: Ethernet3}
  - name: r02
    nodes:
      - name: st-r02-n01
        u: 1
        mac: "52:54:00:72:00:01"
        host: 127.2.72.1
        bmc: {address: 127.1.72.1}
        switch_port: {switch: st-r02-tor, port: Ethernet1}
      - name: st-r02-n02
        u: 2
        mac: "52:54:00:72:00:02"
        host: 127.2.72.2
        bmc: {protocol: redfish, address: 127.1.72.2, scheme: https, verify_tls: false, flavor: hpe,
              console: {kind: ssh, port: 2200, known_hosts: "lab:known_hosts"}}
        switch_port: {switch: st-r02-tor, port: Ethernet2}
lab:
  powered_off: [st-r01-n02]
"""


def test_status_json_uses_the_running_lab_and_never_prints_secrets(tmp_path):
    """`lab` in one process, `status --json` in another: the second finds and uses the first."""
    sites_dir = tmp_path / "sites"
    sites_dir.mkdir(mode=0o700)
    (sites_dir / "statusdemo.yaml").write_text(STATUS_SITE)
    (sites_dir / "statusdemo.yaml").chmod(0o600)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), FLEET_CONSOLE_SITES=str(sites_dir))
    lab = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", "statusdemo", "lab", "--ephemeral",
                            "--json", "--time-scale", "0.02"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, env=env)
    try:
        lab.stdout.readline()
        info = json.loads(lab.stdout.readline())
        r = subprocess.run([sys.executable, "-m", "console.cli.main", "--site", "statusdemo", "status", "--json"],
                           capture_output=True, text=True, timeout=180, env=env)
        assert r.returncode == 0, r.stderr
        records = json.loads(r.stdout)
        assert len(records) == 5
        keys = {"name", "rack", "u", "bmc", "power", "health", "boot_override", "switch_port", "image", "error",
                "polled_at"}
        assert all(keys <= set(rec) for rec in records)
        assert all(rec["power"] in ("on", "off") and rec["polled_at"] for rec in records)
        assert {rec["name"]: rec["power"] for rec in records if rec["power"] == "off"} == {"st-r01-n02": "off"}
        # the addresses polled are the running lab's (its ports differ from a fresh lab's)
        by_name = {n["name"]: n for n in info["nodes"]}
        assert {rec["bmc"]["address"] for rec in records} == {n["bmc"]["address"] for n in by_name.values()}
        secrets = json.loads(open(info["secrets_file"]).read())
        assert {"bmc", "ssh", "snmp", "snmp-auth", "snmp-priv"} <= set(secrets), set(secrets)
        for key, value in secrets.items():
            if key != "known_hosts":
                assert value not in r.stdout and value not in r.stderr, key
        assert "Traceback" not in r.stderr
    finally:
        lab.terminate()
        lab.wait(30)
        lab.stdout.close()


def test_status_bad_selection_exits_2(tmp_path, cli_in_process):
    code, _out, err = cli_in_process("--site", "demo", "status", "dal1-r09-n[01-02]",  # refused first: in this process
                                     env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)))
    assert code == 2 and "unknown node(s)" in err and "Traceback" not in err


@pytest.mark.parametrize("node", ["dal1-r01-n07", "dal1-r02-n19"])  # IPMI fan fault, Redfish PSU fault
def test_sensors_and_events_commands(demo_lab, node, capsys):
    import argparse

    from console.cli.commands import cmd_events, cmd_sensors
    from console.cli.main import SiteContext

    ctx = SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))
    args = argparse.Namespace(node=node, json=True, timeout=5.0)
    assert cmd_sensors(args, ctx) == 0
    sensors = json.loads(capsys.readouterr().out)
    assert sensors[0]["health"] == "critical"  # failing sensors first
    assert {"FAN1", "12V", "CPU1 Temp"} <= {s["name"] for s in sensors}
    fan = next(s for s in sensors if s["name"] == "FAN1")
    assert fan["unit"] and fan["thresholds"]["lower_critical"] == 1000
    assert cmd_events(args, ctx) == 0
    events = json.loads(capsys.readouterr().out)
    assert events and any(e["severity"] in ("critical", "warning") for e in events)
    assert all(e["time"] for e in events)


def test_the_columns_give_one_cell_in_each_form():
    """`status` prints the fleet table's columns (console.live.columns): each cell is the
    column's Cell in words, the one the screen draws (full or compact) said more widely:
    switch and port, the image wanted beside the one running; a symbol means what it
    means on the screen (``⇄`` miscabled, never ``✗``, which is a critical health)."""
    from console import site as sites
    from console.drivers.bmc import BootOverride, BootTarget
    from console.live.columns import BY_KEY, STATUS_COLUMNS
    from console.live.fleet import NodeActivity

    site = sites.load("demo")
    fleet = Fleet(site, clock=lambda: 1000.0)
    miscabled, drift, failing, off = "dal1-r01-n08", "dal1-r02-n01", "dal1-r01-n03", "dal1-r01-n13"
    want = site.node(miscabled).switch_port
    assert want is not None
    fleet.node_ok(miscabled, "power", power="on", health="ok", discovered_port=(want.switch, "Ethernet40"),
                  boot_override=BootOverride(BootTarget.PXE, False))
    fleet.node_ok(drift, "image", image_running="flatcar@3975.2.2")
    fleet.node_failed(failing, "power", "unreachable: no answer\x1b[2J")
    fleet.node_ok(off, "power", power="off", health="ok")
    fleet.set_activity(drift, NodeActivity("job", "reimage flatcar@4152.2.0", "installing"))

    def cells(name, form):
        return {c.key: c.cell(fleet, name, form, 1000.0) for c in STATUS_COLUMNS}

    port, full = cells(miscabled, "wide")["port"], BY_KEY["port"].cell(fleet, miscabled, "full")
    assert port.words == f"⇄ {want.switch}/{want.port} seen on {want.switch}/Ethernet40"
    assert (port.state, port.symbol) == (full.state, full.symbol) == ("mismatch", "⇄")
    assert full.words == f"⇄ {want.port}"
    assert BY_KEY["port"].cell(fleet, miscabled, "compact").words == f"⇄ {want.port.replace('Ethernet', 'Eth')}"
    assert cells(miscabled, "wide")["boot"].words == "pxe once"
    image = cells(drift, "wide")["image"]
    wanted = site.node(drift).image
    assert image.words == f"≠ flatcar@3975.2.2 (want {wanted})" and image.state == "drift"
    assert BY_KEY["image"].cell(fleet, drift, "compact").words == "≠ 3975.2.2"
    why = BY_KEY["why"].cell(fleet, drift, "full", 1000.0)
    assert why.words == f"▶ installing (reimage flatcar@4152.2.0)  ≠ 3975.2.2, want {wanted.rsplit('@', 1)[1]}"
    # since when, from a minute on: at least since it was first read, the image having drifted before
    assert BY_KEY["why"].cell(fleet, drift, "full", 1000.0 + 14 * 60).words.endswith("want 4081.2.1 · ≥14m")
    assert (why.state, why.lead.state) == ("drift", "job")
    error = cells(failing, "wide")["error"]
    assert (error.words, error.state) == ("unreachable: no answer\x1b[2J", "error")  # shown through visible()
    assert cells(failing, "wide")["name"].state == "error" and cells(failing, "wide")["power"].words == "? unknown"
    assert BY_KEY["power"].cell(fleet, failing, "compact").words == "? ?"
    assert cells(off, "wide")["power"].words == "○ off"


def test_status_prints_the_wide_cells_of_a_polled_lab(demo_lab, capsys):
    """The command polls the lab (image over SSH, ports from the switches) and prints
    those cells: the miscabled node's port with ``⇄``, the drifted image with the one wanted."""
    import argparse

    from console.cli.commands import cmd_status
    from console.cli.main import SiteContext

    ctx = SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))
    drift, unplugged = "dal1-r02-n01", "dal1-r02-n08"  # the demo lab's: an older image, a cable moved
    args = argparse.Namespace(range=f"{drift},{unplugged}", json=False, timeout=5.0)
    assert cmd_status(args, ctx) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NODE", "RACK/U", "POWER", "HEALTH", "BOOT", "SWITCH", "PORT", "IMAGE", "ERROR"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {drift, unplugged}
    assert f"≠ flatcar@3975.2.2 (want {ctx.site.node(drift).image})" in rows[drift]
    assert "⇄ dal1-r02-tor/Ethernet8 seen on dal1-r02-tor/" in rows[unplugged]
    assert "✗" not in rows[unplugged]  # ✗ is a critical health, not a cable
