"""SVG snapshots of the jobs screen (``J``) at 80x24 and 160x48.

The same frozen demo lab and app as tests/tui/test_snapshots.py (its fixtures, imported);
the SVGs live in ``snapshots/test_snapshots_jobs/``.  Two runs are put on the app's job
board with fixed plan ids, times and phases (a running one is timing, so it is staged,
not run): a reimage with one node installing, one verifying and one queued, and an
ended power cycle.  Regenerate with ``--snapshot-update`` after a deliberate change.
"""

from __future__ import annotations

import pytest

from console.ops.actions import NodePlan, Plan, Step
from console.ops.runner import Runner
from console.ops.steps import Skip, SkipKind
from tests.tui.test_snapshots import APP_NOW, FROZEN, SIZES, app, empty_journal, settled, snapshot, swept  # noqa: F401


def _stage(app, tmp_path, monkeypatch) -> None:
    from screens.jobs import board_of

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("FLEET_CONSOLE_LOCKS", str(tmp_path / "locks"))
    board = board_of(app)
    board.refresh = None  # staged runs touched nothing: nothing to read again
    reimage = Plan("reimage flatcar@4152.2.0", [NodePlan(f"dal1-r02-n0{i}", [Step("reimage", "x")], rack="r02")
                                               for i in (1, 2, 3)],
                   ticket="CHG-2231", kind="reimage", image="flatcar@4152.2.0", id="c0ffee01")
    cycle = Plan("power cycle", [NodePlan("dal1-r01-n07", [Step("power-cycle", "x")], rack="r01"),
                                 NodePlan("dal1-r01-n08", [], skip=Skip("already off", SkipKind.ALREADY), rack="r01")],
                 id="a1b2c3d4")
    runs = []
    for plan, started, phases in ((cycle, FROZEN - 300, {"dal1-r01-n07": "done", "dal1-r01-n08": "skipped"}),
                                  (reimage, FROZEN - 95, {"dal1-r02-n01": "installing", "dal1-r02-n02": "verifying",
                                                          "dal1-r02-n03": "planned"})):
        runner = Runner(app.ctx, plan, operator="alice")
        for node, phase in phases.items():
            runner.progress[node].phase = phase
            runner.progress[node].error = "already off" if phase == "skipped" else None
        job = board.add(plan, runner)
        job.started = started
        runs.append(job)
    assert [j.running for j in runs] == [False, True]


@pytest.mark.parametrize("size", SIZES)
def test_jobs(snap_compare, app, tmp_path, monkeypatch, size):  # noqa: F811
    """The jobs screen: the running reimage first (phase counts), then the ended power cycle.
    At 80 columns the columns fit whole (screens.fit): plan, state, phases, the action
    in full and the nodes; at 160 every column."""
    seen = {}

    async def open_jobs(pilot):
        _stage(app, tmp_path, monkeypatch)
        await pilot.press("J")
        await settled(pilot)
        table = app.screen.query_one("#jobs")
        seen["rows"] = [str(k.value) for k in table.rows]
        seen["reimage row"] = {str(column.key.value): cell.plain
                               for column, cell in zip(table.ordered_columns, table.get_row("c0ffee01"), strict=True)}
        seen["width"] = sum(column.get_render_width(table) for column in table.ordered_columns)

    assert snap_compare(app, run_before=open_jobs, terminal_size=size)
    assert seen["rows"] == ["c0ffee01", "a1b2c3d4"]
    row = seen["reimage row"]
    assert row["state"] == "▶ running" and row["phases"] == "1 queued, 2 running"
    assert row["action"] == "reimage flatcar@4152.2.0"
    if size == (80, 24):
        assert list(row) == ["plan", "state", "phases", "action", "nodes"] and seen["width"] <= 80 - 2
    else:
        assert row["owner"] == "alice" and row["started"] == "23:58:25" and len(row) == 8
