"""The image audit screen against the demo lab (pilot): what it shows, the marks, and the
hand-off of the drifted nodes to the reimage action (confirmed there; cancelled here, so
the shared lab keeps its drift)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from console.cli.main import SiteContext
from console.ops.imageaudit import age_words as age
from console.secrets import Secrets
from screens.actions import ConfirmScreen
from screens.app import make_app
from screens.audit import AuditScreen
from tests.engine.test_imageaudit import DRIFT, UNREACHABLE
from tests.support import wait_until


@pytest.fixture
def ctx(demo_lab, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_CONSOLE_LOCKS", str(tmp_path / "locks"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def test_age_words():
    assert [age(None, 100), age(90, 100), age(100 - 14 * 60, 100), age(0, 3 * 3600 + 300),
            age(0, 2 * 86400 + 4 * 3600)] == ["-", "<1m", "14m", "3h05m", "2d4h"]


def rows(screen: AuditScreen) -> list[str]:
    table = screen.query_one("#audit-nodes", DataTable)
    return [str(k.value) for k in table.rows]


async def test_audit_screen_shows_the_drift_and_hands_it_to_reimage(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("A")
        await wait_until(lambda: isinstance(app.screen, AuditScreen) and app.screen.report is not None,
                         timeout=60, what="the audit")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        assert set(rows(screen)) == DRIFT | UNREACHABLE
        assert rows(screen)[: len(DRIFT)] == sorted(DRIFT)  # grouped by state, drift first
        images = screen.query_one("#audit-images", DataTable)
        assert [str(k.value) for k in images.rows] == ["flatcar@3975.2.2", "flatcar@4081.2.1", "flatcar@4152.2.0"]
        title = str(screen.query_one("#audit-title").render())
        assert "9 drift" in title and "3 unknown" in title
        # the cursor on a node wanting flatcar@4081.2.1: m marks the drifted ones wanting it
        table = screen.query_one("#audit-nodes", DataTable)
        table.move_cursor(row=table.get_row_index("dal1-r01-n20"))
        await pilot.press("m")
        want = {n for n in DRIFT if n != "dal1-r03-n04"}
        assert screen.marked == want
        await pilot.press("i")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen) and app.screen.plan is not None,
                         timeout=60, what="the reimage plan")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert set(confirm.names) == want and confirm.plan is not None
        assert confirm.plan.image == "flatcar@4081.2.1"
        # forced: the build that drifted under the same version is reinstalled, not skipped
        assert {n.node for n in confirm.plan.targets} == want
        await pilot.press("escape")
        await wait_until(lambda: isinstance(app.screen, AuditScreen), what="back on the audit")


async def test_unknown_reason_is_shown_as_text(ctx):
    """What a host said reaches the screen as text: markup in it is shown, not applied."""
    from console.ops.imageaudit import AuditReport, NodeAudit, Reading

    async def fake(site, secrets, **kw):
        want = Reading("flatcar@4081.2.1")
        bad = NodeAudit("dal1-r01-n01", "r01", want, Reading(None), Reading("[bold]x[/]@1\x1b[31m"), "drift",
                        "runs [bold]x[/]@1\x1b[31m", read_at=0.0)
        return AuditReport(site.name, 0.0, 1.0, [bad])

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(160, 40)) as pilot:
        app.push_screen(AuditScreen(audit=fake))
        await wait_until(lambda: isinstance(app.screen, AuditScreen) and app.screen.report is not None)
        await pilot.pause()
        table = app.screen.query_one("#audit-nodes", DataTable)
        cells = [str(c) for c in table.get_row("dal1-r01-n01")]
        assert any("[bold]x[/]@1^[[31m" in c for c in cells)
