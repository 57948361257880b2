"""PXE and reimage on BMCs that echo the boot override imperfectly (console.ops.bootquirk).

Two third-party BMCs, reproduced as lab flavors, over the real protocols:

* ``openipmi`` (OpenIPMI's ipmi_sim): boot flags are stored without their valid bit, so
  ``chassis bootdev pxe`` reads back ``00 04 00 00 00`` ("Boot Flag Invalid", Force PXE);
  the host still boots the selector once, and the stored flags outlive that boot.
* ``sushy`` (sushy-tools): BootSourceOverrideEnabled is ignored and always reads
  ``Continuous``; the machine PXE boots at every boot until the target is set to None.

Effects are checked on the lab's side (the machine's boots and boot source) and with
ipmitool, never by trusting our own client code alone.
"""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from console.drivers import open_bmc
from console.drivers.bmc import BootOverride, BootTarget
from console.ops.actions import plan_pxe, plan_reimage
from console.ops.bootquirk import CLEARED
from console.ops.journal import Journal, read_entries
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.ops.reimage import PHASES, PhaseTimeouts
from console.ops.runner import Runner
from tests.conftest import need
from tests.support import wait_for

SITE = """\
site: quirks
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc", flavor: openipmi}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8071/k, initrd: http://127.0.0.1:8071/i}
  - {name: flatcar, version: 4152.2.0, kernel: http://127.0.0.1:8071/k, initrd: http://127.0.0.1:8071/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8071"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: qk-r01-n[01-05]
        u: "[1-5]"
        mac: "52:54:00:71:00:[01-05]"
        host: 127.2.71.[1-5]
        bmc: {address: "127.1.71.[1-5]"}
  - name: r02
    defaults:
      bmc: {protocol: redfish, scheme: http, flavor: sushy}
    nodes:
      - name: qk-r02-n[01-05]
        u: "[1-5]"
        mac: "52:54:00:72:00:[01-05]"
        host: 127.2.72.[1-5]
        bmc: {address: "127.1.72.[1-5]"}
"""
FAST = dict(poll_interval=0.05, power_timeout=15.0, request_timeout=3.0)
QUIRK = {"openipmi": "pxe, but not flagged valid (BMC keeps boot flags without their valid bit)",
         "sushy": "pxe, but continuous (BMC ignores once)"}


class Ctx:
    def __init__(self, site, secrets) -> None:
        self.site, self.secrets = site, secrets


@pytest.fixture
def ctx(site_ctx):
    return Ctx(*site_ctx)


@pytest.fixture
def journal(tmp_path):
    return Journal("quirks", operator="tester", path=tmp_path / "journal.jsonl")


@pytest.fixture
def locks(tmp_path):
    return Locks("quirks", directory=tmp_path / "locks", owner="tester")


def running(lab, name: str) -> dict:
    """Power the machine on (when off) and wait until its OS runs; its state."""
    if not lab.machine(name)["powered"]:
        lab.call(name, {"cmd": "power", "node": name, "action": "on"})
    return wait_for(lambda: (m := lab.machine(name))["phase"] == "running" and m, 20, f"{name} running")


async def read_override(ctx, name: str) -> BootOverride:
    bmc = open_bmc(ctx.site.node(name), ctx.secrets)
    try:
        return await bmc.boot_override()
    finally:
        await bmc.close()


def ipmitool(lab, name: str, *args: str) -> str:
    node = lab.effective_site().node(name)
    out = subprocess.run([need("ipmitool"), "-I", "lanplus", "-C", "3", "-N", "1", "-R", "2", "-H", node.bmc.address,
                          "-p", str(node.bmc.port), "-U", "admin", "-E", *args], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "IPMI_PASSWORD": lab.secrets["bmc"]})
    assert out.returncode == 0, out.stderr
    return out.stdout


# --------------------------------------------------------------------------- the lab flavors
def test_openipmi_flavor_keeps_boot_flags_without_the_valid_bit(site_lab, ctx):
    name = "qk-r01-n01"
    before = running(site_lab, name)
    ipmitool(site_lab, name, "chassis", "bootdev", "pxe")
    got = ipmitool(site_lab, name, "chassis", "bootparam", "get", "5")
    assert "Boot Flag Invalid" in got and "Force PXE" in got, got
    assert "Boot Flag Valid" not in got
    assert site_lab.machine(name)["boot_override"] == "pxe"  # the host will boot it
    ipmitool(site_lab, name, "chassis", "power", "reset")
    m = wait_for(lambda: (m := site_lab.machine(name))["pxe_fetches"] != before["pxe_fetches"] and m, 20, "PXE")
    assert m["last_boot_source"] == "pxe" and m["boot_override"] == "none"  # once, for the host
    assert "Force PXE" in ipmitool(site_lab, name, "chassis", "bootparam", "get", "5")  # ipmi_sim never saw the boot
    ipmitool(site_lab, name, "chassis", "bootdev", "none")
    assert "No override" in ipmitool(site_lab, name, "chassis", "bootparam", "get", "5")
    running(site_lab, name)


async def test_openipmi_flavor_reads_as_none_with_the_selector_kept(site_lab, ctx):
    name = "qk-r01-n01"
    ipmitool(site_lab, name, "chassis", "bootdev", "pxe")
    assert await read_override(ctx, name) == BootOverride(BootTarget.NONE, unflagged=BootTarget.PXE)
    ipmitool(site_lab, name, "chassis", "bootdev", "none")
    assert await read_override(ctx, name) == BootOverride(BootTarget.NONE)


async def test_sushy_flavor_ignores_once_so_the_machine_pxe_boots_every_time(site_lab, ctx):
    name = "qk-r02-n01"
    node = ctx.site.node(name)
    before = running(site_lab, name)
    base = f"http://{node.bmc.address}:{node.bmc.port}/redfish/v1/Systems/437XR1138R2"
    async with httpx.AsyncClient(auth=("admin", site_lab.secrets["bmc"]), timeout=10) as http:
        r = await http.patch(base, json={"Boot": {"BootSourceOverrideTarget": "Pxe",
                                                   "BootSourceOverrideEnabled": "Once"}})
        assert r.status_code in (200, 204)
        boot = (await http.get(base)).json()["Boot"]
        assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Pxe", "Continuous")
        fetches = len(before["pxe_fetches"])
        for _ in range(2):  # every boot, not just the next one
            r = await http.post(f"{base}/Actions/ComputerSystem.Reset", json={"ResetType": "ForceRestart"})
            assert r.status_code in (200, 204)
            m = wait_for(lambda: len((m := site_lab.machine(name))["pxe_fetches"]) > fetches and m, 20, "PXE")
            fetches = len(m["pxe_fetches"])
            assert m["last_boot_source"] == "pxe"
            running(site_lab, name)
        # Enabled alone is ignored too; a None target clears it
        await http.patch(base, json={"Boot": {"BootSourceOverrideEnabled": "Disabled"}})
        assert (await http.get(base)).json()["Boot"]["BootSourceOverrideTarget"] == "Pxe"
        await http.patch(base, json={"Boot": {"BootSourceOverrideTarget": "None"}})
        assert (await http.get(base)).json()["Boot"]["BootSourceOverrideTarget"] == "None"
    assert site_lab.machine(name)["boot_override"] == "none"


# --------------------------------------------------------------------------- pxe
@pytest.mark.parametrize("name,flavor", [("qk-r01-n02", "openipmi"), ("qk-r02-n02", "sushy")],
                         ids=["openipmi", "sushy"])
async def test_pxe_goes_on_with_the_quirk_noted_and_clears_the_override_after_the_boot(
        site_lab, ctx, journal, locks, name, flavor):
    before = running(site_lab, name)
    plan = await plan_pxe(ctx, [name], locks=locks)
    res = await Runner(ctx, plan, RunOptions(**FAST), journal=journal, locks=locks).run()
    (p,) = res.nodes
    assert p.phase == "done", p.error
    assert [s.step for s in p.steps] == ["boot-pxe", "verify-boot", "reboot", "clear-boot"]
    assert p.steps[1].detail == f"read back: {QUIRK[flavor]}: will clear after boot"
    assert p.steps[3].detail.startswith(CLEARED + " (boot seen by the provisioner")
    assert p.steps[3].detail.endswith(f"; it read back {QUIRK[flavor]}")  # what the pxe command's table shows
    assert QUIRK[flavor] in p.detail and "cleared after boot" in p.detail  # the plan's result says so
    entries = {e["step"]: e for e in read_entries("quirks", path=journal.path, node=name, limit=0)
               if e["result"] != "started"}
    assert entries["verify-boot"]["result"] == "ok" and QUIRK[flavor] in entries["verify-boot"]["detail"]
    assert entries["clear-boot"]["result"] == "ok" and entries["clear-boot"]["detail"].startswith(CLEARED)
    m = wait_for(lambda: (m := site_lab.machine(name))["pxe_fetches"] != before["pxe_fetches"] and m, 20, "PXE")
    assert m["last_boot_source"] == "pxe"
    assert await read_override(ctx, name) == BootOverride(BootTarget.NONE)  # no selector left either
    # the danger this guards against: the next boot is from disk, not PXE again
    m = running(site_lab, name)
    site_lab.call(name, {"cmd": "power", "node": name, "action": "reset"})
    m = wait_for(lambda: (n := site_lab.machine(name))["boots"] > m["boots"] and n["phase"] == "running" and n,
                 20, "reboot")
    assert m["last_boot_source"] == "disk" and m["pxe_fetches"] == site_lab.machine(name)["pxe_fetches"]


@pytest.mark.parametrize("name,flavor", [("qk-r01-n03", "openipmi"), ("qk-r02-n03", "sushy")],
                         ids=["openipmi", "sushy"])
async def test_pxe_refuses_an_override_that_reads_back_another_device(site_lab, ctx, journal, locks, name, flavor):
    before = running(site_lab, name)

    def revert(p):
        if p.phase == "verify-boot":  # runs before the read-back is sent: the BMC now says disk
            if flavor == "openipmi":
                ipmitool(site_lab, name, "chassis", "bootdev", "disk")
            else:
                site_lab.call(name, {"cmd": "boot_override", "node": name, "device": "disk", "persistent": True})

    plan = await plan_pxe(ctx, [name], locks=locks)
    res = await Runner(ctx, plan, RunOptions(**FAST), journal=journal, locks=locks, progress_callback=revert).run()
    (p,) = res.nodes
    assert p.phase == "failed"
    seen = "none once (selector disk, not flagged valid)" if flavor == "openipmi" else "disk continuous"
    assert p.error.startswith(f"boot override did not stick: the BMC reports {seen}, not pxe once"), p.error
    assert [s.step for s in p.steps] == ["boot-pxe", "verify-boot"]  # not rebooted
    after = site_lab.machine(name)
    assert after["boots"] == before["boots"] and after["pxe_fetches"] == before["pxe_fetches"]


# --------------------------------------------------------------------------- reimage
@pytest.mark.parametrize("name,flavor", [("qk-r01-n04", "openipmi"), ("qk-r02-n04", "sushy")],
                         ids=["openipmi", "sushy"])
async def test_reimage_through_ipxe_goes_on_and_clears_the_override_once_the_fetch_is_seen(
        site_lab, ctx, journal, locks, name, flavor):
    running(site_lab, name)
    plan = await plan_reimage(ctx, [name], "flatcar@4152.2.0", locks=locks)
    timeouts = PhaseTimeouts(poll=0.05, assigned=30, rebooting=30, installing=30, verifying=30)
    res = await Runner(ctx, plan, RunOptions(reimage_timeouts=timeouts, **FAST), journal=journal, locks=locks).run()
    (p,) = res.nodes
    assert p.phase == "done", p.error
    entries = [e for e in read_entries("quirks", path=journal.path, node=name, limit=0) if e["result"] == "started"]
    detail = {e["step"]: e.get("detail") or "" for e in entries}
    assert [s for s in detail if s in PHASES] == ["assigned", "rebooting", "installing", "verifying"]
    assert f"boot override read back: {QUIRK[flavor]}: will clear after boot" in detail["assigned"]
    assert detail["installing"].startswith("boot seen by the provisioner") and CLEARED in detail["installing"]
    m = site_lab.machine(name)
    assert m["image"] == "flatcar@4152.2.0" and m["last_boot_source"] == "pxe" and m["pxe_fetches"][-1][2] == 200
    assert await read_override(ctx, name) == BootOverride(BootTarget.NONE)
    assert m["boot_override"] == "none"
