"""The image audit against a demo lab of its own: its deliberate drift (versions, a digest
under the same version), its unreachable hosts, a host key that does not match, the
history file, and convergence after reimaging what the audit found."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import asyncssh
import pytest

from console import site as sites
from console.ops.imageaudit import AuditError, AuditHistory, Reading, audit_node_state, run_audit
from console.secrets import Secrets
from tests.support import reimage_phases

#: what the demo's lab section sets apart (inventory/sites/demo.yaml, lab:)
DRIFT = {"dal1-r01-n09", "dal1-r01-n10", "dal1-r01-n20", "dal1-r02-n01", "dal1-r02-n02", "dal1-r02-n03",
         "dal1-r02-n04", "dal1-r02-n05", "dal1-r03-n04"}
UNREACHABLE = {"dal1-r01-n13", "dal1-r03-n20", "dal1-r03-n21"}  # powered off: their hosts answer no SSH
SHA_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture(scope="module")
def lab(private_runtime_dir):
    """A demo lab of this module's own: the last test reimages its drifted nodes."""
    from console.lab.lab import Lab

    with Lab(sites.load("demo"), ephemeral=True, time_scale=0.02) as lab:
        yield lab


@pytest.fixture
def ctx(lab):
    return lab.effective_site(), Secrets(lab=lab.secrets)


def _history(tmp_path: Path) -> AuditHistory:
    return AuditHistory("demo", path=tmp_path / "hist" / "demo" / "audit.jsonl")


# ----------------------------------------------------------------- states, without a lab
def test_states_from_the_three_readings():
    want = Reading("flatcar@1", SHA_A)
    other = Reading("flatcar@2", "b" * 64)
    none = Reading(None)
    assert audit_node_state(Reading(None), none, want)[0] == "unmanaged"
    assert audit_node_state(want, none, Reading("flatcar@1", SHA_A)) == ("ok", "runs the desired image")
    assert audit_node_state(want, none, Reading("flatcar@1"))[0] == "ok"  # names no digest: the version counts
    state, why = audit_node_state(want, none, Reading("flatcar@1", "c" * 64))
    assert state == "drift" and "another build" in why and "cccccccccccc" in why
    assert audit_node_state(want, other, other)[0] == "drift"
    assert audit_node_state(want, want, other)[0] == "pending"
    state, why = audit_node_state(want, none, Reading(None, error="ssh: connection refused"))
    assert state == "unknown" and "connection refused" in why
    assert audit_node_state(want, none, Reading(None, error="no host"), has_ssh=False)[0] == "unassigned"


# ----------------------------------------------------------------- the demo lab
def test_audit_finds_exactly_the_demo_drift(ctx, tmp_path):
    site, secrets = ctx
    report = asyncio.run(run_audit(site, secrets, history=_history(tmp_path), timeout=5))
    by = {n.name: n for n in report.nodes}
    assert {n for n, a in by.items() if a.state == "drift"} == DRIFT
    assert {n for n, a in by.items() if a.state == "unknown"} == UNREACHABLE
    assert report.counts()["ok"] == len(site.nodes) - len(DRIFT) - len(UNREACHABLE)
    assert report.exit_code() == 1
    # the same version with another digest is drift, and says so
    n20 = by["dal1-r01-n20"]
    assert n20.running.ref == n20.desired.ref == "flatcar@4081.2.1"
    assert n20.running.sha256 != n20.desired.sha256 == SHA_A
    assert "another build" in n20.reason
    # the unreachable host says why; every reading says when it was read
    assert "ssh" in by["dal1-r01-n13"].reason and by["dal1-r01-n13"].running.error
    ok = by["dal1-r01-n01"]
    assert ok.running.sha256 == SHA_A and ok.running.read_at and ok.running.since and ok.since
    images = {r["image"]: r for r in report.by_image()}
    assert images["flatcar@3975.2.2"] == {"image": "flatcar@3975.2.2", "wanted": 0, "running": 5, "ok": 0,
                                          "drift": 5, "digests": 0}
    assert images["flatcar@4081.2.1"]["digests"] == 2
    record = json.loads(json.dumps(report.as_json()))
    node = next(r for r in record["nodes"] if r["name"] == "dal1-r01-n20")
    assert {"name", "desired", "assigned", "running", "desired_sha256", "assigned_sha256", "running_sha256",
            "state", "reason", "read_at", "since"} <= set(node)


def test_host_key_mismatch_is_refused_and_shown(ctx, tmp_path):
    site, secrets = ctx
    node = site.node("dal1-r01-n01")
    wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{node.host}]:{node.ssh_port} {wrong}\n")
    bad = site.model_copy(update={"ssh": site.ssh.model_copy(update={"known_hosts": str(kh)})})
    report = asyncio.run(run_audit(bad, secrets, ["dal1-r01-n01"], timeout=5))
    (a,) = report.nodes
    assert a.state == "unknown" and a.running.ref is None
    assert "host key" in a.reason and report.exit_code() == 1


def test_fanout_is_bounded(ctx):
    site, secrets = ctx
    seen: list[int] = []
    report = asyncio.run(run_audit(site, secrets, [n.name for n in site.nodes[:12]], fanout=3, timeout=5,
                                   progress=lambda done, total: seen.append(done)))
    assert seen == list(range(1, 13)) and len(report.nodes) == 12


# ----------------------------------------------------------------- the history file
def test_history_is_private_and_keeps_since(ctx, tmp_path):
    site, secrets = ctx
    hist = _history(tmp_path)
    first = asyncio.run(run_audit(site, secrets, ["dal1-r01-n01", "dal1-r01-n09"], history=hist, timeout=5,
                                  clock=lambda: 1000.0))
    assert stat.S_IMODE(os.stat(hist.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(hist.path.parent).st_mode) == 0o700
    lines = [json.loads(x) for x in hist.path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["run", "node", "node"]
    assert first.nodes[0].changed is None  # first seen: when it came to run this, no audit knows
    second = asyncio.run(run_audit(site, secrets, ["dal1-r01-n01", "dal1-r01-n09"], history=hist, timeout=5,
                                   clock=lambda: 2000.0))
    assert all(n.since == 1000.0 and n.running.since == 1000.0 for n in second.nodes)
    # nothing changed: the second run adds a run line only
    assert len(hist.path.read_text().splitlines()) == 4


def test_history_refuses_links_and_foreign_modes(ctx, tmp_path):
    site, secrets = ctx
    hist = _history(tmp_path)
    hist.path.parent.mkdir(parents=True, mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    hist.path.symlink_to(target)
    report = asyncio.run(run_audit(site, secrets, ["dal1-r01-n01"], history=hist, timeout=5))
    assert any("symbolic link" in note for note in report.notes) and target.read_text() == ""
    hist.path.unlink()
    os.chmod(hist.path.parent, 0o755)
    with pytest.raises(AuditError, match="0700"):
        hist.last()


def test_history_is_bounded(ctx, tmp_path):
    site, secrets = ctx
    hist = AuditHistory("demo", path=tmp_path / "h" / "audit.jsonl", max_bytes=3000)
    names = ["dal1-r01-n01", "dal1-r01-n09", "dal1-r02-n01"]
    for t in range(8):
        asyncio.run(run_audit(site, secrets, names, history=hist, timeout=5, clock=lambda t=t: 1000.0 + t))
    assert hist.path.stat().st_size <= 3000 and (hist.path.parent / "audit.jsonl.1").exists()
    assert set(hist.last()) == set(names)  # rotation kept every node's last line: since survives
    report = asyncio.run(run_audit(site, secrets, names, history=hist, timeout=5, clock=lambda: 5000.0))
    assert all(n.since == 1000.0 for n in report.nodes)


# ----------------------------------------------------------------- done when (last: it reimages)
def test_reimaging_what_the_audit_found_converges(ctx, tmp_path):
    """`audit` finds exactly the demo's drifted nodes; after reimaging them it exits 0."""
    site, secrets = ctx
    hist = _history(tmp_path)
    before = asyncio.run(run_audit(site, secrets, history=hist, timeout=5))
    todo = [n for n in before.not_ok()]
    assert {n.name for n in todo} == DRIFT | UNREACHABLE

    async def reimage_all() -> None:
        await asyncio.gather(*(reimage_phases(site, secrets, n.name, n.desired.ref) for n in todo))

    asyncio.run(reimage_all())
    after = asyncio.run(run_audit(site, secrets, history=hist, timeout=5))
    assert after.exit_code() == 0, [(n.name, n.state, n.reason) for n in after.not_ok()]
    by = {n.name: n for n in after.nodes}
    for n in todo:
        a = by[n.name]
        assert a.assigned.ref == a.desired.ref == a.running.ref and a.running.sha256 == a.desired.sha256
        assert a.changed is not None or n.name in UNREACHABLE  # a version read before: its change is dated
    assert by["dal1-r01-n20"].changed is not None and by["dal1-r01-n20"].since == by["dal1-r01-n20"].read_at
