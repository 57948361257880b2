"""Messages that say what happened: the command line's own output, as an operator sees it.

Each test runs ``fleet-console`` as a separate process.  The action tests share the
small lab of :mod:`tests.engine.test_cli_actions` (published through its state file, as a
``fleet-console lab`` elsewhere would be).
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

from tests.engine.test_actions import set_power
from tests.engine.test_cli_actions import FAST, boots, cli, env, lab  # noqa: F401 - fixtures used below

CLI = [sys.executable, "-m", "console.cli.main"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A private runtime directory (no lab running in it) and state directory."""
    e = {k: v for k, v in os.environ.items() if k not in ("FLEET_CONSOLE_DEBUG", "PYTHONUNBUFFERED")}
    e.update(XDG_RUNTIME_DIR=str(tmp_path / "run"), XDG_STATE_HOME=str(tmp_path / "state"), **extra)
    return e


# --------------------------------------------------------------------------- library warnings, lab start
def test_a_command_that_starts_the_lab_says_so_and_shows_no_library_warning(tmp_path):
    """asyncssh with cryptography >= 48 printed ten CryptographyDeprecationWarning lines; and
    the seconds the lab takes to start were silent (a blank screen for the console)."""
    r = subprocess.run([*CLI, "--site", "demo", "status", "dal1-r01-n01", "--json"], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert r.returncode in (0, 1), r.stderr
    assert json.loads(r.stdout)[0]["name"] == "dal1-r01-n01"
    assert "Warning" not in r.stderr, r.stderr
    assert r.stderr.startswith("fleet-console: embedded (no site service runs for demo)\n"
                               "starting the lab for site demo (89 simulated machines, 3 switches) ...\n"), r.stderr


# --------------------------------------------------------------------------- a reader that goes away
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [["--site", "demo", "validate"], ["schema"]], ids=["validate", "schema"])
def test_stdout_closed_early_ends_quietly_with_141(tmp_path, args, unbuffered):
    """``fleet-console ... | head -1``: the reader leaves; no BrokenPipeError traceback, and the
    exit status a shell gives a tool its reader left (128 + SIGPIPE)."""
    env = _env(tmp_path, **({"PYTHONUNBUFFERED": "1"} if unbuffered else {}))
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL)
    proc.stdout.close()  # before it writes a byte
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    for word in ("Traceback", "BrokenPipeError", "Exception ignored"):
        assert word not in err, err


# --------------------------------------------------------------------------- a generated lab
def test_a_generated_lab_is_its_own_site_and_leaves_the_demo_alone(tmp_path):
    """``lab --nodes N`` once published itself as site demo: ``--site demo status`` then listed
    its lab-r001-... nodes.  It is site lab-N-PROTOCOL now, found by that name while it runs."""
    env = _env(tmp_path)
    proc = subprocess.Popen([*CLI, "lab", "--nodes", "3", "--protocol", "ipmi", "--ephemeral", "--time-scale", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        out = []
        while not out or out[-1] != "lab running; Ctrl-C stops it\n":
            line = proc.stdout.readline()
            assert line, "".join(out) + proc.stderr.read()
            out.append(line)
        assert out[0].startswith("starting the lab for site lab-3-ipmi: 3 machines")
        assert "other commands use this lab with --site lab-3-ipmi (fleet-console --site lab-3-ipmi status)\n" in out
        runtime = tmp_path / "run" / "fleet-console"
        assert (runtime / "lab-lab-3-ipmi.json").is_file() and not (runtime / "lab-demo.json").exists()
        r = subprocess.run([*CLI, "--site", "lab-3-ipmi", "status", "--json"], env=env, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode in (0, 1), r.stderr
        assert [n["name"] for n in json.loads(r.stdout)] == ["lab-r001-n01", "lab-r001-n02", "lab-r001-n03"]
        assert "starting the lab" not in r.stderr  # it used the running one
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    # once it stopped, the name says how to get it back
    r = subprocess.run([*CLI, "--site", "lab-3-ipmi", "validate"], env=env, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "fleet-console lab --nodes 3 --protocol ipmi" in r.stderr, r.stderr


# --------------------------------------------------------------------------- the confirmation question
def _on_pty(lab, env, args, answer, stdout_to_pty: bool) -> tuple[int, str]:
    """Run with a terminal on stdin (stderr to /dev/null; stdout to the terminal or /dev/null);
    answer the question if it shows on the terminal.  Returns (exit status, the terminal's text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, "--site", lab.site_file, *args], stdin=slave,
                            stdout=slave if stdout_to_pty else subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, close_fds=True)
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the last holder of the terminal exited
                    break
                if not chunk:
                    break
                seen += chunk
                if not answered and b"proceed? [y/N]" in seen:
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        return proc.wait(30), seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


@pytest.mark.parametrize("stdout_to_pty", [True, False], ids=["stdout-terminal", "stdout-devnull"])
def test_the_question_shows_on_the_terminal_with_stderr_to_devnull(lab, env, stdout_to_pty):  # noqa: F811
    """``2>/dev/null`` at a terminal once exited 2 with nothing shown: the question went to stderr."""
    node = "act-r01-n04"
    set_power(lab, [node], True, running=False)
    before = boots(lab, [node])
    code, seen = _on_pty(lab, env, ["power", "reset", node, *FAST], "y", stdout_to_pty)
    assert code == 0, seen
    assert "power reset on act-r01-n04: proceed? [y/N]" in seen
    assert ("plan " in seen) == stdout_to_pty  # the plan is stdout's; the question is the terminal's
    assert boots(lab, [node])[node] == before[node] + 1


# --------------------------------------------------------------------------- said once, said at all
def test_nothing_to_do_is_said_once(lab, env):  # noqa: F811
    node = "act-r01-n05"
    set_power(lab, [node], True, running=False)
    r = cli(lab, env, "power", "on", node, "--yes", *FAST)
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).count("nothing to do") == 1, (r.stdout, r.stderr)
    assert "already on" in r.stdout
    r = cli(lab, env, "power", "on", node, "--yes", "--json", *FAST)
    assert r.returncode == 0 and r.stderr.count("nothing to do") == 1, r.stderr
    assert [n["skip"] for n in json.loads(r.stdout)["plan"]["nodes"]] == ["already on"]


def test_switches_on_a_site_without_switches_says_so(tmp_path):
    site = tmp_path / "noswitch.yaml"
    site.write_text("site: noswitch\ndefaults:\n  bmc: {protocol: ipmi, username: admin, password: env:NOSW_PW}\n"
                    "racks:\n  - name: r1\n    nodes:\n      - {name: n1, bmc: {address: 127.0.0.251}}\n")
    r = subprocess.run([*CLI, "--site", str(site), "switches"], env=_env(tmp_path), capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout, r.stderr) == (0, "site noswitch has no switches\n", "")
    r = subprocess.run([*CLI, "--site", str(site), "switches", "--json"], env=_env(tmp_path), capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (r.returncode, json.loads(r.stdout)) == (0, [])
