"""The action engine against a small lab: IPMI rack r01, Redfish rack r02, over the real protocols.

Every effect is checked on the lab's side (the simulated machine's power, boots,
boot source; BMC sessions; event log), never by trusting our own client code.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from console import site as sites
from console.drivers import open_bmc
from console.ops.actions import PlanError, plan_power, plan_pxe, plan_reimage, resolve_image
from console.ops.journal import Journal, read_entries
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.ops.runner import Runner
from console.secrets import Secrets
from tests import support

SITE_YAML = """\
site: acttest
description: small lab site for the action engine tests
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
  - {name: flatcar, version: 4152.2.0, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
switches:
  - {name: act-r01-tor, address: 127.3.0.61, rack: r01, snmp: {version: 2c, community: "lab:snmp"}}
  - {name: act-r02-tor, address: 127.3.0.62, rack: r02, snmp: {version: 2c, community: "lab:snmp"}}
racks:
  - name: r01
    nodes:
      - name: act-r01-n[01-06]
        u: "[1-6]"
        mac: "52:54:00:61:00:[01-06]"
        host: 127.2.61.[1-6]
        bmc: {address: "127.1.61.[1-6]"}
        switch_port: {switch: act-r01-tor, port: "Ethernet[1-6]"}
  - name: r02
    defaults:
      bmc: {protocol: redfish, scheme: http}
    nodes:
      - name: act-r02-n[01-06]
        u: "[1-6]"
        mac: "52:54:00:62:00:[01-06]"
        host: 127.2.62.[1-6]
        bmc: {address: "127.1.62.[1-6]"}
        switch_port: {switch: act-r02-tor, port: "Ethernet[1-6]"}
      - name: act-r02-db01
        u: 10
        protected: true
        mac: "52:54:00:62:00:10"
        host: 127.2.62.10
        bmc: {address: 127.1.62.10}
        switch_port: {switch: act-r02-tor, port: Ethernet10}
lab:
  running: {}
  powered_off: ["act-r01-n06", "act-r02-n06"]
  faults: {act-r02-n06: fan}
"""
TIME_SCALE = 0.05
FAST = dict(poll_interval=0.05, power_timeout=15.0, request_timeout=3.0)
IPMI = [f"act-r01-n0{i}" for i in range(1, 7)]
REDFISH = [f"act-r02-n0{i}" for i in range(1, 7)]


def write_site(directory: Path) -> Path:
    """The test site's YAML file in ``directory``."""
    path = directory / "acttest.yaml"
    path.write_text(SITE_YAML)
    return path


class Ctx:
    """What the engine needs of a site context (the CLI's SiteContext has the same two fields)."""

    def __init__(self, site, secrets) -> None:
        self.site = site
        self.secrets = secrets


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    from console.lab.lab import Lab

    path = write_site(tmp_path_factory.mktemp("site"))
    lab = Lab(sites.load(str(path)), ephemeral=True, time_scale=TIME_SCALE)
    lab.start()
    lab.site_file = str(path)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def ctx(lab):
    return Ctx(lab.effective_site(), Secrets(lab=lab.secrets))


@pytest.fixture
def journal(tmp_path):
    return Journal("acttest", operator="tester", path=tmp_path / "journal.jsonl")


@pytest.fixture
def locks(tmp_path):
    return Locks("acttest", directory=tmp_path / "locks", owner="tester")


def machine(lab, node):
    return lab.machine(node)


def wait_for(pred, timeout=20.0, what="condition"):
    return support.wait_for(pred, timeout, what, interval=0.02)


def set_power(lab, nodes, on: bool, *, running: bool = True) -> None:
    """Put lab machines in a known power state through the lab's control channel (test setup)."""
    for n in nodes:
        m = machine(lab, n)
        if m["powered"] != on:
            lab.call(n, {"cmd": "power", "node": n, "action": "on" if on else "off"})
    for n in nodes:
        if on and running:
            wait_for(lambda: machine(lab, n)["phase"] == "running", what=f"{n} running")
        else:
            wait_for(lambda: machine(lab, n)["powered"] == on, what=f"{n} power {on}")


async def run(ctx, plan, journal, locks, **kw):
    opts = dict(FAST)
    opts.update(kw)
    return await Runner(ctx, plan, RunOptions(**opts), journal=journal, locks=locks).run()


def by_node(result):
    return {p.node: p for p in result.nodes}


# --------------------------------------------------------------------------- power
@pytest.mark.parametrize("node", ["act-r01-n02", "act-r02-n02"], ids=["ipmi", "redfish"])
async def test_each_power_action_is_verified_in_the_lab(lab, ctx, journal, locks, node):
    set_power(lab, [node], True)
    # soft: the running OS shuts down on the ACPI request
    plan = await plan_power(ctx, [node], "soft", locks=locks)
    assert [s.name for s in plan.targets[0].steps] == ["soft-off"]
    res = await run(ctx, plan, journal, locks, soft_timeout=10)
    assert by_node(res)[node].phase == "done", by_node(res)[node].error
    assert machine(lab, node)["powered"] is False
    # on
    plan = await plan_power(ctx, [node], "on", locks=locks)
    res = await run(ctx, plan, journal, locks)
    assert res.ok and machine(lab, node)["powered"] is True
    wait_for(lambda: machine(lab, node)["phase"] == "running", what="running")
    # cycle: the machine boots once more
    boots = machine(lab, node)["boots"]
    plan = await plan_power(ctx, [node], "cycle", locks=locks)
    assert [s.name for s in plan.targets[0].steps] == ["power-cycle"]
    res = await run(ctx, plan, journal, locks)
    assert res.ok
    m = machine(lab, node)
    assert m["powered"] and m["boots"] == boots + 1
    # reset: a warm reboot, power stays on
    plan = await plan_power(ctx, [node], "reset", locks=locks)
    res = await run(ctx, plan, journal, locks)
    assert res.ok
    m = machine(lab, node)
    assert m["powered"] and m["boots"] == boots + 2
    # off (hard)
    plan = await plan_power(ctx, [node], "off", locks=locks)
    res = await run(ctx, plan, journal, locks)
    assert res.ok and machine(lab, node)["powered"] is False
    # already off: skipped with the reason, nothing sent
    plan = await plan_power(ctx, [node], "off", locks=locks)
    assert plan.targets == [] and plan.nodes[0].skip_reason == "already off"
    # every step journalled twice: started, then its result
    entries = read_entries("acttest", path=journal.path, node=node, limit=0)
    steps = [(e["step"], e["result"]) for e in entries]
    for step in ("soft-off", "power-on", "power-cycle", "reset", "power-off"):
        assert (step, "started") in steps and (step, "ok") in steps, step
    assert all(e["operator"] == "tester" and e["plan"] for e in entries)
    set_power(lab, [node], True)


async def test_soft_with_hard_after_forces_a_halted_machine_off(lab, ctx, journal, locks):
    node = "act-r02-n03"
    set_power(lab, [node], True)
    # a machine still in firmware ignores the ACPI button, as real ones do
    lab.call(node, {"cmd": "power", "node": node, "action": "reset"})
    assert machine(lab, node)["phase"] != "running"
    plan = await plan_power(ctx, [node], "soft", locks=locks, hard_after=0.01)
    assert [s.name for s in plan.targets[0].steps] == ["soft-off", "hard-off"]
    lab.call(node, {"cmd": "power", "node": node, "action": "reset"})  # keep it in POST for the request
    res = await run(ctx, plan, journal, locks, hard_after=0.01)
    p = by_node(res)[node]
    assert p.phase == "done", p.error
    assert [(s.step, s.result) for s in p.steps] == [("soft-off", "ok"), ("hard-off", "ok")]
    assert machine(lab, node)["powered"] is False
    set_power(lab, [node], True)


# --------------------------------------------------------------------------- pxe
@pytest.mark.parametrize("node,on", [("act-r01-n03", True), ("act-r01-n04", False),
                                     ("act-r02-n04", True), ("act-r02-n05", False)],
                         ids=["ipmi-on", "ipmi-off", "redfish-on", "redfish-off"])
async def test_pxe_sets_the_override_reads_it_back_then_reboots(lab, ctx, journal, locks, node, on):
    set_power(lab, [node], on)
    before = machine(lab, node)
    plan = await plan_pxe(ctx, [node], locks=locks)
    assert [s.name for s in plan.targets[0].steps] == ["boot-pxe", "verify-boot", "reboot"]
    res = await run(ctx, plan, journal, locks)
    p = by_node(res)[node]
    assert p.phase == "done", p.error
    assert p.steps[1].detail == "read back: pxe once"
    assert p.steps[2].detail.startswith("reset" if on else "powered on")
    m = wait_for(lambda: (m := machine(lab, node))["pxe_fetches"] != before["pxe_fetches"] and m, what="PXE fetch")
    assert m["last_boot_source"] == "pxe" and m["boots"] == before["boots"] + 1
    assert m["boot_override"] == "none"  # once: consumed by that boot
    assert m["pxe_fetches"][-1][1].endswith("/boot/" + ctx.site.node(node).mac.replace(":", "-") + ".ipxe")
    wait_for(lambda: machine(lab, node)["phase"] == "running", what="back to running")


@pytest.mark.parametrize("node", ["act-r01-n03", "act-r02-n03"], ids=["ipmi", "redfish"])
async def test_pxe_stops_when_the_override_does_not_stick(lab, ctx, journal, locks, node):
    """A BMC that accepts the override and then reverts it (docs/protocols.md: Supermicro, iDRAC):
    the lab reverts it just before our read-back; the node must not be rebooted."""
    set_power(lab, [node], True)
    before = machine(lab, node)

    def revert(p):
        if p.phase == "verify-boot":  # runs before the read-back is sent
            lab.call(node, {"cmd": "boot_override", "node": node, "device": "none"})

    plan = await plan_pxe(ctx, [node], locks=locks)
    res = await Runner(ctx, plan, RunOptions(**FAST), journal=journal, locks=locks, progress_callback=revert).run()
    p = by_node(res)[node]
    assert p.phase == "failed" and p.error.startswith("boot override did not stick: the BMC reports none")
    assert [s.step for s in p.steps] == ["boot-pxe", "verify-boot"]  # no reboot step ran
    time.sleep(0.3)
    after = machine(lab, node)
    assert after["boots"] == before["boots"] and after["pxe_fetches"] == before["pxe_fetches"]
    assert ("verify-boot", "failed") in [(e["step"], e["result"])
                                         for e in read_entries("acttest", path=journal.path, node=node, limit=0)]


# --------------------------------------------------------------------------- reimage
async def test_reimage_takes_nodes_through_pxe_to_the_new_image_journalling_each_phase(lab, ctx, journal, locks):
    from console.ops import reimage

    nodes = ["act-r01-n05", "act-r02-n05"]  # IPMI and Redfish
    set_power(lab, nodes[:1], True, running=False)
    set_power(lab, nodes[1:], False)
    plan = await plan_reimage(ctx, nodes, "flatcar@4152.2.0", locks=locks, ticket="CHG-1")
    assert plan.action == "reimage flatcar@4152.2.0" and len(plan.targets) == 2
    assert [s.name for s in plan.targets[0].steps] == [s.name for s in reimage.reimage_steps(
        ctx.site.node(nodes[0]), ctx.site.image("flatcar@4152.2.0"), ctx.site)]
    timeouts = reimage.PhaseTimeouts(poll=0.1, assigned=20, rebooting=30, installing=30, verifying=30)
    res = await run(ctx, plan, journal, locks, reimage_timeouts=timeouts)
    assert res.ok, [(p.node, p.error) for p in res.nodes]
    for n in nodes:
        m = machine(lab, n)
        assert m["image"] == "flatcar@4152.2.0" and m["last_boot_source"] == "pxe" and m["pxe_fetches"][-1][2] == 200
        steps = [(e["step"], e["result"]) for e in read_entries("acttest", path=journal.path, node=n, limit=0)]
        assert steps[0] == ("reimage", "started") and steps[-1] == ("reimage", "ok")
        for phase in ("assigned", "rebooting", "installing", "verifying"):
            assert (phase, "started") in steps and (phase, "ok") in steps, (phase, steps)
    assert {e["ticket"] for e in read_entries("acttest", path=journal.path, limit=0)} == {"CHG-1"}


# --------------------------------------------------------------------------- planning
async def test_plan_skips_with_reasons_and_states_the_blast_radius(lab, ctx, locks):
    set_power(lab, ["act-r01-n05"], False)
    set_power(lab, ["act-r01-n01", "act-r02-n01"], True, running=False)
    # another operator's live process holds act-r01-n01
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        lockfile = locks.dir / "act-r01-n01.lock"
        locks.dir.mkdir(parents=True, exist_ok=True)
        lockfile.write_text(json.dumps({"node": "act-r01-n01", "owner": "bob", "pid": other.pid,
                                        "host": socket.gethostname(), "created": time.time(),
                                        "expires": time.time() + 600, "action": "power cycle", "plan": "x"}))
        lab.fault("redfish", "act-r02-n01", "hang")
        try:
            names = ["act-r01-n01", "act-r01-n05", "act-r02-n01", "act-r02-n02", "act-r02-db01"]
            plan = await plan_power(ctx, names, "cycle", locks=locks, ticket="INC-7", timeout=1.0)
        finally:
            lab.fault("redfish", "act-r02-n01", "")
    finally:
        other.stdin.close()
        other.wait(10)
    skip = {n.node: n.skip_reason for n in plan.nodes}
    assert skip["act-r01-n01"].startswith("locked by bob (pid %d" % other.pid)
    assert skip["act-r02-n01"].startswith("unreachable (")
    assert skip["act-r02-db01"] == "protected (override with --force-protected)"
    assert skip["act-r01-n05"] is None and skip["act-r02-n02"] is None
    assert [s.name for s in plan.nodes[1].steps] == ["power-on"]  # off: a cycle becomes a power on
    assert plan.blast_radius() == {"nodes": 2, "racks": ["r01", "r02"], "switches": ["act-r01-tor", "act-r02-tor"]}
    text = plan.text()
    assert "ticket INC-7" in text and "blast radius: 2 nodes; 2 racks (r01, r02)" in text
    assert "act-r02-db01: protected" in text and "locked by bob" in text
    doc = plan.to_json()
    assert json.loads(json.dumps(doc))["blast_radius"]["nodes"] == 2
    # --force-protected includes it; powering on is never refused for protection
    forced = await plan_power(ctx, ["act-r02-db01"], "cycle", locks=locks, force_protected=True)
    assert forced.nodes[0].skip is None
    assert "PROTECTED nodes included (--force-protected): act-r02-db01" in forced.text()
    set_power(lab, ["act-r02-db01"], False)
    on = await plan_power(ctx, ["act-r02-db01"], "on", locks=locks)
    assert on.nodes[0].skip is None
    set_power(lab, ["act-r02-db01"], True, running=False)


async def test_reimage_plan_rejects_unknown_images_naming_the_known_ones(ctx):
    with pytest.raises(PlanError, match=r"unknown image 'flatcar@1\.0'.*flatcar@4081\.2\.1, flatcar@4152\.2\.0"):
        resolve_image(ctx.site, "flatcar@1.0")
    with pytest.raises(PlanError, match="NAME@VERSION"):
        resolve_image(ctx.site, "flatcar")
    with pytest.raises(PlanError, match="unknown image"):
        await plan_reimage(ctx, ["act-r01-n01"], "flatcar@1.0")


# --------------------------------------------------------------------------- fan-out, canary, failures
async def test_fanout_limit_is_never_exceeded_as_seen_by_the_lab(lab, ctx, journal, locks):
    nodes = IPMI[:5] + REDFISH[:5]
    set_power(lab, nodes, True, running=False)
    plan = await plan_power(ctx, nodes, "cycle", locks=locks)
    assert len(plan.targets) == 10
    base = lab.sessions()
    base_total = base["ipmi"] + base["redfish"]
    seen: list[int] = []
    stop = threading.Event()

    def sample():  # the lab's own count of open BMC sessions, as often as it answers
        while not stop.is_set():
            s = lab.sessions()
            seen.append(s["ipmi"] + s["redfish"] - base_total)

    t = threading.Thread(target=sample)
    t.start()
    try:
        res = await run(ctx, plan, journal, locks, fanout=3)
    finally:
        stop.set()
        t.join()
    assert res.ok, [(p.node, p.error) for p in res.nodes if p.error]
    assert max(seen) <= 3, max(seen)
    assert max(seen) >= 2  # the measurement does see concurrent work
    for n in nodes:
        assert machine(lab, n)["powered"]


async def test_canary_goes_first_and_a_failed_canary_stops_the_rest(lab, ctx, journal, locks):
    nodes = REDFISH[:4]
    set_power(lab, nodes, True, running=False)
    plan = await plan_power(ctx, nodes, "reset", locks=locks)
    res = await run(ctx, plan, journal, locks, canary=1, fanout=4)
    assert res.ok
    p = by_node(res)
    assert p[nodes[0]].canary and all(p[nodes[0]].finished <= p[n].started for n in nodes[1:])
    # the canary was waited for until healthy: its OS answered over SSH before the rest began
    assert p[nodes[0]].steps[-1].step == "canary-health"
    assert "OS answers, running flatcar@" in p[nodes[0]].steps[-1].detail
    assert not any(s.step == "canary-health" for n in nodes[1:] for s in p[n].steps)
    # a canary whose BMC breaks after planning: nothing else starts
    boots = {n: machine(lab, n)["boots"] for n in nodes}
    plan = await plan_power(ctx, nodes, "reset", locks=locks)
    lab.fault("redfish", nodes[0], "http500")
    try:
        res = await run(ctx, plan, journal, locks, canary=1, fanout=4)
    finally:
        lab.fault("redfish", nodes[0], "")
    p = by_node(res)
    assert p[nodes[0]].phase == "failed"
    assert res.stopped.startswith(f"canary {nodes[0]} failed")
    assert all(p[n].phase == "cancelled" and p[n].error.startswith("not started") for n in nodes[1:])
    assert all(machine(lab, n)["boots"] == boots[n] for n in nodes[1:])  # untouched in the lab
    assert not res.ok


async def test_an_unhealthy_canary_fails(lab, ctx, journal, locks):
    node = "act-r02-n06"  # a failed fan in the lab: critical once powered
    set_power(lab, [node], False)
    plan = await plan_power(ctx, [node], "on", locks=locks)
    res = await run(ctx, plan, journal, locks, canary=1)
    p = by_node(res)[node]
    assert p.phase == "failed" and p.error == "canary unhealthy: the BMC reports health critical"
    assert res.stopped.startswith(f"canary {node} failed")
    assert machine(lab, node)["powered"]  # the action itself ran: only the health gate failed


async def test_max_failures_stops_launching(lab, ctx, journal, locks):
    nodes = REDFISH[:5]
    set_power(lab, nodes, True, running=False)
    plan = await plan_power(ctx, nodes, "reset", locks=locks)
    boots = {n: machine(lab, n)["boots"] for n in nodes}
    for n in nodes[:3]:
        lab.fault("redfish", n, "http500")
    try:
        res = await run(ctx, plan, journal, locks, fanout=1, max_failures=2)
    finally:
        for n in nodes[:3]:
            lab.fault("redfish", n, "")
    p = by_node(res)
    assert [p[n].phase for n in nodes] == ["failed", "failed", "cancelled", "cancelled", "cancelled"]
    assert res.stopped == "stopped after 2 failures (--max-failures 2)"
    assert all(machine(lab, n)["boots"] == boots[n] for n in nodes[2:])
    failed = [e for e in read_entries("acttest", path=journal.path, limit=0) if e["result"] == "failed" and e["node"]]
    assert {e["node"] for e in failed} == set(nodes[:2]) and all(e["error"] for e in failed)


async def test_cancel_stops_launching_and_reports_what_ran(lab, ctx, journal, locks):
    nodes = IPMI[:4]
    set_power(lab, nodes, True, running=False)
    plan = await plan_power(ctx, nodes, "reset", locks=locks)
    boots = {n: machine(lab, n)["boots"] for n in nodes}
    runner: Runner | None = None

    def progress(p):
        if p.node == nodes[0] and p.phase == "done":
            runner.cancel()

    runner = Runner(ctx, plan, RunOptions(fanout=1, **FAST), journal=journal, locks=locks, progress_callback=progress)
    res = await runner.run()
    p = by_node(res)
    assert p[nodes[0]].phase == "done"
    assert all(p[n].phase == "cancelled" for n in nodes[1:])
    assert res.stopped == "cancelled" and not res.ok
    assert machine(lab, nodes[0])["boots"] == boots[nodes[0]] + 1
    assert all(machine(lab, n)["boots"] == boots[n] for n in nodes[1:])
    summary = read_entries("acttest", path=journal.path, limit=1)[0]
    assert summary["step"] == "summary" and summary["result"] == "cancelled" and "1 done" in summary["detail"]
    # a second cancel aborts the step in flight (a power-on waiting for a BMC that never answers)
    node = "act-r02-n06"
    set_power(lab, [node], False)
    plan = await plan_power(ctx, [node], "on", locks=locks)
    before = support.redfish_requests(lab, node)
    lab.fault("redfish", node, "hang")
    # its first request hangs for good; the logout after the abort is answered
    healer = asyncio.create_task(support.heal_when_hung(lab, node, before))

    def abort(p):
        if p.phase == "power-on":
            asyncio.get_running_loop().call_later(0.2, runner2.cancel)
            asyncio.get_running_loop().call_later(0.3, runner2.cancel)

    runner2 = Runner(ctx, plan, RunOptions(**dict(FAST, request_timeout=30)), journal=journal, locks=locks,
                     progress_callback=abort)
    try:
        t0 = time.monotonic()
        res = await runner2.run()
        assert time.monotonic() - t0 < 10
        await healer
    finally:
        healer.cancel()
        lab.fault("redfish", node, "")
    assert by_node(res)[node].phase == "cancelled" and "aborted during power-on" in by_node(res)[node].error


async def test_abort_reaches_nodes_whose_task_had_not_started(lab, ctx, journal, locks):
    nodes = REDFISH[:2]
    set_power(lab, nodes, True, running=False)
    plan = await plan_power(ctx, nodes, "reset", locks=locks)
    before = boots(lab, nodes)
    runner: Runner | None = None

    def abort_at_once(p):  # both tasks exist; the second has not run a line yet
        if p.node == nodes[0] and p.phase == "reset":
            runner.cancel()
            runner.cancel()

    runner = Runner(ctx, plan, RunOptions(fanout=2, **FAST), journal=journal, locks=locks, progress_callback=abort_at_once)
    res = await asyncio.wait_for(runner.run(), 30)
    p = by_node(res)
    assert p[nodes[0]].phase == "cancelled" and p[nodes[0]].error == "aborted during reset"
    assert p[nodes[1]].phase == "cancelled" and p[nodes[1]].error == "aborted before it started"
    time.sleep(0.3)
    assert boots(lab, nodes) == before  # aborted before the reset request left
    assert not list(locks.dir.glob("*.lock"))


def boots(lab, nodes):
    return {n: machine(lab, n)["boots"] for n in nodes}


async def test_stagger_spaces_power_on_requests_in_the_lab(lab, ctx, journal, locks):
    nodes = REDFISH[2:5]
    set_power(lab, nodes, False)
    t0 = time.time()
    plan = await plan_power(ctx, nodes, "on", locks=locks)
    res = await run(ctx, plan, journal, locks, fanout=3, stagger=1.0)
    assert res.ok

    async def power_on_times(n):  # the BMC's own event log: when each machine was asked to power on
        driver = open_bmc(ctx.site.node(n), ctx.secrets, timeout=5)
        try:
            events = await driver.events()
        finally:
            await driver.close()
        return [e.timestamp for e in events if "S0/G0" in e.message]

    stamps = sorted([(await power_on_times(n))[-1] for n in nodes])  # each machine's latest: this run's
    assert stamps[0] >= int(t0)
    # whole-second timestamps: requests 1 s apart always land in three different seconds
    assert len(set(stamps)) == 3 and stamps[-1] - stamps[0] >= 2


# --------------------------------------------------------------------------- locks during a run
async def test_a_run_holds_locks_and_releases_them(lab, ctx, journal, locks):
    node = "act-r01-n05"
    set_power(lab, [node], True, running=False)
    plan = await plan_power(ctx, [node], "reset", locks=locks)
    seen = {}

    def progress(p):
        if p.phase == "reset":
            other = Locks("acttest", directory=locks.base, owner="bob")  # another operator's run
            seen["held"] = other.held_by(node)

    res = await Runner(ctx, plan, RunOptions(**FAST), journal=journal, locks=locks, progress_callback=progress).run()
    assert res.ok
    assert seen["held"] is not None and seen["held"].owner == "tester" and seen["held"].plan == plan.id
    assert not (locks.dir / f"{node}.lock").exists()


async def test_no_password_reaches_the_journal_or_json(lab, ctx, journal, locks):
    node = "act-r02-n02"
    set_power(lab, [node], True, running=False)
    lab.fault("redfish", node, "auth_fail")
    try:
        plan = await plan_power(ctx, [node, "act-r01-n02"], "reset", locks=locks)
    finally:
        lab.fault("redfish", node, "")
    res = await run(ctx, plan, journal, locks)
    password = lab.secrets["bmc"]
    text = journal.path.read_text() + json.dumps(res.to_json()) + json.dumps(plan.to_json()) + plan.text()
    assert "auth" in text.lower()  # the auth failure is journalled ...
    assert password not in text  # ... without the password
