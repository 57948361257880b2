"""The fleet summary fits its line whole: counts lose their labels, then whole counts
go from the end; a token is never cut in the middle (60x20, 80x24 with marks)."""

from __future__ import annotations

import re

import pytest
from textual.widgets import Static

from console.cli.main import SiteContext
from console.secrets import Secrets
from screens.app import make_app


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


#: a narrow count: one symbol, a number (or ``?``, ``≥2``); a label is a word of its own
COUNT = re.compile(r"^\S(\d+|\?|≥\d+)$|^[a-z]+$")


@pytest.mark.parametrize("width, height, marks", [(60, 20, 0), (60, 20, 3), (80, 24, 3), (70, 20, 3)])
async def test_the_summary_is_never_cut_mid_token(ctx, width, height, marks):
    now = [1000.0]
    app = make_app(ctx, poll=False, clock=lambda: now[0])
    async with app.run_test(size=(width, height)) as pilot:
        for name in app.fleet.nodes:
            app.fleet.node_ok(name, "power", power="on")
        await pilot.press(*["space", "down"] * marks)
        await pilot.pause(1.2)  # the summary is worked out at most once a second
        summary = app.screen.query_one("#summary", Static)
        plain = str(summary.render())
        assert len(plain) <= width - 2, plain
        counts = plain.split(" │ ")[1:]  # after "89/89 shown ↻<1m"
        assert counts, plain
        for group in counts:
            for token in group.split(" "):
                assert COUNT.match(token) or token.startswith("⚠"), (token, plain)


async def test_the_summary_keeps_its_labels_where_they_fit(ctx):
    app = make_app(ctx, poll=False, clock=lambda: 1000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        plain = str(app.screen.query_one("#summary", Static).render())
        assert " err" in plain and " drift" in plain and " cabling" in plain
