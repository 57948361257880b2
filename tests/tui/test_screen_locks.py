"""The console while an action waits for the site's lock guard: keys keep working, and a guard
held too long ends the action with a message naming it (never a frozen screen).

Each test holds the guard itself (another open file of ``.guard``, flocked) and hands the
run its own lock directory through ``make_app(..., locks=...)``.
"""

from __future__ import annotations

import fcntl
import os

import pytest

from console.cli.main import SiteContext
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.secrets import Secrets
from screens.app import make_app
from screens.fleet import FleetScreen
from screens.progress import ProgressScreen
from screens.table import FleetTable
from tests.support import wait_until

NODE = "dal1-r03-n15"  # no other test uses it; nothing is done to it here


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


@pytest.fixture
def held_guard(tmp_path):
    """The demo site's guard, flocked by this test until it says otherwise (or ends)."""
    assert Locks("demo", directory=tmp_path / "locks", owner="setup").acquire([]) == {}
    path = tmp_path / "locks" / "demo" / ".guard"
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    state = {"fd": fd, "path": path}

    def let_go() -> None:
        if state["fd"] is not None:
            os.close(state["fd"])
            state["fd"] = None

    state["let_go"] = let_go
    yield state
    let_go()


async def start_power_cycle(app, pilot) -> ProgressScreen:
    table = app.screen.query_one(FleetTable)
    table.move_cursor(row=table.get_row_index(NODE))
    await pilot.press("p", "c")
    await wait_until(lambda: getattr(app.screen, "plan", None) is not None, what="the plan")
    await pilot.press("y")
    await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="the progress screen")
    return app.screen


async def test_keys_work_while_an_action_waits_for_the_guard_and_cancel_stops_the_wait(ctx, demo_lab, tmp_path,
                                                                                       held_guard):
    before = demo_lab.machine(NODE)["boots"]
    app = make_app(ctx, poll=False, run_options=RunOptions(poll_interval=0.05, power_timeout=30.0, request_timeout=10.0),
                   locks=Locks("demo", directory=tmp_path / "locks", owner="tester", wait=60))
    async with app.run_test(size=(120, 40)) as pilot:
        progress = await start_power_cycle(app, pilot)
        # the run waits for the guard, and the console answers keys all the same
        await pilot.press("escape")  # hide the progress screen; the action goes on
        assert isinstance(app.screen, FleetScreen) and not progress.finished
        assert progress.runner.progress[NODE].phase == "planned"
        progress.runner.cancel()  # what `c` on its screen does: it stops waiting, and nothing starts
        await wait_until(lambda: any(n.message.startswith("power cycle finished") for n in app._notifications),
                         what="the run's end, notified")
    assert held_guard["fd"] is not None  # the guard was never let go: the cancel ended the wait
    assert progress.runner.progress[NODE].phase == "cancelled"
    assert progress.runner.progress[NODE].error == "not started: cancelled"
    assert demo_lab.machine(NODE)["boots"] == before
    assert not list(held_guard["path"].parent.glob("*.lock"))


async def test_a_guard_held_too_long_ends_the_action_with_a_message_naming_it(ctx, demo_lab, tmp_path,
                                                                              held_guard):
    before = demo_lab.machine(NODE)["boots"]
    app = make_app(ctx, poll=False, run_options=RunOptions(poll_interval=0.05, power_timeout=30.0, request_timeout=10.0),
                   locks=Locks("demo", directory=tmp_path / "locks", owner="tester", wait=0.3))
    async with app.run_test(size=(120, 40)) as pilot:
        progress = await start_power_cycle(app, pilot)
        await wait_until(lambda: progress.finished, what="the run to end")
        assert progress.error.startswith(f"{held_guard['path']} is held by this process")
        assert "for more than 0.3 s: no node was locked" in progress.error
        # notify() posts a message: the toast is in the app's list once the app has handled it
        await wait_until(lambda: any(n.message.startswith("power cycle not started: ") for n in app._notifications),
                         what="the refusal, notified")
        assert app.is_running  # the console goes on
    assert demo_lab.machine(NODE)["boots"] == before
