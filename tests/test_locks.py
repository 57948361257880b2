"""Operator locks: lock files with owner, pid, host and expiry; all or nothing; stale ones reclaimed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

from console.locks import Locks

HOLD = textwrap.dedent("""
    import sys
    from console.locks import Locks
    l = Locks("s", directory=sys.argv[1], owner=sys.argv[2])
    held = l.acquire(sys.argv[3].split(","), action="power cycle", plan="p-other")
    print("ok" if not held else "held:" + ",".join(sorted(held)), flush=True)
    sys.stdin.read()   # hold until told
    l.release()
""")


def hold(directory, owner, nodes):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), owner, ",".join(nodes)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def finish(proc):
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(30)
    proc.stdout.close()


def test_acquire_writes_who_and_until_when_and_release_removes(tmp_path):
    locks = Locks("s", directory=tmp_path, owner="alice", ttl=600)
    assert locks.acquire(["n2", "n1"], action="power on", plan="p1") == {}
    data = json.loads((tmp_path / "s" / "n1.lock").read_text())
    assert data["owner"] == "alice" and data["pid"] == os.getpid() and data["host"] == socket.gethostname()
    assert time.time() + 590 < data["expires"] <= time.time() + 600 and data["plan"] == "p1"
    assert locks.mine() == ["n1", "n2"]
    assert locks.held_by("n1") is None  # ours does not count against us
    locks.release()
    assert not list((tmp_path / "s").glob("*.lock"))


def test_a_node_held_by_another_operator_is_refused_and_nothing_is_locked(tmp_path):
    proc, out = hold(tmp_path, "bob", ["n1"])
    try:
        assert out == "ok"
        mine = Locks("s", directory=tmp_path, owner="alice")
        held = mine.acquire(["n1", "n2"])
        assert list(held) == ["n1"] and held["n1"].owner == "bob" and held["n1"].pid == proc.pid
        assert "locked by bob (pid %d" % proc.pid in held["n1"].describe() and "power cycle" in held["n1"].describe()
        assert not (tmp_path / "s" / "n2.lock").exists()  # all or nothing
        assert mine.held_by("n1").owner == "bob" and mine.held_by("n2") is None
        # and the other way round: bob's second process cannot take alice's node
        assert mine.acquire(["n2"]) == {}
        proc2, out2 = hold(tmp_path, "bob", ["n2", "n3"])
        finish(proc2)
        assert out2 == "held:n2"
    finally:
        finish(proc)


def test_a_lock_whose_process_died_is_reclaimed(tmp_path):
    proc, out = hold(tmp_path, "bob", ["n1"])
    assert out == "ok"
    proc.kill()  # crashed: no release
    proc.wait(30)
    proc.stdout.close()
    assert (tmp_path / "s" / "n1.lock").exists()
    mine = Locks("s", directory=tmp_path, owner="alice")
    assert mine.held_by("n1") is None
    assert mine.acquire(["n1"]) == {}
    assert json.loads((tmp_path / "s" / "n1.lock").read_text())["owner"] == "alice"


def test_an_expired_lock_is_reclaimed_even_if_its_process_lives(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "n1.lock").write_text(json.dumps({
        "node": "n1", "owner": "bob", "pid": os.getppid(), "host": socket.gethostname(),
        "created": time.time() - 7200, "expires": time.time() - 1, "action": "", "plan": ""}))
    mine = Locks("s", directory=tmp_path, owner="alice")
    assert mine.held_by("n1") is None
    assert mine.acquire(["n1"]) == {}
    # a lock from another host is never judged by pid (we cannot see its processes)
    (tmp_path / "s" / "n2.lock").write_text(json.dumps({
        "node": "n2", "owner": "carol", "pid": 999999, "host": "elsewhere",
        "created": time.time(), "expires": time.time() + 600, "action": "", "plan": ""}))
    assert mine.held_by("n2").owner == "carol"


def test_renew_pushes_expiry(tmp_path):
    mine = Locks("s", directory=tmp_path, owner="alice", ttl=5)
    assert mine.acquire(["n1"]) == {}
    before = json.loads((tmp_path / "s" / "n1.lock").read_text())["expires"]
    mine.renew(ttl=100)
    after = json.loads((tmp_path / "s" / "n1.lock").read_text())["expires"]
    assert after > before + 90


def test_racing_operators_exactly_one_wins(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), f"op{k}", "a,b,c"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for k in range(4)]
    try:
        outs = [p.stdout.readline().strip() for p in procs]
    finally:
        for p in procs:
            finish(p)
    assert outs.count("ok") == 1, outs
    assert all(o.startswith("held:") for o in outs if o != "ok")


def test_two_runs_in_one_process_do_not_share_a_node(tmp_path):
    """The TUI can run two actions at once: each run's locks are its own."""
    a = Locks("s", directory=tmp_path, owner="alice")
    b = Locks("s", directory=tmp_path, owner="alice")
    assert a.acquire(["n1"]) == {}
    held = b.acquire(["n1", "n2"])
    assert list(held) == ["n1"] and b.held_by("n1") is not None and a.held_by("n1") is None
    b.release(["n1"])  # not b's: left alone
    assert (tmp_path / "s" / "n1.lock").exists()
    a.release()
    assert b.acquire(["n1"]) == {}
