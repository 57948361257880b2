"""Actions from the TUI against the demo lab: power menu, plan dialog, progress, cancel, read-only.

Keys are pressed with polling off (``poll=False``); the plan and the run do real
BMC I/O, so the tests wait for them with short sleeps on a condition, never a
fixed delay.  Each test uses its own demo nodes (ones no other test file relies on)
and leaves them powered on as it found them; a BMC fault set here is cleared in
``finally``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.widgets import Button, DataTable, Input

from console.cli.main import SiteContext
from console.ops.journal import read_entries
from console.ops.options import RunOptions
from console.secrets import Secrets
from screens.actions import ConfirmScreen, ImageChooser, PowerMenu, targets_of
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.footer import KeyFooter
from screens.progress import ProgressScreen
from screens.rack import RackScreen
from screens.table import FleetTable
from tests.support import wait_until

#: fast verification for the lab (time_scale 0.02)
FAST = {"poll_interval": 0.05, "power_timeout": 30.0, "request_timeout": 10.0}


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def app_for(ctx, **kw):
    app = make_app(ctx, poll=False, **kw)
    app.run_options = RunOptions(**FAST)
    return app


def put_cursor(app, name: str) -> None:
    table = app.screen.query_one(FleetTable)
    table.move_cursor(row=table.get_row_index(name))


async def planned(app) -> ConfirmScreen:
    await wait_until(lambda: isinstance(app.screen, ConfirmScreen), what="the plan dialog")
    screen = app.screen
    await wait_until(lambda: screen.plan is not None or screen.error is not None, what="the plan")
    assert screen.error is None, screen.error
    return screen


async def finished(app) -> ProgressScreen:
    await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="the progress screen")
    screen = app.screen
    await wait_until(lambda: screen.finished, what="the run to end")
    return screen


def entries_for(node: str, plan_id: str | None = None) -> list[dict]:
    out = read_entries("demo", node=node, limit=0)
    return [e for e in out if plan_id is None or e["plan"] == plan_id]


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_power_cycle_one_node_through_the_dialog(ctx, demo_lab):
    node = "dal1-r01-n22"  # IPMI
    before = demo_lab.machine(node)
    assert before["powered"]
    app = app_for(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        put_cursor(app, node)
        await pilot.press("p")
        assert isinstance(app.screen, PowerMenu)
        await pilot.press("c")
        dialog = await planned(app)
        text = dialog.plan.text()
        assert "power cycle" in text and "blast radius: 1 node; 1 rack (r01); 1 switch (dal1-r01-tor)" in text
        assert dialog.query_one("#confirm", Button).variant == "error"  # dangerous
        assert dialog.query_one("#count", Input).has_class("hidden")  # one node: no count to type
        dialog.query_one("#ticket", Input).value = "INC-4711"
        await pilot.press("y")
        progress = await finished(app)
        assert progress.states[node].phase == "done", progress.states[node]
        assert progress.result.ok
        cell = progress.query_one("#progress", DataTable).get_cell(node, "phase")
        assert "done" in cell.plain
        plan_id = progress.plan.id
    after = demo_lab.machine(node)
    assert after["boots"] == before["boots"] + 1 and after["powered"]
    got = entries_for(node, plan_id)
    assert [(e["step"], e["result"]) for e in got] == [("power-cycle", "started"), ("power-cycle", "ok")]
    assert all(e["ticket"] == "INC-4711" and e["action"] == "power cycle" for e in got)
    await wait_until(lambda: demo_lab.machine(node)["phase"] == "running", what="back to running")  # as found


async def test_multi_node_needs_the_count_typed(ctx, demo_lab):
    nodes = ["dal1-r01-n23", "dal1-r01-n24"]
    boots = {n: demo_lab.machine(n)["boots"] for n in nodes}
    app = app_for(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        for n in nodes:
            put_cursor(app, n)
            await pilot.press("space")
        assert targets_of(app.screen) == nodes
        await pilot.press("p", "c")
        dialog = await planned(app)
        confirm = dialog.query_one("#confirm", Button)
        count = dialog.query_one("#count", Input)
        assert len(dialog.plan.targets) == 2 and not count.has_class("hidden")
        assert confirm.disabled
        await pilot.press("y")  # goes into the count box: not a confirmation
        await pilot.press("enter")
        assert app.screen is dialog and confirm.disabled
        count.value = ""
        await pilot.press("3")
        assert confirm.disabled and app.screen is dialog
        await pilot.press("backspace", "2")
        assert not confirm.disabled
        await pilot.press("enter")
        progress = await finished(app)
        assert {n: progress.states[n].phase for n in nodes} == {n: "done" for n in nodes}
    assert all(demo_lab.machine(n)["boots"] == boots[n] + 1 for n in nodes)
    for n in nodes:
        await wait_until(lambda: demo_lab.machine(n)["phase"] == "running", what=f"{n} running")


async def test_escape_cancels_and_nothing_happens(ctx, demo_lab):
    node = "dal1-r01-n25"
    before = demo_lab.machine(node)
    journal_before = read_entries("demo", limit=0)
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        put_cursor(app, node)
        await pilot.press("p", "f")  # hard off
        dialog = await planned(app)
        assert dialog.plan.targets[0].node == node
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        # the menu too: escape there leaves no dialog behind
        await pilot.press("p")
        assert isinstance(app.screen, PowerMenu)
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
        await pilot.pause(0.3)
    after = demo_lab.machine(node)
    assert after["powered"] and after["boots"] == before["boots"]
    assert read_entries("demo", limit=0) == journal_before  # not a line journalled


async def test_read_only_refuses_every_action(ctx, demo_lab):
    app = app_for(ctx, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        put_cursor(app, "dal1-r01-n26")
        for key in ("p", "x", "i"):
            await pilot.press(key)
            assert isinstance(app.screen, FleetScreen), key
        said = notes(app)
        assert len(said) == 3 and all("read-only mode" in m for m in said), said
        # the footer shows them dimmed: disabled, not hidden
        keys = {key.key: key.enabled for key in app.screen.query_one(KeyFooter)._keys}
        assert keys["p"] is keys["x"] is keys["i"] is False and keys["slash"] is True
        await pilot.press("slash", "p", "x", "i")  # in the filter line they are letters
        assert app.screen.query_one("#filter", Input).value == "pxi" and len(notes(app)) == 3


async def test_acting_keys_are_enabled_when_not_read_only(ctx):
    app = app_for(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        keys = {key.key: key.enabled for key in app.screen.query_one(KeyFooter)._keys}
        assert keys["p"] is keys["x"] is keys["i"] is True


async def test_progress_shows_failed_for_a_faulted_bmc(ctx, demo_lab):
    node = "dal1-r02-n24"  # Redfish
    app = app_for(ctx)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            put_cursor(app, node)
            await pilot.press("x")  # PXE reboot
            dialog = await planned(app)
            assert [s.name for s in dialog.plan.targets[0].steps] == ["boot-pxe", "verify-boot", "reboot"]
            demo_lab.fault("redfish", node, "http500")  # breaks after planning, before the run
            await pilot.press("y")
            progress = await finished(app)
            state = progress.states[node]
            assert state.phase == "failed" and "boot override" in (state.error or ""), state
            cells = progress.query_one("#progress", DataTable)
            assert "failed" in cells.get_cell(node, "phase").plain
            assert "boot override" in cells.get_cell(node, "detail").plain
            assert "1 failed" in str(progress.query_one("#counts").render())
            await pilot.press("escape")
            assert isinstance(app.screen, FleetScreen)
    finally:
        demo_lab.fault("redfish", node, "")
    got = entries_for(node)
    assert got[-1]["result"] == "failed" and got[-1]["step"] == "boot-pxe"


async def test_cancel_stops_launching_and_aborts_in_flight(ctx, demo_lab):
    nodes = ["dal1-r02-n25", "dal1-r02-n26", "dal1-r02-n27"]
    boots = {n: demo_lab.machine(n)["boots"] for n in nodes}
    app = app_for(ctx)
    app.run_options = replace(app.run_options, fanout=1, request_timeout=60.0)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            for n in nodes:
                put_cursor(app, n)
                await pilot.press("space")
            await pilot.press("p", "r")  # reset
            dialog = await planned(app)
            demo_lab.fault("redfish", nodes[0], "hang")  # the first node's step hangs in flight
            dialog.query_one("#count", Input).value = "3"
            await pilot.press("enter")
            await wait_until(lambda: isinstance(app.screen, ProgressScreen))
            progress = app.screen
            await wait_until(lambda: progress.runner is not None and progress.runner.in_flight() == nodes[:1],
                             what="the first node in flight")
            await pilot.press("c")
            assert progress.runner.cancelled and not progress.finished
            # the BMC answers again, but not the request in flight (the lab's "hang" holds a
            # request it took until the lab stops): the step still hangs until aborted, and
            # what the node was left with is read at once instead of after LEFT_READ_S
            demo_lab.fault("redfish", nodes[0], "")
            assert progress.runner.in_flight() == nodes[:1]
            await pilot.press("c")  # again: abort the step in flight
            await wait_until(lambda: progress.finished, what="the run to end")
            phases = {n: progress.states[n].phase for n in nodes}
            assert phases == {n: "cancelled" for n in nodes}, phases
            assert "aborted" in progress.states[nodes[0]].error
            assert all("not started" in progress.states[n].error for n in nodes[1:])
            assert "cancelled" in str(progress.query_one("#counts").render())
    finally:
        demo_lab.fault("redfish", nodes[0], "")
    assert all(demo_lab.machine(n)["boots"] == boots[n] for n in nodes[1:])


async def test_targets_from_rack_and_node_screens_and_reimage_chooser(ctx, demo_lab):
    app = app_for(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        rack = RackScreen()
        await app.push_screen(rack)
        await pilot.pause()
        rack.select("dal1-r03-n05")
        assert targets_of(rack) == ["dal1-r03-n05"]
        await pilot.press("i")
        chooser = app.screen
        assert isinstance(chooser, ImageChooser)
        from textual.widgets import OptionList

        olist = chooser.query_one(OptionList)
        # r03 desires flatcar@4152.2.0: the chooser starts on it
        assert olist.get_option_at_index(olist.highlighted).id == "flatcar@4152.2.0"
        await pilot.press("escape")
        assert app.screen is rack
        app.open_node("dal1-r03-n06")
        await pilot.pause()
        assert targets_of(app.screen) == ["dal1-r03-n06"]
