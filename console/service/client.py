"""Clients of the site service: the connection, the probe, and the TUI's poll source.

- :func:`probe` (blocking, quick): is a service running for this site?  Its Welcome, or
  None when there is none (no socket, or a stale one); :class:`ServiceRefused` when one
  runs but refuses us (another protocol version: the message names both).
- :class:`ServiceClient`: one connection; :meth:`~ServiceClient.request` sends a request
  and waits for its reply; what the service sends unasked (states, progress, job ends,
  bye) goes to the callbacks.
- :class:`ServicePollSource`: a :class:`~console.live.source.PollSource` whose Fleet is
  fed by the service's poller (the TUI's ``poller=``): polls asked for now are forwarded.
  The TUI also asks the service through it (:meth:`~ServicePollSource.request`: plans,
  runs, cancels, jobs, who) and follows runs (:meth:`~ServicePollSource.watch`).
- :func:`plan_from_json`, :func:`progress_from_json`, :func:`result_from_json`: the
  service's plans, node progress and run results as the engine's own objects again
  (a :class:`~console.ops.actions.Plan` the confirm dialog shows, ...); ProtocolError
  when one does not have the shape they need.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import itertools
import json
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from console.errors import FleetError
from console.live.fleet import Fleet, NodeActivity
from console.live.poller import PollConfig
from console.ops.actions import NodePlan, Plan
from console.ops.leftover import Left
from console.ops.runner import NodeProgress, RunResult, StepRecord
from console.ops.steps import Skip, SkipKind, Step, StepName
from console.service import protocol as p
from console.text import visible

__all__ = ["ServiceClient", "ServiceRefused", "ServiceGone", "ServicePollSource", "probe", "service_for",
           "CONNECT_S", "REQUEST_S", "plan_from_json", "progress_from_json", "result_from_json"]

#: how long connecting and the hello may take
CONNECT_S = 5.0
#: how long an ordinary request may take (plans read every target's power: longer)
REQUEST_S = 120.0


class ServiceRefused(FleetError):
    """The service refused this client (the text says why)."""


class ServiceGone(FleetError):
    """The connection to the service ended (the text says why)."""


def probe(path: Path, *, token: str | None = None, timeout: float = 2.0) -> p.Welcome | None:
    """The Welcome of the service listening at ``path``; None when nobody listens there.

    Blocking and bounded (``timeout``).  ServiceRefused when it answers but refuses us."""
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except OSError as exc:
            raise ServiceRefused(f"cannot reach the site service at {path}: {exc.strerror or exc}") from None
        sock.sendall(p.encode(p.Hello(version=p.PROTOCOL_VERSION, client="probe", token=token, pid=os.getpid())))
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise ServiceRefused(f"the site service at {path} did not answer within {timeout:g} s") from None
            if not chunk:
                break
            buf += chunk
            if len(buf) > p.MAX_LINE:
                raise ServiceRefused("the site service sent a line over the limit")
        return _welcome(buf, path)
    finally:
        sock.close()


def _welcome(line: bytes, path: Path) -> p.Welcome:
    if not line:
        raise ServiceRefused(f"the site service at {path} closed the connection without a word")
    try:
        raw = json.loads(line)
    except ValueError:
        raise ServiceRefused(f"the site service at {path} did not speak its protocol") from None
    if isinstance(raw, dict) and raw.get("type") == "refused":
        raise ServiceRefused(f"the site service refused this client: {visible(str(raw.get('reason')))[:500]}")
    if isinstance(raw, dict) and raw.get("type") == "welcome" and raw.get("version") != p.PROTOCOL_VERSION:
        raise ServiceRefused(f"the site service speaks protocol version {visible(str(raw.get('version')))[:20]}, "
                             f"this client version {p.PROTOCOL_VERSION}")
    try:
        msg = p.decode(line)
    except p.ProtocolError as exc:
        raise ServiceRefused(f"the site service's welcome: {exc}") from None
    if not isinstance(msg, p.Welcome):
        raise ServiceRefused(f"the site service answered {msg.type}, not welcome")
    return msg


def service_for(site: str, *, environ: dict[str, str] | None = None) -> tuple[Path, str | None, p.Welcome] | None:
    """(socket path, token, welcome) of the service running for ``site``, or None (embedded mode).

    ``$FLEET_SERVICE`` / ``$FLEET_SERVICE_TOKEN`` (set for a client the SSH front door
    started) name the socket and the session; a token alone proves nothing: the service
    resolves it.  When ``$FLEET_SERVICE`` is set, no service there is an error, not a
    quiet fallback."""
    env = dict(os.environ) if environ is None else environ
    path = p.socket_path(site, environ=env)
    token = env.get(p.TOKEN_ENV) or None
    welcome = probe(path, token=token)
    if welcome is None:
        if env.get(p.SERVICE_ENV):
            raise ServiceGone(f"no site service at {path} (${p.SERVICE_ENV})")
        return None
    if welcome.site != site and not env.get(p.SERVICE_ENV):
        raise ServiceRefused(f"the service at {path} serves site {visible(welcome.site)}, not {visible(site)}")
    return path, token, welcome


class ServiceClient:
    """One connection to the service (use on one event loop)."""

    def __init__(self, path: Path, *, token: str | None = None, client: str = "cli") -> None:
        self.path = path
        self.token = token
        self.kind = client
        self.welcome: p.Welcome | None = None
        self.on_states: Callable[[p.States], None] | None = None
        self.on_progress: Callable[[p.Progress], None] | None = None
        self.on_job_ended: Callable[[p.JobEnded], None] | None = None
        self.on_gone: Callable[[str], None] | None = None
        #: why the connection ended (a Bye's reason, or what broke), None while it lasts
        self.gone: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[p.Reply]] = {}
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> p.Welcome:
        """Connect and say hello; ServiceRefused / ServiceGone when that fails."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path), limit=p.MAX_LINE), CONNECT_S)
        except (OSError, TimeoutError) as exc:
            raise ServiceGone(f"cannot reach the site service at {self.path}: {exc}") from None
        self._reader, self._writer = reader, writer
        writer.write(p.encode(p.Hello(version=p.PROTOCOL_VERSION, client=self.kind, token=self.token,
                                            pid=os.getpid())))
        try:
            line = await asyncio.wait_for(reader.readline(), CONNECT_S)
        except (TimeoutError, ValueError, ConnectionError) as exc:
            await self.close()
            raise ServiceGone(f"the site service did not welcome us: {exc or 'timed out'}") from None
        try:
            self.welcome = _welcome(line, self.path)
        except ServiceRefused:
            await self.close()
            raise
        self._task = asyncio.create_task(self._read(), name="service-client")
        return self.welcome

    async def request(self, msg: p._Msg, *, timeout: float = REQUEST_S) -> dict[str, Any]:
        """Send a request (its ``id`` is set here) and return its reply's data; ServiceRefused
        with the service's words when it said no, ServiceGone when the connection ended."""
        if self._writer is None or self.gone is not None:
            raise ServiceGone(self.gone or "not connected to the site service")
        rid = next(self._ids)
        msg.id = rid  # type: ignore[attr-defined]
        future: asyncio.Future[p.Reply] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            self._writer.write(p.encode(msg))
            await self._writer.drain()
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ServiceGone(f"the site service did not answer a {msg.type} request within {timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise ServiceGone(f"the connection to the site service broke: {exc}") from None
        finally:
            self._waiting.pop(rid, None)
        if not reply.ok:
            raise ServiceRefused(visible(reply.error or "refused"))
        return reply.data or {}

    async def _read(self) -> None:
        assert self._reader is not None
        why = "the site service closed the connection"
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except ValueError:
                    why = "the site service sent a line over the limit"
                    break
                if not line:
                    break
                try:
                    msg = p.decode(line)
                except p.ProtocolError as exc:
                    why = f"the site service sent {exc}"
                    break
                if isinstance(msg, p.Reply):
                    future = self._waiting.get(msg.id)
                    if future is not None and not future.done():
                        future.set_result(msg)
                elif isinstance(msg, p.States):
                    if self.on_states is not None:
                        self.on_states(msg)
                elif isinstance(msg, p.Progress):
                    if self.on_progress is not None:
                        self.on_progress(msg)
                elif isinstance(msg, p.JobEnded):
                    if self.on_job_ended is not None:
                        self.on_job_ended(msg)
                elif isinstance(msg, p.Bye):
                    why = visible(msg.reason)
                    break
        except (ConnectionError, OSError) as exc:
            why = f"the connection to the site service broke: {exc}"
        except p.ProtocolError as exc:  # a state that did not validate
            why = f"the site service sent {exc}"
        finally:
            self.gone = why
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ServiceGone(why))
            if self.on_gone is not None:
                with contextlib.suppress(Exception):
                    self.on_gone(why)

    async def close(self) -> None:
        if self.gone is None:
            self.gone = "closed"
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def apply_states(fleet: Fleet, msg: p.States, *, me: str | None = None) -> None:
    """A States message into ``fleet`` (validated first: ProtocolError when it does not).

    With ``me`` (the client's operator name), a run of someone else's in the service
    shows as what it is to this client, that operator's lock (``◆ locked by bob: power
    cycle``), as another console's run does in embedded mode; ``me``'s own runs show
    their phase."""
    nodes = p.node_states(msg.nodes)
    switches = p.switch_states(msg.switches)
    acts = p.activities(msg.activity)
    fleet.absorb(nodes, switches, msg.last_sweep_at)
    for name, act in acts.items():
        if me is not None and act is not None and act.kind == "job" and act.owner != me:
            act = NodeActivity("lock", act.action, act.phase, act.owner, act.plan, act.until)
        fleet.set_activity(name, act)


class ServicePollSource:
    """A :class:`~console.live.source.PollSource` fed by the site service's poller."""

    def __init__(self, site: Any, fleet: Fleet, secrets: Any, config: PollConfig, *, path: Path,
                 token: str | None = None, client: str = "tui") -> None:
        self.site = site
        self.fleet = fleet
        self.config = config
        self.path = path
        self.token = token
        self.kind = client
        self.failure: str | None = None
        #: the service's pid once connected
        self.service_pid: int | None = None
        #: set once the first snapshot is in the Fleet
        self.snapshot = asyncio.Event()
        #: who the service decided this client is (its Welcome), once connected
        self.welcome: p.Welcome | None = None
        #: plan id -> callbacks told of each Progress and JobEnded of that run (:meth:`watch`)
        self._watchers: dict[str, list[Callable[[p.Progress | p.JobEnded], None]]] = {}
        #: told once when the connection ends (its reason)
        self.on_gone: list[Callable[[str], None]] = []
        self._client: ServiceClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="service-poll-source")

    async def _run(self) -> None:
        client = ServiceClient(self.path, token=self.token, client=self.kind)

        def states(msg: p.States) -> None:
            apply_states(self.fleet, msg, me=self.welcome.identity.name if self.welcome is not None else None)
            if msg.snapshot_done:
                self.snapshot.set()

        def gone(why: str) -> None:
            if not self._closed:
                self.failure = f"site service: {why}"
            for callback in list(self.on_gone):
                with contextlib.suppress(Exception):
                    callback(why)

        def run_news(msg: p.Progress | p.JobEnded) -> None:
            for callback in list(self._watchers.get(msg.plan_id, ())):
                with contextlib.suppress(Exception):  # a broken view must not stop the reading
                    callback(msg)

        client.on_states = states
        client.on_gone = gone
        client.on_progress = run_news
        client.on_job_ended = run_news
        try:
            welcome = await client.connect()
            self.service_pid = welcome.pid
            self.welcome = welcome
            self._client = client
            await client.request(p.Subscribe(id=0))
        except (ServiceGone, ServiceRefused) as exc:
            if not self._closed:
                self.failure = f"site service: {exc}"
            await client.close()

    async def _connected(self) -> ServiceClient:
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._client is None or self.failure is not None:
            raise ServiceGone(self.failure or "not connected to the site service")
        return self._client

    async def request(self, msg: p._Msg, *, timeout: float = REQUEST_S) -> dict[str, Any]:
        """Ask the service (see :meth:`ServiceClient.request`): ServiceRefused with its
        words when it says no, ServiceGone when there is no connection."""
        client = await self._connected()
        return await client.request(msg, timeout=timeout)

    def watch(self, plan_id: str, callback: Callable[[p.Progress | p.JobEnded], None]) -> Callable[[], None]:
        """Tell ``callback`` of run ``plan_id``'s Progress and JobEnded messages (those of
        the runs this client started or follows); returns what stops it."""
        self._watchers.setdefault(plan_id, []).append(callback)

        def stop() -> None:
            callbacks = self._watchers.get(plan_id, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(plan_id, None)

        return stop

    async def poll_node_now(self, name: str, jobs: Iterable[str] = ("power",)) -> None:
        client = await self._connected()
        await client.request(p.PollNode(id=0, name=name, jobs=list(jobs)))

    async def poll_switch_now(self, name: str) -> None:
        client = await self._connected()
        await client.request(p.PollSwitch(id=0, name=name))

    async def aclose(self) -> None:
        """Disconnect (the service's poller goes on for the others)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.close()


# ---------------------------------------------------------------- the service's objects, rebuilt
def plan_from_json(raw: Any) -> Plan:
    """The :class:`Plan` a service sent (``Plan.to_json()`` with each skip's ``skip_kind``);
    ProtocolError when it does not have that shape."""
    try:
        nodes = []
        for item in raw["nodes"]:
            skip = None
            if item.get("skip") is not None:
                try:
                    kind = SkipKind(item.get("skip_kind") or SkipKind.REFUSED)
                except ValueError:
                    kind = SkipKind.REFUSED
                skip = Skip(str(item["skip"]), kind)
            steps = [Step(_step_name(s["name"]), str(s["description"])) for s in item.get("steps") or ()]
            nodes.append(NodePlan(str(item["node"]), steps, skip, rack=str(item.get("rack") or ""),
                                  switch=item.get("switch"), protocol=str(item.get("protocol") or ""),
                                  power=item.get("power"), protected=bool(item.get("protected"))))
        return Plan(str(raw["action"]), nodes, ticket=raw.get("ticket"), kind=str(raw.get("kind") or "power"),
                    power_action=raw.get("power_action"), image=raw.get("image"),
                    force_protected=bool(raw.get("force_protected")),
                    warnings=[str(w) for w in raw.get("warnings") or ()], id=str(raw["id"]),
                    created=str(raw.get("created") or ""))
    except (KeyError, TypeError, AttributeError) as exc:
        raise p.ProtocolError(f"a plan that is not one: {type(exc).__name__} {exc}") from None


def _step_name(value: Any) -> StepName:
    try:
        return StepName(value)
    except ValueError:
        return str(value)  # type: ignore[return-value]  # a step this client does not know: its name


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def progress_from_json(raw: Any) -> NodeProgress:
    """A node's :class:`NodeProgress` as the service sent it (``NodeProgress.to_json()``)."""
    try:
        left = None
        if isinstance(raw.get("left"), dict):
            fields = {k: v for k, v in raw["left"].items() if k in Left.__dataclass_fields__}
            left = Left(**fields)
        steps = [StepRecord(str(s["step"]), s["result"], s.get("detail"), float(s.get("seconds") or 0.0))
                 for s in raw.get("steps") or ()]
        return NodeProgress(str(raw["node"]), phase=str(raw.get("phase") or "planned"), detail=raw.get("detail"),
                            error=raw.get("error"), started=_time(raw.get("started")),
                            finished=_time(raw.get("finished")), steps=steps, canary=bool(raw.get("canary")),
                            left=left)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise p.ProtocolError(f"a node's progress that is not one: {type(exc).__name__} {exc}") from None


def result_from_json(raw: Any, plan: Plan) -> RunResult:
    """How a run in the service ended (``RunResult.to_json()``), over ``plan``."""
    try:
        return RunResult(plan, [progress_from_json(n) for n in raw["nodes"]], raw.get("stopped"))
    except (KeyError, TypeError) as exc:
        raise p.ProtocolError(f"a run result that is not one: {type(exc).__name__} {exc}") from None
