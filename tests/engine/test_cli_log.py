"""The console's log file: the user's alone (0600 in a 0700 directory), rotated, quiet by default.

The console runs as root on shared jump hosts: a 0644 log in a 0755 directory let
everyone read it, it grew ~52 KB a minute with a line per BMC request and never
rotated.  These run the real CLI against a two-machine lab of its own on loopback
(started and stopped by the command itself).
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from console.cli.main import LOG_BACKUPS, PrivateRotatingFileHandler
from tests import cli_fork

SITE = """\
site: logtiny
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - {name: 'log-n[1-2]', host: '127.2.77.[1-2]', bmc: {address: '127.1.77.[1-2]'}}
lab: {}
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if k != "FLEET_CONSOLE_LOG_LEVEL"}
    full.update(XDG_STATE_HOME=str(tmp_path / "state"), XDG_RUNTIME_DIR=str(runtime), **env)
    return cli_fork.run([*args], capture_output=True, text=True, timeout=120,
                          env=full)


@pytest.fixture
def site_file(tmp_path) -> Path:
    path = tmp_path / "logtiny.yaml"
    path.write_text(SITE)
    return path


def test_log_is_private_and_leaves_out_request_lines(tmp_path, site_file):
    r = run(tmp_path, "--site", str(site_file), "status", "--json")
    assert r.returncode == 0, r.stderr
    log = tmp_path / "state" / "fleet-console" / "fleet-console.log"
    assert mode(log) == 0o600 and mode(log.parent) == 0o700
    assert "HTTP Request" not in log.read_text()
    # asked for, the per-request lines are there (so their absence above means something)
    r = run(tmp_path, "--site", str(site_file), "status", "--json", FLEET_CONSOLE_LOG_LEVEL="info")
    assert r.returncode == 0, r.stderr
    assert "console.drivers.redfish_http.requests: HTTP Request: GET http://127.1.77.1" in log.read_text()
    assert mode(log) == 0o600


def test_an_older_public_log_is_made_private(tmp_path, site_file):
    log_dir = tmp_path / "state" / "fleet-console"
    log_dir.mkdir(parents=True)
    log_dir.chmod(0o755)
    log = log_dir / "fleet-console.log"
    log.write_text("an older line\n")
    log.chmod(0o644)
    r = run(tmp_path, "--site", str(site_file), "validate")
    assert r.returncode == 0, r.stderr
    assert mode(log_dir) == 0o700 and mode(log) == 0o600
    assert log.read_text().startswith("an older line\n")


def test_a_planted_link_is_not_followed(tmp_path, site_file):
    log_dir = tmp_path / "state" / "fleet-console"
    log_dir.mkdir(parents=True)
    target = tmp_path / "precious"
    target.write_text("precious\n")
    target.chmod(0o644)
    (log_dir / "fleet-console.log").symlink_to(target)
    r = run(tmp_path, "--site", str(site_file), "validate")
    assert r.returncode == 0, r.stderr
    assert "fleet-console: warning: not writing a log file" in r.stderr and "Traceback" not in r.stderr
    assert target.read_text() == "precious\n" and mode(target) == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_log_directory_of_someone_else_is_refused(tmp_path, site_file):
    log_dir = tmp_path / "state" / "fleet-console"
    log_dir.mkdir(parents=True)
    log_dir.chmod(0o777)
    os.chown(log_dir, 12345, 12345)
    r = run(tmp_path, "--site", str(site_file), "validate")
    assert r.returncode == 0, r.stderr
    assert "not writing a log file" in r.stderr and "uid 12345" in r.stderr
    assert not (log_dir / "fleet-console.log").exists() and mode(log_dir) == 0o777


def test_the_log_rotates_and_every_file_stays_private(tmp_path):
    path = tmp_path / "fleet-console.log"
    handler = PrivateRotatingFileHandler(path, maxBytes=1000, backupCount=LOG_BACKUPS)
    logger = logging.getLogger("test_cli_log.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.warning("line %03d %s", i, "x" * 90)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["fleet-console.log"] + [f"fleet-console.log.{i}" for i in range(1, LOG_BACKUPS + 1)]
    assert all(mode(tmp_path / f) == 0o600 and (tmp_path / f).stat().st_size <= 1000 for f in files)
    assert "line 199" in path.read_text()
