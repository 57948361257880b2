"""The persistent IPMI SDR cache (console.drivers.sdrcache), with pollers against in-process
lab BMCs on 127.86.x.y.

Real packets over loopback to :class:`console.lab.ipmi_bmc.IpmiLab`, which counts the
requests each BMC received by command: a restarted poller walks no SDR, a changed SDR is
walked again, and a cache file that is not to be trusted is ignored (said in the log)
without stopping the polls.  Every test checks (in the fixture) that no session is left
open on any BMC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.drivers import sdrcache
from console.drivers.ipmi_health import SdrStamp, SdrSummary, SensorRef
from console.drivers.sdrcache import SdrCache, sdr_cache_path
from console.lab.ipmi_bmc import IpmiLab
from console.lab.machine import Machine, MachineSpec
from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from console.secrets import Secrets
from inventory.loader import load_site_text
from tests.support import wait_for, wait_until

USER, PASSWORD = b"admin", b"sdr-cache-pw"
OK, HOT, OFF = "127.86.0.1", "127.86.0.2", "127.86.0.3"
GET_SDR, RESERVE_SDR, REPO_INFO, DEVICE_ID = (0x0A, 0x23), (0x0A, 0x22), (0x0A, 0x20), (0x06, 0x01)
GET_THRESHOLDS = (0x04, 0x27)


class Lab:
    """Three BMCs: OK healthy, HOT over temperature (a sensor says so, no chassis bit), OFF powered off."""

    def __init__(self, machine_loop: asyncio.AbstractEventLoop) -> None:
        self.ipmi = IpmiLab()
        self.machines: dict[str, Machine] = {}
        self.ports: dict[str, int] = {}
        for address, fault, powered in ((OK, None, True), (HOT, "overtemp", True), (OFF, None, False)):
            spec = MachineSpec(name=f"sdr-{address.rsplit('.', 1)[1]}", mac=f"52:54:00:86:00:0{address[-1]}",
                               bmc_address=address, host_address=address.replace("127.86.", "127.87."),
                               fault=fault, powered=powered)
            self.machines[address] = Machine(spec, machine_loop, time_scale=0.01)
            self.ports[address] = self.ipmi.add(self.machines[address], address, 0, USER, PASSWORD)
        self.ipmi.start()

    def site(self):
        nodes = "".join(f"      - {{name: n{a[-1]}, bmc: {{address: '{a}', port: {p}}}}}\n"
                        for a, p in self.ports.items())
        return load_site_text("site: sdrtest\ndefaults:\n  bmc: {protocol: ipmi, username: admin, "
                              f"password: env:SDRTEST_PW}}\nracks:\n  - name: r1\n    nodes:\n{nodes}")

    def count(self, command: tuple[int, int]) -> int:
        return self.ipmi.commands[command]


@pytest.fixture
def lab(machine_loop) -> Iterator[Lab]:
    lab = Lab(machine_loop)
    yield lab
    try:
        wait_for(lambda: lab.ipmi.session_count() == 0, what="every session to be closed")
    finally:
        lab.ipmi.stop()


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state / "sdrtest" / "sdr-cache.json"


async def start_poller(lab: Lab, cache_path: Path, jobs: tuple[str, ...] = ("power",)) -> dict[str, str]:
    """What a console start does (console/live/pollproc.py): load the cache, poll, save,
    log out.  Returns each node's health."""
    site = lab.site()
    fleet = Fleet(site)
    cache = SdrCache.load(cache_path)
    poller = Poller(site, fleet, Secrets(environ={"SDRTEST_PW": PASSWORD.decode()}),
                    PollConfig(min_interval=0.0, timeout=3.0), sdr_cache=cache)
    try:
        await poller.sweep(jobs, switches=False)
        cache.save()
    finally:
        await poller.aclose()
    errors = {name: st.errors for name, st in fleet.nodes.items() if st.errors}
    assert not errors
    return {name: st.health for name, st in fleet.nodes.items()}


# ------------------------------------------------------------------ with the lab
async def test_a_restarted_poller_walks_no_sdr(lab, cache_path):
    first = await start_poller(lab, cache_path)
    assert first == {"n1": "ok", "n2": "critical", "n3": "ok"}
    walked = lab.count(GET_SDR)
    assert walked >= 3 * 9  # every BMC's repository, one Get SDR per record
    assert lab.count(RESERVE_SDR) == 0  # whole records at offset 0 need no reservation
    assert lab.count(GET_THRESHOLDS) == 0  # health is the readings' status bits
    st = os.stat(cache_path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(os.stat(cache_path.parent).st_mode) == 0o700
    assert len(SdrCache.load(cache_path)) == 3

    lab.ipmi.commands.clear()
    again = await start_poller(lab, cache_path)
    assert again == first
    assert lab.count(GET_SDR) == 0 and lab.count(RESERVE_SDR) == 0
    assert lab.count(DEVICE_ID) == 3 and lab.count(REPO_INFO) == 3  # the stamp, once per new session

    # the sensors job (node detail) still names thresholds, read from the BMC
    site = lab.site()
    fleet = Fleet(site)
    poller = Poller(site, fleet, Secrets(environ={"SDRTEST_PW": PASSWORD.decode()}),
                    PollConfig(min_interval=0.0, timeout=3.0), sdr_cache=SdrCache.load(cache_path))
    try:
        await poller.sweep(("power", "sensors"), switches=False, nodes=["n2"])
    finally:
        await poller.aclose()
    cpu = next(s for s in fleet.nodes["n2"].sensors if s.name == "CPU1 Temp")
    assert (cpu.upper_warning, cpu.upper_critical) == (85.0, 95.0) and cpu.health == "critical"


async def test_a_changed_sdr_is_walked_again(lab, cache_path):
    await start_poller(lab, cache_path)
    before = SdrCache.load(cache_path)._bmcs[f"{OFF}:{lab.ports[OFF]}"][0]
    # Powered on, the fans show lower thresholds they had not shown: their records change,
    # and so does the repository's most recent addition timestamp.
    lab.machines[OFF].power_on()
    wait_for(lambda: lab.machines[OFF].powered, what="power on")
    before_walks = {a: lab.ipmi.commands_of(a)[GET_SDR] for a in (OK, HOT, OFF)}
    healths = await start_poller(lab, cache_path)
    assert healths["n3"] == "ok"
    walks = {a: lab.ipmi.commands_of(a)[GET_SDR] - before_walks[a] for a in (OK, HOT, OFF)}
    assert walks[OFF] > 0 and walks[OK] == 0 and walks[HOT] == 0  # only the changed one
    after = SdrCache.load(cache_path)._bmcs[f"{OFF}:{lab.ports[OFF]}"][0]
    assert after.device == before.device and after.repository != before.repository

    lab.ipmi.commands.clear()
    await start_poller(lab, cache_path)
    assert lab.count(GET_SDR) == 0  # the new stamp was kept


async def test_a_new_session_checks_the_stamp_and_walks_nothing(lab, cache_path):
    """A session given up (as after a timeout): the next poll logs in again and checks
    the stamp (two requests), not the repository."""
    site = lab.site()
    fleet = Fleet(site)
    poller = Poller(site, fleet, Secrets(environ={"SDRTEST_PW": PASSWORD.decode()}),
                    PollConfig(min_interval=0.0, timeout=3.0), sdr_cache=SdrCache.load(cache_path))
    try:
        await poller.sweep(("power",), switches=False, nodes=["n2"])
        driver = poller._bmcs["n2"].drivers["n2"]
        driver.health_ttl = 0.0
        driver._rmcp._abandon()  # what a timed-out request does: Close Session, forget
        wait_for(lambda: lab.ipmi.session_count(HOT) == 0, what="the BMC to close the session")
        lab.ipmi.commands.clear()
        await poller.sweep(("power",), switches=False, nodes=["n2"])
        assert fleet.nodes["n2"].health == "critical" and not fleet.nodes["n2"].errors
        assert driver._rmcp.logins == 2
        assert lab.count(DEVICE_ID) == 1 and lab.count(REPO_INFO) == 1 and lab.count(GET_SDR) == 0
    finally:
        await poller.aclose()


async def test_node_detail_thresholds_follow_a_changed_sdr(lab):
    """The sensors job (pyghmi's decoding, on the same session) reads the SDR and the
    thresholds once; when a new session finds another stamp, both are read again."""
    from console.drivers.ipmi import IpmiDriver
    from console.secrets import Secret
    from inventory.model import Bmc

    bmc = Bmc(protocol="ipmi", address=OFF, port=lab.ports[OFF], username="admin", password="env:UNUSED")
    driver = IpmiDriver(bmc, Secret(PASSWORD.decode()), timeout=3.0)
    try:
        assert await driver.health() == "ok"
        fan = next(s for s in await driver.sensors() if s.name == "FAN1")
        assert fan.lower_critical is None  # powered off: the fans show no lower thresholds
        lab.machines[OFF].power_on()
        wait_for(lambda: lab.machines[OFF].powered, what="power on")
        assert driver._rmcp is not None
        driver._rmcp._abandon()  # a new session: its first sensor read checks the stamp
        driver.health_ttl = 0.0
        walks = lab.ipmi.commands_of(OFF)[GET_SDR]
        await driver.health()
        assert lab.ipmi.commands_of(OFF)[GET_SDR] > walks  # another stamp: walked again
        fan = next(s for s in await driver.sensors() if s.name == "FAN1")
        assert (fan.lower_critical, fan.lower_warning) == (1000.0, 1800.0)
    finally:
        await driver.close()


async def test_a_garbage_cache_file_is_ignored_logged_and_rewritten(lab, cache_path, caplog):
    cache_path.parent.mkdir(mode=0o700)
    fd = os.open(cache_path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\x00\xffnot json at all\x1b[2J")
    os.close(fd)
    with caplog.at_level(logging.WARNING, logger="console.drivers.sdrcache"):
        healths = await start_poller(lab, cache_path)
    assert healths == {"n1": "ok", "n2": "critical", "n3": "ok"}
    assert "SDR cache" in caplog.text and "not JSON" in caplog.text
    assert json.loads(cache_path.read_bytes())["format"] == sdrcache.FORMAT  # rewritten
    lab.ipmi.commands.clear()
    await start_poller(lab, cache_path)
    assert lab.count(GET_SDR) == 0


async def test_a_planted_symlink_is_refused_and_replaced_not_followed(lab, cache_path, tmp_path, caplog):
    cache_path.parent.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.json"
    target.write_text(SdrCache().dump().decode())
    os.chmod(target, 0o600)
    os.symlink(target, cache_path)
    with caplog.at_level(logging.WARNING, logger="console.drivers.sdrcache"):
        healths = await start_poller(lab, cache_path)
    assert healths["n2"] == "critical"
    assert "symbolic link" in caplog.text
    assert not cache_path.is_symlink() and stat.S_ISREG(os.lstat(cache_path).st_mode)
    assert json.loads(target.read_text())["bmcs"] == {}  # never written through


async def test_the_poller_process_saves_the_cache_of_its_site(lab, caplog):
    """console/live/pollproc.py: the poller's process loads the site's cache at start and
    saves it when it closes (the state directory is the test session's private one)."""
    from console.live.pollproc import PollerProcess

    site = lab.site()
    path = sdr_cache_path(site.name)
    config = PollConfig(power_interval=1.0, boot_interval=600, sensors_interval=600, events_interval=600,
                        identity_interval=600, image_interval=600, timeout=3.0, min_interval=0.0)
    secrets = Secrets(environ={"SDRTEST_PW": PASSWORD.decode()})
    caplog.set_level(logging.INFO)  # the child logs at the level of this process, re-logged here
    for start in range(2):
        fleet = Fleet(site)
        process = PollerProcess(site, fleet, secrets, config)
        process.start()
        try:
            await wait_until(lambda: all(st.power_at for st in fleet.nodes.values()), timeout=60,  # noqa: B023
                             what="a power poll of every node")
            assert fleet.nodes["n2"].health == "critical" and fleet.nodes["n1"].health == "ok"
        finally:
            await process.aclose()
        assert process.failure is None
        kept = SdrCache.load(path)
        assert len(kept) == 3, start
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # the second start loaded what the first saved (the sensors job, which reads pyghmi's
    # own SDR, walks it there: the power path's count is test_a_restarted_poller_walks_no_sdr's)
    loaded = [r.getMessage() for r in caplog.records
              if r.name == "console.drivers.sdrcache" and r.filename == "pollproc.py"]  # re-logged there
    assert loaded == [f"SDR cache {path}: 3 BMCs"]


# ------------------------------------------------------------------ the file alone
STAMP = SdrStamp(bytes(range(15)), bytes(range(11)))
SUMMARY = SdrSummary((SensorRef(1, 0), SensorRef(2, 1)), False)


def saved(path: Path) -> SdrCache:
    cache = SdrCache(path)
    cache.put("127.0.0.1:623", STAMP, SUMMARY)
    assert cache.save()
    return cache


def test_round_trip_and_stamp_check(cache_path):
    saved(cache_path)
    cache = SdrCache.load(cache_path)
    assert cache.get("127.0.0.1:623", STAMP) == SUMMARY
    assert cache.get("127.0.0.1:623", SdrStamp(STAMP.device, bytes(11))) is None  # another SDR
    assert cache.get("127.0.0.1:624", STAMP) is None
    assert not cache.changed and cache.save()


def test_equal_summaries_are_stored_once(cache_path):
    cache = SdrCache(cache_path)
    for i in range(1000):
        cache.put(f"127.0.{i // 250}.{i % 250}:623", STAMP, SdrSummary(SUMMARY.thresholds, False))
    cache.save()
    doc = json.loads(cache_path.read_bytes())
    assert len(doc["summaries"]) == 1 and len(doc["bmcs"]) == 1000
    loaded = SdrCache.load(cache_path)
    assert len({id(loaded.get(k, STAMP)) for k in doc["bmcs"]}) == 1


@pytest.mark.parametrize("why", ["mode", "owner", "fifo", "large", "format"])
def test_a_file_not_to_be_trusted_is_ignored_with_a_log_line(cache_path, caplog, why, monkeypatch):
    saved(cache_path)
    if why == "mode":
        os.chmod(cache_path, 0o644)
    elif why == "owner":
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(cache_path, 4242, 4242)
    elif why == "fifo":
        os.unlink(cache_path)
        os.mkfifo(cache_path, 0o600)  # opened non-blocking: never hangs
    elif why == "large":
        monkeypatch.setattr(sdrcache, "MAX_BYTES", 64)
    else:
        cache_path.write_text(json.dumps({"format": "something else", "bmcs": {}, "summaries": []}))
    with caplog.at_level(logging.WARNING, logger="console.drivers.sdrcache"):
        cache = SdrCache.load(cache_path)
    assert len(cache) == 0
    assert "ignored" in caplog.text, why
    cache.put("127.0.0.1:623", STAMP, SUMMARY)
    assert cache.save()  # replaced by a file of ours
    st = os.lstat(cache_path)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600


def test_bad_entries_are_dropped_alone(cache_path, caplog):
    cache_path.parent.mkdir(mode=0o700)
    good = [STAMP.device.hex(), STAMP.repository.hex(), 0]
    doc = {"format": sdrcache.FORMAT, "summaries": [["01000201", False], ["0105", False], "x"],
           "bmcs": {"127.0.0.1:623": good, "127.0.0.2:623": [STAMP.device.hex(), "zz", 0],
                    "127.0.0.3:623": good[:2] + [1], "127.0.0.4:623": good[:2] + [7],
                    "127.0.0.5:623": good[:2] + [True], "\x1b[2J": good, "127.0.0.6:623": "x"}}
    fd = os.open(cache_path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(doc).encode())
    os.close(fd)
    with caplog.at_level(logging.WARNING, logger="console.drivers.sdrcache"):
        cache = SdrCache.load(cache_path)
    assert len(cache) == 1 and cache.get("127.0.0.1:623", STAMP) == SUMMARY
    assert "entries ignored" in caplog.text and cache.changed


def test_a_directory_not_ours_is_refused_and_polling_state_stays_in_memory(tmp_path, caplog):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    (state / "sdrtest").mkdir(mode=0o777)
    os.chmod(state / "sdrtest", 0o777)
    path = state / "sdrtest" / "sdr-cache.json"
    with caplog.at_level(logging.WARNING, logger="console.drivers.sdrcache"):
        cache = SdrCache.load(path)
        cache.put("127.0.0.1:623", STAMP, SUMMARY)
        assert not cache.save() and not cache.save()
    assert not path.exists() and cache.get("127.0.0.1:623", STAMP) == SUMMARY
    assert caplog.text.count("not saved") == 1  # said once, not at every save
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "state2"
    link.symlink_to(real)
    through = SdrCache(link / "sdr-cache.json")
    through.put("127.0.0.1:623", STAMP, SUMMARY)
    with caplog.at_level(logging.WARNING, logger="console.drivers.sdrcache"):
        assert not through.save()
    assert "symbolic link" in caplog.text and not (real / "sdr-cache.json").exists()


def test_the_path_is_the_site_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert sdr_cache_path("lab") == tmp_path / "fleet-console" / "lab" / "sdr-cache.json"
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            sdr_cache_path(bad)
