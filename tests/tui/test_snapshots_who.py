"""SVG snapshots of the Who screen (``W``) at 80x24 and 160x48.

The same frozen demo lab and app as tests/tui/test_snapshots.py (its fixtures, imported);
the SVGs live in ``snapshots/test_snapshots_who/``.  The service's sessions are staged in
``app.who`` as :func:`screens.who.watch_who` keeps them (fixed names, times and holdings:
a live service's would differ every run): this operator, another admin running a
reimage with its node locks, a viewer, and one hostile name from an operators file
(control characters shown, never markup).  Regenerate with ``--snapshot-update`` after a
deliberate change, and look at the new SVGs.
"""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from screens.who import WhoScreen
from tests.tui.test_snapshots import APP_NOW, FROZEN, SIZES, app, empty_journal, settled, snapshot, swept  # noqa: F401

SESSIONS = [
    {"session": "s1", "name": "alice", "role": "admin", "via": "ssh", "client": "tui", "since": FROZEN - 3600,
     "pid": 101, "locks": [], "jobs": [], "consoles": [], "you": True},
    {"session": "s2", "name": "carol", "role": "admin", "via": "ssh", "client": "tui", "since": FROZEN - 600,
     "pid": 102, "locks": ["dal1-r02-n01", "dal1-r02-n02", "dal1-r02-n03"], "jobs": ["c0ffee01"],
     "consoles": ["dal1-r02-n01"], "you": False},
    {"session": "s3", "name": "bob", "role": "viewer", "via": "local", "client": "cli", "since": FROZEN - 30,
     "pid": 103, "locks": [], "jobs": [], "consoles": [], "you": False},
    {"session": "s4", "name": "eve\x1b[31m[b]x[/b]", "role": "operator", "via": "ssh", "client": "ssh-exec",
     "since": FROZEN - 5, "pid": 104, "locks": [], "jobs": [], "consoles": [], "you": False},
]


@pytest.mark.parametrize("size", SIZES)
def test_who(snap_compare, app, size):  # noqa: F811
    """Who: this operator first, then by name; what each holds; a hostile name as text."""
    seen = {}

    async def open_who(pilot):
        app.who = [dict(s) for s in SESSIONS]
        await pilot.press("W")
        await settled(pilot)
        assert isinstance(app.screen, WhoScreen)
        table = app.screen.query_one("#jobs", DataTable)
        seen["rows"] = [[c.plain for c in table.get_row_at(i)] for i in range(table.row_count)]

    assert snap_compare(app, run_before=open_who, terminal_size=size)
    rows = seen["rows"]
    assert [r[0] for r in rows] == ["alice (you)", "bob", "carol", "eve^[[31m[b]x[/b]"]
    assert rows[2][4] == "locks dal1-r02-n[01-03]; run c0ffee01; writes console dal1-r02-n01"
    assert rows[1][2] == "local cli" and rows[1][4] == "nothing"
