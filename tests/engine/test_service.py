"""The site service (console/service): one poller for every client, actions run in the
service under its roles, the journal saying who, runs that outlive their client, stop.

Everything runs against this module's lab over loopback; the service listens on a unix
socket in the private runtime directory; clients are ServiceClient / ServicePollSource.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat

import pytest

from console.live.fleet import Fleet
from console.live.poller import PollConfig
from console.ops.journal import read_entries
from console.secrets import Secrets
from console.service import protocol as p
from console.service.client import ServiceClient, ServicePollSource, ServiceRefused, probe, service_for
from console.service.identity import Identity
from console.service.server import ServiceError, SiteService
from console.site import SiteContext
from tests.support import wait_until

SITE = """\
site: svctest
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
  - {name: flatcar, version: 4152.2.0, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: svc-n[01-04]
        mac: "52:54:00:91:00:[01-04]"
        host: 127.2.91.[1-4]
        bmc: {address: "127.1.91.[1-4]"}
lab:
  running: {}
"""

#: power every second, nothing else on a schedule: requests per sweep are easy to count
FAST = PollConfig(power_interval=1.0, sensors_interval=600, events_interval=600, identity_interval=600,
                  image_interval=600, switch_interval=600, timeout=10.0, min_interval=0.0)


@pytest.fixture
async def service(site_lab, tmp_path):
    site = site_lab.effective_site()
    svc = SiteService(SiteContext(site, Secrets(lab=site_lab.secrets)), poll_config=FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop("test over")


async def client(svc: SiteService, *, token: str | None = None, kind: str = "cli") -> ServiceClient:
    c = ServiceClient(svc.socket_path, token=token, client=kind)
    await c.connect()
    return c


def as_role(svc: SiteService, name: str, role: str) -> str:
    return svc.tokens.issue(Identity(name, role, "ssh"))  # type: ignore[arg-type]


async def test_socket_private_welcome_and_second_service_refused(service, site_lab) -> None:
    st = os.lstat(service.socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert service.socket_path.parent == p.socket_path("svctest", environ={}).parent
    welcome = await asyncio.to_thread(probe, service.socket_path)
    assert welcome is not None and welcome.pid == os.getpid() and welcome.identity.role == "admin"
    assert welcome.identity.via == "local"
    # a second service for the same site is refused while the first lives
    other = SiteService(service.ctx, socket_path=service.socket_path, poll_config=FAST)
    with pytest.raises(ServiceError, match="already runs"):
        await other.start()
    found = await asyncio.to_thread(service_for, "svctest", environ={})
    assert found is not None and found[2].site == "svctest"


async def test_stale_socket_removed(site_lab, tmp_path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    assert probe(path) is None
    svc = SiteService(SiteContext(site_lab.effective_site(), Secrets(lab=site_lab.secrets)), socket_path=path,
                      poll_config=FAST)
    await svc.start()
    try:
        assert (await asyncio.to_thread(probe, path)) is not None
    finally:
        await svc.stop("test over")
    assert not path.exists()


async def test_other_version_refused_naming_both(service) -> None:
    reader, writer = await asyncio.open_unix_connection(str(service.socket_path))
    writer.write(json.dumps({"type": "hello", "version": 99, "client": "future"}).encode() + b"\n")
    line = await asyncio.wait_for(reader.readline(), 5)
    msg = p.decode(line)
    assert isinstance(msg, p.Refused)
    assert "version 99" in msg.reason and f"version {p.PROTOCOL_VERSION}" in msg.reason
    assert await reader.read() == b""  # closed
    writer.close()
    # a bad token is refused too
    with pytest.raises(ServiceRefused, match="token"):
        await client(service, token="not-a-token")


async def requests_per_sweep(service: SiteService, lab, node: str, sweeps: int = 3) -> float:
    """Requests ``node``'s BMC saw per power sweep of the service, over ``sweeps`` sweeps."""
    await wait_until(lambda: service.fleet.nodes[node].power_at is not None, timeout=30)
    first = service.fleet.nodes[node].power_at or 0.0
    await wait_until(lambda: (service.fleet.nodes[node].power_at or 0) > first, timeout=30, what="a sweep")
    start, before = service.fleet.nodes[node].power_at or 0.0, lab.redfish_stats(node)["requests"]
    await wait_until(lambda: (service.fleet.nodes[node].power_at or 0) >= start + sweeps * FAST.power_interval * 0.9,
                     timeout=30, what=f"{sweeps} more sweeps")
    seen = (service.fleet.nodes[node].power_at or 0.0) - start
    return (lab.redfish_stats(node)["requests"] - before) / max(1.0, seen / FAST.power_interval)


async def test_two_clients_share_one_poller(service, site_lab) -> None:
    site = site_lab.effective_site()
    node = "svc-n01"
    alone = await requests_per_sweep(service, site_lab, node)
    fleets = [Fleet(site), Fleet(site)]
    sources = [ServicePollSource(site, f, None, FAST, path=service.socket_path) for f in fleets]
    for s in sources:
        s.start()
    try:
        for f in fleets:
            await wait_until(lambda f=f: all(st.last_success for st in f.nodes.values()), timeout=60,
                             what="states from the service")
        assert all(s.service_pid == os.getpid() for s in sources)
        # with two clients watching, the BMC sees what the service's one poller asks
        watched = await requests_per_sweep(service, site_lab, node)
        assert watched <= alone * 1.5 + 1, (alone, watched)
        assert site_lab.redfish_stats(node)["sessions"] == 1  # one BMC session, not one per client
        assert fleets[0].nodes[node].power == fleets[1].nodes[node].power == "on"
        # a poll asked for now is forwarded; the state is in the Fleet on return
        polled = fleets[0].nodes[node].power_at or 0.0
        await sources[0].poll_node_now(node, ("power",))
        assert (fleets[0].nodes[node].power_at or 0.0) > polled
        assert len(service.sessions()) == 2
    finally:
        for s in sources:
            await s.aclose()
    await wait_until(lambda: not service.sessions(), timeout=10, what="sessions gone")


async def test_viewer_refused_by_the_service(service) -> None:
    viewer = await client(service, token=as_role(service, "bob", "viewer"))
    operator = await client(service, token=as_role(service, "carol", "operator"))
    try:
        assert viewer.welcome is not None and viewer.welcome.identity.name == "bob"
        with pytest.raises(ServiceRefused, match="bob is viewer; power needs the operator role"):
            await viewer.request(p.PlanAction(id=0, kind="power", names=["svc-n02"], power_action="off"))
        with pytest.raises(ServiceRefused, match="reimage needs the admin role"):
            await operator.request(p.PlanAction(id=0, kind="reimage", names=["svc-n02"], image="flatcar@4152.2.0"))
        # an operator's plan cannot be run by someone else
        plan = await operator.request(p.PlanAction(id=0, kind="power", names=["svc-n02"], power_action="on"))
        with pytest.raises(ServiceRefused):
            await viewer.request(p.RunPlan(id=0, plan_id=plan["plan"]["id"]))
        who = await viewer.request(p.Who(id=0))
        assert {(x["name"], x["role"]) for x in who["sessions"]} == {("bob", "viewer"), ("carol", "operator")}
    finally:
        await viewer.close()
        await operator.close()


async def test_power_run_journals_the_operator(service, site_lab) -> None:
    c = await client(service, token=as_role(service, "carol", "operator"), kind="cli")
    ended: list[p.JobEnded] = []
    progress: list[p.Progress] = []
    c.on_job_ended = ended.append
    c.on_progress = progress.append
    try:
        plan = await c.request(p.PlanAction(id=0, kind="power", names=["svc-n03"], power_action="cycle",
                                            ticket="INC-19"))
        pid = plan["plan"]["id"]
        assert "svc-n03" in plan["text"]
        started = await c.request(p.RunPlan(id=0, plan_id=pid, options={"poll_interval": 0.1}))
        assert started["operator"] == "carol"
        await wait_until(lambda: ended, timeout=60, what="the run's end")
        assert ended[0].ok, ended[0].summary
        assert any(x.node["node"] == "svc-n03" for x in progress)
        entries = [e for e in read_entries("svctest", limit=200) if e.get("plan") == pid]
        assert entries and {e["operator"] for e in entries} == {"carol"}
        assert all(e["ticket"] == "INC-19" for e in entries)
        jobs = await c.request(p.Jobs(id=0))
        assert any(j["plan_id"] == pid and j["operator"] == "carol" and j["ended"] for j in jobs["jobs"])
    finally:
        await c.close()


async def test_reimage_outlives_its_client(service, site_lab) -> None:
    token = as_role(service, "alice", "admin")
    first = await client(service, token=token, kind="tui")
    plan = await first.request(p.PlanAction(id=0, kind="reimage", names=["svc-n04"], image="flatcar@4152.2.0"))
    pid = plan["plan"]["id"]
    assert plan["plan"]["nodes"][0]["skip"] is None, plan["text"]
    await first.request(p.RunPlan(id=0, plan_id=pid, options={"poll_interval": 0.1}))
    await wait_until(lambda: any(s.identity.name == "alice" and s.jobs == [pid] and s.locks == ["svc-n04"]
                                 for s in service.sessions()), timeout=10, what="the job and its lock held")
    await first.close()  # the operator's connection drops mid-run
    await wait_until(lambda: not service.sessions(), timeout=10)
    again = await client(service, token=token, kind="tui")
    try:
        jobs = (await again.request(p.Jobs(id=0)))["jobs"]
        assert [j["plan_id"] for j in jobs if j["operator"] == "alice"] == [pid]
        ended: list[p.JobEnded] = []
        again.on_job_ended = ended.append
        follow = await again.request(p.Follow(id=0, plan_id=pid))
        if not follow["ended"]:
            await wait_until(lambda: ended, timeout=120, what="the reimage's end")
            assert ended[0].ok, ended[0].summary
        else:
            assert follow["ok"], follow["summary"]
        entries = [e for e in read_entries("svctest", limit=500) if e.get("plan") == pid]
        assert {e["operator"] for e in entries} == {"alice"}
        assert any(e["step"] == "summary" and e["result"] == "ok" for e in entries)
    finally:
        await again.close()


async def test_stop_tells_every_client(site_lab, tmp_path) -> None:
    svc = SiteService(SiteContext(site_lab.effective_site(), Secrets(lab=site_lab.secrets)),
                      socket_path=tmp_path / "s.sock", poll_config=FAST)
    await svc.start()
    clients = [await client(svc, token=as_role(svc, n, "viewer")) for n in ("x", "y")]
    await svc.stop("maintenance window")
    for c in clients:
        await wait_until(lambda c=c: c.gone is not None, timeout=10)
        assert "maintenance window" in (c.gone or "")
        await c.close()
    assert not (tmp_path / "s.sock").exists()
    assert len(svc.tokens) == 0
    await wait_until(lambda: site_lab.sessions()["redfish"] == 0, timeout=30, what="BMC sessions logged out")


async def test_the_console_shows_the_service_state(service, site_lab) -> None:
    import functools

    from screens.app import make_app

    site = site_lab.effective_site()
    app = make_app(SiteContext(site, Secrets()), poll=True, mode=f"via service (pid {service.pid})",
                   operator="alice", poller=functools.partial(ServicePollSource, path=service.socket_path))
    async with app.run_test(size=(120, 30)):
        await wait_until(lambda: all(st.last_success for st in app.fleet.nodes.values()), timeout=60,
                         what="the service's states in the console")
        assert f"via service (pid {service.pid})" in app.sub_title and app.operator == "alice"
        assert [s.client for s in service.sessions()] == ["tui"]
    await wait_until(lambda: not service.sessions(), timeout=10, what="the console gone")
