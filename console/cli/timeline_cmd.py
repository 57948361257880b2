"""``fleet-console --site S timeline NODE [--since 2h] [--json]``: a node's incident timeline.

One time-ordered story (:mod:`console.live.timeline`): the node's BMC event log and
its state now, polled once; its console log's story lines; its image audit history;
the operator actions the journal holds for it.  A command has no long-running poller,
so the power and health transitions a console sees as they happen are not in it; the
output says so, and names every source read and every one unavailable (and why).

Exit status: 0 the story was told (some sources may be unavailable: it says which),
1 the node's BMC could not be polled (the rest of the story is still printed),
2 bad input (node, ``--since``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from console.text import visible

__all__ = ["add_timeline_command", "cmd_timeline"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: what one poll of the node reads now
JOBS = ("power", "events", "image")


def add_timeline_command(sub) -> None:
    """The ``timeline`` subcommand."""
    t = sub.add_parser(
        "timeline", help="a node's incident timeline: BMC events, console, image changes, operator actions",
        description="One time-ordered story of NODE: its BMC event log and state now (polled once), the "
                    "story lines of its console log (markers, panics, errors, logins, the installer, reboots, "
                    "and the last lines), its image changes from the audit history, and the operator actions "
                    "in the journal. The sources read, and those unavailable, are named. The power and health "
                    "transitions the console's poller sees are on its timeline screen (T).")
    t.add_argument("node", metavar="NODE", help="the node (one name)")
    t.add_argument("--since", metavar="WHEN",
                   help="only what happened since: a duration back from now (90s, 30m, 2h, 1d) or a time "
                        "(2026-12-07T04:00:00Z)")
    t.add_argument("--json", action="store_true", help="one JSON document: now, sources, entries")
    t.add_argument("--timeout", type=float, default=5.0, help="seconds per BMC request (default 5)")
    t.set_defaults(func=cmd_timeline)


def _fail(text: str) -> None:
    try:
        print(visible(f"fleet-console: error: {text}"), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def cmd_timeline(args: argparse.Namespace) -> int:
    from console import site as sites
    from console.cli.commands import dump_json
    from console.cli.main import open_site
    from console.live.timeline import parse_since

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, time.time())
        except ValueError as exc:
            _fail(str(exc))
            return EXIT_USAGE
    if args.timeout <= 0:
        _fail("--timeout must be more than 0")
        return EXIT_USAGE
    name = _one_node(sites.load(args.site), args.node)  # before any lab starts: a bad name is exit 2
    with open_site(args.site) as ctx:
        tl, error = asyncio.run(_timeline(ctx, name, since, args.timeout))
    if args.json:
        doc = tl.as_json()
        doc["error"] = error
        dump_json(doc)
    else:
        _print(tl, error)
    return EXIT_FAIL if error else EXIT_OK


def _one_node(site, expr: str) -> str:
    from console.cli.commands import selected_nodes
    from inventory.errors import SelectionError

    names = selected_nodes(site, expr)
    if len(names) != 1:
        raise SelectionError(f"{expr!r} selects {len(names)} nodes; name exactly one")
    return names[0]


async def _timeline(ctx, name: str, since: float | None, timeout: float):
    """Poll the node once (power, events, image; and the switches, for its cabling), then
    put its story together (files read off the event loop)."""
    from console.live.fleet import Fleet
    from console.live.poller import PollConfig, Poller
    from console.live.timeline import build_timeline

    fleet = Fleet(ctx.site)
    poller = Poller(ctx.site, fleet, ctx.secrets, PollConfig(timeout=timeout, min_interval=0.0))
    try:
        await poller.sweep(JOBS, nodes=[name], switches=bool(ctx.site.switches))
    finally:
        await poller.aclose()
    st = fleet.nodes[name]
    record = fleet.record(name)
    now = {"power": st.power, "health": st.health,
           "cabling": record["switch_port"]["finding"] or "-", "image": record["image"]["state"],
           "running": st.image_running or "", "polled_at": record["polled_at"] or ""}
    error = st.error
    events_error = None
    if st.events is None:
        events_error = st.errors.get("events") or error or "not read"
    tl = await asyncio.to_thread(
        build_timeline, ctx.site.name, name, transitions=None, events=st.events, events_error=events_error,
        since=since, now=now, poller_note="polled once now: the console's poller keeps transitions as they happen")
    return tl, error


def _print(tl, error: str | None) -> None:
    from console.live.timeline import text_lines
    from console.live.words import with_symbol

    now = tl.now
    head = (f"{tl.node} now: power {with_symbol(now.get('power', '?'))}, health {with_symbol(now.get('health', '?'))}"
            f", cabling {now.get('cabling', '-')}, image {now.get('image', '?')}"
            + (f" ({now['running']})" if now.get("running") else ""))
    print(visible(head))
    if error:
        print(visible(f"  poll error: {error}"))
    print()
    lines = text_lines(tl)
    if lines:
        print("\n".join(lines))
    else:
        print("nothing to tell" + (" since then" if tl.since is not None else ""))
    print()
    read = [s for s in tl.sources if s.state != "unavailable"]
    gone = [s for s in tl.sources if s.state == "unavailable"]
    print(visible("read: " + "; ".join(s.words() for s in read)) if read else "read: nothing")
    if gone:
        print(visible("unavailable: " + "; ".join(s.words().replace(": unavailable", "") for s in gone)))
