"""A reimage follows the nodes' serial consoles: the boot in each node's log, its last line shown.

Against a lab of our own (IPMI SOL nodes, a Redfish node without a console, a node whose
SOL another client holds): :class:`ConsoleFollower` in process, and ``fleet-console
reimage`` as an operator runs it (a separate process finding the lab by its state file).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading

import pytest

from console import site as sites
from console.ops.console_follow import ConsoleFollower, LastLine
from console.serial.broker import ConsoleBroker
from console.serial.log import read_log
from console.site import SiteContext
from tests import cli_fork
from tests.support import wait_for, wait_until

SITE = """\
site: rcontest
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
      - name: rcon-n[01-06]
        u: "[1-6]"
        mac: "52:54:00:74:00:[01-06]"
        host: 127.2.74.[1-6]
        bmc: {address: "127.1.74.[1-6]"}
      - name: rcon-rf
        mac: "52:54:00:74:00:20"
        host: 127.2.74.20
        bmc: {protocol: redfish, scheme: http, address: 127.1.74.20}
lab:
  sol_faults: {rcon-n06: held}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    """The module's lab, published (state file) so `fleet-console` subprocesses find it."""
    from console.lab.lab import Lab
    from console.lab.state import write_state

    path = tmp_path_factory.mktemp("rconsite") / "rcontest.yaml"
    path.write_text(SITE)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=0.02) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture
def ctx(lab) -> SiteContext:
    from console.secrets import Secrets

    return SiteContext(lab.effective_site(), Secrets(lab=lab.secrets))


@pytest.fixture(autouse=True)
def no_sessions_left(lab):
    # no more than before: a session one test left is that test's failure, not every later one's
    before = lab.sessions()["ipmi"]
    yield
    wait_for(lambda: lab.sessions()["ipmi"] <= before, timeout=10, what="every IPMI session to be closed")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "sol-pump" or t.name.startswith("sol-io")],
             timeout=10, what="the SOL threads to end")


# ------------------------------------------------------------------ the last line
def test_last_line_reads_as_a_person_would():
    t = LastLine()
    assert t.feed(b"BIOS 1.0\r\n\r\n") and t.line == "BIOS 1.0"
    assert not t.feed(b"\r\n   \r\n")  # blank lines are passed over
    assert t.feed(b"\x1b[1;32m[  OK  ]\x1b[0m Started sshd\r\n") and t.line == "[  OK  ] Started sshd"
    assert t.feed(b"writing  10%\rwriting  50%\r") and t.line == "writing  50%"  # redrawn in place
    assert t.feed(b"\r\nhost login: ") and t.line == "host login:"  # a prompt still being printed
    t2 = LastLine()
    t2.feed("na\u00efve".encode()[:3])  # a character split between two chunks
    t2.feed("na\u00efve".encode()[3:] + b"\n")
    assert t2.line == "na\u00efve"
    t3 = LastLine()
    t3.feed(b"x" * 100_000)  # a line that never ends stays bounded
    assert len(t3.line) <= 512 and len(t3._pending) <= 2048


# ------------------------------------------------------------------ the follower in process
async def test_follower_bounded_polite_and_closes_what_it_opened(lab, ctx):
    broker = ConsoleBroker(ctx)
    seen: dict[str, list[str]] = {}
    follower = ConsoleFollower(broker, ["rcon-rf", "rcon-n06", "rcon-n01", "rcon-n02", "rcon-n03"],
                               on_line=lambda n, line: seen.setdefault(n, []).append(line), limit=2)
    try:
        await follower.start()
        # the Redfish node has no console (skipped quietly); the held one is left to its holder
        await wait_until(lambda: len(follower.sessions) == 2, 20, "two consoles followed")
        assert "rcon-rf" in follower.skipped and "no serial console" in follower.skipped["rcon-rf"]
        assert "rcon-n06" in follower.skipped and "rcon-n06" not in follower.sessions
        assert set(follower.sessions) == {"rcon-n01", "rcon-n02"}
        assert follower.in_use <= 2
        assert "rcon-n06" not in broker.sessions()
        # a pane watches rcon-n01 meanwhile: it stays open after the run
        pane = broker.sessions()["rcon-n01"].subscribe(lambda item: None)
        # the first node ends: the third waiting takes its slot
        follower.node_ended("rcon-n02")
        await wait_until(lambda: "rcon-n03" in follower.sessions, 20, "the third node's console")
        assert "rcon-n02" not in follower.sessions and "rcon-n02" not in broker.sessions()
        assert follower.in_use <= 2
        # output reaches on_line as the node prints it
        # the prompt of the boot after this cycle: the history fed at the start may hold an older one
        k = len(seen.get("rcon-n03", []))
        lab.call("rcon-n03", {"cmd": "power", "node": "rcon-n03", "action": "cycle"})
        await wait_until(lambda: any("login:" in line for line in seen.get("rcon-n03", [])[k:]), 20,
                         "rcon-n03's boot to reach its login prompt")
        assert follower.last_line("rcon-n03") == "rcon-n03 login:"
        assert follower.last_line("rcon-rf") is None
        await follower.close()
        assert broker.sessions()["rcon-n01"].state == "open"  # watched by the pane: kept
        assert "rcon-n03" not in broker.sessions()  # closed: no longer among the open ones
        pane()
    finally:
        await follower.close()
        await broker.close()
    # the held console was never taken: the lab's other client still holds it
    assert "rcon-n06" in follower.skipped


async def test_a_second_run_on_the_same_broker_closes_what_it_opened(lab, ctx):
    """A session closed by an earlier run is not someone else's: the next run owns what it opens."""
    broker = ConsoleBroker(ctx)
    try:
        for _ in range(2):
            follower = ConsoleFollower(broker, ["rcon-n04"], limit=2)
            await follower.start()
            await wait_until(lambda f=follower: "rcon-n04" in f.sessions, 20, "the console followed")
            await follower.close()
            assert "rcon-n04" not in broker.sessions()  # closed again: nobody else watched it
    finally:
        await broker.close()


# ------------------------------------------------------------------ the command line
def _env(tmp_path) -> dict[str, str]:
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")
    e["FLEET_CONSOLE_LOCKS"] = str(tmp_path / "locks")
    e["FLEET_OPERATOR"] = "tester"
    for key in ("FLEET_CONSOLE_DEBUG", "FLEET_CONSOLE_READ_ONLY"):
        e.pop(key, None)
    return e


def test_cli_reimage_logs_the_boot_and_prints_console_lines(lab, tmp_path, monkeypatch):
    env = _env(tmp_path)
    nodes = ["rcon-n04", "rcon-n05", "rcon-rf"]
    r = cli_fork.run(["--site", lab.site_file, "reimage",
                        ",".join(nodes), "--image", "flatcar@4152.2.0", "--yes", "--timeout", "3"],
                       capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    for node in ("rcon-n04", "rcon-n05"):
        assert lab.machine(node)["image"] == "flatcar@4152.2.0"
        # the phase lines carry the node's console: `HH:MM:SS node  phase  | line`
        shown = re.findall(rf"^\d\d:\d\d:\d\d {node}  (\S+)  \| (.+)$", r.stderr, re.M)
        assert all(phase in ("starting", "planned", "assigned", "rebooting", "installing", "verifying")
                   for phase, _ in shown), shown
        # after the power cycle the new OS's login prompt is its last word, shown before its end
        after = r.stderr[r.stderr.index(f"{node}: rebooting"):r.stderr.index(f"{node}: done")]
        assert re.search(rf"^\d\d:\d\d:\d\d {node}  (rebooting|installing|verifying)  \| {node} login:$",
                         after, re.M), r.stderr
        # the whole boot is in the node's console log, in order
        monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
        text = read_log("rcontest", node)
        story = ["iPXE 1.21.1+", "fleet-installer: writing flatcar 4152.2.0 to /dev/sda", "fleet-installer: 100%",
                 "Linux version 6.6.60-flatcar", f"{node} login:"]
        at = 0
        for s in story:
            found = text.find(s, at)
            assert found >= 0, f"{s!r} not in {node}'s log after offset {at}:\n{text[at:]}"
            at = found
    # the Redfish node without a console was reimaged all the same, quietly
    assert lab.machine("rcon-rf")["image"] == "flatcar@4152.2.0"
    assert not re.search(r"rcon-rf  \S+  \|", r.stderr)
    assert "Traceback" not in r.stderr and "\x1b" not in r.stderr
    for key, value in lab.secrets.items():
        if key != "known_hosts":
            assert value not in r.stderr and value not in r.stdout, key
