"""What an action from the TUI acts on, and what the screen says before it does (demo lab).

- the summary never shows a drift or miscabling count it does not know as 0;
- an action takes only nodes the operator can see, or says in the dialog, in words
  that stop them, which it takes that they cannot (marked nodes hidden by the
  filter, a filter that was not applied), and then wants the count typed;
- the cursor's row is always on screen; marks are cleared when their action finishes;
- the confirm dialog fits 80x24 and 60x20: count field, ticket and buttons on screen;
- protected nodes a plan skips can be included by typing their name.

Polling is off (``poll=False``): the tests read the lab with the app's own poller
when they need states, and wait on conditions, never fixed delays.  Each test uses
demo nodes of its own and leaves them powered as it found them.
"""

from __future__ import annotations

import pytest
from textual import events
from textual.geometry import Region
from textual.widgets import Button, Input, Static

from console.cli.main import SiteContext
from console.ops.actions import NodePlan, Plan
from console.ops.journal import read_entries
from console.ops.options import RunOptions
from console.ops.steps import Skip, SkipKind
from console.secrets import Secrets
from screens.actions import ConfirmScreen, protected_skipped, protected_words
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.footer import KeyFooter
from screens.progress import ProgressScreen
from screens.summary import FleetSummary
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


def summary_text(app) -> str:
    return str(app.screen.query_one(FleetSummary).render())


async def filter_to(pilot, text: str) -> None:
    """``/``, the text pasted, enter: as the operator pastes it.  One change of the filter
    line, not one per key: typing it key by key is tests/tui/test_fleet_find_and_sort.py's."""
    await pilot.press("slash")
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()
    assert pilot.app.focused.value == text, pilot.app.focused.value
    await pilot.press("enter")


async def planned(app) -> ConfirmScreen:
    await wait_until(lambda: isinstance(app.screen, ConfirmScreen), what="the plan dialog")
    screen = app.screen
    await wait_until(lambda: screen.plan is not None or screen.error is not None, what="the plan")
    assert screen.error is None, screen.error
    return screen


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def on_screen(app, widget) -> bool:
    """``widget`` is drawn whole, inside the terminal and above the footer."""
    size = app.size
    usable = Region(0, 0, size.width, size.height - 1)  # the footer's line
    region = widget.region
    return bool(region.area) and usable.contains_region(region) and widget.display


# --------------------------------------------------------------------------- item 4: no false all-clear
async def test_drift_and_cabling_are_unknown_until_read(ctx, demo_lab):
    """Before the first image and switch reads the summary says ``?``, never 0; a node
    that drifts makes it ``≥1`` while others are unread; a restarted poller's fresh
    states make it unknown again."""
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        summary = app.screen.query_one(FleetSummary)
        text = summary_text(app)
        assert "? drift" in text and "? cabling" in text, text
        assert "0 drift" not in text and "0 cabling" not in text
        assert not summary.drift_known and not summary.cabling_known
        managed = [n.name for n in app.fleet.site.nodes if n.image]
        # the node that drifts in the lab first: the count is at least 1, not known yet
        await app.poller.poll_node("dal1-r03-n04", ("image",))
        app.drain()
        await pilot.pause()
        assert "≥1 drift" in summary_text(app), summary_text(app)
        # every other image read but one: still not known
        failing = next(n for n in reversed(managed) if app.fleet.site.node(n).bmc.protocol == "redfish")
        rest = [n for n in managed if n not in ("dal1-r03-n04", failing)] + [failing]
        await app.poller.sweep(("image",), nodes=rest[:-1], switches=False)
        app.drain()
        await pilot.pause()
        assert not summary.drift_known and "≥" in summary_text(app)
        # the last one's BMC fails: the poller reads no more than its power while it does,
        # so it is not waited for (it counts as an error)
        last = rest[-1]
        demo_lab.fault("redfish", last, "auth_fail")
        try:
            await app.poller.poll_node(last, ("power", "image"))
        finally:
            demo_lab.fault("redfish", last, "")
        assert app.fleet.nodes[last].error and app.fleet.nodes[last].image_running is None
        app.drain()
        await pilot.pause()
        drifting = sum(app.fleet.image_state(n) == "drift" for n in app.fleet.site.nodes)
        assert summary.drift_known and drifting >= 1
        assert f"≠{drifting} drift" in summary_text(app), summary_text(app)
        assert "? cabling" in summary_text(app)  # no switch polled yet
        switches = [s.name for s in app.fleet.site.switches]
        for name in switches[:-1]:
            await app.poller.poll_switch(name)
        app.drain()
        await pilot.pause()
        assert not summary.cabling_known and "cabling" in summary_text(app)
        await app.poller.poll_switch(switches[-1])
        app.drain()
        await pilot.pause()
        assert summary.cabling_known, summary_text(app)
        miscabled = sum(app.fleet.port_finding(n) == "mismatch" for n in app.fleet.site.nodes)
        assert f"⇄{miscabled} cabling" in summary_text(app), summary_text(app)
        # a new poller's first states replace the old ones: a node never image-read again
        from console.live.fleet import NodeState

        app.fleet.absorb({"dal1-r03-n05": NodeState("dal1-r03-n05")}, {})
        app.drain()
        await pilot.pause()
        assert not summary.drift_known and "drift" in summary_text(app)
        assert f"≠{drifting} drift" not in summary_text(app)




async def test_drift_is_unknown_while_a_node_that_is_on_cannot_say_its_image(ctx, demo_lab):
    """After a power cycle a host is still booting when its image is read: the read fails.
    Until it is read again, that node's drift is not known, so the count is not either
    (it said 0 drift while eight rows showed an unknown image)."""
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        summary = app.screen.query_one(FleetSummary)
        managed = [n.name for n in app.fleet.site.nodes if n.image]
        await app.poller.sweep(("power", "image"), nodes=managed, switches=False)
        app.drain()
        await pilot.pause()
        assert summary.drift_known, summary_text(app)
        drifting = sum(app.fleet.image_state(n) == "drift" for n in app.fleet.site.nodes)
        booting = next(n for n in managed if app.fleet.nodes[n].power == "on"
                       and app.fleet.image_state(app.fleet.site.node(n)) != "drift")
        app.fleet.node_ok(booting, "image", image_running=None, image_error="ssh: ConnectionLost")
        app.drain()
        await pilot.pause()
        assert not summary.drift_known
        assert f"≥{drifting}" in summary_text(app) and f"≠{drifting} drift" not in summary_text(app)
        await app.poller.poll_node(booting, ("image",))  # up again: read, and the count is known
        app.drain()
        await pilot.pause()
        assert summary.drift_known and f"{drifting}" in summary_text(app), summary_text(app)
# --------------------------------------------------------------------------- item 5: targets on screen
async def test_cursor_row_stays_on_screen_and_a_rejected_filter_warns(ctx, demo_lab):
    """The issue's case: cursor on the last row but one at 80x24, then a filter that keeps
    it (``/r03``): the filter line does not push the cursor's row off screen.  Then, with
    that node marked, a filter that is rejected (``/@nosuch``) empties the table, and the
    dialog says that the filter was not applied and the marked node is hidden, wanting
    the count typed."""
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(FleetTable)
        await pilot.press("end")
        assert table.cursor_key == "dal1-r03-db01" and table.cursor_in_view
        await pilot.press("up")  # dal1-r03-n28, the row above the last
        assert table.cursor_key == "dal1-r03-n28"
        await filter_to(pilot, "r03")
        screen = app.screen
        assert screen.filter_problem is None and len(screen.shown) == 29
        assert table.cursor_key == "dal1-r03-n28" and table.cursor_in_view, (table.cursor_row, table.scroll_y)
        assert table.cursor_key in table.keys_in_view()
        await pilot.press("space")
        assert screen.marked == {"dal1-r03-n28"}
        await filter_to(pilot, "@nosuch")
        assert screen.filter_problem is not None and table.row_count == 0  # rejected: no rows
        await pilot.press("p", "f")
        dialog = await planned(app)
        assert dialog.names == ["dal1-r03-n28"]
        warning = str(dialog.query_one("#warnings", Static).render())
        assert "'@nosuch' was not applied" in warning, warning
        assert "1 of the 1 marked node is hidden by the filter" in warning, warning
        assert dialog.count_needed and not dialog.query_one("#count", Input).has_class("hidden")
        assert dialog.query_one("#confirm", Button).disabled
        await pilot.press("y")  # one node, but it wants "1" typed: y goes into the field
        assert app.screen is dialog
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_a_filter_moves_the_cursor_to_a_shown_row_or_there_is_no_target(ctx, demo_lab):
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(FleetTable)
        await pilot.press("end", "up")
        assert table.cursor_key == "dal1-r03-n28"
        await filter_to(pilot, "dal1-r01-n[14-16]")  # hides the cursor's node
        assert table.cursor_key in {"dal1-r01-n14", "dal1-r01-n15", "dal1-r01-n16"}
        assert table.cursor_in_view
        await filter_to(pilot, "rack=r09")  # nothing shown: no node under the cursor
        assert table.row_count == 0 and app.screen.action_targets() == []
        await pilot.press("p")
        assert isinstance(app.screen, FleetScreen)  # no menu, no dialog
        assert any("no node under the cursor" in m for m in notes(app)), notes(app)


async def test_cursor_scrolled_out_of_view_is_no_target(ctx, demo_lab):
    """Scrolled away with the mouse wheel: the cursor's row is off screen, so no target."""
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(FleetTable)
        table.scroll_to(y=60, animate=False)
        await pilot.pause()
        assert table.cursor_row == 0 and not table.cursor_in_view
        assert app.screen.action_targets() == []
        await pilot.press("x")
        assert isinstance(app.screen, FleetScreen)
        assert any("no node under the cursor" in m for m in notes(app))


async def test_marks_hidden_by_the_filter_are_said_in_the_dialog(ctx, demo_lab):
    """4 marked (by a filter), then the filter changed to another: 3 of them are hidden.
    The dialog names them, wants the count typed; escape keeps the marks."""
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await filter_to(pilot, "dal1-r01-n[13-16]")
        await pilot.press("a")
        assert screen.marked == {"dal1-r01-n13", "dal1-r01-n14", "dal1-r01-n15", "dal1-r01-n16"}
        await filter_to(pilot, "dal1-r01-n[11-13]")  # the other 3 are hidden
        assert "dal1-r01-n13" in screen.shown and "dal1-r01-n14" not in screen.shown
        await pilot.press("p", "c")
        dialog = await planned(app)
        warning = str(dialog.query_one("#warnings", Static).render())
        assert "3 of the 4 marked nodes are hidden by the filter and in this plan: dal1-r01-n[14-16]" in warning, \
            warning
        assert on_screen(app, dialog.query_one("#warnings"))
        assert dialog.count_needed and dialog.query_one("#confirm", Button).disabled
        await pilot.press("escape")
        assert screen.marked == {"dal1-r01-n13", "dal1-r01-n14", "dal1-r01-n15", "dal1-r01-n16"}
        # all shown again: nothing to warn about
        await pilot.press("escape")
        assert screen.target_warnings(screen.action_targets()) == []


async def test_marks_are_cleared_when_their_action_finishes(ctx, demo_lab):
    nodes = ["dal1-r02-n14", "dal1-r02-n15"]
    boots = {n: demo_lab.machine(n)["boots"] for n in nodes}
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_screen = app.screen
        await filter_to(pilot, "dal1-r02-n[14-15]")
        await pilot.press("a")
        assert fleet_screen.marked == set(nodes)
        await pilot.press("p", "r")  # warm reset: they stay on
        await planned(app)
        await pilot.press("2", "enter")
        await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="the progress screen")
        progress = app.screen
        await wait_until(lambda: progress.finished, what="the run to end")
        assert progress.result.ok
        await pilot.press("escape")
        assert app.screen is fleet_screen
        await pilot.pause()
        assert fleet_screen.marked == set()
        assert "marked" not in summary_text(app)
        assert all(not fleet_screen._cells(n)["mark"].plain.strip() for n in nodes)
    assert all(demo_lab.machine(n)["boots"] == boots[n] + 1 for n in nodes)
    for n in nodes:
        await wait_until(lambda: demo_lab.machine(n)["phase"] == "running", what=f"{n} running")


# --------------------------------------------------------------------------- item 8: dialogs fit
@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_multi_node_confirm_fits(ctx, demo_lab, size):
    """Many nodes, skips of several kinds and a hidden-marks warning: the plan scrolls
    inside the dialog, the count field, ticket and both buttons are on screen, focus
    goes count -> ticket -> buttons, and the footer shows the dialog's keys."""
    app = app_for(ctx)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await filter_to(pilot, "dal1-r03-db01,dal1-r01-n[13-20],dal1-r02-n[08-12],dal1-r03-n[20-22]")
        await pilot.press("a")
        await filter_to(pilot, "dal1-r01-n[13-20]")  # some marks hidden: a warning on top
        await pilot.press("p", "f")
        dialog = await planned(app)
        for selector in ("#title", "#warnings", "#count", "#ticket", "#confirm", "#cancel", "#plan-box"):
            assert on_screen(app, dialog.query_one(selector)), (selector, dialog.query_one(selector).region)
        box = dialog.query_one("#plan-box")
        for selector in ("#count", "#ticket", "#confirm", "#cancel"):
            assert not box.region.overlaps(dialog.query_one(selector).region), selector
        assert box.virtual_size.height > box.scrollable_content_region.height  # the plan scrolls
        assert dialog.focused is dialog.query_one("#count", Input)
        await pilot.press("tab")
        assert dialog.focused is dialog.query_one("#ticket", Input)
        await pilot.press(*"INC-9")
        assert dialog.query_one("#ticket", Input).value == "INC-9"
        await pilot.press("tab")
        assert dialog.focused is dialog.query_one("#cancel", Button)  # Confirm: disabled until typed
        footer = dialog.query_one(KeyFooter)
        shown = {key.description for key in footer._keys}
        assert {"Cancel", "Next field"} <= shown and "Power" not in shown, shown
        await pilot.press("escape")
        assert app.screen is screen


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_one_node_confirm_fits(ctx, demo_lab, size):
    app = app_for(ctx)
    async with app.run_test(size=size) as pilot:
        await filter_to(pilot, "dal1-r01-n17")  # its row alone, under the cursor
        await pilot.press("p", "c")
        dialog = await planned(app)
        assert [n.node for n in dialog.plan.targets] == ["dal1-r01-n17"]
        for selector in ("#ticket", "#confirm", "#cancel", "#plan-box"):
            assert on_screen(app, dialog.query_one(selector)), (selector, dialog.query_one(selector).region)
        assert dialog.focused is dialog.query_one("#confirm", Button)
        assert "y" in {key.key for key in dialog.query_one(KeyFooter)._keys}  # y confirms one node
        await pilot.press("escape")


# --------------------------------------------------------------------------- item 10: protected nodes
async def test_protected_node_can_be_included_by_typing_its_name(ctx, demo_lab):
    node = "dal1-r03-db01"
    boots = demo_lab.machine(node)["boots"]
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        await filter_to(pilot, node)
        await pilot.press("p", "r")
        dialog = await planned(app)
        assert dialog.plan.targets == [] and protected_skipped(dialog.plan) == [node]
        assert not dialog.query_one("#protected-box").has_class("hidden")
        field = dialog.query_one("#protected", Input)
        assert on_screen(app, field) and dialog.focused is field
        assert node in str(dialog.query_one("#protected-note", Static).render())
        await pilot.press(*"yes", "enter")  # not the name: nothing changes
        assert dialog.plan.targets == [] and not dialog.force_protected
        assert any(f'type "{node}"' in m for m in notes(app)), notes(app)
        field.value = ""
        await pilot.press(*node, "enter")
        await wait_until(lambda: dialog.plan is not None and dialog.plan.targets, what="the plan again")
        plan = dialog.plan
        assert plan.force_protected and [n.node for n in plan.targets] == [node]
        assert "PROTECTED nodes included" in plan.text()
        assert "PROTECTED node included on request" in str(dialog.query_one("#warnings", Static).render())
        assert dialog.query_one("#protected-box").has_class("hidden")
        assert dialog.count_needed and dialog.focused is dialog.query_one("#count", Input)
        await pilot.press("1", "enter")
        await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="the progress screen")
        progress = app.screen
        await wait_until(lambda: progress.finished, what="the run to end")
        assert progress.states[node].phase == "done", progress.states[node]
        plan_id = progress.plan.id
    assert demo_lab.machine(node)["boots"] == boots + 1
    steps = [(e["step"], e["result"]) for e in read_entries("demo", node=node, limit=0) if e["plan"] == plan_id]
    assert steps == [("reset", "started"), ("reset", "ok")], steps
    started = [e for e in read_entries("demo", limit=0) if e["plan"] == plan_id and e["step"] == "plan"]
    assert started and f"PROTECTED included (force-protected): {node}" in started[0]["detail"], started
    await wait_until(lambda: demo_lab.machine(node)["phase"] == "running", what="back to running")


def test_protected_words_and_skips():
    """One protected node: its name; several: ``protected N``; only protection skips count."""
    plan = Plan("power off", [
        NodePlan("a", [], skip=Skip("protected (override with --force-protected)", SkipKind.PROTECTED), protected=True),
        NodePlan("b", [], skip=Skip("protected (override with --force-protected)", SkipKind.PROTECTED), protected=True),
        NodePlan("c", [], skip=Skip("already off", SkipKind.ALREADY), protected=True),
        NodePlan("d", []),
    ])
    assert protected_skipped(plan) == ["a", "b"]
    assert protected_words(["a"]) == "a" and protected_words(["a", "b"]) == "protected 2"
