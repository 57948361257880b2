"""The switches screen: every switch, and for the selected one its ports.

The top table lists the switches (address, SNMP version, reachable or the error,
port counts, cabling findings, uptime, sysDescr).  The bottom table shows the
selected switch's ports: link state, speed, traffic rates, errors, the node the
inventory expects on the port, the node the switches actually see there (FDB and
LLDP), and the cabling finding with a symbol (``✗ mismatch``, ``~ ambiguous``,
``? unknown``).

The rows come from the same records the headless ``switches`` command prints
(:func:`console.live.records.switch_records`), so the CLI and the screen agree.  A
:class:`~screens.common.FleetChanged` batch updates only the cells that changed;
a table is rebuilt only when its set of rows changes (the first poll of a switch,
another switch selected, the findings-only filter toggled).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.live.fleet import Fleet
from console.live.records import PortRecord, SwitchRecord, cabling, switch_records
from console.live.words import FINDINGS, port_finding, rate_text, uptime_text
from console.text import visible
from screens.appref import FleetAppMixin
from screens.common import FleetChanged, age_text, outside, status_text
from screens.fit import SCROLLBAR, Col, fit
from screens.footer import KeyFooter
from screens.table import HabitDataTable

__all__ = ["SwitchesScreen", "uptime_text"]

#: the switch list; the last column takes the room the others leave
SWITCH_COLUMNS = (
    Col("name", "SWITCH", None),
    Col("state", "STATE", 9),
    Col("ports", "UP/PORTS", 8, 5, "PORTS"),
    Col("findings", "FINDINGS", 10),
    Col("address", "ADDRESS", 15),
    Col("snmp", "SNMP", 4),
    Col("uptime", "UPTIME", 8),
    Col("age", "POLLED", 6, 5, "AGE"),
    Col("descr", "DESCRIPTION / ERROR", 19, 11, "DESCR/ERROR"),
)
#: the port table of the selected switch
PORT_COLUMNS = (
    Col("port", "PORT", 11, 8),  # compact: Ethernet12 reads Eth12
    Col("link", "OPER/ADMIN", 11, 6, "LINK"),  # compact: up, down, off (admin down)
    Col("expected", "EXPECTED", None),
    Col("seen", "DISCOVERED", None, narrow_label="SEEN"),
    Col("finding", "FINDING", 11),
    Col("speed", "SPEED", 5),
    Col("in", "IN b/s", 7),
    Col("out", "OUT b/s", 7),
    Col("errors", "ERRORS", 10, 6, "ERRS"),
    Col("alias", "ALIAS", 16),
    Col("detail", "DETAIL", 6),
)
#: the last column (description, detail) wants this many cells before others give way,
#: and gets all that is left after them
LAST_WANT = {"descr": 20, "detail": 24}
#: what gives way, in order, while the last column has less than it wants: ("compact" or
#: "drop", column keys).  At 80 columns the switch list keeps name, state, ports, findings,
#: uptime and age; the port list port, link, expected and discovered node, finding and detail.
SWITCH_FIT = (("drop", ("address",)), ("drop", ("snmp",)), ("compact", ("ports",)), ("compact", ("age",)))
PORT_FIT = (("drop", ("alias",)), ("compact", ("link",)), ("compact", ("errors",)), ("drop", ("in", "out")),
            ("drop", ("speed",)), ("drop", ("errors",)), ("compact", ("port", "seen")))
def _speed(mbps: int) -> str:
    if not mbps:
        return "-"
    return f"{mbps // 1000}G" if mbps >= 1000 else f"{mbps}M"


def _same(a: Any, b: Any) -> bool:
    """Whether two cells render the same (Rich Text equality ignores the base style)."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return a == b


class SwitchesScreen(FleetAppMixin, Screen):
    """Switches above, the selected switch's ports below; enter on a port opens its node."""

    CSS_PATH = "switches.tcss"
    BINDINGS = [
        Binding("tab", "toggle_focus", "Switches/ports"),
        Binding("f", "toggle_findings", "Findings only"),
        Binding("r", "app.racks", "Racks", show=False),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, switch: str | None = None, node: str | None = None) -> None:
        super().__init__()
        #: the switch whose ports are shown
        self.selected: str | None = switch
        #: the node to open on (the operator's): its switch, the switch list focused, its port under the cursor
        self.start = node
        self.findings_only = False
        self._records: dict[str, SwitchRecord] = {}
        self._switch_cells: dict[str, dict[str, Any]] = {}
        self._port_cells: dict[str, dict[str, Any]] = {}
        self._port_nodes: dict[str, str | None] = {}  # port -> the node enter opens
        self._port_records: dict[str, PortRecord] = {}  # port -> its record (the line under the table)
        self._node_keys: dict[str, tuple] = {}
        #: the columns shown, for the width they were laid out for: (width, switch columns, port columns)
        self._layout: tuple[int, tuple, tuple] | None = None

    @property
    def fleet(self) -> Fleet:
        return self.console.fleet

    def compose(self) -> ComposeResult:
        yield Header()
        yield HabitDataTable(id="switches")
        yield Static(id="switch-detail")
        yield HabitDataTable(id="ports")
        yield Static(id="port-line")
        yield KeyFooter()

    def on_mount(self) -> None:
        switches = self.query_one("#switches", DataTable)
        ports = self.query_one("#ports", DataTable)
        self._lay_out(self.console.size.width)
        names = [s.name for s in self.fleet.site.switches]
        start_port = None
        if self.selected is None and self.start is not None and self.start in self.fleet.nodes:
            where = self.fleet.site.node(self.start).switch_port
            if where is not None and where.switch in names:
                self.selected, start_port = where.switch, where.port
        if self.selected not in names:
            if self.selected is not None:
                self.notify(visible(f"no switch named {self.selected!r}"), severity="warning", markup=False)
            self.selected = names[0] if names else None
        self._node_keys = {name: self._node_key(name) for name in self.fleet.nodes}
        self._refresh(rebuild=True)
        if self.selected is not None:
            switches.move_cursor(row=names.index(self.selected), animate=False)
        if start_port is not None:
            if start_port in ports.rows:
                ports.move_cursor(row=ports.get_row_index(start_port), animate=False)
            switches.focus()  # where the operator is: on their switch, their port below
        else:
            ports.focus()
        self.set_interval(1.0, self._tick)

    # ------------------------------------------------------------ columns
    def _lay_out(self, width: int) -> bool:
        """Columns that fit ``width`` cells whole (:func:`fit`); True when they changed."""
        site = self.fleet.site
        switch_names = max((len(sw.name) for sw in site.switches), default=6)
        node_names = min(24, max((len(n.name) for n in site.nodes), default=8))
        room = max(20, width - SCROLLBAR)
        layout = (width, fit(SWITCH_COLUMNS, SWITCH_FIT, room, min(24, switch_names), LAST_WANT["descr"]),
                  fit(PORT_COLUMNS, PORT_FIT, room, node_names, LAST_WANT["detail"]))
        if self._layout is not None and self._layout[1:] == layout[1:]:
            return False
        self._layout = layout
        for table, columns in ((self.query_one("#switches", DataTable), layout[1]),
                               (self.query_one("#ports", DataTable), layout[2])):
            table.clear(columns=True)
            for key, label, size in columns:
                table.add_column(label, width=size, key=key)
        return True

    def _compact(self, key: str) -> bool:
        """Whether port column ``key`` shows its compact form."""
        assert self._layout is not None
        full = next(c for c in PORT_COLUMNS if c.key == key)
        return any(k == key and label == (full.narrow_label or full.label) and size == full.narrow
                   for k, label, size in self._layout[2]) and full.narrow is not None

    def on_resize(self, event: events.Resize) -> None:
        cursor = self.cursor_port()
        if self._lay_out(event.size.width):
            self._refresh(rebuild=True)
            ports = self.query_one("#ports", DataTable)
            if cursor is not None and cursor in ports.rows:
                ports.move_cursor(row=ports.get_row_index(cursor), animate=False)
            if self.selected in self._records:
                switches = self.query_one("#switches", DataTable)
                switches.move_cursor(row=switches.get_row_index(self.selected), animate=False)

    # ------------------------------------------------------------ rows
    def _switch_row(self, record: SwitchRecord) -> dict[str, Any]:
        fleet = self.fleet
        sw = fleet.site.switch(record.name)
        assert sw is not None, record.name  # the records are of the site's own switches
        st = fleet.switches[record.name]
        if record.error:
            state = status_text("error")
        elif st.last_success is None:
            state = status_text("unknown")  # before the first poll answers
        else:
            state = status_text("ok")
        ports = record.ports
        up = sum(1 for p in ports if p.oper == "up")
        counts = {word: 0 for word in FINDINGS}
        for p in ports:
            word, _ = cabling(fleet, p)
            if word in counts:
                counts[word] += 1
        findings = Text(" ").join(status_text(w, str(n)) for w, n in counts.items() if n) or Text("-", style="dim")
        # sysDescr and the error came from the switch: text, never markup, controls made visible
        descr = (outside(record.error, "red") if record.error
                 else outside(" ".join((record.descr or "").split())))
        return {
            "name": outside(sw.name, "bold" if record.error else ""),
            "state": state,
            "ports": f"{up}/{len(ports)}" if ports else "-",
            "findings": findings,
            "address": outside(sw.address if sw.port == 161 else f"{sw.address}:{sw.port}"),
            "snmp": "v3" if sw.snmp.version == "3" else f"v{sw.snmp.version}",
            "uptime": uptime_text(record.uptime_s),
            "age": age_text(st.polled_at, self.console.clock()),
            "descr": descr,
        }

    def _port_row(self, switch: str, port: PortRecord) -> dict[str, Any]:
        word, detail = cabling(self.fleet, port)
        oper_up = port.oper == "up"
        if self._compact("link"):  # up, down, or off: shut by the switch's operator
            link = status_text("up" if oper_up else "down", "off" if port.admin == "down" else port.oper)
        else:
            link = status_text("up" if oper_up else "down", f"{port.oper}/{port.admin}")
        if port.admin == "down":
            link.stylize("dim")
        state = self.fleet.switches[switch].ports.get(port.ifindex)
        err_rate = ((state.in_errors_per_s or 0) + (state.out_errors_per_s or 0)) if state else 0
        errors = port.in_errors + port.out_errors
        err_text = Text(f"{errors}" + (f" +{err_rate:.0f}/s" if err_rate >= 1 else ""),
                        style="bold red" if err_rate else ("yellow" if errors else "dim"))
        expected, seen = port.node_expected, port.node_seen
        if port.lldp and port.lldp.get("sys_name") and not detail:
            detail = f"LLDP {port.lldp['sys_name']} port {port.lldp.get('port_id', '?')}"
        name = port.name
        if self._compact("port") and name.startswith("Ethernet"):
            name = "Eth" + name[len("Ethernet"):]
        return {
            "port": outside(name, "bold" if word in FINDINGS else ""),
            "link": link,
            "expected": outside(expected or "-", "" if expected else "dim"),
            "seen": outside(seen or "-", "bold red" if word == "mismatch" and seen else ("" if seen else "dim")),
            "finding": status_text(word) if word else Text("-", style="dim"),
            "speed": _speed(port.speed_mbps),
            "in": rate_text(port.in_bps),
            "out": rate_text(port.out_bps),
            "errors": err_text,
            "alias": outside(port.alias),
            "detail": outside(detail, "red" if word == "mismatch" else ""),
        }

    def _node_key(self, name: str) -> tuple:
        """What of a node the port view shows; a node change matters only if this changes."""
        st = self.fleet.nodes[name]
        return (st.discovered_port, st.link_up, len(st.port_evidence),
                port_finding(self.fleet.site.node(name), st))

    # ------------------------------------------------------------ updates
    def _refresh(self, rebuild: bool = False) -> None:
        """Re-read the records and update the cells that changed (rows only if their set did)."""
        records = switch_records(self.fleet)
        self._records = {r.name: r for r in records}
        with self.console.batch_update():
            self._update_table(self.query_one("#switches", DataTable), self._switch_cells,
                               {r.name: self._switch_row(r) for r in records}, rebuild)
            self._refresh_ports(rebuild)
        self._refresh_detail()

    def _refresh_ports(self, rebuild: bool = False) -> None:
        record = self._records.get(self.selected or "")
        rows: dict[str, dict[str, Any]] = {}
        self._port_nodes = {}
        self._port_records = {}
        if record is not None:
            for p in record.ports:
                if self.findings_only and cabling(self.fleet, p)[0] not in FINDINGS:
                    continue
                rows[p.name] = self._port_row(record.name, p)
                self._port_nodes[p.name] = p.node_seen or p.node_expected
                self._port_records[p.name] = p
        self._update_table(self.query_one("#ports", DataTable), self._port_cells, rows, rebuild)
        self._refresh_port_line()

    def _refresh_port_line(self) -> None:
        """The port under the cursor in full, under the table: what narrow columns leave out."""
        line = self.query_one("#port-line", Static)
        port = self.cursor_port()
        record = self._port_records.get(port) if port is not None else None
        cells = self._port_cells.get(port) if port is not None else None
        if record is None or cells is None:
            line.update("")
            return
        word, detail = cabling(self.fleet, record)
        text = outside(record.name, "bold")  # the finding first: what a narrow DETAIL column cuts
        if word:
            text.append(" ")
            text.append_text(status_text(word))
        if detail:
            text.append(": ")
            text.append(visible(detail), style="red" if word == "mismatch" else "")
        text.append("  │ ", style="dim")
        text.append_text(status_text("up" if record.oper == "up" else "down", f"{record.oper}/{record.admin}"))
        text.append(f"  {_speed(record.speed_mbps)}  in {rate_text(record.in_bps)}  out {rate_text(record.out_bps)}"
                    "  errors ")
        text.append_text(cells["errors"])
        if record.alias:
            text.append("  alias ")
            text.append(visible(record.alias))
        line.update(text)

    @staticmethod
    def _update_table(table: DataTable, cache: dict[str, dict[str, Any]], rows: dict[str, dict[str, Any]],
                      rebuild: bool) -> None:
        """Show ``rows`` (row key -> column key -> cell) in the columns the table has."""
        shown = [str(column.value) for column in table.columns]
        if rebuild or list(rows) != list(cache):
            cursor = table.cursor_row
            table.clear()
            for key, cells in rows.items():
                table.add_row(*(cells[column] for column in shown), key=key)
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        else:
            for key, cells in rows.items():
                old = cache[key]
                for column in shown:
                    if not _same(cells[column], old[column]):
                        table.update_cell(key, column, cells[column], update_width=False)
        cache.clear()
        cache.update(rows)

    def _refresh_detail(self) -> None:
        detail = self.query_one("#switch-detail", Static)
        record = self._records.get(self.selected or "")
        if record is None:
            detail.update("no switches in this site")
            return
        text = Text()
        text.append(visible(record.name), style="bold")
        text.append(f"  {visible(record.address)}")
        if record.error:
            text.append("  ")
            text.append_text(status_text("error", record.error))
        shown = len(self._port_cells)
        total = len(record.ports)
        text.append(f"  │ {shown}/{total} ports shown" + ("  (findings only)" if self.findings_only else ""))
        if not total:
            text.append("  │ no port data yet" if not record.error else "  │ no port data")
        detail.update(text)

    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        relevant = bool(message.switches)
        for name in message.nodes:
            if name not in self._node_keys:
                continue
            key = self._node_key(name)
            if key != self._node_keys[name]:
                self._node_keys[name] = key
                relevant = True
        if relevant:
            self._refresh()

    def _tick(self) -> None:
        """Once a second the poll ages move."""
        table = self.query_one("#switches", DataTable)
        now = self.console.clock()
        with self.console.batch_update():
            for name, cells in self._switch_cells.items():
                age = age_text(self.fleet.switches[name].polled_at, now)
                if not _same(age, cells["age"]):
                    cells["age"] = age
                    table.update_cell(name, "age", age, update_width=False)

    # ------------------------------------------------------------ selection and actions
    def select_switch(self, name: str) -> None:
        """Show ``name``'s ports."""
        if name == self.selected:
            return
        if name not in self._records:
            self.notify(visible(f"no switch named {name!r}"), severity="warning", markup=False)
            return
        self.selected = name
        switches = self.query_one("#switches", DataTable)
        index = switches.get_row_index(name)
        if switches.cursor_row != index:
            switches.move_cursor(row=index, animate=False)
        ports = self.query_one("#ports", DataTable)
        with self.console.batch_update():
            self._refresh_ports(rebuild=True)
        ports.move_cursor(row=0, animate=False)
        self._refresh_detail()

    @on(DataTable.RowHighlighted, "#switches")
    def _switch_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # follow where the cursor is now: highlight messages queued by a rebuild are stale
        table = event.data_table
        if table.row_count:
            name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if name is not None:
                self.select_switch(name)

    @on(DataTable.RowHighlighted, "#ports")
    def _port_highlighted(self) -> None:
        self._refresh_port_line()

    @on(DataTable.RowSelected, "#switches")
    def _switch_chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.select_switch(event.row_key.value)
        self.query_one("#ports", DataTable).focus()

    @on(DataTable.RowSelected, "#ports")
    def _port_chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_port(event.row_key.value)

    def open_port(self, port: str) -> None:
        """Open the node on ``port`` (the one seen there, else the one expected)."""
        node = self._port_nodes.get(port)
        if node is None:
            self.notify(visible(f"no node on {self.selected} {port}"), timeout=2, markup=False)
            return
        self.console.open_node(node)

    def cursor_port(self) -> str | None:
        """The port under the port table's cursor."""
        table = self.query_one("#ports", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def current_node(self) -> str | None:
        """The node on the port under the cursor (the app opens racks on it)."""
        port = self.cursor_port()
        return self._port_nodes.get(port) if port is not None else None

    def action_toggle_focus(self) -> None:
        switches = self.query_one("#switches", DataTable)
        ports = self.query_one("#ports", DataTable)
        (switches if ports.has_focus else ports).focus()

    def action_toggle_findings(self) -> None:
        self.findings_only = not self.findings_only
        with self.console.batch_update():
            self._refresh_ports(rebuild=True)
        self._refresh_detail()

    def action_back(self) -> None:
        self.console.pop_screen()

    def action_help(self) -> None:
        self.console.action_help()
