"""Operator locks: lock files with owner, pid, host and expiry; all or nothing; stale ones reclaimed."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from console import site as sites
from console.cli.main import SiteContext
from console.ops.actions import NodePlan, Plan, Step
from console.ops.journal import Journal
from console.ops.locks import LockBusy, LockError, Locks, user_name
from console.ops.runner import Runner
from console.secrets import Secrets
from tests import cli_fork
from tests.support import wait_for

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files are given to other uids")

HOLD = textwrap.dedent("""
    import sys
    from console.ops.locks import Locks
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


# --------------------------------------------------------------------------- a shared, hostile directory
def make_dirs(base, site="s"):
    """The lock directory and the site's, as the first operator leaves them (1777, a guard in it)."""
    assert Locks(site, directory=base, owner="setup").acquire([]) == {}
    return base / site


def test_a_symlinked_guard_is_refused_and_its_target_keeps_its_mode(tmp_path):
    shadow = tmp_path / "shadow"  # stands in for /etc/shadow
    shadow.write_text("root:$6$secret:19000::::::\n")
    shadow.chmod(0o600)
    site = make_dirs(tmp_path / "locks")
    (site / ".guard").unlink()
    (site / ".guard").symlink_to(shadow)
    with pytest.raises(LockError, match=r"/locks/s/\.guard is a symbolic link: refusing to follow it"):
        Locks("s", directory=tmp_path / "locks", owner="alice").acquire(["n1"])
    assert stat.S_IMODE(shadow.stat().st_mode) == 0o600
    assert shadow.read_text() == "root:$6$secret:19000::::::\n"
    assert not (site / "n1.lock").exists()


def test_a_symlinked_site_or_lock_directory_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "locks").mkdir(mode=0o755)
    (tmp_path / "locks" / "s").symlink_to(elsewhere)
    locks = Locks("s", directory=tmp_path / "locks", owner="alice")
    with pytest.raises(LockError, match=r"/locks/s is a symbolic link"):
        locks.acquire(["n1"])
    with pytest.raises(LockError, match=r"/locks/s is a symbolic link"):
        locks.held_by("n1")  # planning reads through the same checks
    (tmp_path / "link").symlink_to(tmp_path / "locks")
    with pytest.raises(LockError, match=r"/link is a symbolic link"):
        Locks("s", directory=tmp_path / "link", owner="alice").acquire(["n1"])
    assert list(elsewhere.iterdir()) == []


def test_renew_never_follows_a_planted_temp_file(tmp_path):
    locks = Locks("s", directory=tmp_path / "locks", owner="alice", ttl=5)
    assert locks.acquire(["n1"]) == {}
    target = tmp_path / "victim"
    target.write_text("precious\n")
    planted = tmp_path / "locks" / "s" / f".n1.{os.getpid()}.tmp"  # the name renew used to write through
    planted.symlink_to(target)
    locks.renew(ttl=100)
    assert target.read_text() == "precious\n"
    lock = tmp_path / "locks" / "s" / "n1.lock"
    assert not lock.is_symlink() and json.loads(lock.read_text())["expires"] > time.time() + 90
    assert planted.is_symlink()  # someone else's file: left alone
    assert sorted(p.name for p in lock.parent.iterdir()) == [".guard", planted.name, "n1.lock"]  # no temp left


def test_a_writable_non_sticky_directory_is_refused_at_any_level(tmp_path):
    base = tmp_path / "locks"
    base.mkdir()
    base.chmod(0o777)
    with pytest.raises(LockError, match=r"unsafe lock directory: .*/locks is writable by others and not sticky "
                                        r"\(mode 0777\)"):
        Locks("s", directory=base, owner="alice").acquire(["n1"])
    base.chmod(0o775)  # group-writable is no better
    with pytest.raises(LockError, match=r"/locks is writable by others and not sticky \(mode 0775\)"):
        Locks("s", directory=base, owner="alice").acquire(["n1"])
    base.chmod(0o1777)  # the shared directory, like /tmp: fine
    assert Locks("s", directory=base, owner="alice").acquire(["n1"]) == {}
    # a directory above it that anyone may rename things in
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(LockError, match=r"unsafe lock directory: .*/open is writable by others and not sticky"):
        Locks("s", directory=tmp_path / "open" / "locks", owner="alice").acquire(["n1"])
    assert not (tmp_path / "open" / "locks").exists()
    # the site directory is checked too
    (base / "t").mkdir()
    (base / "t").chmod(0o777)
    with pytest.raises(LockError, match=r"/locks/t is writable by others and not sticky"):
        Locks("t", directory=base, owner="alice").held_by("n1")


@root_only
def test_a_directory_owned_by_another_user_is_refused_even_sticky(tmp_path):
    nobody = user_name(65534)
    base = tmp_path / "locks"
    base.mkdir(mode=0o755)
    os.chown(base, 65534, 65534)
    with pytest.raises(LockError, match=rf"unsafe lock directory: .*/locks is owned by {nobody}, not by root$"):
        Locks("s", directory=base, owner="alice").acquire(["n1"])
    # made first by another user, shared like /tmp: its owner could still delete every
    # operator's lock (the sticky bit does not bind a directory's owner)
    base.chmod(0o1777)
    with pytest.raises(LockError, match=rf"/locks is owned by {nobody}, not by root$"):
        Locks("s", directory=base, owner="alice").acquire(["n1"])
    os.chown(base, 0, 0)  # root's shared directory (as root makes it): each file is checked instead
    assert Locks("s", directory=base, owner="alice").acquire(["n1"]) == {}
    (base / "t").mkdir(mode=0o755)  # a site directory someone else owns, not shared
    os.chown(base / "t", 65534, 65534)
    with pytest.raises(LockError, match=rf"/locks/t is owned by {nobody}, not by root$"):
        Locks("t", directory=base, owner="alice").acquire(["n1"])
    above = tmp_path / "above"
    above.mkdir(mode=0o755)
    os.chown(above, 65534, 65534)  # someone else's directory above the lock directory
    with pytest.raises(LockError, match=rf"/above is owned by {nobody}, not by root$"):
        Locks("s", directory=above / "locks", owner="alice").acquire(["n1"])


def forge(path, owner="alice", **fields):
    data = {"node": path.stem, "owner": owner, "pid": os.getppid(), "host": socket.gethostname(),
            "created": time.time(), "expires": 99_999_999_999.0, "action": "power off", "plan": "x"}  # year 5138
    data.update(fields)
    path.write_text(json.dumps(data))


def test_a_forged_far_future_lock_is_reclaimed(tmp_path):
    site = make_dirs(tmp_path / "locks")
    forge(site / "n1.lock")  # a live process on this host, an expiry 3,000 years away
    forge(site / "n2.lock", expires=float("inf"))
    (site / "n3.lock").write_text('{"owner": "alice", "pid": 1, "host": "x", "created": 0, "expires": NaN}')
    bob = Locks("s", directory=tmp_path / "locks", owner="bob")
    assert bob.held_by("n1") is None
    assert bob.acquire(["n1", "n2"]) == {}
    assert json.loads((site / "n1.lock").read_text())["owner"] == "bob"
    assert json.loads((site / "n2.lock").read_text())["owner"] == "bob"
    # not a lock at all (NaN never compares): judged by the file's age, as junk is
    assert "unreadable lock file" in bob.held_by("n3").describe()
    # a ttl beyond the limit is capped, so our own locks never look forged
    capped = Locks("s", directory=tmp_path / "locks", owner="carol", ttl=10 * 365 * 86400)
    assert capped.acquire(["n4"]) == {}
    assert json.loads((site / "n4.lock").read_text())["expires"] <= time.time() + 24 * 3600
    assert Locks("s", directory=tmp_path / "locks", owner="dave").held_by("n4").owner == "carol"


@root_only
def test_a_lock_file_is_described_by_its_real_owner(tmp_path):
    site = make_dirs(tmp_path / "locks")
    forge(site / "n1.lock", expires=time.time() + 600)
    os.chown(site / "n1.lock", 65534, 65534)
    held = Locks("s", directory=tmp_path / "locks", owner="bob").held_by("n1")
    assert held.uid == 65534
    assert held.describe().startswith(f"locked by {user_name(65534)} (claims alice) (pid {os.getppid()} on ")
    # control characters in what a file says are shown, not sent to the terminal
    forge(site / "n2.lock", owner="\x1b]0;PWNED\x07", expires=time.time() + 600, action="\x1b[2J")
    text = Locks("s", directory=tmp_path / "locks", owner="bob").held_by("n2").describe()
    assert "\x1b" not in text and "\x07" not in text and "^[]0;PWNED^G" in text and "^[[2J" in text


def as_user(uid, fn):
    """``fn()`` in a forked child running as ``uid`` (the code is already imported); what it returns."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = fn()
        except BaseException as exc:
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.fixture
def shared_tmp():
    """A directory another uid can reach (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="fleet-locks-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@root_only
def test_a_forged_lock_that_cannot_be_deleted_is_reported_with_its_real_owner(shared_tmp):
    site = make_dirs(shared_tmp / "locks")
    forge(site / "n1.lock")  # "alice" until year 5138, but the file is daemon's
    os.chown(site / "n1.lock", 1, 1)
    # another operator (uid 65534) cannot delete daemon's file in the sticky directory: held, and why
    said = as_user(65534, lambda: Locks("s", directory=shared_tmp / "locks", owner="op").acquire(["n1"])["n1"]
                   .describe())
    assert said.startswith(f"locked by {user_name(1)} (claims alice) (pid "), said
    assert ("stale (its expiry (year 5138) is beyond the 24 h limit: forged or broken), but not removable by "
            f"{user_name(65534)}: only {user_name(1)} or root can delete {site / 'n1.lock'}") in said
    planned = as_user(65534, lambda: Locks("s", directory=shared_tmp / "locks", owner="op").held_by("n1").describe())
    assert planned == said  # planning says the same before trying
    assert (site / "n1.lock").exists()
    # root can, and does
    assert Locks("s", directory=shared_tmp / "locks", owner="root-op").acquire(["n1"]) == {}
    assert (site / "n1.lock").stat().st_uid == 0


# --------------------------------------------------------------------------- waiting for the guard
GUARD_HOLDER = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); " \
               "print('held', flush=True); sys.stdin.read()"


@pytest.fixture
def guard_holder(tmp_path):
    """Another process holding the site's guard flock until the test ends."""
    guard = make_dirs(tmp_path / "locks") / ".guard"
    proc = subprocess.Popen([sys.executable, "-c", GUARD_HOLDER, str(guard)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc, guard
    finish(proc)


def test_a_held_guard_fails_acquire_within_the_bound_naming_it_and_its_holder(tmp_path, guard_holder):
    proc, guard = guard_holder
    locks = Locks("s", directory=tmp_path / "locks", owner="alice", wait=0.3)
    with pytest.raises(LockBusy) as err:
        locks.acquire(["n1"])
    assert str(err.value).startswith(f"{guard} is held by pid {proc.pid} (python")
    assert "for more than 0.3 s: no node was locked" in str(err.value)
    assert not (guard.parent / "n1.lock").exists() and locks.mine() == []


def test_release_does_not_wait_for_a_held_guard_for_ever(tmp_path):
    locks = Locks("s", directory=tmp_path / "locks", owner="alice", wait=0.2)
    assert locks.acquire(["n1"]) == {}
    guard = os.open(tmp_path / "locks" / "s" / ".guard", os.O_RDONLY)
    fcntl.flock(guard, fcntl.LOCK_EX)
    try:  # our own files go without the guard, each checked to be ours and still the same file
        locks.release()
    finally:
        os.close(guard)
    assert locks.mine() == [] and not (tmp_path / "locks" / "s" / "n1.lock").exists()


def demo_plan(node="dal1-r01-n01"):
    return Plan("power on", [NodePlan(node, [Step("power-on", "power on")])], kind="power", power_action="on")


async def test_waiting_for_the_guard_keeps_the_event_loop_turning(tmp_path):
    """The TUI runs the Runner on its own loop: the wait for the guard must happen off it."""
    locks = Locks("demo", directory=tmp_path / "locks", owner="tester", wait=60)
    guard_path = make_dirs(tmp_path / "locks", "demo") / ".guard"
    journal = Journal("demo", operator="tester", path=tmp_path / "journal.jsonl")
    runner = Runner(SiteContext(sites.load("demo"), Secrets()), demo_plan(), journal=journal, locks=locks)
    guard = os.open(guard_path, os.O_RDONLY)  # another open file: the runner must wait for it
    fcntl.flock(guard, fcntl.LOCK_EX)
    try:
        task = asyncio.create_task(runner.run())
        for _ in range(20):  # while the runner waits for the guard, the loop keeps turning
            await asyncio.sleep(0.01)
            assert not task.done()
        entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
        assert [(e["step"], e["result"]) for e in entries] == [("plan", "started")]  # and no further yet
        runner.cancel()  # Ctrl-C, SIGTERM or `c`: it stops waiting at its next attempt, and nothing starts
        result = await task
    finally:
        os.close(guard)
    assert [(p.node, p.phase, p.error) for p in result.nodes] == [("dal1-r01-n01", "cancelled",
                                                                    "not started: cancelled")]
    assert not list(guard_path.parent.glob("*.lock"))
    last = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()][-1]
    assert (last["step"], last["result"], last["error"]) == ("summary", "cancelled", "cancelled")


async def test_a_guard_held_past_the_bound_fails_the_run_and_says_so_in_the_journal(tmp_path, guard_holder):
    proc, guard = guard_holder
    locks = Locks("s", directory=tmp_path / "locks", owner="tester", wait=0.3)
    journal = Journal("s", operator="tester", path=tmp_path / "journal.jsonl")
    runner = Runner(SiteContext(sites.load("demo"), Secrets()), demo_plan(), journal=journal, locks=locks)
    with pytest.raises(LockBusy, match=rf"is held by pid {proc.pid} "):
        await runner.run()
    last = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()][-1]
    assert last["step"] == "summary" and last["result"] == "failed" and f"held by pid {proc.pid}" in last["error"]


# --------------------------------------------------------------------------- the CLI
@pytest.fixture
def demo_cli(demo_lab, tmp_path):
    """The demo lab published for `fleet-console` subprocesses, and their environment."""
    from console.lab.state import remove_state, write_state

    site_file = str(sites.find_site("demo"))
    write_state(demo_lab, site_file)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), FLEET_CONSOLE_LOCKS=str(tmp_path / "locks"),
               FLEET_OPERATOR="tester")
    env.pop("FLEET_CONSOLE_DEBUG", None)
    yield site_file, env
    remove_state("demo", os.getpid())


def fleet(site_file, env, *args):
    return cli_fork.run(["--site", site_file, *args], capture_output=True,
                          text=True, timeout=90, env=env, stdin=subprocess.DEVNULL)


def test_cli_power_while_the_guard_is_held_exits_2_with_one_clear_line(demo_cli, tmp_path, demo_lab, cli_in_process):
    site_file, env = demo_cli
    node = "dal1-r01-n05"
    before = demo_lab.machine(node)["boots"]
    guard_path = make_dirs(tmp_path / "locks", "demo") / ".guard"
    guard = os.open(guard_path, os.O_RDONLY)
    fcntl.flock(guard, fcntl.LOCK_EX)
    try:
        r = fleet(site_file, env, "power", "cycle", node, "--yes")
    finally:
        os.close(guard)
    assert r.returncode == 2, (r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fleet-console: error: {guard_path} is held by pid {os.getpid()} (")
    assert "for more than 5 s: no node was locked" in last and "Traceback" not in r.stderr
    assert demo_lab.machine(node)["boots"] == before
    # an unsafe lock directory is refused while planning, before any BMC is asked (in this process)
    (tmp_path / "locks").chmod(0o777)
    code, out, err = cli_in_process("--site", site_file, "power", "cycle", node, "--yes", env=env)
    assert code == 2, (out, err)
    assert demo_lab.machine(node)["boots"] == before
    mode, error = err.strip().splitlines()  # the mode line (embedded), then one clear error
    assert mode.startswith("fleet-console: embedded")
    assert error == (f"fleet-console: error: unsafe lock directory: {tmp_path / 'locks'} is writable "
                     "by others and not sticky (mode 0777)")


def test_cli_sigterm_while_waiting_for_the_guard_ends_it_and_starts_nothing(demo_cli, tmp_path, demo_lab):
    site_file, env = demo_cli
    node = "dal1-r01-n05"
    before = demo_lab.machine(node)["boots"]
    guard_path = make_dirs(tmp_path / "locks", "demo") / ".guard"
    guard = os.open(guard_path, os.O_RDONLY)
    fcntl.flock(guard, fcntl.LOCK_EX)
    journal_file = tmp_path / "state" / "fleet-console" / "demo" / "journal.jsonl"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", site_file, "power", "cycle", node,
                                 "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        try:  # "plan started" is journalled just before the locks are taken (and the guard waited for)
            wait_for(lambda: journal_file.exists() and '"started"' in journal_file.read_text(), timeout=60,
                     what="the run to start")
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        os.close(guard)  # held all along: the signal, not the guard, ended the wait
    assert proc.returncode == 1, (out, err)  # cancelled, not refused (that would be 2, after the 5 s bound)
    assert "not started: cancelled" in out and "Traceback" not in err
    assert demo_lab.machine(node)["boots"] == before
    assert not list(guard_path.parent.glob("*.lock"))
