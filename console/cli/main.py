"""``fleet-console``: the command line.  The TUI is the default command.

    fleet-console --site S                 the operator console (TUI)
    fleet-console --site S validate        check a site file, one-line summary
    fleet-console [--site demo] lab        run the simulated lab in the foreground
    fleet-console --site S power ACTION RANGE | pxe RANGE | reimage RANGE --image N@V
                                           act on nodes (plan, confirm, journal)
    fleet-console --site S activity        the activity journal
    fleet-console --site S console NODE    attach to a node's serial console (--log: its log)
    fleet-console --site S audit [RANGE]   image audit: desired, assigned, running (exit 1: not all ok)
    fleet-console --site S timeline NODE   a node's story: events, console, image changes, actions
    fleet-console --site S serve-boot      serve the site's iPXE boot scripts
    fleet-console schema                   every site-file field, as Markdown
    fleet-console init NAME [PATH]         write a starting site file

Global options (``--site``, ``--read-only``, ``--debug``) go before or after the
command.

Exit status: 0 ok, 1 a failure talking to the fleet or lab, 2 bad input (site
file, selection, arguments), 141 stdout's reader went away (``| head``).  Errors are one clear message each, never a
traceback (set FLEET_CONSOLE_DEBUG=1 to see one for a bug report).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import logging.handlers
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from console import site as sites
from console.errors import FleetError, InventoryError, LabError, SecretError, SelectionError, SiteNotFound
from console.libwarnings import silence_library_warnings
from console.secrets import Secrets
from console.site import SiteContext
from console.text import visible
from inventory.model import Site

__all__ = ["main", "build_parser", "SiteContext", "open_site"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: 128 + SIGPIPE: what a shell reports for a tool whose reader went away (``| head``)
EXIT_PIPE = 141


def _start_lab(site: Site, *, ephemeral: bool, time_scale: float = 1.0):
    from console.lab.lab import Lab

    lab = Lab(site, ephemeral=ephemeral, time_scale=time_scale)
    try:
        lab.start()
    except LabError as exc:
        text = str(exc)
        busy = any(sign in text for sign in ("Address already in use", "Errno 98", "Permission denied", "Errno 13"))
        if ephemeral or not busy:
            raise
        # standard ports are taken or need root: fall back to ephemeral ones
        lab = Lab(site, ephemeral=True, time_scale=time_scale)
        lab.start()
    return lab


@contextlib.contextmanager
def open_site(name: str, *, need_lab: bool = True) -> Iterator[SiteContext]:
    """Load a site; for a simulated site use its running lab, or start one for our lifetime."""
    site = sites.load(name)
    if site.lab is None or not need_lab:
        yield SiteContext(site, Secrets())
        return
    from console.lab.lab import apply_endpoints
    from console.lab.state import read_state, write_login_file
    from inventory.loader import load_site

    state = read_state(site.name)
    if state is not None:
        served = load_site(state["site_file"])
        yield SiteContext(apply_endpoints(served, state["endpoints"]), Secrets(lab=state.secrets), lab_state=state)
        return
    # A few seconds for the demo (the TUI's screen would stay blank meanwhile): say why.
    _say(f"starting the lab for site {site.name} ({len(site.nodes)} simulated machines, "
         f"{len(site.switches)} switches) ...")
    lab = _start_lab(site, ephemeral=False)
    try:
        write_login_file(lab)
        yield SiteContext(lab.effective_site(), Secrets(lab=lab.secrets), lab=lab)
    finally:
        lab.stop()


def _say(text: str) -> None:
    """A progress line on stderr (never in the way of stdout's answer; a closed stderr is no error)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# ----------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    path = sites.find_site(args.site)
    from inventory.loader import load_site

    site = load_site(path)
    warnings = site.warnings()
    if args.json:
        print(json.dumps({
            "site": site.name, "file": str(path), "racks": len(site.racks), "nodes": len(site.nodes),
            "switches": len(site.switches), "images": len(site.images), "ok": True,
            "warnings": [{"file": w.file, "line": w.line, "column": w.column, "field": w.field, "reason": w.reason,
                          "nodes": w.nodes, "count": w.count, "message": w.message} for w in warnings],
        }))
    else:
        print(f"{path}: ok: {site.summary()}")
        for w in warnings:
            print(w, file=sys.stderr)
    return EXIT_FAIL if warnings and args.strict else EXIT_OK


def cmd_lab(args: argparse.Namespace) -> int:
    from console.lab import scale
    from console.lab.lab import apply_endpoints
    from console.lab.state import read_state, write_login_file, write_state

    if args.nodes:
        # A site of its own (lab-1000-ipmi): never the demo's name, whose lab other
        # commands would then take for the demo.
        try:
            site_file = str(scale.write_scaled_site(args.nodes, protocol=args.protocol))
        except ValueError as exc:
            print(f"fleet-console: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        site = sites.load(site_file)
        use = site.name  # found by name while its lab runs (console.site)
    else:
        site_file = str(sites.find_site(args.site))
        site = sites.load(site_file)
        use = args.site
    if site.lab is None:
        raise LabError(f"site {site.name} has no 'lab:' section: it is a real site, not a simulated one")
    running = read_state(site.name)
    if running is not None:
        raise LabError(f"a lab for site {site.name} is already running (pid {running['pid']})")
    print(f"starting the lab for site {site.name}: {len(site.nodes)} machines, {len(site.switches)} switches ...",
          flush=True)
    lab = _start_lab(site, ephemeral=args.ephemeral, time_scale=args.time_scale)
    stop = threading.Event()
    try:
        write_state(lab, site_file)
        write_login_file(lab)
        pwfile = lab.lab_dir / "bmc.password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(lab.secrets["bmc"] + "\n")
        effective = apply_endpoints(site, lab.endpoints)
        _print_endpoints(effective, lab, pwfile, args.json, use)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            dead = [p for p in lab._procs if p.proc.poll() is not None]
            if dead:
                print(f"fleet-console: error: lab worker {dead[0].index} exited", file=sys.stderr)
                return EXIT_FAIL
    finally:
        print("stopping the lab ...", file=sys.stderr, flush=True)
        lab.stop()
    return EXIT_OK


def _print_endpoints(site: Site, lab, pwfile: Path, as_json: bool, use: str) -> None:
    eps = lab.endpoints
    if as_json:
        print(json.dumps({
            "site": site.name,
            "nodes": [{"name": n.name,
                       "bmc": {"protocol": n.bmc.protocol, "address": n.bmc.address, "port": n.bmc.port,
                               "scheme": n.bmc.scheme if n.bmc.protocol == "redfish" else None},
                       "host": n.host, "ssh_port": n.ssh_port} for n in site.nodes],
            "switches": [{"name": s.name, "address": s.address, "port": s.port, "snmp": s.snmp.version}
                         for s in site.switches],
            "provisioner": eps["provisioner_url"],
            "boot_root": eps["boot_root"],
            "bmc_user": "admin",
            "bmc_password_file": str(pwfile),
            "secrets_file": str(lab.lab_dir / "secrets.json"),
        }), flush=True)
        return
    print(f"{'NODE':<22} {'BMC':<36} {'HOST (ssh)':<22}")
    for n in site.nodes:
        b = n.bmc
        bmc = f"{b.protocol} {b.scheme + '://' if b.protocol == 'redfish' else ''}{b.address}:{b.port}"
        print(f"{n.name:<22} {bmc:<36} {n.host}:{n.ssh_port}")
    print()
    for s in site.switches:
        auth = "v2c" if s.snmp.version == "2c" else f"v3 authPriv user {s.snmp.username}"
        print(f"switch {s.name:<16} snmp {s.address}:{s.port} ({auth})")
    if site.provisioner is not None and site.provisioner.kind == "drp":
        print(f"provisioner (DRP stand-in API): {eps['provisioner_url']}/api/v3   token lab:drp")
        if eps.get("boot_url"):
            print(f"boot server: {eps['boot_url']}")
    else:
        print(f"provisioner (iPXE over HTTP): {eps['provisioner_url']}/boot/<mac>.ipxe"
              f"   root {eps['boot_root']}")
    print(f"\nBMC user admin; password in {pwfile} (mode 0600); all lab secrets in {lab.lab_dir / 'secrets.json'}")
    login = lab.lab_dir / 'login.password'
    print(f"hosts' consoles and SSH: user {site.ssh.username}; password in {login} (mode 0600)")
    first_ipmi = next((n for n in site.nodes if n.bmc.protocol == "ipmi"), None)
    first_rf = next((n for n in site.nodes if n.bmc.protocol == "redfish"), None)
    first_sw = next(iter(site.switches), None)
    print("try:")
    if first_ipmi:
        print(f"  ipmitool -I lanplus -C 3 -H {first_ipmi.bmc.address} -p {first_ipmi.bmc.port}"
              f" -U admin -f {pwfile} power status")
    if first_rf:
        print(f"  curl -sk -u admin:$(cat {pwfile})"
              f" {first_rf.bmc.scheme}://{first_rf.bmc.address}:{first_rf.bmc.port}/redfish/v1/Systems")
    if first_sw and first_sw.snmp.version == "2c":
        community = f"$(python3 -c 'import json;print(json.load(open(\"{lab.lab_dir / 'secrets.json'}\"))[\"snmp\"])')"
        print(f"  snmpwalk -v2c -c {community} {first_sw.address}:{first_sw.port} 1.3.6.1.2.1.31.1.1.1.1")
    print(f"other commands use this lab with --site {use} (fleet-console --site {use} status)")
    print("lab running; Ctrl-C stops it", flush=True)


def _live(fn):
    """Wrap a headless read command: open the site (and its lab), then run it."""

    def run(args: argparse.Namespace) -> int:
        expr = getattr(args, "range", None) or getattr(args, "node", None)
        if expr:  # a bad selection is caught before any lab starts
            from console.cli.commands import selected_nodes

            selected_nodes(sites.load(args.site), expr)
        from console.cli.serve_cmd import mode_for

        served = getattr(args, "via_service", None)
        found = mode_for(args, served is not None)
        if found is not None and served is not None:
            return served(args, found)
        with open_site(args.site) as ctx:
            return fn(args, ctx)

    return run


READ_ONLY_ENV = "FLEET_CONSOLE_READ_ONLY"


def read_only_reason(args: argparse.Namespace, site: Site) -> str | None:
    """Why this console may only look, or None when it may act.

    ``--read-only``; ``$FLEET_CONSOLE_READ_ONLY`` set to anything but 0/false/no/off (a jump
    host's default: unset it, or set it to 0, to act; a value it does not know fails safe);
    the site file's ``read_only: true`` (policy: only editing the site file lifts it, no
    option does).
    """
    if getattr(args, "read_only", False):
        return "--read-only was given"
    value = os.environ.get(READ_ONLY_ENV, "").strip().lower()
    if value not in ("", "0", "false", "no", "off"):  # anything else, even a typo, means read-only
        return f"{READ_ONLY_ENV}={visible(value)} is set"
    if site.read_only:
        return f"site {site.name} is read-only (read_only: true in its site file)"
    return None


def cmd_tui(args: argparse.Namespace) -> int:
    from console.cli.serve_cmd import find_service
    from screens.app import run_app

    found = find_service(sites.load(args.site).name)
    if found is not None:  # a client of the site's service: its poller, its state
        import functools

        from console.service.client import ServicePollSource

        with open_site(args.site, need_lab=False) as ctx:
            return run_app(ctx, read_only=read_only_reason(args, ctx.site) is not None,
                           poller=functools.partial(ServicePollSource, path=found[0], token=found[1]),
                           mode=f"via service (pid {found[2].pid})", operator=found[2].identity.name)
    with open_site(args.site) as ctx:
        return run_app(ctx, read_only=read_only_reason(args, ctx.site) is not None)


# ----------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="fleet-console",
        description="Terminal operator console for a data-center fleet (IPMI, Redfish, SNMP). "
                    "Without a COMMAND it opens the console (the TUI): fleet-console --site demo. "
                    "No COMMAND opens the console: each prints its answer and exits (lab and "
                    "serve-boot run until Ctrl-C).",
        epilog="Global options may also follow the command (fleet-console status --site demo). "
               "New site: fleet-console init NAME, then fleet-console --site NAME validate; "
               "every field: fleet-console schema.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("validate", help="check a site file and print a one-line summary (and warnings)")
    v.add_argument("--json", action="store_true")
    v.add_argument("--strict", action="store_true",
                   help="exit 1 when there are warnings (a BMC password over plain HTTP or unverified TLS)")
    v.set_defaults(func=cmd_validate)

    lab = sub.add_parser("lab", help="run the simulated lab in the foreground and print its endpoints")
    lab.add_argument("--nodes", type=int, default=0,
                     help="serve a generated site of N machines instead, named lab-N-PROTOCOL (benchmarks)")
    lab.add_argument("--protocol", choices=["ipmi", "redfish", "mixed"], default="mixed",
                     help="with --nodes: BMC protocol of the generated machines")
    lab.add_argument("--ephemeral", action="store_true", help="bind ephemeral ports instead of the standard ones")
    lab.add_argument("--time-scale", type=float, default=1.0, help="multiply simulated delays (0.1 = 10x faster)")
    lab.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    lab.set_defaults(func=cmd_lab, default_site="demo")

    from console.cli import commands

    st = sub.add_parser("status", help="live state of every node (or of RANGE)")
    st.add_argument("range", nargs="?", help="node selection, e.g. dal1-r02-n[01-10] or rack=r03")
    st.add_argument("--json", action="store_true", help="stable JSON records for scripts")
    st.add_argument("--timeout", type=float, default=5.0, help="seconds per BMC request")
    from console.cli.serve_cmd import status_via_service

    st.set_defaults(func=_live(commands.cmd_status), via_service=status_via_service)

    sw = sub.add_parser("switches", help="switches, ports, the node on each port, miscabling findings")
    sw.add_argument("--json", action="store_true")
    sw.add_argument("--timeout", type=float, default=5.0)
    sw.set_defaults(func=_live(commands.cmd_switches))

    for name, fn, text in (("sensors", commands.cmd_sensors, "sensors of one node, failing first"),
                           ("events", commands.cmd_events, "event log (SEL) of one node")):
        c = sub.add_parser(name, help=text)
        c.add_argument("node")
        c.add_argument("--json", action="store_true")
        c.add_argument("--timeout", type=float, default=5.0)
        c.set_defaults(func=_live(fn))

    _add_action_commands(sub)
    _add_site_commands(sub)

    from console.cli.serve_cmd import add_serve_command

    add_serve_command(sub)

    from console.cli.console_cmd import add_console_command

    add_console_command(sub)

    from console.cli.audit_cmd import add_audit_command

    add_audit_command(sub)

    from console.cli.timeline_cmd import add_timeline_command

    add_timeline_command(sub)

    for command in sub.choices.values():  # fleet-console status --site demo works too
        _add_global_options(command, after_command=True)
    p.set_defaults(func=cmd_tui)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fleet-console")
    except PackageNotFoundError:
        return "(not installed)"


def _add_global_options(p: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """--site, --read-only, --debug: on the main parser, and again on each command's
    with no default (SUPPRESS), so a value given after the command wins and an absent
    one leaves what came before it."""
    given: dict[str, Any] = {"default": argparse.SUPPRESS} if after_command else {}
    site_default: dict[str, Any] = given or {"default": os.environ.get("FLEET_CONSOLE_SITE")}
    p.add_argument("--site", **site_default,
                   help="site name (searched in $FLEET_CONSOLE_SITES, ~/.config/fleet-console/sites, "
                        "/etc/fleet-console/sites) or path to a site YAML file; 'demo' is built in")
    p.add_argument("--read-only", action="store_true", **given,
                   help=f"a console that cannot act on the fleet: power, pxe and reimage refuse (exit 2); "
                        f"also when {READ_ONLY_ENV}=1 or the site file says read_only: true")
    p.add_argument("--debug", action="store_true", **given,
                   help=f"log everything to the log file, each BMC request too (or set {LOG_LEVEL_ENV}=INFO)")


def _add_site_commands(sub) -> None:
    """serve-boot (the site's iPXE boot server), schema (the site-file reference), init (a new site file)."""
    sb = sub.add_parser("serve-boot", help="serve the site's iPXE boot scripts (provisioner.root) over HTTP",
                        description="Serve provisioner.root's per-MAC iPXE scripts on provisioner.listen "
                                    "(default: provisioner.url's host:port), log every request, and keep the "
                                    "fetch list a reimage reads at provisioner.url/fetches. Runs until Ctrl-C.")
    sb.add_argument("--listen", metavar="HOST:PORT", help="bind here instead (port 0: any free port)")
    sb.add_argument("--dnsmasq", metavar="SUBNET",
                    help="print a dnsmasq proxy-DHCP snippet that chainloads iPXE to these scripts "
                         "for machines on SUBNET (e.g. 10.3.1.0/24), and exit")
    sb.set_defaults(func=cmd_serve_boot)

    sc = sub.add_parser("schema", help="every site-file field with its type, default and meaning (Markdown)")
    sc.set_defaults(func=cmd_schema, needs_site=False)

    it = sub.add_parser("init", help="write a starting site file (an annotated example) and validate it",
                        description="Write an annotated starting site file for site NAME (0600; directories "
                                    "made 0700), refusing to overwrite one. Default PATH: "
                                    "$XDG_CONFIG_HOME/fleet-console/sites/NAME.yaml, where --site NAME finds it.")
    it.add_argument("name", metavar="NAME", nargs="?", help="the new site's name (default: --site)")
    it.add_argument("path", metavar="PATH", nargs="?", help="file to write")
    it.set_defaults(func=cmd_init, needs_site=False)


def cmd_serve_boot(args: argparse.Namespace) -> int:
    from console.provision import bootserve

    site = sites.load(args.site)
    try:
        if args.dnsmasq:
            print(bootserve.dnsmasq_snippet(site, args.dnsmasq), end="")
            return EXIT_OK
        bootserve.listen_of(site, args.listen)
    except bootserve.BootServeError as exc:
        print(visible(f"fleet-console: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    return bootserve.run(site, args.listen)


def cmd_schema(args: argparse.Namespace) -> int:
    from console.cli.sitedoc import reference

    print(reference(), end="")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from console.cli.sitedoc import InitError, init_site

    name = args.name or args.site
    if not name:
        print("fleet-console: error: init needs the new site's NAME (fleet-console init NAME [PATH])", file=sys.stderr)
        return EXIT_USAGE
    try:
        path = init_site(name, args.path)
    except InitError as exc:
        print(visible(f"fleet-console: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    site = sites.load(str(path))  # validated, and refused (naming why) where others could change it
    print(f"wrote {path} (mode 0600): {site.summary()}")
    print(f"edit it, then: fleet-console --site {path if args.path else name} validate")
    return EXIT_OK


def _action(fn):
    """Wrap an action command: check selection, image and options before any lab starts."""

    def run(args: argparse.Namespace) -> int:
        from console.cli import act_commands
        from console.ops.actions import PlanError

        why = read_only_reason(args, sites.load(args.site))
        if why is not None:  # before the selection, the plan and any lab: nothing is touched
            print(visible(f"fleet-console: error: refusing to {args.command}: read-only ({why})"), file=sys.stderr)
            return EXIT_USAGE
        try:
            act_commands.precheck(args)
        except PlanError as exc:
            print(visible(f"fleet-console: error: {exc}"), file=sys.stderr)
            return EXIT_USAGE
        from console.cli.serve_cmd import act_via_service, mode_for

        found = mode_for(args, True)
        if found is not None:  # planned and run in the site service: it outlives this terminal
            return act_via_service(args, found)
        with open_site(args.site) as ctx:
            return fn(args, ctx)

    return run


def _add_action_commands(sub) -> None:
    """power, pxe, reimage (plans, confirmation, journal) and activity (the journal)."""
    from console.cli import act_commands as ac

    pw = sub.add_parser("power", help="power on/off/soft/cycle/reset nodes (plan, confirm, act, verify)")
    pw.add_argument("power_action", choices=["on", "off", "soft", "cycle", "reset"],
                    metavar="{on,off,soft,cycle,reset}",
                    help="on; off (hard); soft (ACPI shutdown); cycle; reset (warm)")
    ac.add_action_options(pw)
    pw.add_argument("--soft-timeout", type=float, default=300.0,
                    help="soft: seconds to wait for the OS to power off before failing (default 300)")
    pw.add_argument("--hard-after", type=float, default=None, metavar="SECONDS",
                    help="soft: after SECONDS still on, force the power off instead of failing")
    pw.set_defaults(func=_action(ac.cmd_power))

    px = sub.add_parser("pxe", help="PXE reboot: boot override PXE once (read back), then reset or power on")
    ac.add_action_options(px)
    px.set_defaults(func=_action(ac.cmd_pxe))

    ri = sub.add_parser("reimage", help="install an image through the site's provisioner")
    ac.add_action_options(ri)
    ri.add_argument("--image", required=True, metavar="NAME@VERSION", help="an image from the site's catalog")
    ri.add_argument("--force", action="store_true",
                    help="reinstall nodes that already run the image (skipped as 'already running' otherwise)")
    ri.set_defaults(func=_action(ac.cmd_reimage))

    act = sub.add_parser("activity", help="the activity journal (every action step), newest last")
    act.add_argument("--node", help="only this node's entries")
    act.add_argument("--limit", type=int, default=50, help="last N entries (0: all; default 50)")
    act.add_argument("--json", action="store_true")
    act.set_defaults(func=ac.cmd_activity)


LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
LOG_LEVEL_ENV = "FLEET_CONSOLE_LOG_LEVEL"
#: libraries that log a line per request at INFO (~50 KB a minute while polling): WARNING unless asked
CHATTY_LOGGERS = ("httpx", "httpcore", "console.drivers.redfish_http.requests", "pyghmi", "asyncssh", "pysnmp",
                  "aiohttp.access")


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that is the user's alone: created 0600, never through a symbolic link."""

    def _open(self):
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.baseFilename, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(f"{self.baseFilename} is a symbolic link: not following it") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise OSError(f"{self.baseFilename} is not a regular file of ours")
            if st.st_mode & 0o077:  # ours, opened without following a link: an older version made it 0644
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)


def _private_dir(path: Path) -> None:
    """Make ``path`` a directory of ours, mode 0700 (created so, or tightened if ours); OSError otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise OSError(f"{path} belongs to uid {st.st_uid}, not to us")
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _log_level(debug: bool) -> tuple[int, int]:
    """(our level, the chatty libraries' level) from ``--debug`` and ``$FLEET_CONSOLE_LOG_LEVEL``."""
    if debug:
        return logging.DEBUG, logging.DEBUG
    name = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    level = logging.getLevelNamesMapping().get(name) if name else None
    if level is None:
        if name:
            print(f"fleet-console: warning: {LOG_LEVEL_ENV}={name[:20]!r} is not a log level "
                  f"(DEBUG, INFO, WARNING, ERROR); using INFO", file=sys.stderr)
        return logging.INFO, logging.WARNING
    return level, level


def _setup_logging(debug: bool = False) -> None:
    """Log to a file under the XDG state dir, never to the terminal (tracebacks belong in the log).

    ``fleet-console.log`` in a 0700 directory, 0600, rotated at 5 MB with 3 kept.
    The libraries' per-request lines are left out unless ``--debug`` or
    ``$FLEET_CONSOLE_LOG_LEVEL`` asks for them.
    """
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "fleet-console"
    ours, chatty = _log_level(debug)
    try:
        _private_dir(base)
        handler: logging.Handler = PrivateRotatingFileHandler(
            base / "fleet-console.log", maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    except OSError as exc:
        print(f"fleet-console: warning: not writing a log file: {exc.strerror or exc}"
              + (f": {exc.filename}" if getattr(exc, "filename", None) else ""), file=sys.stderr)
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(ours)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command, map errors to a message and an exit status."""
    def terminate(*_):  # SIGTERM unwinds like Ctrl-C, so every BMC session is logged out
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    silence_library_warnings()  # before anything imports asyncssh
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(debug=args.debug)
    if not args.site and getattr(args, "needs_site", True):
        default = getattr(args, "default_site", None)
        if default is None:
            parser.error("--site is required (a site name or a path to a site YAML file; try --site demo)")
        args.site = default
    try:
        code = args.func(args)
    except InventoryError as exc:
        for problem in exc.problems:
            print(visible(f"{problem}"), file=sys.stderr)
        n = len(exc.problems)
        print(f"fleet-console: {n} problem{'s' if n != 1 else ''} in the site file", file=sys.stderr)
        code = EXIT_USAGE
    except (SiteNotFound, SelectionError) as exc:
        print(visible(f"fleet-console: error: {exc}"), file=sys.stderr)
        code = EXIT_USAGE
    except (FleetError, SecretError) as exc:
        print(visible(f"fleet-console: error: {exc}"), file=sys.stderr)
        code = EXIT_FAIL
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = _stdout_gone()
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if os.environ.get("FLEET_CONSOLE_DEBUG"):
            raise
        print(visible(f"fleet-console: internal error: {type(exc).__name__}: {exc} "
                      f"(set FLEET_CONSOLE_DEBUG=1 for a traceback)"), file=sys.stderr)
        code = EXIT_FAIL
    try:
        sys.stdout.flush()  # here, not in the interpreter's exit, where it would print a traceback
    except BrokenPipeError:
        code = _stdout_gone()
    sys.exit(code)


def _stdout_gone() -> int:
    """stdout's reader went away (``| head -1``): end quietly, as a tool killed by SIGPIPE.

    As the Python documentation (``signal``, "Note on SIGPIPE") advises: point stdout at
    /dev/null so that the interpreter's last flush of what is still buffered does not
    fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_PIPE


if __name__ == "__main__":
    main()
