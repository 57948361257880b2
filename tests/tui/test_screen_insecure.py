"""Nodes whose BMC password crosses the network unprotected are marked on screen.

A small site of its own: one Redfish BMC over plain HTTP, one over HTTPS without
certificate verification, one verified, one IPMI.  The fleet summary counts the
first two (``⚠ 2 insecure``, ``⚠2`` at 80 columns, the reasons in its tooltip) and
node detail puts a warning line on each of them, and none on the others.  Polling is
off (the node screen's opening poll meets closed loopback ports and fails fast).
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from textual.widgets import Static

from console.cli.main import SiteContext
from console.live.poller import PollConfig
from console.secrets import Secrets
from inventory.loader import load_site_text
from screens.app import make_app
from screens.summary import FleetSummary

SITE = """\
site: mixed
defaults:
  bmc: {protocol: redfish, username: admin, password: "env:MIXED_BMC_PASSWORD"}
racks:
  - name: r01
    nodes:
      - {name: plain-n01, u: 1, bmc: {address: 127.78.0.1, port: 9, scheme: http}}
      - {name: unverified-n02, u: 2, bmc: {address: 127.78.0.2, port: 9, scheme: https, verify_tls: false}}
      - {name: verified-n03, u: 3, bmc: {address: 127.78.0.3, port: 9, scheme: https}}
      - {name: ipmi-n04, u: 4, bmc: {protocol: ipmi, address: 127.78.0.4, port: 9}}
"""


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    site = load_site_text(SITE, "mixed.yaml")
    return SiteContext(site, Secrets(environ={"MIXED_BMC_PASSWORD": "x" * 12}))


def plain(renderable, width: int = 200) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("size, mark", [((160, 30), "⚠ 2 insecure"), ((80, 24), "⚠2"), ((72, 24), None)])
async def test_the_summary_counts_nodes_whose_bmc_password_is_exposed(ctx, size, mark):
    """At the end of the line, whole or not at all: a count cut short would be a wrong one."""
    app = make_app(ctx, poll=False, poll_config=PollConfig(timeout=1.0))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        summary = app.screen.query_one(FleetSummary)
        line = plain(summary.content, 400).strip()
        if mark is None:
            assert "⚠" not in line, line
        else:
            assert line.endswith(f" {mark}"), line
            assert len(line) <= size[0] - 2, line
        reasons = plain(summary.tooltip)
        assert "1 node: BMC password sent over plain HTTP" in reasons
        assert "1 node: TLS not verified" in reasons


@pytest.mark.parametrize("node, warning", [
    ("plain-n01", "⚠ BMC password sent over plain HTTP: anyone on the path can read it"),
    ("unverified-n02", "⚠ TLS not verified: the BMC password goes to whoever answers at 127.78.0.2"),
    ("verified-n03", None),
    ("ipmi-n04", None),
])
async def test_node_detail_warns_when_the_bmc_password_is_exposed(ctx, node, warning):
    app = make_app(ctx, poll=False, poll_config=PollConfig(timeout=1.0))
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_node(node)
        await pilot.pause()
        line = app.screen.query_one("#transport", Static)
        assert line.display == (warning is not None)
        if warning is not None:
            assert plain(line.content).strip() == warning
            assert line.region.y <= 4  # under the status line and the error bar: seen without scrolling
        await app.workers.wait_for_complete()
