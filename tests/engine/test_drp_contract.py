"""The DRP contract: DRP's own client (drppy-client, generated from DRP's swagger) drives the
lab's stand-in, and every call the console's drp provisioner makes is one that API defines
(method, path, query words, the machine fields its JSON Patches touch)."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from console.errors import ActionError, AuthFailed
from console.lab.drp import WORKFLOW_BOOTENV_REFUSED, DrpLab
from console.provision.drp import DrpProvisioner
from console.secrets import Secret
from inventory.model import Bmc, Image, Node
from tests.support import wait_until

drppy = pytest.importorskip("drppy_client")
from drppy_client.api import jobs_api, machines_api, params_api, profiles_api  # noqa: E402
from drppy_client.api_client import ApiClient  # noqa: E402
from drppy_client.configuration import Configuration  # noqa: E402
from drppy_client.models.machine import Machine  # noqa: E402
from drppy_client.models.profile import Profile  # noqa: E402
from drppy_client.rest import ApiException  # noqa: E402

TOKEN = "drp-contract-token"
MACS = [f"52:54:00:0e:00:{i:02x}" for i in range(1, 8)]
IMAGE = Image(name="flatcar", version="4152.2.0", kernel="http://127.0.0.1:9/images/flatcar/4152.2.0/vmlinuz",
              initrd="http://127.0.0.1:9/images/flatcar/4152.2.0/initrd")

PARAM = {"name": IMAGE.name, "version": IMAGE.version, "kernel": IMAGE.kernel, "initrd": IMAGE.initrd,
         "cmdline": "", "sha256": None, "state": "pending"}


def node(i: int) -> Node:
    return Node(name=f"c{i:02d}", rack="r01", mac=MACS[i - 1],
                bmc=Bmc(protocol="ipmi", address="127.0.0.1", username="admin", password="env:PW"))


@pytest.fixture
async def drp() -> AsyncIterator[tuple[DrpLab, str]]:
    lab = DrpLab([{"name": f"c{i:02d}", "mac": mac, "address": f"127.3.0.{i}"} for i, mac in enumerate(MACS, 1)],
                 TOKEN, task_seconds=0.01)
    port = await lab.start()
    try:
        yield lab, f"http://127.0.0.1:{port}"
    finally:
        await lab.stop()


def client(url: str, token: str = TOKEN) -> ApiClient:
    cfg = Configuration()
    cfg.host = f"{url}/api/v3"
    cfg.api_key["Authorization"] = token
    cfg.api_key_prefix["Authorization"] = "Bearer"
    return ApiClient(cfg)


def drp_error(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert set(body) == {"Model", "Key", "Type", "Messages", "Code"} and body["Code"] == exc.status
    return body


async def test_drppy_client_finds_pages_and_aggregates(drp):
    lab, url = drp
    api = machines_api.MachinesApi(client(url))
    (m,) = await asyncio.to_thread(api.list_machines, hardware_addrs=f"Eq({MACS[2]})", slim="Params,Meta", limit=2)
    assert isinstance(m, Machine) and m.name == "c03" and m.hardware_addrs == [MACS[2]]
    assert m.workflow == "fleet-image-deploy" and m.workflow_complete is True and m.boot_env == "local"
    page = await asyncio.to_thread(api.filter, "Name", "Re", "^c0[1-5]$", "sort", "Name", "limit", "2", "offset", "2")
    assert [x.name for x in page] == ["c03", "c04"]
    data, _, headers = await asyncio.to_thread(api.list_machines_with_http_info, name="In(c01,c02,c07)", limit=1)
    assert len(data) == 1 and headers["X-DRP-LIST-TOTAL-COUNT"] == "3"
    with pytest.raises(ApiException) as err:
        await asyncio.to_thread(api.filter, "Colour", "Eq", "blue")
    assert err.value.status == 406 and "not a valid index" in drp_error(err.value)["Messages"][0]

    profiles = profiles_api.ProfilesApi(api.api_client)
    await asyncio.to_thread(profiles.create_profile, Profile(name="rack-r01", params={"site/rack": "r01"}))
    await asyncio.to_thread(api.patch_machine, [{"op": "add", "path": "/Profiles", "value": ["rack-r01"]}], m.uuid)
    plain = await asyncio.to_thread(api.get_machine, m.uuid)
    full = await asyncio.to_thread(api.get_machine, m.uuid, aggregate=True)
    assert "site/rack" not in plain.params and full.params["site/rack"] == "r01"
    with pytest.raises(ApiException) as err:
        await asyncio.to_thread(api.patch_machine, [{"op": "add", "path": "/Profiles", "value": ["nope"]}], m.uuid)
    assert err.value.status == 422


async def test_drppy_client_meets_what_drp_refuses(drp):
    lab, url = drp
    api = machines_api.MachinesApi(client(url))
    (m,) = await asyncio.to_thread(api.list_machines, name="c01")
    with pytest.raises(ApiException) as err:  # a Workflow is set: BootEnv is the workflow's
        await asyncio.to_thread(api.patch_machine, [{"op": "replace", "path": "/BootEnv", "value": "sledgehammer"}],
                                m.uuid)
    body = drp_error(err.value)
    assert err.value.status == 422 and body["Type"] == "ValidationError"
    assert body["Messages"] == [WORKFLOW_BOOTENV_REFUSED] and body["Key"] == m.uuid
    with pytest.raises(ApiException) as err:
        await asyncio.to_thread(api.patch_machine, [{"op": "replace", "path": "/Workflow", "value": ""},
                                                    {"op": "replace", "path": "/BootEnv", "value": "no-such"}], m.uuid)
    assert err.value.status == 422 and drp_error(err.value)["Messages"] == ["Bootenv no-such does not exist"]
    with pytest.raises(ApiException) as err:
        await asyncio.to_thread(api.patch_machine, [{"op": "test", "path": "/BootEnv", "value": "other"},
                                                    {"op": "replace", "path": "/Workflow", "value": ""}], m.uuid)
    assert err.value.status == 409
    same = await asyncio.to_thread(api.get_machine, m.uuid)
    assert same.workflow == "fleet-image-deploy" and same.boot_env == "local"  # refused: nothing changed

    param = await asyncio.to_thread(params_api.ParamsApi(api.api_client).get_param, "fleet/image")
    assert param.schema["properties"]["state"]["enum"] == ["pending", "verified"]
    with pytest.raises(ApiException) as err:  # the content pack's schema is enforced
        await asyncio.to_thread(api.post_machine_param, {"name": "x"}, m.uuid, "fleet/image")
    assert err.value.status == 422 and "required" in drp_error(err.value)["Messages"][0]

    expired = lab.issue_token(-1)
    with pytest.raises(ApiException) as err:
        await asyncio.to_thread(machines_api.MachinesApi(client(url, expired)).list_machines)
    assert err.value.status == 403
    with pytest.raises(ApiException) as err:
        await asyncio.to_thread(machines_api.MachinesApi(client(url, "wrong")).list_machines)
    assert err.value.status == 401


async def test_drppy_client_sees_the_runner_make_jobs(drp):
    lab, url = drp
    api = machines_api.MachinesApi(client(url))
    (m,) = await asyncio.to_thread(api.list_machines, name="c02")
    await asyncio.to_thread(api.patch_machine, [
        {"op": "add", "path": "/Params/fleet~1image", "value": PARAM},
        {"op": "replace", "path": "/Workflow", "value": ""}], m.uuid)
    await asyncio.to_thread(api.patch_machine, [{"op": "replace", "path": "/Workflow",
                                                 "value": "fleet-image-deploy"}], m.uuid)
    got = await asyncio.to_thread(api.get_machine, m.uuid)
    assert (got.stage, got.boot_env, got.current_task, got.workflow_complete) == (
        "fleet-image-deploy", "sledgehammer", -1, False)
    assert got.tasks == ["stage:fleet-image-deploy", "bootenv:sledgehammer", "fleet-image-deploy",
                         "stage:fleet-complete", "bootenv:local"]
    async with httpx.AsyncClient() as http:  # the machine network-boots: sledgehammer starts the runner
        r = await http.get(f"{url}/{MACS[1]}.ipxe")
    assert "fleet.image=${image-name}@${image-version}" in r.text and "set image-version 4152.2.0" in r.text

    await wait_until(lambda: lab.machines[m.uuid]["WorkflowComplete"], what="the workflow completes")
    done = await asyncio.to_thread(api.get_machine, m.uuid)
    assert (done.stage, done.boot_env, done.job_state, done.job_exit_state) == (
        "fleet-complete", "local", "finished", "complete")
    (job,) = await asyncio.to_thread(jobs_api.JobsApi(api.api_client).list_jobs, machine=f"Eq({m.uuid})")
    assert (job.task, job.state, job.exit_state, job.stage, job.workflow) == (
        "fleet-image-deploy", "finished", "complete", "fleet-image-deploy", "fleet-image-deploy")
    assert done.current_job == job.uuid


# ------------------------------------------------------------------ the console's calls
def _operations() -> list[tuple[str, re.Pattern[str], set[str]]]:
    """(method, path pattern, query words) of every operation drppy-client defines."""
    ops = []
    for mod in (machines_api, jobs_api, params_api, profiles_api,
                __import__("drppy_client.api.boot_envs_api", fromlist=["x"]),
                __import__("drppy_client.api.workflows_api", fromlist=["x"])):
        src = inspect.getsource(mod)
        for fn in re.split(r"\n    def ", src):
            call = re.search(r"call_api\(\s*'([^']+)', '([A-Z]+)'", fn)
            if not call:
                continue
            pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(call.group(1)))
            pattern = re.sub(r"\[\^/\]\+$", ".+", pattern)  # a param key may hold '/'
            words = set(re.findall(r"query_params\.append\(\('([^']+)'", fn))
            ops.append((call.group(2), re.compile(f"^/api/v3{pattern}$"), words))
    return ops


async def test_every_console_call_is_in_drps_api(drp):
    lab, url = drp
    seen: list[tuple[str, str, set[str], Any]] = []

    async def record(request: httpx.Request) -> None:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, set(request.url.params.keys()), body))

    prov = DrpProvisioner(url, Secret(TOKEN), mode="auto")
    prov._http.event_hooks["request"].append(record)
    try:
        n = node(4)
        await prov.assign(n, IMAGE)  # workflow mode, restarting the machine's workflow
        assert (await prov.progress(n)).stage == "fleet-image-deploy"
        await prov.fetches(n)
        await prov.confirm(n)
        await prov.assign(n, IMAGE.model_copy(update={"version": "4081.2.1"}))
        await prov.rollback(n)
        await prov.assign(n, IMAGE)  # no workflow now: bootenv mode
        await prov.confirm(n)
        await prov.previous(n)
    finally:
        await prov.close()
    ops = _operations()
    fields = set(Machine.attribute_map.values())
    assert {m for m, *_ in seen} == {"GET", "PATCH"}
    for method, path, words, body in seen:
        match = [w for m, p, w in ops if m == method and p.match(path)]
        assert match, f"{method} {path} is not in DRP's API"
        assert any(words <= w for w in match), f"{method} {path}: query {words} not in {match}"
        if method == "PATCH" and path.startswith("/api/v3/machines/") and path.count("/") == 4:
            for op in body:  # a JSON Patch of the machine touches only fields DRP's Machine has
                assert op["op"] in ("test", "add", "replace", "remove")
                assert op["path"].split("/")[1] in fields, op


async def test_the_console_refuses_or_restores_never_half(drp):
    lab, url = drp
    prov = DrpProvisioner(url, Secret(TOKEN), workflow="no-such-workflow")
    n = node(5)
    try:
        before = await prov.machine(n)
        with pytest.raises(ActionError, match=r"has no Workflow no-such-workflow: load contrib/drp"):
            await prov.assign(n, IMAGE)
        prov._exists = lambda *a: asyncio.sleep(0)  # type: ignore[method-assign]  # as if it vanished meanwhile
        with pytest.raises(Exception, match=r"Workflow no-such-workflow does not exist \(HTTP 422\)"):
            await prov.assign(n, IMAGE)
        assert await prov.machine(n) == before  # refused whole: no fleet/previous, no fleet/image
    finally:
        await prov.close()
    bootenv = DrpProvisioner(url, Secret(TOKEN), mode="bootenv")
    try:
        with pytest.raises(ActionError, match=r"DRP refuses a BootEnv change while a Workflow is set"):
            await bootenv.assign(n, IMAGE)
        assert await bootenv.machine(n) == before
    finally:
        await bootenv.close()


async def test_lookup_filters_refreshes_and_refuses_ambiguity(drp):
    lab, url = drp
    prov = DrpProvisioner(url, Secret(TOKEN))
    n = node(6)
    try:
        first = (await prov.machine(n))["Uuid"]
        m = lab.machines.pop(first)  # DRP re-created the machine: a new Uuid
        m["Uuid"] = "6f1c7a9e-0000-4000-8000-000000000006"
        lab.machines[m["Uuid"]] = m
        assert (await prov.machine(n))["Uuid"] == m["Uuid"]
        twin = {**lab.machines[next(iter(lab.machines))], "Uuid": "6f1c7a9e-0000-4000-8000-000000000099",
                "Name": "twin", "HardwareAddrs": [MACS[6]]}
        lab.machines[twin["Uuid"]] = twin
        with pytest.raises(ActionError, match=r"more than one machine with MAC 52:54:00:0e:00:07 \('c07', 'twin'\)"):
            await prov.machine(node(7))
    finally:
        await prov.close()
    expired = DrpProvisioner(url, Secret(lab.issue_token(-1)))
    try:
        with pytest.raises(AuthFailed, match=r"expired, or not allowed this call \(HTTP 403\)"):
            await expired.machine(n)
    finally:
        await expired.close()
