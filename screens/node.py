"""The node detail screen: everything known about one node, live.

Top to bottom, most important first (so an 80x24 pane shows what matters before
any scrolling):

- a status line: power, health, boot override, image drift, cabling, freshness;
- an error bar when the node's polls fail: the reason, consecutive failures, the
  age of the last success;
- a warning line when the node's BMC password goes over plain HTTP or unverified
  TLS (:func:`~screens.common.transport_warning`);
- the failing sensors, then power / network / image state, then every sensor
  with its thresholds;
- identity (from the BMC and the inventory), the event log newest first, and the
  node's recent activity from the action journal.

From 160 columns the sections stand in two columns.  A
:class:`~screens.common.FleetChanged` batch naming this node (or a switch its
port is on) updates the widgets in place: tables change only the cells that
changed and are rebuilt only when their set of rows changes.

Opening the screen asks the poller for this node's sensors and events now (and
identity, boot override, image or its switch when they were never read), so the
slow cadences do not leave the screen empty; ctrl+r (k9s's refresh) asks for everything again;
``r`` opens the racks on this node, as it does from the fleet.
"""

from __future__ import annotations

import os
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from console.drivers.bmc import Event
from console.live.fleet import Fleet, NodeState
from console.live.freshness import node_since
from console.live.words import sensor_words, sorted_sensors
from console.text import visible
from inventory.model import Node
from screens.appref import FleetAppMixin
from screens.columns import activity_text
from screens.common import (
    INSECURE,
    SYMBOLS,
    FleetChanged,
    age_text,
    outside,
    short_time,
    status_text,
    transport_warning,
)
from screens.footer import KeyFooter

__all__ = ["NodeScreen", "Section", "sorted_sensors", "NODE_REFRESH_JOBS"]

#: what ctrl+r asks the poller for (every node job, in the poller's priority order)
NODE_REFRESH_JOBS = ("power", "boot", "sensors", "events", "identity", "image")
#: event and journal rows shown (newest first)
MAX_EVENTS = 50
MAX_ACTIVITY = 30

SENSOR_COLUMNS = (
    ("status", "STATUS", 10),
    ("name", "SENSOR", 18),
    ("value", "READING", 8),
    ("unit", "UNIT", 4),
    ("low", "LOW c/w", 11),
    ("high", "HIGH w/c", 11),
)
#: event and activity lists wrap their free text in a narrow pane: (label, ratio or None for fixed)
EVENT_COLUMNS = (("TIME (UTC)", None), ("SEVERITY", None), ("EVENT", 1))
ACTIVITY_COLUMNS = (("TIME (UTC)", None), ("OPERATOR", None), ("ACTION", None), ("STEP", None),
                    ("RESULT", None), ("ERROR / TICKET", 1))

#: journal result -> status word for the symbol
#: a failed step reads ✗ (as on the progress screen), not ⊘ (a poll error)
_RESULT_WORDS = {"ok": "ok", "failed": "critical", "cancelled": "warning", "skipped": "off", "started": "unknown"}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _cell(value: object) -> object:
    """A cell for a grid or table: strings are shown as text (never as markup: they came from
    a BMC, a switch, the inventory or the journal), with control characters made visible."""
    return outside(value) if isinstance(value, str) else value


def event_line(event: Event) -> Text:
    """What an event says, naming its sensor: IPMI's lines do (``PSU2 (Power Supply): Power
    Supply AC lost  asserted``, the state dim); a Redfish message that does not name its
    sensor type gets it in front (``Voltage: ...``).  The words came from the BMC: text."""
    message, sensor = event.message, event.sensor
    if sensor and sensor.lower() not in message.lower():
        message = f"{sensor}: {message}"
    words, sep, state = message.rpartition("  ")
    if sep and state in ("asserted", "deasserted"):
        return Text.assemble(outside(words), ("  " + state, "dim"))
    return outside(message)


class Section(Vertical):
    """One titled, focusable block of the screen (tab moves between them)."""

    can_focus = True

    def __init__(self, title: str, *children, id: str) -> None:
        super().__init__(*children, id=id, classes="section")
        self.border_title = title


class NodeScreen(FleetAppMixin, Screen):
    """One node in detail, live: status and errors first, then failing sensors, power, network and
    image, every sensor, identity, the event log and the node's journal.  Tab or a click picks a
    section; the arrows and page keys scroll."""

    CSS_PATH = "node.tcss"
    #: how to read the lines (help shows them)
    HELP_NOTES = (
        (Text.assemble(("✗ critical", "red"), "  FAN3 0 RPM < 1000 RPM (lower critical)"),
         "a failing sensor: its reading, the threshold it crossed and which one (the fleet's WHY says the same)"),
        (Text("PSU1 308 W: critical, the BMC gives no threshold"),
         "the BMC calls the sensor failing without a threshold to compare (its own verdict)"),
        (Text.assemble("PSU2 (Power Supply): Power Supply AC lost", ("  asserted", "dim")),
         "an event: the sensor, its type, what happened, and whether the condition began (asserted) "
         "or ended (deasserted)"),
    )
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (160, "-wide")]
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        Binding("ctrl+r", "refresh", "Refresh"),
        Binding("r", "app.racks", "Racks", show=False),  # in ? help; the footer keeps x at 80 columns
        Binding("tab", "app.focus_next", "Sections"),
        Binding("shift+tab", "app.focus_previous", "Previous section", show=False),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.node_name = name
        self.polling = False
        #: per table id: the rows last shown, key -> cells (to update only what changed)
        self._rows: dict[str, dict[str, tuple]] = {}
        #: per list id: the rows last drawn
        self._lists: dict[str, list[tuple]] = {}
        self._journal_stamp: tuple[float, int] | None = None
        #: the section focused on opening, while the operator has not moved the focus
        self._initial_focus: Section | None = None

    # ------------------------------------------------------------ data
    @property
    def fleet(self) -> Fleet:
        return self.console.fleet

    @property
    def node(self) -> Node:
        return self.fleet.site.node(self.node_name)

    @property
    def state(self) -> NodeState:
        return self.fleet.nodes[self.node_name]

    def _known(self) -> bool:
        return self.node_name in self.fleet.nodes

    # ------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        if not self._known():
            yield Static(outside(f"no node named {self.node_name!r} in site {self.fleet.site.name}", "bold"),
                         id="status")
            yield KeyFooter()
            return
        yield Static(id="status")
        yield Static(id="errors")
        yield Static(id="transport")
        with VerticalScroll(id="body", can_focus=False):
            with Vertical(id="columns"):
                with Vertical(id="col-left", classes="column"):
                    yield Section("Failing sensors", Static(id="failing-list"), id="failing")
                    yield Section("Power · network · image", Static(id="state-grid"), id="state")
                    yield Section("Sensors", self._table("sensors", SENSOR_COLUMNS),
                                  Static("no sensor readings yet", id="sensors-empty", classes="empty"),
                                  id="sensors-section")
                with Vertical(id="col-right", classes="column"):
                    yield Section("Identity", Static(id="identity-grid"), id="identity")
                    yield Section("Events (newest first)", Static(id="events-list"), id="events")
                    yield Section("Recent activity (newest first)", Static(id="activity-list"), id="activity")
        yield KeyFooter()

    @staticmethod
    def _table(key: str, columns: tuple[tuple[str, str, int], ...]) -> DataTable[object]:
        table: DataTable[object] = DataTable(id=f"{key}-table", cursor_type="none", zebra_stripes=True)
        table.can_focus = False  # the sections take focus; the body scrolls
        for col, label, width in columns:
            table.add_column(label, width=width, key=col)
        return table

    def on_mount(self) -> None:
        self.sub_title = f"node {visible(self.node_name)}"
        if not self._known():
            self.notify(visible(f"no node named {self.node_name!r}"), severity="error", markup=False)
            return
        self._refresh_all(journal=True)
        self._show_transport()
        first = self.query_one("#failing", Section)
        self._initial_focus = first if first.display else self.query_one("#state", Section)
        self._initial_focus.focus()
        self.set_interval(1.0, self._tick)
        self._poll_now(self._opening_jobs(), self._opening_switches())

    # ------------------------------------------------------------ polling
    def _opening_jobs(self) -> tuple[str, ...]:
        """Sensors and events always (their cadence is slow); the rest only when never read."""
        st = self.state
        jobs = ["power"] if st.power == "unknown" or st.last_success is None else []
        if st.boot_override is None:
            jobs.append("boot")
        jobs += ["sensors", "events"]
        if st.identity is None:
            jobs.append("identity")
        if self.node.host and st.image_running is None and st.image_error is None:
            jobs.append("image")
        return tuple(jobs)

    def _opening_switches(self) -> tuple[str, ...]:
        sp = self.node.switch_port
        if sp is None or sp.switch not in self.fleet.switches:
            return ()
        return () if self.fleet.switches[sp.switch].last_success is not None else (sp.switch,)

    def _poll_now(self, jobs: tuple[str, ...], switches: tuple[str, ...] = ()) -> bool:
        """Ask the poller for ``jobs`` on this node (and ``switches``) now; False if one is running."""
        if self.polling:
            return False
        self.polling = True
        self._refresh_status()

        async def run() -> None:
            try:
                await self.console.poll_node_now(self.node_name, jobs)
                for switch in switches:
                    await self.console.poll_switch_now(switch)
            finally:
                self.polling = False
                if self.is_mounted:
                    self._refresh_status()

        self.run_worker(run(), name=f"poll {self.node_name}", group="node-poll", exit_on_error=False)
        return True

    # ------------------------------------------------------------ live updates
    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        if not self._known():
            return
        if self.node_name in message.nodes:
            self._refresh_all()
            return
        sp = self.node.switch_port
        seen = self.state.discovered_port
        if (sp and sp.switch in message.switches) or (seen and seen[0] in message.switches):
            self._refresh_state()  # the port's link state and speed come from the switch

    def _tick(self) -> None:
        """Once a second: ages move; the journal is re-read when its file changed."""
        self._refresh_status()
        if self._known():
            self._refresh_state()  # the image's age (redrawn only when its text changed)
        self._refresh_errors()
        self._refresh_activity()

    def _refresh_all(self, *, journal: bool = False) -> None:
        """Every widget from the fleet state (each redraws only if its content changed)."""
        with self.console.batch_update():
            self._refresh_status()
            self._refresh_errors()
            self._refresh_failing()
            self._refresh_state()
            self._refresh_sensors()
            self._refresh_identity()
            self._refresh_events()
            self._refresh_activity(force=journal)

    # ------------------------------------------------------------ the status line and errors
    def status_line(self) -> Text:
        """``dal1-r01-n07  r01/U7  ● on  ✗ critical  boot none  ≠ drift  ✗ miscabled  polled 3s ago``."""
        node, st, fleet = self.node, self.state, self.fleet
        now = self.console.clock()

        def since(text: Text, fact: str) -> Text:
            """``text`` and, from a minute on, how long the node has been so: ``✗ critical 14m``."""
            words = node_since(st, fact, now)
            if words and words != "<1m":
                text.append(f" {words}", "dim")
            return text

        parts = [outside(node.name, "bold"), outside(f"{node.rack}/U{node.u}" if node.u else node.rack),
                 since(status_text(st.power), "power"), since(status_text(st.health), "health")]
        bo = st.boot_override
        if bo is not None and bo.target.value != "none":
            parts.append(Text(f"boot {bo.target.value} ({'persistent' if bo.persistent else 'once'})",
                              style="bold yellow"))
        if fleet.image_state(node) == "drift":
            parts.append(since(status_text("drift", "image drift"), "image"))
        finding = fleet.port_finding(node)
        if finding == "mismatch":
            parts.append(since(status_text("mismatch", "miscabled"), "cabling"))
        elif finding == "ambiguous":
            parts.append(since(status_text("ambiguous", "port ambiguous"), "cabling"))
        if st.errors:
            parts.append(since(status_text("error", "poll error"), "reachability"))
        activity = fleet.activity.get(node.name)
        if activity is not None:  # a reimage under way explains the drift; a lock says who acts on it
            parts.append(activity_text(activity))
        parts.append(Text.assemble("polled ", age_text(st.polled_at, now), (" ago" if st.polled_at else "")))
        if self.polling:
            parts.append(Text("⟳ refreshing…", style="italic"))
        return Text("  ").join(parts)

    def _refresh_status(self) -> None:
        self.query_one("#status", Static).update(self.status_line())

    def error_text(self) -> Text | None:
        """The node's poll errors, or None when every job answered."""
        st = self.state
        if not st.errors:
            return None
        now = self.console.clock()
        text = Text.assemble((f"{SYMBOLS['error'][0]} {visible(st.error)}", "bold"))
        text.append(f"\n  {st.consecutive_failures} consecutive failure{'s' if st.consecutive_failures != 1 else ''}"
                    "  ·  last success ")
        text.append_text(age_text(st.last_success, now))
        if st.last_success is not None:
            text.append(" ago")
        text.append("  ·  last error ")
        text.append_text(age_text(st.last_error_at, now))
        if st.last_error_at is not None:
            text.append(" ago")
        others = [(job, why) for job, why in st.errors.items() if why != st.error]
        for job, why in others:
            text.append(f"\n  {job}: {visible(why)}")
        return text

    def _refresh_errors(self) -> None:
        bar = self.query_one("#errors", Static)
        text = self.error_text()
        bar.display = text is not None
        if text is not None:
            bar.update(text)

    def _show_transport(self) -> None:
        """The warning line for a BMC password that crosses the network unprotected (the
        inventory says so: it does not change while the screen is open)."""
        line = self.query_one("#transport", Static)
        warning = transport_warning(self.node.bmc)
        line.display = warning is not None
        if warning is not None:
            line.update(Text(f"{INSECURE[0]} {warning}"))

    # ------------------------------------------------------------ health
    def _refresh_failing(self) -> None:
        st = self.state
        failing = [s for s in sorted_sensors(st.sensors or []) if s.health in ("critical", "warning")]
        section = self.query_one("#failing", Section)
        was_shown = section.display
        section.display = bool(failing)
        if not failing:
            if was_shown and section.has_focus:
                self.query_one("#state").focus()
            return
        if not was_shown and self._initial_focus is not None and self.focused is self._initial_focus:
            # sensors arrived after opening and nobody moved the focus yet: failing sensors lead
            self._initial_focus = section
            section.focus()
        # the words the fleet's WHY column says, in full: the threshold crossed, its unit and which
        rows = [(status_text(s.health), outside(sensor_words(s, full=True))) for s in failing]
        self._sync_grid("failing-list", rows, key_style="")

    def _refresh_sensors(self) -> None:
        sensors = sorted_sensors(self.state.sensors or [])
        rows = [(s.name, (status_text(s.health), s.name, _num(s.value), s.unit,
                          f"{_num(s.lower_critical)}/{_num(s.lower_warning)}",
                          f"{_num(s.upper_warning)}/{_num(s.upper_critical)}")) for s in sensors]
        self._sync_table("sensors", rows)

    # ------------------------------------------------------------ power, network, image
    def _refresh_state(self) -> None:
        node, st, fleet = self.node, self.state, self.fleet
        rows: list[tuple] = []
        rows.append(("power", status_text(st.power)))
        rows.append(("health", status_text(st.health)))
        bo = st.boot_override
        if bo is None:
            rows.append(("boot override", Text("not read yet", style="dim")))
        elif bo.target.value == "none":
            rows.append(("boot override", Text("none")))
        else:
            rows.append(("boot override", Text(f"{bo.target.value} ({'persistent' if bo.persistent else 'once'})",
                                               style="bold yellow")))
        rows += self._network_rows(node, st, fleet)
        image_state = fleet.image_state(node)
        rows.append(("image desired", Text(node.image or "none (unmanaged)", style="" if node.image else "dim")))
        if image_state == "drift":
            running = status_text("drift", f"{st.image_running}  DRIFT")
        elif image_state == "ok":
            running = status_text("match", st.image_running or "")
        elif image_state == "unmanaged":
            running = status_text("unmanaged", st.image_running or "not read")
        else:
            running = outside(f"? unknown{': ' + st.image_error if st.image_error else ' (not read yet)'}",
                              "yellow")
        if st.image_at is not None:  # how old this fact is: the image is read less often than power
            running = running.copy()
            running.append(Text.assemble("  (read ", age_text(st.image_at, self.console.clock()), " ago)",
                                         style="dim"))
        rows.append(("image running", running))
        activity = fleet.activity.get(node.name)
        if activity is not None:
            label = "action" if activity.kind == "job" else "lock"
            words = activity_text(activity)
            if activity.kind == "job" and activity.plan:
                words.append(f"  plan {activity.plan}, by {visible(activity.owner)}", style="dim")
            if activity.kind == "lock" and activity.until is not None:
                words.append(f"  until {short_time(activity.until)}", style="dim")
            rows.append((label, words))
        self._sync_grid("state-grid", rows)
        section = self.query_one("#state")
        section.set_class(fleet.port_finding(node) == "mismatch", "-miscabled")
        section.set_class(image_state == "drift", "-drift")

    def _network_rows(self, node, st, fleet) -> list[tuple[str, Text]]:
        sp = node.switch_port
        finding = fleet.port_finding(node)
        rows: list[tuple[str, Text]] = []
        expected = f"{sp.switch}/{sp.port}" if sp else None
        rows.append(("port expected", outside(expected or "none in inventory", "" if sp else "dim")))
        if st.discovered_port:
            seen = "/".join(st.discovered_port)
            rows.append(("port seen", outside(seen, "bold red" if finding == "mismatch" else "")))
        elif st.port_evidence:
            where = ", ".join(sorted({f"{e['switch']}/{e['port']}" for e in st.port_evidence}))
            rows.append(("port seen", outside(f"ambiguous: {where}", "yellow")))
        else:
            rows.append(("port seen", Text("not seen by any switch (yet)", style="dim")))
        if finding == "mismatch":
            rows.append(("cabling", outside(f"{SYMBOLS['mismatch'][0]} MISCABLED: expected {expected}, "
                                            f"seen on {'/'.join(st.discovered_port)}", "bold red")))
        elif finding is not None:
            rows.append(("cabling", status_text(finding)))
        if st.link_up is not None:
            rows.append(("link (seen port)", status_text("up" if st.link_up else "down")))
        if sp is not None:
            port = self._switch_port(sp.switch, sp.port)
            sw = fleet.switches.get(sp.switch)
            if port is not None:
                link = status_text("up" if port.oper_up else "down",
                                   f"{'up' if port.oper_up else 'down'} (admin {'up' if port.admin_up else 'down'})"
                                   + (f", {port.speed_mbps} Mb/s" if port.speed_mbps else ""))
                rows.append(("link (expected)", link))
            elif sw is not None and sw.error:
                rows.append(("link (expected)", outside(f"switch error: {sw.error}", "red")))
            else:
                rows.append(("link (expected)", Text("switch not polled yet", style="dim")))
        return rows

    def _switch_port(self, switch: str, name: str):
        sw = self.fleet.switches.get(switch)
        if sw is None:
            return None
        return next((p for p in sw.ports.values() if p.name == name), None)

    # ------------------------------------------------------------ identity
    def _refresh_identity(self) -> None:
        node, st, site = self.node, self.state, self.fleet.site
        ident = st.identity
        rows: list[tuple] = []
        if ident is None:
            rows.append(("hardware", Text("not read yet", style="dim")))
        else:
            rows.append(("vendor", ident.vendor or "-"))
            rows.append(("model", ident.model or "-"))
            rows.append(("serial", ident.serial or "-"))
            if ident.uuid:
                rows.append(("uuid", ident.uuid))
            rows.append(("BIOS", ident.bios_version or "-"))
            rows.append(("BMC firmware", ident.bmc_firmware or "-"))
            rows.append(("MACs (BMC)", ", ".join(ident.macs) or "-"))
        if node.mac:
            mac = outside(node.mac)
            if ident is not None and ident.macs:
                known = node.mac.lower() in {m.lower() for m in ident.macs}
                mac.append("  " + ("✓ reported by the BMC" if known else "✗ not among the BMC's MACs"),
                           style="green" if known else "bold red")
            rows.append(("MAC (inventory)", mac))
        bmc = node.bmc
        where = bmc.address + (f":{bmc.port}" if bmc.port else "")
        if bmc.protocol == "redfish":
            where = f"{bmc.scheme}://{where}"
        rows.append(("BMC", f"{bmc.protocol}  {where}  user {bmc.username}"))
        rows.append(("host", node.host or "-"))
        if node.u is None:
            units = "-"
        elif node.height > 1:
            units = f"U{node.u}-{node.u + node.height - 1}"
        else:
            units = f"U{node.u}"
        rows.append(("rack / U", f"{node.rack} / {units}"))
        rows.append(("role", node.role or "-"))
        rows.append(("tags", ", ".join(node.tags) or "-"))
        groups = sorted(g for g, members in site.groups.items() if node.name in members)
        rows.append(("groups", ", ".join(groups) or "-"))
        rows.append(("protected", Text("yes: destructive actions need an override", style="bold yellow")
                     if node.protected else Text("no")))
        self._sync_grid("identity-grid", rows)

    # ------------------------------------------------------------ events and activity
    def _refresh_events(self) -> None:
        events = list(reversed(self.state.events or []))[:MAX_EVENTS]
        rows = [(short_time(e.timestamp), status_text(e.severity), event_line(e)) for e in events]
        self._sync_list("events", EVENT_COLUMNS, rows, "no events read yet")

    def _journal_entries(self) -> list[dict[str, Any]] | None:
        """This node's journal entries, newest first; None when there is no journal module."""
        try:
            from console.ops.journal import read_entries
        except ImportError:
            return None
        try:
            entries = read_entries(self.fleet.site.name, node=self.node_name, limit=MAX_ACTIVITY)
        except (OSError, ValueError):
            return []
        # read_entries returns oldest first; the screen shows the newest first
        return sorted(entries, key=lambda e: str(e.get("time") or ""), reverse=True)

    def _journal_changed(self) -> bool:
        """Cheap check (one stat) whether the journal file changed since the last read."""
        try:
            from console.ops.journal import journal_path

            stat = os.stat(journal_path(self.fleet.site.name))
            stamp = (stat.st_mtime, stat.st_size)
        except ImportError:
            return self._journal_stamp is None
        except (OSError, ValueError):
            stamp = (0.0, -1)
        if stamp == self._journal_stamp:
            return False
        self._journal_stamp = stamp
        return True

    def _refresh_activity(self, *, force: bool = False) -> None:
        if not self._journal_changed() and not force:
            return
        entries = self._journal_entries() or []
        rows = []
        for e in entries:
            result = e.get("result") or ""
            detail = outside(e.get("error") or "", "red")
            if e.get("ticket"):
                detail.append(("  " if detail else "") + f"ticket {visible(e['ticket'])}", style="dim")
            rows.append((short_time(e.get("time")), e.get("operator") or "-", e.get("action") or "-",
                         e.get("step") or "-", status_text(_RESULT_WORDS.get(result, "unknown"), result or "-"),
                         detail))
        self._sync_list("activity", ACTIVITY_COLUMNS, rows, "no activity recorded")

    # ------------------------------------------------------------ table updates
    def _sync_table(self, key: str, rows: list[tuple[str, tuple]]) -> None:
        """Show ``rows`` (key, cells) in the table ``key``: changed cells only, unless the rows changed."""
        table = self.query_one(f"#{key}-table", DataTable)
        self.query_one(f"#{key}-empty").display = not rows
        table.display = bool(rows)
        shown = self._rows.get(key, {})
        rows = [(row_key, tuple(_cell(c) for c in cells)) for row_key, cells in rows]
        new = dict(rows)
        columns = [c for c in table.columns]
        if list(shown) == [k for k, _ in rows]:
            for row_key, cells in rows:
                old = shown[row_key]
                for col, cell, before in zip(columns, cells, old, strict=False):
                    if cell != before:
                        table.update_cell(row_key, col, cell, update_width=False)
        else:
            table.clear()
            for row_key, cells in rows:
                table.add_row(*cells, key=row_key)
        self._rows[key] = new

    def _sync_grid(self, key: str, rows: list[tuple], *, key_style: str = "dim") -> None:
        """Show ``rows`` as a borderless grid in the Static ``#<key>`` (redrawn only when they changed)."""
        rows = [tuple(_cell(c) for c in row) for row in rows]
        if self._lists.get(key) == rows:
            return
        self._lists[key] = rows
        grid = Table.grid(padding=(0, 2))
        columns = max((len(r) for r in rows), default=1)
        for i in range(columns):
            # labels and values stay on one line; the last column wraps in a narrow pane
            grid.add_column(style=key_style if i == 0 else "", no_wrap=i < columns - 1)
        for row in rows:
            grid.add_row(*row)
        self.query_one(f"#{key}", Static).update(grid)

    def _sync_list(self, key: str, columns, rows: list[tuple], empty: str) -> None:
        """Show ``rows`` as a wrapping table in the Static ``#<key>-list`` (redrawn only when they changed)."""
        rows = [tuple(_cell(c) for c in row) for row in rows]
        if self._lists.get(key) == rows:
            return
        self._lists[key] = rows
        widget = self.query_one(f"#{key}-list", Static)
        if not rows:
            widget.update(Text(empty, style="dim"))
            return
        table = Table(box=None, padding=(0, 1), pad_edge=False, expand=True, show_edge=False,
                      header_style="bold")
        for label, ratio in columns:
            if ratio is None:
                table.add_column(label, no_wrap=True)
            else:
                table.add_column(label, ratio=ratio, overflow="fold")
        for row in rows:
            table.add_row(*row)
        widget.update(table)

    # ------------------------------------------------------------ actions
    def action_targets(self) -> list[str]:
        """The nodes the app's action keys (power, PXE, reimage) apply to here: this one."""
        return [self.node_name] if self._known() else []

    def action_back(self) -> None:
        self.console.pop_screen()

    def action_refresh(self) -> None:
        """ctrl+r: poll every job of this node (and its switch) now, and re-read the journal."""
        if not self._known():
            return
        sp = self.node.switch_port
        switches = (sp.switch,) if sp is not None and sp.switch in self.fleet.switches else ()
        if not self._poll_now(NODE_REFRESH_JOBS, switches):
            self.notify("a refresh of this node is already running", timeout=2)
        self._refresh_activity(force=True)

    def action_help(self) -> None:
        self.console.action_help()
