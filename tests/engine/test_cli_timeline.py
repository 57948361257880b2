"""`fleet-console timeline NODE` as an operator runs it: a child process against a lab of this
module's own (Redfish over HTTP, SSH hosts, on loopback), which it finds through the lab's
state file.  The node is polled once (its state now and its BMC event log); the journal,
the console log and the audit history are files written here as their writers write them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from console import site as sites
from console.ops.journal import Journal
from console.serial.log import ConsoleLog
from tests import cli_fork

SITE_YAML = """\
site: tlcli
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: tlc-n[1-2]
        u: "[1-2]"
        host: 127.2.79.[1-2]
        bmc: {address: "127.1.79.[1-2]"}
lab:
  faults: {tlc-n1: fan}
"""

NODE = "tlc-n1"
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    from console.lab.lab import Lab
    from console.lab.state import write_state

    path = tmp_path_factory.mktemp("tlsite") / "tlcli.yaml"
    path.write_text(SITE_YAML)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=0.02) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = tmp_path_factory.mktemp("tlstate")
    e = {k: v for k, v in os.environ.items() if k not in ("FLEET_CONSOLE_DEBUG", "FLEET_CONSOLE_READ_ONLY")}
    e["XDG_STATE_HOME"] = str(state / "state")
    return e


@pytest.fixture(scope="module")
def history(env):
    """A day-old reimage in the journal (its error text with an escape sequence in it), a
    console log with a panic, and an audit history that saw the node drift and come back."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    try:
        day_ago = time.time() - 86400
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(day_ago))
        journal = Journal("tlcli", operator="alice")
        journal.write(time=stamp, action="reimage flatcar@4081.2.1", node=NODE, step="installing", result="failed",
                      error="installer said \x1b]0;owned\x07 no", ticket="INC-42")
        journal.write(action="power cycle", node=NODE, step="power-cycle", result="ok")
        journal.write(action="power cycle", node="tlc-n2", step="power-cycle", result="ok")
        log = ConsoleLog("tlcli", NODE)
        log.marker("attach", "alice", "Redfish SSH console")
        log.write(b"plain chatter\nKernel panic - not syncing: \x1b[1mAttempted to kill init\x1b[0m\n")
        log.close()
        base = Path(env["XDG_STATE_HOME"]) / "fleet-console" / "tlcli"
        fd = os.open(base / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            for when, state, running in ((day_ago - 60, "drift", "flatcar@3975.2.2"),
                                         (day_ago + 600, "ok", "flatcar@4081.2.1")):
                f.write(json.dumps({"kind": "node", "node": NODE, "state": state, "running": running,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
                                    "desired": "flatcar@4081.2.1", "reason": ""}) + "\n")
    finally:
        mp.undo()


def cli(lab, env, *args: str) -> subprocess.CompletedProcess:
    return cli_fork.run(["--site", lab.site_file, *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=TIMEOUT)


def test_the_story_of_a_red_node(lab, env, history):
    r = cli(lab, env, "timeline", NODE)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    first = out.splitlines()[0]
    assert first.startswith(f"{NODE} now: power ● on, health ✗ critical")
    assert "SEL " in out and "bmc" in out  # the fan's event, as the BMC logged it
    assert "Kernel panic - not syncing: Attempted to kill init" in out  # the console's story, colours gone
    assert "plain chatter" in out  # one of the console's last lines
    assert "alice: reimage flatcar@4081.2.1: installing failed: installer said ^[]0;owned^G no [INC-42]" in out
    assert "image audit: drift → ok, runs flatcar@4081.2.1 (was flatcar@3975.2.2)" in out
    assert "tlc-n2" not in out
    assert "\x1b" not in out and "\x07" not in out
    read = next(line for line in out.splitlines() if line.startswith("read: "))
    for source in ("bmc:", "console:", "image: 2", "journal: 2"):
        assert source in read
    gone = next(line for line in out.splitlines() if line.startswith("unavailable: "))
    assert "poller (polled once now" in gone


def test_json_and_since(lab, env, history):
    r = cli(lab, env, "timeline", NODE, "--json", "--since", "2h")
    assert r.returncode == 0, r.stderr
    assert r.stdout.isascii()
    doc = json.loads(r.stdout)
    assert doc["node"] == NODE and doc["now"]["health"] == "critical" and doc["error"] is None
    times = [e["time"] for e in doc["entries"]]
    assert times == sorted(times) and doc["since"] is not None
    assert all(t >= doc["since"] for t in times)
    texts = [e["text"] for e in doc["entries"]]
    assert not any("reimage" in t for t in texts)  # a day old: before --since
    assert any(e["source"] == "journal" and e["text"].startswith("power cycle") and e["who"]
               for e in doc["entries"])
    sources = {s["source"]: s for s in doc["sources"]}
    assert sources["poller"]["state"] == "unavailable"
    assert sources["image"]["state"] == "empty" and "2 before --since" in sources["image"]["detail"]


def test_bad_input_is_exit_2_before_any_lab(lab, env):
    r = cli(lab, env, "timeline", NODE, "--since", "yesterday")
    assert r.returncode == 2 and "--since 'yesterday'" in r.stderr and "Traceback" not in r.stderr
    r = cli(lab, env, "timeline", "no-such-node")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = cli(lab, env, "timeline", "tlc-n[1-2]")
    assert r.returncode == 2 and "name exactly one" in r.stderr
