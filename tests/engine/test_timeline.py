"""A node's incident timeline: the transitions a Fleet keeps (bounded, with "since"), and
the story put together from them, the BMC's event log, the console log, the image audit
history and the journal.  The poller's part runs against a lab of this module's own
(Redfish over HTTP on loopback); the files are written the way their writers write them."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
from pathlib import Path

import pytest

from console.drivers import open_bmc
from console.drivers.bmc import Event, PowerAction
from console.live.fleet import TRANSITIONS_KEPT, Fleet, Since
from console.live.freshness import node_since, since_text
from console.live.poller import PollConfig, Poller
from console.live.timeline import (
    CONSOLE_TAIL,
    build_timeline,
    console_entries,
    parse_since,
    text_lines,
)
from console.ops.journal import Journal
from console.secrets import Secrets
from console.serial.log import ConsoleLog
from inventory.loader import load_site_text
from tests.support import wait_until

SITE = """\
site: tline
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
  image: flatcar@1.0.0
images:
  - {name: flatcar, version: 1.0.0, kernel: http://127.0.0.1/k, initrd: http://127.0.0.1/i}
  - {name: flatcar, version: 2.0.0, kernel: http://127.0.0.1/k, initrd: http://127.0.0.1/i}
racks:
  - name: r01
    nodes:
      - {name: 'tl-n[1-2]', host: '127.2.78.[1-2]', bmc: {address: '127.1.78.[1-2]'}}
lab:
  faults: {tl-n2: fan}
"""

NODE = "tl-n1"


@pytest.fixture
def state_home(tmp_path, monkeypatch) -> Path:
    """The journal, console logs and audit history of these tests live here."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def _fleet(clock):
    site = load_site_text(SITE, "tline.yaml")
    return site, Fleet(site, clock=clock)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ----------------------------------------------------------------- the Fleet's transitions
def test_transitions_and_since_survive_a_missed_poll():
    clock = Clock()
    site, fleet = _fleet(clock)
    fleet.node_ok(NODE, "power", power="on", health="ok")
    start = clock.t
    clock.t += 60
    fleet.node_ok(NODE, "power", power="on", health="critical")
    went_red = clock.t
    clock.t += 300
    fleet.node_failed(NODE, "power", "unreachable: no answer from 127.1.78.1:80 after 5 s")
    st = fleet.nodes[NODE]
    assert st.health == "unknown" and st.since["health"].at == clock.t  # unknown since the failure
    clock.t += 60
    fleet.node_ok(NODE, "power", power="on", health="critical")
    # back to critical: the failure did not restart its since, and is a transition of its own
    assert st.since["health"] == Since(went_red, seen=True)
    assert st.since["power"] == Since(start, seen=False)  # already on when first looked at
    words = [t.words() for t in fleet.transitions(NODE)]
    assert words == ["power on (first seen)", "health ok (first seen)", "polls answering (first poll)",
                     "health ok → critical",
                     "polls failing: unreachable: no answer from 127.1.78.1:80 after 5 s",
                     "polls answering"]
    assert [t.at for t in fleet.transitions(NODE, since=went_red + 1)] == [went_red + 300, went_red + 360]
    assert node_since(st, "health", clock.t + 14 * 60) == "20m"
    assert node_since(st, "power", clock.t) == "≥7m"


def test_image_and_cabling_changes_are_transitions():
    clock = Clock()
    site, fleet = _fleet(clock)
    fleet.node_ok(NODE, "image", image_running="flatcar@0.9.0", image_error=None)
    clock.t += 10
    fleet.node_ok(NODE, "image", image_running="flatcar@0.9.1", image_error=None)  # still drift, another version
    clock.t += 10
    fleet.node_ok(NODE, "image", image_running=None, image_error="ssh: connection refused")  # unread: no change
    clock.t += 10
    fleet.node_ok(NODE, "image", image_running="flatcar@1.0.0", image_error=None)
    words = [t.words() for t in fleet.transitions(NODE) if t.fact == "image"]
    assert words == ["image drift (flatcar@0.9.0) (first seen)", "image drift: flatcar@0.9.0 → flatcar@0.9.1",
                     "image drift → ok (flatcar@1.0.0)"]
    assert fleet.nodes[NODE].since["image"].at == clock.t


def test_transitions_are_bounded_per_node():
    clock = Clock()
    site, fleet = _fleet(clock)
    for i in range(TRANSITIONS_KEPT * 2):
        clock.t += 1
        fleet.node_ok(NODE, "power", power="on" if i % 2 else "off", health="ok")
    kept = fleet.transitions(NODE)
    assert len(kept) == TRANSITIONS_KEPT
    assert kept[-1].at == clock.t and kept[0].at > 1_800_000_000.0 + 2
    assert fleet.transitions("tl-n2") == []


def test_absorbed_states_keep_this_fleets_history_not_the_pipes():
    """The console's Fleet takes whole states from the poller's process: the history is its
    own (a restarted poller starting from nothing does not make everything "first seen")."""
    clock = Clock()
    site, console = _fleet(clock)
    _, child = _fleet(clock)
    child.node_ok(NODE, "power", power="on", health="ok")
    console.absorb({NODE: pickle.loads(pickle.dumps(child.nodes[NODE]))}, {})
    assert [t.words() for t in console.transitions(NODE)][:2] == ["power on (first seen)", "health ok (first seen)"]
    crossing = pickle.loads(pickle.dumps(child.nodes[NODE]))
    assert not crossing.transitions and not crossing.since  # the history does not cross the pipe

    clock.t += 120
    _, restarted = _fleet(clock)  # a new poller process: it has seen nothing yet
    restarted.node_ok(NODE, "power", power="off", health="ok")
    console.absorb({NODE: pickle.loads(pickle.dumps(restarted.nodes[NODE]))}, {})
    words = [t.words() for t in console.transitions(NODE)]
    assert words[-1] == "power on → off" and words.count("health ok (first seen)") == 1
    assert console.nodes[NODE].since["power"] == Since(clock.t, seen=True)


def test_since_text():
    assert since_text(None, 100.0) == ""
    assert since_text(100.0, 130.0) == "<1m"
    assert since_text(Since(0.0), 14 * 60 + 59) == "14m"
    assert since_text(Since(0.0, seen=False), 3 * 3600) == "≥3h"
    assert since_text(Since(0.0), 2 * 86400) == "2d"
    assert since_text(Since(0.0, seen=False), 10) == "<1m"


def test_parse_since():
    now = 1_800_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("90s", now) == now - 90
    assert parse_since("1d", now) == now - 86400
    assert parse_since("2026-12-07T04:00:00Z", now) == parse_since("2026-12-07T04:00:00+00:00", now)
    for bad in ("", "yesterday", "2x", "-5m", "\x1b[31m"):
        with pytest.raises(ValueError) as info:
            parse_since(bad, now)
        assert "\x1b" not in str(info.value)


# ----------------------------------------------------------------- the console log's story
def test_console_story_keeps_markers_trouble_and_the_last_lines(state_home):
    times = iter(range(1_800_000_000, 1_800_001_000))
    log = ConsoleLog("tline", NODE, clock=lambda: float(next(times)))
    log.marker("attach", "alice", "IPMI SOL")
    for line in (b"BIOS POST\n", b"Booting from Hard Disk...\n", b"fleet-installer: 10%\n",
                 b"\x1b[31mKernel panic - not syncing: VFS\x1b[0m\n", b"chatter 1\n", b"EXT4-fs error (sda1)\n"):
        log.write(line)
    for i in range(CONSOLE_TAIL + 3):
        log.write(f"boring {i}\n".encode())
    log.write(b"tl-n1 login: ")
    log.close()
    from console.serial.log import read_log

    entries, count = console_entries(read_log("tline", NODE))
    texts = [e.text for e in entries]
    assert texts[0] == "console attach: alice IPMI SOL"
    assert "Booting from Hard Disk..." in texts and "EXT4-fs error (sda1)" in texts
    assert "Kernel panic - not syncing: VFS" in texts  # colours gone
    assert "fleet-installer: 10%" not in texts and "chatter 1" not in texts and "BIOS POST" not in texts
    assert texts[-1] == "tl-n1 login:" and "boring 0" not in texts and f"boring {CONSOLE_TAIL + 2}" in texts
    severities = {e.text: e.severity for e in entries}
    assert severities["Kernel panic - not syncing: VFS"] == "critical"
    assert severities["EXT4-fs error (sda1)"] == "warning"
    assert count == 1 + 6 + CONSOLE_TAIL + 3 + 1


# ----------------------------------------------------------------- the whole story, from every source
def _write_audit(home: Path, lines: list[dict]) -> Path:
    d = home / "fleet-console" / "tline"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    path = d / "audit.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return path


def _audit_line(node: str, time: str, state: str, running: str | None, reason: str = "") -> dict:
    return {"kind": "node", "node": node, "time": time, "state": state, "reason": reason,
            "desired": "flatcar@1.0.0", "running": running, "running_sha256": None}


def test_story_merges_every_source_in_time_order(state_home):
    clock = Clock(1_800_000_000.0)
    site, fleet = _fleet(clock)
    fleet.node_ok(NODE, "power", power="on", health="ok")  # 03:20:00
    clock.t += 600
    fleet.node_ok(NODE, "power", power="on", health="critical")  # 03:30:00
    events = [Event("1", 1_800_000_300.0, "critical", "Fan 3 below lower critical", "FAN3"),
              Event("2", None, "ok", "no time")]
    journal = Journal("tline", operator="alice\x1b[2J")
    journal.write(time="2027-01-15T08:30:00.000Z", action="power cycle", node=NODE, step="power-cycle", result="ok",
                  ticket="INC-7")
    journal.write(time="2027-01-15T08:31:00.000Z", action="power cycle", node="tl-n2", step="power-cycle",
                  result="ok")
    _write_audit(state_home, [
        _audit_line(NODE, "2027-01-15T08:00:00Z", "drift", "flatcar@0.9.0", "runs flatcar@0.9.0"),
        _audit_line("tl-n2", "2027-01-15T08:00:00Z", "ok", "flatcar@1.0.0"),
        _audit_line(NODE, "2027-01-15T08:40:00Z", "ok", "flatcar@1.0.0", "runs the desired image"),
        _audit_line(NODE, "2027-01-15T08:50:00Z", "ok", "flatcar@1.0.0", "runs the desired image"),  # a repeat
    ])
    log = ConsoleLog("tline", NODE, clock=lambda: 1_800_000_900.0)
    log.write(b"reboot: Restarting system\n")
    log.close()

    tl = build_timeline("tline", NODE, transitions=fleet.transitions(NODE), events=events)
    sources = {s.name: s for s in tl.sources}
    assert [s.name for s in tl.sources] == ["poller", "bmc", "console", "image", "journal"]
    assert sources["bmc"].count == 1 and "1 without a time" in sources["bmc"].detail
    assert sources["journal"].count == 1 and sources["image"].count == 2
    times = [e.at for e in tl.entries]
    assert times == sorted(times)
    story = [(e.source, e.text) for e in tl.entries]
    assert ("bmc", "SEL FAN3: Fan 3 below lower critical") in story
    assert ("image", "image audit: drift: runs flatcar@0.9.0") in story
    assert ("image", "image audit: drift → ok, runs flatcar@1.0.0 (was flatcar@0.9.0)") in story
    assert ("journal", "power cycle: power-cycle ok [INC-7]") in story
    assert ("console", "reboot: Restarting system") in story
    cycled = ("journal", "power cycle: power-cycle ok [INC-7]")
    assert story.index(("poller", "health ok → critical")) < story.index(cycled)
    lines = text_lines(tl)
    assert any("alice^[[2J: power cycle" in line for line in lines)  # the operator's name, made visible
    assert not any("\x1b" in line for line in lines)
    doc = json.loads(json.dumps(tl.as_json()))
    assert doc["entries"][0]["time"].endswith("Z") and {s["source"] for s in doc["sources"]} == set(sources)

    later = build_timeline("tline", NODE, transitions=fleet.transitions(NODE), events=events,
                           since=1_800_000_500.0)
    assert all(e.at >= 1_800_000_500.0 for e in later.entries)
    assert {e.source for e in later.entries} == {"poller", "console", "image", "journal"}
    later_sources = {s.name: s for s in later.sources}
    assert later_sources["bmc"].state == "empty" and "1 before --since" in later_sources["bmc"].detail
    assert later_sources["image"].count == 1 and "1 before --since" in later_sources["image"].detail


def test_unreadable_sources_are_said_not_raised(state_home):
    # an audit history that is a symbolic link, a console log directory of someone's making
    # (here: a file where the directory should be), no journal at all
    base = state_home / "fleet-console" / "tline"
    base.mkdir(parents=True, mode=0o700)
    os.chmod(base, 0o700)
    target = state_home / "elsewhere.jsonl"
    target.write_text(json.dumps(_audit_line(NODE, "2027-01-15T08:00:00Z", "ok", "flatcar@1.0.0")) + "\n")
    os.symlink(target, base / "audit.jsonl")
    (base / "console").write_text("not a directory")
    tl = build_timeline("tline", NODE, transitions=None, events=None, events_error="unreachable: no answer",
                        poller_note="polled once now")
    sources = {s.name: s for s in tl.sources}
    assert sources["poller"].state == "unavailable" and sources["poller"].detail == "polled once now"
    assert sources["bmc"].state == "unavailable" and "no answer" in sources["bmc"].detail
    assert sources["image"].state == "unavailable" and "symbolic link" in sources["image"].detail
    assert sources["console"].state == "unavailable"
    assert sources["journal"].state == "empty"
    assert tl.entries == []


# ----------------------------------------------------------------- the poller, against the lab
@pytest.fixture(scope="module")
def lab(private_runtime_dir):
    from console.lab.lab import Lab

    with Lab(load_site_text(SITE, "tline.yaml"), ephemeral=True, time_scale=0.02) as lab:
        yield lab


def test_the_poller_records_what_it_sees_change(lab, state_home):
    site, secrets = lab.effective_site(), Secrets(lab=lab.secrets)

    async def scenario():
        fleet = Fleet(site)
        poller = Poller(site, fleet, secrets, PollConfig(timeout=5.0, min_interval=0.0))
        bmc = open_bmc(site.node(NODE), secrets)
        try:
            await poller.poll_node(NODE, ("power", "events"))
            await poller.poll_node("tl-n2", ("power", "events"))
            assert fleet.nodes[NODE].power == "on"
            await bmc.power(PowerAction.OFF)

            async def keep_polling() -> None:  # as the poller's loop would
                while True:
                    await poller.poll_node(NODE, ("power", "events"))
                    await asyncio.sleep(0.05)

            polling = asyncio.create_task(keep_polling())
            try:
                await wait_until(lambda: fleet.nodes[NODE].power == "off", timeout=10, what="power off seen")
            finally:
                polling.cancel()
                await asyncio.gather(polling, return_exceptions=True)
            return fleet
        finally:
            await bmc.close()
            await poller.aclose()

    fleet = asyncio.run(scenario())
    st = fleet.nodes[NODE]
    words = [t.words() for t in fleet.transitions(NODE)]
    assert words[0] == "power on (first seen)" and "power on → off" in words
    assert st.since["power"].seen
    red = fleet.nodes["tl-n2"]
    assert red.health == "critical" and not red.since["health"].seen

    tl = build_timeline(site.name, NODE, transitions=fleet.transitions(NODE), events=st.events)
    story = [(e.source, e.text) for e in tl.entries]
    assert ("poller", "power on → off") in story
    assert any(src == "bmc" and "soft-off" in text for src, text in story)  # the BMC logged the power off
    assert [e.at for e in tl.entries] == sorted(e.at for e in tl.entries)
