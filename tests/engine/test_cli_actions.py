"""`power`, `pxe`, `reimage`, `activity` as an operator runs them: separate processes against a lab.

The lab runs in the test process and publishes its state, so each `fleet-console`
subprocess finds it exactly as it finds a `fleet-console lab` started elsewhere.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console import site as sites
from console.ops.journal import read_entries
from tests import cli_fork
from tests.engine.test_actions import SITE_YAML, set_power, wait_for

TIME_SCALE = 0.05
FAST = ["--poll-interval", "0.05", "--timeout", "3"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    from console.lab.lab import Lab
    from console.lab.state import write_state

    directory = tmp_path_factory.mktemp("clisite")
    path = directory / "acttest.yaml"
    path.write_text(SITE_YAML)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=TIME_SCALE) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")
    e["FLEET_CONSOLE_LOCKS"] = str(tmp_path / "locks")
    e["FLEET_OPERATOR"] = "tester"
    for key in ("FLEET_CONSOLE_DEBUG", "FLEET_CONSOLE_READ_ONLY"):  # a host default must not refuse these tests
        e.pop(key, None)
    return e


def cli(lab, env, *args, timeout=120, **kw):
    return cli_fork.run(["--site", lab.site_file, *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, **kw)


def journal(env, **kw):
    return read_entries("acttest", path=Path(env["XDG_STATE_HOME"]) / "fleet-console" / "acttest" / "journal.jsonl",
                        limit=0, **kw)


def boots(lab, nodes):
    return {n: lab.machine(n)["boots"] for n in nodes}


def no_secret(lab, *texts):
    for key, value in lab.secrets.items():
        if key != "known_hosts":
            for t in texts:
                assert value not in t, key


# --------------------------------------------------------------------------- dry run, refusal, bad input
def test_dry_run_prints_the_plan_and_touches_nothing(lab, env):
    nodes = ["act-r01-n01", "act-r01-n02", "act-r02-n01"]
    set_power(lab, nodes, True, running=False)
    before = boots(lab, nodes)
    r = cli(lab, env, "power", "cycle", "act-r01-n[01-02],act-r02-n01", "--dry-run", "--ticket", "INC-9")
    assert r.returncode == 0, r.stderr
    assert "power cycle" in r.stdout and "blast radius: 3 nodes; 2 racks (r01, r02)" in r.stdout
    assert "ticket INC-9" in r.stdout and "dry run: nothing done" in r.stderr
    r = cli(lab, env, "pxe", "act-r01-n01", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and [s["name"] for s in doc["plan"]["nodes"][0]["steps"]] == \
        ["boot-pxe", "verify-boot", "reboot"]
    time.sleep(0.3)  # anything wrongly sent would have shown by now (boots take 0.2 s here)
    assert boots(lab, nodes) == before
    assert all(lab.machine(n)["boot_override"] == "none" for n in nodes)
    assert journal(env) == []
    assert not list(Path(env["FLEET_CONSOLE_LOCKS"]).glob("*/*.lock"))
    no_secret(lab, r.stdout, r.stderr)


def test_without_a_terminal_or_yes_it_refuses(lab, env):
    node = "act-r01-n03"
    set_power(lab, [node], True, running=False)
    before = boots(lab, [node])
    r = cli(lab, env, "power", "reset", node)
    assert r.returncode == 2
    assert "refusing to act without confirmation" in r.stderr and "--yes" in r.stderr
    assert boots(lab, [node]) == before and journal(env) == []


@pytest.mark.parametrize("args,message", [
    (["reimage", "act-r01-n01", "--image", "flatcar@0.0.1"], "unknown image 'flatcar@0.0.1'"),
    (["power", "on", "act-r09-n01"], "unknown node"),
    (["power", "on", "act-r01-n01", "--fanout", "0"], "--fanout must be at least 1"),
    (["pxe", "act-r01-n01", "--stagger", "-1"], "--stagger must not be negative"),
])
def test_bad_input_exits_2_with_a_clear_message(lab, env, args, message):
    r = cli(lab, env, *args, "--yes")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    if "unknown image" in message:
        assert "flatcar@4081.2.1, flatcar@4152.2.0" in r.stderr


# --------------------------------------------------------------------------- running
def test_yes_json_runs_journals_and_activity_shows_it(lab, env):
    nodes = ["act-r01-n04", "act-r02-n04"]
    set_power(lab, nodes, True, running=False)
    before = boots(lab, nodes)
    r = cli(lab, env, "power", "reset", "act-r01-n04,act-r02-n04", "--yes", "--json", "--ticket", "INC-42", *FAST)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["counts"]["done"] == 2
    assert {n["node"]: n["result"] for n in doc["nodes"]} == {n: "done" for n in nodes}
    assert all(n["steps"][0]["step"] == "reset" and n["steps"][0]["result"] == "ok" for n in doc["nodes"])
    assert all(boots(lab, nodes)[n] == before[n] + 1 for n in nodes)
    entries = journal(env)
    assert {e["ticket"] for e in entries} == {"INC-42"} and {e["operator"] for e in entries} == {"tester"}
    assert len({e["plan"] for e in entries}) == 1
    for n in nodes:
        assert [(e["step"], e["result"]) for e in entries if e["node"] == n] == [("reset", "started"), ("reset", "ok")]
    # activity: JSON, node filter, and the table
    a = cli(lab, env, "activity", "--json", "--node", "act-r02-n04")
    assert a.returncode == 0, a.stderr
    got = json.loads(a.stdout)
    assert [e["result"] for e in got] == ["started", "ok"] and all(e["node"] == "act-r02-n04" for e in got)
    t = cli(lab, env, "activity", "--limit", "3")
    assert t.returncode == 0 and "OPERATOR" in t.stdout and "summary" in t.stdout and "INC-42" in t.stdout
    no_secret(lab, r.stdout, r.stderr, a.stdout, t.stdout,
              (Path(env["XDG_STATE_HOME"]) / "fleet-console" / "acttest" / "journal.jsonl").read_text())


def test_a_failure_or_an_unreachable_node_exits_1(lab, env):
    node = "act-r02-n05"
    set_power(lab, [node], True, running=False)
    lab.fault("redfish", node, "http500")
    try:
        r = cli(lab, env, "power", "reset", node, "--yes", *FAST)
    finally:
        lab.fault("redfish", node, "")
    assert r.returncode == 1, r.stderr
    assert "BMC error" in r.stdout and "Traceback" not in r.stderr
    r = cli(lab, env, "power", "on", node, "--yes", *FAST)  # already on: nothing to do, fine
    assert r.returncode == 0 and "already on" in r.stdout
    assert [(e["step"], e["result"], e["error"]) for e in journal(env, node=node)][-1] == ("plan", "skipped", "already on")


def _run_on_pty(lab, env, args, answer):
    """Run the CLI with a terminal; answer its question; return (exit status, everything printed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, *args],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    answered = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and (b"proceed? [y/N]" in out or b"to proceed:" in out):
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        return proc.wait(30), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def test_interactive_confirmation_needs_the_node_count(lab, env):
    nodes = ["act-r01-n01", "act-r01-n02", "act-r01-n03"]
    set_power(lab, nodes, True, running=False)
    before = boots(lab, nodes)
    code, out = _run_on_pty(lab, env, ["power", "reset", "act-r01-n[01-03]", *FAST], "y")
    assert code == 2 and "type the number of nodes (3)" in out and "not confirmed" in out
    assert boots(lab, nodes) == before
    code, out = _run_on_pty(lab, env, ["power", "reset", "act-r01-n[01-03]", *FAST], "3")
    assert code == 0, out
    assert all(boots(lab, nodes)[n] == before[n] + 1 for n in nodes)
    code, out = _run_on_pty(lab, env, ["power", "reset", "act-r01-n01", *FAST], "y")
    assert code == 0 and "proceed? [y/N]" in out, out


def _start_slow_power_on(lab, env, nodes):
    set_power(lab, nodes, False)
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, "power", "on",
                             ",".join(nodes), "--yes", "--fanout", "1", "--stagger", "1.5", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    while True:
        line = proc.stderr.readline()
        assert line, "".join(lines)
        lines.append(line)
        if f"{nodes[0]}: done" in line:
            return proc, lines


def test_ctrl_c_stops_launching_and_reports_what_ran(lab, env):
    nodes = ["act-r02-n01", "act-r02-n02", "act-r02-n03", "act-r02-n04"]
    proc, _ = _start_slow_power_on(lab, env, nodes)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "cancelling: no new steps will start" in err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("act-")}
    assert rows[nodes[0]] == "done" and rows[nodes[-1]] == "cancelled"
    assert lab.machine(nodes[0])["powered"] and not lab.machine(nodes[-1])["powered"]
    entries = journal(env)
    assert entries[-1]["step"] == "summary" and entries[-1]["result"] == "cancelled"
    assert not list(Path(env["FLEET_CONSOLE_LOCKS"]).glob("*/*.lock"))  # released


def test_a_crash_mid_action_leaves_the_journal_with_the_last_step(lab, env):
    nodes = ["act-r01-n03", "act-r01-n04", "act-r01-n05"]
    proc, _ = _start_slow_power_on(lab, env, nodes)
    try:
        wait_for(lambda: any(e["node"] == nodes[1] and e["result"] == "started" for e in journal(env)),
                 what="second node started")
        proc.kill()  # SIGKILL: no cleanup at all
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    a = cli(lab, env, "activity", "--json")
    assert a.returncode == 0, a.stderr
    got = json.loads(a.stdout)
    assert got[-1]["node"] == nodes[1] and got[-1]["step"] == "power-on" and got[-1]["result"] == "started"
    assert all(e["step"] != "summary" for e in got)
    # the dead process's locks do not block the next operator
    assert list(Path(env["FLEET_CONSOLE_LOCKS"]).glob("*/*.lock"))
    r = cli(lab, env, "power", "on", ",".join(nodes), "--yes", *FAST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(lab.machine(n)["powered"] for n in nodes)
