"""SVG snapshots with ``NO_COLOR`` set: every status still reads, by its symbol.

The same frozen demo lab as tests/tui/test_snapshots.py (its fixtures, imported); the
app is made with ``NO_COLOR`` in the environment (Textual reads it when the app is
made and draws in monochrome).  The SVGs live in ``snapshots/test_snapshots_nocolor/``.
"""

from __future__ import annotations

import copy

import pytest

from console import site as sites
from console.cli.main import SiteContext
from screens.app import make_app
from tests.tui.test_snapshots import APP_NOW, empty_journal, snapshot, swept  # noqa: F401


@pytest.fixture
def mono_app(swept, monkeypatch):  # noqa: F811
    """The snapshots' app, made with NO_COLOR set."""
    lab, site, secrets, fleet = swept
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(SiteContext(site, secrets), poll=False, clock=lambda: APP_NOW)
    assert app.no_color
    app.fleet.site = sites.load("demo")
    app.fleet.nodes.update(copy.deepcopy(fleet.nodes))
    app.fleet.switches.update(copy.deepcopy(fleet.switches))
    app.fleet.last_sweep_at = fleet.last_sweep_at
    return app


def test_fleet_no_color(snap_compare, mono_app):
    """The fleet screen at 80x24 without colour: ⊘ poll error, ✗ critical, ⇄ miscabled, ≠ drift."""
    assert snap_compare(mono_app, terminal_size=(80, 24))
