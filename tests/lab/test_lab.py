"""The whole lab: worker processes, PXE boot end to end, SSH hosts, state file, CLI.

Cross-checked with third-party clients (ipmitool, snmpwalk, curl) against the lab
exactly as an operator would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest

from console.lab.machine import parse_ipxe
from tests import support
from tests.conftest import need


def wait_for(predicate, timeout=20.0):
    return support.wait_for(predicate, timeout, interval=0.05)  # each look asks the lab over its socket


def test_lab_serves_every_node_and_switch(demo_lab):
    eps = demo_lab.endpoints
    site = demo_lab.effective_site()
    assert set(eps["nodes"]) == {n.name for n in site.nodes}
    assert all(n.bmc.port > 0 and n.ssh_port for n in site.nodes)
    assert set(eps["switches"]) == {s.name for s in site.switches}
    assert all(a.startswith("127.") for n in site.nodes for a in (n.bmc.address, n.host))


def test_drift_faults_and_power_from_lab_section(demo_lab):
    assert demo_lab.machine("dal1-r02-n03")["image"] == "flatcar@3975.2.2"
    assert demo_lab.machine("dal1-r02-n10")["image"] == "flatcar@4081.2.1"
    assert demo_lab.machine("dal1-r03-n20")["powered"] is False
    assert demo_lab.machine("dal1-r01-n01")["phase"] == "running"


def ipxe_script(name: str, version: str) -> str:
    return (
        "#!ipxe\n"
        f"set image-name {name}\nset image-version {version}\n"
        "set image-sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
        f"kernel http://127.0.0.1/{version}/vmlinuz fleet.image=${{image-name}}@${{image-version}}\n"
        f"initrd http://127.0.0.1/{version}/initrd\nboot\n"
    )


def test_parse_ipxe():
    info = parse_ipxe(ipxe_script("flatcar", "1.2.3"))
    assert info["image_name"] == "flatcar" and info["image_version"] == "1.2.3"
    assert info["kernel"].endswith("/1.2.3/vmlinuz") and info["initrd"].endswith("/initrd")
    with pytest.raises(ValueError):
        parse_ipxe("kernel x\n")


def test_pxe_boot_installs_the_image_the_script_names(demo_lab):
    node = "dal1-r02-n04"
    site = demo_lab.effective_site()
    mac = site.node(node).mac
    root = Path(demo_lab.endpoints["boot_root"])
    script = root / (mac.replace(":", "-") + ".ipxe")

    def install(version: str) -> dict:
        script.write_text(ipxe_script("flatcar", version))
        demo_lab.call(node, {"cmd": "boot_override", "node": node, "device": "pxe"})
        demo_lab.call(node, {"cmd": "power", "node": node, "action": "cycle"})
        return wait_for(lambda: (m := demo_lab.machine(node))["phase"] == "running"
                        and m["image"] == f"flatcar@{version}" and m)

    assert demo_lab.machine(node)["image"] == "flatcar@3975.2.2"
    try:
        state = install("4081.2.1")
        assert state["boot_override"] == "none"  # a once override is consumed by the boot
        assert state["last_boot_source"] == "pxe"
        assert any(f[1].endswith(script.name) and f[2] == 200 for f in state["pxe_fetches"])
        serial = demo_lab.call(node, {"cmd": "serial", "node": node})["output"]
        assert "iPXE" in serial and "fleet-installer: writing flatcar 4081.2.1" in serial and "login:" in serial
    finally:
        # the lab is the whole session's: the node goes back to its drifted image for the tests after
        install("3975.2.2")
        script.unlink(missing_ok=True)


def test_pxe_without_assignment_falls_back_to_disk(demo_lab):
    node = "dal1-r02-n06"
    before = demo_lab.machine(node)
    demo_lab.call(node, {"cmd": "boot_override", "node": node, "device": "pxe"})
    demo_lab.call(node, {"cmd": "power", "node": node, "action": "reset"})
    state = wait_for(lambda: (m := demo_lab.machine(node))["boots"] > before["boots"] and m["phase"] == "running" and m)
    assert state["image"] == before["image"]
    assert state["pxe_fetches"] and state["pxe_fetches"][-1][2] == 404
    assert "Error 404" in demo_lab.call(node, {"cmd": "serial", "node": node})["output"]


def test_ssh_host_reports_running_image(demo_lab):
    site = demo_lab.effective_site()
    node = site.node("dal1-r03-n04")

    async def read():
        async with asyncssh.connect(
            node.host, node.ssh_port, username="core", password=demo_lab.secrets["ssh"],
            known_hosts=demo_lab.secrets["known_hosts"],
        ) as conn:
            return (await conn.run("cat /etc/os-release", check=True)).stdout

    text = asyncio.run(read())
    assert "IMAGE_ID=flatcar" in text and "IMAGE_VERSION=4081.2.1" in text


def test_ssh_refused_while_powered_off(demo_lab):
    site = demo_lab.effective_site()
    node = site.node("dal1-r03-n21")

    async def read():
        async with asyncssh.connect(node.host, node.ssh_port, username="core",
                                    password=demo_lab.secrets["ssh"], known_hosts=None) as conn:
            await conn.run("true")

    with pytest.raises((asyncssh.Error, OSError)):
        asyncio.run(asyncio.wait_for(read(), 10))


def test_third_party_clients_against_the_lab(demo_lab):
    site = demo_lab.effective_site()
    pw = demo_lab.secrets["bmc"]
    ipmi = next(n for n in site.nodes if n.bmc.protocol == "ipmi")
    out = subprocess.run([need("ipmitool"), "-I", "lanplus", "-C", "3", "-H", ipmi.bmc.address, "-p", str(ipmi.bmc.port),
                          "-U", "admin", "-P", pw, "power", "status"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Chassis Power is on" in out.stdout, out.stderr
    rf = site.node("dal1-r02-n01")
    out = subprocess.run([need("curl"), "-sf", "-u", f"admin:{pw}", f"http://{rf.bmc.address}:{rf.bmc.port}/redfish/v1/Systems"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["Members"], out.stderr
    sw = site.switch("dal1-r01-tor")
    out = subprocess.run([need("snmpwalk"), "-v2c", "-c", demo_lab.secrets["snmp"], "-On", "-t", "2", "-r", "1",
                          f"{sw.address}:{sw.port}", "1.3.6.1.2.1.31.1.1.1.1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Ethernet1" in out.stdout, out.stderr
    sw3 = site.switch("dal1-r03-tor")  # SNMP v3 authPriv
    out = subprocess.run([need("snmpget"), "-v3", "-l", "authPriv", "-u", "fleet", "-a", "SHA", "-A", demo_lab.secrets["snmp-auth"],
                          "-x", "AES", "-X", demo_lab.secrets["snmp-priv"], "-On", "-t", "2", "-r", "1",
                          f"{sw3.address}:{sw3.port}", "1.3.6.1.2.1.1.5.0"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "dal1-r03-tor" in out.stdout, out.stderr


def test_cli_lab_runs_in_foreground_and_publishes_state(tmp_path, monkeypatch):
    """`fleet-console --site demo lab` prints endpoints, publishes state, stops cleanly on SIGINT."""
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", "demo", "lab", "--ephemeral", "--json",
                             "--time-scale", "0.02"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()  # "starting the lab ..."
        assert first.startswith("starting the lab for site demo: 89 machines"), first + proc.stderr.read()
        info = json.loads(proc.stdout.readline())
        assert len(info["nodes"]) == 89 and info["provisioner"].startswith("http://127.0.0.1:")
        pwfile = Path(info["bmc_password_file"])
        assert pwfile.stat().st_mode & 0o077 == 0
        assert pwfile.read_text().strip() not in json.dumps(info)  # secrets are never printed
        state = json.loads((tmp_path / "fleet-console" / "lab-demo.json").read_text())
        assert state["pid"] == proc.pid
        # another command finds it: the state check (here, in this process) says it is alive
        from console.lab.state import read_state

        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        found = read_state("demo")
        assert found is not None and found["pid"] == proc.pid
        ipmi = next(n for n in info["nodes"] if n["bmc"]["protocol"] == "ipmi")
        out = subprocess.run([need("ipmitool"), "-I", "lanplus", "-C", "3", "-H", ipmi["bmc"]["address"], "-p",
                              str(ipmi["bmc"]["port"]), "-U", "admin", "-f", str(pwfile), "power", "status"],
                             capture_output=True, text=True, timeout=30)
        assert "Chassis Power is" in out.stdout, out.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0
    assert not (tmp_path / "fleet-console" / "lab-demo.json").exists()
    for pid in info.get("workers", []) or state["endpoints"]["workers"]:
        assert support.ended(pid)


def test_scaled_site_is_valid():
    from console.lab.scale import scaled_site_yaml
    from inventory.loader import load_site_text

    site = load_site_text(scaled_site_yaml(1000, protocol="mixed"), "scaled.yaml")
    assert len(site.nodes) == 1000 and len(site.racks) == 25 and len(site.switches) == 25
    assert {n.bmc.protocol for n in site.nodes} == {"ipmi", "redfish"}


def _ipmitool(node, pw, *args):
    return subprocess.run([need("ipmitool"), "-I", "lanplus", "-C", "3", "-N", "1", "-R", "1", "-H", node.bmc.address,
                           "-p", str(node.bmc.port), "-U", "admin", "-P", pw, *args],
                          capture_output=True, text=True, timeout=60)


def test_lab_faults_make_one_bmc_misbehave_and_leave_the_rest(demo_lab):
    site = demo_lab.effective_site()
    pw = demo_lab.secrets["bmc"]
    victim, neighbour = site.node("dal1-r01-n02"), site.node("dal1-r01-n03")
    for mode in ("silent", "garbage"):
        demo_lab.fault("ipmi", victim.name, mode)
        try:
            bad = _ipmitool(victim, pw, "power", "status")
            assert bad.returncode != 0 and "Chassis Power" not in bad.stdout
            good = _ipmitool(neighbour, pw, "power", "status")
            assert good.returncode == 0 and "Chassis Power is on" in good.stdout
        finally:
            demo_lab.fault("ipmi", victim.name, "")
    assert "Chassis Power is on" in _ipmitool(victim, pw, "power", "status").stdout
    rf = site.node("dal1-r02-n02")
    demo_lab.fault("redfish", rf.name, "malformed_json")
    try:
        out = subprocess.run([need("curl"), "-s", "-u", f"admin:{pw}", f"http://{rf.bmc.address}:{rf.bmc.port}/redfish/v1/Systems"],
                             capture_output=True, text=True, timeout=30)
        with pytest.raises(ValueError):
            json.loads(out.stdout)
    finally:
        demo_lab.fault("redfish", rf.name, "")


def test_lab_counts_bmc_sessions_across_workers(demo_lab):
    """Session counts are how the poller will prove it logs out; check them with curl."""
    site = demo_lab.effective_site()
    rf = site.node("dal1-r02-n11")
    base = f"http://{rf.bmc.address}:{rf.bmc.port}"
    before = demo_lab.sessions()["redfish"]
    body = json.dumps({"UserName": "admin", "Password": demo_lab.secrets["bmc"]})
    out = subprocess.run([need("curl"), "-s", "-D", "-", "-o", "/dev/null", "-H", "Content-Type: application/json",
                          "-d", body, f"{base}/redfish/v1/SessionService/Sessions"], capture_output=True, text=True, timeout=30)
    headers = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    headers = {k.lower(): v.strip() for k, v in headers.items()}
    assert "x-auth-token" in headers, out.stdout
    assert demo_lab.sessions()["redfish"] == before + 1
    subprocess.run([need("curl"), "-s", "-X", "DELETE", "-H", f"X-Auth-Token: {headers['x-auth-token']}",
                    base + headers["location"].replace(base, "")], capture_output=True, timeout=30)
    assert demo_lab.sessions()["redfish"] == before
