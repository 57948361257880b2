"""The fleet screen at 60x20, the smallest terminal the console is laid out for.

The same frozen demo lab and app as tests/tui/test_snapshots.py (its fixtures, imported);
the SVG lives in ``snapshots/test_snapshots_small/``: the summary whole (no token cut),
NODE, AGE and WHY kept, the footer keeping ``?`` and ``q``.
"""

from __future__ import annotations

from tests.tui.test_snapshots import (  # noqa: F401
    APP_NOW,
    FROZEN,
    app,
    empty_journal,
    snapshot,
    swept,
)


def test_fleet_60x20(snap_compare, app):  # noqa: F811
    assert snap_compare(app, terminal_size=(60, 20))


def test_fleet_filtered_60x20(snap_compare, app):  # noqa: F811
    """A filter that forgives (``r02 critical``), at 60 columns."""
    assert snap_compare(app, press=["slash", *"r02 critical", "enter"], terminal_size=(60, 20))
