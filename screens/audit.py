"""The image audit screen: which images the fleet runs, what drifted, and the fix in one key.

On open (and on ``R``) it runs :func:`console.ops.imageaudit.run_audit` over the site
(bounded fan-out, each SSH read time-limited) in a worker, appending the run to the
site's audit history.  Then:

- a summary by image and version: how many nodes want it, run it, run it as they
  should, and how many of those drifted (another version wanted, or another digest);
- the nodes not ``ok``, grouped by state (drift, unknown, pending, unassigned), each
  with since when it is so, desired / running / assigned image, when its running
  version last changed (from the history: "what changed on this rack last night"),
  and why.

``m`` marks the drifted nodes that want the image the cursor's node wants (all the
drifted nodes when they want one image), ``space`` marks or unmarks the cursor's row,
``u`` unmarks all, and ``i`` hands the marked nodes to the reimage action
(:func:`screens.actions.start_action`), to the image they want: its plan and
confirmation as everywhere, forced, so a build that drifted under the same version
is reinstalled too.  ``enter`` opens node detail; escape goes back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.ops.imageaudit import STATES, AuditHistory, AuditReport, NodeAudit, age_words, run_audit
from screens.appref import FleetAppMixin
from screens.common import outside
from screens.footer import KeyFooter
from screens.table import HabitDataTable

__all__ = ["AuditScreen"]

#: state -> (symbol, style): one meaning each, as the fleet table shows them
STATE_LOOK = {"drift": ("≠", "magenta"), "unknown": ("?", "cyan"), "pending": ("…", "yellow"),
              "unassigned": ("-", "dim"), "ok": ("✓", "green"), "unmanaged": ("·", "dim")}
#: what an operator reads first comes first: at 80 columns the state, since and why show
NODE_COLUMNS = (("mark", " ", 1), ("node", "NODE", 14), ("state", "STATE", 9), ("since", "SINCE", 6),
                ("changed", "CHANGED", 7), ("why", "WHY", 56), ("running", "RUNNING", 26),
                ("desired", "DESIRED", 26), ("assigned", "ASSIGNED", 26))
IMAGE_COLUMNS = (("image", "IMAGE", 24), ("wanted", "WANTED", 6), ("running", "RUNNING", 7), ("ok", "OK", 5),
                 ("drift", "DRIFTED", 7), ("digests", "DIGESTS", 7))


def _ref(ref: str | None, sha: str | None) -> Text:
    if ref is None:
        return Text("-", style="dim")
    text = outside(ref)
    if sha:
        text.append(f" {sha[:8]}", style="dim")
    return text


class AuditScreen(FleetAppMixin, Screen):
    """The image audit: summary by image, the nodes not ok, and reimage for the drifted."""

    CSS_PATH = "audit.tcss"
    BINDINGS = [
        Binding("m", "mark_drift", "Mark drifted"),
        Binding("space", "toggle_mark", "Mark", show=False),
        Binding("u", "unmark", "Unmark", show=False),
        Binding("i", "reimage_marked", "Reimage marked"),
        Binding("R", "rerun", "Audit again"),
        Binding("enter", "open_node", "Node"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, *, audit: Callable[..., Awaitable[AuditReport]] | None = None) -> None:
        super().__init__()
        self.report: AuditReport | None = None
        self.marked: set[str] = set()
        self.running = False
        self._audit = audit or run_audit

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="audit-title")
        yield HabitDataTable(id="audit-images")
        yield Static(id="audit-nodes-title")
        yield HabitDataTable(id="audit-nodes")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = "image audit"
        images = self.query_one("#audit-images", DataTable)
        for key, label, width in IMAGE_COLUMNS:
            images.add_column(label, key=key, width=width)
        nodes = self.query_one("#audit-nodes", DataTable)
        for key, label, width in NODE_COLUMNS:
            nodes.add_column(label, key=key, width=width)
        nodes.focus()
        self.action_rerun()

    # ------------------------------------------------------------- the audit
    def action_rerun(self) -> None:
        """Audit the site again (in a worker; the screen stays usable)."""
        if self.running:
            return
        self.running = True
        site = self.console.ctx.site
        self.query_one("#audit-title", Static).update(
            Text(f"auditing {len(site.nodes)} nodes: desired, assigned and running image ..."))
        self.run_worker(self._run(), group="image-audit", exclusive=True, exit_on_error=False)

    async def _run(self) -> None:
        ctx = self.console.ctx
        done = [0]
        try:
            report = await self._audit(ctx.site, ctx.secrets, history=AuditHistory(ctx.site.name),
                                       progress=lambda n, total: done.__setitem__(0, n), clock=self.console.clock)
        except Exception as exc:  # noqa: BLE001 - said on the screen; the operator may press R again
            self.query_one("#audit-title", Static).update(outside(f"audit failed: {exc}", "bold red"))
            return
        finally:
            self.running = False
        self.show(report)

    def show(self, report: AuditReport) -> None:
        """Fill both tables from ``report``."""
        self.report = report
        self.marked &= {n.name for n in report.not_ok()}
        counts = report.counts()
        summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
        stamp = time.strftime("%H:%M:%S", time.gmtime(report.finished))
        title = Text(f"audited {len(report.nodes)} nodes at {stamp} UTC: {summary}")
        if report.exit_code() == 0:
            title.append("  ✓ every managed node runs its image", style="green")
        for note in report.notes:
            title.append("\n")
            title.append_text(outside(f"! {note}", "yellow"))
        self.query_one("#audit-title", Static).update(title)
        images = self.query_one("#audit-images", DataTable)
        images.clear()
        for r in report.by_image():
            images.add_row(outside(r["image"]), Text(str(r["wanted"])), Text(str(r["running"])), Text(str(r["ok"])),
                           Text(str(r["drift"]), style="magenta" if r["drift"] else ""),
                           Text(str(r["digests"]), style="magenta" if r["digests"] > 1 else ""), key=r["image"])
        self._fill_nodes()

    def _fill_nodes(self) -> None:
        report = self.report
        if report is None:
            return
        table = self.query_one("#audit-nodes", DataTable)
        cursor = self.cursor_node()
        table.clear()
        rows = report.not_ok()
        now = self.console.clock()
        for n in rows:
            table.add_row(*self._cells(n, now), key=n.name)
        self.query_one("#audit-nodes-title", Static).update(
            Text(f"nodes not ok: {len(rows)}" + (f", {len(self.marked)} marked" if self.marked else "")
                 + ("" if rows else " (nothing to fix)")))
        if cursor is not None and cursor in {n.name for n in rows}:
            table.move_cursor(row=table.get_row_index(cursor))

    def _cells(self, n: NodeAudit, now: float) -> tuple[Text, ...]:
        symbol, style = STATE_LOOK[n.state]
        return (Text("●" if n.name in self.marked else " ", style="bold"), outside(n.name),
                Text(f"{symbol} {n.state}", style=style), Text(age_words(n.since, now)),
                Text(age_words(n.changed, now)),
                outside(n.reason), _ref(n.running.ref, n.running.sha256), _ref(n.desired.ref, n.desired.sha256),
                _ref(n.assigned.ref, n.assigned.sha256))

    # ------------------------------------------------------------- marks and the fix
    def cursor_node(self) -> str | None:
        table = self.query_one("#audit-nodes", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - no row under the cursor
            return None
        return None if key.value is None else str(key.value)

    def _node(self, name: str | None) -> NodeAudit | None:
        if self.report is None or name is None:
            return None
        return next((n for n in self.report.nodes if n.name == name), None)

    def action_mark_drift(self) -> None:
        """Mark the drifted nodes wanting the cursor node's image (all when they want one)."""
        if self.report is None:
            return
        drift = [n for n in self.report.nodes if n.state == "drift"]
        wanted = {n.desired.ref for n in drift}
        if len(wanted) > 1:
            here = self._node(self.cursor_node())
            want = here.desired.ref if here is not None and here.state == "drift" else None
            if want is None:
                self.notify("the drifted nodes want different images: put the cursor on a drifted node "
                            "wanting the image to reimage to, then m", severity="warning")
                return
            drift = [n for n in drift if n.desired.ref == want]
        self.marked = {n.name for n in drift}
        self._fill_nodes()

    def action_toggle_mark(self) -> None:
        name = self.cursor_node()
        if name is None:
            return
        self.marked ^= {name}
        self._fill_nodes()

    def action_unmark(self) -> None:
        self.marked = set()
        self._fill_nodes()

    def action_reimage_marked(self) -> None:
        """Hand the marked nodes (else the cursor's) to reimage, to the image they want."""
        from screens.actions import start_action

        names = sorted(self.marked) or [n for n in [self.cursor_node()] if n is not None]
        nodes = [a for a in (self._node(n) for n in names) if a is not None and a.desired.ref]
        if not nodes:
            self.notify("nothing marked: m marks the drifted nodes", severity="warning")
            return
        wanted = {a.desired.ref for a in nodes}
        if len(wanted) > 1:
            self.notify(f"the marked nodes want {len(wanted)} different images; reimage one image's nodes "
                        "at a time (m on a drifted node marks those wanting its image)", severity="warning")
            return
        start_action(self.console, "reimage", choice=wanted.pop(), names=[a.name for a in nodes], source=self,
                     force=True)

    def action_started(self, names: list[str], progress: object) -> None:
        """The reimage started: its nodes are no longer marked here (the next audit shows them)."""
        self.marked -= set(names)
        self._fill_nodes()

    def action_open_node(self) -> None:
        name = self.cursor_node()
        if name is not None:
            self.console.open_node(name)

    def action_back(self) -> None:
        self.dismiss()
