"""The persistent IPMI SDR cache (console.drivers.sdrcache), with pollers against in-process
lab BMCs on 127.86.x.y.

Real packets over loopback to :class:`console.lab.ipmi_bmc.IpmiLab`, which counts the
requests each BMC received by command: a restarted poller walks no SDR, a changed SDR is
walked again, BMCs with one stamp share one walk (and one whose SDR lacks a sensor of the
shared one walks its own), and a cache file that is not to be trusted is ignored (said in
the log) without stopping the polls.  Every test checks (in the fixture) that no session
is left open on any BMC.
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
GET_THRESHOLDS, READING = (0x04, 0x27), (0x04, 0x2D)
RECORDS = 9 + 7  # the lab's SDR: 9 threshold sensors, then 7 event-only ones
STAMP = SdrStamp(bytes(range(15)), bytes(range(11)))
SUMMARY = SdrSummary((SensorRef(1, 0), SensorRef(2, 1)), False)


class Lab:
    """By default three BMCs: OK healthy, HOT over temperature (a sensor says so, no chassis
    bit), both of one model (one SDR stamp), and OFF powered off, of another model.

    ``bmcs``: (address, fault, powered, model, machine class) each, named n<last octet>."""

    DEFAULT = ((OK, None, True, "FL-1000", Machine), (HOT, "overtemp", True, "FL-1000", Machine),
               (OFF, None, False, "FL-2000", Machine))

    def __init__(self, machine_loop: asyncio.AbstractEventLoop, bmcs: tuple = DEFAULT) -> None:
        self.ipmi = IpmiLab()
        self.machines: dict[str, Machine] = {}
        self.ports: dict[str, int] = {}
        for address, fault, powered, model, cls in bmcs:
            last = address.rsplit(".", 1)[1]
            spec = MachineSpec(name=f"sdr-{last}", mac=f"52:54:00:86:{int(last) // 100:02d}:{int(last) % 100:02d}",
                               bmc_address=address, host_address=address.replace("127.86.", "127.87."),
                               fault=fault, powered=powered, model=model)
            self.machines[address] = cls(spec, machine_loop, time_scale=0.01)
            self.ports[address] = self.ipmi.add(self.machines[address], address, 0, USER, PASSWORD)
        self.ipmi.start()

    def bmc(self, address: str):
        """The lab's BMC object at ``address`` (to change what it answers)."""
        return next(b for b in self.ipmi._bmcs if b.address == address)

    def site(self):
        nodes = "".join(f"      - {{name: n{a.rsplit('.', 1)[1]}, bmc: {{address: '{a}', port: {p}}}}}\n"
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
def make_lab(machine_loop) -> Iterator:
    """Labs of given BMCs (see :class:`Lab`), stopped (every session closed) after the test."""
    labs: list[Lab] = []

    def make(bmcs: tuple) -> Lab:
        labs.append(Lab(machine_loop, bmcs))
        return labs[-1]

    yield make
    for lab in labs:
        try:
            wait_for(lambda: lab.ipmi.session_count() == 0, what="every session to be closed")  # noqa: B023
        finally:
            lab.ipmi.stop()


class NoTwelveVolt(Machine):
    """A machine without the 12V sensor, the last of the lab's threshold sensors (number 9)."""

    def sensors(self):
        return [s for s in super().sensors() if s.name != "12V"]


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
    walks = {a: lab.ipmi.commands_of(a)[GET_SDR] for a in (OK, HOT, OFF)}
    assert walks[OFF] == RECORDS  # one Get SDR per record
    assert walks[OK] + walks[HOT] == RECORDS  # one model, one stamp: one walk for both
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


# ------------------------------------------------------------------ one walk for one stamp
def poller_of(lab: Lab, cache: SdrCache) -> tuple[Poller, Fleet]:
    site = lab.site()
    fleet = Fleet(site)
    return Poller(site, fleet, Secrets(environ={"SDRTEST_PW": PASSWORD.decode()}),
                  PollConfig(min_interval=0.0, timeout=3.0), sdr_cache=cache), fleet


def key_of(lab: Lab, address: str) -> str:
    return f"{address}:{lab.ports[address]}"


async def test_bmcs_with_one_stamp_share_one_walk(make_lab, cache_path):
    """Six BMCs of one model (one of them over temperature) and one of another, polled
    together: one walk per stamp; every BMC still gives its stamp and reads its sensors."""
    one = [f"127.86.1.{i}" for i in range(11, 17)]
    other = "127.86.1.17"
    lab = make_lab(tuple((a, "overtemp" if a.endswith(".13") else None, True, "FL-1000", Machine) for a in one)
                   + ((other, None, True, "FL-2000", Machine),))
    expected = {f"n{i}": "critical" if i == 13 else "ok" for i in range(11, 18)}
    assert await start_poller(lab, cache_path) == expected
    walks = {a: lab.ipmi.commands_of(a)[GET_SDR] for a in lab.ports}
    assert walks[other] == RECORDS
    assert sorted(walks[a] for a in one) == [0] * 5 + [RECORDS]  # one walked, five waited for it
    walker = next(a for a in one if walks[a])
    for a in lab.ports:
        seen = lab.ipmi.commands_of(a)
        assert seen[DEVICE_ID] == 1 and seen[REPO_INFO] == 1, a  # each BMC's own stamp
        assert seen[READING] == (2 if a.endswith(".13") else 9), a  # its own sensors (.13: CPU1 is critical)
    kept = SdrCache.load(cache_path)
    assert len(kept) == 7
    shared = {a: kept._bmcs[key_of(lab, a)][2] for a in lab.ports}
    assert shared == {a: a not in (walker, other) for a in lab.ports}  # marked in the file
    assert len({kept._bmcs[key_of(lab, a)][1] for a in one}) == 1

    lab.ipmi.commands.clear()
    assert await start_poller(lab, cache_path) == expected  # a restart: no walk at all
    assert lab.count(GET_SDR) == 0 and lab.count(DEVICE_ID) == 7


async def test_a_bmc_lacking_a_sensor_of_the_shared_sdr_walks_its_own(make_lab, cache_path, caplog):
    """Y has no 12V sensor but gives the same stamp as X (its SDR Repository Info is X's, as
    BMCs that never set their SDR timestamps can): on X's summary, Y answers "not present"
    (CBh) for 12V and walks its own SDR.  The stamp then vouches for nothing: W, which took
    X's summary before, walks its own at its next sensor read, and Z, new, walks at once."""
    x, w, y, z = "127.86.2.21", "127.86.2.22", "127.86.2.23", "127.86.2.24"
    lab = make_lab(((x, None, True, "FL-1000", Machine), (w, None, True, "FL-1000", Machine),
                    (y, None, True, "FL-1000", NoTwelveVolt), (z, None, True, "FL-1000", Machine)))
    lab.bmc(y)._cmd_sdr_repository_info = lab.bmc(x)._cmd_sdr_repository_info
    cache = SdrCache.load(cache_path)
    poller, fleet = poller_of(lab, cache)

    def walked(address: str) -> int:
        return lab.ipmi.commands_of(address)[GET_SDR]

    try:
        await poller.sweep(("power",), switches=False, nodes=["n21"])
        await poller.sweep(("power",), switches=False, nodes=["n22"])
        assert (walked(x), walked(w)) == (RECORDS, 0)  # W took X's walk
        assert cache._bmcs[key_of(lab, w)][2] is True
        stamp, theirs, _ = cache._bmcs[key_of(lab, x)]
        assert cache._bmcs[key_of(lab, w)][0] == stamp and len(theirs.thresholds) == 9

        with caplog.at_level(logging.INFO, logger="console.drivers.sdrcache"):
            await poller.sweep(("power",), switches=False, nodes=["n23"])
        assert lab.ipmi.commands_of(y)[READING] >= 9  # X's nine sensors, 12V refused ...
        assert walked(y) == RECORDS - 1  # ... so its own SDR (15 records)
        assert fleet.nodes["n23"].health == "ok" and not fleet.nodes["n23"].errors
        y_stamp, mine, y_shared = cache._bmcs[key_of(lab, y)]
        assert y_stamp == stamp and not y_shared and len(mine.thresholds) == 8
        assert not cache.vouches(stamp, theirs) and "also vouches for another SDR" in caplog.text

        driver = poller._bmcs["n22"].drivers["n22"]
        driver.health_ttl = 0.0
        await poller.sweep(("power",), switches=False, nodes=["n22"])
        assert walked(w) == RECORDS and cache._bmcs[key_of(lab, w)][2] is False
        await poller.sweep(("power",), switches=False, nodes=["n24"])
        assert walked(z) == RECORDS and cache._bmcs[key_of(lab, z)][2] is False
        assert all(fleet.nodes[n].health == "ok" and not fleet.nodes[n].errors for n in ("n21", "n22", "n24"))
        assert cache.save()
    finally:
        await poller.aclose()

    lab.ipmi.commands.clear()  # a restart: each BMC's own summary, nothing walked
    assert await start_poller(lab, cache_path) == {"n21": "ok", "n22": "ok", "n23": "ok", "n24": "ok"}
    assert lab.count(GET_SDR) == 0


async def test_a_critical_sensor_beyond_the_shared_sdr_is_still_seen(make_lab, cache_path):
    """Health is not weakened by sharing: Y (on X's stamp, no 12V) walks its own SDR and
    still reports its overheated CPU, X its health."""
    x, y = "127.86.3.31", "127.86.3.32"
    lab = make_lab(((x, None, True, "FL-1000", Machine), (y, "overtemp", True, "FL-1000", NoTwelveVolt)))
    lab.bmc(y)._cmd_sdr_repository_info = lab.bmc(x)._cmd_sdr_repository_info
    cache = SdrCache.load(cache_path)
    poller, fleet = poller_of(lab, cache)
    try:
        await poller.sweep(("power",), switches=False, nodes=["n31"])
        await poller.sweep(("power",), switches=False, nodes=["n32"])
        assert fleet.nodes["n31"].health == "ok" and fleet.nodes["n32"].health == "critical"
        assert not fleet.nodes["n32"].errors
    finally:
        await poller.aclose()


# ------------------------------------------------------------------ sharing, the cache alone
OTHER = SdrSummary((SensorRef(1, 0),), False)


class Walks:
    """A stand-in for one BMC's SDR walk: counts, can be held, can fail."""

    def __init__(self) -> None:
        self.count = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    def walk(self, summary: SdrSummary = SUMMARY):
        async def walk() -> SdrSummary:
            self.count += 1
            await self.release.wait()
            if self.fail is not None:
                raise self.fail
            return summary
        return walk


async def test_waiters_take_the_walk_under_way():
    cache, walks = SdrCache(), Walks()
    walks.release.clear()
    tasks = [asyncio.create_task(cache.summary(f"127.0.0.{i}:623", STAMP, walks.walk())) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    walks.release.set()
    got = await asyncio.gather(*tasks)
    assert walks.count == 1
    assert [shared for _, shared in got] == [False, True, True, True, True]
    assert {id(summary) for summary, _ in got} == {id(got[0][0])}


async def test_a_failed_walk_leaves_the_waiters_to_walk_once_more():
    cache, walks = SdrCache(), Walks()
    walks.release.clear()
    walks.fail = TimeoutError("the BMC stopped answering")
    first = asyncio.create_task(cache.summary("127.0.0.1:623", STAMP, walks.walk()))
    await asyncio.sleep(0)
    good = Walks()
    waiters = [asyncio.create_task(cache.summary(f"127.0.0.{i}:623", STAMP, good.walk())) for i in (2, 3)]
    await asyncio.sleep(0.01)
    walks.release.set()
    with pytest.raises(TimeoutError):
        await first
    got = await asyncio.gather(*waiters)
    assert good.count == 1 and sorted(shared for _, shared in got) == [False, True]
    assert "127.0.0.1:623" not in cache._bmcs and not cache._walks


async def test_a_cancelled_waiter_leaves_the_walk_alone_and_a_slow_one_is_not_waited_for_long():
    cache, walks = SdrCache(), Walks()
    walks.release.clear()
    first = asyncio.create_task(cache.summary("127.0.0.1:623", STAMP, walks.walk()))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cache.summary("127.0.0.2:623", STAMP, Walks().walk()))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    own = Walks()
    assert await cache.summary("127.0.0.3:623", STAMP, own.walk(), wait=0.01) == (SUMMARY, False)
    assert own.count == 1  # waited 10 ms, then walked its own
    walks.release.set()
    assert await first == (SUMMARY, False)


async def test_own_walks_that_disagree_make_the_stamp_worthless(cache_path):
    cache, walks = SdrCache(cache_path), Walks()
    await cache.summary("127.0.0.1:623", STAMP, walks.walk())
    assert await cache.summary("127.0.0.2:623", STAMP, walks.walk()) == (SUMMARY, True)
    assert await cache.summary("127.0.0.3:623", STAMP, walks.walk(OTHER), own=True) == (OTHER, False)
    assert not cache.vouches(STAMP, SUMMARY) and walks.count == 2
    assert cache.save()
    for loaded in (cache, SdrCache.load(cache_path)):  # the file says so too
        assert not loaded.vouches(STAMP, SUMMARY) and not loaded.vouches(STAMP, OTHER)
        again = Walks()
        assert await loaded.summary("127.0.0.2:623", STAMP, again.walk()) == (SUMMARY, False)  # its own now
        assert await loaded.summary("127.0.0.4:623", STAMP, again.walk()) == (SUMMARY, False)
        assert again.count == 2


def test_the_shared_mark_survives_the_file(cache_path):
    cache = SdrCache(cache_path)
    cache.put("127.0.0.1:623", STAMP, SUMMARY)
    cache.put("127.0.0.2:623", STAMP, SUMMARY, shared=True)
    assert cache.save()
    doc = json.loads(cache_path.read_bytes())
    assert doc["bmcs"]["127.0.0.1:623"][3:] == [] and doc["bmcs"]["127.0.0.2:623"][3:] == [True]
    loaded = SdrCache.load(cache_path)
    assert [loaded._bmcs[k][2] for k in ("127.0.0.1:623", "127.0.0.2:623")] == [False, True]
    assert loaded.vouches(STAMP, SUMMARY) and not loaded.vouches(STAMP, OTHER)


# ------------------------------------------------------------------ the file alone


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
                    "127.0.0.5:623": good[:2] + [True], "\x1b[2J": good, "127.0.0.6:623": "x",
                    "127.0.0.7:623": good + [1], "127.0.0.8:623": good + [False]}}
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
