"""The image audit: for every node, the image it should run, is assigned and runs.

Three readings per node, each a :class:`Reading` (``name@version``, its sha256, when
it was read, since when it has had that value, where it came from):

``desired``   the inventory's ``image`` (site, rack or node default, already resolved
              by the loader), its digest from the site's ``images`` catalog
``assigned``  what the site's provisioner holds for the node (the iPXE script, the DRP
              machine, the virtual media), its digest from the catalog
``running``   what the node reports over SSH (``/etc/os-release``: ``IMAGE_ID``,
              ``IMAGE_VERSION``, ``IMAGE_SHA256``); a node with no host address (no SSH)
              is taken to run its assignment once the provisioner saw it boot it

The state each node is in (:data:`STATES`), with a reason:

``ok``          runs the desired version, and its digest where both sides name one
``drift``       runs something else: another version, or the same one with another digest
``pending``     runs something else, but the provisioner assigns the desired image
                (the next network boot installs it)
``unassigned``  no SSH to read it and nothing assigned: nothing says what it runs
``unknown``     the running image could not be read (unreachable, refused, host key), with why
``unmanaged``   the inventory names no image for it

:func:`run_audit` reads every node with bounded fan-out (:data:`FANOUT` at once), each
read time-limited; a node's failure is its state, never an exception.
:class:`AuditHistory` keeps each run in a per-site append-only JSONL file, bounded in
size, from which every reading's "since" (when it last changed) comes.  The exit
status a command derives from a report (:meth:`AuditReport.exit_code`): 0 when every
managed node is ``ok``, else 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from console.errors import ActionError, FleetError
from console.ops.journal import state_dir
from console.provision import Assignment, ProvisionerBackend, open_provisioner
from console.secrets import Secrets
from console.trust import open_private_dir
from inventory.model import Node, Site

__all__ = [
    "age_words",
    "STATES",
    "NOT_OK",
    "FANOUT",
    "Reading",
    "NodeAudit",
    "AuditReport",
    "AuditHistory",
    "AuditError",
    "audit_node_state",
    "run_audit",
    "history_path",
    "iso",
]

#: every state, in the order a report lists them (worst first)
STATES = ("drift", "unknown", "pending", "unassigned", "ok", "unmanaged")
#: the states that fail an audit (exit 1)
NOT_OK = ("drift", "unknown", "pending", "unassigned")
#: SSH reads (and provisioner look-ups) in flight at once
FANOUT = 64
#: longest image reference kept from a node (a hostile os-release must not bloat a report)
_MAX_REF = 200


class AuditError(FleetError):
    """The audit's history file cannot be used safely (owner, mode, a link, too big)."""


def iso(t: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2026-11-27T02:10:03Z``), None stays None."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unix(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Reading:
    """One of a node's three images: ``ref`` (``name@version``, None: none or not known)."""

    ref: str | None
    sha256: str | None = None
    read_at: float | None = None  # when it was read (None: could not be)
    since: float | None = None  # when it last changed to this value (from the history)
    source: str = ""  # where it came from: "inventory", "ipxe ...", "ssh", "boot seen ..."
    error: str | None = None  # why it could not be read

    def same_image(self, other: Reading) -> bool:
        """Same ``name@version``, and the same digest where both name one."""
        if self.ref is None or self.ref != other.ref:
            return False
        return self.sha256 is None or other.sha256 is None or self.sha256 == other.sha256

    def as_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "sha256": self.sha256, "read_at": iso(self.read_at), "since": iso(self.since),
                "source": self.source, "error": self.error}


@dataclass(frozen=True)
class NodeAudit:
    """One node's audit: its three readings, its state and why."""

    name: str
    rack: str
    desired: Reading
    assigned: Reading
    running: Reading
    state: str
    reason: str
    read_at: float
    since: float | None = None  # when the state last changed (from the history)
    #: when the running version (or digest) last changed, as far as the history knows
    changed: float | None = None
    #: the last running image (ref, sha256) known, also while it cannot be read
    known: tuple[str | None, str | None] = (None, None)

    def as_json(self) -> dict[str, Any]:
        """The stable ``--json`` record."""
        return {
            "name": self.name,
            "rack": self.rack,
            "desired": self.desired.ref,
            "desired_sha256": self.desired.sha256,
            "assigned": self.assigned.ref,
            "assigned_sha256": self.assigned.sha256,
            "running": self.running.ref,
            "running_sha256": self.running.sha256,
            "state": self.state,
            "reason": self.reason,
            "read_at": iso(self.read_at),
            "since": iso(self.since),
            "changed": iso(self.changed),
            "readings": {"desired": self.desired.as_json(), "assigned": self.assigned.as_json(),
                         "running": self.running.as_json()},
        }


@dataclass
class AuditReport:
    """A whole audit: every node audited, in inventory order."""

    site: str
    started: float
    finished: float
    nodes: list[NodeAudit] = field(default_factory=list)
    #: a problem with the whole run (the provisioner could not be opened; the history not written)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Nodes per state, every state present (0 when none)."""
        c = Counter(n.state for n in self.nodes)
        return {s: c.get(s, 0) for s in STATES}

    def exit_code(self) -> int:
        """0 when every managed node is ``ok``, else 1."""
        return 1 if any(n.state in NOT_OK for n in self.nodes) else 0

    def not_ok(self) -> list[NodeAudit]:
        """The nodes not ``ok`` (nor unmanaged), grouped by state (worst first), by name within."""
        order = {s: i for i, s in enumerate(STATES)}
        return sorted((n for n in self.nodes if n.state in NOT_OK), key=lambda n: (order[n.state], n.name))

    def by_image(self) -> list[dict[str, Any]]:
        """Per ``name@version`` desired or running: how many nodes want it, run it (ok or
        not), and how many of those running it drifted (another version wanted, or another
        digest).  Sorted by image reference."""
        rows: dict[str, dict[str, Any]] = {}

        def row(ref: str) -> dict[str, Any]:
            return rows.setdefault(ref, {"image": ref, "wanted": 0, "running": 0, "ok": 0, "drift": 0,
                                         "digests": set()})

        for n in self.nodes:
            if n.desired.ref:
                row(n.desired.ref)["wanted"] += 1
            if n.running.ref:
                r = row(n.running.ref)
                r["running"] += 1
                if n.running.sha256:
                    r["digests"].add(n.running.sha256)
                if n.state == "ok":
                    r["ok"] += 1
                elif n.state in ("drift", "pending"):
                    r["drift"] += 1
        out = []
        for ref in sorted(rows):
            r = rows[ref]
            r["digests"] = len(r["digests"])
            out.append(r)
        return out

    def as_json(self) -> dict[str, Any]:
        return {"site": self.site, "started": iso(self.started), "finished": iso(self.finished),
                "counts": self.counts(), "images": self.by_image(), "notes": self.notes,
                "nodes": [n.as_json() for n in self.nodes]}


def audit_node_state(desired: Reading, assigned: Reading, running: Reading, *,
                     has_ssh: bool = True) -> tuple[str, str]:
    """(state, reason) from the three readings: see the module docstring."""
    if desired.ref is None:
        return "unmanaged", "the inventory names no image for it"
    what_assigned = (f"provisioner assigns {assigned.ref}" if assigned.ref
                     else f"provisioner: {assigned.error}" if assigned.error else "nothing assigned")
    if running.ref is None:
        if not has_ssh and assigned.ref is None and not assigned.error:
            return "unassigned", f"no SSH to read it ({running.error or 'no host'}) and nothing assigned"
        return "unknown", f"running image not read: {running.error or 'no answer'}; {what_assigned}"
    if running.same_image(desired):
        if desired.sha256 and not running.sha256:
            return "ok", "runs the desired version (the node names no digest to compare)"
        return "ok", "runs the desired image"
    if running.ref == desired.ref:
        why = f"same version, another build: sha256 {running.sha256[:12] if running.sha256 else '?'}…, " \
              f"want {desired.sha256[:12] if desired.sha256 else '?'}…"
    else:
        why = f"runs {running.ref}, want {desired.ref}"
    if assigned.same_image(desired) and assigned.ref is not None:
        return "pending", f"{why}; the provisioner assigns {desired.ref}: the next network boot installs it"
    return "drift", f"{why}; {what_assigned}"


def history_path(site: str) -> Path:
    """``$XDG_STATE_HOME/fleet-console/<site>/audit.jsonl``."""
    if not site or "/" in site or site in (".", ".."):
        raise ValueError(f"not a site name: {site!r}")
    return state_dir() / site / "audit.jsonl"


class AuditHistory:
    """A site's audit history: append-only JSONL, 0600 in a 0700 directory of ours.

    Each run appends one ``run`` line (time, nodes audited, counts) and one ``node``
    line per node whose state or readings changed since its last line (every node on
    the first run).  Past ``max_bytes`` the file is rotated (one old file kept,
    ``audit.jsonl.1``) and the new one starts with a line for every node, so "since"
    survives.  The directory and file are opened without following links and refused
    when they are someone else's or open to group or others.
    """

    FILE = "audit.jsonl"

    def __init__(self, site: str, *, path: Path | None = None, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.path = Path(path) if path is not None else history_path(site)
        self.max_bytes = max_bytes

    # ------------------------------------------------------------- files
    def _open_dir(self, *, create: bool) -> int | None:
        d = self.path.parent
        try:
            return open_private_dir(d, create=create,
                                    refused=lambda why: AuditError(f"audit history directory {why}: refused"))
        except OSError as exc:
            raise AuditError(f"cannot open {d}: {exc.strerror}") from None

    def _open_file(self, dfd: int, name: str, flags: int) -> int:
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AuditError(f"audit history {self.path.parent / name} is a symbolic link: refused") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            raise AuditError(f"audit history {self.path.parent / name} is not a 0600 file of yours: refused")
        return fd

    # ------------------------------------------------------------- reading
    def last(self) -> dict[str, dict[str, Any]]:
        """Each node's last recorded line (empty when there is no history)."""
        dfd = self._open_dir(create=False)
        if dfd is None:
            return {}
        try:
            try:
                fd = self._open_file(dfd, self.FILE, os.O_RDONLY)
            except FileNotFoundError:
                return {}
            try:
                size = os.fstat(fd).st_size
                cap = 2 * self.max_bytes  # bounded: a rotated file is never much past max_bytes
                start = max(0, size - cap)
                data = os.pread(fd, min(size, cap), start)
            finally:
                os.close(fd)
        finally:
            os.close(dfd)
        lines = data.split(b"\n")
        if start:
            lines = lines[1:]  # the first line was cut
        out: dict[str, dict[str, Any]] = {}
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue  # a torn last line
            if isinstance(entry, dict) and entry.get("kind") == "node" and isinstance(entry.get("node"), str):
                out[entry["node"]] = entry
        return out

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The last ``limit`` run lines, oldest first."""
        dfd = self._open_dir(create=False)
        if dfd is None:
            return []
        try:
            try:
                fd = self._open_file(dfd, self.FILE, os.O_RDONLY)
            except FileNotFoundError:
                return []
            try:
                size = os.fstat(fd).st_size
                data = os.pread(fd, min(size, 2 * self.max_bytes), max(0, size - 2 * self.max_bytes))
            finally:
                os.close(fd)
        finally:
            os.close(dfd)
        out = []
        for line in data.split(b"\n"):
            try:
                entry = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(entry, dict) and entry.get("kind") == "run":
                out.append(entry)
        return out[-limit:]

    # ------------------------------------------------------------- writing
    def append(self, report: AuditReport, changed: Iterable[NodeAudit]) -> None:
        """Append a run and the node lines of ``changed``; rotate past ``max_bytes``."""
        run = {"kind": "run", "time": iso(report.finished), "started": iso(report.started),
               "nodes": len(report.nodes), "counts": report.counts()}
        changed = list(changed)
        body = b"".join(_line(x) for x in [run, *(_node_line(n) for n in changed)])
        dfd = self._open_dir(create=True)
        assert dfd is not None
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)  # another audit of this site waits; closing releases it
            fd = self._open_file(dfd, self.FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                size = os.fstat(fd).st_size
                if size + len(body) <= self.max_bytes:
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        body = b"\n" + body  # a crash tore the last line: do not glue ours onto it
                    _write_all(fd, body)
                    os.fsync(fd)
                    return
            finally:
                os.close(fd)
            # rotate: the new file starts with every node's current line
            known = self.last()
            for n in changed:
                known[n.name] = _node_line(n)
            fresh = b"".join(_line(x) for x in [run, *known.values()])
            tmp = f".{self.FILE}.{os.getpid()}.tmp"
            tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dfd)
            try:
                _write_all(tfd, fresh)
                os.fsync(tfd)
            finally:
                os.close(tfd)
            os.replace(self.FILE, self.FILE + ".1", src_dir_fd=dfd, dst_dir_fd=dfd)
            os.replace(tmp, self.FILE, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n").encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _node_line(n: NodeAudit) -> dict[str, Any]:
    return {
        "kind": "node", "node": n.name, "time": iso(n.read_at), "state": n.state, "reason": n.reason,
        "desired": n.desired.ref, "desired_sha256": n.desired.sha256,
        "assigned": n.assigned.ref, "assigned_sha256": n.assigned.sha256,
        "running": n.running.ref, "running_sha256": n.running.sha256,
        "since": {"state": iso(n.since), "desired": iso(n.desired.since), "assigned": iso(n.assigned.since),
                  "running": iso(n.running.since)},
        "changed": iso(n.changed), "last_running": n.known[0], "last_running_sha256": n.known[1],
    }


def _with_since(n: NodeAudit, prev: dict[str, Any] | None) -> tuple[NodeAudit, bool]:
    """``n`` with each "since" from its last history line; True when something changed."""
    now = n.read_at
    if prev is None:
        desired = replace(n.desired, since=now)
        assigned = replace(n.assigned, since=now)
        running = replace(n.running, since=now)
        changed = None  # first seen: when it came to run this, no audit knows
        return replace(n, desired=desired, assigned=assigned, running=running, since=now, changed=changed,
                       known=(n.running.ref, n.running.sha256)), True
    psince: dict[str, Any] = prev["since"] if isinstance(prev.get("since"), dict) else {}

    def keep(key: str, r: Reading) -> Reading:
        same = prev.get(key) == r.ref and prev.get(f"{key}_sha256") == r.sha256
        return replace(r, since=(_unix(psince.get(key)) or now) if same else now)

    desired, assigned, running = keep("desired", n.desired), keep("assigned", n.assigned), keep("running", n.running)
    state_since = (_unix(psince.get("state")) or now) if prev.get("state") == n.state else now
    # the version changed: a running image read other than the last one known (an
    # unreadable node in between changes nothing)
    changed = _unix(prev.get("changed"))
    known = (prev.get("last_running"), prev.get("last_running_sha256"))
    if n.running.ref is not None:
        if (n.running.ref, n.running.sha256) != known:
            changed = now
        known = (n.running.ref, n.running.sha256)
    out = replace(n, desired=desired, assigned=assigned, running=running, since=state_since, changed=changed,
                  known=known)
    differs = (prev.get("state") != n.state or prev.get("reason") != n.reason
               or any(prev.get(k) != getattr(out, k).ref or prev.get(f"{k}_sha256") != getattr(out, k).sha256
                      for k in ("desired", "assigned", "running")))
    return out, differs


# ----------------------------------------------------------------- the audit
async def _bounded(coro, seconds: float):
    return await asyncio.wait_for(coro, seconds)


async def _assigned(prov: ProvisionerBackend | None, prov_error: str | None, site: Site, node: Node,
                    timeout: float, clock: Callable[[], float]) -> Reading:
    if prov is None:
        return Reading(None, error=prov_error or "no provisioner")
    try:
        got: Assignment | None = await _bounded(prov.assignment(node), timeout)
    except TimeoutError:
        return Reading(None, error=f"{prov.kind}: no answer in {timeout:g} s")
    except FleetError as exc:
        return Reading(None, error=f"{prov.kind}: {exc}")
    at = clock()
    if got is None or got.image is None:
        return Reading(None, read_at=at, source=f"{prov.kind}: nothing assigned (boots from disk)")
    image = site.image(got.image)
    return Reading(_cut(got.image), image.sha256 if image else None, read_at=at,
                   source=f"{prov.kind} {got.detail}".strip())


def _cut(ref: str) -> str:
    return ref if len(ref) <= _MAX_REF else ref[:_MAX_REF] + "…"


async def _running(site: Site, secrets: Secrets, node: Node, prov: ProvisionerBackend | None,
                   assigned: Reading, timeout: float, clock: Callable[[], float]) -> Reading:
    if not node.host:
        # no SSH: what the boot reported to the provisioner (it fetched its assignment)
        if prov is not None and assigned.ref is not None:
            try:
                seen = await _bounded(prov.fetches(node), timeout)
            except (TimeoutError, FleetError):
                seen = None
            ok = [f for f in seen or [] if f.status == 200]
            if ok:
                last = max(f.time for f in ok)
                return Reading(assigned.ref, assigned.sha256, read_at=clock(),
                               source=f"boot seen by the provisioner at {iso(last)}")
        return Reading(None, error="no host address in the inventory (no SSH)")
    from console.drivers.ssh import read_image  # asyncssh: only for an audit that reads nodes

    try:
        got = await _bounded(read_image(node, site.ssh, secrets, timeout=timeout), timeout + 5)
    except TimeoutError:
        return Reading(None, error=f"ssh: no answer in {timeout:g} s")
    if got.ref is None:
        return Reading(None, error=got.error or "ssh: no answer")
    return Reading(_cut(got.ref), got.sha256, read_at=clock(), source="ssh /etc/os-release")


async def run_audit(site: Site, secrets: Secrets, names: Iterable[str] | None = None, *,
                    fanout: int = FANOUT, timeout: float = 10.0, history: AuditHistory | None = None,
                    provisioner: ProvisionerBackend | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    clock: Callable[[], float] = time.time) -> AuditReport:
    """Audit ``names`` (every node when None): at most ``fanout`` nodes read at once, each
    read limited to ``timeout`` seconds.  With ``history``, each reading's "since" comes
    from it and the run is appended to it (a history that cannot be written is a note in
    the report, not a failure).  ``provisioner``: an open backend to use (else the site's
    is opened and closed here)."""
    if fanout < 1:
        raise ActionError("the audit's fan-out must be 1 or more")
    nodes = [site.node(n) for n in names] if names is not None else list(site.nodes)
    started = clock()
    report = AuditReport(site.name, started, started)
    prov, prov_error, own = provisioner, None, False
    if prov is None:
        try:
            prov, own = open_provisioner(site, secrets), True
        except FleetError as exc:
            prov_error = f"provisioner: {exc}"
            report.notes.append(prov_error)
    gate = asyncio.Semaphore(fanout)
    done = 0

    async def one(node: Node) -> NodeAudit:
        nonlocal done
        async with gate:
            at = clock()
            image = site.image(node.image) if node.image else None
            desired = Reading(node.image, image.sha256 if image else None, read_at=at, source="inventory")
            if node.image is None:
                assigned, running = Reading(None), Reading(None)
            else:
                assigned = await _assigned(prov, prov_error, site, node, timeout, clock)
                running = await _running(site, secrets, node, prov, assigned, timeout, clock)
            state, reason = audit_node_state(desired, assigned, running, has_ssh=bool(node.host))
            done += 1
            if progress is not None:
                progress(done, len(nodes))
            return NodeAudit(node.name, node.rack, desired, assigned, running, state, reason, read_at=clock())

    try:
        results = await asyncio.gather(*(one(n) for n in nodes))
    finally:
        if own and prov is not None:
            with contextlib.suppress(Exception):
                await prov.close()
    report.finished = clock()
    if history is None:
        report.nodes = list(results)
        return report
    try:
        last = history.last()
    except (AuditError, OSError) as exc:
        report.notes.append(f"audit history not read: {exc}")
        last = {}
    changed = []
    for n in results:
        updated, differs = _with_since(n, last.get(n.name))
        report.nodes.append(updated)
        if differs:
            changed.append(updated)
    try:
        history.append(report, changed)
    except (AuditError, OSError) as exc:
        report.notes.append(f"audit history not written: {exc}")
    return report


def age_words(t: float | None, now: float) -> str:
    """How long ago, for the audit's SINCE and CHANGED: ``<1m``, ``14m``, ``3h05m``, ``2d4h``;
    ``-`` when not known (the command and the screen say it alike)."""
    if t is None:
        return "-"
    s = max(0, int(now - t))
    if s < 60:
        return "<1m"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"
