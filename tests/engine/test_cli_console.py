"""`fleet-console console NODE` as an operator runs it: a child process on a pseudo-terminal,
attached over real IPMI SOL to the lab's BMCs.

The lab runs in the test process and publishes its state, so each `fleet-console`
child finds it as it finds a `fleet-console lab` started elsewhere.  The test keeps
the terminal's slave side open, so it can compare the terminal's settings before the
attach and after the child is gone.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pytest

from console import site as sites
from console.ops.journal import read_entries
from tests import cli_fork

SITE_YAML = """\
site: contest
description: small lab site for the serial-console command tests
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
      - name: con-r01-n[01-07]
        u: "[1-7]"
        mac: "52:54:00:71:00:[01-07]"
        host: 127.2.71.[1-7]
        bmc: {address: "127.1.71.[1-7]"}
  - name: r02
    nodes:
      - name: con-r02-n01
        u: 1
        mac: "52:54:00:72:00:01"
        host: 127.2.72.1
        bmc: {protocol: redfish, scheme: http, address: 127.1.72.1}
      - name: con-r02-n02
        u: 2
        mac: "52:54:00:72:00:02"
        host: 127.2.72.2
        bmc: {protocol: redfish, scheme: http, address: 127.1.72.2,
              console: {kind: ssh, port: 2200, known_hosts: "lab:known_hosts"}}
lab:
  sol_faults: {con-r01-n05: held, con-r01-n07: drop}
"""

TIME_SCALE = 0.02
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    from console.lab.lab import Lab
    from console.lab.state import write_state

    directory = tmp_path_factory.mktemp("consolesite")
    path = directory / "contest.yaml"
    path.write_text(SITE_YAML)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=TIME_SCALE) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One state directory for the module: the console logs of one test are read by another."""
    state = tmp_path_factory.mktemp("consolestate")
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(state / "state")
    e["FLEET_CONSOLE_LOCKS"] = str(state / "locks")
    e["FLEET_OPERATOR"] = "tester"
    for key in ("FLEET_CONSOLE_DEBUG", "FLEET_CONSOLE_READ_ONLY"):
        e.pop(key, None)
    return e


def journal(env, node):
    path = Path(env["XDG_STATE_HOME"]) / "fleet-console" / "contest" / "journal.jsonl"
    return [(e["operator"], e["action"], e["step"]) for e in read_entries("contest", path=path, limit=0, node=node)]


def cli(lab, env, *args, stdin=subprocess.DEVNULL, input=None, timeout=TIMEOUT):
    return cli_fork.run(["--site", lab.site_file, *args],
                          capture_output=True, env=env, stdin=None if input is not None else stdin,
                          input=input, timeout=timeout)


class Term:
    """A `fleet-console` child on a pseudo-terminal of 80x24: what it printed, what to type."""

    def __init__(self, lab, env, *args: str) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, *args],
                                     stdin=self.slave, stdout=self.slave, stderr=self.slave, env=env,
                                     close_fds=True, start_new_session=True)
        self.out = b""
        self.seen = 0  # expect() looks from here on

    def _pump(self, wait: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            self.out += chunk

    def expect(self, pattern: bytes, timeout: float = TIMEOUT) -> bytes:
        """Wait until ``pattern`` (a regex) is printed after what the last expect() matched."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.out, self.seen)
            if m:
                self.seen = m.end()
                return m.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; printed: {self.out[-2000:]!r}")
            if self.proc.poll() is not None:
                self._pump(0)
                if not rx.search(self.out, self.seen):
                    raise AssertionError(f"exited {self.proc.returncode} before {pattern!r}: {self.out[-2000:]!r}")
            self._pump(0.1)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.1)
        self._pump(0)
        return self.proc.wait(1)

    def attrs(self):
        return termios.tcgetattr(self.slave)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def term(lab, env):
    started: list[Term] = []

    def start(*args: str) -> Term:
        t = Term(lab, env, *args)
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


def login(t: Term, lab, node: str) -> None:
    t.type(b"\r")  # a fresh prompt, whatever the replay ended with
    t.expect(rb"login: ")
    t.type(b"core\r")
    t.expect(rb"Password: ")
    t.type(lab.secrets["ssh"].encode() + b"\r")
    t.expect(rb"Last login")
    t.expect(rf"core@{node}:~\$ ".encode())


# --------------------------------------------------------------------------- attach, log in, leave
def test_attach_log_in_and_leave_with_the_terminal_restored(lab, env, term):
    node = "con-r01-n01"
    t = term("console", node)
    t.expect(rb"Connected to con-r01-n01 \(IPMI SOL [0-9.:]+\)\. Escape: ~\. leave, ~B break, ~\? help")
    t.expect(rb"login: ")
    raw = t.attrs()
    assert raw != t.before and not raw[3] & termios.ICANON and not raw[3] & termios.ECHO  # raw mode
    login(t, lab, node)
    t.type(b"hostname\r")
    t.expect(rb"hostname\r\n" + node.encode() + rb"\r\n")
    t.type(b"~.")
    t.expect(rb"Left con-r01-n01's console\.")
    assert t.wait() == 0
    assert t.attrs() == t.before
    assert lab.secrets["ssh"].encode() not in t.out  # the password was typed, never shown
    assert journal(env, node)[-2:] == [("tester", "console", "attach"), ("tester", "console", "detach")]


def test_a_tilde_mid_line_is_typed_and_a_break_reaches_the_kernel(lab, term):
    node = "con-r01-n02"
    t = term("console", node)
    t.expect(rb"Connected to")
    login(t, lab, node)
    t.type(b"echo a~.b ~B~?\r")  # mid-line: every ~ is text
    t.expect(rb"echo a~\.b ~B~\?\r\n-bash: echo: command not found")
    t.type(b"~~x\r")  # at the start of a line, ~~ sends one ~
    t.expect(rb"-bash: ~x: command not found")
    t.type(b"~?")
    t.expect(rb"~B  send a serial break")
    t.type(b"~B")
    t.expect(rb"SysRq : HELP")
    assert b"[fleet-console: break sent]" in t.out
    t.type(b"\r~.")
    assert t.wait() == 0
    assert t.attrs() == t.before


def test_an_ssh_console_attaches_the_same_way(lab, env, term):
    node = "con-r02-n02"  # a Redfish BMC with an SSH console, as OpenBMC's port 2200
    t = term("console", node)
    t.expect(rb"Connected to con-r02-n02 \(SSH [^)]*\)\. Escape: ~\. leave")
    login(t, lab, node)
    t.type(b"uname -a\r")
    t.expect(rb"Linux con-r02-n02 ")
    t.type(b"~B")
    t.expect(rb"SysRq : HELP")
    t.type(b"\r~.")
    t.expect(rb"Left con-r02-n02's console\.")
    assert t.wait() == 0
    assert t.attrs() == t.before
    assert journal(env, node)[-2:] == [("tester", "console", "attach"), ("tester", "console", "detach")]


def test_sigterm_leaves_and_restores_the_terminal(lab, term):
    t = term("console", "con-r01-n03")
    t.expect(rb"login: ")
    os.kill(t.proc.pid, signal.SIGTERM)
    t.expect(rb"Left con-r01-n03's console\.")
    assert t.wait() == 128 + signal.SIGTERM
    assert t.attrs() == t.before


def test_a_hung_up_terminal_ends_the_attach(lab, term):
    t = term("console", "con-r01-n03")
    t.expect(rb"login: ")
    os.killpg(t.proc.pid, signal.SIGHUP)  # what the kernel sends when the terminal goes away
    assert t.wait() == 128 + signal.SIGHUP
    assert t.attrs() == t.before


def test_a_dropped_console_is_said_and_comes_back(lab, term):
    t = term("console", "con-r01-n07")  # its BMC ends every SOL session after a second
    t.expect(rb"login: ")
    t.expect(rb"\r\n\[fleet-console: console lost: [^\]]*; reconnecting\]\r\n")
    t.expect(rb"\r\n\[fleet-console: console back: IPMI SOL [0-9.:]+\]\r\n")
    t.type(b"~.")
    assert t.wait() == 0
    assert t.attrs() == t.before


# --------------------------------------------------------------------------- scripts, watchers
def test_without_a_terminal_lines_are_sent_and_it_leaves_when_input_ends(lab, env):
    node = "con-r01-n04"
    script = f"\ncore\n{lab.secrets['ssh']}\nhostname\n".encode()
    r = cli(lab, env, "console", node, input=script)
    assert r.returncode == 0, r.stderr
    assert f"core@{node}:~$ hostname\r\n{node}\r\n".encode() in r.stdout
    assert b"Connected to con-r01-n04 (IPMI SOL" in r.stderr and b"Left con-r01-n04's console." in r.stderr
    assert b"Connected to" not in r.stdout  # stdout is the console's output only


def test_read_only_watches_and_sends_no_key(lab, env, term):
    node = "con-r01-n04"
    t = term("--read-only", "console", node)
    t.expect(rb"Watching read-only \(--read-only was given\): keys are not sent\.")
    t.expect(rb"login: ")
    t.type(b"core\r")
    t.expect(rb"\[fleet-console: read-only \(--read-only was given\): keys are not sent; ~\. leaves\]")
    t.type(b"~.")
    assert t.wait() == 0
    assert b"Password:" not in t.out[t.seen:]
    assert journal(env, node)[-2:] == [("tester", "console", "watch"), ("tester", "console", "detach")]


# --------------------------------------------------------------------------- held consoles
def test_a_takeover_in_the_same_process_demotes_the_attached_writer(lab):
    """The TUI's case: one broker, a terminal attached as alice, a pane of bob's forces it."""
    import asyncio

    from console.secrets import Secrets
    from console.serial.attach import attach_session
    from console.serial.broker import ConsoleBroker
    from console.site import SiteContext

    async def scenario():
        loop = asyncio.get_running_loop()
        master, slave = pty.openpty()
        before = termios.tcgetattr(slave)
        printed = bytearray()
        grew = asyncio.Event()

        def on_readable():
            try:
                printed.extend(os.read(master, 65536))
            except OSError:
                return
            grew.set()

        async def expect(text: bytes):
            while text not in printed:
                grew.clear()
                await asyncio.wait_for(grew.wait(), TIMEOUT)

        loop.add_reader(master, on_readable)
        broker = ConsoleBroker(SiteContext(lab.effective_site(), Secrets(lab=lab.secrets)), log=False)
        try:
            session = await broker.session("con-r01-n03")
            attached = loop.create_task(attach_session(session, who="alice", stdin=slave, stdout=slave, stderr=slave))
            await expect(b"Connected to con-r01-n03")
            await expect(b"login: ")
            await session.acquire("bob", force=True)
            await expect(b"[fleet-console: bob took the console over; watching read-only now (~. leaves)]")
            os.write(master, b"x")
            await expect(b"keys are not sent; ~. leaves]")
            os.write(master, b"\r~.")
            result = await asyncio.wait_for(attached, TIMEOUT)
            assert result.how == "left"
            assert termios.tcgetattr(slave) == before
            assert session.holder == "bob"  # alice leaving does not release bob's hold
        finally:
            loop.remove_reader(master)
            await broker.close()
            os.close(master)
            os.close(slave)

    asyncio.run(scenario())


def test_a_held_console_is_refused_without_force_and_a_terminal(lab, env):
    r = cli(lab, env, "console", "con-r01-n05")
    assert r.returncode == 1
    assert b"con-r01-n05's console is held by" in r.stderr and b"--force" in r.stderr


def test_a_held_console_asks_on_a_terminal(lab, env, term):
    t = term("console", "con-r01-n05")
    t.expect(rb"held by .*; take it over\? \[y/N\] ")
    t.type(b"n\r")
    assert t.wait() == 1
    assert t.attrs() == t.before


def test_force_takes_the_console_over_from_another_operator(lab, env, term):
    node = "con-r01-n06"
    first = term("console", node)
    first.expect(rb"login: ")
    held = cli(lab, env, "console", node)  # a script, no --force: refused, naming the holder
    assert held.returncode == 1 and b"held by" in held.stderr
    # the taker holds the console (its input stays open) until the first has seen it held
    with tempfile.TemporaryFile() as err:
        taker = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, "console", node,
                                  "--force"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            first.expect(rb"\[fleet-console: console lost: [^\]]*; reconnecting\]")
            first.expect(rb"\[fleet-console: another client took the console on the BMC; waiting for it to come free")
        finally:
            taker.stdin.close()  # end of input: the taker detaches
            code = taker.wait(timeout=TIMEOUT)
        err.seek(0)
        said = err.read()
    assert code == 0, said
    assert b"console is held by another client of the BMC (BMC session 0x" in said
    assert b": taking it over" in said
    first.type(b"~.")
    assert first.wait() == 0
    assert first.attrs() == first.before
    steps = [step for _who, _action, step in journal(env, node)]
    assert "takeover" in steps


# --------------------------------------------------------------------------- the log, bad input
def test_log_prints_what_the_console_printed(lab, env, cli_in_process):
    node = "con-r01-n04"
    r = cli(lab, env, "console", node, input=b"\n")  # attach without a terminal: the log is written
    assert r.returncode == 0, r.stderr
    # reading the log back attaches to nothing: in this process
    code, out, err = cli_in_process("--site", lab.site_file, "console", node, "--log", env=env)
    assert code == 0, err
    assert "login:" in out
    code, out, err = cli_in_process("--site", lab.site_file, "console", node, "--log", "--strip-ansi", "--lines", "3",
                                    env=env)
    assert code == 0, err
    assert len(out.rstrip("\n").split("\n")) <= 3
    assert "\x1b" not in out


@pytest.mark.parametrize("args, message", [
    (["console", "no-such-node"], b"unknown node"),
    (["console", "con-r01-n0[1-2]"], b"selects 2 nodes"),
    (["console", "con-r02-n01"], b"has no serial console: its BMC speaks Redfish"),
    (["console", "con-r01-n01", "--lines", "3"], b"go with --log"),
    (["console", "con-r01-n01", "--log", "--force"], b"--force takes a console over"),
])
def test_bad_input_exits_2_with_a_clear_message(lab, env, cli_in_process, args, message):
    code, _out, err = cli_in_process("--site", lab.site_file, *args, env=env)  # refused before it attaches
    assert code == 2
    assert message.decode() in err and "Traceback" not in err
