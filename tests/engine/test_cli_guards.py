"""What an acting command must not do: act under read-only, or redo what is already so.

Separate `fleet-console` processes against a lab run by this test process (as
tests/engine/test_cli_actions.py does): `--read-only`, `$FLEET_CONSOLE_READ_ONLY` and a
site's `read_only: true` refuse every acting command (exit 2, saying why, nothing
touched); a reimage to the image a node already runs skips it as "already so"
unless `--force`; a target other than the inventory's desired image is warned about.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests import cli_fork
from tests.engine.test_actions import SITE_YAML, set_power
from tests.engine.test_cli_actions import FAST, env, lab  # noqa: F401 - fixtures used below


def cli(site_file, env, *args, timeout=120):
    return cli_fork.run(["--site", str(site_file), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def machine(lab, node):
    return lab.machine(node)


def journal_file(env) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "fleet-console" / "acttest" / "journal.jsonl"


# --------------------------------------------------------------------------- item 9: read-only
@pytest.mark.parametrize("args", [
    ["--read-only", "power", "off", "act-r01-n01", "--yes"],
    ["power", "off", "act-r01-n01", "--yes", "--read-only"],  # the global option after the command
    ["--read-only", "pxe", "act-r01-n01", "--yes"],
    ["--read-only", "reimage", "act-r01-n01", "--image", "flatcar@4152.2.0", "--yes"],
])
def test_read_only_refuses_every_acting_command(lab, env, args):
    set_power(lab, ["act-r01-n01"], True, running=False)
    before = machine(lab, "act-r01-n01")["boots"]
    r = cli(lab.site_file, env, *args, *FAST)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "refusing to" in r.stderr and "read-only (--read-only was given)" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    m = machine(lab, "act-r01-n01")
    assert m["powered"] and m["boots"] == before and m["boot_override"] == "none"
    assert not journal_file(env).exists()


def test_the_environment_makes_a_console_read_only(lab, env):
    set_power(lab, ["act-r01-n02"], True, running=False)
    r = cli(lab.site_file, {**env, "FLEET_CONSOLE_READ_ONLY": "1"}, "power", "off", "act-r01-n02", "--yes", *FAST)
    assert r.returncode == 2 and "FLEET_CONSOLE_READ_ONLY=1 is set" in r.stderr, r.stderr
    assert machine(lab, "act-r01-n02")["powered"]
    for unknown in ("2", "y", "enabled"):  # a value it does not know fails safe
        r = cli(lab.site_file, {**env, "FLEET_CONSOLE_READ_ONLY": unknown}, "power", "off", "act-r01-n02", "--yes",
                *FAST)
        assert r.returncode == 2 and f"FLEET_CONSOLE_READ_ONLY={unknown} is set" in r.stderr, r.stderr
        assert machine(lab, "act-r01-n02")["powered"]
    # set to 0 (or unset), the same command acts: the variable is a default, not a policy
    r = cli(lab.site_file, {**env, "FLEET_CONSOLE_READ_ONLY": "0"}, "power", "off", "act-r01-n02", "--yes", *FAST)
    assert r.returncode == 0, r.stderr
    assert not machine(lab, "act-r01-n02")["powered"]
    # looking is still allowed under read-only
    r = cli(lab.site_file, {**env, "FLEET_CONSOLE_READ_ONLY": "yes"}, "activity")
    assert r.returncode == 0, r.stderr


def test_a_read_only_site_refuses_and_validates(lab, env, tmp_path):
    path = tmp_path / "ro" / "acttest.yaml"
    path.parent.mkdir(mode=0o700)
    path.write_text(SITE_YAML + "read_only: true\n")
    set_power(lab, ["act-r02-n01"], True, running=False)
    r = cli(path, env, "power", "off", "act-r02-n01", "--yes", *FAST)
    assert r.returncode == 2, r.stderr
    assert "site acttest is read-only (read_only: true in its site file)" in r.stderr
    assert machine(lab, "act-r02-n01")["powered"]
    v = cli(path, env, "validate")
    assert v.returncode == 0, v.stderr
    path.write_text(SITE_YAML + "read_only: perhaps\n")
    v = cli(path, env, "validate")
    assert v.returncode == 2 and "read_only" in v.stderr and "Traceback" not in v.stderr, v.stderr


# --------------------------------------------------------------------------- item 6: already so
def test_reimage_to_the_running_image_skips_the_node_unless_forced(lab, env):
    nodes = ["act-r01-n03", "act-r02-n03", "act-r01-n04"]
    set_power(lab, nodes, True)  # running flatcar@4081.2.1, the desired image
    assert all(machine(lab, n)["image"] == "flatcar@4081.2.1" for n in nodes)
    before = {n: machine(lab, n)["boots"] for n in nodes}
    r = cli(lab.site_file, env, "reimage", "act-r01-n[03-04],act-r02-n03", "--image", "flatcar@4081.2.1",
            "--yes", *FAST)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "nothing to do" in r.stdout and "will act on" not in r.stdout
    assert "already running flatcar@4081.2.1" in r.stdout and "WARNING" not in r.stdout
    time.sleep(0.3)  # a boot wrongly started would show by now (boots take 0.2 s here)
    assert {n: machine(lab, n)["boots"] for n in nodes} == before
    assert all(machine(lab, n)["boot_override"] == "none" for n in nodes)
    # --force plans the full reinstall
    r = cli(lab.site_file, env, "reimage", "act-r01-n03", "--image", "flatcar@4081.2.1", "--force",
            "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)["plan"]
    assert doc["nodes"][0]["skip"] is None and doc["nodes"][0]["steps"]


def test_reimage_away_from_the_desired_image_warns_of_drift(lab, env):
    node = "act-r02-n04"
    set_power(lab, [node], True)
    r = cli(lab.site_file, env, "reimage", node, "--image", "flatcar@4152.2.0", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert ("WARNING: this creates drift: desired is flatcar@4081.2.1, not flatcar@4152.2.0" in r.stdout)
    assert "will act on 1 node" in r.stdout
    r = cli(lab.site_file, env, "reimage", node, "--image", "flatcar@4152.2.0", "--dry-run", "--json")
    assert json.loads(r.stdout)["plan"]["warnings"][0].startswith("this creates drift")
    r = cli(lab.site_file, env, "reimage", node, "--image", "flatcar@4081.2.1", "--dry-run", "--force")
    assert r.returncode == 0 and "WARNING" not in r.stdout, r.stdout
