"""`fleet-console audit` as cron runs it: a separate process against a published demo lab.

Done when (issue 18): `audit` finds exactly the demo's drifted nodes, and after
reimaging them (with `fleet-console reimage`) it exits 0."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from console import site as sites
from tests.engine.test_imageaudit import DRIFT, UNREACHABLE

if TYPE_CHECKING:
    from console.lab.lab import Lab


@contextmanager
def published_lab(tmp_path_factory, name: str) -> Iterator[Lab]:
    """The demo site under another name (its own lab state), published for the subprocesses."""
    from console.lab.lab import Lab
    from console.lab.state import write_state

    directory = tmp_path_factory.mktemp(name)
    os.chmod(directory, 0o700)
    path = directory / f"{name}.yaml"
    text = sites.find_site("demo").read_text().replace("site: demo\n", f"site: {name}\n", 1)
    path.write_text(text)
    path.chmod(0o600)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=0.02) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    """A lab the tests only read (audit): its drift stays as the demo has it."""
    with published_lab(tmp_path_factory, "auditdemo") as lab:
        yield lab


@pytest.fixture
def reimaged_lab(tmp_path_factory, private_runtime_dir):
    """A lab of its own for the test that reimages its drift away, whenever it runs."""
    with published_lab(tmp_path_factory, "auditfixed") as lab:
        yield lab


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("auditstate"))
    e["FLEET_CONSOLE_LOCKS"] = str(tmp_path_factory.mktemp("auditlocks"))
    e["FLEET_OPERATOR"] = "tester"
    for key in ("FLEET_CONSOLE_DEBUG", "FLEET_CONSOLE_READ_ONLY"):
        e.pop(key, None)
    return e


def start(lab, env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", lab.site_file, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout=180) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(lab, env, *args, timeout=180):
    return finish(start(lab, env, *args), timeout)


def test_bad_input_exits_2(lab, env, tmp_path, cli_in_process):
    def audit(*args):  # refused before any host is read: in this process
        return cli_in_process("--site", lab.site_file, "audit", *args, env=env)

    code, _out, err = audit("no-such-node")
    assert code == 2 and "Traceback" not in err and "no-such-node" in err
    code, _out, err = audit("--fanout", "0")
    assert code == 2 and "--fanout" in err
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "target.csv")
    code, _out, err = audit("--csv", str(link))
    assert code == 2 and "symbolic link" in err and not (tmp_path / "target.csv").exists()
    code, _out, err = audit("--csv", str(tmp_path / "no" / "dir.csv"))
    assert code == 2 and "Traceback" not in err


def test_audit_range_text_and_csv(lab, env, tmp_path):
    out = tmp_path / "audit.csv"
    r = cli(lab, env, "audit", "rack=r02", "--csv", str(out))
    assert r.returncode == 1, r.stderr
    assert "dal1-r02-n01" in r.stdout and "drift" in r.stdout and "dal1-r01-n09" not in r.stdout
    assert "30 nodes audited" in r.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 30 and {row["name"] for row in rows if row["state"] == "drift"} == \
        {n for n in DRIFT if n.startswith("dal1-r02")}
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    r = cli(lab, env, "audit", "dal1-r01-n0[1-2]")
    assert r.returncode == 0 and "2 ok" in r.stderr


def test_done_when_audit_finds_the_drift_and_exits_0_after_reimage(reimaged_lab, env):
    lab = reimaged_lab
    r = cli(lab, env, "audit", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert {n for n, x in nodes.items() if x["state"] == "drift"} == DRIFT
    assert {n for n, x in nodes.items() if x["state"] == "unknown"} == UNREACHABLE
    assert nodes["dal1-r01-n20"]["running"] == nodes["dal1-r01-n20"]["desired"] == "flatcar@4081.2.1"
    assert nodes["dal1-r01-n20"]["running_sha256"] != nodes["dal1-r01-n20"]["desired_sha256"]
    for x in nodes.values():
        assert x["read_at"] and x["since"] and x["state"] and x["reason"]
    # reimage each not-ok node to what the inventory wants (--force: n20 runs that version already,
    # another build of it)
    by_image: dict[str, list[str]] = {}
    for name in sorted(DRIFT | UNREACHABLE):
        by_image.setdefault(nodes[name]["desired"], []).append(name)
    # one `reimage` per image, side by side (as two operators could: their nodes differ)
    procs = [start(lab, env, "reimage", ",".join(names), "--image", ref, "--yes", "--force", "--fanout", "20",
                   "--poll-interval", "0.05", "--timeout", "3") for ref, names in by_image.items()]
    try:
        done = [finish(proc, timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert len(done) == 2
    for r in done:
        assert r.returncode == 0, r.stdout + r.stderr
    r = cli(lab, env, "audit", "--json")
    assert r.returncode == 0, r.stdout
    after = {n["name"]: n for n in json.loads(r.stdout)["nodes"]}
    assert all(x["state"] == "ok" for x in after.values())
    assert after["dal1-r01-n20"]["running_sha256"] == after["dal1-r01-n20"]["desired_sha256"]
    assert after["dal1-r01-n20"]["changed"] is not None  # the history dates the new build
    hist = Path(env["XDG_STATE_HOME"]) / "fleet-console" / "auditfixed" / "audit.jsonl"
    assert hist.exists() and oct(hist.stat().st_mode & 0o777) == "0o600"
