"""A SOL console opened while the same process talks to the same BMCs (issue 17).

The bug: a console opened while a reimage ran (the Runner polling its BMCs every 50 ms)
often got nothing, not even the BMC's replay at activation.  The BMC sends its first
SOL packet (the replay) right behind its answer to Activate Payload; pyghmi installed the
console's handler only after the activating thread had read that answer, and dropped the
packet, unacknowledged, when the pump (or that thread) processed it first.  The lab
retransmits after 1 s, and a 50 ms reimage of a fast lab was over by then, its console
closed, empty.  The polling only made the run shorter than the retransmit interval.

Here the lab's BMCs retransmit SOL packets only after :data:`SOL_RETRY` seconds, far
longer than any wait below: a packet lost at activation fails the test instead of
arriving a second late.  Each test also keeps the same process busy with the BMC the way
the runner does (power, boot override set and read back, every few milliseconds, on the
drivers' own RMCP+ session), and every console must show the replay and echo what is
typed.  Two consoles of one process on one node have BMC sessions of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import pytest

from console.drivers import open_bmc
from console.drivers.bmc import BootTarget
from console.ops.actions import plan_reimage
from console.ops.console_follow import ConsoleFollower
from console.ops.options import RunOptions
from console.ops.runner import Runner
from console.serial.broker import ConsoleBroker
from console.serial.sol import SolStream
from console.serial.stream import ConsoleBusy, ConsoleLost, ConsoleStream
from console.site import SiteContext
from tests.support import FAST_PHASES, wait_for, wait_until

SITE = """\
site: shtest
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
  - {name: flatcar, version: 4152.2.0, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: sh-n[01-06]
        u: "[1-6]"
        mac: "52:54:00:76:00:[01-06]"
        host: 127.2.76.[1-6]
        bmc: {address: "127.1.76.[1-6]"}
lab: {}
"""

#: seconds before the lab's BMCs send an unacknowledged SOL packet again (default 1)
SOL_RETRY = 300.0
#: how long a console may take to show something (a lost packet would take SOL_RETRY)
WAIT = 20.0
#: times a console is opened per test: a lost first packet was about one open in two
OPENS = 8


@pytest.fixture
def ctx(site_ctx) -> SiteContext:
    site, secrets = site_ctx
    return SiteContext(site, secrets)


@pytest.fixture(autouse=True)
def slow_sol_retransmits(site_lab):
    """The lab's SOL retransmissions out of the way for the test (then the default again),
    and no session or SOL thread left behind."""
    assert site_lab.call("sh-n01", {"cmd": "sol_retry", "seconds": SOL_RETRY}) == {"ok": True}
    wait_for(lambda: b"login:" in _history(site_lab, "sh-n06"), 60, "the machines to boot")
    yield
    site_lab.call("sh-n01", {"cmd": "sol_retry", "seconds": 1.0})
    wait_for(lambda: site_lab.sessions()["ipmi"] == 0, timeout=10, what="every IPMI session to be closed")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "sol-pump" or t.name.startswith("sol-io")],
             timeout=10, what="the SOL threads to end")


def _history(lab, node: str) -> bytes:
    return lab.call(node, {"cmd": "serial", "node": node, "tail": 4096})["output"].encode()


@contextlib.asynccontextmanager
async def busy_with(ctx: SiteContext, nodes: list[str]) -> AsyncIterator[list[int]]:
    """The runner's traffic to ``nodes``' BMCs, from this process, until the block ends:
    power state, boot override set and read back, as fast as they answer.  Yields the
    count of requests answered (the test checks the traffic really ran)."""
    done = [0]
    stop = asyncio.Event()
    drivers = [open_bmc(ctx.site.node(n), ctx.secrets, timeout=10.0) for n in nodes]

    async def hammer(driver) -> None:
        while not stop.is_set():
            await driver.power_state()
            await driver.set_boot_override(BootTarget.DISK)
            await driver.boot_override()
            done[0] += 3

    tasks = [asyncio.create_task(hammer(d)) for d in drivers]
    try:
        await wait_until(lambda: done[0] >= 30 or any(t.done() for t in tasks), WAIT, "the BMC traffic to run")
        yield done
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for driver in drivers:
            await driver.close()
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def expect(stream: ConsoleStream, pattern: bytes, seen: bytearray) -> bytes:
    """Read ``stream`` into ``seen`` until it holds ``pattern``."""
    async with asyncio.timeout(WAIT):
        while pattern not in seen:
            seen += await stream.read()
    return bytes(seen)


async def test_replay_and_echo_while_the_process_polls_the_bmcs(ctx, site_lab):
    nodes = ["sh-n01", "sh-n02"]
    async with busy_with(ctx, nodes) as done:
        for i in range(OPENS):
            node = nodes[i % 2]
            stream = SolStream(ctx.site.node(node), ctx.secrets)
            await stream.open()
            try:
                seen = bytearray()
                await expect(stream, f"{node} login: ".encode(), seen)  # the replay, unasked
                seen.clear()
                await stream.write(b"\r")
                await expect(stream, f"{node} login: ".encode(), seen)  # the echo of a key typed
            finally:
                await stream.close()
        assert done[0] > 30


async def test_runner_reimage_at_50_ms_with_a_console_open(ctx, site_lab):
    """The reported case: the Runner reimages (50 ms polls) while a broker session, opened
    just before, follows each node; the consoles show the replay, the whole boot, and
    answer a key."""
    nodes = ["sh-n03", "sh-n04"]
    for target in ("flatcar@4152.2.0", "flatcar@4081.2.1"):  # twice: consoles opened anew each run
        plan = await plan_reimage(ctx, nodes, target)
        runner = Runner(ctx, plan, RunOptions(poll_interval=0.05, request_timeout=10.0, reimage_timeouts=FAST_PHASES))
        broker = ConsoleBroker(ctx, log=False)
        follower = ConsoleFollower(broker, nodes)
        try:
            await follower.start()
            sessions = {n: broker.sessions()[n] for n in nodes}
            assert all(s.state == "open" for s in sessions.values())
            result = await runner.run()
            assert result.ok, result.summary()
            for node, session in sessions.items():
                await wait_until(lambda s=session, n=node: s.history().rstrip().endswith(f"{n} login:".encode()),
                                 WAIT, f"{node}'s boot to reach the prompt")
                text = session.history()
                assert b"iPXE" in text and b"fleet-installer" in text
                await session.acquire("tester")
                before = len(session.history())
                await session.write("tester", b"\r")
                await wait_until(lambda s=session, n=node, b=before: f"{n} login: ".encode() in s.history()[b:],
                                 WAIT, f"{node}'s echo")
                await session.release("tester")
            await follower.close()
            assert all(s.state == "closed" for s in sessions.values())
        finally:
            await follower.close()
            await broker.close()
        for node in nodes:
            assert site_lab.machine(node)["image"] == target


async def test_two_consoles_on_one_node_have_sessions_of_their_own(ctx, site_lab):
    """A second console of this process on a node does not share the first one's BMC session:
    refused (the BMC names the holder), it takes nothing from the first, and closing it does
    not log the first out; with force it takes SOL over and the first is told."""
    node = ctx.site.node("sh-n05")
    first = SolStream(node, ctx.secrets)
    await first.open()
    second: SolStream | None = None
    try:
        seen = bytearray()
        await expect(first, b"sh-n05 login: ", seen)
        assert site_lab.sessions()["ipmi"] == 1
        second = SolStream(node, ctx.secrets)
        with pytest.raises(ConsoleBusy, match=r"held by another client.*BMC session 0x"):
            await second.open()
        wait_for(lambda: site_lab.sessions()["ipmi"] == 1, 10, "the refused console's session to be closed")
        seen.clear()
        await first.write(b"\r")
        await expect(first, b"sh-n05 login: ", seen)  # still open, still answering

        second = SolStream(node, ctx.secrets)
        await second.open(force=True)
        assert site_lab.sessions()["ipmi"] == 2
        with pytest.raises(ConsoleLost, match="deactivated|disconnected"):
            async with asyncio.timeout(WAIT):
                while True:
                    await first.read()
        seen.clear()
        await second.write(b"\r")
        await expect(second, b"sh-n05 login: ", seen)
    finally:
        await first.close()
        if second is not None:
            await second.close()
