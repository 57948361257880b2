"""Marks chose an action's targets: they go when it finishes, even out of sight.

An operator who escapes the progress screen while the action runs must not find the same
nodes still marked when it ends: the next key would act on them again.
"""

from __future__ import annotations

import fcntl
import os

from console.ops.locks import Locks, lock_dir
from screens.progress import ProgressScreen
from tests.support import wait_until
from tests.tui.test_screen_targets import FAST, app_for, ctx, filter_to, planned  # noqa: F401 - ctx is a fixture


async def test_marks_go_when_an_action_finishes_behind_the_fleet_screen(ctx, demo_lab):  # noqa: F811
    nodes = ["dal1-r02-n16", "dal1-r02-n17"]
    app = app_for(ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        fleet_screen = app.screen
        await filter_to(pilot, "dal1-r02-n[16-17]")
        await pilot.press("a")
        assert fleet_screen.marked == set(nodes)
        await pilot.press("p", "c")  # power cycle
        await planned(app)
        # another operator's process holds the site's lock guard: the run waits for it (up to
        # GUARD_WAIT) before it locks and acts, so it is still running after the escape
        guard = _hold_guard(ctx.site.name)
        try:
            await pilot.press("2", "enter")
            await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="the progress screen")
            progress = app.screen
            await pilot.press("escape")  # back to the fleet while the cycle runs
            assert app.screen is fleet_screen and not progress.finished
        finally:
            os.close(guard)
        await wait_until(lambda: progress.finished, what="the run to end out of sight")
        assert progress.result is not None and progress.result.ok, progress.result
        await wait_until(lambda: not fleet_screen.marked, what="the marks to go")
    for n in nodes:
        await wait_until(lambda n=n: demo_lab.machine(n)["phase"] == "running", what=f"{n} running")


def _hold_guard(site: str) -> int:
    """The site's lock guard flocked on a file of our own (as another process would); close it to let go."""
    assert Locks(site, owner="setup").acquire([]) == {}  # the directories and the guard, as the app makes them
    guard = os.open(lock_dir() / site / ".guard", os.O_RDONLY | os.O_NOFOLLOW)
    fcntl.flock(guard, fcntl.LOCK_EX)
    return guard
