"""Cancelling a reimage says, per node, what it left, and undoes what it started.

Against a lab of this module's own site (ipxe provisioner, Redfish BMCs) at a time
scale slow enough that "rebooting" (power good, POST, DHCP, before the boot fetch)
lasts a couple of seconds: a cancel during it lands before the node fetched its new
assignment.  In process (the Runner) and as an operator runs it (the CLI, SIGINT
twice, SIGHUP).  What is asserted is what the lab and the provisioner hold after, and
what the node's OS reports over SSH (the `status` command's own read).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console import site as sites
from console.drivers.ssh import read_image
from console.ops.actions import plan_reimage
from console.ops.journal import Journal, read_entries
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.ops.reimage import PhaseTimeouts
from console.ops.runner import Runner
from console.provision import open_provisioner
from tests import cli_fork
from tests.support import wait_until

SITE = """
site: t-cancel
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: "http://127.0.0.1:8069/images/flatcar/4081.2.1/vmlinuz",
     initrd: "http://127.0.0.1:8069/images/flatcar/4081.2.1/initrd"}
  - {name: flatcar, version: 4152.2.0, kernel: "http://127.0.0.1:8069/images/flatcar/4152.2.0/vmlinuz",
     initrd: "http://127.0.0.1:8069/images/flatcar/4152.2.0/initrd"}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: cx-n[01-08]
        mac: "52:54:00:1c:00:[01-08]"
        host: 127.2.28.[1-8]
        bmc: {address: "127.1.28.[1-8]"}
lab:
  running: {}
"""
OLD, NEW = "flatcar@4081.2.1", "flatcar@4152.2.0"
#: rebooting lasts (power on 1 + POST 3 + DHCP 1) x 0.5 = 2.5 s before the boot fetch
TIME_SCALE = 0.5
#: where no cancel has to land inside a phase: a whole reimage in about a second
FAST_TIME_SCALE = 0.05
PHASES = PhaseTimeouts(assigned=30, rebooting=60, installing=60, verifying=60, poll=0.05)


class Ctx:
    def __init__(self, site, secrets) -> None:
        self.site, self.secrets = site, secrets


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    from console.lab.lab import Lab
    from console.lab.state import write_state

    path = tmp_path_factory.mktemp("cancelsite") / "t-cancel.yaml"
    path.write_text(SITE)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=TIME_SCALE) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture
def ctx(lab):
    from console.secrets import Secrets

    return Ctx(lab.effective_site(), Secrets(lab=lab.secrets))


@pytest.fixture
def fast_lab(private_runtime_dir):
    """The same site, fast: for a test whose cancel needs no time window (a lab of its
    own, its own boot scripts, stopped after the test)."""
    from console.lab.lab import Lab
    from inventory.loader import load_site_text

    with Lab(load_site_text(SITE, "t-cancel.yaml"), ephemeral=True, time_scale=FAST_TIME_SCALE) as lab:
        yield lab


@pytest.fixture
def fast_ctx(fast_lab):
    from console.secrets import Secrets

    return Ctx(fast_lab.effective_site(), Secrets(lab=fast_lab.secrets))


async def known_good(ctx, names) -> None:
    """What a finished reimage to OLD leaves: OLD's script, confirmed (the rollback target)."""
    prov = open_provisioner(ctx.site, ctx.secrets)
    try:
        for name in names:
            await prov.assign(ctx.site.node(name), ctx.site.image(OLD))
            await prov.confirm(ctx.site.node(name))
    finally:
        await prov.close()


async def assigned(ctx, name) -> str | None:
    prov = open_provisioner(ctx.site, ctx.secrets)
    try:
        got = await prov.assignment(ctx.site.node(name))
    finally:
        await prov.close()
    return got.image if got is not None else None


async def running(ctx, name) -> str | None:
    """What the node's OS reports over SSH (as `status` reads it); None while it does not answer."""
    got = await read_image(ctx.site.node(name), ctx.site.ssh, ctx.secrets, timeout=3.0)
    return got.ref


async def settled_on(ctx, lab, name, ref) -> None:
    """Wait until the node is up and reports ``ref`` (it was power-cycled)."""
    await wait_until(lambda: lab.machine(name)["phase"] == "running", timeout=60, what=f"{name} up")
    assert await running(ctx, name) == ref


def runner_for(ctx, plan, tmp_path, **kw) -> tuple[Runner, Journal]:
    journal = Journal("t-cancel", operator="tester", path=tmp_path / "journal.jsonl")
    locks = Locks("t-cancel", directory=tmp_path / "locks", owner="tester")
    callback = kw.pop("progress_callback", None)
    options = RunOptions(poll_interval=0.05, power_timeout=30.0, request_timeout=5.0, reimage_timeouts=PHASES, **kw)
    return Runner(ctx, plan, options, journal=journal, locks=locks, progress_callback=callback), journal


async def test_abort_during_rebooting_rolls_back_and_says_so(lab, ctx, tmp_path):
    nodes = ["cx-n01", "cx-n02"]
    await known_good(ctx, nodes)
    fetches = {n: len(lab.machine(n)["pxe_fetches"]) for n in nodes}
    plan = await plan_reimage(ctx, nodes, NEW)
    rebooting: set[str] = set()

    def progress(p):
        if p.phase == "rebooting":
            rebooting.add(p.node)
            if rebooting == set(nodes):  # both power-cycled, neither has fetched yet
                runner.cancel()
                runner.cancel()  # c c: abort and roll back

    runner, journal = runner_for(ctx, plan, tmp_path, progress_callback=progress)
    result = await asyncio.wait_for(runner.run(), 120)
    for p in result.nodes:
        assert p.phase == "cancelled" and p.outcome == "rolled back", (p.node, p.error, p.left)
        assert p.left.assignment == "previous" and p.left.boot_override == "cleared", p.left
        assert p.left.install_pending is False and p.left.power in ("on", "off"), p.left
        assert "rolled back" in p.left.text()
    assert result.summary() == "cancelled: 2 rolled back"
    assert result.to_json()["nodes"][0]["left"]["assignment"] == "previous"
    for n in nodes:
        assert await assigned(ctx, n) == OLD  # the provisioner holds the previous assignment
        assert lab.machine(n)["boot_override"] == "none"  # the override is cleared
    entries = read_entries("t-cancel", path=journal.path, limit=0)
    cancelled = [e for e in entries if e["node"] in nodes and e["result"] == "cancelled"]
    assert {e["node"] for e in cancelled} == set(nodes)
    last = {e["node"]: e for e in cancelled}  # the node's last word: the whole reimage
    assert all("rolled back" in (e.get("detail") or "") for e in last.values()), last
    assert any(e["step"] == "cancel" and "rolled back" in e["detail"] for e in entries)
    for n in nodes:  # the node boots its disk: the old image, and it never fetched the new one
        await settled_on(ctx, lab, n, OLD)
        assert len(lab.machine(n)["pxe_fetches"]) == fetches[n]


async def test_letting_them_finish_ends_with_rows_and_header_agreeing(fast_lab, fast_ctx, tmp_path):
    """The cancel comes in the first node's rebooting phase, both in flight (fanout 2), the
    third waiting for a slot: what comes out does not depend on how long phases last."""
    lab, ctx = fast_lab, fast_ctx
    nodes = ["cx-n03", "cx-n04", "cx-n05"]
    await known_good(ctx, nodes)
    plan = await plan_reimage(ctx, nodes, NEW)

    def progress(p):  # fanout 2: the third waits; cancel while the first two reboot
        if p.phase == "rebooting" and not runner.cancelled:
            runner.cancel()  # stop launching ...
            runner.cancel(rollback=False)  # ... and let the ones in flight finish

    runner, journal = runner_for(ctx, plan, tmp_path, fanout=2, progress_callback=progress)
    result = await asyncio.wait_for(runner.run(), 180)
    outcome = {p.node: p.outcome for p in result.nodes}
    assert outcome == {"cx-n03": "done", "cx-n04": "done", "cx-n05": "not started"}, outcome
    assert result.summary() == "cancelled: 2 done, 1 not started"
    assert result.nodes[2].left.untouched
    for n in nodes[:2]:
        assert await assigned(ctx, n) == NEW
        await settled_on(ctx, lab, n, NEW)
    await settled_on(ctx, lab, nodes[2], OLD)
    entries = read_entries("t-cancel", path=journal.path, limit=0)
    assert any(e["step"] == "cancel" and "let finish" in e["detail"] for e in entries)
    summary = entries[-1]
    assert summary["step"] == "summary" and summary["detail"] == "2 done, 1 not started"


# ----------------------------------------------------------------------- the CLI
@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")
    e["FLEET_CONSOLE_LOCKS"] = str(tmp_path / "locks")
    e["FLEET_OPERATOR"] = "tester"
    return e


def cli_journal(env):
    return read_entries("t-cancel", path=Path(env["XDG_STATE_HOME"]) / "fleet-console" / "t-cancel" / "journal.jsonl",
                        limit=0)


def start_reimage(lab, env, names, *extra):
    return subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, "reimage", names,
                             "--image", NEW, "--yes", "--json", "--poll-interval", "0.05", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)


def wait_for_line(proc, want: str, timeout: float = 60) -> list[str]:
    """stderr lines until one holds ``want`` (the process keeps running)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if want in line:
            return lines
    raise AssertionError(f"no {want!r} on stderr: {''.join(lines)}")


@pytest.mark.parametrize("how", ["ctrl-c twice", "hangup"])
async def test_cli_cancel_during_rebooting_rolls_back(lab, ctx, env, how):
    node = "cx-n06" if how == "ctrl-c twice" else "cx-n07"
    await known_good(ctx, [node])
    proc = start_reimage(lab, env, node)
    try:
        wait_for_line(proc, f"{node}: rebooting")
        if how == "ctrl-c twice":
            proc.send_signal(signal.SIGINT)
            wait_for_line(proc, "cancelling: no new steps will start")
            proc.send_signal(signal.SIGINT)
        else:
            proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    doc = json.loads(out)
    (p,) = doc["nodes"]
    assert p["outcome"] == "rolled back" and p["left"]["assignment"] == "previous", p
    assert p["left"]["boot_override"] == "cleared" and p["left"]["install_pending"] is False, p
    assert doc["summary"].startswith("cancelled") and doc["summary"].endswith("1 rolled back"), doc["summary"]
    assert "rolled back" in err.splitlines()[-1]
    assert await assigned(ctx, node) == OLD
    assert lab.machine(node)["boot_override"] == "none"
    entries = cli_journal(env)
    mine = [e for e in entries if e["node"] == node and e["result"] == "cancelled"]
    assert mine and "rolled back" in mine[-1]["detail"], mine
    if how == "hangup":
        assert "terminal hung up" in mine[-1]["error"]
        assert entries[-1]["error"] == "cancelled: terminal hung up"
    await settled_on(ctx, lab, node, OLD)
    status = cli_fork.run(["--site", lab.site_file, "status", node, "--json"],
                            capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    (record,) = json.loads(status.stdout)
    assert record["image"]["running"] == OLD, record
