"""Credential references: env, file (0600, ours, no symlink), cmd (time-limited, once per
reference, failures cached), lab; secrets never shown."""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import subprocess
import sys
from pathlib import Path

import pytest

import console.secrets as secrets_module
from console.secrets import Secrets
from inventory.errors import SecretError
from tests.support import ended, wait_for


def test_env_reference():
    s = Secrets(environ={"PW": "s3cret"})
    secret = s.resolve("env:PW")
    assert secret.get() == "s3cret"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret) and "s3cret" not in f"{secret}"
    with pytest.raises(SecretError, match="environment variable MISSING is not set"):
        s.resolve("env:MISSING")


def test_file_reference_requires_private_mode(tmp_path):
    f = tmp_path / "pw"
    f.write_text("filepass\n")
    f.chmod(0o644)
    with pytest.raises(SecretError, match=r"readable by group or others \(mode 0644\); run: chmod 600") as info:
        Secrets().resolve(f"file:{f}")
    assert "filepass" not in str(info.value)
    f.chmod(0o600)
    assert Secrets().resolve(f"file:{f}").get() == "filepass"
    with pytest.raises(SecretError, match="does not exist"):
        Secrets().resolve(f"file:{tmp_path}/nope")
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(SecretError, match="is empty"):
        Secrets().resolve(f"file:{empty}")


def test_cmd_reference(tmp_path):
    ok = f"cmd:{sys.executable} -c \"print('cmdpass'); print('second line')\""
    assert Secrets().resolve(ok).get() == "cmdpass"
    with pytest.raises(SecretError, match="exited with status 3") as info:
        Secrets().resolve(f"cmd:{sys.executable} -c \"print('leak'); raise SystemExit(3)\"")
    assert "leak" not in str(info.value)
    with pytest.raises(SecretError, match="not found"):
        Secrets().resolve("cmd:/no/such/tool show x")


def test_lab_reference():
    assert Secrets(lab={"bmc": "labpw"}).resolve("lab:bmc").get() == "labpw"
    with pytest.raises(SecretError, match="needs a running lab"):
        Secrets().resolve("lab:bmc")
    with pytest.raises(SecretError, match="no secret named 'x'"):
        Secrets(lab={"bmc": "labpw"}).resolve("lab:x")


def test_file_reference_must_be_ours_and_not_a_symlink(tmp_path):
    f = tmp_path / "pw"
    f.write_text("filepass\n")
    f.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(f)
    with pytest.raises(SecretError, match=rf"secret file {link} is a symbolic link; name the file itself"):
        Secrets().resolve(f"file:{link}")
    if os.geteuid() == 0:
        os.chown(f, 65534, 65534)
        with pytest.raises(SecretError, match=rf"secret file {f} is owned by uid 65534, not by you \(uid 0\) or root"):
            Secrets().resolve(f"file:{f}")


def _counting_cmd(tmp_path, body: str) -> tuple[str, Path]:
    """A cmd: reference that appends a line to a counter file each time it runs, then ``body``."""
    count = tmp_path / "runs"
    script = tmp_path / "secret.sh"
    script.write_text(f"#!/bin/sh\necho run >> {count}\n{body}\n")
    script.chmod(0o700)
    return f"cmd:{script}", count


def _runs(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


def _first_line(stream, within: float) -> bytes:
    """The first line the command prints, waiting at most ``within`` seconds for it."""
    ready, _, _ = select.select([stream], [], [], within)
    return stream.readline() if ready else b""



def test_slow_cmd_times_out_and_its_children_are_killed(tmp_path, monkeypatch):
    """The timeout counts from when the command has started its child and said so (its first
    line, the child's pid): a loaded machine may take longer than the timeout to start a
    shell, and a command killed before it forked proves nothing about its children."""
    ref, count = _counting_cmd(tmp_path, "sleep 30 &\necho $!\nwait")
    children: list[int] = []

    class ReportsItsChild(subprocess.Popen):
        def communicate(self, input=None, timeout=None):
            if not children:  # the first call is the timed one; the kill's reap comes after
                line = _first_line(self.stdout, within=30)
                if not line.strip():
                    pytest.fail("the secret command never reported its child's pid")
                children.append(int(line))
            return super().communicate(input, timeout)

    monkeypatch.setattr(secrets_module.subprocess, "Popen", ReportsItsChild)
    with pytest.raises(SecretError) as err:
        Secrets(cmd_timeout=0.5).resolve(ref)
    assert str(err.value) == f"secret cmd:{tmp_path / 'secret.sh'} timed out after 0.5s"
    # SIGKILL is acted on when the process next runs: under load, a moment after killpg()
    wait_for(lambda: ended(children[0]), 5, "the command killed with its session")


def test_a_failure_is_cached_then_retried(tmp_path):
    now = [1000.0]
    ref, count = _counting_cmd(tmp_path, "exit 3")
    s = Secrets(failure_ttl=60, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(SecretError, match="exited with status 3"):
            s.resolve(ref)
    assert _runs(count) == 1  # not run again on every poll
    now[0] += 61
    with pytest.raises(SecretError, match="exited with status 3"):
        s.resolve(ref)
    assert _runs(count) == 2


async def test_concurrent_requests_share_one_run_off_the_loop(tmp_path):
    """The command waits for a file the event loop creates: it can only finish if the loop
    keeps running while it does (run on the loop, it would time out)."""
    started, go = tmp_path / "started", tmp_path / "go"
    ref, count = _counting_cmd(tmp_path, f"touch {started}\nwhile [ ! -e {go} ]; do sleep 0.01; done\necho shared")
    s = Secrets(cmd_timeout=5)

    async def answer():
        while not started.exists():
            await asyncio.sleep(0.01)
        go.touch()

    *results, _ = await asyncio.gather(*(s.aresolve(ref) for _ in range(5)), answer())
    assert [r.get() for r in results] == ["shared"] * 5
    assert _runs(count) == 1
    assert s.resolve(ref).get() == "shared" and _runs(count) == 1


def test_timeout_is_configurable_from_the_environment(monkeypatch):
    monkeypatch.setenv("FLEET_CONSOLE_SECRET_TIMEOUT", "2.5")
    assert Secrets().cmd_timeout == 2.5
    monkeypatch.setenv("FLEET_CONSOLE_SECRET_TIMEOUT", "soon")
    with pytest.raises(SecretError, match="FLEET_CONSOLE_SECRET_TIMEOUT must be a number of seconds"):
        Secrets()


def test_detached_copy_pickles_with_what_is_resolved():
    s = Secrets(environ={"PW": "x"}, cmd_timeout=3)
    s.resolve("env:PW")
    copy = pickle.loads(pickle.dumps(s.detached()))
    assert copy.resolve("env:PW").get() == "x" and copy.cmd_timeout == 3
