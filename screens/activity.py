"""The Activity screen: this site's action journal, newest first, live.

Rows come from :func:`console.ops.journal.read_entries` (the newest ``LIMIT``).  Once a
second the screen looks at the journal file's size and modification time and
re-reads it only when they changed, so an action running in this console, in
another operator's, or from the CLI shows up within a second.  ``/`` filters:
every word typed must appear in the entry's node, action, step, result, operator
or ticket (``r02 failed`` = failed steps on r02 nodes).  The line under the table
shows the highlighted entry in full (error and detail are often longer than
their column).
"""

from __future__ import annotations

from typing import Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from console.ops.journal import journal_path, read_entries
from console.text import visible
from screens.appref import FleetAppMixin
from screens.common import outside, short_time
from screens.footer import KeyFooter
from screens.table import HabitDataTable

__all__ = ["ActivityScreen", "COLUMNS", "LIMIT", "entry_matches"]

#: the newest entries shown
LIMIT = 2000
#: (key, header, width, narrow width): the narrow widths fit up to RESULT in 80 columns
COLUMNS = (
    ("time", "TIME UTC", 14, 8),
    ("operator", "OPERATOR", 10, 9),
    ("action", "ACTION", 24, 13),
    ("node", "NODE", 15, 13),
    ("step", "STEP", 12, 11),
    ("result", "RESULT", 9, 9),
    ("error", "ERROR", 40, 40),
    ("ticket", "TICKET", 10, 10),
)
#: below this many columns the narrow widths (and a time without the date) are used
NARROW = 120
#: the fields a filter word is looked for in
FILTER_FIELDS = ("node", "action", "step", "result", "operator", "ticket")
RESULT_STYLE = {"ok": "green", "failed": "bold red", "cancelled": "magenta", "skipped": "yellow", "started": "dim"}


def entry_matches(entry: dict[str, Any], words: list[str]) -> bool:
    """True when every (lower-case) word appears in one of the entry's filter fields."""
    hay = " ".join(str(entry.get(k) or "") for k in FILTER_FIELDS).lower()
    return all(w in hay for w in words)


class ActivityScreen(FleetAppMixin, Screen):
    """The journal of this site, newest first; ``/`` filters, escape clears or goes back."""

    CSS_PATH = "activity.tcss"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []  # newest first
        self.shown: list[dict[str, Any]] = []
        self.filter_text = ""
        self._stamp: tuple[int, int] | None = None
        self._narrow: bool | None = None

    @property
    def site_name(self) -> str:
        return self.console.ctx.site.name

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        yield Input(placeholder="filter: words in node, action, step, result, operator, ticket", id="filter")
        yield HabitDataTable(id="activity")
        yield Static("", id="entry")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self._columns(self.console.size.width)
        self.reload(force=True)
        self.set_interval(1.0, self.reload)
        self.query_one("#activity", DataTable).focus()

    def _columns(self, width: int) -> bool:
        """Set the columns for ``width`` cells; True when they changed (the rows must be refilled)."""
        narrow = width < NARROW
        if narrow == self._narrow:
            return False
        self._narrow = narrow
        table = self.query_one("#activity", DataTable)
        table.clear(columns=True)
        for key, label, wide, small in COLUMNS:
            if key == "error" and not narrow:  # the error takes the room the others leave
                wide = max(wide, width - sum(c[2] + 2 for c in COLUMNS if c[0] != "error") - 4)
            table.add_column(label, key=key, width=small if narrow else wide)
        return True

    def on_resize(self, event: events.Resize) -> None:
        if self._columns(event.size.width):
            self._fill()

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
        entries.reverse()
        self.entries = entries
        self._fill()

    def _fill(self) -> None:
        """Rebuild the rows (only when the journal or the filter changed); the cursor keeps its entry."""
        table = self.query_one("#activity", DataTable)
        keep = self._cursor_key()
        words = self.filter_text.lower().split()
        self.shown = [e for e in self.entries if entry_matches(e, words)] if words else list(self.entries)
        total = len(self.entries)
        with self.console.batch_update():
            table.clear()
            seen: dict[str, int] = {}
            for e in self.shown:
                key = self._key(e)
                n = seen[key] = seen.get(key, 0) + 1
                table.add_row(*self._cells(e), key=key if n == 1 else f"{key}#{n}")
            if keep is not None and keep in table.rows:
                table.move_cursor(row=table.get_row_index(keep), animate=False)
        summary = f"activity of site {self.site_name}, newest first: {len(self.shown)}/{total} entries"
        if total >= LIMIT:
            summary += f" (the newest {LIMIT})"
        if self.filter_text:
            summary += f"  filter: {self.filter_text}"
        if not total:
            summary += f"  (nothing journalled yet: {journal_path(self.site_name)})"
        self.query_one("#summary", Static).update(outside(summary))  # the filter typed is echoed: not markup
        self._show_entry()

    @staticmethod
    def _key(e: dict[str, Any]) -> str:
        # entries have no id; time+plan+node+step+result is unique in practice (a repeat gets #n),
        # and stays the same while new entries arrive on top, so the cursor keeps its entry
        return "|".join(str(e.get(k) or "") for k in ("time", "plan", "node", "step", "result"))

    def _cells(self, e: dict[str, Any]) -> list:
        result = e.get("result") or ""
        # every field is the journal file's text: shown as text, never as markup
        return [
            outside(short_time(e.get("time"), "")[-8:] if self._narrow else short_time(e.get("time"), "")),
            outside(e.get("operator") or ""),
            outside(e.get("action") or ""),
            outside(e.get("node") or "-"),
            outside(e.get("step") or ""),
            outside(result, RESULT_STYLE.get(result, "")),
            outside(e.get("error") or "", "red" if result == "failed" else ""),
            outside(e.get("ticket") or ""),
        ]

    def _cursor_key(self) -> str | None:
        table = self.query_one("#activity", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowHighlighted, "#activity")
    def _highlighted(self) -> None:
        self._show_entry()

    def _show_entry(self) -> None:
        """The highlighted entry in full under the table."""
        table = self.query_one("#activity", DataTable)
        box = self.query_one("#entry", Static)
        if not self.shown or not table.row_count:
            box.update("")
            return
        e = self.shown[min(table.cursor_row, len(self.shown) - 1)]
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
