"""The console as a client of the site service: two operators' apps on one service.

A real :class:`~console.service.server.SiteService` over this module's lab (loopback),
and consoles made as ``fleet-console --site S`` makes them when a service runs (a
:class:`~console.service.client.ServicePollSource` as the poller), each with a session
token the service issued for an operator and role, as the SSH front door does.  Keys
are pressed with Textual's pilot: both operators see the same live fleet, the viewer
cannot power anything off (the service's words say why), a reimage outlives its
operator's console, and the journal says who did what.
"""

from __future__ import annotations

import functools

import pytest
from textual.widgets import DataTable

from console.live.poller import PollConfig
from console.ops.journal import read_entries
from console.ops.options import RunOptions
from console.secrets import Secrets
from console.service.client import ServicePollSource
from console.service.identity import Identity
from console.service.server import SiteService
from console.site import SiteContext
from screens.actions import ConfirmScreen, ImageChooser, PowerMenu
from screens.app import make_app
from screens.jobs import JobsScreen
from screens.progress import ServiceProgress
from screens.summary import FleetSummary
from screens.table import FleetTable
from screens.who import WhoScreen
from tests.support import wait_until

SITE = """\
site: svctui
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
      - name: tui-n[01-04]
        mac: "52:54:00:92:00:[01-04]"
        host: 127.2.92.[1-4]
        bmc: {address: "127.1.92.[1-4]"}
lab:
  running: {}
"""

FAST = PollConfig(power_interval=1.0, sensors_interval=600, events_interval=600, identity_interval=600,
                  image_interval=600, switch_interval=600, timeout=10.0, min_interval=0.0)
SIZE = (120, 30)


@pytest.fixture
async def service(site_lab):
    site = site_lab.effective_site()
    svc = SiteService(SiteContext(site, Secrets(lab=site_lab.secrets)), poll_config=FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop("test over")


def console(svc: SiteService, site_lab, name: str, role: str, **kw):
    """A console of operator ``name`` (``role``) on ``svc``, as the SSH front door starts one
    (a viewer's runs read-only, as FLEET_CONSOLE_READ_ONLY says for them); no secrets of its own."""
    token = svc.tokens.issue(Identity(name, role, "ssh"))  # type: ignore[arg-type]
    app = make_app(SiteContext(site_lab.effective_site(), Secrets()), poll=True, read_only=role == "viewer",
                   mode=f"via service (pid {svc.pid})", operator=name,
                   poller=functools.partial(ServicePollSource, path=svc.socket_path, token=token), **kw)
    app.run_options = RunOptions(poll_interval=0.1, power_timeout=60.0)
    return app


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def put_cursor(app, name: str) -> None:
    table = app.screen.query_one(FleetTable)
    table.move_cursor(row=table.get_row_index(name))


async def live(app) -> None:
    await wait_until(lambda: app.fleet.nodes and all(st.last_success for st in app.fleet.nodes.values()),
                     timeout=60, what="the service's states in the console")


async def test_two_operators_see_one_fleet_and_the_viewer_is_refused(service, site_lab) -> None:
    node = "tui-n01"
    alice = console(service, site_lab, "alice", "admin")
    bob = console(service, site_lab, "bob", "viewer")
    async with alice.run_test(size=(160, 40)) as pa, bob.run_test(size=(160, 40)) as pb:
        await live(alice)
        await live(bob)
        powers = [{n: st.power for n, st in app.fleet.nodes.items()} for app in (alice, bob)]
        assert powers[0] == powers[1]
        assert alice.service is not None and bob.service is not None
        # who else is connected: the summary counts both sessions, in both consoles
        for app in (alice, bob):
            await wait_until(lambda app=app: app.who is not None and len(app.who) == 2, timeout=15,
                             what="two sessions")
            await wait_until(lambda app=app: "☺ 2 connected" in app.sub_title, timeout=10, what="the header")
            summary = app.screen.query_one(FleetSummary)
            await wait_until(lambda s=summary: "☺ 2 connected" in s._shown.plain, timeout=10,
                             what=f"the count: {summary._shown.plain!r}")
        # the viewer's power key: the service says no, in its words (not "read-only mode")
        put_cursor(bob, node)
        await pb.press("p")
        await wait_until(lambda: any("bob is viewer; power needs the operator role" in m for m in notes(bob)),
                         timeout=15, what="the service's refusal")
        assert not isinstance(bob.screen, PowerMenu)
        assert not any("read-only" in m for m in notes(bob))
        assert not service._plans  # nothing was planned for bob
        assert site_lab.machine(node)["powered"]
        # W: every session, its role, how it came, what it holds
        await pa.press("W")
        assert isinstance(alice.screen, WhoScreen)
        table = alice.screen.query_one(DataTable)
        await wait_until(lambda: table.row_count == 2, timeout=10, what="the who rows")
        rows = [[c.plain for c in table.get_row_at(i)] for i in range(2)]
        assert rows[0][0] == "alice (you)" and rows[0][1] == "admin" and rows[0][2] == "ssh tui"
        assert rows[1][:3] == ["bob", "viewer", "ssh tui"] and rows[1][4] == "nothing"
        await pa.press("escape")
    await wait_until(lambda: not service.sessions(), timeout=10, what="both consoles gone")


async def test_power_cycle_runs_in_the_service_and_the_journal_says_who(service, site_lab) -> None:
    node = "tui-n02"
    boots = site_lab.machine(node)["boots"]
    carol = console(service, site_lab, "carol", "operator")
    bob = console(service, site_lab, "bob", "viewer")
    seen: list = []
    record = bob.fleet.set_activity

    def recording(name, activity) -> None:  # what bob's rows are told while carol's run goes
        if name == node and activity is not None:
            seen.append(activity)
        record(name, activity)

    bob.fleet.set_activity = recording  # type: ignore[method-assign]
    async with carol.run_test(size=SIZE) as pc, bob.run_test(size=SIZE) as pb:
        await live(carol)
        await live(bob)
        put_cursor(carol, node)
        await pc.press("p")
        assert isinstance(carol.screen, PowerMenu)
        await pc.press("c")
        await wait_until(lambda: isinstance(carol.screen, ConfirmScreen), what="the plan dialog")
        dialog = carol.screen
        await wait_until(lambda: dialog.plan is not None or dialog.error is not None, timeout=30, what="the plan")
        assert dialog.error is None, dialog.error
        assert dialog.plan.id in service._plans  # planned in the service, not here
        dialog.query_one("#ticket").value = "INC-19"
        await pc.press("y")
        await wait_until(lambda: isinstance(carol.screen, ServiceProgress), what="the progress screen")
        progress = carol.screen
        plan_id = progress.plan.id
        await wait_until(lambda: progress.finished, timeout=90, what="the run's end")
        assert progress.result is not None and progress.result.ok, progress.error
        assert progress.states[node].phase == "done"
        # bob saw carol's run on the row as her lock, and lists it with J
        assert any(a.kind == "lock" and a.owner == "carol" and a.action == "power cycle" for a in seen), seen
        await pb.press("J")
        assert isinstance(bob.screen, JobsScreen)
        table = bob.screen.query_one(DataTable)
        await wait_until(lambda: plan_id in [str(k.value) for k in table.rows], timeout=10, what="the job row")
        row = [c.plain for c in table.get_row(plan_id)]
        assert row[1] == "ended ok" and row[3] == "power cycle" and row[4] == "carol" and row[6] == "INC-19"
    assert site_lab.machine(node)["boots"] == boots + 1
    entries = [e for e in read_entries("svctui", limit=500) if e.get("plan") == plan_id]
    assert entries and {e["operator"] for e in entries} == {"carol"}
    assert all(e["ticket"] == "INC-19" for e in entries)


async def test_reimage_outlives_its_console_and_is_followed_again(service, site_lab) -> None:
    node = "tui-n03"
    first = console(service, site_lab, "alice", "admin")
    bob = console(service, site_lab, "bob", "viewer")
    async with bob.run_test(size=SIZE) as pb:
        await live(bob)
        async with first.run_test(size=SIZE) as pa:
            await live(first)
            put_cursor(first, node)
            await pa.press("i")
            assert isinstance(first.screen, ImageChooser)
            await pa.press("down", "enter")  # flatcar@4152.2.0 (its desired image is lit first)
            await wait_until(lambda: isinstance(first.screen, ConfirmScreen), what="the plan dialog")
            dialog = first.screen
            await wait_until(lambda: dialog.plan is not None or dialog.error is not None, timeout=30)
            assert dialog.error is None and dialog.plan.action == "reimage flatcar@4152.2.0", dialog.error
            await pa.press("y")
            await wait_until(lambda: isinstance(first.screen, ServiceProgress), what="the progress screen")
            plan_id = first.screen.plan.id
            await wait_until(lambda: any(s.identity.name == "alice" and s.jobs == [plan_id] and s.locks == [node]
                                         for s in service.sessions()), timeout=15, what="the run and its lock")
            # the viewer may not cancel alice's run: the service says so
            await pb.press("J")
            jobs = bob.screen
            assert isinstance(jobs, JobsScreen)
            table = jobs.query_one(DataTable)
            await wait_until(lambda: plan_id in [str(k.value) for k in table.rows], timeout=10)
            table.move_cursor(row=table.get_row_index(plan_id))
            await pb.press("c")
            await wait_until(lambda: any("only they or an admin may cancel it" in m for m in notes(bob)), timeout=10,
                             what="the service's refusal of bob's cancel")
        # alice's console is gone (her SSH dropped): the reimage goes on in the service
        await wait_until(lambda: all(s.identity.name != "alice" for s in service.sessions()), timeout=10)
        assert any(j["plan_id"] == plan_id for j in service.jobs())
    again = console(service, site_lab, "alice", "admin")
    async with again.run_test(size=SIZE) as pa:
        await live(again)
        await pa.press("J")
        table = again.screen.query_one(DataTable)
        await wait_until(lambda: plan_id in [str(k.value) for k in table.rows], timeout=10, what="her run listed")
        table.move_cursor(row=table.get_row_index(plan_id))
        await pa.press("enter")
        await wait_until(lambda: isinstance(again.screen, ServiceProgress), timeout=10, what="following the run")
        progress = again.screen
        assert progress.plan.id == plan_id and progress.operator == "alice"
        await wait_until(lambda: progress.finished, timeout=180, what="the reimage's end")
        assert progress.result is not None and progress.result.ok, (progress.error, progress.states)
        assert progress.states[node].phase == "done"
    entries = [e for e in read_entries("svctui", limit=1000) if e.get("plan") == plan_id]
    assert {e["operator"] for e in entries} == {"alice"}
    assert any(e["step"] == "summary" and e["result"] == "ok" for e in entries)


def drop_connections(svc: SiteService, name: str) -> list[str]:
    """Break every connection of operator ``name`` to ``svc`` as a network would: no Bye, the
    socket just ends (the client's reader sees it end); returns the sessions broken."""
    broken = [s for s in svc._sessions.values() if s.identity.name == name]
    for s in broken:
        transport = s.writer.transport
        assert transport is not None
        transport.abort()
    return [s.id for s in broken]


async def test_a_dropped_connection_follows_the_run_again_on_the_same_screen(service, site_lab) -> None:
    node = "tui-n04"
    alice = console(service, site_lab, "alice", "admin")
    alice.POLLER_RESTART_S = 0.5  # how soon the console connects again (the default is 5 s)
    async with alice.run_test(size=SIZE) as pa:
        await live(alice)
        put_cursor(alice, node)
        await pa.press("i")
        assert isinstance(alice.screen, ImageChooser)
        await pa.press("down", "enter")  # flatcar@4152.2.0
        await wait_until(lambda: isinstance(alice.screen, ConfirmScreen), what="the plan dialog")
        dialog = alice.screen
        await wait_until(lambda: dialog.plan is not None or dialog.error is not None, timeout=30)
        assert dialog.error is None, dialog.error
        await pa.press("y")
        await wait_until(lambda: isinstance(alice.screen, ServiceProgress), what="the progress screen")
        progress = alice.screen
        plan_id = progress.plan.id
        await wait_until(lambda: any(s.identity.name == "alice" and s.jobs == [plan_id] for s in service.sessions()),
                         timeout=15, what="the run in the service")
        first = alice.poller
        assert progress._service is first
        # the connection breaks mid-reimage: the run goes on in the service, the screen says so
        dropped = drop_connections(service, "alice")
        assert dropped
        await wait_until(lambda: progress.lost is not None or alice.poller is not first, timeout=15,
                         what="the console to notice")
        # ... and once connected again, the same screen follows the run: where it stands, then live
        await wait_until(lambda: alice.poller is not first and progress._service is alice.poller
                         and progress.lost is None, timeout=30, what="the run followed again")
        assert any(s.identity.name == "alice" and s.id not in dropped for s in service.sessions())
        assert alice.screen is progress
        await wait_until(lambda: progress.finished, timeout=180, what="the reimage's end on the same screen")
        assert progress.result is not None and progress.result.ok, (progress.error, progress.states)
        assert progress.states[node].phase == "done"
        await wait_until(lambda: "finished" in str(progress.query_one("#counts").render()), timeout=10,
                         what="the end shown")
        assert progress._reconnected not in alice.on_new_poller  # nothing left hooked once it ended
    assert site_lab.machine(node)["image"] == "flatcar@4152.2.0"
