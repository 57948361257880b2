"""Fixtures shared by the TUI tests."""

from __future__ import annotations

import asyncio

import pytest

from console import site as sites
from console.secrets import Secrets


@pytest.fixture(scope="session")
def frozen_sweep(private_runtime_dir):
    """(lab, effective site, secrets, Fleet after one complete sweep) over a frozen demo lab.

    Built once per worker process (a full demo lab and a sweep of it take seconds) for
    every snapshot module; each module keeps a journal of its own (``empty_journal`` in
    tests/tui/test_snapshots.py) and gets this through its ``swept`` fixture.  The sweep
    writes nothing to the state directory.
    """
    from console.lab.lab import Lab
    from tests.tui.test_snapshots import AUTH_FAIL, FROZEN, _sweep

    lab = Lab(sites.load("demo"), ephemeral=True, time_scale=0.02, frozen_time=FROZEN)
    lab.start()
    try:
        lab.fault("redfish", AUTH_FAIL, "auth_fail")
        site = lab.effective_site()
        secrets = Secrets(lab=lab.secrets)
        fleet = asyncio.run(_sweep(site, secrets))
        unread = [n for n, st in fleet.nodes.items() if st.last_success is None and n != AUTH_FAIL]
        assert not unread, f"the sweep left nodes unread: {unread}"
        assert all(st.last_success for st in fleet.switches.values()), "a switch was not read"
        yield lab, site, secrets, fleet
    finally:
        lab.stop()
