"""Serial consoles against the lab over the real protocols: IPMI SOL (pyghmi) and SSH consoles.

Every test uses its own node of a module lab.  What the node printed is checked as the
lab's machine printed it; takeovers are made by a real other client (``ipmitool sol
activate``, or the lab's ``held`` fault, a BMC whose SOL another client holds); a BMC
that drops the session is the lab's ``drop`` fault.  No test leaves a BMC session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time

import pytest

from console.errors import Timeout
from console.serial import NoConsole, open_stream
from console.serial import broker as broker_mod
from console.serial.broker import ConsoleBroker, ConsoleEvent
from console.serial.log import read_log
from console.serial.sol import SolStream
from console.serial.stream import ConsoleBusy, ConsoleLost, ConsoleStream
from console.site import SiteContext
from tests.conftest import need
from tests.support import wait_for, wait_until

SITE = """\
site: sertest
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: ser-n[01-09]
        u: "[1-9]"
        mac: "52:54:00:73:00:[01-09]"
        host: 127.2.73.[1-9]
        bmc: {address: "127.1.73.[1-9]"}
      - name: ser-obmc
        mac: "52:54:00:73:00:20"
        host: 127.2.73.20
        bmc: {protocol: redfish, scheme: http, address: 127.1.73.20, console: {kind: ssh, port: 2200}}
      - name: ser-drac
        mac: "52:54:00:73:00:21"
        host: 127.2.73.21
        bmc: {protocol: redfish, scheme: http, address: 127.1.73.21,
              console: {kind: ssh, port: 2200, command: "console com2", known_hosts: "lab:known_hosts"}}
      - name: ser-rf
        mac: "52:54:00:73:00:22"
        host: 127.2.73.22
        bmc: {protocol: redfish, scheme: http, address: 127.1.73.22}
lab:
  sol_faults: {ser-n08: drop, ser-n09: held}
"""


@pytest.fixture
def ctx(site_ctx) -> SiteContext:
    site, secrets = site_ctx
    return SiteContext(site, secrets)


@pytest.fixture(autouse=True)
def no_sessions_left(site_lab):
    # no more than before: a session a third-party client (ipmitool) left behind is the lab's
    # to expire, and not a leak of ours in every later test
    before = site_lab.sessions()["ipmi"]
    others = {"left": 0}  # sessions a test's third-party client may leave (the lab expires them)
    yield others
    wait_for(lambda: site_lab.sessions()["ipmi"] <= before + others["left"], timeout=10,
             what="every IPMI session to be closed")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name in ("sol-pump",) or
                          t.name.startswith("sol-io")], timeout=10, what="the SOL threads to end")


async def expect(stream: ConsoleStream, pattern: bytes, seen: bytearray, timeout: float = 10.0) -> bytes:
    """Read ``stream`` into ``seen`` until it holds ``pattern``; what was read."""
    async with asyncio.timeout(timeout):
        while pattern not in seen:
            seen += await stream.read()
    return bytes(seen)


def login(ctx: SiteContext) -> tuple[bytes, bytes]:
    return ctx.site.ssh.username.encode(), ctx.secrets.resolve("lab:ssh").get().encode()


# ------------------------------------------------------------------ SOL
async def test_sol_login_at_the_prompt(ctx, site_lab):
    stream = SolStream(ctx.site.node("ser-n01"), ctx.secrets)
    assert stream.description.startswith("IPMI SOL 127.1.73.1:")
    await stream.open()
    try:
        seen = bytearray()
        await stream.write(b"\r")
        await expect(stream, b"ser-n01 login: ", seen)
        user, password = login(ctx)
        seen.clear()
        await stream.write(user + b"\r")
        await expect(stream, b"Password: ", seen)
        seen.clear()
        await stream.write(password + b"\r")
        await expect(stream, b"@ser-n01:~", seen)
        assert password not in seen  # not echoed
        seen.clear()
        await stream.write(b"hostname\r")
        await expect(stream, b"ser-n01\r\n", seen)
    finally:
        await stream.close()
    assert await stream.read() == b""
    with pytest.raises(ConsoleLost):
        await stream.write(b"x")


async def test_sol_wrong_password_is_auth_failed(ctx, site_lab):
    from console.errors import AuthFailed
    from console.secrets import Secrets

    node = ctx.site.node("ser-n02")
    bad = node.model_copy(update={"bmc": node.bmc.model_copy(update={"password": "env:SER_BAD_PW"})})
    os.environ["SER_BAD_PW"] = "wrong"
    try:
        stream = SolStream(bad, Secrets())
        with pytest.raises(AuthFailed) as err:
            await stream.open()
        assert "wrong" not in str(err.value)
    finally:
        del os.environ["SER_BAD_PW"]


@contextlib.contextmanager
def construction_held(seconds: float):
    """Hold pyghmi's class lock, under which every session is built, for ``seconds``: a
    stream's console build on the pump waits (as behind a BMC that stopped answering)."""
    from pyghmi.ipmi.private import session as pyghmi_session

    if pyghmi_session.Session.socketchecking is None:
        pyghmi_session.Session.socketchecking = threading.Lock()
    lock = pyghmi_session.Session.socketchecking
    lock.acquire()
    later = threading.Timer(seconds, lock.release)
    later.start()
    try:
        yield
    finally:
        later.join()


async def discarded() -> None:
    """Wait for the thread that logs a late console out to end."""
    await wait_until(lambda: not [t for t in threading.enumerate() if t.name == "sol-io-discard"], 15,
                     "the late console to be discarded")


async def at_the_prompt(stream: SolStream, node: str) -> None:
    """Enter, and the node's login prompt comes back."""
    seen = bytearray()
    await stream.write(b"\r")
    await expect(stream, f"{node} login: ".encode(), seen)


async def test_sol_open_held_up_before_login_times_out_and_leaves_no_session(ctx, site_lab):
    node = ctx.site.node("ser-n02")
    stream = SolStream(node, ctx.secrets, open_timeout=0.5)
    before = site_lab.sessions()["ipmi"]
    # let go once the stream has given up (while it stops the pump, as a stuck BMC would end)
    with construction_held(1.0), pytest.raises(Timeout, match="ser-n02: SOL on 127.1.73.2:.*no session after 0.5 s"):
        await stream.open()
    # the console built late logs in, is logged out, and is not left to the BMC
    await discarded()
    assert site_lab.sessions()["ipmi"] <= before
    # and the node opens again
    again = SolStream(node, ctx.secrets)
    await again.open()
    try:
        await at_the_prompt(again, "ser-n02")
    finally:
        await again.close()


async def test_sol_open_cancelled_before_login_leaves_no_session(ctx, site_lab):
    # a pane closed, or a follower done with a node, while its console was still being built
    keeper = SolStream(ctx.site.node("ser-n02"), ctx.secrets)  # another console keeps the pump running
    await keeper.open()
    try:
        stream = SolStream(ctx.site.node("ser-n04"), ctx.secrets)
        before = site_lab.sessions()["ipmi"]
        with construction_held(1.0):
            opening = asyncio.create_task(stream.open())
            await asyncio.sleep(0.3)  # the pump is building the console, held by the lock
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
        await discarded()
        await asyncio.sleep(1.0)  # long enough for a login the pump completes (the lab's are fast)
        assert site_lab.sessions()["ipmi"] <= before
    finally:
        await keeper.close()


async def test_sol_close_cancelled_still_logs_out(ctx, site_lab):
    # a console session's runner cancelled while it closes a stream that ended (a follower or a
    # pane done with the node): the logout waits for a free I/O thread, and must still be sent
    from console.serial.sol import _pump

    stream = SolStream(ctx.site.node("ser-n03"), ctx.secrets)
    before = site_lab.sessions()["ipmi"]
    await stream.open()
    assert site_lab.sessions()["ipmi"] == before + 1
    busy, go = _pump.io, threading.Event()
    assert busy is not None
    blockers = [busy.submit(go.wait, 10) for _ in range(busy._max_workers)]  # every I/O thread busy
    try:
        closing = asyncio.create_task(stream.close())
        await asyncio.sleep(0.1)  # the logout is queued behind the blockers
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    finally:
        go.set()
    for blocker in blockers:
        blocker.result(timeout=5)
    await wait_until(lambda: site_lab.sessions()["ipmi"] <= before, 10, "the cancelled close's logout")


async def test_an_unanswered_idle_wake_holds_the_pump_half_a_second_at_most(ctx, site_lab, monkeypatch):
    # pyghmi's I/O thread never answers the pump's idle wakes: a console still opens and types
    import collections

    from pyghmi.ipmi.private import session as pyghmi_session

    from console.serial import sol

    class Deaf(collections.deque):
        def append(self, item) -> None:  # an idle wake from the pump (no address): never seen
            if not (threading.current_thread().name == "sol-pump" and item[2] is None):
                super().append(item)

    monkeypatch.setattr(pyghmi_session, "ioqueue", Deaf(pyghmi_session.ioqueue))
    before = sol._pump.unanswered
    stream = SolStream(ctx.site.node("ser-n03"), ctx.secrets, open_timeout=8)
    await stream.open()
    try:
        await at_the_prompt(stream, "ser-n03")
    finally:
        await stream.close()
    assert sol._pump.unanswered > before


async def test_a_key_held_up_by_the_pump_is_logged_with_where_it_is(ctx, site_lab, monkeypatch, caplog):
    # every stream's sends run on the one pump thread: one held up says what holds the pump
    from console.serial import sol

    monkeypatch.setattr(sol, "SLOW_SEND", 0.2)
    stream = SolStream(ctx.site.node("ser-n03"), ctx.secrets)
    await stream.open()
    try:
        def hold_the_pump() -> None:
            time.sleep(0.6)

        held = sol._pump.call(hold_the_pump)
        with caplog.at_level("WARNING", logger="console.serial.sol"):
            await stream.write(b"\r")  # still sent, once the pump is free
        held.result(timeout=5)
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "ser-n03: SOL write waited 0.2 s for the pump; it is at:" in text
        assert "hold_the_pump" in text
        await at_the_prompt(stream, "ser-n03")
    finally:
        await stream.close()


async def test_sol_held_by_ipmitool_needs_force(ctx, site_lab, no_sessions_left):
    ipmitool = need("ipmitool")
    # ipmitool, its payload deactivated under it, may exit without closing its session
    no_sessions_left["left"] = 1
    bmc = ctx.site.node("ser-n03").bmc
    env = dict(os.environ, IPMI_PASSWORD=ctx.secrets.resolve(bmc.password).get())
    other = subprocess.Popen(
        [ipmitool, "-I", "lanplus", "-C", "3", "-H", bmc.address, "-p", str(bmc.effective_port),
         "-U", bmc.username, "-E", "sol", "activate"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    stream: SolStream | None = None
    try:
        # ipmitool says when its SOL session is up: wait for that line, not for a probe of
        # ours to be refused (a probe activating SOL first would make ipmitool give up)
        banner = bytearray()

        def read_banner() -> None:
            assert other.stdout is not None
            while b"SOL Session operational" not in banner:
                chunk = other.stdout.read1(4096)
                if not chunk:
                    return
                banner.extend(chunk)

        await asyncio.wait_for(asyncio.to_thread(read_banner), 20)
        assert b"SOL Session operational" in banner, bytes(banner)
        said = []
        for _ in range(3):  # the holder is named when the BMC answers in time (5 s): best effort
            probe = SolStream(ctx.site.node("ser-n03"), ctx.secrets)
            with pytest.raises(ConsoleBusy) as busy:
                await probe.open()
            said.append(str(busy.value))
            assert "held by another client" in said[-1] and "force" in said[-1]
            if "BMC session 0x" in said[-1]:
                break
        assert "BMC session 0x" in said[-1], said

        stream = SolStream(ctx.site.node("ser-n03"), ctx.secrets)
        await stream.open(force=True)
        seen = bytearray()
        await stream.write(b"\r")
        await expect(stream, b"ser-n03 login: ", seen)
        out, _ = await asyncio.to_thread(other.communicate, None, 10)
        assert b"deactivated" in out.lower() or other.returncode is not None
    finally:
        if stream is not None:
            await stream.close()
        if other.poll() is None:
            other.kill()
            other.wait()


async def test_sol_held_by_another_client_fault(ctx, site_lab):
    node = ctx.site.node("ser-n09")
    stream = SolStream(node, ctx.secrets)
    with pytest.raises(ConsoleBusy, match="held by another client"):
        await stream.open()
    stream = SolStream(node, ctx.secrets)
    await stream.open(force=True)
    try:
        await at_the_prompt(stream, "ser-n09")
    finally:
        await stream.close()


async def test_sol_break_reaches_the_kernel(ctx, site_lab):
    stream = SolStream(ctx.site.node("ser-n04"), ctx.secrets)
    await stream.open()
    try:
        seen = bytearray()
        await stream.send_break()
        await expect(stream, b"SysRq : HELP", seen)
    finally:
        await stream.close()


async def test_sol_force_takeover_loses_the_first_stream(ctx, site_lab):
    node = ctx.site.node("ser-n05")
    first = SolStream(node, ctx.secrets)
    await first.open()
    second = SolStream(node, ctx.secrets)
    try:
        await second.open(force=True)
        with pytest.raises(ConsoleLost):
            async with asyncio.timeout(10):
                while True:
                    await first.read()
    finally:
        await first.close()
        await second.close()


# ------------------------------------------------------------------ the broker
async def test_broker_one_writer_many_watchers(ctx, site_lab):
    broker = ConsoleBroker(ctx)
    try:
        session = await broker.session("ser-n06")
        assert session is await broker.session("ser-n06")  # one per node
        assert session.state == "open" and session.description.startswith("IPMI SOL")
        got: list[bytes | ConsoleEvent] = []
        session.subscribe(got.append)
        await session.acquire("alice")
        await session.acquire("alice")  # again: nothing changes
        with pytest.raises(ConsoleBusy, match="alice"):
            await session.acquire("bob")
        with pytest.raises(ConsoleBusy):
            await session.write("bob", b"x")
        await session.write("alice", b"\r")
        await wait_until(lambda: b"ser-n06 login: " in session.history(), 10, "the prompt")
        await session.acquire("bob", force=True)
        assert session.holder == "bob"
        with pytest.raises(ConsoleBusy):
            await session.write("alice", b"x")
        events = [(e.kind, e.who) for e in got if isinstance(e, ConsoleEvent)]
        assert events == [("attach", "alice"), ("takeover", "bob")]
        await session.release("bob")
        assert session.holder is None
        assert any(isinstance(e, bytes) and b"login" in e for e in got)
    finally:
        await broker.close()
    assert session.state == "closed"
    assert got[-1].kind == "closed"  # type: ignore[union-attr]
    text = read_log("sertest", "ser-n06")
    assert "* attach: alice" in text and "* takeover: bob from alice" in text and "* detach: bob" in text
    assert "| ser-n06 login: " in text


async def test_broker_reconnects_after_the_bmc_drops_sol(ctx, site_lab):
    broker = ConsoleBroker(ctx)
    try:
        session = await broker.session("ser-n08")
        kinds: list[str] = []
        session.subscribe(lambda item: kinds.append(item.kind) if isinstance(item, ConsoleEvent) else None)
        await wait_until(lambda: "lost" in kinds and "reconnected" in kinds[kinds.index("lost"):], 30,
                         "a lost and a reconnected event")
        await wait_until(lambda: session.state == "open", 30, "the session open again")
    finally:
        await broker.close()
    text = read_log("sertest", "ser-n08")
    assert "* lost: " in text and "deactivated" in text and "* reconnected: IPMI SOL" in text


async def test_broker_held_console_taken_over_only_with_force(ctx, site_lab, monkeypatch):
    broker = ConsoleBroker(ctx)
    try:
        session = await broker.session("ser-n09")
        assert session.state == "busy" and "held by another client" in (session.error or "")
        with pytest.raises(ConsoleBusy):
            await session.acquire("alice")
        got: list[ConsoleEvent] = []
        session.subscribe(lambda item: got.append(item) if isinstance(item, ConsoleEvent) else None)
        await session.acquire("alice", force=True)
        assert session.state == "open" and session.holder == "alice"
        assert [(e.kind, e.who) for e in got] == [("takeover", "alice")]
        await session.write("alice", b"\r")
        await wait_until(lambda: b"ser-n09 login: " in session.history(), 10, "the prompt")
    finally:
        await broker.close()


async def test_broker_logs_a_pxe_boot_end_to_end(ctx, site_lab):
    broker = ConsoleBroker(ctx)
    try:
        session = await broker.session("ser-n07")
        site_lab.call("ser-n07", {"cmd": "boot_override", "node": "ser-n07", "device": "pxe"})
        site_lab.call("ser-n07", {"cmd": "power", "node": "ser-n07", "action": "cycle"})
        await wait_until(lambda: b"iPXE" in session.history() and
                         session.history().rstrip().endswith(b"ser-n07 login:"), 30, "the boot to end")
    finally:
        await broker.close()
    text = read_log("sertest", "ser-n07")
    story = ["BIOS", "iPXE 1.21.1+", "Configuring (net0 52:54:00:73:00:07)", "Linux version",
             "Reached target Multi-User System", "ser-n07 login:"]
    at = 0
    for s in story:  # in this order, after the power cycle
        found = text.find(s, at)
        assert found >= 0, f"{s!r} not in the log after offset {at}:\n{text[at:]}"
        at = found
    for line in text.splitlines():
        assert line[:4].isdigit() and line[23:27] in ("Z | ", "Z * "), line


async def test_broker_unknown_node_and_redfish_without_console(ctx, site_lab):
    broker = ConsoleBroker(ctx)
    try:
        with pytest.raises(NoConsole, match="no node named"):
            await broker.session("nope")
        with pytest.raises(NoConsole, match="Redfish BMC has no serial console"):
            await broker.session("ser-rf")
    finally:
        await broker.close()


# ------------------------------------------------------------------ SSH consoles
@pytest.mark.parametrize("node", ["ser-obmc", "ser-drac"])
async def test_ssh_console_login_resize_break(ctx, site_lab, node):
    stream = open_stream(ctx, node)
    assert stream.description.startswith("SSH 127.1.73.")
    await stream.open()
    try:
        seen = bytearray()
        await stream.resize(132, 40)
        await stream.write(b"\r")
        await expect(stream, f"{node} login: ".encode(), seen)
        await stream.send_break()
        await expect(stream, b"SysRq : HELP", seen)
    finally:
        await stream.close()
    assert await stream.read() == b""


async def test_ssh_console_host_key_checked(ctx, site_lab, tmp_path):
    from console.errors import AuthFailed

    node = ctx.site.node("ser-obmc")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    console = node.bmc.console.model_copy(update={"known_hosts": str(empty)})
    bad = node.model_copy(update={"bmc": node.bmc.model_copy(update={"console": console})})
    from console.serial.sshcon import SshConsoleStream

    with pytest.raises(AuthFailed, match="host key"):
        await SshConsoleStream(bad, ctx.site.ssh, ctx.secrets).open()


def test_broker_module_defaults():
    assert broker_mod.RING_BYTES == 256 * 1024 and broker_mod.BUSY_RETRY > 0
