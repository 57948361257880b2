"""The console shell starts on a site and shows its nodes (the full UI is issue 4's)."""

from __future__ import annotations

from console import site as sites
from console.cli import SiteContext
from console.secrets import Secrets
from screens.app import make_app
from textual.widgets import DataTable, Static


async def test_app_lists_every_node_and_the_site_summary():
    ctx = SiteContext(sites.load("demo"), Secrets())
    app = make_app(ctx, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.query_one(DataTable)
        assert table.row_count == len(ctx.site.nodes) == 89
        status = str(app.query_one("#status", Static).render())
        assert "site demo: 3 racks, 89 nodes" in status
        assert "[read-only]" in app.sub_title
        assert app.query_one("#status").region.height == 1
