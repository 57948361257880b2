"""The fleet screen against the demo lab: live data, filter, marks, sort, stale banner."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.color import Color
from textual.widgets import Input, Static

from console.cli.main import SiteContext
from inventory.ranges import natural_key
from console.live.poller import PollConfig
from console.secrets import Secrets
from screens.app import make_app
from screens.common import age_text
from screens.table import FleetTable
from tests.support import none_left_open, wait_until


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


FAST = PollConfig(power_interval=1.0, sensors_interval=60, events_interval=60, identity_interval=600,
                  image_interval=2.0, switch_interval=5, timeout=10.0, min_interval=0.0)


async def test_fleet_screen_shows_live_state_and_filters(ctx, demo_lab):
    before = demo_lab.sessions()
    app = make_app(ctx, poll_config=FAST, read_only=True)
    async with app.run_test(size=(120, 40)):
        table = app.screen.query_one(FleetTable)
        assert table.row_count == 89
        try:
            await wait_until(lambda: all(st.last_success for st in app.fleet.nodes.values()))
        except AssertionError:
            raise AssertionError({k: st.errors for k, st in app.fleet.nodes.items() if not st.last_success})
        await wait_until(lambda: "off" in table.get_cell("dal1-r01-n13", "power").plain)
        assert "critical" in table.get_cell("dal1-r01-n07", "health").plain
        assert "READ-ONLY" in app.sub_title
        summary = str(app.screen.query_one("#summary", Static).render())
        assert "89/89 shown" in summary
        # filter with the selection syntax and state words.  While polling runs the screen
        # is never idle, so drive it through its actions rather than pilot.press (which waits
        # for idle); key handling itself is tested with polling off below.
        screen = app.screen
        screen.action_filter()
        screen.query_one("#filter", Input).value = "off"
        await wait_until(lambda: len(screen.shown) == 3)
        assert set(screen.shown) == {"dal1-r01-n13", "dal1-r03-n20", "dal1-r03-n21"}
        assert table.row_count == 3
        screen.action_clear_filter()
        await wait_until(lambda: table.row_count == 89)
        assert table.row_count == 89
        # image polls go over SSH: slow on a loaded machine, hence the long wait
        await wait_until(lambda: all(app.fleet.nodes[f"dal1-r02-n0{i}"].image_running for i in range(1, 6)),
                         timeout=120)
        screen.action_filter()
        screen.query_one("#filter", Input).value = "rack=r02&drift"
        await wait_until(lambda: len(screen.shown) == 5)
        assert screen.shown == [f"dal1-r02-n0{i}" for i in range(1, 6)], screen.query_one("#filter", Input).tooltip
        screen.action_mark_all()
        assert screen.marked == set(screen.shown)
        assert "5 marked" in str(screen.query_one("#summary", Static).render())
        await app.action_quit()  # what `q` does: log out of every BMC, then exit
    assert none_left_open(before, demo_lab.sessions()), (before, demo_lab.sessions())


async def test_quitting_during_the_first_sweep_logs_out_of_every_bmc(ctx, demo_lab):
    """The poller runs in its own process; q while logins and first polls are in flight
    must still leave no session open on any BMC (a leaked session locks BMCs out)."""
    before = demo_lab.sessions()
    app = make_app(ctx, poll_config=FAST)
    async with app.run_test(size=(80, 24)):
        await wait_until(lambda: sum(1 for st in app.fleet.nodes.values() if st.last_success) >= 10)
        assert app.poller.alive
        await app.action_quit()
    assert none_left_open(before, demo_lab.sessions()), (before, demo_lab.sessions())


async def test_keys_filter_mark_and_sort(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        await pilot.press("slash", "r", "a", "c", "k", "=", "r", "0", "3", "enter")
        assert len(screen.shown) == 29 and table.row_count == 29
        await pilot.press("space")
        assert screen.marked == {screen.shown[0]}
        await pilot.press("a")
        assert screen.marked == set(screen.shown)
        await pilot.press("u")
        assert not screen.marked
        await pilot.press("escape")
        assert table.row_count == 89
        await pilot.press("s")  # sort by the next column (NODE)
        first = table.row_key_at(0)
        assert first == "dal1-r01-gpu01"


async def test_the_filter_follows_live_state(ctx):
    """A state-word filter is live: a node that powers off joins ``off``, and leaves it when
    it is on again; rows stay put for changes that do not move a node in or out."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        await pilot.press("slash", "o", "f", "f", "enter")
        assert screen.shown == []  # nothing polled yet: every power is unknown
        app.fleet.node_ok("dal1-r02-n07", "power", power="off")
        app.fleet.node_ok("dal1-r01-n02", "power", power="on")
        await pilot.pause(0.2)  # the app drains changes 20 times a second
        assert screen.shown == ["dal1-r02-n07"] and table.row_count == 1
        app.fleet.node_ok("dal1-r01-n03", "power", power="off")
        await pilot.pause(0.2)
        assert screen.shown == ["dal1-r01-n03", "dal1-r02-n07"]
        app.fleet.node_ok("dal1-r02-n07", "power", power="on")
        await pilot.pause(0.2)
        assert screen.shown == ["dal1-r01-n03"]
        assert "1/89 shown" in str(screen.query_one("#summary", Static).render())


async def test_a_typed_filter_is_applied_before_its_echo_is_painted(ctx):
    """The table follows the filter line as its text changes, not a message (and a frame) later:
    whatever paints the typed character paints the filtered table with it."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        await pilot.press("slash")
        line = screen.query_one("#filter", Input)
        line.insert_text_at_cursor("rack=r03")  # what a key does, with no message handled since
        assert len(screen.shown) == 29 and table.row_count == 29
        line.insert_text_at_cursor("&@nosuch")
        assert screen.filter_problem and table.row_count == 0  # rejected: no rows of another filter
        line.value = ""
        assert table.row_count == 89 and screen.filter_problem is None


async def test_bad_filter_is_marked_not_raised(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("slash")
        for ch in "@nosuch":
            await pilot.press(ch)
        await pilot.pause()
        inp = app.screen.query_one("#filter", Input)
        why = app.screen.query_one("#filter-problem", Static)
        assert "unknown group" in app.screen.filter_problem and "unknown group" in str(inp.tooltip)
        assert why.display and "unknown group @nosuch" in str(why.render())  # in full, under the line
        red = Color.parse(app.current_theme.error)
        assert inp.styles.border_bottom == ("tall", red)
        assert app.screen.query_one(FleetTable).row_count == 0  # rejected: no rows of another filter
        await pilot.press(*["backspace"] * 7, "r", "a", "c", "k", "=", "r", "0", "1")
        assert app.screen.filter_problem is None and inp.tooltip is None
        assert not why.display and inp.styles.border_bottom[1] != red
        assert app.screen.query_one(FleetTable).row_count == 30


async def test_stale_banner_when_nothing_answers(ctx):
    bad = ctx.site.model_copy(update={"nodes": tuple(n.model_copy(update={"bmc": n.bmc.model_copy(update={"port": 9})})
                                                     for n in ctx.site.nodes[:5]), "switches": (), "racks": ()})
    app = make_app(SiteContext(bad, ctx.secrets), poll_config=PollConfig(timeout=0.5, power_interval=0.5,
                                                                         image_interval=1e6, min_interval=0))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(lambda: all(st.error for st in app.fleet.nodes.values()))
        await pilot.pause(1.2)
        banner = app.screen.query_one("#banner", Static)
        assert banner.display and "no BMC has answered" in str(banner.render())


@pytest.mark.parametrize("width, waiting, fresh", [(80, "↻89 to go", "↻2m"),
                                                   (160, "89 not polled yet", "polled ≤ 2m ago")])
async def test_the_summary_says_how_fresh_the_states_are(ctx, width, waiting, fresh):
    """The least recently polled node's age (or how many are not polled yet), kept current."""
    now = [1000.0]
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    async with app.run_test(size=(width, 30)) as pilot:
        summary = app.screen.query_one("#summary", Static)
        await pilot.pause()
        assert waiting in str(summary.render())
        for name in app.fleet.nodes:
            now[0] += 0.1
            app.fleet.node_ok(name, "power", power="on")
        oldest = 1000.1
        now[0] = oldest + 150  # ages are coarse past a minute: whole minutes
        await pilot.pause(1.2)  # worked out at most once a second
        assert fresh in str(summary.render()) and waiting not in str(summary.render())


async def test_the_banner_follows_the_states_as_they_change(ctx):
    """Staleness is kept up to date per drained change: nothing answered, answered, stale
    for want of a newer success, every node failing, and back."""
    now = [1000.0]
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    names = list(app.fleet.nodes)
    async with app.run_test(size=(100, 30)) as pilot:
        banner = app.screen.query_one("#banner", Static)

        async def shown() -> str:
            await pilot.pause(0.2)  # a drain (every 50 ms) and the screen's summary
            return str(banner.render()) if banner.display else ""

        assert await shown() == ""
        for name in names[:3]:
            app.fleet.node_failed(name, "power", "timed out")
        assert "no BMC has answered" in await shown()
        app.fleet.node_ok(names[0], "power", power="on")
        assert await shown() == ""
        now[0] += 31  # more than 30 s since the newest success
        app.fleet.node_failed(names[1], "power", "timed out")
        assert "last successful poll was 31s ago" in await shown()
        app.fleet.node_ok(names[2], "power", power="on")
        assert await shown() == ""
        for name in names:
            app.fleet.node_failed(name, "power", "timed out")
        assert "every BMC is failing" in await shown()
        app.fleet.node_ok(names[5], "power", power="off")
        assert await shown() == ""


@pytest.mark.parametrize("width", [80, 100, 120, 160, 200])
async def test_columns_fit_the_width(ctx, width):
    """NODE, AGE and WHY always fit on screen; PORT goes first, the rest get compact forms."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(width, 24)) as pilot:
        table = app.screen.query_one(FleetTable)
        await pilot.pause()
        keys = [c.key for c in table.columns]
        assert {"mark", "name", "rack", "power", "health", "age", "why"} <= set(keys)
        total = sum(c.width + 2 for c in table.columns)  # a blank either side of each cell
        assert total <= width - table.styles.scrollbar_size_vertical, (width, total, keys)
        by_key = {c.key: c for c in table.columns}
        assert by_key["why"].width >= 24
        if width <= 80:
            assert "port" not in keys
        if width >= 160:
            assert "port" in keys and "image" in keys
            assert by_key["power"].label == "POWER"


async def test_resize_keeps_rows_marks_and_cursor(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(200, 40)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        await pilot.press("down", "down", "space")
        marked = set(screen.marked)
        cursor = screen._cursor_name()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert "port" not in [c.key for c in table.columns]
        assert table.row_count == 89 and screen.marked == marked and screen._cursor_name() == cursor
        name = next(iter(marked))
        assert table.get_cell(name, "mark").plain == "●"
        assert "/89 shown, 1 marked" in str(screen.query_one("#summary", Static).render())


async def test_sort_by_any_column_and_live_cells(ctx):
    """Sorting works on columns that are not shown; a change reaches only its cells."""
    app = make_app(ctx, poll=False, clock=lambda: 1000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        fleet = app.fleet
        fleet.node_ok("dal1-r03-n02", "power", power="off", health="ok")
        fleet.node_failed("dal1-r02-n09", "power", "unreachable: no answer")
        app.drain()
        await pilot.pause()
        assert table.get_cell("dal1-r03-n02", "power").plain == "○ off"
        assert table.get_cell("dal1-r02-n09", "why").plain == "⊘ unreachable: no answer"
        assert "1 err" in str(screen.query_one("#summary", Static).render())
        screen.sort_by("why")
        assert table.row_key_at(0) == "dal1-r02-n09"
        screen.sort_by("power")  # unknown (never polled) before off before on
        order = list(table.keys)
        assert order.index("dal1-r03-n02") > order.index("dal1-r02-n09")
        assert order == screen.shown
        screen.sort_by("port")  # not shown at 80 columns: still sorts
        assert screen.sort_key == "port" and table.row_count == 89
        screen.sort_by("name", reverse=True)
        assert table.row_key_at(0) == max(screen.shown, key=natural_key)
        fleet.node_ok("dal1-r02-n09", "power", power="on", health="ok")
        app.drain()
        await pilot.pause()
        assert table.get_cell("dal1-r02-n09", "why").plain == ""
        assert "0 err" in str(screen.query_one("#summary", Static).render())


async def test_off_screen_change_shows_when_scrolled_to(ctx):
    """Rows off screen get their new cells when they come into view (and when asked for)."""
    app = make_app(ctx, poll=False, clock=lambda: 1000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        await pilot.pause()
        far = screen.shown[-1]
        assert far not in app.export_screenshot()
        app.fleet.node_failed(far, "power", "unreachable: nobody home")
        app.drain()
        await pilot.pause()
        table.move_cursor(row=table.row_count - 1)
        await pilot.pause()
        shot = app.export_screenshot()
        assert far in shot and "unreachable" in shot
        assert table.get_cell(far, "why").plain == "⊘ unreachable: nobody home"


async def test_rows_are_made_ahead_and_show_their_age_as_of_now(ctx, monkeypatch):
    """In idle time every row is made ready to draw (and made again after its node
    changed off screen), so a filter does not make rows then; a row made ahead shows
    its node's age as of when it is shown, not as of when it was made."""
    now = [1000.0]
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(FleetTable)
        far = screen.shown[-1]
        app.fleet.node_ok(far, "power", power="on")  # polled at 1000
        await wait_until(lambda: not screen._unmade and not screen._index.pending)
        assert set(screen._cache) == set(screen.shown)
        assert far not in table.keys_in_view()
        before = screen._cache[far]
        app.fleet.node_failed(far, "power", "unreachable")  # polled at 1000, off screen
        await wait_until(lambda: screen._cache.get(far) not in (None, before))  # made again, ahead
        assert screen._cache[far]["why"].plain == "⊘ unreachable"

        # not while the operator types: those rows are for a later filter
        screen._unmade[far] = None
        monkeypatch.setattr(app, "input_quiet_for", lambda: 0.1)
        screen._work_ahead()
        assert far in screen._unmade
        monkeypatch.setattr(app, "input_quiet_for", lambda: 5.0)
        screen._work_ahead()
        assert far not in screen._unmade

        made = []
        monkeypatch.setattr(screen, "_make_cells", lambda name, make=screen._make_cells: made.append(name) or make(name))
        now[0] += 150
        await pilot.press("slash", *far, "enter")
        assert table.keys == [far] and made == []  # shown from what was made ahead
        assert table.get_cell(far, "age").plain == age_text(1000.0, now[0]).plain == "2m"


async def test_full_collections_wait_for_a_pause_in_typing(ctx, monkeypatch):
    """No automatic full garbage collection while the app runs (one took tens of ms in
    the middle of a keystroke at 5,000 nodes): the app does them when input pauses, and
    puts the collector back as it was when it exits."""
    import gc

    before = gc.get_threshold()
    full: list[float] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(time.monotonic())

    app = make_app(ctx, poll=False)
    monkeypatch.setattr(app, "GC_EVERY_S", 0.0)
    monkeypatch.setattr(app, "GC_IDLE_S", 0.6)
    gc.callbacks.append(seen)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            assert gc.get_threshold()[2] == 1_000_000 and gc.get_threshold()[:2] == before[:2]
            await pilot.press("down")
            started = time.monotonic()
            while time.monotonic() < started + 1.2:  # keys every 0.1 s: never a 0.6 s pause
                await pilot.press("down")
                await asyncio.sleep(0.1)
            typed = time.monotonic()
            assert not [t for t in full if started + 0.1 < t <= typed]
            await wait_until(lambda: any(t > typed for t in full), timeout=5)
    finally:
        gc.callbacks.remove(seen)
    assert gc.get_threshold() == before
