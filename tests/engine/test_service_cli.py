"""`fleet-console serve` and the commands that become its clients, as operators run them:
separate processes finding the service by its socket, saying which mode they are in."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys

import pytest

from console import site as sites
from console.ops.journal import read_entries
from console.service.protocol import socket_path
from tests import cli_fork
from tests.support import wait_for

SITE = """\
site: svccli
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
racks:
  - name: r01
    nodes:
      - name: svcc-n[01-03]
        mac: "52:54:00:92:00:[01-03]"
        bmc: {address: "127.1.92.[1-3]"}
lab:
  running: {}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    """The module's lab, published (state file) so `fleet-console` subprocesses find it."""
    from console.lab.lab import Lab
    from console.lab.state import write_state

    path = tmp_path_factory.mktemp("svcclisite") / "svccli.yaml"
    path.write_text(SITE)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=0.02) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


def cli(lab, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_SERVICE")}
    env["FLEET_OPERATOR"] = "mallory"  # what the environment claims: the service does not believe it
    return cli_fork.run(["--site", lab.site_file, *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


@pytest.fixture
def served(lab):
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    path = socket_path("svccli", environ={})
    try:
        wait_for(lambda: path.exists() or proc.poll() is not None, timeout=60, what="the service's socket")
        assert proc.poll() is None, proc.communicate()[1]
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_embedded_without_a_service(lab) -> None:
    r = cli(lab, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert "fleet-console: embedded" in r.stderr
    r = cli(lab, "who")
    assert r.returncode == 2 and "no site service runs" in r.stderr


def test_status_and_power_via_the_service_then_sigterm(lab, served) -> None:
    r = cli(lab, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert f"via service (pid {served.pid})" in r.stderr
    records = json.loads(r.stdout)
    assert [x["name"] for x in records] == ["svcc-n01", "svcc-n02", "svcc-n03"]
    assert all(x["power"] == "on" for x in records)
    # an action planned and run in the service, attributed to who the service says
    r = cli(lab, "power", "cycle", "svcc-n02", "--yes", "--json", "--poll-interval", "0.1")
    assert r.returncode == 0, r.stderr
    assert "runs in the site service" in r.stderr
    result = json.loads(r.stdout)
    entries = [e for e in read_entries("svccli", limit=100) if e.get("plan") == result["plan"]["id"]]
    assert entries and {e["operator"] for e in entries} == {getpass.getuser()}
    r = cli(lab, "who", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []  # nobody else is connected (who leaves itself out)
    # a second service for the site is refused while the first lives
    r = cli(lab, "serve", timeout=60)
    assert r.returncode == 1 and "already runs" in r.stderr
    served.send_signal(signal.SIGTERM)
    _out, err = served.communicate(timeout=60)
    assert served.returncode == 0, err
    assert "site service stopped: terminated (SIGTERM)" in err
    assert not socket_path("svccli", environ={}).exists()
    wait_for(lambda: lab.sessions()["redfish"] == 0, timeout=30, what="BMC sessions logged out")
