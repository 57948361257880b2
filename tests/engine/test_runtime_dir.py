"""The runtime directory and the lab state in it: private, ours, and cleaned up after a dead lab.

A lab state file names a site file whose ``cmd:`` secrets the next command runs, so a
runtime directory or state file someone else could have planted is refused; and the
lab binds loopback addresses only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from console.errors import LabError
from console.lab.lab import Lab, runtime_dir
from inventory.loader import load_site_text

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def test_default_runtime_dir_is_created_private(tmp_path):
    path = runtime_dir(environ={}, fallback_base=tmp_path)
    assert path == tmp_path / f"fleet-console-{os.geteuid()}"
    st = os.lstat(path)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700
    assert runtime_dir(environ={}, fallback_base=tmp_path) == path  # an existing private one is fine


@ROOT_ONLY
def test_planted_runtime_dir_of_another_user_is_refused(tmp_path):
    planted = tmp_path / f"fleet-console-{os.geteuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(LabError) as err:
        runtime_dir(environ={}, fallback_base=tmp_path)
    msg = str(err.value)
    assert str(planted) in msg and "owned by uid 65534" in msg and "rm -rf" in msg


def test_runtime_dir_open_to_others_is_refused(tmp_path):
    planted = tmp_path / f"fleet-console-{os.geteuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    with pytest.raises(LabError, match=rf"{planted}: its mode is 0777, open to group or others; run: chmod 700"):
        runtime_dir(environ={}, fallback_base=tmp_path)
    assert os.stat(planted).st_mode & 0o777 == 0o777  # refused, not silently "fixed"


def test_symlinked_runtime_dir_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / f"fleet-console-{os.geteuid()}").symlink_to(target)
    with pytest.raises(LabError, match="it is a symbolic link"):
        runtime_dir(environ={}, fallback_base=tmp_path)


def test_xdg_runtime_dir_gets_the_same_checks(tmp_path):
    (tmp_path / "fleet-console").mkdir()
    (tmp_path / "fleet-console").chmod(0o755)
    with pytest.raises(LabError, match="its mode is 0755"):
        runtime_dir(environ={"XDG_RUNTIME_DIR": str(tmp_path)})
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable by others and not sticky: our directory could be swapped
    with pytest.raises(LabError, match="writable by group or others .* not sticky"):
        runtime_dir(environ={"XDG_RUNTIME_DIR": str(shared)})


@ROOT_ONLY
def test_planted_state_is_never_read_and_the_cli_says_why(tmp_path):
    """The replayed attack: a lab state file pointing at a site with a cmd: secret."""
    run = tmp_path / "run"
    planted = run / "fleet-console"
    planted.mkdir(parents=True, mode=0o700)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text("site: demo\ndefaults:\n  bmc: {protocol: redfish, scheme: http, username: a, "
                    f"password: 'cmd:touch {marker}'}}\nracks:\n  - name: r1\n    nodes:\n"
                    "      - {name: n1, bmc: {address: 127.0.0.1, port: 9}}\nlab: {}\n")
    (planted / "s.json").write_text("{}")
    with socket.create_server(("127.0.0.1", 0)) as alive:  # the "lab" answers: the state looks live
        (planted / "lab-demo.json").write_text(json.dumps({
            "pid": os.getpid(), "site": "demo", "site_file": str(evil), "secrets_file": str(planted / "s.json"),
            "endpoints": {"nodes": {}, "switches": {}, "workers": [],
                          "provisioner_url": f"http://127.0.0.1:{alive.getsockname()[1]}"}}))
        for p in (planted / "s.json", planted / "lab-demo.json", planted):
            os.chown(p, 65534, 65534)
        env = dict(os.environ, XDG_RUNTIME_DIR=str(run))
        out = subprocess.run([sys.executable, "-m", "console.cli.main", "--site", "demo", "status"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert not marker.exists()
    assert out.returncode == 1, out.stderr
    assert (f"fleet-console: error: refusing the runtime directory {planted}: it is owned by uid 65534"
            in out.stderr), out.stderr
    assert "Traceback" not in out.stderr


@ROOT_ONLY
def test_state_file_not_ours_or_a_symlink_is_refused(tmp_path, monkeypatch):
    from console.lab.state import read_state

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    rt = runtime_dir()
    state = rt / "lab-demo.json"
    state.write_text("{}")
    os.chown(state, 65534, 65534)
    with pytest.raises(LabError, match=rf"refusing the lab state file {state}: it is owned by uid 65534"):
        read_state("demo")
    state.unlink()
    (tmp_path / "other.json").write_text("{}")
    state.symlink_to(tmp_path / "other.json")
    with pytest.raises(LabError, match="it is a symbolic link"):
        read_state("demo")


# ------------------------------------------------------------------ the lab binds loopback only
def _site(bmc: str, host: str = "127.2.211.1", url: str = "http://127.0.0.1:8069"):
    return load_site_text(
        "site: t-bind\ndefaults:\n  bmc: {protocol: ipmi, username: admin, password: 'lab:bmc'}\n"
        f"provisioner: {{kind: ipxe, url: '{url}'}}\n"
        f"racks:\n  - name: r1\n    nodes:\n      - {{name: n1, host: {host}, bmc: {{address: '{bmc}'}}}}\n"
        "lab: {}\n", "t-bind.yaml")


@pytest.mark.parametrize("bmc, host, url, culprit", [
    ("0.0.0.0", "127.2.211.1", "http://127.0.0.1:8069", "node n1 bmc.address is 0.0.0.0"),
    ("127.1.211.1", "10.2.1.1", "http://127.0.0.1:8069", "node n1 host is 10.2.1.1"),
    ("127.1.211.1", "127.2.211.1", "http://0.0.0.0:8069", "provisioner.url is 0.0.0.0"),
    ("::", "127.2.211.1", "http://127.0.0.1:8069", "node n1 bmc.address is ::"),
])
def test_lab_refuses_non_loopback_addresses_before_binding(tmp_path, bmc, host, url, culprit):
    lab = Lab(_site(bmc, host, url), ephemeral=True, runtime=tmp_path)
    with pytest.raises(LabError, match=r"the lab binds loopback addresses only \(127\.0\.0\.0/8 or ::1\): "
                       + culprit.replace(".", r"\.")):
        lab.start()
    assert lab._procs == [] and not lab.lab_dir.exists()  # nothing was started or bound


def test_cli_lab_with_a_wildcard_address_says_why(tmp_path):
    path = tmp_path / "t-bind.yaml"
    path.write_text("site: t-bind\ndefaults:\n  bmc: {protocol: ipmi, username: admin, password: 'lab:bmc'}\n"
                    "racks:\n  - name: r1\n    nodes:\n      - {name: n1, bmc: {address: 0.0.0.0}}\nlab: {}\n")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    out = subprocess.run([sys.executable, "-m", "console.cli.main", "--site", str(path), "lab", "--ephemeral"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip() == ("fleet-console: error: site t-bind: the lab binds loopback addresses only "
                                  "(127.0.0.0/8 or ::1): node n1 bmc.address is 0.0.0.0")


# ------------------------------------------------------------------ a lab killed with SIGKILL
SMALL_LAB = """
site: t-stale
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
racks:
  - name: r1
    nodes:
      - {name: "st-n[1-2]", bmc: {address: "127.1.211.[1-2]"}}
lab: {}
"""


@pytest.fixture
def killed_lab(tmp_path):
    """A ``fleet-console lab`` killed with SIGKILL (its workers are stopped afterwards)."""
    site = tmp_path / "t-stale.yaml"
    site.write_text(SMALL_LAB)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", str(site), "lab", "--ephemeral",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    workers: list[int] = []
    try:
        proc.stdout.readline()  # "starting the lab ..."
        info = proc.stdout.readline()
        assert info.startswith("{"), info + proc.stderr.read()
        state_file = tmp_path / "run" / "fleet-console" / "lab-t-stale.json"
        state = json.loads(state_file.read_text())
        workers = state["endpoints"]["workers"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        yield tmp_path / "run", state
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        for pid in workers:  # a worker ends when its stdin closes; make sure
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_stale_lab_state_and_directory_are_removed(killed_lab, monkeypatch):
    from console.lab.state import read_state

    run, state = killed_lab
    rt = run / "fleet-console"
    lab_dir = Path(state["secrets_file"]).parent
    assert lab_dir.parent == rt and (lab_dir / "secrets.json").exists()
    # an older lab of this site, also killed, left only its directory
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = rt / f"lab-t-stale-{dead.pid}-1"
    orphan.mkdir(mode=0o700)
    (orphan / "secrets.json").write_text("{}")
    keep = rt / "lab-t-stale-other.yaml"  # not a lab directory: left alone
    keep.write_text("x")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert read_state("t-stale") is None
    assert not (rt / "lab-t-stale.json").exists()
    assert not lab_dir.exists() and not orphan.exists() and keep.exists()

