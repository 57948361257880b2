"""The Activity screen: this site's action journal, one row per plan, newest at the bottom, live.

The journal (:func:`console.ops.journal.read_entries`, the newest ``LIMIT`` entries) is
read as a log is: oldest first, newest last, as ``fleet-console activity`` prints it,
and the cursor starts on the newest.  Each plan is one row (its action, its nodes,
how many of them ended ok, failed, skipped or were cancelled, its operator and its
start); ``enter`` opens it into its steps, one row each, and closes it again.
Entries without a plan are rows of their own.

Once a second the screen looks at the journal file's size and modification time and
re-reads it only when they changed, so an action running in this console, in
another operator's, or from the CLI shows up within a second; a cursor on the
newest row follows what arrives, as ``tail -f`` does.  ``/`` filters: every word
typed must appear in the entry's node, action, step, result, operator or ticket
(``r02 failed`` = failed steps on r02 nodes); the plans with a match are shown open,
with the matching steps only.  The columns fit the width whole (:func:`screens.fit.fit`);
the lines under the table say the highlighted plan or step in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from console.ops.journal import journal_path, read_entries
from console.text import visible
from screens.appref import FleetAppMixin
from screens.common import outside, short_time
from screens.fit import SCROLLBAR, Col, fit
from screens.footer import KeyFooter
from screens.table import HabitDataTable

__all__ = ["ActivityScreen", "COLUMNS", "LIMIT", "PlanGroup", "entry_matches", "group_entries"]

#: the newest entries shown
LIMIT = 2000
#: the columns; RESULT (the result, and a step's error) takes the room the others leave
COLUMNS = (
    Col("time", "TIME UTC", 14, 8, "TIME"),
    Col("operator", "OPERATOR", 10, 8),
    Col("action", "ACTION", 26),  # as wide as the longest action shown (with its ▸), at most this
    Col("node", "NODE", None),
    Col("ticket", "TICKET", 10),
    Col("result", "RESULT", 6),
)
ACTION_MAX = 26
#: what gives way first while RESULT has less than :data:`RESULT_WANT` cells
FIT_STEPS = (("drop", ("ticket",)), ("compact", ("time", "operator")))
RESULT_WANT = 30
#: the fields a filter word is looked for in
FILTER_FIELDS = ("node", "action", "step", "result", "operator", "ticket")
RESULT_STYLE = {"ok": "green", "failed": "bold red", "cancelled": "magenta", "skipped": "yellow", "started": "dim"}
#: a result's symbol (as the progress screen shows a node's outcome)
RESULT_SYMBOL = {"ok": "✓", "failed": "✗", "cancelled": "⊘", "skipped": "-", "started": "▶"}
#: the order a plan's counts are said in
COUNT_ORDER = ("running", "ok", "failed", "cancelled", "skipped")
#: a closed and an open plan row
CLOSED, OPEN = "▸", "▾"


def entry_matches(entry: dict[str, Any], words: list[str]) -> bool:
    """True when every (lower-case) word appears in one of the entry's filter fields."""
    hay = " ".join(str(entry.get(k) or "") for k in FILTER_FIELDS).lower()
    return all(w in hay for w in words)


@dataclass
class PlanGroup:
    """One plan's entries (or one entry without a plan), oldest first."""

    key: str
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first(self) -> dict[str, Any]:
        return self.entries[0]

    def nodes(self) -> list[str]:
        """The nodes its entries name, in the order they first appear."""
        return list(dict.fromkeys(str(e["node"]) for e in self.entries if e.get("node")))

    def counts(self) -> dict[str, int]:
        """Nodes by how they stand: their last result (``running`` while only started)."""
        last: dict[str, str] = {}
        for e in self.entries:
            if e.get("node"):
                last[str(e["node"])] = str(e.get("result") or "")
        out = {word: 0 for word in COUNT_ORDER}
        for result in last.values():
            word = "running" if result == "started" else result
            out[word] = out.get(word, 0) + 1
        return {word: n for word, n in out.items() if n}

    def ended(self) -> bool:
        """Its summary entry was written (a plan without one is running, or its console died)."""
        return any(e.get("step") == "summary" for e in self.entries) or not self.first.get("plan")


def group_entries(entries: list[dict[str, Any]]) -> list[PlanGroup]:
    """Entries (oldest first) grouped by plan, the groups in the order their plans started."""
    groups: dict[str, PlanGroup] = {}
    for i, e in enumerate(entries):
        plan = e.get("plan")
        key = f"plan:{visible(plan)}" if plan else f"entry:{i}:{ActivityScreen.entry_key(e)}"
        groups.setdefault(key, PlanGroup(key)).entries.append(e)
    return list(groups.values())


def counts_text(counts: dict[str, int], room: int) -> Text:
    """``2 ok, 1 failed, 1 skipped`` in ``room`` cells, else ``✓2 ✗1 -1`` (the symbols'
    result words); each count in its result's colour."""
    words = [(f"{n} {word}", word) for word, n in counts.items()]
    if sum(len(w) + 2 for w, _ in words) - 2 > room:
        words = [(f"{RESULT_SYMBOL.get(word, '▶' if word == 'running' else '?')}{n}", word)
                 for word, n in counts.items()]
        sep = " "
    else:
        sep = ", "
    text = Text()
    for i, (w, word) in enumerate(words):
        if i:
            text.append(sep)
        text.append(w, style=RESULT_STYLE.get(word, "bold"))
    return text


class PlanTable(HabitDataTable):
    """The journal's table: ``enter`` (in the footer too) opens or closes the plan under the cursor."""

    BINDINGS = [Binding("enter", "select_cursor", "Open/close plan")]


class ActivityScreen(FleetAppMixin, Screen):
    """The journal of this site, a row per plan, newest last; ``enter`` opens a plan,
    ``/`` filters, escape clears the filter or goes back."""

    CSS_PATH = "activity.tcss"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]
    #: ``l`` opens this screen: it does nothing here (the footer leaves it out)
    INERT_APP_ACTIONS = frozenset({"activity"})

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []  # oldest first, newest last
        self.groups: list[PlanGroup] = []
        #: the rows shown: row key -> (group, entry or None for the plan's own row)
        self.rows: dict[str, tuple[PlanGroup, dict[str, Any] | None]] = {}
        #: the plans opened with enter
        self.expanded: set[str] = set()
        self.filter_text = ""
        self._stamp: tuple[int, int] | None = None
        self._columns_for: tuple | None = None
        self._result_width = RESULT_WANT
        self._width = 80

    @property
    def site_name(self) -> str:
        return self.console.ctx.site.name

    @property
    def shown(self) -> list[dict[str, Any]]:
        """The entries of the step rows shown (open plans'), in row order."""
        return [entry for _, entry in self.rows.values() if entry is not None]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        yield Input(placeholder="filter: words in node, action, step, result, operator, ticket", id="filter")
        yield PlanTable(id="activity")
        yield Static("", id="entry")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self._columns(self.console.size.width)
        self.reload(force=True)
        self.set_interval(1.0, self.reload)
        table = self.query_one("#activity", DataTable)
        if table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)  # the newest, as a log's tail
        table.focus()

    def _columns(self, width: int | None = None) -> bool:
        """Set the columns for ``width`` cells (None: the same width, the journal changed);
        True when they changed (the rows must be refilled)."""
        if width is not None:
            self._width = width
        names = max((len(n.name) for n in self.console.ctx.site.nodes), default=8)
        actions = max((len(str(e.get("action") or "")) + 2 for e in self.entries), default=0)
        action = max(len("ACTION"), min(ACTION_MAX, actions))
        table_columns = tuple(Col(c.key, c.label, action) if c.key == "action" else c for c in COLUMNS)
        columns = fit(table_columns, FIT_STEPS, max(30, self._width - SCROLLBAR), min(24, max(8, names)),
                      RESULT_WANT)
        if columns == self._columns_for:
            return False
        self._columns_for = columns
        self._result_width = columns[-1][2]
        table = self.query_one("#activity", DataTable)
        table.clear(columns=True)
        for key, label, size in columns:
            table.add_column(label, key=key, width=size)
        return True

    def on_resize(self, event: events.Resize) -> None:
        table = self.query_one("#activity", DataTable)
        keep, at_end = self._cursor_key(), table.cursor_row >= table.row_count - 1
        if self._columns(event.size.width):
            self._fill(keep, at_end)

    # ------------------------------------------------------------ data
    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = journal_path(self.site_name).stat()
        except (FileNotFoundError, ValueError):
            return None
        return (st.st_size, st.st_mtime_ns)

    def reload(self, force: bool = False) -> None:
        """Re-read the journal if it changed since the last read (or always, with ``force``)."""
        stamp = self._file_stamp()
        if not force and stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            entries = read_entries(self.site_name, limit=LIMIT)
        except OSError as exc:  # unreadable journal: say so, keep what is shown
            self.query_one("#summary", Static).update(outside(f"cannot read the journal: {exc}", "bold red"))
            return
        table = self.query_one("#activity", DataTable)
        keep, at_end = self._cursor_key(), table.cursor_row >= table.row_count - 1
        self.entries = entries
        self.groups = group_entries(entries)
        self._columns()  # a longer action may widen ACTION (the rows go with the columns)
        self._fill(keep, at_end)

    def _fill(self, keep: str | None = None, at_end: bool | None = None) -> None:
        """Rebuild the rows (the journal, the filter or an open plan changed); the cursor keeps
        its row (``keep``, else the one under it now), or stays on the last one when it was
        there (``at_end``: new entries come in under it)."""
        table = self.query_one("#activity", DataTable)
        if keep is None:
            keep = self._cursor_key()
        if at_end is None:
            at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        words = self.filter_text.lower().split()
        rows: dict[str, tuple[PlanGroup, dict[str, Any] | None]] = {}
        matched = 0
        for group in self.groups:
            steps = [e for e in group.entries if entry_matches(e, words)] if words else group.entries
            if words and not steps:
                continue
            matched += len(steps)
            rows[group.key] = (group, None)
            if words or group.key in self.expanded:
                seen: dict[str, int] = {}
                for e in steps:
                    key = f"{group.key}|{self.entry_key(e)}"
                    n = seen[key] = seen.get(key, 0) + 1
                    rows[key if n == 1 else f"{key}#{n}"] = (group, e)
        self.rows = rows
        with self.console.batch_update():
            table.clear()
            for key, (group, entry) in rows.items():
                table.add_row(*self._cells(group, entry), key=key)
            if rows:
                if keep is not None and keep in table.rows and not (at_end and not words):
                    table.move_cursor(row=table.get_row_index(keep), animate=False)
                else:
                    table.move_cursor(row=len(rows) - 1, animate=False)
        total = len(self.entries)
        plans = sum(1 for g in self.groups if g.first.get("plan"))
        summary = f"activity of site {self.site_name}, newest last: {plans} plans, {total} entries"
        if total >= LIMIT:
            summary += f" (the newest {LIMIT})"
        if self.filter_text:
            summary += f"; filter: {self.filter_text} ({matched} match)"
        if not total:
            summary += f"  (nothing journalled yet: {journal_path(self.site_name)})"
        self.query_one("#summary", Static).update(outside(summary))  # the filter typed is echoed: not markup
        self._show_entry()

    @staticmethod
    def entry_key(e: dict[str, Any]) -> str:
        # entries have no id; time+plan+node+step+result is unique in practice (a repeat gets #n),
        # and stays the same while new entries arrive, so the cursor keeps its entry
        return "|".join(str(e.get(k) or "") for k in ("time", "plan", "node", "step", "result"))

    def _time(self, e: dict[str, Any]) -> Text:
        stamp = short_time(e.get("time"), "")
        narrow = self._columns_for is not None and self._columns_for[0][2] < 14
        return outside(stamp[-8:] if narrow else stamp)

    def _cells(self, group: PlanGroup, e: dict[str, Any] | None) -> list[Text]:
        """A plan's row (``e`` None) or one of its steps'; every field is the journal file's
        text: shown as text, never as markup."""
        shown = [key for key, _, _ in self._columns_for or ()]
        if e is None:
            first = group.first
            nodes = group.nodes()
            opened = group.key in self.expanded or bool(self.filter_text.split())
            action = outside(f"{OPEN if opened else CLOSED} {first.get('action') or ''}", "bold")
            node = outside(nodes[0]) if len(nodes) == 1 else Text(f"{len(nodes)} nodes" if nodes else "-")
            counts = group.counts()
            if group.ended():
                result = counts_text(counts, self._result_width) if counts else Text("-", style="dim")
            else:
                result = Text("▶ running", style="bold")
                if counts:
                    result.append("  ")
                    result.append_text(counts_text(counts, self._result_width - 11))
            cells = {"time": self._time(first), "operator": outside(first.get("operator") or ""),
                     "action": action, "node": node, "ticket": outside(first.get("ticket") or ""), "result": result}
        else:
            word = str(e.get("result") or "")
            result = Text(f"{RESULT_SYMBOL.get(word, '·')} ", style=RESULT_STYLE.get(word, ""))
            result.append(visible(word))
            if e.get("error"):
                result.append(f": {visible(e['error'])}", style="red" if word == "failed" else "")
            cells = {"time": self._time(e), "operator": Text(""),
                     "action": outside(f"  {e.get('step') or ''}"), "node": outside(e.get("node") or "-"),
                     "ticket": Text(""), "result": result}
        return [cells[key] for key in shown]

    def _cursor_key(self) -> str | None:
        table = self.query_one("#activity", DataTable)
        if not table.row_count:
            return None
        value = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if value is None else str(value)

    def cursor_row(self) -> tuple[PlanGroup, dict[str, Any] | None] | None:
        """(the plan, the step or None for the plan's own row) under the cursor."""
        key = self._cursor_key()
        return self.rows.get(key) if key is not None else None

    @on(DataTable.RowHighlighted, "#activity")
    def _highlighted(self) -> None:
        self._show_entry()

    def _show_entry(self) -> None:
        """The highlighted plan or step in full under the table."""
        box = self.query_one("#entry", Static)
        row = self.cursor_row()
        if row is None:
            box.update("")
            return
        group, e = row
        if e is None:
            box.update(self._plan_text(group))
            return
        text = outside(f"{e.get('time') or ''}  {e.get('operator') or ''}  {e.get('action') or ''}  "
                       f"{e.get('node') or '-'}  {e.get('step') or ''}  ")
        result = e.get("result") or ""
        text.append(visible(result), style=RESULT_STYLE.get(result, ""))
        if e.get("ticket"):
            text.append(f"  ticket {visible(e['ticket'])}")
        if e.get("plan"):
            text.append(f"  plan {visible(e['plan'])}", style="dim")
        if e.get("error"):
            text.append(f"\nerror: {visible(e['error'])}", style="red")
        if e.get("detail"):
            text.append(f"\n{visible(e['detail'], newlines=True)}", style="dim")
        box.update(text)

    def _plan_text(self, group: PlanGroup) -> Text:
        """A plan in words: what, by whom, when, on which nodes, how they stand."""
        first = group.first
        text = outside(f"{first.get('action') or ''}", "bold")
        text.append(f"  by {visible(first.get('operator') or '?')}  {visible(short_time(first.get('time'), '?'))}")
        if group.entries[-1] is not first:
            text.append(f" to {visible(short_time(group.entries[-1].get('time'), '?')[-8:])}")
        if first.get("ticket"):
            text.append(f"  ticket {visible(first['ticket'])}")
        if first.get("plan"):
            text.append(f"  plan {visible(first['plan'])}", style="dim")
        nodes = group.nodes()
        text.append(f"\n{len(nodes)} node{'s' if len(nodes) != 1 else ''}: ")
        counts = group.counts()
        text.append_text(counts_text(counts, 1000) if counts else Text("nothing yet", style="dim"))
        if not group.ended():
            text.append("  (running, or its console ended before it did)", style="bold")
        text.append(f"  ·  {len(group.entries)} entries; enter "
                    + ("closes it" if group.key in self.expanded else "opens it"), style="dim")
        failed = [e for e in group.entries if e.get("error") and e.get("result") == "failed"]
        if failed:
            e = failed[0]
            text.append(f"\n{visible(e.get('node') or '-')}: {visible(e['error'])}", style="red")
        return text

    # ------------------------------------------------------------ plans
    def action_toggle_plan(self) -> None:
        """``enter``: open the plan under the cursor into its steps, or close it (from any of its rows)."""
        row = self.cursor_row()
        if row is None:
            return
        group, _ = row
        if group.key in self.expanded:
            self.expanded.discard(group.key)
        else:
            self.expanded.add(group.key)
        table = self.query_one("#activity", DataTable)
        self._fill()
        if group.key in table.rows:  # the cursor on the plan's own row
            table.move_cursor(row=table.get_row_index(group.key), animate=False)

    @on(DataTable.RowSelected, "#activity")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_toggle_plan()

    # ------------------------------------------------------------ filter
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._fill()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one("#activity", DataTable).focus()
        if not event.value.strip():
            event.input.display = False

    def action_back(self) -> None:
        """Escape: clear the filter first, then go back."""
        box = self.query_one("#filter", Input)
        if self.filter_text or box.has_focus:
            box.value = ""
            self.filter_text = ""
            box.display = False
            self._fill()
            self.query_one("#activity", DataTable).focus()
            return
        self.console.pop_screen()
