"""The progress screen of a reimage shows each node's last console line (CONSOLE column).

Against a lab of our own (IPMI SOL nodes and a Redfish node without a console): the run
follows the nodes' consoles through the app's broker, the column and the steps box show
the last line as text, the boot lands in each node's console log, and the sessions the
run opened are closed when it ends, except one a console pane watches.
"""

from __future__ import annotations

import threading

import pytest
from textual.widgets import DataTable, Static

from console.ops.actions import plan_reimage
from console.ops.options import RunOptions
from console.secrets import Secrets
from console.serial.log import read_log
from console.site import SiteContext
from screens.app import make_app
from screens.progress import ProgressScreen
from tests.support import FAST_PHASES, wait_for, wait_until

SITE = """\
site: pcontest
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
  - {name: flatcar, version: 4152.2.0, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: pcon-n[01-04]
        u: "[1-4]"
        mac: "52:54:00:75:00:[01-04]"
        host: 127.2.75.[1-4]
        bmc: {address: "127.1.75.[1-4]"}
      - name: pcon-rf
        mac: "52:54:00:75:00:20"
        host: 127.2.75.20
        bmc: {protocol: redfish, scheme: http, address: 127.1.75.20}
lab: {}
"""


@pytest.fixture
def ctx(site_ctx) -> SiteContext:
    site, secrets = site_ctx
    return SiteContext(site, secrets)


@pytest.fixture(autouse=True)
def no_sessions_left(site_lab):
    yield
    wait_for(lambda: site_lab.sessions()["ipmi"] == 0, timeout=10, what="every IPMI session to be closed")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "sol-pump" or t.name.startswith("sol-io")],
             timeout=10, what="the SOL threads to end")


def cell(table: DataTable, row: str, column: str) -> str:
    value = table.get_cell(row, column)
    return getattr(value, "plain", str(value))


async def test_reimage_progress_shows_the_console(ctx, site_lab):
    nodes = ["pcon-n01", "pcon-n02", "pcon-rf"]
    # the planner reads the running image over SSH: give it the lab's secrets
    plan = await plan_reimage(SiteContext(ctx.site, Secrets(lab=site_lab.secrets)), nodes, "flatcar@4152.2.0")
    assert [n.node for n in plan.targets] == nodes
    app = make_app(ctx, poll=False)
    options = RunOptions(poll_interval=0.05, request_timeout=10.0, reimage_timeouts=FAST_PHASES)
    async with app.run_test(size=(120, 30)) as pilot:
        # a console pane watches pcon-n02 from before the run: it shares the session, which stays
        watched = await app.consoles.session("pcon-n02")
        unwatch = watched.subscribe(lambda item: None)
        screen = ProgressScreen(plan, options)
        await app.push_screen(screen)
        table = screen.query_one("#progress", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["NODE", "PHASE", "DETAIL", "CONSOLE"]
        await wait_until(lambda: screen.finished, 120, "the reimage to end")
        assert screen.result is not None and screen.result.ok, screen.result and screen.result.summary()
        await wait_until(lambda: cell(table, "pcon-n01", "console") == "pcon-n01 login:", 20,
                         "pcon-n01's last console line")
        assert cell(table, "pcon-n02", "console") == "pcon-n02 login:"
        assert cell(table, "pcon-rf", "console") == ""  # no console: nothing, quietly
        # the steps box says the cursor node's last console line too
        table.move_cursor(row=table.get_row_index("pcon-n01"))
        await pilot.pause()
        assert "console: pcon-n01 login:" in str(screen.query_one("#steps", Static).render())
        await wait_until(lambda: screen.ended.is_set(), 20, "the run to end")
        sessions = app.consoles.sessions()
        assert "pcon-n01" not in sessions  # opened for the run: closed after it
        assert sessions["pcon-n02"].state == "open"  # the pane's: kept
        unwatch()
    for node in ("pcon-n01", "pcon-n02"):
        assert site_lab.machine(node)["image"] == "flatcar@4152.2.0"
        text = read_log("pcontest", node)
        at = text.find("iPXE 1.21.1+")
        assert at >= 0 and "fleet-installer: writing flatcar 4152.2.0 to /dev/sda" in text[at:], text
        assert f"{node} login:" in text[text.find("fleet-installer: 100%"):]


async def test_a_power_plan_has_no_console_column(ctx, site_lab):
    from console.ops.actions import plan_power

    plan = await plan_power(ctx, ["pcon-n03"], "on")
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)):
        screen = ProgressScreen(plan, RunOptions(poll_interval=0.05))
        await app.push_screen(screen)
        await wait_until(lambda: screen.ended.is_set(), 60, "the power plan to end")
        table = screen.query_one("#progress", DataTable)
        assert [str(c.label) for c in table.columns.values()] == ["NODE", "PHASE", "DETAIL"]
        assert "pcon-n03" not in app.consoles.sessions()
