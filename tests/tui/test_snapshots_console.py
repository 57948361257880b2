"""SVG snapshots of the console screen (``c``) at 80x24 and 160x48: one node, and a grid.

The same frozen demo lab and app as tests/tui/test_snapshots.py (its fixtures, imported);
the SVGs live in ``snapshots/test_snapshots_console/``.  The panes talk to the lab over
real IPMI SOL and the OpenBMC-style SSH console; what the frozen machines print is fixed
(their last boot's banner and login prompt).  The lab's ports are ephemeral, so each
pane's transport line is set to the standard port before the picture is taken.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.tui.test_snapshots import (  # noqa: F401
    APP_NOW,
    FROZEN,
    SIZES,
    app,
    empty_journal,
    settled,
    snapshot,
    swept,
)

GRID = ["dal1-r01-n01", "dal1-r01-n02", "dal1-r02-n01", "dal1-r01-gpu01"]


async def _open(app, pilot, nodes: list[str]) -> None:  # noqa: F811
    from screens.console import ConsolePane, ConsoleScreen

    app.push_screen(ConsoleScreen(nodes))
    await pilot.pause()
    panes = list(app.screen.query(ConsolePane))
    for _ in range(600):
        if all(p.session is not None and p.session.state == "open" and "login:" in p.view.text() for p in panes):
            break
        await asyncio.sleep(0.05)
    for p in panes:
        assert p.session is not None and p.session.state == "open", p.node
        # the lab's ports are ephemeral: show the standard one (623 for SOL, 2200 for OpenBMC's console)
        standard = "623" if p.session.description.startswith("IPMI") else "2200"
        p.session.description = re.sub(r":\d+\b", ":" + standard, p.session.description)
        p._show_title()
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_console_one(snap_compare, app, size):  # noqa: F811
    """One node's console: the transport, open, read-only; the boot's end and the login prompt."""

    async def run_before(pilot):
        await _open(app, pilot, ["dal1-r01-n01"])

    assert snap_compare(app, run_before=run_before, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_console_grid(snap_compare, app, size):  # noqa: F811
    """Four marked nodes' consoles in a grid: SOL and SSH consoles side by side."""

    async def run_before(pilot):
        await _open(app, pilot, GRID)

    assert snap_compare(app, run_before=run_before, terminal_size=size)
