"""The activity journal: append-only JSONL per site, readable after a crash, never a secret."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from console.ops.journal import KEYS, Journal, journal_path, read_entries, state_dir


def test_entries_have_every_key_and_land_under_the_xdg_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("FLEET_OPERATOR", "alice@gateway")
    j = Journal("s1")
    j.write(action="power cycle", node="n1", step="power-cycle", result="started", ticket="INC-1", plan="p1")
    j.write(action="power cycle", node="n1", step="power-cycle", result="ok", ticket="INC-1", plan="p1",
            detail="read back on")
    path = tmp_path / "fleet-console" / "s1" / "journal.jsonl"
    assert journal_path("s1") == path and state_dir() == tmp_path / "fleet-console"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first) == list(KEYS)
    assert first["operator"] == "alice@gateway" and first["result"] == "started" and first["error"] is None
    assert first["time"].endswith("Z") and "T" in first["time"]
    entries = read_entries("s1")
    assert [e["result"] for e in entries] == ["started", "ok"]  # newest last


def test_operator_defaults_to_the_login_name(tmp_path, monkeypatch):
    import getpass

    monkeypatch.delenv("FLEET_OPERATOR", raising=False)
    j = Journal("s", path=tmp_path / "j.jsonl")
    assert j.write(action="x", result="ok")["operator"] == getpass.getuser()


def test_filter_by_node_and_limit(tmp_path):
    j = Journal("s", path=tmp_path / "j.jsonl")
    for i in range(10):
        j.write(action="power on", node=f"n{i % 2}", step=str(i), result="ok")
    assert [e["step"] for e in read_entries("s", path=j.path, limit=3)] == ["7", "8", "9"]
    assert [e["step"] for e in read_entries("s", path=j.path, node="n1", limit=2)] == ["7", "9"]
    assert len(read_entries("s", path=j.path, limit=0)) == 10
    assert read_entries("s", path=tmp_path / "missing.jsonl") == []


def test_only_known_keys_so_no_secret_can_be_added(tmp_path):
    j = Journal("s", path=tmp_path / "j.jsonl")
    with pytest.raises(TypeError, match="password"):
        j.write(action="power on", password="hunter2")
    with pytest.raises(ValueError, match="result"):
        j.write(action="power on", result="maybe")
    assert not j.path.exists() or "hunter2" not in j.path.read_text()


def test_a_crash_mid_write_leaves_the_journal_readable(tmp_path):
    """A process killed while writing leaves a torn last line: it is skipped, the rest is read, and
    the next entry is not glued onto it."""
    path = tmp_path / "j.jsonl"
    code = textwrap.dedent(f"""
        import os, signal
        from console.ops.journal import Journal
        j = Journal("s", path={str(path)!r})
        for i in range(5):
            j.write(action="power cycle", node="n%d" % i, step="power-cycle", result="started")
        fd = os.open({str(path)!r}, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b'{{"time":"2026-01-01T00:00:00Z","operator":"x","action":"power cy')
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    entries = read_entries("s", path=path)
    assert [e["node"] for e in entries] == ["n0", "n1", "n2", "n3", "n4"]
    assert entries[-1]["step"] == "power-cycle" and entries[-1]["result"] == "started"  # the last step
    Journal("s", path=path).write(action="power cycle", node="n5", step="power-cycle", result="ok")
    assert [e["node"] for e in read_entries("s", path=path)] == ["n0", "n1", "n2", "n3", "n4", "n5"]


def test_concurrent_writers_never_interleave_lines(tmp_path):
    path = tmp_path / "j.jsonl"
    code = textwrap.dedent(f"""
        import sys
        from console.ops.journal import Journal
        j = Journal("s", path={str(path)!r})
        for i in range(150):
            j.write(action="power on", node=sys.argv[1], step=str(i), result="ok", detail="x" * 1500)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{k}"]) for k in range(3)]
    for p in procs:
        assert p.wait(120) == 0
    lines = path.read_bytes().splitlines()
    assert len(lines) == 450 and all(json.loads(line)["detail"] == "x" * 1500 for line in lines)
    for k in range(3):
        steps = [e["step"] for e in read_entries("s", path=path, node=f"w{k}", limit=0)]
        assert steps == [str(i) for i in range(150)]


def test_reading_the_tail_of_a_long_journal_across_blocks(tmp_path):
    from console.ops import journal as jmod

    j = Journal("s", path=tmp_path / "j.jsonl")
    for i in range(300):
        j.write(action="power on", node=f"n{i % 3}", step=str(i), result="ok", detail="y" * (i % 50))
    with open(j.path, "rb") as f:  # tiny blocks: lines span block boundaries
        lines = list(jmod._lines_backwards(f, block=7))
    assert [json.loads(x)["step"] for x in lines if x] == [str(i) for i in reversed(range(300))]
    assert [e["step"] for e in read_entries("s", path=j.path, node="n2", limit=4)] == ["287", "290", "293", "296", "299"][1:]
    assert len(read_entries("s", path=j.path, limit=0)) == 300
