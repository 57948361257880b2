"""``serve`` (the site service) and the client side of every command when one runs.

``fleet-console --site S serve [--listen HOST:PORT --operators FILE]`` runs the site's
service (:class:`console.service.server.SiteService`) until SIGTERM/SIGINT; ``--listen``
adds the SSH front door (:mod:`console.service.sshfront`).  When the site's provisioner
is ``ipxe`` with a ``listen`` address, the service also serves its boot scripts
(:func:`console.provision.bootserve.serve`, as ``serve-boot`` does) until it stops; a
simulated site's lab serves them itself.  The startup lines say which.

Every other command asks :func:`find_service` first: when a service for the site runs
(or ``$FLEET_SERVICE`` names one), the TUI and the headless ``status``, ``power``,
``pxe`` and ``reimage`` are its clients, and say so (``via service (pid N)`` on stderr,
the TUI's subtitle); when none runs they work as before, embedded, and say that too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import site as sites
from console.cli.commands import dump_json, selected_nodes
from console.errors import FleetError
from console.text import visible

if TYPE_CHECKING:  # the protocol's models take a while to build: loaded when a service answers
    from console.service import protocol as p

__all__ = ["add_serve_command", "cmd_serve", "cmd_who", "find_service", "mode_for", "Found", "say_mode",
           "status_via_service", "act_via_service"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: how long ``status`` waits for the service to have polled every selected node once
FIRST_SWEEP_S = 60.0

#: (socket path, token, welcome) of a running service
Found = tuple[Path, "str | None", "p.Welcome"]


def _err(text: str) -> None:
    try:
        print(visible(text, newlines=True), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def find_service(site_name: str) -> Found | None:
    """The running service of ``site_name``, or None (embedded mode).  FleetError when one
    runs but refuses us (another protocol version, a token it does not know)."""
    from console.service.address import may_run

    if not may_run(site_name):
        return None
    from console.service.client import service_for

    return service_for(site_name)


def mode_for(args: argparse.Namespace, served: bool) -> Found | None:
    """The running service when this command is served by it (said on stderr either way)."""
    name = sites.load(args.site).name
    found = find_service(name)
    if not served:  # a command the service does not serve: say so only when one runs
        if found is not None:
            _err(f"fleet-console: embedded (the site service, pid {found[2].pid}, does not serve {args.command} yet)")
        return None
    say_mode(found, name)
    return found


def say_mode(found: Found | None, site: str = "") -> str:
    """``via service (pid N)`` or ``embedded``, on stderr for a command."""
    mode = f"via service (pid {found[2].pid})" if found is not None else "embedded"
    if found is None and site:
        _err(f"fleet-console: embedded (no site service runs for {site})")
        return mode
    who = f" as {found[2].identity.name} ({found[2].identity.role})" if found is not None else ""
    _err(f"fleet-console: {mode}{who}")
    return mode


# ----------------------------------------------------------------- serve
def add_serve_command(sub: Any) -> None:
    sv = sub.add_parser("serve", help="run the site service: one poller, the actions and the journal for every "
                                      "console of the site (SSH with --listen)")
    sv.add_argument("--listen", metavar="HOST:PORT", help="also serve operators over SSH here (e.g. 127.0.0.1:2222)")
    sv.add_argument("--operators", metavar="FILE", help="with --listen: the operators file (names, roles, keys)")
    sv.set_defaults(func=cmd_serve)
    who = sub.add_parser("who", help="who is connected to the site service: role, since, locks held, running jobs")
    who.add_argument("--json", action="store_true")
    who.set_defaults(func=cmd_who)


def cmd_who(args: argparse.Namespace) -> int:
    """``who``: the service's sessions (an error when no service runs for the site)."""
    import time

    from console.service import protocol as p
    from console.service.client import ServiceClient, ServiceGone, ServiceRefused

    found = find_service(sites.load(args.site).name)
    if found is None:
        _err(f"fleet-console: error: no site service runs for {args.site} (start one: fleet-console --site "
             f"{args.site} serve)")
        return EXIT_USAGE
    say_mode(found)

    async def ask() -> list[dict[str, Any]]:
        client = ServiceClient(found[0], token=found[1], client="who")
        await client.connect()
        try:
            data = await client.request(p.Who(id=0))
        finally:
            await client.close()
        return [x for x in data.get("sessions", []) if x.get("client") != "who"]

    try:
        sessions = asyncio.run(ask())
    except (ServiceGone, ServiceRefused) as exc:
        _err(f"fleet-console: error: {exc}")
        return EXIT_FAIL
    if args.json:
        dump_json(sessions)
        return EXIT_OK
    from console.cli.commands import _print_table
    from inventory.ranges import compress

    now = time.time()
    rows = [[str(x.get("name")), str(x.get("role")), str(x.get("via")), str(x.get("client")),
             f"{int(now - float(x.get('since') or now))} s", compress(x.get("locks") or []) or "-",
             ", ".join(x.get("jobs") or []) or "-", compress(x.get("consoles") or []) or "-"] for x in sessions]
    _print_table(rows, ["OPERATOR", "ROLE", "VIA", "CLIENT", "CONNECTED", "LOCKS", "JOBS", "CONSOLES"])
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from console.cli.main import open_site

    if args.listen and not args.operators:
        _err("fleet-console: error: --listen needs --operators FILE (who may log in, with which key and role)")
        return EXIT_USAGE
    if args.operators and not args.listen:
        _err("fleet-console: error: --operators is for --listen HOST:PORT")
        return EXIT_USAGE
    with open_site(args.site) as ctx:
        return asyncio.run(_serve(ctx, args))


class _BootLines:
    """The boot server's output (one line per request) to stderr; ``ready`` once it listens."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()

    def write(self, text: str) -> int:
        if "serving boot scripts" in text:
            self.ready.set()
            text = "boot server: " + text
        try:
            sys.stderr.write(text)
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


#: how long the boot server may take to listen before the service says it does not
BOOT_START_S = 10.0


async def _start_boot_server(ctx: Any) -> tuple[asyncio.Task[None] | None, asyncio.Event]:
    """The site's iPXE boot server in this loop when the site asks for one (``provisioner.listen``),
    with a startup line either way; (its task or None, what stops it).  A boot server that
    cannot start is said, and the service runs on without it."""
    from console.provision.bootserve import BootServeError, listen_of, serve

    stop = asyncio.Event()
    site = ctx.site
    prov = site.provisioner
    if prov is None or prov.kind != "ipxe":
        _err(f"boot server: none here (provisioner {prov.kind if prov else 'none'})")
        return None, stop
    if site.lab is not None:
        _err(f"boot server: the lab serves the boot scripts at {visible(prov.url or '?')}")
        return None, stop
    if not prov.listen:
        _err("boot server: not in this service (no provisioner.listen; provisioner.url is served elsewhere, "
             "e.g. by serve-boot)")
        return None, stop
    try:
        host, port = listen_of(site)
    except BootServeError as exc:
        _err(f"boot server: NOT serving: {exc}")
        return None, stop
    lines = _BootLines()
    task = asyncio.create_task(serve(site, host, port, stop=stop, out=lines), name="service-boot-server")  # type: ignore[arg-type]
    ready = asyncio.create_task(lines.ready.wait())
    try:
        await asyncio.wait({task, ready}, timeout=BOOT_START_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if task.done():
        failure = task.exception()
        _err(f"boot server: NOT serving: {visible(str(failure)) if failure else 'it stopped'}")
        return None, stop
    if not lines.ready.is_set():
        _err(f"boot server: not listening after {BOOT_START_S:g} s; still trying")
    return task, stop


async def _stop_boot_server(task: asyncio.Task[None] | None, stop: asyncio.Event) -> None:
    stop.set()
    if task is None:
        return
    try:
        await asyncio.wait_for(task, 10.0)
    except TimeoutError:
        task.cancel()
    except Exception as exc:  # noqa: BLE001 - it is stopping: say why it failed, then go on
        _err(f"boot server: {visible(str(exc))}")
    else:
        _err("boot server stopped")


async def _serve(ctx: Any, args: argparse.Namespace) -> int:
    from console.ops.journal import state_dir
    from console.service.server import SiteService

    service = SiteService(ctx)
    await service.start()
    front = None
    boot: asyncio.Task[None] | None = None
    boot_stop = asyncio.Event()
    try:
        boot, boot_stop = await _start_boot_server(ctx)
        if args.listen:
            try:
                from console.service.sshfront import SshFront
            except ImportError as exc:
                raise FleetError(f"the SSH front door is not available: {exc}") from None
            front = SshFront(service, args.listen, Path(args.operators), state_dir() / ctx.site.name / "ssh",
                             site=args.site)
            await front.start()
            _err(f"SSH front door on {args.listen.rsplit(':', 1)[0]}:{front.bound_port}")
        _err(f"site service for {ctx.site.name} on {service.socket_path} (pid {service.pid}); "
             "SIGTERM or Ctrl-C stops it")
        await service.run_until_stopped(on_sighup=front.reload if front is not None else None)
    finally:
        if front is not None:
            await front.stop(service.stopping or "the service stopped")
        await service.stop(service.stopping or "the service stopped")
        await _stop_boot_server(boot, boot_stop)
    _err(f"site service stopped: {service.stopping}")
    return EXIT_OK


# ----------------------------------------------------------------- status
def status_via_service(args: argparse.Namespace, found: Found) -> int:
    """``status`` from the service's live state (its first sweep awaited, bounded)."""
    from console.live.fleet import Fleet
    from console.service import protocol as p
    from console.service.client import ServiceClient, apply_states

    site = sites.load(args.site)
    names = selected_nodes(site, args.range)
    fleet = Fleet(site)

    async def run() -> None:
        client = ServiceClient(found[0], token=found[1], client="status")
        done = asyncio.Event()

        def states(msg: p.States) -> None:
            apply_states(fleet, msg)
            if all(fleet.nodes[n].power_at is not None for n in names):  # each one polled once at least
                done.set()

        client.on_states = states
        await client.connect()
        try:
            await client.request(p.Subscribe(id=0))
            try:
                await asyncio.wait_for(done.wait(), FIRST_SWEEP_S)
            except TimeoutError:
                _err(f"fleet-console: the service has not polled every node in {FIRST_SWEEP_S:g} s: "
                     "showing what it knows")
        finally:
            await client.close()

    asyncio.run(run())
    from console.cli.commands import print_status

    return print_status(fleet, names, [fleet.record(n) for n in names], as_json=args.json)


# ----------------------------------------------------------------- actions
def act_via_service(args: argparse.Namespace, found: Found) -> int:
    """``power``/``pxe``/``reimage`` planned and run in the service; progress followed here.

    Ctrl-C here stops following, not the run: it goes on in the service (``jobs``); the
    service's roles decide, and its refusal is printed as it said it."""
    from console.cli.act_commands import refuse_unconfirmed
    from console.ops.options import RunOptions
    from console.service import protocol as p
    from console.service.client import ServiceClient, ServiceGone, ServiceRefused

    site = sites.load(args.site)
    names = selected_nodes(site, args.range)
    kind = args.command
    request = p.PlanAction(id=0, kind=kind, names=names, power_action=getattr(args, "power_action", None),
                           image=getattr(args, "image", None), ticket=args.ticket,
                           force_protected=args.force_protected, force=getattr(args, "force", False),
                           timeout=args.timeout, power_timeout=args.power_timeout,
                           soft_timeout=getattr(args, "soft_timeout", 300.0),
                           hard_after=getattr(args, "hard_after", None))
    opts = RunOptions.from_args(args)
    options = {k: (str(v) if k == "on_cancel" and v is not None else v)
               for k, v in vars(opts).items() if k != "reimage_timeouts"}

    async def run() -> int:
        client = ServiceClient(found[0], token=found[1], client=kind)
        ended = asyncio.Event()
        result: dict[str, Any] = {}
        last: dict[str, str] = {}

        def progress(msg: p.Progress) -> None:
            node = msg.node
            phase = f"{node.get('phase')}" + (f": {node.get('error')}" if node.get("error") else "")
            if last.get(node.get("node", "")) != phase:
                last[node.get("node", "")] = phase
                _err(f"  {node.get('node')}: {phase}")

        def job_ended(msg: p.JobEnded) -> None:
            result.update(msg.model_dump())
            ended.set()

        client.on_progress = progress
        client.on_job_ended = job_ended
        await client.connect()
        try:
            made = await client.request(request)
            plan = made["plan"]
            text = made["text"]
            if args.json and (args.dry_run or not _targets(plan)):
                dump_json({"plan": plan, "dry_run": bool(args.dry_run)})
            elif args.json:
                _err(text)
            else:
                print(visible(text, newlines=True), flush=True)
            if args.dry_run:
                _err("dry run: nothing done")
                return EXIT_OK
            if _targets(plan) and not args.yes:
                refused = await asyncio.to_thread(refuse_unconfirmed, plan["action"],
                                                  [str(t["node"]) for t in _targets(plan)])
                if refused is not None:
                    return refused
            await client.request(p.RunPlan(id=0, plan_id=plan["id"], options=options))
            _err(f"plan {plan['id']} runs in the site service; a dropped connection does not stop it")
            try:
                await ended.wait()
            except asyncio.CancelledError:
                raise
            if args.json and result.get("result") is not None:
                dump_json(result["result"])
            _err(f"{plan['action']}: {result.get('summary')} (plan {plan['id']}; "
                 f"`fleet-console --site {args.site} activity` shows the journal)")
            if not _targets(plan):
                return EXIT_FAIL if any(not _nothing(n) for n in plan["nodes"] if n.get("skip")) else EXIT_OK
            return EXIT_OK if result.get("ok") else EXIT_FAIL
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except ServiceRefused as exc:
        _err(f"fleet-console: error: {exc}")
        return EXIT_USAGE
    except ServiceGone as exc:
        _err(f"fleet-console: error: {exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        _err("stopped following; the run goes on in the site service")
        return 130


def _targets(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in plan.get("nodes", []) if not n.get("skip")]


def _nothing(node: dict[str, Any]) -> bool:
    return str(node.get("skip") or "").startswith("already")
