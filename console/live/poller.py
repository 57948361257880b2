"""The poller: keeps :class:`~console.live.fleet.Fleet` fresh without ever harming a BMC.

Rules (see docs/protocols.md, "Operating limits"):

- one kept driver (session) per BMC, logged out by :meth:`Poller.aclose`;
- one poll in flight per endpoint (a lock each) and at least ``min_interval``
  seconds between the starts of two polls of the same endpoint;
- nodes whose BMC is one Redfish service (same address and port, each its own
  ``bmc.system``: a blade enclosure, a chassis manager) are one endpoint: one
  session, one lock, one spacing, one breaker; a job reads their systems one
  after another inside one slot of that discipline (:meth:`Poller.poll_endpoint`);
- a global cap on polls in flight (``global_limit``);
- cadences per kind: power + health fast, boot override, sensors and event
  logs slower, identity rarely, the running image (SSH) slowly;
- every poll has a timeout; a failing endpoint backs off exponentially with
  jitter up to ``backoff_max`` (the circuit breaker: past ``breaker_threshold``
  failures only the fast poll probes it, at the slowest rate);
- a BMC that answers garbage, hangs, refuses auth or drops packets marks its
  node (``Fleet.node_failed``) and never stalls the rest.

The next poll of an endpoint is scheduled when the last one finished.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import heapq
import inspect
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.drivers import open_bmc
from console.drivers.bmc import BmcDriver
from console.errors import FleetError, Timeout, Unreachable
from console.live.fleet import Fleet, PortState
from console.secrets import Secrets
from inventory.model import Bmc, Node, SerialConsole, Site, SshConfig, Switch, SwitchPortRef

if TYPE_CHECKING:
    from console.drivers.sdrcache import SdrCache
    from console.drivers.snmp import PortMap

__all__ = ["PollConfig", "Poller", "NODE_JOBS", "settle", "open_bmc_async", "quiet_gc", "raise_fd_limit",
           "compact_site"]

log = logging.getLogger(__name__)

#: node poll kinds, in priority order
NODE_JOBS = ("power", "boot", "identity", "sensors", "events", "image")
#: place in the queue for the global cap (lower first): power, then switches, then the rest in order
_PRIORITY = {"power": 0, "switch": 1, **{job: 2 + i for i, job in enumerate(NODE_JOBS[1:])}}


@dataclass
class PollConfig:
    """Cadences (seconds) and limits."""

    power_interval: float = 10.0
    boot_interval: float = 60.0  # boot override: changes only when someone sets it (actions read it back)
    sensors_interval: float = 60.0
    events_interval: float = 120.0
    identity_interval: float = 3600.0
    image_interval: float = 300.0
    #: the running image again this soon while a host did not say (booting after an
    #: action, SSH refused): an unknown image must not wait a full image_interval
    image_retry_interval: float = 20.0
    switch_interval: float = 30.0
    switch_tables_interval: float = 120.0
    min_interval: float = 1.0
    timeout: float = 10.0
    global_limit: int = 64
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    breaker_threshold: int = 5

    def interval(self, job: str) -> float:
        """The cadence of one node job."""
        return getattr(self, f"{job}_interval")


class _Slots:
    """The global cap on polls in flight, handed out by priority (what an operator asked
    for, then a node's power poll, the switches, the slower jobs), first come first
    served within one.

    With a plain semaphore a large site's first minute went to whatever came first: every
    endpoint's loop runs all its jobs when it starts (power, boot, identity, sensors,
    events, image), so at 20,000 nodes the slots went to the slow jobs of early nodes
    while most nodes still had no power state at all.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._order = itertools.count()
        #: polls waiting in acquire() (the heap may still hold cancelled ones)
        self._queued = 0
        #: sweeps waiting for the queue to get shorter than a length: (length, their future)
        self._room: list[tuple[int, asyncio.Future[None]]] = []

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), waiter))
        self._queued += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot as it was cancelled
                self.release()
            raise
        finally:
            self._queued -= 1
            if self._room:
                self._make_room()

    async def shorter(self, than: int) -> None:
        """Return once fewer than ``than`` polls wait for a slot."""
        while self._queued >= than:
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append((than, room))
            await room

    def _make_room(self) -> None:
        waiting = []
        for than, room in self._room:
            if self._queued < than:
                if not room.done():
                    room.set_result(None)
            elif not room.done():
                waiting.append((than, room))
        self._room = waiting

    def release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class _Endpoint:
    """Per-endpoint discipline: lock, spacing, backoff, the kept driver.

    A large site has one per BMC, per switch and per host read over SSH: slots, and the
    scratch only switches use is made when first used.
    """

    __slots__ = ("name", "lock", "last_start", "failures", "next_allowed", "driver", "drivers", "members", "_state")

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = asyncio.Lock()
        self.last_start = -1e9
        self.failures = 0
        self.next_allowed = 0.0
        self.driver: Any = None  # switches and hosts
        self.drivers: dict[str, Any] = {}  # BMCs: node name -> driver (several systems of one service)
        self.members: list[str] = []  # BMCs: the nodes this endpoint serves
        self._state: dict[str, Any] | None = None

    @property
    def state(self) -> dict[str, Any]:
        """Per-endpoint scratch (a switch's previous counters, its tables)."""
        if self._state is None:
            self._state = {}
        return self._state


#: logouts under way at once in :meth:`Poller.aclose` (a BMC that does not answer its Close
#: Session holds one for a second: 10,000 such BMCs take 5 s)
LOGOUTS_AT_ONCE = 2048
#: the garbage collector's first threshold in a polling process (CPython's default is 700)
GC_GEN0 = 20_000


def quiet_gc() -> None:
    """Keep the garbage collector from rescanning what a polling process keeps for ever.

    Call once the site and the Fleet exist.  At 10,000 BMCs a steady sweep allocates a
    few hundred thousand short-lived objects (coroutines, futures, packets); with the
    default thresholds the collector ran about 470 times a sweep, and each time it
    reached the oldest generation it walked everything the process holds (the site's
    nodes, the Fleet, the sessions): 0.95-1.3 s of CPU a sweep, 0.55-0.7 s without.
    What exists now is frozen out of its sight (``gc.freeze``), and the young
    generation is collected every :data:`GC_GEN0` allocations.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0), gen1, gen2)


def raise_fd_limit() -> None:
    """Soft descriptor limit up to the hard one: a poller keeps a connection to every
    Redfish BMC (10,000 at a large site); the hard limit stays the administrator's word."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):
        pass  # the polls past the limit then fail, each saying so


def compact_site(site: Site) -> None:
    """Make the site cheaper to keep and to send, changing nothing it says: equal strings
    and field sets one object each (:func:`_share_equal`), and its node index (``site.node``)
    that of its own nodes.

    The poller's process gets its site pickled: call this before sending it (pickle sends
    an object once however often it is referred to), as :class:`Poller` calls it on the
    site it is given.  A site made by ``model_copy(update={"nodes": ...})`` (the lab's,
    with its ports) carries the index of the nodes it was copied from, and a pickled copy
    of it brought every node twice: at 10,000 nodes the poller's process unpickled 63 MB
    of site, 22 MB once compacted.
    """
    _share_equal(site)
    if site.nodes:
        site.node(site.nodes[0].name)  # rebuilds the index when it is another nodes tuple's


def _share_equal(site: Site) -> None:
    """Make the equal strings and field sets of the site's nodes one object each.

    A poller keeps its site as long as it polls.  Every node, its BMC and its switch port
    hold their own copy of the same user name, credential reference, rack, switch,
    protocol, and pydantic's set of the fields given (``__pydantic_fields_set__``).  The
    models are frozen, so an equal object in place of another changes nothing anyone can
    see; ``model_copy`` copies the field set before it adds to it.
    """
    strings: dict[str, str] = {}
    field_sets: dict[frozenset[str], set[str]] = {}

    def share(model: Node | Bmc | SerialConsole | SwitchPortRef) -> None:
        values = model.__dict__
        for key, value in values.items():
            if type(value) is str:
                values[key] = strings.setdefault(value, value)
        given = model.__pydantic_fields_set__
        shared = field_sets.setdefault(frozenset(given), given)
        if shared is not given:
            object.__setattr__(model, "__pydantic_fields_set__", shared)

    for node in site.nodes:
        share(node)
        share(node.bmc)
        if node.bmc.console is not None:
            share(node.bmc.console)
        if node.switch_port is not None:
            share(node.switch_port)


def _endpoint_key(node: Node) -> tuple[str, str, int]:
    return (node.bmc.protocol, node.bmc.address, node.bmc.effective_port)


def _login_key(node: Node) -> tuple[Any, ...]:
    """Nodes of one endpoint with equal keys can share a session (same user, same TLS trust)."""
    b = node.bmc
    return (b.scheme, b.username, b.password, b.verify_tls, b.ca_bundle)


async def open_bmc_async(node: Node, secrets: Secrets, *, timeout: float = 10.0) -> BmcDriver:
    """:func:`~console.drivers.open_bmc` with the password resolved off the event loop
    (a slow ``cmd:`` reference runs in a thread, once for every node sharing it)."""
    await secrets.aresolve(node.bmc.password)
    return open_bmc(node, secrets, timeout=timeout)


def _switch_refs(switch: Switch) -> list[str]:
    snmp = switch.snmp
    return [r for r in ((snmp.community,) if snmp.version == "2c" else (snmp.auth_key, snmp.priv_key)) if r]


def _ssh_refs(cfg: SshConfig) -> list[str]:
    refs = [r for r in (cfg.key, cfg.password) if r]
    if cfg.known_hosts and cfg.known_hosts.startswith("lab:"):
        refs.append(cfg.known_hosts)
    return refs


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FleetError):
        msg = exc.message
        return msg if msg.lower().startswith(exc.title) else f"{exc.title}: {msg}"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout: no answer in time"
    return f"internal error: {type(exc).__name__}"


class Poller:
    """Schedules every poll of one site, on the running event loop (a
    :class:`~console.live.source.PollSource`; :class:`~console.live.pollproc.PollerProcess`
    runs one in a process of its own)."""

    #: polling on this loop stops only when closed: never a failure to report
    failure: str | None = None

    def __init__(self, site: Site, fleet: Fleet, secrets: Secrets, config: PollConfig | None = None,
                 *, clock: Callable[[], float] = time.monotonic,
                 bmc_factory: Callable[..., BmcDriver | Awaitable[BmcDriver]] = open_bmc_async,
                 sdr_cache: SdrCache | None = None) -> None:
        compact_site(site)
        self.site = site
        #: given to every IPMI driver (console.drivers.sdrcache); the owner loads and saves it
        self.sdr_cache = sdr_cache
        self.fleet = fleet
        self.secrets = secrets
        self.config = config or PollConfig()
        self.clock = clock
        self._bmc_factory = bmc_factory
        self._slots = _Slots(self.config.global_limit)
        self._bmcs: dict[str, _Endpoint] = {}  # node name -> its BMC endpoint (shared by a service's systems)
        by_key: dict[tuple[str, str, int], _Endpoint] = {}
        for n in site.nodes:
            ep = by_key.get(_endpoint_key(n))
            if ep is None:
                ep = by_key[_endpoint_key(n)] = _Endpoint(n.name)
            ep.members.append(n.name)
            self._bmcs[n.name] = ep
        self._hosts: dict[str, _Endpoint] = {}  # node name -> its host (SSH), made on its first image read
        self._switches = {s.name: _Endpoint(s.name) for s in site.switches}
        #: where the switches see the nodes (made at the first switch poll with tables)
        self._ports: PortMap | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.in_flight = 0
        self.max_in_flight = 0

    # ------------------------------------------------------------ discipline
    async def _guarded(self, ep: _Endpoint, fn: Callable[[], Awaitable[Any]], *, probe: bool,
                       prepare: Callable[[], Awaitable[None]] | None = None, jobs: int = 1,
                       priority: int = 0) -> Any:
        """Run one poll of ``ep`` under every rule; returns its result or raises.

        ``prepare`` (resolving credentials, which may wait for a slow ``cmd:``) runs
        before a slot of the global cap is taken, so it never holds up other endpoints.
        ``jobs``: how many jobs ``fn`` runs (a batch over a service's systems), for its time limit.
        ``priority``: its place in the queue for the global cap (:class:`_Slots`; lower first).
        """
        async with ep.lock:
            now = self.clock()
            wait = max(ep.last_start + self.config.min_interval, ep.next_allowed if probe else 0.0) - now
            if wait > 0:
                await asyncio.sleep(wait)
            if prepare is not None:
                try:
                    await prepare()
                except BaseException as exc:
                    if not isinstance(exc, asyncio.CancelledError):
                        self._failed(ep)
                    raise
            await self._slots.acquire(priority)
            try:
                ep.last_start = self.clock()
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    # a job is a few requests, each bounded by the driver; this bounds the whole
                    # job (asyncio.timeout, not wait_for: no extra task per poll, ~20% of a
                    # steady IPMI sweep)
                    async with asyncio.timeout(self.config.timeout * (2 + jobs)):
                        result = await fn()
                except BaseException as exc:
                    if not isinstance(exc, asyncio.CancelledError):
                        self._failed(ep)
                    raise
                finally:
                    self.in_flight -= 1
            finally:
                self._slots.release()
            ep.failures = 0
            ep.next_allowed = 0.0
            return result

    def _failed(self, ep: _Endpoint) -> None:
        ep.failures += 1
        delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (ep.failures - 1))
        ep.next_allowed = self.clock() + delay * random.uniform(0.5, 1.5)

    def breaker_open(self, name: str) -> bool:
        """True when a node's BMC has failed so often that only probes go to it."""
        return self._bmcs[name].failures >= self.config.breaker_threshold

    async def _drop_driver(self, ep: _Endpoint) -> None:
        """Log out and forget the endpoint's driver (bounded; a dead BMC expires the session itself)."""
        driver = ep.driver
        if driver is None:
            return
        if await self._close(driver) and ep.driver is driver:
            ep.driver = None

    async def _drop_bmc_drivers(self, ep: _Endpoint) -> None:
        """Log out of a BMC endpoint: the drivers sharing a session first, its owner last."""
        for name, driver in reversed(list(ep.drivers.items())):
            if await self._close(driver) and ep.drivers.get(name) is driver:
                del ep.drivers[name]

    @staticmethod
    async def _close(driver: Any) -> bool:
        """Close one driver, bounded; False when cancelled (aclose() then tries again)."""
        try:
            async with asyncio.timeout(5):  # not wait_for: no task of its own
                await driver.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            pass
        return True

    # ------------------------------------------------------------ node jobs
    async def poll_node(self, name: str, jobs: Iterable[str] = ("power",), *, asked: bool = False) -> None:
        """Run the given jobs on one node, in order; failures land in the Fleet.

        ``asked``: an operator asked for this poll, so it skips a failing BMC's backoff
        wait (the minimum interval between requests to one BMC still holds).
        """
        for job in jobs:
            if job == "image":
                await self._poll_image(name)
                continue
            ep = self._bmcs[name]
            try:
                # partials, not lambdas: each binds this iteration's endpoint and job
                values = await self._guarded(ep, functools.partial(self._bmc_job, ep, name, job), probe=not asked,
                                             prepare=functools.partial(self._open_bmc, ep, name),
                                             priority=-1 if asked else _PRIORITY[job])  # an operator first
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                if not isinstance(exc, (FleetError, asyncio.TimeoutError)):
                    log.exception("poll %s %s failed", name, job)
                self.fleet.node_failed(name, job, _reason(exc))
                # the driver is kept: it re-establishes its own session, and a fresh one
                # per failure would pay a login (and, for IPMI, the SDR) every time
                if job == "power":
                    return  # the BMC is in trouble: don't pile slower polls onto it
                continue
            self.fleet.node_ok(name, job, **values)

    async def poll_node_now(self, name: str, jobs: Iterable[str] = ("power",)) -> None:
        """An operator asked: :meth:`poll_node` without a failing BMC's backoff wait."""
        await self.poll_node(name, jobs, asked=True)

    async def poll_switch_now(self, name: str) -> None:
        """An operator asked: :meth:`poll_switch`, tables included."""
        await self.poll_switch(name)

    async def poll_endpoint(self, names: Iterable[str], jobs: Iterable[str] = ("power",)) -> None:
        """Run the given jobs on several nodes of one BMC endpoint (the systems of one Redfish
        service), failures landing in the Fleet per node.

        Each job reads every node's system, one after another, in one slot of the endpoint's
        discipline (one wait for the minimum interval, one request in flight), over the
        session they share.  A node whose power poll failed gets no slower jobs, as in
        :meth:`poll_node`.
        """
        names = list(names)
        for job in jobs:
            if not names:
                return
            if job == "image":  # SSH to each host: not the BMC's discipline
                await asyncio.gather(*(self._poll_image(n) for n in names))
                continue
            failed = await self._poll_batch(self._bmcs[names[0]], names, job)
            if job == "power":
                names = [n for n in names if n not in failed]

    async def _poll_batch(self, ep: _Endpoint, names: list[str], job: str) -> set[str]:
        """One job on ``names`` (nodes of ``ep``) in one slot; returns the nodes that failed.

        When the service itself does not answer (unreachable, timeout), the systems after
        it are not asked again in this slot: they get the same error.  Only a batch in
        which every system failed counts as a failure of the endpoint (backoff, breaker).
        """
        results: dict[str, Any] = {}

        async def run() -> None:
            down: BaseException | None = None
            for name in names:
                if down is not None:
                    results[name] = down
                    continue
                try:
                    results[name] = await self._bmc_job(ep, name, job)
                except (Unreachable, Timeout) as exc:
                    results[name] = down = exc
                except Exception as exc:  # noqa: BLE001 - this node's error, reported below
                    results[name] = exc
            errors = [r for r in results.values() if isinstance(r, BaseException)]
            if len(errors) == len(names):
                raise errors[0]

        async def prepare() -> None:
            for name in names:
                await self._open_bmc(ep, name)

        try:
            await self._guarded(ep, run, probe=True, prepare=prepare, jobs=len(names), priority=_PRIORITY[job])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            for name in names:
                results.setdefault(name, exc)
        failed = set()
        for name in names:
            result = results[name]
            if isinstance(result, BaseException):
                if not isinstance(result, (FleetError, asyncio.TimeoutError)):
                    log.error("poll %s %s failed", name, job, exc_info=result)
                self.fleet.node_failed(name, job, _reason(result))
                failed.add(name)
            else:
                self.fleet.node_ok(name, job, **result)
        return failed

    async def _open_bmc(self, ep: _Endpoint, name: str) -> None:
        """The node's kept driver, made on first use (its credentials resolved off the loop).

        Another system of a service this endpoint already talks to, with the same login,
        gets a driver over that session (``for_system``) instead of a login of its own.
        """
        if name in ep.drivers:
            return
        node = self.site.node(name)
        for other, peer in ep.drivers.items():
            share = getattr(peer, "for_system", None)
            if share is not None and _login_key(self.site.node(other)) == _login_key(node):
                ep.drivers[name] = share(node.bmc)
                return
        driver = self._bmc_factory(node, self.secrets, timeout=self.config.timeout)
        driver = await driver if inspect.isawaitable(driver) else driver
        use_cache = getattr(driver, "use_sdr_cache", None)  # IPMI drivers
        if self.sdr_cache is not None and use_cache is not None:
            use_cache(self.sdr_cache)
        ep.drivers[name] = driver

    async def _resolve(self, refs: Iterable[str]) -> None:
        """Resolve credential references off the event loop (the drivers then find them cached)."""
        for ref in refs:
            await self.secrets.aresolve(ref)

    async def _bmc_job(self, ep: _Endpoint, name: str, job: str) -> dict[str, Any]:
        d: BmcDriver = ep.drivers[name]
        if job == "power":
            power = await d.power_state()
            health = await d.health()
            return {"power": power.value, "health": health}
        if job == "boot":
            return {"boot_override": await d.boot_override()}
        if job == "sensors":
            return {"sensors": await d.sensors()}
        if job == "events":
            return {"events": await d.events(100)}
        if job == "identity":
            return {"identity": await d.identity()}
        raise ValueError(f"unknown job {job!r}")

    async def _poll_image(self, name: str) -> None:
        from console.drivers.ssh import read_image

        node = self.site.node(name)
        ep = self._hosts.get(name)
        if ep is None:
            ep = self._hosts[name] = _Endpoint(name)
        try:
            result = await self._guarded(ep, lambda: read_image(node, self.site.ssh, self.secrets,
                                                                timeout=self.config.timeout), probe=False,
                                         priority=_PRIORITY["image"],
                                         prepare=lambda: self._resolve(_ssh_refs(self.site.ssh)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fleet.node_ok(name, "image", image_running=None, image_error=_reason(exc))
            return
        # no SSH is not a node error: the image is then "unknown", with the reason
        self.fleet.node_ok(name, "image", image_running=result.ref, image_error=result.error)

    # ------------------------------------------------------------ switches
    async def poll_switch(self, name: str, *, tables: bool = True) -> None:
        """Poll one switch: system + interfaces (rates), and FDB + LLDP when ``tables``."""
        ep = self._switches[name]
        try:
            await self._guarded(ep, lambda: self._switch_job(ep, name, tables), probe=True,
                                prepare=lambda: self._resolve(_switch_refs(self._switch(name))),
                                priority=_PRIORITY["switch"])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not isinstance(exc, (FleetError, asyncio.TimeoutError)):
                log.exception("poll switch %s failed", name)
            self.fleet.switch_failed(name, _reason(exc))
            return
        self._discover(name)

    def _switch(self, name: str) -> Switch:
        switch = self.site.switch(name)
        if switch is None:  # cannot be: every switch endpoint was made from the site's switches
            raise KeyError(name)
        return switch

    async def _switch_job(self, ep: _Endpoint, name: str, tables: bool) -> None:
        from console.drivers.snmp import SnmpClient, rates

        if ep.driver is None:
            ep.driver = SnmpClient(self._switch(name), self.secrets, timeout=min(self.config.timeout, 5.0))
        client = ep.driver
        system = await client.system()
        ifaces = await client.interfaces()
        now = self.clock()
        prev = ep.state.get("ifaces")
        r = rates(prev[0], prev[1], ifaces, now) if prev else {}
        ep.state["ifaces"] = (ifaces, now)
        if tables:
            ep.state["fdb"] = await client.fdb()
            ep.state["lldp"] = await client.lldp_neighbours()
        fdb, lldp = ep.state.get("fdb", []), ep.state.get("lldp", [])
        ports: dict[int, PortState] = {}
        by_name: dict[str, PortState] = {}
        for i in ifaces:
            in_bps, out_bps, in_err, out_err = r.get(i.ifindex) or (None, None, None, None)
            p = PortState(ifindex=i.ifindex, name=i.name, alias=i.alias, admin_up=i.admin_up, oper_up=i.oper_up,
                          speed_mbps=i.speed_mbps, in_bps=in_bps, out_bps=out_bps, in_errors_per_s=in_err,
                          out_errors_per_s=out_err, in_errors=i.in_errors, out_errors=i.out_errors)
            ports[i.ifindex] = p
            by_name[i.name] = p
        for e in fdb:
            if e.port in by_name:
                by_name[e.port].macs.append(e.mac)
        for n in lldp:
            if n.local_port in by_name:
                by_name[n.local_port].lldp = {"chassis_id": n.chassis_id, "port_id": n.port_id, "sys_name": n.sys_name}
        self.fleet.switch_ok(name, descr=system.descr, uptime_s=system.uptime_s, ports=ports)

    def _discover(self, switch: str) -> None:
        """Recompute the discovered switch port of the nodes ``switch`` sees or saw, from what
        every switch's FDB and LLDP last said (a node's firm port is its one unambiguous
        sighting; none when it has none or several)."""
        from console.drivers.snmp import PortMap

        ep = self._switches[switch]
        if "fdb" not in ep.state:
            return
        if self._ports is None:
            cabled: dict[str, list[str]] = {}
            for n in self.site.nodes:
                if n.switch_port is not None:
                    cabled.setdefault(n.switch_port.switch, []).append(n.name)
            self._ports = PortMap({n.name: n.mac for n in self.site.nodes if n.mac}, self._switches, cabled)
        for node in self._ports.update(switch, ep.state["fdb"], ep.state.get("lldp", [])):
            seen = self._ports.evidence(node)
            items: list[dict[str, Any]] = [
                {"switch": sw_name, "port": ev.port, "source": ev.source, "ambiguous": ev.ambiguous}
                for sw_name, ev in seen]
            firm = sorted({(sw_name, ev.port) for sw_name, ev in seen if not ev.ambiguous})
            port = firm[0] if len(firm) == 1 else None
            link = None
            if port is not None:
                st = self.fleet.switches[port[0]]
                link = next((p.oper_up for p in st.ports.values() if p.name == port[1]), None)
            self.fleet.set_discovered(node, port, items, link)

    # ------------------------------------------------------------ sweeps and the loop
    async def sweep(self, jobs: Iterable[str] = ("power",), *, nodes: Iterable[str] | None = None,
                    switches: bool = True) -> None:
        """One pass over the selected nodes (and every switch); returns when all finished."""
        jobs = tuple(jobs)
        names = list(nodes) if nodes is not None else [n.name for n in self.site.nodes]
        by_endpoint: dict[_Endpoint, list[str]] = {}
        for n in names:
            by_endpoint.setdefault(self._bmcs[n], []).append(n)

        def polls_to_start() -> Iterator[Coroutine[Any, Any, None]]:
            for group in by_endpoint.values():
                yield self.poll_node(group[0], jobs) if len(group) == 1 else self.poll_endpoint(group, jobs)
            if switches:
                for s in self.site.switches:
                    yield self.poll_switch(s.name)

        # Polls start a batch (the global cap) at a time, while fewer than that wait for a
        # slot: each waiting poll holds its task and coroutines (~2.5 KB), so starting all
        # of a 10,000-node sweep at once held 25 MB for nothing.  Polls waiting for other
        # reasons (a BMC's backoff, the spacing between two jobs) do not hold the rest up.
        # A TaskGroup, not gather: gather's future keeps every finished poll's task and
        # coroutine for as long as its awaiter holds the future, often into the next sweep.
        batch = max(1, self.config.global_limit)
        async with asyncio.TaskGroup() as polls:
            for i, poll in enumerate(polls_to_start()):
                if i and i % batch == 0:
                    await asyncio.sleep(0)  # the last batch runs up to its slots
                    await self._slots.shorter(batch)
                polls.create_task(poll)
        self.fleet.last_sweep_at = self.fleet.clock()

    async def _node_loop(self, names: list[str]) -> None:
        """Poll one BMC endpoint for ever: one node, or every system of a shared service."""
        due = {job: self.clock() for job in NODE_JOBS}
        while not self._closing:
            if self.breaker_open(names[0]):
                job = "power"  # only probe a dead BMC
            else:
                job = min(NODE_JOBS, key=lambda j: (due[j], NODE_JOBS.index(j)))
            delay = due[job] - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(names) == 1:
                await self.poll_node(names[0], (job,))
            else:
                await self.poll_endpoint(names, (job,))
            interval = self.config.interval(job)
            if job == "image" and any(self.fleet.nodes[n].image_running is None for n in names):
                interval = min(interval, self.config.image_retry_interval)
            due[job] = self.clock() + interval * random.uniform(0.9, 1.1)

    async def _switch_loop(self, name: str) -> None:
        next_tables = 0.0
        while not self._closing:
            tables = self.clock() >= next_tables
            await self.poll_switch(name, tables=tables)
            if tables:
                next_tables = self.clock() + self.config.switch_tables_interval
            await asyncio.sleep(self.config.switch_interval * random.uniform(0.9, 1.1))

    def start(self) -> None:
        """Start polling everything in the background (call from a running loop)."""
        if self._tasks:
            return
        for ep in dict.fromkeys(self._bmcs.values()):
            self._tasks.append(asyncio.create_task(self._node_loop(ep.members), name=f"poll {ep.members[0]}"))
        for s in self.site.switches:
            self._tasks.append(asyncio.create_task(self._switch_loop(s.name), name=f"poll {s.name}"))

    async def aclose(self) -> None:
        """Stop polling and log out of every BMC (bounded: a dead BMC does not block shutdown)."""
        self._closing = True
        tasks, self._tasks = self._tasks, []
        # Python 3.11's wait_for can swallow a cancellation that races a finishing
        # request; the _closing flag ends such a loop, and we cancel again until all end.
        for _ in range(50):
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=0.2)
        bmcs = [ep for ep in dict.fromkeys(self._bmcs.values()) if ep.drivers]
        switches = [ep for ep in self._switches.values() if ep.driver is not None]
        drops = itertools.chain(((self._drop_bmc_drivers, ep) for ep in bmcs),
                                ((self._drop_driver, ep) for ep in switches))

        # At most LOGOUTS_AT_ONCE logouts at a time, each started when one ends: all of a
        # 10,000-BMC poller's at once (a coroutine, a request and its timer each) took its
        # process from 147 to 191 MB as it closed, above anything it needed while polling.
        async def logouts() -> None:
            for drop, ep in drops:  # one iterator for all: each endpoint once
                await drop(ep)

        await asyncio.gather(*(logouts() for _ in range(min(LOGOUTS_AT_ONCE, len(bmcs) + len(switches)))))


async def settle(timeout: float = 1.0) -> None:
    """End what libraries left running on the loop (pysnmp's dispatcher timer), bounded."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in rest:
        t.cancel()
    if rest:
        await asyncio.wait(rest, timeout=timeout)
