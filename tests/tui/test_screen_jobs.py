"""Running work is visible and reachable, and facts are fresh after an action (demo lab, pilot).

- the jobs screen lists a running plan (owner, nodes, phase counts), enter reopens its
  progress over the same runner, ``c`` cancels it; the fleet rows carry the phase;
- a lock another process holds shows its owner on the row and in node detail, and
  its release makes the node's facts be read again;
- after an action, the touched node's power and image are read at once (polling is
  off in these tests: nothing else reads them);
- AGE counts the oldest fact a row shows (the image read, not only the power poll).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace

import pytest
from textual.widgets import DataTable, Input

from console.cli.main import SiteContext
from console.live.fleet import Fleet
from console.ops.options import RunOptions
from console.secrets import Secrets
from screens.app import make_app
from screens.jobs import JobsScreen, board_of
from screens.progress import ProgressScreen
from screens.table import FleetTable
from tests.support import heal_when_hung, redfish_requests, wait_until

FAST = {"poll_interval": 0.05, "power_timeout": 30.0, "request_timeout": 10.0}


@pytest.fixture
def ctx(demo_lab, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_CONSOLE_LOCKS", str(tmp_path / "locks"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def app_for(ctx):
    app = make_app(ctx, poll=False)
    app.run_options = RunOptions(**FAST)
    return app


def put_cursor(app, name: str) -> None:
    table = app.screen.query_one(FleetTable)
    table.move_cursor(row=table.get_row_index(name))


def grid_of(app) -> dict[str, str]:
    """Node detail's power / network / image grid as label -> text."""
    return {str(label): str(value) for label, value in app.screen._lists["state-grid"]}


def row_text(app, name: str) -> str:
    """What the fleet screen's row shows in its WHY column for ``name`` (the row state lives there)."""
    from screens.fleet import FleetScreen

    fleet_screen = next(s for s in app.screen_stack if isinstance(s, FleetScreen))
    return fleet_screen._cells(name)["why"].plain


async def test_jobs_screen_lists_reopens_and_cancels_a_running_plan(ctx, demo_lab):
    nodes = ["dal1-r02-n18", "dal1-r02-n19"]
    boots = {n: demo_lab.machine(n)["boots"] for n in nodes}
    app = app_for(ctx)
    app.run_options = replace(app.run_options, fanout=1, request_timeout=60.0)
    healer: asyncio.Task | None = None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            board = board_of(app)
            for n in nodes:
                put_cursor(app, n)
                await pilot.press("space")
            await pilot.press("p", "r")
            from screens.actions import ConfirmScreen

            await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.plan is not None,
                             what="the plan")
            before = redfish_requests(demo_lab, nodes[0])
            demo_lab.fault("redfish", nodes[0], "hang")  # the first node's reset hangs in flight
            # for good: the lab holds that request; the logout after the abort is answered
            healer = asyncio.create_task(heal_when_hung(demo_lab, nodes[0], before))
            app.screen.query_one("#count", Input).value = "2"
            await pilot.press("enter")
            await wait_until(lambda: isinstance(app.screen, ProgressScreen) and app.screen.runner is not None
                             and app.screen.runner.in_flight() == nodes[:1], what="the first node in flight")
            plan_id = app.screen.plan.id
            await pilot.press("escape")  # hide it: the action goes on
            assert not isinstance(app.screen, ProgressScreen)
            # the rows say what is going on
            await wait_until(lambda: "▶ reset (power reset)" in row_text(app, nodes[0]), what="the phase on the row")
            await wait_until(lambda: "▶ queued (power reset)" in row_text(app, nodes[1]), what="queued on the row")
            # the jobs screen lists it
            await pilot.press("J")  # the jobs screen (also in the command palette)
            await wait_until(lambda: isinstance(app.screen, JobsScreen) and app.screen.query("#jobs"),
                             what="the jobs screen")
            jobs = app.screen
            table = jobs.query_one("#jobs", DataTable)
            await wait_until(lambda: table.row_count == 1, what="one job listed")
            row = [c.plain for c in table.get_row(plan_id)]
            assert row[0] == plan_id and row[3] == "power reset" and row[5] == "2"
            assert "1 queued" in row[2] and "1 running" in row[2] and "running" in row[1]
            # enter reopens its progress: the same runner, the row as it is now
            await pilot.press("enter")
            await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="progress reopened")
            reopened = app.screen
            assert reopened.runner is board.job(plan_id).runner
            await wait_until(lambda: reopened.states[nodes[0]].phase == "reset", what="the phase shown")
            assert "reset" in reopened.query_one("#progress", DataTable).get_cell(nodes[0], "phase").plain
            await pilot.press("escape")
            await wait_until(lambda: app.screen is jobs, what="back on the jobs screen")
            # c cancels (no new node starts), c again aborts the one in flight
            await pilot.press("c")
            assert board.job(plan_id).runner.cancelled
            await pilot.press("c")
            await wait_until(lambda: not board.job(plan_id).running, what="the run to end")
            await wait_until(lambda: "ended" in table.get_row(plan_id)[1].plain, what="the row to say it ended")
            assert not any(n in app.fleet.activity for n in nodes)
            await healer
    finally:
        if healer is not None:
            healer.cancel()
        demo_lab.fault("redfish", nodes[0], "")
    assert demo_lab.machine(nodes[1])["boots"] == boots[nodes[1]]  # never started


async def test_facts_are_read_again_as_soon_as_an_action_ends(ctx, demo_lab):
    node = "dal1-r01-n20"
    app = app_for(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        board_of(app)
        st = app.fleet.nodes[node]
        assert st.power_at is None and st.image_at is None  # polling is off: never read
        put_cursor(app, node)
        await pilot.press("p", "c")
        from screens.actions import ConfirmScreen

        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.plan is not None,
                         what="the plan")
        await pilot.press("y")
        await wait_until(lambda: isinstance(app.screen, ProgressScreen) and app.screen.finished, what="the run")
        # read at once after the action: power, boot override and the image (over SSH)
        await wait_until(lambda: app.fleet.nodes[node].image_at is not None, what="the image read again")
        st = app.fleet.nodes[node]
        assert st.power == "on" and st.boot_override is not None and st.power_at is not None
        assert st.image_running == "flatcar@4081.2.1"
    await wait_until(lambda: demo_lab.machine(node)["phase"] == "running", what="back to running")


@pytest.fixture
def other_lock(ctx):
    """A lock on dal1-r03-n20 held by another process, as bob, for a power cycle."""
    code = ("import sys, time\n"
            "from console.ops.locks import Locks\n"
            "locks = Locks('demo', owner='bob')\n"
            "assert locks.acquire(['dal1-r03-n20'], action='power cycle', plan='feedbeef') == {}\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "locks.release()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(10)


async def test_another_consoles_lock_shows_its_owner_and_its_release_refreshes(ctx, other_lock):
    from screens.node import NodeScreen

    node = "dal1-r03-n20"
    app = app_for(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        board = board_of(app)
        board.apply_locks(board.scan_locks())
        assert app.fleet.activity[node].kind == "lock"
        await wait_until(lambda: row_text(app, node) == "◆ locked by bob: power cycle", what="the lock on the row")
        app.open_node(node)
        await wait_until(lambda: isinstance(app.screen, NodeScreen) and app.screen.query("#state-grid"),
                         what="node detail")
        await pilot.pause()
        assert "locked by bob: power cycle" in app.screen.status_line().plain
        grid = grid_of(app)
        assert grid["lock"].startswith("◆ locked by bob: power cycle  until ")
        # the image's row says how old that fact is (opening the screen reads it: never read before)
        await wait_until(lambda: "(read " in grid_of(app).get("image running", ""),
                         what="the image read time shown")
        assert grid_of(app)["image running"].endswith(" ago)")  # "(read <1m ago)": ages move by the minute
        # the other process ends its action: the lock goes, the node is read again
        other_lock.stdin.close()
        other_lock.wait(10)
        before = app.fleet.nodes[node].power_at
        board.apply_locks(board.scan_locks())
        assert node not in app.fleet.activity
        await wait_until(lambda: app.fleet.nodes[node].image_at is not None
                         and app.fleet.nodes[node].power_at != before, what="the node read again")
        await pilot.pause()


def test_age_counts_the_oldest_fact_shown():
    from console import site as sites

    now = [1000.0]
    fleet = Fleet(sites.load("demo"), clock=lambda: now[0])
    fleet.node_ok("dal1-r01-n01", "image", image_running="flatcar@4081.2.1", image_error=None)
    now[0] = 1290.0
    fleet.node_ok("dal1-r01-n01", "power", power="on", health="ok")
    st = fleet.nodes["dal1-r01-n01"]
    assert st.polled_at == 1000.0 and st.power_at == 1290.0 and st.image_at == 1000.0
    now[0] = 1300.0
    fleet.node_ok("dal1-r01-n01", "image", image_running="flatcar@4081.2.1", image_error=None)
    assert st.polled_at == 1290.0
    fleet.node_failed("dal1-r01-n01", "power", "timeout")
    assert st.polled_at == 1300.0
    assert fleet.record("dal1-r01-n01")["image"]["read_at"] == "1970-01-01T00:21:40Z"


async def test_progress_table_takes_the_habit_keys(ctx):
    """The progress table was a plain DataTable: j/k, g/G, ctrl+d/ctrl+u did nothing there."""
    from console.ops.actions import NodePlan, Plan, Step
    from console.ops.runner import Runner
    from screens.jobs import ReopenedProgress
    from screens.table import HabitDataTable

    names = [f"dal1-r01-n{i:02d}" for i in range(1, 31)]
    plan = Plan("power cycle", [NodePlan(n, [Step("power-cycle", "x")], rack="r01") for n in names], id="feedf00d")
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        board = board_of(app)
        board.refresh = None  # nothing ran: nothing to read again
        job = board.add(plan, Runner(app.ctx, plan, operator="tester"))  # staged, never run
        app.push_screen(ReopenedProgress(job))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProgressScreen)
        table = screen.query_one("#progress", HabitDataTable)
        assert table.has_focus and table.cursor_row == 0
        await pilot.press("j", "j")
        assert screen._cursor_node() == names[2]
        await pilot.press("k")
        assert screen._cursor_node() == names[1]
        await pilot.press("G")
        assert screen._cursor_node() == names[-1]
        await pilot.press("g")
        assert screen._cursor_node() == names[0]
        await pilot.press("ctrl+d")
        half = table.cursor_row
        assert half > 1
        await pilot.press("ctrl+u")
        assert table.cursor_row == 0
        await pilot.press("ctrl+f")
        assert table.cursor_row > half
        assert str(screen.query_one("#steps").render()).startswith(screen._cursor_node())  # the steps follow


async def test_the_jobs_table_fits_the_width_whole(ctx):
    """Every column shown is whole and the action is in full at 80 columns (screens.fit):
    the columns follow a resize, the rows and the cursor stay."""
    from console.ops.actions import NodePlan, Plan, Step
    from console.ops.runner import Runner
    from screens.fit import SCROLLBAR

    plans = [Plan(action, [NodePlan("dal1-r01-n01", [Step("power-cycle", "x")], rack="r01")], id=plan_id)
             for action, plan_id in (("reimage flatcar@4152.2.0", "c0ffee01"), ("power cycle", "a1b2c3d4"))]
    app = app_for(ctx)
    async with app.run_test(size=(160, 40)) as pilot:
        board = board_of(app)
        board.refresh = None  # nothing ran: nothing to read again
        for plan in plans:
            board.add(plan, Runner(app.ctx, plan, operator="tester"))  # staged, never run
        await pilot.press("J")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        table = screen.query_one("#jobs", DataTable)
        await wait_until(lambda: table.row_count == 2, what="the jobs listed")
        table.move_cursor(row=1)
        cursor = screen.selected_plan()

        def shown() -> dict[str, str]:
            row = table.get_row("c0ffee01")
            assert sum(c.get_render_width(table) for c in table.ordered_columns) <= app.size.width - SCROLLBAR
            return {str(c.key.value): cell.plain for c, cell in zip(table.ordered_columns, row, strict=True)}

        assert list(shown()) == ["plan", "state", "phases", "action", "owner", "nodes", "ticket", "started"]
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert list(shown()) == ["plan", "state", "phases", "action", "nodes"]
        assert shown()["action"] == "reimage flatcar@4152.2.0"
        assert table.row_count == 2 and screen.selected_plan() == cursor
        await pilot.resize_terminal(120, 30)
        await pilot.pause()
        assert shown()["owner"] == "tester" and len(shown()) == 8 and screen.selected_plan() == cursor
