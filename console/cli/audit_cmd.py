"""``fleet-console --site S audit [RANGE] [--json] [--csv FILE]``: the image audit.

For every node (or RANGE): the image the inventory wants, the one the provisioner
assigns, the one the node runs (read over SSH), their digests, and the node's state
(``ok``, ``drift``, ``pending``, ``unassigned``, ``unknown``, ``unmanaged``) with why,
each with the time it was read and since when it has been so (the site's audit
history, appended to on every run).  Text output lists the nodes that are not ``ok``
(``--all``: every node), grouped by state, then the images and how many nodes run
each; ``--json`` one document; ``--csv FILE`` a row per node (``-``: stdout).

Exit status: 0 every managed node is ``ok``; 1 any is not (drift, pending, unknown,
unassigned) or the fleet could not be read; 2 bad input (selection, options, a CSV
file that cannot be written).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import errno
import io
import os
import stat
import sys
import time

from console.ops.imageaudit import AuditHistory, AuditReport, NodeAudit, age_words, run_audit
from console.text import visible

__all__ = ["add_audit_command", "cmd_audit", "csv_rows"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
CSV_FIELDS = ("name", "rack", "state", "reason", "desired", "desired_sha256", "assigned", "assigned_sha256",
              "running", "running_sha256", "read_at", "since", "changed")


def add_audit_command(sub) -> None:
    """The ``audit`` subcommand."""
    a = sub.add_parser(
        "audit", help="image audit: desired vs assigned vs running image (and digest) per node; exit 1 on drift",
        description="For every node (or RANGE): the image the inventory wants, the one the provisioner assigns "
                    "and the one the node runs (over SSH, /etc/os-release), with their sha256 digests, and its "
                    "state: ok, drift, pending, unassigned, unknown (with why) or unmanaged. Each run is added "
                    "to the site's audit history, which gives every reading its 'since'. Exit 0 when every "
                    "managed node is ok, 1 otherwise, 2 on bad input: fit for cron and CI.")
    a.add_argument("range", nargs="?", help="node selection, e.g. rack=r02 or dal1-r01-n[01-10] (default: all)")
    a.add_argument("--json", action="store_true", help="one JSON document: counts, images and every node")
    a.add_argument("--csv", metavar="FILE", help="also write a CSV row per node to FILE (- for stdout)")
    a.add_argument("--all", action="store_true", help="list every node, not only those not ok")
    a.add_argument("--timeout", type=float, default=10.0, help="seconds per SSH read (default 10)")
    a.add_argument("--fanout", type=int, default=64, help="nodes read at once (default 64)")
    a.set_defaults(func=cmd_audit)


def _fail(text: str) -> None:
    try:
        print(visible(f"fleet-console: error: {text}"), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _open_csv(path: str) -> int:
    """A descriptor for the CSV file (created 0600; a symbolic link is refused, never followed;
    an existing file must be ours with one link, and is made 0600: the console runs as root,
    and a file planted by another user in a shared place must not receive the report)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"--csv {path}: a symbolic link; refused") from None
        raise ValueError(f"--csv {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "not a regular file"
    elif st.st_uid != os.geteuid():
        problem = f"owned by uid {st.st_uid}, not by you; refused"
    elif st.st_nlink != 1:
        problem = f"has {st.st_nlink} hard links; refused"
    if problem is not None:
        os.close(fd)
        raise ValueError(f"--csv {path}: {problem}")
    os.fchmod(fd, 0o600)
    return fd


def _cell(value: object) -> str:
    """A CSV cell: control characters visible, and a leading =, +, -, @ (or their full-width
    forms) quoted away so a spreadsheet does not run what a node reported as a formula."""
    text = "" if value is None else visible(str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\t", "\r") else text


def csv_rows(report: AuditReport) -> str:
    """The report as CSV text (a header, then a row per node)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for n in report.nodes:
        record = n.as_json()
        w.writerow([_cell(record[k]) for k in CSV_FIELDS])
    return out.getvalue()


def _short(ref: str | None, sha: str | None) -> str:
    if ref is None:
        return "-"
    return f"{ref} ({sha[:12]})" if sha else ref


def _print_text(report: AuditReport, show_all: bool) -> None:
    from console.cli.commands import _print_table

    now = time.time()
    nodes: list[NodeAudit] = report.nodes if show_all else report.not_ok()
    if nodes:
        rows = [[n.name, n.state, age_words(n.since, now), _short(n.desired.ref, n.desired.sha256),
                 _short(n.assigned.ref, n.assigned.sha256), _short(n.running.ref, n.running.sha256),
                 age_words(n.changed, now), n.reason] for n in nodes]
        _print_table(rows, ["NODE", "STATE", "SINCE", "DESIRED", "ASSIGNED", "RUNNING", "CHANGED", "WHY"])
        print()
    images = report.by_image()
    if images:
        _print_table([[r["image"], str(r["wanted"]), str(r["running"]), str(r["ok"]), str(r["drift"]),
                       str(r["digests"])] for r in images],
                     ["IMAGE", "WANTED", "RUNNING", "OK", "DRIFTED", "DIGESTS"])
    for note in report.notes:
        print(visible(f"note: {note}"), file=sys.stderr)
    counts = ", ".join(f"{v} {k}" for k, v in report.counts().items() if v)
    print(file=sys.stderr)
    print(visible(f"{len(report.nodes)} nodes audited in {report.finished - report.started:.1f} s: {counts}"),
          file=sys.stderr)


def cmd_audit(args: argparse.Namespace) -> int:
    from console import site as sites
    from console.cli.commands import dump_json, selected_nodes
    from console.cli.main import open_site

    if args.timeout <= 0 or args.fanout < 1:
        _fail("--timeout must be more than 0 and --fanout 1 or more")
        return EXIT_USAGE
    if args.json and args.csv == "-":
        _fail("--json and --csv - would both write to stdout: give --csv a file")
        return EXIT_USAGE
    names = selected_nodes(sites.load(args.site), args.range)  # a bad selection: exit 2, before any lab starts
    fd = None
    if args.csv and args.csv != "-":
        try:
            fd = _open_csv(args.csv)
        except ValueError as exc:
            _fail(str(exc))
            return EXIT_USAGE
    try:
        with open_site(args.site) as ctx:
            history = AuditHistory(ctx.site.name)
            report = asyncio.run(run_audit(ctx.site, ctx.secrets, None if not args.range else names,
                                           fanout=args.fanout, timeout=args.timeout, history=history))
        if args.csv:
            text = csv_rows(report)
            if fd is None:
                sys.stdout.write(text)
            else:
                os.ftruncate(fd, 0)
                data = text.encode()
                while data:
                    data = data[os.write(fd, data):]
        if args.json:
            dump_json(report.as_json())
        elif args.csv != "-":
            _print_text(report, args.all)
    finally:
        if fd is not None:
            os.close(fd)
    return report.exit_code()
