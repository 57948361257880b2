"""The poller in its own process (console/live/pollproc.py), against the demo lab and small labs.

What crosses the socket is checked on the console's side: states in its Fleet,
polls asked for now, log records, and every BMC session logged out however the
child ends: closed, console killed, child killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from textual.widgets import Static

from console.cli.main import SiteContext
from console.live.fleet import Fleet
from console.live.poller import PollConfig
from console.live.pollproc import PollerGone, PollerProcess
from console.secrets import Secrets
from screens.app import make_app
from tests.support import ended, wait_until

FAST = PollConfig(power_interval=1.0, sensors_interval=600, events_interval=600, identity_interval=600,
                  image_interval=600, switch_interval=5, timeout=10.0, min_interval=0.0)


#: a small site for the labs of the tests that kill a process (IPMI and Redfish BMCs, a
#: switch): a demo-sized lab would cost seconds to start and to poll, for nothing they check
SMALL_SITE = """\
site: pollproc
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
switches:
  - {name: dal1-r01-tor, address: 127.3.0.81, rack: r01, snmp: {version: 2c, community: "lab:snmp"}}
racks:
  - name: r01
    nodes:
      - name: dal1-r01-n[01-04]
        u: "[1-4]"
        mac: "52:54:00:81:00:[01-04]"
        host: 127.2.81.[1-4]
        bmc: {address: "127.1.81.[1-4]"}
        switch_port: {switch: dal1-r01-tor, port: "Ethernet[1-4]"}
      - name: dal1-r01-n[05-06]
        u: "[5-6]"
        mac: "52:54:00:81:00:[05-06]"
        host: 127.2.81.[5-6]
        bmc: {protocol: redfish, scheme: http, address: "127.1.81.[5-6]"}
        switch_port: {switch: dal1-r01-tor, port: "Ethernet[5-6]"}
"""


def small_lab():
    from console.lab.lab import Lab
    from inventory.loader import load_site_text

    return Lab(load_site_text(SMALL_SITE, "test_pollproc.SMALL_SITE"), ephemeral=True, time_scale=0.02)


@pytest.fixture(scope="module")
def own_lab(private_runtime_dir):
    """A lab for the tests that kill a process: the sessions it could not log out of
    linger for a minute, which must not touch the session-wide lab others count on."""
    with small_lab() as lab:
        yield lab


def no_sessions(lab) -> bool:
    return lab.sessions() == {"ipmi": 0, "redfish": 0}


async def test_states_arrive_polls_run_now_and_close_logs_out(demo_lab, caplog) -> None:
    site = demo_lab.effective_site()
    fleet = Fleet(site)
    process = PollerProcess(site, fleet, Secrets(lab=demo_lab.secrets), FAST)
    caplog.set_level(logging.DEBUG)
    # the child's request lines are counted below; a CLI test run earlier in this process
    # may have quieted the request logger (request lines are off by default); the poll
    # path's GETs and the logouts' DELETEs go over aiohttp and are logged by redfish_http
    caplog.set_level(logging.DEBUG, logger="console.drivers.redfish_http.requests")
    process.start()
    try:
        await wait_until(lambda: all(st.last_success for st in fleet.nodes.values()), timeout=60)
        assert fleet.nodes["dal1-r01-n13"].power == "off"  # the lab's powered-off node
        assert fleet.drain_changes()[0] == {n.name for n in site.nodes}  # arrivals count as changes
        # A fact only an asked poll can have read: the poller reads every job once at its
        # start (sensors too, whatever their cadence), so "not polled yet" is a race.
        before = demo_lab.call("dal1-r01-n01", {"cmd": "machine", "node": "dal1-r01-n01"})
        demo_lab.call("dal1-r01-n01", {"cmd": "boot_override", "node": "dal1-r01-n01", "device": "bios"})
        try:
            await process.poll_node_now("dal1-r01-n01", ("boot",))
            override = fleet.nodes["dal1-r01-n01"].boot_override
            assert override is not None and override.target == "bios"  # there on return: the states came first
        finally:
            demo_lab.call("dal1-r01-n01", {"cmd": "boot_override", "node": "dal1-r01-n01",
                                           "device": before["boot_override"], "persistent": before["boot_persistent"]})
        switch = site.switches[0].name
        await process.poll_switch_now(switch)
        assert fleet.switches[switch].last_success is not None
        assert process.alive and process.pid != os.getpid()
    finally:
        await process.aclose()
    assert process.failure is None
    assert process._proc.returncode == 0
    assert no_sessions(demo_lab)
    # the child's log records are re-logged here, under their own logger names: this
    # process made no HTTP request, the child logged out of every Redfish BMC
    logouts = [r for r in caplog.records
               if r.name == "console.drivers.redfish_http.requests" and "DELETE" in r.getMessage()]
    assert len(logouts) == sum(1 for n in site.nodes if n.bmc.protocol == "redfish")


async def test_a_killed_child_is_reported_and_asks_fail_fast(own_lab) -> None:
    site = own_lab.effective_site()
    fleet = Fleet(site)
    process = PollerProcess(site, fleet, Secrets(lab=own_lab.secrets), FAST)
    process.start()
    try:
        await wait_until(lambda: any(st.last_success for st in fleet.nodes.values()), timeout=60)
        os.kill(process.pid, signal.SIGKILL)
        await wait_until(lambda: process.failure is not None, timeout=10)
        assert not process.alive
        assert "ended" in process.failure
        with pytest.raises(PollerGone):
            await asyncio.wait_for(process.poll_node_now("dal1-r01-n01", ("power",)), 5)
    finally:
        await process.aclose()  # bounded, even with nobody to answer
    # SIGKILL gave the child no chance to log out: the lab's sessions time out on their
    # own (what a real BMC does too); nothing here waits for that.


CONSOLE = textwrap.dedent("""
    import asyncio, pickle, sys
    from console.live.fleet import Fleet
    from console.live.poller import PollConfig
    from console.live.pollproc import PollerProcess

    with open(sys.argv[1], "rb") as f:
        site, secrets = pickle.load(f)

    async def main():
        fleet = Fleet(site)
        process = PollerProcess(site, fleet, secrets, PollConfig(power_interval=1.0))
        process.start()
        while not all(st.last_success for st in fleet.nodes.values()):
            await asyncio.sleep(0.1)
        print(process.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_when_the_console_dies_the_child_logs_out_and_ends(private_runtime_dir, tmp_path) -> None:
    """A console killed outright (SIGKILL, a dropped SSH session) leaves no BMC session open."""
    with small_lab() as lab:  # of its own: no session may linger from another test
        await _console_dies(lab, tmp_path)


async def _console_dies(own_lab, tmp_path) -> None:
    state = tmp_path / "console.pickle"
    state.write_bytes(pickle.dumps((own_lab.effective_site(), Secrets(lab=own_lab.secrets).detached())))
    state.chmod(0o600)
    assert no_sessions(own_lab)
    console = subprocess.Popen([sys.executable, "-c", CONSOLE, str(state)], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        line = await asyncio.wait_for(asyncio.to_thread(console.stdout.readline), 90)
        child = int(line)
        assert own_lab.sessions()["ipmi"] > 0
        console.kill()
        console.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ended(child):  # its parent killed, it is the run's orphan: a zombie until the end
                break
            await asyncio.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the poller's process outlived its console by 30 s")
        assert no_sessions(own_lab)
    finally:
        if console.poll() is None:
            console.kill()
            console.wait(10)


async def test_the_console_restarts_a_poller_that_died(own_lab) -> None:
    app = make_app(SiteContext(own_lab.effective_site(), Secrets(lab=own_lab.secrets)), poll_config=FAST)
    app.POLLER_RESTART_S = 3.0  # the banner (redrawn each second) has time to say it
    async with app.run_test(size=(100, 30)):
        await wait_until(lambda: app.poller.alive, timeout=30)
        first = app.poller
        os.kill(first.pid, signal.SIGKILL)
        banner = app.screen.query_one("#banner", Static)
        await wait_until(lambda: banner.display and "polling stopped" in str(banner.render()), timeout=10)
        await wait_until(lambda: app.poller is not first and app.poller.alive, timeout=30)
        app.fleet.nodes["dal1-r01-n01"].last_success = None
        await wait_until(lambda: app.fleet.nodes["dal1-r01-n01"].last_success is not None, timeout=30)
        assert app.staleness() is None
        await app.action_quit()
    await first.aclose()  # already gone: returns at once
