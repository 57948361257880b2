"""Serial consoles through the site service (issue 19): one SOL session per node for every
operator, roles enforced in the service, holders named by identity, slow clients bounded,
`fleet-console console NODE` attached through the service, and the boot server.

A real SiteService runs in the test's loop over this module's lab (real IPMI SOL on
loopback); clients are RemoteConsoleBroker (the TUI's and the command's) and, for the
raw protocol, ServiceClient.  The service here polls nothing (NoPolling), so every IPMI
session the lab counts is a console's.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from console import site as sites
from console.live.poller import PollConfig
from console.ops.journal import read_entries
from console.secrets import Secrets
from console.serial.broker import ConsoleEvent
from console.serial.stream import ConsoleBusy
from console.service import consoles as consoles_mod
from console.service import protocol as p
from console.service.client import ServiceClient
from console.service.consoles import ConsoleRefused, RemoteConsoleBroker, RemoteConsoleSession
from console.service.identity import Identity
from console.service.server import SiteService
from console.site import SiteContext
from tests.engine.test_cli_console import Term
from tests.support import wait_for, wait_until

SITE = """\
site: svccon
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
      - name: sc-n[01-06]
        u: "[1-6]"
        mac: "52:54:00:93:00:[01-06]"
        host: 127.2.93.[1-6]
        bmc: {address: "127.1.93.[1-6]"}
      - name: sc-rf
        u: 9
        mac: "52:54:00:93:00:09"
        host: 127.2.93.9
        bmc: {protocol: redfish, scheme: http, address: 127.1.93.9}
lab: {}
"""

WAIT = 30.0


class NoPolling:
    """A poll source that polls nothing: the lab's IPMI sessions are the consoles' only."""

    def __init__(self, site, fleet, secrets, config: PollConfig) -> None:
        self.config = config
        self.failure: str | None = None

    def start(self) -> None:
        pass

    async def poll_node_now(self, name, jobs=("power",)) -> None:
        pass

    async def poll_switch_now(self, name) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.fixture(scope="module")
def site_file(site_lab, tmp_path_factory) -> Path:
    """The site as a file and the lab published, so a `fleet-console` child finds both."""
    from console.lab.state import write_state

    path = tmp_path_factory.mktemp("svcconsite") / "svccon.yaml"
    path.write_text(SITE)
    write_state(site_lab, str(path))
    return path


@pytest.fixture(autouse=True)
def no_sessions_left(site_lab):
    yield
    wait_for(lambda: site_lab.sessions()["ipmi"] == 0, timeout=15, what="every IPMI session to be closed")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "sol-pump" or t.name.startswith("sol-io")],
             timeout=10, what="the SOL threads to end")


@pytest.fixture
async def service(site_lab, tmp_path):
    site = site_lab.effective_site()
    svc = SiteService(SiteContext(site, Secrets(lab=site_lab.secrets)), poller=NoPolling,
                      socket_path=tmp_path / "svc.sock")
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop("test over")


@pytest.fixture
async def brokers(service):
    """Console brokers connected as operators of a role: ``await connect(name, role)``."""
    made: list[RemoteConsoleBroker] = []

    async def connect(name: str, role: str) -> RemoteConsoleBroker:
        token = service.tokens.issue(Identity(name, role, "ssh"))  # type: ignore[arg-type]
        broker = RemoteConsoleBroker(service.socket_path, token=token, client="test")
        made.append(broker)
        return broker

    yield connect
    for broker in made:
        await broker.close()


class Seen:
    """What one subscriber of a console received: output and events."""

    def __init__(self, session: RemoteConsoleSession) -> None:
        self.out = bytearray(session.history())
        self.events: list[ConsoleEvent] = []
        self.unsubscribe = session.subscribe(self._item)

    def _item(self, item) -> None:
        if isinstance(item, ConsoleEvent):
            self.events.append(item)
        else:
            self.out += item

    def kinds(self) -> list[tuple[str, str | None]]:
        return [(e.kind, e.who) for e in self.events]


async def _prompt(seen: Seen, session: RemoteConsoleSession, who: str) -> None:
    """A fresh login prompt on the console (typed as ``who``, the holder)."""
    mark = len(seen.out)
    await session.write(who, b"\r")
    await wait_until(lambda: b"login: " in seen.out[mark:], WAIT, "a login prompt")


# ------------------------------------------------------------------ one session, two watchers
async def test_two_clients_watch_one_sol_session(service, brokers, site_lab):
    alice, bob = await brokers("alice", "operator"), await brokers("bob", "viewer")
    a = await alice.session("sc-n01")
    b = await bob.session("sc-n01")
    assert a.state == "open" and b.state == "open", (a.error, b.error)
    assert a.description.startswith("IPMI SOL 127.1.93.1:") and b.description == a.description
    seen_a, seen_b = Seen(a), Seen(b)
    # one session in the service, two watchers on it, one RMCP+ session (the SOL one) on the lab
    inner = service.consoles.broker.sessions()["sc-n01"]
    assert inner.watchers == 2
    assert site_lab.sessions()["ipmi"] == 1
    await a.acquire("alice")
    assert a.holder == "alice"
    await wait_until(lambda: b.holder == "alice (ssh)", WAIT, "bob told alice holds it")  # its own message
    await _prompt(seen_a, a, "alice")
    await wait_until(lambda: b"login: " in seen_b.out, WAIT, "the viewer to see the prompt too")
    await a.write("alice", b"core\r")
    await wait_until(lambda: b"Password: " in seen_b.out, WAIT, "the viewer to see the password prompt")
    assert ("attach", "alice (ssh)") in seen_b.kinds() and ("attach", "alice") in seen_a.kinds()
    # the same console for a third client too: still one SOL session on the BMC
    carol = await brokers("carol", "viewer")
    c = await carol.session("sc-n01")
    assert b"Password: " in c.history()
    assert site_lab.sessions()["ipmi"] == 1 and inner.watchers == 3
    info = {x.identity.name: x for x in service.sessions()}
    assert info["alice"].consoles == ["sc-n01"] and info["bob"].consoles == []
    await a.release("alice")
    await wait_until(lambda: ("detach", "alice (ssh)") in seen_b.kinds(), WAIT, "the viewer told of the detach")
    assert b.holder is None


async def test_a_node_without_a_console_is_said(service, brokers):
    from console.serial import NoConsole

    alice = await brokers("alice", "operator")
    with pytest.raises(NoConsole, match="Redfish BMC has no serial console"):
        await alice.session("sc-rf")
    with pytest.raises(NoConsole, match="no node named"):
        await alice.session("nope\x1b[2J")


# ------------------------------------------------------------------ roles in the service
async def test_a_viewer_cannot_type(service, brokers):
    bob = await brokers("bob", "viewer")
    b = await bob.session("sc-n02")
    with pytest.raises(ConsoleRefused, match="bob is viewer; typing on a console needs the operator role"):
        await b.acquire("bob")
    assert b.holder is None
    # not through the raw protocol either: the service refuses, whatever the client does
    token = service.tokens.issue(Identity("bob", "viewer", "ssh"))
    raw = ServiceClient(service.socket_path, token=token)
    await raw.connect()
    try:
        await raw.request(p.ConsoleOpen(id=0, node="sc-n02"))
        for msg in (p.ConsoleAcquire(id=0, node="sc-n02"), p.ConsoleWrite(id=0, node="sc-n02", data="cm9vdA0="),
                    p.ConsoleBreak(id=0, node="sc-n02"), p.ConsoleAcquire(id=0, node="sc-n02", force=True)):
            reply = await raw.request(msg)
            assert reply["ok"] is False and reply["kind"] == "refused", reply
        reply = await raw.request(p.ConsoleResize(id=0, node="sc-n02", cols=200, rows=50))
        assert reply.get("ignored")
        # and not on a console it does not watch
        reply = await raw.request(p.ConsoleWrite(id=0, node="sc-n03", data="eA=="))
        assert reply["ok"] is False
    finally:
        await raw.close()


async def test_operator_types_the_other_sees_and_an_admin_takes_over(service, brokers):
    alice, dave, carol = (await brokers("alice", "operator"), await brokers("dave", "operator"),
                          await brokers("carol", "admin"))
    a, d, c = await alice.session("sc-n03"), await dave.session("sc-n03"), await carol.session("sc-n03")
    seen_a, seen_d, seen_c = Seen(a), Seen(d), Seen(c)
    await a.acquire("alice")
    await _prompt(seen_a, a, "alice")
    await wait_until(lambda: b"login: " in seen_c.out, WAIT, "carol to see alice's prompt")
    # dave, an operator, may type but not take it from alice
    with pytest.raises(ConsoleBusy, match=r"alice \(ssh\) is typing"):
        await d.acquire("dave")
    with pytest.raises(ConsoleRefused, match="dave is operator; forcing a console takeover needs the admin role"):
        await d.acquire("dave", force=True)
    with pytest.raises(ConsoleBusy, match="not the console's writer"):
        await d.write("dave", b"rm -rf /\r")
    # carol, an admin, takes it over: alice is told who, and types no more
    with pytest.raises(ConsoleBusy):
        await c.acquire("carol")
    await c.acquire("carol", force=True)
    await wait_until(lambda: ("takeover", "carol (ssh)") in seen_a.kinds(), WAIT, "alice told of the takeover")
    assert ("takeover", "carol") in seen_c.kinds()
    assert c.holder == "carol"
    await wait_until(lambda: a.holder == "carol (ssh)" and d.holder == "carol (ssh)", WAIT,
                     "alice and dave told carol holds it")  # each in a message of its own
    with pytest.raises(ConsoleBusy, match=r"carol \(ssh\) holds it"):
        await a.write("alice", b"x")
    mark = len(seen_d.out)
    await c.write("carol", b"core\r")
    await wait_until(lambda: b"Password: " in seen_d.out[mark:], WAIT, "dave to see what carol typed")


def console_entries(node: str, *names: str) -> list[tuple[str, str, str]]:
    """(operator, step, detail) of the site journal's console entries of ``node`` by ``names``."""
    return [(e["operator"], e["step"], e["detail"] or "") for e in read_entries("svccon", node=node, limit=0)
            if e["action"] == "console" and e["operator"] in names]


async def test_the_service_journals_a_forced_takeover_naming_both(service, brokers):
    """The service writes the console entries, under the names it authenticated: whatever
    the clients do (here they journal nothing), and when one's connection just ends."""
    node = "sc-n05"
    erin, frank = await brokers("erin", "operator"), await brokers("frank", "admin")
    e, f = await erin.session(node), await frank.session(node)
    await e.acquire("erin")
    with pytest.raises(ConsoleBusy):
        await f.acquire("frank")
    await f.acquire("frank", force=True)
    await wait_until(lambda: e.holder == "frank (ssh)", WAIT, "erin told of the takeover")
    await f.release("frank")
    await erin.close()  # erin's connection ends without a word: the service says she left
    await wait_until(lambda: ("erin (ssh)", "detach") in [x[:2] for x in console_entries(node, "erin (ssh)")],
                     WAIT, "erin's detach journalled")
    await frank.close()
    await wait_until(lambda: ("frank (ssh)", "detach") in [x[:2] for x in console_entries(node, "frank (ssh)")],
                     WAIT, "frank's detach journalled")
    got = console_entries(node, "erin (ssh)", "frank (ssh)")
    description = e.description
    assert got == [
        ("erin (ssh)", "watch", description),
        ("frank (ssh)", "watch", description),
        ("erin (ssh)", "attach", description),
        ("frank (ssh)", "takeover", "from erin (ssh)"),
        ("frank (ssh)", "attach", description),
        ("frank (ssh)", "release", "no longer the writer; still watching"),
        ("erin (ssh)", "detach", "connection ended: disconnected"),
        ("frank (ssh)", "detach", "connection ended: disconnected"),
    ], got


async def test_a_client_that_leaves_lets_the_console_go(service, brokers):
    alice, bob = await brokers("alice", "operator"), await brokers("bob", "viewer")
    a, b = await alice.session("sc-n04"), await bob.session("sc-n04")
    seen_b = Seen(b)
    await a.acquire("alice")
    await alice.close()  # the connection ends: the service lets go of what it held
    assert a.state == "closed"
    await wait_until(lambda: ("detach", "alice (ssh)") in seen_b.kinds(), WAIT, "bob told alice left")
    assert b.holder is None and service.consoles.holders() == {}


async def test_a_broker_whose_connection_broke_connects_again(service, brokers):
    gina = await brokers("gina", "viewer")
    g = await gina.session("sc-n06")
    seen = Seen(g)
    for s in [s for s in service._sessions.values() if s.identity.name == "gina"]:
        s.writer.transport.abort()  # the connection breaks, no Bye
    await wait_until(lambda: g.state == "closed", WAIT, "the session closed")
    assert seen.events[-1].kind == "closed" and "site service" in seen.events[-1].detail
    again = await gina.session("sc-n06")  # the next use connects again
    assert again is not g and again.state == "open", again.error
    assert [s.identity.name for s in service._sessions.values()].count("gina") == 1


async def test_the_service_stopping_closes_every_console(site_lab, brokers, service):
    alice = await brokers("alice", "operator")
    a = await alice.session("sc-n05")
    seen = Seen(a)
    await service.stop("maintenance")
    await wait_until(lambda: a.state == "closed", WAIT, "the console to close")
    assert any(e.kind == "closed" and "maintenance" in e.detail for e in seen.events), seen.kinds()
    assert service.consoles.broker.sessions() == {}


# ------------------------------------------------------------------ slow clients
async def test_a_slow_client_gets_the_newest_output_and_a_note(service, monkeypatch):
    """A client whose queue is full is not sent console output: it waits, bounded (the
    oldest dropped and counted), and the client is never dropped for it."""
    monkeypatch.setattr(consoles_mod, "VIEW_BUFFER", 4096)
    token = service.tokens.issue(Identity("slow", "viewer", "ssh"))
    got: list[p.ConsoleOutput] = []
    raw = ServiceClient(service.socket_path, token=token)
    await raw.connect()
    raw._reader = consoles_mod._ConsoleLines(raw._reader, lambda m: got.append(m)
                                             if isinstance(m, p.ConsoleOutput) else None)
    try:
        await raw.request(p.ConsoleOpen(id=0, node="sc-n06"))
        (session,) = [s for s in service._sessions.values() if s.identity.name == "slow"]
        view = service.consoles._views[(session.id, "sc-n06")]
        # the client looks slow: its queue holds QUEUE_ROOM messages already
        hold = [p.Bye(reason="x")] * consoles_mod.QUEUE_ROOM
        real_qsize = session.queue.qsize
        session.queue.qsize = lambda: real_qsize() + len(hold)  # type: ignore[method-assign]
        for i in range(100):
            view.feed(f"line {i:04d} {'x' * 90}\r\n".encode())
        await asyncio.sleep(0)  # the flush ran: nothing sent, the buffer bounded
        assert view.size <= 4096 and view.dropped > 0
        dropped = view.dropped
        hold.clear()  # the client caught up
        await wait_until(lambda: any(b"line 0099" in base64.b64decode(m.data) for m in got), WAIT,
                         "the newest output to arrive")
        assert sum(m.dropped for m in got) >= dropped
        assert session.dropped is None  # still connected
    finally:
        await raw.close()


# ------------------------------------------------------------------ the command on a pty
@pytest.fixture
def cli_env(site_lab, tmp_path) -> dict[str, str]:
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")
    e["FLEET_CONSOLE_LOCKS"] = str(tmp_path / "locks")
    for key in ("FLEET_CONSOLE_DEBUG", "FLEET_CONSOLE_READ_ONLY", "FLEET_OPERATOR"):
        e.pop(key, None)
    return e


async def test_console_command_attaches_through_the_service(service, brokers, site_file, cli_env, site_lab):
    watcher = await brokers("bob", "viewer")
    w = await watcher.session("sc-n01")
    seen = Seen(w)
    token = service.tokens.issue(Identity("alice", "operator", "ssh"))
    env = {**cli_env, p.SERVICE_ENV: str(service.socket_path), p.TOKEN_ENV: token}

    before = len(console_entries("sc-n01", "alice (ssh)"))
    t = Term(SimpleNamespace(site_file=str(site_file)), env, "console", "sc-n01")
    try:
        await asyncio.to_thread(t.expect, rb"via service \(pid \d+\) as alice \(operator\)")
        await asyncio.to_thread(t.expect, rb"Connected to sc-n01 \(IPMI SOL")
        await wait_until(lambda: service.consoles.holders().get("sc-n01") is not None, WAIT, "alice to hold it")
        # bob's session hears of the new holder in a message of its own, after the service knows
        await wait_until(lambda: w.holder == "alice (ssh)", WAIT, "bob told alice holds it")
        assert site_lab.sessions()["ipmi"] == 1  # the command opened no SOL session of its own
        t.type(b"\r")
        await asyncio.to_thread(t.expect, rb"login: ")
        await wait_until(lambda: b"login: " in seen.out, WAIT, "bob to see the prompt alice asked for")
        t.type(b"\r~.")
        assert await asyncio.to_thread(t.wait) == 0
        assert b"Left sc-n01's console." in t.out
    finally:
        await asyncio.to_thread(t.close)
    await wait_until(lambda: ("detach", "alice (ssh)") in seen.kinds(), WAIT, "bob told alice left")
    # the service journalled the attach, once; the command journalled nothing of its own
    await wait_until(lambda: [x[1] for x in console_entries("sc-n01", "alice (ssh)")[before:]]
                     == ["watch", "attach", "release", "detach"], WAIT, "the service's entries")
    assert not (Path(cli_env["XDG_STATE_HOME"]) / "fleet-console" / "svccon" / "journal.jsonl").exists()


async def test_console_command_as_a_viewer_watches(service, site_file, cli_env):
    token = service.tokens.issue(Identity("bob", "viewer", "ssh"))
    env = {**cli_env, p.SERVICE_ENV: str(service.socket_path), p.TOKEN_ENV: token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli.main", "--site", str(site_file), "console", "sc-n02",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(b"root\n"), 60)
    assert proc.returncode == 0, err
    assert b"bob is a viewer in the site service" in err
    assert service.consoles.holders() == {}


# ------------------------------------------------------------------ the boot server
BOOT_SITE = """\
site: svcboot
images:
  - {{name: flatcar, version: "1.0", kernel: http://127.0.0.1/k, initrd: http://127.0.0.1/i}}
provisioner: {{kind: ipxe, url: "http://127.0.0.1:9", listen: "127.0.0.1:0", root: "{root}"}}
racks:
  - name: r1
    nodes:
      - name: sb-n1
        u: 1
        mac: "52:54:00:94:00:01"
        bmc: {{protocol: redfish, scheme: http, address: 127.0.0.1, port: 9, username: admin,
              password: env:SVCBOOT_PW}}
"""


def test_serve_serves_the_boot_scripts_until_it_stops(tmp_path, cli_env):
    root = tmp_path / "boot"
    root.mkdir(mode=0o755)
    (root / "52-54-00-94-00-01.ipxe").write_text("#!ipxe\nchain http://127.0.0.1/k\n")
    site_file = tmp_path / "svcboot.yaml"
    site_file.write_text(BOOT_SITE.format(root=root))
    env = {**cli_env, "SVCBOOT_PW": "x"}
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", str(site_file), "serve"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        port = None
        while port is None:
            line = proc.stderr.readline()
            assert line, ("serve ended early", lines, proc.wait(10))
            lines.append(line)
            m = re.search(r"boot server: serving boot scripts from .* on http://127\.0\.0\.1:(\d+)/boot/", line)
            if m:
                port = int(m.group(1))
        while not any("site service for svcboot on" in x for x in lines):
            line = proc.stderr.readline()
            assert line, lines
            lines.append(line)
        r = httpx.get(f"http://127.0.0.1:{port}/boot/52-54-00-94-00-01.ipxe", timeout=10)
        assert r.status_code == 200 and r.text.startswith("#!ipxe")
        assert httpx.get(f"http://127.0.0.1:{port}/boot/52-54-00-94-00-99.ipxe", timeout=10).status_code == 404
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
        assert proc.returncode == 0, rest
        assert "boot server stopped" in rest
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/boot/52-54-00-94-00-01.ipxe", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_serve_says_where_the_boot_scripts_are_served(monkeypatch):
    """A simulated site's lab serves them; a site without provisioner.listen is served elsewhere."""
    import console.cli.serve_cmd as serve_cmd

    class Ctx:
        def __init__(self, site) -> None:
            self.site = site

    messages: list[str] = []
    monkeypatch.setattr(serve_cmd, "_err", messages.append)
    site = sites.load("demo")
    for each in (site, site.model_copy(update={"lab": None})):
        task, _stop = await serve_cmd._start_boot_server(Ctx(each))
        assert task is None
    assert "the lab serves the boot scripts at http://127.0.0.1:8069" in messages[0]
    assert "no provisioner.listen" in messages[1]


# ------------------------------------------------------------------ the TUI's panes
async def test_tui_panes_use_the_service_console(service, brokers, site_lab):
    """In service mode the app's consoles are the service's: alice types in a pane, bob (a
    viewer elsewhere) sees it and who types; no SOL session of the app's own."""
    import functools

    from console.service.client import ServicePollSource
    from screens.app import make_app
    from screens.console import ConsolePane, ConsoleScreen

    bob = await brokers("bob", "viewer")
    b = await bob.session("sc-n05")
    seen_b = Seen(b)
    token = service.tokens.issue(Identity("alice", "operator", "ssh"))
    app = make_app(service.ctx, poller=functools.partial(ServicePollSource, path=service.socket_path, token=token),
                   mode="via service (test)", operator="alice")
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ConsoleScreen(["sc-n05"]))
        await pilot.pause()
        pane = app.screen.query_one(ConsolePane)
        await wait_until(lambda: pane.session is not None and pane.session.state == "open", WAIT, "the console")
        assert isinstance(app.consoles, RemoteConsoleBroker)
        await pilot.press("t")
        await wait_until(lambda: pane.typing, WAIT, "typing")
        assert pane.session.holder == "alice"
        await wait_until(lambda: b.holder == "alice (ssh)", WAIT, "the other client told alice holds it")
        await pilot.press("enter")
        await wait_until(lambda: "sc-n05 login:" in pane.view.text(), WAIT, "the login prompt in the pane")
        await wait_until(lambda: b"login: " in seen_b.out, WAIT, "bob to see it")
        assert site_lab.sessions()["ipmi"] == 1
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(lambda: not pane.typing and b.holder is None, WAIT, "typing stopped")
        await app.action_quit()
