"""Headless read commands: status, switches, sensors, events (``--json`` everywhere).

Each runs one poll pass over the protocols (against the site's lab for a
simulated site), prints a table or stable JSON, and logs out of every BMC
before exiting.  Passwords never appear in any output.  What the BMCs and
switches said is printed through :func:`console.text.visible` (an ESC in a
model name or an event message reaches the terminal as ``^[``); ``--json``
keeps the exact text, escaped by JSON (:func:`dump_json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from console.live.columns import STATUS_COLUMNS
from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from console.live.records import switch_records
from console.live.words import iso, rate_text, sorted_sensors, with_symbol
from console.text import visible
from inventory.selection import select

__all__ = ["cmd_status", "cmd_switches", "cmd_sensors", "cmd_events", "selected_nodes", "dump_json"]

EXIT_OK, EXIT_FAIL = 0, 1


def selected_nodes(site, expr: str | None) -> list[str]:
    """Node names matching a selection (all when None); SelectionError on a bad one."""
    names = [n.name for n in site.nodes]
    if not expr:
        return names
    return select(expr, names, attrs=lambda n: site.node(n).attributes(), groups=site.groups)


def _config(args: argparse.Namespace) -> PollConfig:
    return PollConfig(timeout=getattr(args, "timeout", None) or 5.0, min_interval=0.0)


async def _with_poller(ctx, fn, args):
    fleet = Fleet(ctx.site)
    poller = Poller(ctx.site, fleet, ctx.secrets, _config(args))
    try:
        return await fn(poller, fleet)
    finally:
        await poller.aclose()


def dump_json(value: Any) -> None:
    """``value`` as one JSON document on stdout.  ``ensure_ascii`` writes every control
    character (and everything outside ASCII) as ``\\uXXXX``: the values keep what the
    BMC said, and no byte of the output is a control a terminal would act on."""
    json.dump(value, sys.stdout, indent=1, ensure_ascii=True)
    print()


def _print_table(rows: list[list[str]], headers: list[str]) -> None:
    """Columns padded to their widest cell; every cell is shown through :func:`visible`."""
    rows = [[visible(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())


def cmd_status(args: argparse.Namespace, ctx) -> int:
    """``status [RANGE] [--json]``: one record per node, read live."""
    names = selected_nodes(ctx.site, args.range)

    async def run(poller: Poller, fleet: Fleet) -> tuple[Fleet, list[dict[str, Any]]]:
        await poller.sweep(("power", "boot", "image"), nodes=names, switches=True)
        return fleet, [fleet.record(n) for n in names]

    fleet, records = asyncio.run(_with_poller(ctx, run, args))
    return print_status(fleet, names, records, as_json=args.json)


def print_status(fleet: Fleet, names: list[str], records: list[dict[str, Any]], *, as_json: bool) -> int:
    """``status``'s answer, embedded or from the site service: JSON records, or the fleet
    table's columns (console.live.columns) in words, their wide form; the exit status."""
    if as_json:
        dump_json(records)
    else:
        rows = [[column.cell(fleet, name, "wide").words for column in STATUS_COLUMNS] for name in names]
        _print_table(rows, [column.wide_label or column.label for column in STATUS_COLUMNS])
        bad = sum(1 for r in records if r["error"])
        print(f"\n{len(records)} nodes, {bad} with errors", file=sys.stderr)
    return EXIT_FAIL if any(r["error"] for r in records) else EXIT_OK


def cmd_switches(args: argparse.Namespace, ctx) -> int:
    """``switches [--json]``: switches, their ports, the node on each, miscabling findings."""
    if not ctx.site.switches:  # say so: an empty answer reads as a command that did nothing
        if args.json:
            dump_json([])
        else:
            print(visible(f"site {ctx.site.name} has no switches"))
        return EXIT_OK

    async def run(poller: Poller, fleet: Fleet):
        await asyncio.gather(*(poller.poll_switch(s.name) for s in ctx.site.switches))
        # a second interface read gives traffic rates
        await asyncio.sleep(1.0)
        await asyncio.gather(*(poller.poll_switch(s.name, tables=False) for s in ctx.site.switches))
        return switch_records(fleet)

    records = asyncio.run(_with_poller(ctx, run, args))
    if args.json:
        dump_json([record.as_json() for record in records])
    else:
        for sw in records:
            print(visible(f"{sw.name} {sw.address}  {sw.descr or ''}" + (f"  ERROR: {sw.error}" if sw.error else "")))
            rows = [[p.name, p.admin, p.oper, f"{p.speed_mbps // 1000}G" if p.speed_mbps >= 1000 else str(p.speed_mbps),
                     rate_text(p.in_bps), rate_text(p.out_bps), str(p.in_errors + p.out_errors),
                     p.node_seen or p.node_expected or "", p.finding or ""]
                    for p in sw.ports]
            _print_table(rows, ["  PORT", "ADMIN", "OPER", "SPEED", "IN b/s", "OUT b/s", "ERRORS", "NODE", "FINDING"])
            print()
    return EXIT_FAIL if any(s.error for s in records) else EXIT_OK


def _one_node(ctx, name: str) -> str:
    names = selected_nodes(ctx.site, name)
    if len(names) != 1:
        from inventory.errors import SelectionError

        raise SelectionError(f"{name!r} selects {len(names)} nodes; name exactly one")
    return names[0]


def _poll_one(args: argparse.Namespace, ctx, job: str):
    """Poll one job on the one node ``args.node`` names; its state, or None (error printed)."""
    name = _one_node(ctx, args.node)

    async def run(poller: Poller, fleet: Fleet):
        await poller.poll_node(name, (job,))
        return fleet.nodes[name]

    st = asyncio.run(_with_poller(ctx, run, args))
    if st.error:
        print(visible(f"fleet-console: {name}: {st.error}"), file=sys.stderr)
        return None
    return st


def cmd_sensors(args: argparse.Namespace, ctx) -> int:
    """``sensors NODE [--json]``: every sensor with thresholds, failing ones first."""
    st = _poll_one(args, ctx, "sensors")
    if st is None:
        return EXIT_FAIL
    sensors = sorted_sensors(st.sensors or [])
    if args.json:
        dump_json([{"name": s.name, "kind": s.kind, "value": s.value, "unit": s.unit, "health": s.health,
                    "thresholds": {"lower_critical": s.lower_critical, "lower_warning": s.lower_warning,
                                   "upper_warning": s.upper_warning, "upper_critical": s.upper_critical}}
                   for s in sensors])
    else:
        def fmt(v):
            return "-" if v is None else f"{v:g}"
        _print_table([[s.name, s.kind, fmt(s.value), s.unit, with_symbol(s.health),
                       f"{fmt(s.lower_critical)}/{fmt(s.lower_warning)}",
                       f"{fmt(s.upper_warning)}/{fmt(s.upper_critical)}"] for s in sensors],
                     ["SENSOR", "KIND", "VALUE", "UNIT", "HEALTH", "LOW crit/warn", "HIGH warn/crit"])
    return EXIT_OK


def cmd_events(args: argparse.Namespace, ctx) -> int:
    """``events NODE [--json]``: the event log, newest last."""
    st = _poll_one(args, ctx, "events")
    if st is None:
        return EXIT_FAIL
    events = st.events or []
    if args.json:
        dump_json([{"id": e.id, "time": iso(e.timestamp), "severity": e.severity, "sensor": e.sensor,
                    "message": e.message} for e in events])
    else:
        _print_table([[e.id, iso(e.timestamp) or "-", with_symbol(e.severity), e.sensor, e.message]
                      for e in events], ["ID", "TIME", "SEVERITY", "SENSOR", "MESSAGE"])
    return EXIT_OK
