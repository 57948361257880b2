"""Poller discipline, with stand-in BMC drivers (the protocols are tested against the lab elsewhere).

These check the rules that keep BMCs alive: one request in flight per endpoint,
spacing between polls, a global cap, backoff for failing endpoints, timeouts, and
logout of every session on close.
"""

from __future__ import annotations

import asyncio

import pytest

from console.drivers.bmc import BootOverride, BootTarget, PowerState
from console.errors import AuthFailed, ProtocolError
from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from inventory.loader import load_site_text
from tests.support import wait_until


def site_of(n: int):
    return load_site_text(
        "site: t\ndefaults:\n  bmc: {protocol: ipmi, username: admin, password: env:PW}\n"
        f"racks:\n  - name: r1\n    nodes:\n      - {{name: 'n[1-{n}]', bmc: {{address: '127.0.0.[1-{n}]'}}}}\n"
    )


class FakeSecrets:
    def resolve(self, ref):
        raise AssertionError("the fake factory needs no secrets")


class FakeDriver:
    """Counts concurrency per endpoint and overall; behaviour set per node."""

    active: dict[str, int] = {}
    global_active = 0
    global_max = 0
    starts: dict[str, list[float]] = {}
    closed: list[str] = []

    def __init__(self, node, behaviour: str, delay: float = 0.01):
        self.name = node.name
        self.behaviour = behaviour
        self.delay = delay

    async def _call(self):
        cls = FakeDriver
        cls.active[self.name] = cls.active.get(self.name, 0) + 1
        assert cls.active[self.name] == 1, "two requests in flight to one BMC"
        cls.global_active += 1
        cls.global_max = max(cls.global_max, cls.global_active)
        cls.starts.setdefault(self.name, []).append(asyncio.get_running_loop().time())
        try:
            if self.behaviour == "hang":
                await asyncio.sleep(3600)
            await asyncio.sleep(self.delay)
            if self.behaviour == "auth":
                raise AuthFailed("BMC refused the credentials")
            if self.behaviour == "garbage":
                raise ProtocolError("malformed reply")
            if self.behaviour == "bug":
                raise KeyError("oops")
        finally:
            cls.active[self.name] -= 1
            cls.global_active -= 1

    async def power_state(self):
        await self._call()
        return PowerState.ON

    async def health(self):
        await self._call()
        return "ok"

    async def boot_override(self):
        await self._call()
        return BootOverride(BootTarget.NONE)

    async def sensors(self):
        await self._call()
        return []

    async def events(self, limit=100):
        await self._call()
        return []

    async def identity(self):
        await self._call()
        return None

    async def close(self):
        FakeDriver.closed.append(self.name)


@pytest.fixture(autouse=True)
def reset_fake():
    FakeDriver.active, FakeDriver.starts, FakeDriver.closed = {}, {}, []
    FakeDriver.global_active = FakeDriver.global_max = 0


def make(n, behaviours=None, **config):
    site = site_of(n)
    fleet = Fleet(site)
    behaviours = behaviours or {}

    def factory(node, secrets, timeout):
        return FakeDriver(node, behaviours.get(node.name, "ok"))

    cfg = PollConfig(**{"min_interval": 0.0, "timeout": 0.2, **config})
    return site, fleet, Poller(site, fleet, FakeSecrets(), cfg, bmc_factory=factory)


async def test_sweep_fills_the_fleet_and_respects_the_global_cap():
    site, fleet, poller = make(30, global_limit=4)
    await poller.sweep(("power", "sensors"), switches=False)
    assert FakeDriver.global_max <= 4
    assert all(fleet.nodes[n.name].power == "on" and fleet.nodes[n.name].error is None for n in site.nodes)
    await poller.aclose()
    assert sorted(FakeDriver.closed) == sorted(n.name for n in site.nodes)  # every session logged out


async def test_one_in_flight_per_endpoint_and_min_interval():
    site, fleet, poller = make(2, min_interval=0.15)
    await asyncio.gather(poller.poll_node("n1", ("power",)), poller.poll_node("n1", ("sensors",)),
                         poller.poll_node("n1", ("events",)))
    starts = FakeDriver.starts["n1"]
    # the three jobs ran one after another, each job's first request >= min_interval after the last job's start
    assert len(starts) == 4  # power job: power state + health; then sensors; then events
    job_starts = [starts[0], starts[2], starts[3]]
    assert all(b - a >= 0.14 for a, b in zip(job_starts, job_starts[1:]))
    await poller.aclose()


async def test_failures_mark_only_their_node_with_a_reason():
    site, fleet, poller = make(6, {"n2": "hang", "n3": "auth", "n4": "garbage", "n5": "bug"})
    await poller.sweep(("power",), switches=False)
    assert fleet.nodes["n1"].power == "on" and fleet.nodes["n1"].error is None
    assert fleet.nodes["n6"].error is None
    assert fleet.nodes["n2"].error.startswith("timeout")
    assert fleet.nodes["n3"].error == "auth failed: BMC refused the credentials"
    assert fleet.nodes["n4"].error == "protocol error: malformed reply"
    assert fleet.nodes["n5"].error == "internal error: KeyError"
    assert fleet.nodes["n3"].power == "unknown" and fleet.nodes["n3"].consecutive_failures == 1
    rec = fleet.record("n3")
    assert rec["error"] and rec["power"] == "unknown" and rec["polled_at"]
    await poller.aclose()


async def test_backoff_grows_and_breaker_opens():
    site, fleet, poller = make(1, {"n1": "garbage"}, backoff_base=0.01, backoff_max=0.05, breaker_threshold=3)
    for _ in range(3):
        await poller.poll_node("n1", ("power",))
    assert poller.breaker_open("n1")
    assert fleet.nodes["n1"].consecutive_failures == 3
    await poller.aclose()


async def test_background_loop_keeps_polling_past_a_hung_bmc():
    site, fleet, poller = make(3, {"n2": "hang"}, power_interval=0.05, sensors_interval=10, events_interval=10,
                               identity_interval=10, image_interval=1e9, backoff_base=0.05, backoff_max=0.1)
    poller._poll_image = _no_image  # no SSH hosts in this test
    poller.start()
    await asyncio.sleep(1.0)
    await poller.aclose()
    assert len(FakeDriver.starts["n1"]) >= 6  # polled again and again
    assert fleet.nodes["n1"].error is None and fleet.nodes["n2"].error.startswith("timeout")


async def _no_image(name):
    return None


async def test_an_unknown_image_is_read_again_soon_not_at_the_next_image_interval():
    """A host still booting after a power cycle does not answer SSH: its image is unknown.
    It is read again at image_retry_interval, not after a whole image_interval (minutes),
    so drift counts and the image column do not stay unknown (or stale) that long."""
    site, fleet, poller = make(1, {}, power_interval=10, sensors_interval=10, events_interval=10,
                               identity_interval=10, image_interval=1e9, image_retry_interval=0.05)
    reads: list[str] = []

    async def booting_then_up(name):
        reads.append(name)
        if len(reads) < 3:  # SSH refused twice: the host is still booting
            fleet.node_ok(name, "image", image_running=None, image_error="ssh: connection refused")
        else:
            fleet.node_ok(name, "image", image_running="flatcar@4081.2.1", image_error=None)

    poller._poll_image = booting_then_up
    poller.start()
    try:
        await wait_until(lambda: fleet.nodes["n1"].image_running == "flatcar@4081.2.1", timeout=30)
        settled = len(reads)
        await asyncio.sleep(0.3)  # several retry intervals: a known image is not read again
        assert len(reads) == settled == 3
    finally:
        await poller.aclose()


async def test_an_operator_asked_poll_skips_the_backoff_wait():
    site, fleet, poller = make(1, {"n1": "garbage"}, backoff_base=600, backoff_max=600)
    await poller.poll_node("n1", ("power",))  # fails: the next automatic poll waits ~10 min
    waiting = asyncio.ensure_future(poller.poll_node("n1", ("power",)))
    await asyncio.sleep(0.3)
    assert not waiting.done() and len(FakeDriver.starts["n1"]) == 1  # held back by the backoff
    waiting.cancel()
    await asyncio.wait_for(poller.poll_node("n1", ("power",), asked=True), 60)
    assert len(FakeDriver.starts["n1"]) == 2 and fleet.nodes["n1"].consecutive_failures == 2
    await poller.aclose()
