"""``fleet-console --site S console NODE``: attach the terminal to a node's serial console.

    console NODE                    attach (IPMI SOL on the BMC, or the BMC's SSH console)
    console NODE --force            take the console over from whoever holds it, saying who
    console NODE --log [--strip-ansi | --raw] [--lines N]
                                    print the node's console log and exit (its colours
                                    kept, every other escape shown; --raw: as recorded)

Who holds a console is said before anything is taken: without ``--force`` a terminal
is asked ("held by X; take it over? [y/N]"), a script is refused (exit 1, naming the
holder).  A read-only console (``--read-only``, ``$FLEET_CONSOLE_READ_ONLY``, the
site's ``read_only: true``) watches: it shows the output and sends no key.  Every
attach, takeover and detach is journalled, so the activity log shows who touched the
console.

When a site service runs for the site (``fleet-console --site S serve``), the console
is the service's: one session per node shared by every operator, the holder named by
the service (``alice (ssh)``), its roles deciding (a viewer watches, an operator types,
only an admin takes a console over from someone else); no lab or BMC session is opened
here.

Exit status: 0 left (``~.``) or the input ended, 1 the console could not be reached,
was held, or closed under us, 2 bad input (unknown node, a node without a serial
console, options that do not go together), 128+N ended by signal N.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from console.errors import DriverError
from console.text import visible

__all__ = ["add_console_command", "cmd_console"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def add_console_command(sub) -> None:
    """The ``console`` subcommand."""
    c = sub.add_parser(
        "console", help="attach to a node's serial console (IPMI SOL or SSH); --log prints its log",
        description="Attach this terminal to NODE's serial console: raw mode, every key goes to the node. "
                    "At the start of a line: ~. leaves, ~B sends a break, ~? helps, ~~ sends a ~. "
                    "Without a terminal on stdin, lines are sent (each ending as Enter does) and the "
                    "command leaves once the input ends and the node is quiet.")
    c.add_argument("node", metavar="NODE", help="the node (one name)")
    c.add_argument("--force", action="store_true",
                   help="take the console over from whoever holds it (they are told, and only watch)")
    c.add_argument("--log", action="store_true", help="print the node's console log (oldest first) and exit")
    c.add_argument("--strip-ansi", action="store_true",
                   help="with --log: plain text, escape sequences removed, other control characters shown")
    c.add_argument("--raw", action="store_true",
                   help="with --log: the log as recorded, escape sequences included (they act on a terminal)")
    c.add_argument("--lines", type=int, metavar="N", help="with --log: only the last N lines")
    c.set_defaults(func=cmd_console)


def _fail(text: str) -> None:
    try:
        print(visible(f"fleet-console: error: {text}", newlines=True), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _say(text: str) -> None:
    try:
        print(visible(text, newlines=True), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _one_node(site, name: str) -> str:
    from console.cli.commands import selected_nodes
    from inventory.errors import SelectionError

    names = selected_nodes(site, name)  # SelectionError (exit 2) names what is unknown
    if len(names) != 1:
        raise SelectionError(f"{name!r} selects {len(names)} nodes; the console attaches to exactly one")
    return names[0]


def no_console_reason(site, name: str) -> str | None:
    """Why ``name`` has no serial console the command can reach, or None."""
    bmc = site.node(name).bmc
    if bmc.console is None and bmc.protocol == "redfish":
        return (f"{name} has no serial console: its BMC speaks Redfish and the site file gives it no "
                f"bmc.console (an SSH console, e.g. console: {{kind: ssh, port: 2200}} for OpenBMC)")
    return None


def cmd_console(args: argparse.Namespace) -> int:
    """``console NODE``: checks first (no lab is started for bad input), then attach or print the log."""
    from console import site as sites
    from console.cli.main import open_site, read_only_reason

    if not args.log and (args.strip_ansi or args.raw or args.lines is not None):
        _fail("--strip-ansi, --raw and --lines go with --log (print the console log)")
        return EXIT_USAGE
    if args.strip_ansi and args.raw:
        _fail("--strip-ansi removes escape sequences; --raw keeps them: give one")
        return EXIT_USAGE
    if args.lines is not None and args.lines < 0:
        _fail("--lines takes a number of lines, 0 or more")
        return EXIT_USAGE
    if args.log and args.force:
        _fail("--force takes a console over; --log only prints its log")
        return EXIT_USAGE
    site = sites.load(args.site)
    node = _one_node(site, args.node)
    if args.log:
        return _print_log(site.name, node, strip_ansi=args.strip_ansi, raw=args.raw, lines=args.lines)
    why = no_console_reason(site, node)
    if why is not None:
        _fail(why)
        return EXIT_USAGE
    read_only = read_only_reason(args, site)
    from console.cli.serve_cmd import find_service, say_mode

    found = find_service(site.name)
    if found is not None:
        say_mode(found)
        if found[2].identity.role == "viewer" and read_only is None:
            read_only = f"{found[2].identity.name} is a viewer in the site service"
        return asyncio.run(_attach_via_service(site.name, node, found, force=args.force, read_only=read_only))
    with open_site(args.site) as ctx:
        return asyncio.run(_attach(ctx, node, force=args.force, read_only=read_only))


def _print_log(site: str, node: str, *, strip_ansi: bool, raw: bool, lines: int | None) -> int:
    from console.serial.log import colours_only, read_log

    try:
        text = read_log(site, node, strip_ansi=strip_ansi, lines=lines)
    except FileNotFoundError:
        text = ""
    except OSError as exc:  # LogError: refused (a link, someone else's file), or unreadable: say which
        _fail(f"cannot read {node}'s console log: {exc}")
        return EXIT_FAIL
    if not text:
        _say(f"fleet-console: no console log for {node} yet (it is written while a console is attached or watched)")
        return EXIT_FAIL
    if strip_ansi:  # plain text: what escapes are left over are shown, not obeyed
        text = visible(text, newlines=True).replace("^I", "\t")
    elif not raw:  # the node's colours, nothing else that a terminal would obey (OSC 52, titles, queries)
        text = colours_only(text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def _who() -> str:
    from console.ops.journal import current_operator

    return f"{current_operator()} (pid {os.getpid()})"


async def _attach(ctx, node: str, *, force: bool, read_only: str | None) -> int:
    from console.ops.journal import Journal
    from console.serial.attach import attach_session
    from console.serial.broker import ConsoleBroker

    broker = ConsoleBroker(ctx)
    try:
        try:
            session = await broker.session(node)  # waits for the first connection attempt
        except DriverError as exc:
            _fail(str(exc))
            return EXIT_FAIL
        result = await attach_session(session, who=_who(), read_only=read_only, force=force,
                                      journal=Journal(ctx.site.name))
    finally:
        await broker.close()
    return _exit_status(result, force=force, read_only=read_only)


async def _attach_via_service(site: str, node: str, found, *, force: bool, read_only: str | None) -> int:
    """The attach on the site service's console session (its broker, its roles)."""
    from console.serial.attach import attach_session
    from console.service.consoles import RemoteConsoleBroker

    path, token, welcome = found
    broker = RemoteConsoleBroker(path, token=token, client="console")
    try:
        try:
            session = await broker.session(node)
        except DriverError as exc:
            _fail(str(exc))
            return EXIT_FAIL
        # no journal here: the service journals the attach, takeover and detach itself
        result = await attach_session(session, who=broker.me or welcome.identity.name, read_only=read_only,
                                      force=force)
    finally:
        await broker.close()
    return _exit_status(result, force=force, read_only=read_only)


def _exit_status(result, *, force: bool, read_only: str | None) -> int:
    if result.how in ("unreachable", "held"):
        hint = result.how == "held" and read_only is None and not force
        _fail(result.detail + ("; --force takes it over" if hint else ""))
        return EXIT_FAIL
    if result.how == "declined":
        _say(result.detail)
        return EXIT_FAIL
    if result.how == "signal" and result.signal is not None:
        return 128 + result.signal
    return EXIT_FAIL if result.how in ("closed", "hangup") else EXIT_OK
