"""Reimage end to end against a private demo lab (ipxe provisioner, IPMI and Redfish BMCs)."""

from __future__ import annotations

import asyncio

import pytest

from console import site as sites
from console.drivers.ssh import read_image
from console.errors import ActionError
from console.ops.reimage import PHASES, PhaseTimeouts, reimage_steps
from console.provision import open_provisioner
from console.secrets import Secrets
from tests.support import heal_when_hung, redfish_requests, reimage_phases


#: generous per phase (a loaded CI box), fast polling; the lab runs at 1/50 of real time
@pytest.fixture(scope="module")
def lab(private_runtime_dir):
    """A demo lab of our own: these tests change what machines run.

    One rack per worker process: machines outside worker 0 must still find its boot server.
    """
    from console.lab.lab import Lab

    with Lab(sites.load("demo"), ephemeral=True, time_scale=0.02, nodes_per_worker=30) as lab:
        assert len(lab.endpoints["workers"]) == 3
        yield lab


@pytest.fixture
def ctx(lab):
    return lab.effective_site(), Secrets(lab=lab.secrets)


def test_steps_name_what_will_happen(ctx):
    site, _ = ctx
    steps = reimage_steps(site.node("dal1-r02-n01"), site.image("flatcar@4081.2.1"), site)
    assert [s.name for s in steps] == list(PHASES[:-1])  # the plan's steps are the phases the operator sees
    assert "flatcar@4081.2.1" in steps[0].description and "52:54:00:02:00:01" in steps[0].description
    assert "ipxe" in steps[0].description and "PXE once" in steps[0].description


async def test_demo_five_nodes_reimaged_to_flatcar_4081(lab, ctx):
    site, secrets = ctx
    names = [f"dal1-r02-n0{i}" for i in range(1, 6)]
    assert {lab.machine(n)["image"] for n in names} == {"flatcar@3975.2.2"}  # the demo's drift
    results = await asyncio.gather(*(reimage_phases(site, secrets, n, "flatcar@4081.2.1") for n in names))
    for name, phases in zip(names, results):
        assert [p for p, _ in phases] == list(PHASES), name
        assert "was nothing" in phases[0][1] and "PXE once" in phases[0][1]
        assert phases[1][1] == "power cycled"
        assert "boot seen by the provisioner" in phases[2][1]
        state = lab.machine(name)
        assert state["image"] == "flatcar@4081.2.1" and state["phase"] == "running"
        assert state["last_boot_source"] == "pxe" and state["boot_override"] == "none"  # once: consumed
        assert state["pxe_fetches"][-1][2] == 200
        running = await read_image(site.node(name), site.ssh, secrets)
        assert running.ref == "flatcar@4081.2.1"
    serial = lab.call(names[0], {"cmd": "serial", "node": names[0], "tail": 8192})["output"]
    assert "fleet-installer: writing flatcar 4081.2.1 to /dev/sda" in serial


async def test_ipmi_node_and_a_powered_off_node(lab, ctx):
    site, secrets = ctx
    phases = await reimage_phases(site, secrets, "dal1-r01-n03", "flatcar@4152.2.0")  # IPMI BMC
    assert [p for p, _ in phases] == list(PHASES)
    assert lab.machine("dal1-r01-n03")["image"] == "flatcar@4152.2.0"
    assert lab.machine("dal1-r01-n13")["powered"] is False  # off in the demo's lab section
    phases = await reimage_phases(site, secrets, "dal1-r01-n13", "flatcar@4152.2.0")
    assert phases[1] == ("rebooting", "powered on (was off)")
    assert lab.machine("dal1-r01-n13")["image"] == "flatcar@4152.2.0"


async def test_rollback_restores_the_previous_assignment(lab, ctx):
    site, secrets = ctx
    node = site.node("dal1-r02-n06")
    await reimage_phases(site, secrets, "dal1-r02-n06", "flatcar@4152.2.0")
    await reimage_phases(site, secrets, "dal1-r02-n06", "flatcar@4081.2.1")
    prov = open_provisioner(site, secrets)
    try:
        assert (await prov.assignment(node)).image == "flatcar@4081.2.1"
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        assert (await prov.rollback(node)).image == "flatcar@4152.2.0"
        assert (await prov.assignment(node)).image == "flatcar@4152.2.0"
    finally:
        await prov.close()


async def test_a_node_that_never_comes_back_fails_naming_the_phase(lab, ctx):
    site, secrets = ctx
    # the inventory's host address for the node is wrong: its OS never answers there
    node = site.node("dal1-r02-n07").model_copy(update={"host": "127.2.2.250"})
    gone = site.model_copy(update={"nodes": tuple(node if n.name == node.name else n for n in site.nodes)})
    short = PhaseTimeouts(assigned=30, rebooting=30, installing=1.5, verifying=30, poll=0.05, ssh_timeout=1)
    with pytest.raises(ActionError) as err:
        await reimage_phases(gone, secrets, "dal1-r02-n07", "flatcar@4081.2.1", short)
    assert str(err.value).startswith("installing: timed out after 1.5 s (OS not answering")


async def test_a_boot_script_the_server_does_not_have_fails_in_rebooting(lab, ctx, tmp_path):
    site, secrets = ctx
    # the console writes into a directory the boot server does not serve: the node gets 404
    wrong = site.model_copy(update={"provisioner": site.provisioner.model_copy(update={"root": str(tmp_path)})})
    with pytest.raises(ActionError, match=r"^rebooting: the node's boot fetch got HTTP 404"):
        await reimage_phases(wrong, secrets, "dal1-r02-n10", "flatcar@4081.2.1")
    assert lab.machine("dal1-r02-n10")["image"] == "flatcar@4081.2.1"  # untouched: booted its disk


async def test_a_hung_bmc_fails_in_assign(lab, ctx):
    site, secrets = ctx
    short = PhaseTimeouts(assigned=1.0, rebooting=30, installing=30, verifying=30, poll=0.05)
    before = redfish_requests(lab, "dal1-r02-n11")
    lab.fault("redfish", "dal1-r02-n11", "hang")
    # the first request hangs for good; the rollback after the timeout is answered
    healer = asyncio.create_task(heal_when_hung(lab, "dal1-r02-n11", before))
    try:
        with pytest.raises(ActionError, match=r"^assign: timed out after 1 s") as raised:
            await reimage_phases(site, secrets, "dal1-r02-n11", "flatcar@4152.2.0", short)
        await healer
        assert "rolled back" in str(raised.value)  # the BMC answered the rollback
    finally:
        healer.cancel()
        lab.fault("redfish", "dal1-r02-n11", "")
    assert lab.machine("dal1-r02-n11")["boots"] == 1  # never rebooted


async def test_a_node_without_host_address_is_done_but_not_verified(lab, ctx):
    site, secrets = ctx
    node = site.node("dal1-r02-n12").model_copy(update={"host": None})
    blind = site.model_copy(update={"nodes": tuple(node if n.name == node.name else n for n in site.nodes)})
    assert "not verified" in reimage_steps(node, site.image("flatcar@4152.2.0"), blind)[-1].description
    phases = await reimage_phases(blind, secrets, "dal1-r02-n12", "flatcar@4152.2.0")
    assert [p for p, _ in phases] == ["assigned", "rebooting", "installing", "done"]
    assert "not verified" in phases[-1][1]
