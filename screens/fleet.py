"""The home screen: one row per node, a summary bar, live filter, sort and marks."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from inventory.errors import FleetError
from inventory.ranges import natural_key
from inventory.selection import select
from screens.common import FleetChanged, age_text, node_words, status_text

__all__ = ["FleetScreen"]

#: (key, label, width)
COLUMNS = (
    ("mark", " ", 1),
    ("name", "NODE", 18),
    ("rack", "RACK/U", 7),
    ("power", "POWER", 9),
    ("health", "HEALTH", 10),
    ("port", "PORT", 13),
    ("image", "IMAGE", 22),
    ("age", "AGE", 5),
    ("error", "ERROR", 30),
)


class FleetScreen(Screen):
    """Fleet table with filter (`/`), sort (click a header or `s`), marks (space, `a`)."""

    CSS_PATH = "fleet.tcss"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear", show=False),
        Binding("space", "mark", "Mark"),
        Binding("a", "mark_all", "Mark all"),
        Binding("u", "unmark_all", "Unmark", show=False),
        Binding("s", "sort_next", "Sort"),
        Binding("enter", "open_node", "Detail"),
        Binding("r", "racks", "Racks"),
        Binding("w", "switches", "Switches"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.marked: set[str] = set()
        self.shown: list[str] = []
        self.filter_text = ""
        self._sort_index = 0
        self._sort_reverse = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="banner")
        yield Static(id="summary")
        with Horizontal(id="filter-bar"):
            yield Input(placeholder="filter: name, range, rack=r01, @group, off, critical, drift, error…", id="filter")
        yield DataTable(id="fleet", cursor_type="row", zebra_stripes=True)
        yield Footer()

    @property
    def fleet(self):
        return self.app.fleet

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        self.query_one("#filter-bar").display = False
        table.focus()  # not the (hidden) filter input
        self._apply_filter("")
        self._refresh_summary()
        self.set_interval(1.0, self._tick)

    # ------------------------------------------------------------ rows
    def _cells(self, name: str) -> list:
        fleet = self.fleet
        node = fleet.site.node(name)
        st = fleet.nodes[name]
        image_state = fleet.image_state(node)
        if image_state == "drift":
            image = status_text("drift", st.image_running or "?")
        elif image_state == "ok":
            image = Text(st.image_running or "")
        elif image_state == "unmanaged":
            image = status_text("unmanaged", st.image_running or "unmanaged")
        else:
            image = Text(f"? {node.image or ''}", style="dim")
        finding = fleet.port_finding(node)
        port = status_text(finding, node.switch_port.port if node.switch_port else "-") if finding else Text("-", style="dim")
        return [
            Text("●", style="bold") if name in self.marked else Text(" "),
            Text(name, style="bold" if st.error else ""),
            f"{node.rack}/{node.u or '-'}",
            status_text(st.power),
            status_text(st.health),
            port,
            image,
            age_text(st.polled_at, self.app.clock()),
            Text(st.error or "", style="red"),
        ]

    def _apply_filter(self, text: str) -> None:
        fleet = self.fleet
        names = [n.name for n in fleet.site.nodes]
        self.filter_text = text
        status = self.query_one("#filter", Input)
        if text.strip():
            try:
                chosen = select(text, names, attrs=lambda n: node_words(fleet, fleet.site.node(n)),
                                groups=fleet.site.groups, allow_empty=True)
                status.remove_class("bad")
                status.tooltip = None
            except FleetError as exc:
                status.add_class("bad")
                status.tooltip = str(exc)
                return
        else:
            chosen = names
        self.shown = chosen
        table = self.query_one(DataTable)
        with self.app.batch_update():
            table.clear()
            for name in chosen:
                table.add_row(*self._cells(name), key=name)
            self._sort()
        self._refresh_summary()

    def _sort(self) -> None:
        key = COLUMNS[self._sort_index][0]
        if key == "mark":
            return
        table = self.query_one(DataTable)
        order = {"critical": 0, "error": 0, "warning": 1, "unknown": 2, "off": 3, "ok": 4, "on": 5}

        def sort_key(cell):
            text = cell.plain if isinstance(cell, Text) else str(cell)
            word = text.split(" ", 1)[-1]
            return (order.get(word, 9), natural_key(text))

        table.sort(key, key=sort_key, reverse=self._sort_reverse)

    # ------------------------------------------------------------ live updates
    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        table = self.query_one(DataTable)
        if not message.nodes:
            self._refresh_summary()
            return
        visible = set(self.shown)
        with self.app.batch_update():
            for name in message.nodes & visible:
                for (key, _, _), value in zip(COLUMNS, self._cells(name)):
                    table.update_cell(name, key, value, update_width=False)
        self._refresh_summary()

    def _tick(self) -> None:
        """Once a second: ages move, and the stale banner follows the poller."""
        table = self.query_one(DataTable)
        now = self.app.clock()
        start = max(0, table.scroll_offset.y - 1)
        rows = self.shown[start:start + table.size.height + 2] if self.shown else []
        with self.app.batch_update():
            for name in rows:
                if name in table.rows:
                    table.update_cell(name, "age", age_text(self.fleet.nodes[name].polled_at, now), update_width=False)
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        fleet = self.fleet
        nodes = [fleet.nodes[n.name] for n in fleet.site.nodes]
        count = lambda pred: sum(1 for st in nodes if pred(st))  # noqa: E731
        drift = sum(1 for n in fleet.site.nodes if fleet.image_state(n) == "drift")
        miscabled = sum(1 for n in fleet.site.nodes if fleet.port_finding(n) == "mismatch")
        parts = [
            status_text("on", f"{count(lambda s: s.power == 'on')} on"),
            status_text("off", f"{count(lambda s: s.power == 'off')} off"),
            status_text("unknown", f"{count(lambda s: s.power == 'unknown')} ?"),
            Text(" │ "),
            status_text("ok", f"{count(lambda s: s.health == 'ok')}"),
            status_text("warning", f"{count(lambda s: s.health == 'warning')}"),
            status_text("critical", f"{count(lambda s: s.health == 'critical')}"),
            Text(" │ "),
            status_text("error", f"{count(lambda s: s.error)} err"),
            status_text("drift", f"{drift} drift"),
            status_text("mismatch", f"{miscabled} cabling"),
        ]
        text = Text("  ").join(parts)
        shown = f"  │ {len(self.shown)}/{len(nodes)} shown"
        if self.marked:
            shown += f", {len(self.marked)} marked"
        text.append(shown)
        self.query_one("#summary", Static).update(text)
        banner = self.query_one("#banner", Static)
        message = self.app.staleness()
        banner.update(message or "")
        banner.display = bool(message)

    # ------------------------------------------------------------ actions
    def action_filter(self) -> None:
        bar = self.query_one("#filter-bar")
        bar.display = True
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        inp = self.query_one("#filter", Input)
        inp.value = ""
        self.query_one("#filter-bar").display = False
        self._apply_filter("")
        self.query_one(DataTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.query_one("#filter-bar").display = False
        self.query_one(DataTable).focus()

    def _cursor_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _redraw_marks(self, names) -> None:
        table = self.query_one(DataTable)
        for name in names:
            if name in table.rows:
                table.update_cell(name, "mark", Text("●", style="bold") if name in self.marked else Text(" "),
                                  update_width=False)
        self._refresh_summary()

    def action_mark(self) -> None:
        name = self._cursor_name()
        if name is None:
            return
        self.marked.symmetric_difference_update({name})
        self._redraw_marks([name])
        table = self.query_one(DataTable)
        table.move_cursor(row=table.cursor_row + 1)

    def action_mark_all(self) -> None:
        self.marked.update(self.shown)
        self._redraw_marks(self.shown)

    def action_unmark_all(self) -> None:
        old, self.marked = self.marked, set()
        self._redraw_marks(old)

    def action_sort_next(self) -> None:
        self._sort_index = (self._sort_index % (len(COLUMNS) - 1)) + 1
        self._sort_reverse = False
        self._sort()
        self.notify(f"sorted by {COLUMNS[self._sort_index][1]}", timeout=1.5)

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        index = next(i for i, c in enumerate(COLUMNS) if c[0] == event.column_key.value)
        self._sort_reverse = not self._sort_reverse if index == self._sort_index else False
        self._sort_index = index
        self._sort()

    def action_open_node(self) -> None:
        name = self._cursor_name()
        if name:
            self.app.open_node(name)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_node(event.row_key.value)

    def action_racks(self) -> None:
        self.app.open_screen("racks")

    def action_switches(self) -> None:
        self.app.open_screen("switches")

    def action_help(self) -> None:
        self.app.action_show_help_panel()

