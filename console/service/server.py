"""The site service: one process per site polls, runs actions, and serves its clients.

:class:`SiteService` owns, for one site:

- one poll source (by default :class:`~console.live.pollproc.PollerProcess`) feeding the
  service's :class:`~console.live.fleet.Fleet`: ten clients cost the BMCs what one does;
- the actions: plans are made and run here (:class:`~console.ops.runner.Runner`, with the
  service's journal, locks and :class:`~console.ops.jobs.JobBoard`), so a run outlives the
  terminal that asked for it; roles are enforced here (:func:`identity.allows`), and the
  operator's name goes into every journal entry and lock;
- the serial consoles (:class:`~console.service.consoles.ServiceConsoles`): one session per
  node for every client, roles enforced, holders named by identity, and every watch,
  attach, takeover and detach journalled here under that identity;
- a unix socket, ``runtime_dir()/service-<site>.sock`` (0600 in a 0700 directory), speaking
  :mod:`console.service.protocol`.

Who a client is, the service decides: a session token it issued (the SSH front door's
client processes), else the peer's uid (``SO_PEERCRED``): the service's own uid is that
login name as ``admin``; any other uid is refused.  Nothing a client says about itself
(``$FLEET_OPERATOR``) is believed.

:meth:`SiteService.stop` (SIGTERM, SIGINT, SIGHUP in :meth:`run_until_stopped`) stops
taking clients, aborts running steps with rollback as the console's quit does (each
node is left as the journal says), tells every client why in a :class:`Bye`, and logs out
of every BMC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import pwd
import signal
import socket
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from console.errors import FleetError
from console.live.fleet import Fleet
from console.live.poller import PollConfig
from console.live.pollproc import PollerProcess
from console.live.source import PollSource, PollSourceFactory
from console.ops.actions import Plan, plan_power, plan_pxe, plan_reimage
from console.ops.jobs import Job, JobBoard
from console.ops.journal import Journal
from console.ops.locks import Locks
from console.ops.options import RunOptions
from console.ops.runner import NodeProgress, Runner
from console.service import protocol as p
from console.service.consoles import ServiceConsoles
from console.service.identity import Identity, SessionTokens, allows, needed_role
from console.site import SiteContext
from console.text import visible
from inventory.errors import InventoryError

__all__ = ["SiteService", "ServiceError", "SessionInfo", "ABORT_WAIT_S"]

log = logging.getLogger(__name__)

#: how long a client has to say hello
HELLO_S = 10.0
#: how often changed states go out to subscribers
FLUSH_S = 0.05
#: how often others' locks are read for the rows' activity
LOCK_SCAN_S = 2.0
#: how long stop() waits for aborted runs to roll back
ABORT_WAIT_S = 120.0
#: how long a plan made but not run is kept
PLAN_KEEP_S = 900.0
#: how long stop() waits for each client to take its Bye
BYE_S = 2.0
#: the RunOptions a client may set
_RUN_FIELDS = {f.name for f in fields(RunOptions)} - {"reimage_timeouts"}


class ServiceError(FleetError):
    """The service cannot start (another one runs, the socket path is not ours, ...)."""


@dataclass
class SessionInfo:
    """One connected client, as :meth:`SiteService.sessions` reports it."""

    id: str
    identity: Identity
    since: float
    client: str
    pid: int | None
    locks: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    #: the nodes whose serial console this client types on
    consoles: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"session": self.id, "name": self.identity.name, "role": self.identity.role,
                "via": self.identity.via, "since": self.since, "client": self.client, "pid": self.pid,
                "locks": self.locks, "jobs": self.jobs, "consoles": self.consoles}


class _Session:
    """A connected client: its identity, its outgoing queue and writer."""

    def __init__(self, sid: str, identity: Identity, hello: p.Hello, writer: asyncio.StreamWriter) -> None:
        self.id = sid
        self.identity = identity
        self.client = hello.client
        self.pid = hello.pid
        self.since = time.time()
        self.writer = writer
        self.queue: asyncio.Queue[p._Msg | None] = asyncio.Queue(maxsize=p.QUEUE_MAX)
        self.subscribed = False
        self.dropped: str | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pump: asyncio.Task[None] | None = None


@dataclass
class _Planned:
    plan: Plan
    identity: Identity
    made: float


@dataclass
class _ServiceJob:
    job: Job
    identity: Identity
    followers: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


def _peer_uid(writer: asyncio.StreamWriter) -> tuple[int | None, int | None]:
    """(pid, uid) of the connected peer (SO_PEERCRED), (None, None) when unknown."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None, None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None, None
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


def _login_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


class SiteService:
    """The service of one site (see the module docstring)."""

    def __init__(self, ctx: SiteContext, *, socket_path: Path | None = None,
                 poll_config: PollConfig | None = None, poller: PollSourceFactory | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.site = ctx.site
        self.socket_path = socket_path if socket_path is not None else p.socket_path(ctx.site.name, environ={})
        self.poll_config = poll_config or PollConfig()
        self._make_poller: PollSourceFactory = poller or PollerProcess
        self.fleet = Fleet(ctx.site, clock=clock)
        self.poller: PollSource | None = None
        self.tokens = SessionTokens()
        self.board = JobBoard(self.fleet, refresh=self._refresh_nodes, clock=clock)
        self.pid = os.getpid()
        self._sessions: dict[str, _Session] = {}
        self._ids = itertools.count(1)
        self._plans: dict[str, _Planned] = {}
        self._jobs: dict[str, _ServiceJob] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping: str | None = None
        self._stopped = asyncio.Event()
        self._bg: list[asyncio.Task[None]] = []
        #: the serial consoles: one session per node, shared by every client (console/service/consoles.py)
        self.consoles = ServiceConsoles(self)

    # ------------------------------------------------------------ life
    async def start(self) -> None:
        """Claim the socket (ServiceError when a live service owns it), start polling, serve."""
        path = self.socket_path
        await self._claim(path)
        self.poller = self._make_poller(self.site, self.fleet, self.ctx.secrets, self.poll_config)
        self.poller.start()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(path), limit=p.MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._bg = [asyncio.create_task(self._flush_loop(), name="service-flush"),
                    asyncio.create_task(self._lock_loop(), name="service-locks")]
        log.info("site service for %s on %s (pid %d)", self.site.name, path, self.pid)

    async def _claim(self, path: Path) -> None:
        """Refuse when a live service answers at ``path``; remove a stale socket of ours."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise ServiceError(f"refusing to serve: {path} exists and is not a socket of ours; remove it")
        try:
            _r, w = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError, OSError):
            log.info("removing the stale service socket %s", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        w.close()
        raise ServiceError(f"a service for site {self.site.name} already runs on {path}")

    async def run_until_stopped(self, *, on_sighup: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` (SIGTERM, SIGINT and SIGHUP call it with their reason;
        SIGHUP calls ``on_sighup`` instead when given: the SSH front door reads its
        operators file again, as sshd reads its configuration)."""
        loop = asyncio.get_running_loop()
        reasons = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGINT: "interrupted (SIGINT)",
                   signal.SIGHUP: "hung up (SIGHUP)"}
        for sig, why in reasons.items():
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                if sig == signal.SIGHUP and on_sighup is not None:
                    loop.add_signal_handler(sig, on_sighup)
                else:
                    loop.add_signal_handler(sig, self._signalled, why)
        try:
            await self._stopped.wait()
        finally:
            for sig in reasons:
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.remove_signal_handler(sig)

    def _signalled(self, why: str) -> None:
        if self._stopping is None:
            self._spawn(self.stop(why))

    async def stop(self, reason: str) -> None:
        """Stop: no new clients; running steps aborted and rolled back (bounded); every client
        told why; every BMC logged out; the socket removed.  Idempotent."""
        if self._stopping is not None:
            await self._stopped.wait()
            return
        self._stopping = reason
        log.info("site service stopping: %s", reason)
        if self._server is not None:
            self._server.close()
        running = [sj for sj in self._jobs.values() if not sj.ended.is_set()]
        for sj in running:
            sj.job.runner.cancel(rollback=True, reason=f"service stopping: {reason}")
        if running:
            waits = [sj.ended.wait() for sj in running]
            try:
                await asyncio.wait_for(asyncio.gather(*waits), ABORT_WAIT_S)
            except TimeoutError:
                log.warning("runs still rolling back after %.0f s: left as they are", ABORT_WAIT_S)
        for task in self._bg:
            task.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        await asyncio.gather(*(self._drop(s, f"the site service stopped: {reason}")
                               for s in list(self._sessions.values())), return_exceptions=True)
        self.tokens.revoke_all()
        await self.consoles.close()
        if self.poller is not None:
            await self.poller.aclose()
        with contextlib.suppress(FileNotFoundError, OSError):
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)
        for task in list(self._tasks):
            task.cancel()
        self._stopped.set()

    @property
    def stopping(self) -> str | None:
        return self._stopping

    # ------------------------------------------------------------ who
    def sessions(self) -> list[SessionInfo]:
        """Who is connected: identity, since, what they hold (locks of their running jobs, jobs,
        the consoles they type on)."""
        held = self.consoles.holders()
        out = []
        for s in self._sessions.values():
            jobs = [pid for pid, sj in self._jobs.items()
                    if sj.identity.name == s.identity.name and not sj.ended.is_set()]
            locks = sorted({n for pid in jobs for n in self._jobs[pid].job.runner.locks.mine()})
            consoles = sorted(node for node, sid in held.items() if sid == s.id)
            out.append(SessionInfo(s.id, s.identity, s.since, s.client, s.pid, locks, jobs, consoles))
        return out

    def jobs(self) -> list[dict[str, Any]]:
        """Every run the service knows (running and recent), oldest first."""
        out = []
        for plan_id, sj in self._jobs.items():
            job = sj.job
            runner = job.runner
            out.append({"plan_id": plan_id, "action": job.plan.action, "operator": sj.identity.name,
                        "started": job.started, "state": job.state(), "counts": job.counts(),
                        "ended": sj.ended.is_set(), "ticket": job.plan.ticket, "nodes": len(job.plan.targets),
                        "cancelled": runner.cancelled, "aborting": runner.aborting,
                        "summary": job.result.summary() if job.result is not None else None})
        return out

    # ------------------------------------------------------------ clients
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_pid, uid = _peer_uid(writer)
        session: _Session | None = None
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), HELLO_S)
            except ValueError:  # over MAX_LINE
                await self._refuse(writer, f"a hello line over the {p.MAX_LINE}-byte limit")
                return
            except (TimeoutError, ConnectionError):
                return
            hello_or_why = self._hello(line)
            if isinstance(hello_or_why, str):
                await self._refuse(writer, hello_or_why)
                return
            hello = hello_or_why
            identity = self._identify(hello, uid)
            if isinstance(identity, str):
                await self._refuse(writer, identity)
                return
            if self._stopping is not None:
                await self._refuse(writer, f"the site service is stopping: {self._stopping}")
                return
            sid = f"s{next(self._ids)}"
            if hello.pid is None:
                hello.pid = peer_pid
            session = _Session(sid, identity, hello, writer)
            self._sessions[sid] = session
            session.pump = asyncio.create_task(self._pump(session), name=f"service-pump-{sid}")
            self._send(session, p.Welcome(version=p.PROTOCOL_VERSION, site=self.site.name, pid=self.pid,
                                          identity=p.IdentityModel(name=identity.name, role=identity.role,
                                                                   via=identity.via), session=sid))
            log.info("client %s connected: %s, %s", sid, visible(identity.label()), visible(hello.client))
            await self._serve(session, reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if session is not None:
                await self._drop(session, session.dropped or "disconnected", tell=False)
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    def _hello(self, line: bytes) -> p.Hello | str:
        """The client's Hello, or why it is refused (another version is named)."""
        try:
            raw = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... nested deep
            return "expected a hello message (JSON) first"
        if not isinstance(raw, dict) or raw.get("type") != "hello":
            return "expected a hello message first"
        version = raw.get("version")
        if version != p.PROTOCOL_VERSION:
            return (f"protocol version mismatch: the client speaks version {visible(str(version))[:20]}, "
                    f"this service (pid {self.pid}) speaks version {p.PROTOCOL_VERSION}; "
                    "use the fleet-console of the service's installation")
        try:
            msg = p.decode(line)
        except p.ProtocolError as exc:
            return str(exc)
        assert isinstance(msg, p.Hello)
        return msg

    def _identify(self, hello: p.Hello, uid: int | None) -> Identity | str:
        if hello.token:
            who = self.tokens.resolve(hello.token)
            return who if who is not None else "unknown or expired session token"
        if uid is None:
            return "cannot tell who you are (no peer credentials on this socket)"
        if uid != os.geteuid():
            return f"uid {uid} may not use this service (it runs as uid {os.geteuid()})"
        return Identity(_login_name(uid), "admin", "local")

    async def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        log.info("client refused: %s", visible(why))
        with contextlib.suppress(Exception):
            writer.write(p.encode(p.Refused(reason=why)))
            await asyncio.wait_for(writer.drain(), BYE_S)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _serve(self, s: _Session, reader: asyncio.StreamReader) -> None:
        while s.dropped is None:
            try:
                line = await reader.readline()
            except ValueError:  # over MAX_LINE
                s.dropped = f"a line over the {p.MAX_LINE}-byte limit"
                return
            if not line:
                return
            try:
                msg = p.decode(line)
            except p.ProtocolError as exc:
                s.dropped = str(exc)
                return
            task = asyncio.create_task(self._request(s, msg))
            s.tasks.add(task)
            task.add_done_callback(s.tasks.discard)

    def _send(self, s: _Session, msg: p._Msg) -> None:
        """Queue ``msg`` for ``s``; a client too far behind is dropped (never waited for)."""
        if s.dropped is not None:
            return
        try:
            s.queue.put_nowait(msg)
        except asyncio.QueueFull:
            s.dropped = f"too slow: {p.QUEUE_MAX} messages waiting"
            log.warning("dropping client %s (%s): too slow", s.id, visible(s.identity.name))
            self._spawn(self._drop(s, s.dropped))

    async def _pump(self, s: _Session) -> None:
        try:
            while True:
                msg = await s.queue.get()
                if msg is None:
                    return
                s.writer.write(p.encode(msg))
                await s.writer.drain()
        except (ConnectionError, OSError, p.ProtocolError):
            s.dropped = s.dropped or "connection lost"

    async def _drop(self, s: _Session, reason: str, *, tell: bool = True) -> None:
        """End session ``s`` (telling it ``reason`` unless it is gone already)."""
        if self._sessions.pop(s.id, None) is None:
            return
        s.dropped = s.dropped or reason
        for task in list(s.tasks):
            task.cancel()
        if s.pump is not None:
            s.pump.cancel()
            await asyncio.gather(s.pump, return_exceptions=True)
        for sj in self._jobs.values():
            sj.followers.discard(s.id)
        self.consoles.client_gone(s)
        if tell:
            with contextlib.suppress(Exception):
                s.writer.write(p.encode(p.Bye(reason=reason)))
                await asyncio.wait_for(s.writer.drain(), BYE_S)
        s.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s.writer.wait_closed(), BYE_S)
        log.info("client %s (%s) gone: %s", s.id, visible(s.identity.name), visible(reason))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ states
    def _snapshot(self) -> list[p.States]:
        with self.fleet._lock:  # one consistent copy; changes after it follow as States
            nodes = [p.dump_node(st) for st in self.fleet.nodes.values()]
            switches = [p.dump_switch(sw) for sw in self.fleet.switches.values()]
            activity = {n: p.dump_activity(a) for n, a in self.fleet.activity.items()}
            last = self.fleet.last_sweep_at
        chunks = [p.States(nodes=nodes[i:i + p.CHUNK_NODES], last_sweep_at=last)
                  for i in range(0, len(nodes), p.CHUNK_NODES)] or [p.States(last_sweep_at=last)]
        chunks[0].switches = switches
        chunks[-1].activity = activity
        chunks[-1].snapshot_done = True
        return chunks

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                self.board.sync()
                self._flush()
                self._expire_plans()
            except Exception:  # noqa: BLE001 - one bad state must not stop the service
                log.exception("service flush failed")

    def _flush(self) -> None:
        names, switch_names = self.fleet.drain_changes()
        if not names and not switch_names:
            return
        with self.fleet._lock:
            nodes = [p.dump_node(self.fleet.nodes[n]) for n in names if n in self.fleet.nodes]
            switches = [p.dump_switch(self.fleet.switches[n]) for n in switch_names if n in self.fleet.switches]
            activity = {n: p.dump_activity(self.fleet.activity.get(n)) for n in names}
            last = self.fleet.last_sweep_at
        messages = [p.States(nodes=nodes[i:i + p.CHUNK_NODES], last_sweep_at=last)
                    for i in range(0, len(nodes), p.CHUNK_NODES)] or [p.States(last_sweep_at=last)]
        messages[0].switches = switches
        messages[-1].activity = activity
        for s in list(self._sessions.values()):
            if s.subscribed:
                for m in messages:
                    self._send(s, m)

    async def _lock_loop(self) -> None:
        while True:
            try:
                held = await asyncio.to_thread(self.board.scan_locks)
                self.board.apply_locks(held)
            except Exception:  # noqa: BLE001
                log.exception("lock scan failed")
            await asyncio.sleep(LOCK_SCAN_S)

    def _refresh_nodes(self, names: list[str]) -> None:
        if self.poller is None or self._stopping is not None:
            return
        poller = self.poller

        async def poll(name: str) -> None:
            with contextlib.suppress(Exception):
                await poller.poll_node_now(name, ("power", "boot", "image"))

        for name in names:
            self._spawn(poll(name))

    def _expire_plans(self) -> None:
        now = time.monotonic()
        for plan_id, planned in list(self._plans.items()):
            if now - planned.made > PLAN_KEEP_S:
                del self._plans[plan_id]

    # ------------------------------------------------------------ requests
    async def _request(self, s: _Session, msg: Any) -> None:
        rid = getattr(msg, "id", None)
        if rid is None:
            s.dropped = f"unexpected {getattr(msg, 'type', '?')} message from a client"
            self._spawn(self._drop(s, s.dropped))
            return
        try:
            data = await self._answer(s, msg)
        except _Refusal as exc:
            self._send(s, p.Reply(id=rid, ok=False, error=str(exc)))
        except (FleetError, InventoryError, ValueError, TypeError) as exc:
            self._send(s, p.Reply(id=rid, ok=False, error=visible(str(exc))))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug answers this request, not the whole service
            log.exception("request %s failed", getattr(msg, "type", "?"))
            self._send(s, p.Reply(id=rid, ok=False, error=f"internal error: {type(exc).__name__}: {exc}"))
        else:
            self._send(s, p.Reply(id=rid, data=data))

    def _check(self, s: _Session, what: str) -> None:
        if not allows(s.identity.role, what):
            need = needed_role(what) or "?"
            raise _Refusal(f"refused by the site service: {s.identity.name} is {s.identity.role}; "
                           f"{what} needs the {need} role")

    async def _answer(self, s: _Session, msg: Any) -> dict[str, Any] | None:
        if isinstance(msg, p.Subscribe):
            self._check(s, "watch")
            for chunk in self._snapshot():
                self._send(s, chunk)
            s.subscribed = True
            return {"nodes": len(self.fleet.nodes)}
        if isinstance(msg, p.PollNode):
            self._check(s, "watch")
            if msg.name not in self.fleet.nodes:
                raise ValueError(f"unknown node {visible(msg.name)}")
            await self._poller().poll_node_now(msg.name, [j for j in msg.jobs][:8])
            self._flush()  # the node's new state is on its way before the reply
            return None
        if isinstance(msg, p.PollSwitch):
            self._check(s, "watch")
            if msg.name not in self.fleet.switches:
                raise ValueError(f"unknown switch {visible(msg.name)}")
            await self._poller().poll_switch_now(msg.name)
            self._flush()
            return None
        if isinstance(msg, p.PlanAction):
            return await self._plan(s, msg)
        if isinstance(msg, p.RunPlan):
            return self._run(s, msg)
        if isinstance(msg, p.Cancel):
            return self._cancel(s, msg)
        if isinstance(msg, p.Follow):
            return self._follow(s, msg)
        if isinstance(msg, p.Jobs):
            return {"jobs": self.jobs()}
        if isinstance(msg, p.CONSOLE_REQUESTS):
            return await self.consoles.answer(s, msg)
        if isinstance(msg, p.Who):
            return {"sessions": [x.to_json() for x in self.sessions()], "you": s.id}
        raise _Refusal(f"a client may not send {msg.type} messages")

    def _poller(self) -> PollSource:
        if self.poller is None or self._stopping is not None:
            raise _Refusal("the site service is stopping")
        return self.poller

    async def _plan(self, s: _Session, msg: p.PlanAction) -> dict[str, Any]:
        if self._stopping is not None:
            raise _Refusal(f"the site service is stopping: {self._stopping}")
        self._check(s, msg.kind)
        if msg.force_protected:
            self._check(s, "protected")
        who = s.identity.name
        locks = Locks(self.site.name, owner=who)
        if msg.kind == "power":
            plan = await plan_power(self.ctx, msg.names, msg.power_action or "", ticket=msg.ticket,
                                    force_protected=msg.force_protected, locks=locks, timeout=msg.timeout,
                                    power_timeout=msg.power_timeout, soft_timeout=msg.soft_timeout,
                                    hard_after=msg.hard_after)
        elif msg.kind == "pxe":
            plan = await plan_pxe(self.ctx, msg.names, ticket=msg.ticket, force_protected=msg.force_protected,
                                  locks=locks, timeout=msg.timeout, power_timeout=msg.power_timeout)
        else:
            plan = await plan_reimage(self.ctx, msg.names, msg.image or "", ticket=msg.ticket,
                                      force_protected=msg.force_protected, force=msg.force, locks=locks,
                                      timeout=msg.timeout)
        self._plans[plan.id] = _Planned(plan, s.identity, time.monotonic())
        return {"plan": _plan_json(plan), "text": plan.text()}

    def _run(self, s: _Session, msg: p.RunPlan) -> dict[str, Any]:
        if self._stopping is not None:
            raise _Refusal(f"the site service is stopping: {self._stopping}")
        planned = self._plans.get(msg.plan_id)
        if planned is None:
            raise _Refusal(f"no plan {visible(msg.plan_id)} waiting in the service (made by another client, "
                           "already run, or expired): plan again")
        if planned.identity != s.identity:
            raise _Refusal(f"plan {visible(msg.plan_id)} was made by {planned.identity.name}, not you")
        plan = planned.plan
        self._check(s, plan.kind)
        if plan.force_protected:
            self._check(s, "protected")
        unknown = set(msg.options) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"unknown run option(s): {', '.join(sorted(visible(u) for u in unknown))}")
        options = RunOptions(**msg.options)
        del self._plans[msg.plan_id]
        if msg.ticket is not None:  # typed at confirmation, after the plan was made
            plan.ticket = visible(msg.ticket.strip())[:200] or None
        who = s.identity.name
        runner = Runner(self.ctx, plan, options, operator=who, journal=Journal(self.site.name, operator=who),
                        locks=Locks(self.site.name, owner=who))
        sj = _ServiceJob(self.board.add(plan, runner), s.identity, {s.id})
        earlier = runner.progress_callback

        def progressed(prog: NodeProgress) -> None:
            if earlier is not None:
                earlier(prog)
            self._tell(sj, p.Progress(plan_id=plan.id, node=prog.to_json()))

        runner.progress_callback = progressed
        self._jobs[plan.id] = sj
        sj.task = asyncio.create_task(self._run_job(sj), name=f"service-run-{plan.id}")
        return {"plan_id": plan.id, "operator": who}

    async def _run_job(self, sj: _ServiceJob) -> None:
        job = sj.job
        try:
            job.result = await job.runner.run()
        except Exception as exc:  # noqa: BLE001 - LockError and the like: the run never started
            sj.error = job.error = visible(str(exc))
        finally:
            job.ended = self.board.clock()
            sj.ended.set()
            self.board.sync()
        result = job.result
        self._tell(sj, p.JobEnded(plan_id=job.plan.id, ok=bool(result is not None and result.ok),
                                  summary=result.summary() if result is not None else f"error: {sj.error}",
                                  result=result.to_json() if result is not None else None, error=sj.error))

    def _tell(self, sj: _ServiceJob, msg: p._Msg) -> None:
        for sid in list(sj.followers):
            s = self._sessions.get(sid)
            if s is None:
                sj.followers.discard(sid)
            else:
                self._send(s, msg)

    def _job(self, plan_id: str) -> _ServiceJob:
        sj = self._jobs.get(plan_id)
        if sj is None:
            raise _Refusal(f"no job {visible(plan_id)} in this service")
        return sj

    def _cancel(self, s: _Session, msg: p.Cancel) -> dict[str, Any]:
        sj = self._job(msg.plan_id)
        if sj.identity.name != s.identity.name and s.identity.role != "admin":
            raise _Refusal(f"job {visible(msg.plan_id)} is {sj.identity.name}'s: only they or an admin may cancel it")
        if not sj.ended.is_set():
            sj.job.runner.cancel(msg.rollback, reason=f"cancelled by {s.identity.name}")
        return {"plan_id": msg.plan_id, "ended": sj.ended.is_set()}

    def _follow(self, s: _Session, msg: p.Follow) -> dict[str, Any]:
        self._check(s, "watch")
        sj = self._job(msg.plan_id)
        job = sj.job
        if not sj.ended.is_set():
            sj.followers.add(s.id)
        return {"plan_id": msg.plan_id, "plan": _plan_json(job.plan), "operator": sj.identity.name,
                "cancelled": job.runner.cancelled, "aborting": job.runner.aborting,
                "ended": sj.ended.is_set(), "nodes": [prog.to_json() for prog in job.runner.progress.values()],
                "summary": job.result.summary() if job.result is not None else None,
                "ok": bool(job.result is not None and job.result.ok),
                "result": job.result.to_json() if job.result is not None else None, "error": sj.error}


def _plan_json(plan: Plan) -> dict[str, Any]:
    """``plan.to_json()`` with each skipped node's skip kind (a client rebuilds the Plan from it)."""
    out = plan.to_json()
    kinds = {n.node: str(n.skip.kind) for n in plan.nodes if n.skip is not None}
    for node in out["nodes"]:
        if node["node"] in kinds:
            node["skip_kind"] = kinds[node["node"]]
    return out


class _Refusal(Exception):
    """A request the service will not do (the text says why)."""
