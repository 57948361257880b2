"""Quitting never silently aborts work, and the poller never outlives its console.

Pilot tests (the demo lab, polling off): ``q`` / ctrl+q with an action running ask,
naming the plan; the default answer keeps it running; ``a`` aborts it (rolled back as
``c`` ``c`` does, the journal saying why) and quits.  The progress header counts the
same outcomes its rows show.

Then the real console, ``fleet-console --site demo`` in tmux against a running lab of
its own, ended every way it can end (``q``, the terminal going away, SIGTERM, SIGINT,
SIGKILL): its poller process is gone within a bound and the lab's BMC sessions are
closed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest
from textual.widgets import DataTable, Input, Static

from console import site as sites
from console.cli.main import SiteContext
from console.ops.journal import read_entries
from console.secrets import Secrets
from screens.progress import ProgressScreen
from screens.quit import QuitScreen
from tests.support import children, ended, wait_until
from tests.tui.test_screen_actions import app_for, planned, put_cursor


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


async def start_reset(app, pilot, nodes, before_go) -> ProgressScreen:
    for n in nodes:
        put_cursor(app, n)
        await pilot.press("space")
    await pilot.press("p", "r")  # reset
    dialog = await planned(app)
    before_go()
    dialog.query_one("#count", Input).value = str(len(nodes))
    await pilot.press("enter")
    await wait_until(lambda: isinstance(app.screen, ProgressScreen), what="the progress screen")
    return app.screen


async def test_quit_with_an_action_running_asks_and_the_default_keeps_it(ctx, demo_lab):
    nodes = ["dal1-r02-n16", "dal1-r02-n17"]
    kind = ctx.site.node(nodes[0]).bmc.protocol
    app = app_for(ctx)
    app.run_options = replace(app.run_options, fanout=1, request_timeout=60.0)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            progress = await start_reset(app, pilot, nodes,  # its step hangs in flight
                                         lambda: demo_lab.fault(kind, nodes[0], "hang"))
            await wait_until(lambda: progress.runner is not None and progress.runner.in_flight() == nodes[:1],
                             what="the first node in flight")
            await pilot.press("escape")  # hide the progress screen: the action goes on
            await pilot.press("q")
            await wait_until(lambda: isinstance(app.screen, QuitScreen), what="the quit question")
            text = " ".join(str(s.render()) for s in app.screen.query(Static))
            assert "1 action is running" in text and "power reset" in text and "2 nodes" in text, text
            await pilot.press("enter")  # the default: keep running
            await wait_until(lambda: not isinstance(app.screen, QuitScreen), what="the question to close")
            assert app.is_running and not progress.runner.cancelled and not progress.ended.is_set()
            await pilot.press("ctrl+q")
            await wait_until(lambda: isinstance(app.screen, QuitScreen), what="the quit question again")
            await pilot.press("escape")  # also keeps it running
            await wait_until(lambda: not isinstance(app.screen, QuitScreen), what="the question to close")
            assert not progress.runner.cancelled
            await pilot.press("q")
            await wait_until(lambda: isinstance(app.screen, QuitScreen), what="the quit question, third time")
            # the BMC answers again, but not the request in flight (the lab's "hang" holds a
            # request it took until the lab stops): the step still hangs until aborted, and
            # what the node was left with is read at once instead of after LEFT_READ_S
            demo_lab.fault(kind, nodes[0], "")
            assert progress.runner.in_flight() == nodes[:1]
            await pilot.press("a")  # abort, roll back, quit
            await wait_until(lambda: progress.ended.is_set(), timeout=60, what="the action to end")
            await wait_until(lambda: not app.is_running, timeout=30, what="the app to quit")
    finally:
        demo_lab.fault(kind, nodes[0], "")
    result = progress.result or progress.runner and None
    got = {n: progress.runner.progress[n] for n in nodes}
    assert got[nodes[0]].outcome in ("aborted", "rolled back") and got[nodes[1]].outcome == "not started"
    entries = [e for e in read_entries("demo", limit=0) if e["plan"] == progress.plan.id]
    assert any(e["step"] == "cancel" and e["error"] == "console quit by the operator" for e in entries), entries
    assert entries[-1]["step"] == "summary" and entries[-1]["error"] == "cancelled: console quit by the operator"
    assert result is None or result.stopped


async def test_after_one_cancel_the_header_counts_what_the_rows_show(ctx, demo_lab):
    nodes = ["dal1-r02-n18", "dal1-r02-n19", "dal1-r02-n20"]
    kind = ctx.site.node(nodes[0]).bmc.protocol
    app = app_for(ctx)
    app.run_options = replace(app.run_options, fanout=1, request_timeout=3.0)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            progress = await start_reset(app, pilot, nodes,  # the first node hangs, then fails
                                         lambda: demo_lab.fault(kind, nodes[0], "hang"))
            await wait_until(lambda: progress.runner is not None and progress.runner.in_flight() == nodes[:1],
                             what="the first node in flight")
            await pilot.press("c")  # stop launching, and ask
            counts = str(progress.query_one("#counts", Static).render())
            assert "r roll them back, f let them finish" in counts, counts
            # the request in flight stays hung (the lab holds it) and fails at request_timeout;
            # what the node was left with is then read from a BMC that answers again
            demo_lab.fault(kind, nodes[0], "")
            await pilot.press("f")  # let the one in flight finish
            await wait_until(lambda: progress.finished, timeout=60, what="the run to end")
            await pilot.pause()
            table = progress.query_one("#progress", DataTable)
            rows = {n: table.get_cell(n, "phase").plain for n in nodes}
            header = str(progress.query_one("#counts", Static).render())
            table.move_cursor(row=table.get_row_index(nodes[0]))
            await pilot.pause()
            steps = str(progress.query_one("#steps", Static).render())
            left = progress.states[nodes[0]].left
    finally:
        demo_lab.fault(kind, nodes[0], "")
    assert rows == {nodes[0]: "✗ failed", nodes[1]: "· not started", nodes[2]: "· not started"}, rows
    assert "cancelled: 1 failed, 2 not started" in header, header
    assert "cancelled" not in " ".join(rows.values())  # the rows say what each node is, the header counts them
    # what the failed node was left with, whole, under the rows (a row's cell cuts it short)
    assert left and f"left {left}" in " ".join(steps.split()), (left, steps)


# ------------------------------------------------------------- the real console, ended every way
@pytest.fixture(scope="module")
def published_lab(private_runtime_dir):
    """A demo lab of this module's own, published as `fleet-console --site demo lab` does."""
    from console.lab.lab import Lab
    from console.lab.state import write_state

    site_file = str(sites.find_site("demo"))
    with Lab(sites.load(site_file), ephemeral=True, time_scale=0.02) as lab:
        write_state(lab, site_file)
        yield lab


def _children(pid: int, needle: str) -> list[int]:
    return [child for child, (_, command) in children(pid).items() if needle in command]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.mark.parametrize("how", ["q", "hangup", "sigterm", "sigint", "sigkill"])
def test_the_poller_ends_with_its_console_however_it_ends(published_lab, tmp_path, how):
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux not installed")
    sock = f"fc-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k.startswith(("XDG_", "FLEET_", "PATH", "HOME", "PYTHON", "LANG"))}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["TERM"] = "xterm-256color"
    exports = " ".join(f"{k}={v!s}" for k, v in env.items() if " " not in v and "'" not in v)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = f"cd {root} && exec env {exports} {sys.executable} -m console.cli.main --site demo"
    base = [tmux, "-L", sock, "-f", "/dev/null"]
    left: list[int] = []
    subprocess.run([*base, "new-session", "-d", "-s", "fc", "-x", "100", "-y", "30", command], check=True, timeout=10)
    try:
        console = int(subprocess.run([*base, "display", "-p", "-t", "fc", "#{pane_pid}"], capture_output=True,
                                     text=True, check=True, timeout=10).stdout)
        left.append(console)
        _wait(lambda: _children(console, "console.live.pollproc"), 60, "the poller process")
        (poller,) = _children(console, "console.live.pollproc")
        left.append(poller)
        _wait(lambda: published_lab.sessions()["ipmi"] > 0 and published_lab.sessions()["redfish"] > 0, 60,
              "BMC sessions")
        if how == "q":
            subprocess.run([*base, "send-keys", "-t", "fc", "q"], check=True, timeout=10)
        elif how == "hangup":  # the terminal goes away: tmux hangs up on the console
            subprocess.run([*base, "kill-server"], check=True, timeout=10)
        else:
            os.kill(console, {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT, "sigkill": signal.SIGKILL}[how])
        _wait(lambda: ended(console), 30, "the console to end")
        _wait(lambda: ended(poller), 30, "the poller to end after its console")
        _wait(lambda: published_lab.sessions() == {"ipmi": 0, "redfish": 0}, 30, "every BMC session closed")
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=10)
        for pid in left:  # never leave one behind, even when the test fails
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)
