"""The SSH front door (console/service/sshfront.py) with asyncssh as the client.

A real server on 127.0.0.1 (ephemeral port) in front of a stand-in service (its
session tokens and socket path); the sessions run ``sshfront_child.py`` in place of
fleet-console (see that file), except where the real command line is the point.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
import types
from pathlib import Path

import asyncssh
import pytest

from console.service.identity import Identity, SessionTokens
from console.service.sshfront import ExecRefused, SshFront, SshFrontError, exec_argv, load_host_key
from tests.support import ended, wait_until

CHILD = [sys.executable, str(Path(__file__).with_name("sshfront_child.py"))]


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
def keys() -> dict[str, asyncssh.SSHKey]:
    return {name: _key() for name in ("alice", "bob", "carol", "stranger")}


def write_operators(path: Path, keys: dict[str, asyncssh.SSHKey], limits: str = "",
                    who: tuple[tuple[str, str], ...] = (("alice", "operator"), ("bob", "viewer"))) -> Path:
    lines = ["operators:"]
    for name, role in who:
        pub = keys[name].export_public_key().decode().strip()
        lines.append(f'  - {{name: {name}, role: {role}, keys: ["{pub} {name}@laptop"]}}')
    if limits:
        lines.append(f"limits: {{{limits}}}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)  # a new inode: the front door sees the change whatever the clock says
    return path


class Front:
    """A started SshFront and what the tests need of it."""

    def __init__(self, tmp: Path, keys: dict[str, asyncssh.SSHKey], limits: str = "", **kw) -> None:
        self.keys = keys
        self.service = types.SimpleNamespace(tokens=SessionTokens(), socket_path=tmp / "service.sock")
        self.ops = write_operators(tmp / "operators.yaml", keys, limits)
        self.state = tmp / "state"
        kw.setdefault("command", CHILD)
        kw.setdefault("site", "demo")
        self.front = SshFront(self.service, "127.0.0.1:0", self.ops, self.state, **kw)
        self.conns: list[asyncssh.SSHClientConnection] = []

    async def connect(self, name: str = "alice", key: str | None = None, **kw) -> asyncssh.SSHClientConnection:
        kw.setdefault("client_keys", [self.keys[key or name]])
        conn = await asyncssh.connect("127.0.0.1", self.front.bound_port, username=name, known_hosts=None,
                                      agent_path=None, config=None, **kw)
        self.conns.append(conn)
        return conn

    async def close(self) -> None:
        for conn in self.conns:
            conn.close()
        await self.front.stop("test over")


@pytest.fixture
async def front(tmp_path: Path, keys):
    f = Front(tmp_path, keys, "sessions_per_operator: 2, sessions_total: 3")
    await f.front.start()
    yield f
    await f.close()


async def read_until(stream, marker: str, timeout: float = 30.0) -> str:
    """What ``stream`` gave until ``marker`` appeared (fails after ``timeout`` without it)."""
    seen = ""

    async def more() -> None:
        nonlocal seen
        while marker not in seen:
            chunk = await stream.read(4096)
            if not chunk:
                raise AssertionError(f"stream ended before {marker!r}: {seen!r}")
            seen += chunk if isinstance(chunk, str) else chunk.decode("utf-8", "replace")

    await asyncio.wait_for(more(), timeout)
    return seen


# --- authentication ------------------------------------------------------------------------


async def test_key_accepted_and_exec_runs_as_the_operator(front):
    conn = await front.connect("alice")
    result = await conn.run("status env", check=False)
    assert result.exit_status == 0, result.stderr
    env = json.loads(result.stdout)
    assert env["FLEET_SERVICE"] == str(front.service.socket_path)
    assert env["FLEET_OPERATOR"] == "alice"
    assert env["FLEET_CONSOLE_READ_ONLY"] is None
    assert env["tty"] is False and env["TERM"] is None
    assert env["args"] == ["--site", "demo", "status", "env"]
    # the token was the operator's while the command ran, and is worthless now
    assert front.service.tokens.resolve(env["FLEET_SERVICE_TOKEN"]) is None
    assert len(front.service.tokens) == 0


async def test_the_token_names_the_operator_while_the_session_lives(front):
    conn = await front.connect("alice")
    proc = await conn.create_process(term_type="xterm", term_size=(80, 24))
    await read_until(proc.stdout, "FAKE-CONSOLE")
    (token,) = list(front.service.tokens._by_token)
    assert front.service.tokens.resolve(token) == Identity("alice", "operator", "ssh")
    [info] = front.front.sessions()
    assert (info.identity.name, info.kind) == ("alice", "console") and info.pid
    proc.stdin.write("q\n")
    await proc.wait_closed()
    await wait_until(lambda: len(front.service.tokens) == 0 and not front.front.sessions(), what="token revoked")


async def test_viewer_runs_read_only(front):
    conn = await front.connect("bob")
    env = json.loads((await conn.run("status env", check=True)).stdout)
    assert env["FLEET_OPERATOR"] == "bob" and env["FLEET_CONSOLE_READ_ONLY"] == "1"


async def test_unknown_key_refused_and_logged_by_fingerprint(front, caplog):
    caplog.set_level(logging.WARNING, logger="console.service.sshfront")
    stranger = front.keys["stranger"]
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("alice", key="stranger")
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("mallory", key="stranger")
    text = caplog.text
    assert stranger.get_fingerprint() in text
    assert "refused" in text and "unknown user 'mallory'" in text
    body = stranger.export_public_key().decode().split()[1]
    assert body not in text  # the fingerprint, never the key


async def test_another_operators_key_is_refused(front):
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("alice", key="bob")


async def test_passwords_and_keyboard_interactive_refused(front):
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("alice", client_keys=None, password="secret", kbdint_auth=True,
                            public_key_auth=False)


async def test_operators_file_reloaded_when_it_changes(front):
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("carol")
    alice = await front.connect("alice")
    proc = await alice.create_process(term_type="xterm", term_size=(80, 24))
    await read_until(proc.stdout, "FAKE-CONSOLE")
    write_operators(front.ops, front.keys, who=(("carol", "admin"),))
    carol = await front.connect("carol")  # read again at this login
    assert json.loads((await carol.run("status env", check=True)).stdout)["FLEET_OPERATOR"] == "carol"
    # alice was removed: her open console is told and closed
    out = await read_until(proc.stdout, "access was removed")
    assert "operators file" in out
    await asyncio.wait_for(proc.wait_closed(), 30)
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("alice")


async def test_a_bad_operators_file_keeps_the_last_good_one(front, caplog):
    front.ops.write_text("operators: [{name: alice, role: boss, keys: []}]\n")
    with pytest.raises(asyncssh.PermissionDenied):
        await front.connect("bob", key="alice")
    conn = await front.connect("alice")  # still the file read at start
    assert (await conn.run("status exit 0", check=False)).exit_status == 0
    assert "keeping the operators loaded before" in caplog.text
    assert "role must be viewer, operator or admin" in caplog.text


async def test_sighup_reloads(front):
    write_operators(front.ops, front.keys, who=(("carol", "operator"),))
    front.front.reload()
    assert "carol" in front.front.operators.operators


# --- host key ------------------------------------------------------------------------------


async def test_host_key_generated_0600_and_kept(front):
    path = front.state / "ssh_host_ed25519_key"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert stat.S_IMODE(front.state.stat().st_mode) == 0o700
    conn = await front.connect("alice")
    served = conn.get_server_host_key()
    assert served is not None
    assert served.public_data == load_host_key(front.state).public_data


def test_host_key_open_to_others_refused(tmp_path):
    load_host_key(tmp_path / "k")
    key = tmp_path / "k" / "ssh_host_ed25519_key"
    key.chmod(0o644)
    with pytest.raises(SshFrontError, match="chmod 600"):
        load_host_key(tmp_path / "k")


def test_host_key_symlink_refused(tmp_path):
    load_host_key(tmp_path / "real")
    (tmp_path / "other").mkdir(mode=0o700)
    (tmp_path / "other" / "ssh_host_ed25519_key").symlink_to(tmp_path / "real" / "ssh_host_ed25519_key")
    with pytest.raises(SshFrontError, match="symbolic link"):
        load_host_key(tmp_path / "other")


def test_bad_listen_is_a_clear_error(tmp_path, keys):
    service = types.SimpleNamespace(tokens=SessionTokens(), socket_path=tmp_path / "s")
    for listen in ("2222", "host:port", "127.0.0.1:70000"):
        with pytest.raises(SshFrontError, match="--listen"):
            SshFront(service, listen, tmp_path / "ops.yaml", tmp_path / "state")


async def test_start_with_a_bad_operators_file_says_where(tmp_path, keys):
    ops = tmp_path / "ops.yaml"
    ops.write_text("operators:\n  - {name: alice, role: operator, keys: ['ssh-ed25519 AAAAnotakey']}\n")
    ops.chmod(0o600)
    service = types.SimpleNamespace(tokens=SessionTokens(), socket_path=tmp_path / "s")
    front = SshFront(service, "127.0.0.1:0", ops, tmp_path / "state")
    with pytest.raises(SshFrontError, match=r"ops.yaml:2:\d+: operators\[0\].keys\[0\]: not a public key"):
        await front.start()


# --- shells --------------------------------------------------------------------------------


async def test_shell_gets_a_pty_of_the_clients_size_and_resizes(front):
    conn = await front.connect("alice")
    proc = await conn.create_process(term_type="xterm-256color", term_size=(100, 30))
    out = await read_until(proc.stdout, "size=100x30")
    assert "FAKE-CONSOLE site=demo" in out
    proc.change_terminal_size(132, 43)
    await read_until(proc.stdout, "SIZE 132x43")
    proc.stdin.write("hello\n")
    await read_until(proc.stdout, "GOT hello")
    proc.stdin.write("q\n")
    await asyncio.wait_for(proc.wait_closed(), 30)
    assert proc.exit_status == 0


async def test_shell_without_a_pty_is_refused_with_a_message(front):
    conn = await front.connect("alice")
    result = await conn.run(check=False)  # no command, no terminal: ssh -T
    assert result.exit_status == 2
    assert "needs a terminal" in result.stderr and "ssh -t" in result.stderr
    assert len(front.service.tokens) == 0


async def test_dropped_connection_kills_the_child_and_revokes(front):
    conn = await front.connect("alice")
    proc = await conn.create_process(term_type="xterm", term_size=(80, 24))
    out = await read_until(proc.stdout, " size=")
    pid = int(out.split("pid=")[1].split()[0])
    conn.abort()
    await wait_until(lambda: ended(pid), what="the child ended")
    await wait_until(lambda: len(front.service.tokens) == 0 and not front.front.sessions(), what="revoked")


# --- exec ----------------------------------------------------------------------------------


async def test_exec_exit_status_stdin_and_stderr(front):
    conn = await front.connect("alice")
    result = await conn.run("status exit 3", check=False)
    assert (result.exit_status, result.stderr) == (3, "bye\n")
    result = await conn.run("status cat", input="hello", check=False)
    assert (result.exit_status, result.stdout) == (0, "HELLO")


async def test_exec_with_a_pty_is_on_a_terminal(front):
    conn = await front.connect("alice")
    result = await conn.run("status env", term_type="vt100", term_size=(90, 25), check=False)
    env = json.loads(result.stdout.strip().splitlines()[-1])
    assert env["tty"] is True and env["TERM"] == "vt100"


@pytest.mark.parametrize("command, why", [
    ("rm -rf /", "'rm' is not a command"),
    ("status; rm -rf /", "'status;' is not a command"),
    ("--site /etc/passwd status", "not a command"),
    ("status --site other", "--site is not accepted"),
    ("status --si=other", "--site is not accepted"),
    ("audit --csv /tmp/x", "--csv -"),
    ("status 'unclosed", "cannot split"),
    ("serve", "'serve' is not a command"),
    ("lab", "'lab' is not a command"),
])
async def test_exec_refuses_what_is_not_a_command(front, command, why):
    conn = await front.connect("alice")
    result = await conn.run(command, check=False)
    assert result.exit_status == 2
    assert why in result.stderr and result.stderr.startswith("fleet-console: refused:")


def test_exec_argv_accepts_commands_and_global_flags():
    assert exec_argv("status --json") == ["status", "--json"]
    assert exec_argv("fleet-console --read-only power off 'rack=r01'") == ["--read-only", "power", "off", "rack=r01"]
    assert exec_argv("audit --csv -") == ["audit", "--csv", "-"]
    assert exec_argv("--version") == ["--version"]
    with pytest.raises(ExecRefused, match="control characters"):
        exec_argv("status\x1b[2J")


async def test_exec_runs_the_real_command_line(tmp_path, keys):
    """No stand-in: the session runs this Python's fleet-console, as serve does."""
    f = Front(tmp_path, keys, command=None)
    await f.front.start()
    try:
        conn = await f.connect("alice")
        result = await conn.run("validate --json", check=False)
        assert result.exit_status == 0, result.stderr
        assert json.loads(result.stdout)["site"] == "demo"
        result = await conn.run("--version", check=False)
        assert result.exit_status == 0 and result.stdout.startswith("fleet-console")
    finally:
        await f.close()


# --- limits and lifecycle ------------------------------------------------------------------


async def test_sessions_per_operator_and_in_total(front):
    alice = await front.connect("alice")
    procs = []
    for _ in range(2):
        p = await alice.create_process(term_type="xterm", term_size=(80, 24))
        await read_until(p.stdout, "FAKE-CONSOLE")
        procs.append(p)
    third = await alice.create_process(term_type="xterm", term_size=(80, 24))
    out = await read_until(third.stdout, "close one first")
    assert "alice already has 2 sessions" in out
    await asyncio.wait_for(third.wait_closed(), 30)
    assert third.exit_status == 1
    bob = await front.connect("bob")
    p = await bob.create_process(term_type="xterm", term_size=(80, 24))
    await read_until(p.stdout, "FAKE-CONSOLE")
    procs.append(p)
    result = await bob.run("status env", check=False)  # a fourth session: the total is 3
    assert result.exit_status == 1 and "limits.sessions_total" in result.stderr
    procs[0].stdin.write("q\n")
    await asyncio.wait_for(procs[0].wait_closed(), 30)
    await wait_until(lambda: len(front.front.sessions()) == 2, what="a session freed")
    assert (await bob.run("status exit 0", check=False)).exit_status == 0


async def test_idle_session_is_told_and_closed(tmp_path, keys):
    f = Front(tmp_path, keys, "idle_minutes: 0.005")  # 0.3 s
    await f.front.start()
    try:
        conn = await f.connect("alice")
        proc = await conn.create_process(term_type="xterm", term_size=(80, 24))
        out = await read_until(proc.stdout, " size=")
        pid = int(out.split("pid=")[1].split()[0])
        out = await read_until(proc.stdout, "without input")
        assert "closed after 0.005 minutes without input" in out
        await asyncio.wait_for(proc.wait_closed(), 30)
        assert ended(pid)
        assert len(f.service.tokens) == 0
    finally:
        await f.close()


async def test_stop_tells_every_session_and_ends_its_child(front):
    alice = await front.connect("alice")
    bob = await front.connect("bob")
    shells = []
    for conn in (alice, bob):
        p = await conn.create_process(term_type="xterm", term_size=(80, 24))
        out = await read_until(p.stdout, " size=")
        shells.append((p, int(out.split("pid=")[1].split()[0])))
    await front.front.stop("maintenance at 02:00")
    for p, pid in shells:
        out = await read_until(p.stdout, "this session ends")
        assert "the site service is stopping (maintenance at 02:00)" in out
        await asyncio.wait_for(p.wait_closed(), 30)
        assert ended(pid)
    assert len(front.service.tokens) == 0
    with pytest.raises(OSError):
        await front.connect("alice")
