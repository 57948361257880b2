"""The command line itself: --version, --help, global options after the command, init."""

from __future__ import annotations

import os
import stat
import subprocess
from importlib.metadata import version

from console.cli.sitedoc import EXAMPLE
from tests import cli_fork


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return cli_fork.run([*args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout == f"fleet-console {version('fleet-console')}\n"


def test_global_options_after_the_command():
    r = run_cli("validate", "--site", "demo")
    assert r.returncode == 0 and "site demo: 3 racks, 89 nodes" in r.stdout, r.stderr
    # given on both sides, the one after the command wins
    r = run_cli("--site", "no-such-site", "validate", "--site", "demo", "--debug")
    assert r.returncode == 0 and "site demo" in r.stdout, r.stderr
    # given only before the command, it is kept
    r = run_cli("--site", "demo", "validate", "--json")
    assert r.returncode == 0 and '"site": "demo"' in r.stdout, r.stderr


def test_every_command_takes_the_global_options():
    r = run_cli("status", "--help")
    assert r.returncode == 0 and "--site SITE" in r.stdout and "--read-only" in r.stdout


def test_help_says_no_command_opens_the_console():
    r = run_cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "Without a COMMAND it opens the console (the TUI)" in text
    assert "No COMMAND opens the console" in text


def test_init_writes_a_private_site_that_validates_and_never_overwrites(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    r = run_cli("init", "dal9", env=env)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "cfg" / "fleet-console" / "sites" / "dal9.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (path.parent, path.parent.parent, tmp_path / "cfg"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert path.read_text().startswith(EXAMPLE.read_text().split("\nsite:")[0])
    assert "\nsite: dal9 " in path.read_text()
    r = run_cli("--site", "dal9", "validate", "--strict", env=env)
    assert r.returncode == 0 and "site dal9:" in r.stdout and r.stderr == "", r.stderr

    before = path.read_bytes()
    r = run_cli("init", "dal9", env=env)
    assert r.returncode == 2 and "already exists: not overwriting it" in r.stderr
    assert path.read_bytes() == before


def test_init_to_a_chosen_path_and_through_site(tmp_path):
    target = tmp_path / "mine.yaml"
    r = run_cli("--site", "lon2", "init", "", str(target))
    assert r.returncode == 0, r.stderr
    assert "site lon2:" in r.stdout
    r = run_cli("init", "lon3", str(tmp_path / "new" / "dir" / "lon3.yaml"))
    assert r.returncode == 0 and stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_init_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / "link.yaml").symlink_to(victim)
    r = run_cli("init", "x1", str(tmp_path / "link.yaml"))
    assert r.returncode == 2 and "already exists" in r.stderr and victim.read_text() == "keep me\n"


def test_init_refuses_a_bad_name_in_one_line(tmp_path):
    r = run_cli("init", "../etc", str(tmp_path / "a.yaml"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "site name:" in r.stderr
    assert not (tmp_path / "a.yaml").exists()


def test_init_in_a_directory_others_can_write_says_so(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    r = run_cli("init", "x2", str(shared / "x2.yaml"))
    assert r.returncode == 2 and "writable by group or others" in r.stderr and "Traceback" not in r.stderr
