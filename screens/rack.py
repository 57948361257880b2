"""The rack view: every rack drawn as a column of U slots, each node a coloured block.

Racks stand side by side (scrolling sideways when they do not fit); a rack taller
than the screen scrolls on its own.  The arrow keys move a highlighted cursor
between nodes: up and down within a rack by U, left and right to the nearest node
in the neighbouring rack.  Every state has a symbol as well as a colour, so the
view reads without colour.
"""

from __future__ import annotations

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll, Vertical, VerticalScroll
from textual.events import Click
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static

from console.live.fleet import Fleet
from console.live.words import NODE_STATES, image_state, node_state, port_finding
from console.text import visible
from inventory.model import Node, Rack
from screens.appref import FleetAppMixin
from screens.common import SYMBOLS, FleetChanged, outside
from screens.footer import KeyFooter

__all__ = ["RackScreen", "NodeBlock"]

#: state -> symbol shown in a block (and its CSS class is ``state-<state>``)
STATE_SYMBOLS = {
    "error": SYMBOLS["error"][0],
    "warning": SYMBOLS["warning"][0],
    "off": SYMBOLS["off"][0],
    "ok": SYMBOLS["on"][0],
    "unknown": SYMBOLS["unknown"][0],
}
DRIFT = SYMBOLS["drift"][0]
MISCABLED = "⇄"
STATES = NODE_STATES

#: the legend's entries: a symbol and what it means, kept together on one line
LEGEND_ITEMS = (
    f"{STATE_SYMBOLS['ok']} on+ok", f"{STATE_SYMBOLS['warning']} warning",
    f"{STATE_SYMBOLS['error']} critical/error", f"{STATE_SYMBOLS['off']} off",
    f"{STATE_SYMBOLS['unknown']} unknown", f"{DRIFT} image drift", f"{MISCABLED} miscabled", "· empty U",
)
LEGEND = "  ".join(LEGEND_ITEMS)


def legend(width: int) -> str:
    """The legend in lines of at most ``width`` cells, broken between entries only."""
    lines: list[str] = []
    for item in LEGEND_ITEMS:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += "  " + item
        else:
            lines.append(item)
    return "\n".join(lines)


def short_name(name: str) -> str:
    """The last part of a node name: ``dal1-r01-n07`` -> ``n07``."""
    return name.rsplit("-", 1)[-1]


class NodeBlock(Static):
    """One node: a block as tall as the U range it occupies."""

    def __init__(self, name: str, top_u: int, height: int) -> None:
        super().__init__(classes="node")
        self.node_name = name
        self.top_u = top_u
        self.bottom_u = top_u - height + 1
        self.styles.height = height
        self.state = "unknown"

    def refresh_state(self, fleet) -> None:
        """Redraw from the fleet: label, symbols and the ``state-*`` class."""
        node = fleet.site.node(self.node_name)
        st = fleet.nodes[self.node_name]
        state = node_state(st)
        marks = ""
        if image_state(node, st) == "drift":
            marks += DRIFT
        if port_finding(node, st) == "mismatch":
            marks += MISCABLED
        self.state = state
        for other in STATES:
            self.set_class(other == state, f"state-{other}")
        lines = [f"{self.top_u:>2} {visible(short_name(self.node_name)):<6} {STATE_SYMBOLS[state]}{marks}"]
        lines += [f"{u:>2} │" for u in range(self.top_u - 1, self.bottom_u - 1, -1)]
        self.update(Text("\n".join(lines)))
        # a tooltip string is markup: the name and the BMC's error text go in as text
        self.tooltip = outside(f"{self.node_name}: power {st.power}, health {st.health}" + (
            f", {st.error}" if st.error else ""))

    def on_click(self, event: Click) -> None:
        event.stop()
        screen = self.screen
        if isinstance(screen, RackScreen):
            screen.click_node(self.node_name)


class RackScreen(FleetAppMixin, Screen):
    """Racks side by side; arrows move between nodes, enter opens one."""

    CSS_PATH = "rack.tcss"
    BINDINGS = [
        Binding("up", "move(0, 1)", "Up", show=False),
        Binding("down", "move(0, -1)", "Down", show=False),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("enter", "open_node", "Detail"),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[str, NodeBlock] = {}
        #: per rack, its node blocks from the top U down
        self.columns: list[list[NodeBlock]] = []
        self.cursor: str | None = None

    @property
    def fleet(self) -> Fleet:
        return self.console.fleet

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(legend(self.console.size.width - 2), id="legend")  # (its padding)
        with HorizontalScroll(id="racks", can_focus=False):
            for rack in self.fleet.site.racks:
                with Vertical(classes="rack", id=f"rack-{rack.name}"):
                    yield Static(outside(f"{rack.name} (row {rack.row})"), classes="rack-title")
                    with VerticalScroll(classes="rack-slots", can_focus=False):
                        yield from self._slots(rack)
        yield KeyFooter()

    def _slots(self, rack: Rack) -> ComposeResult:
        site = self.fleet.site
        by_top: dict[int, Node] = {}
        for name in rack.nodes:
            node = site.node(name)
            if node.u is not None:
                by_top[node.u + node.height - 1] = node
        column: list[NodeBlock] = []
        u = rack.height
        while u >= 1:
            top = by_top.get(u)
            if top is not None:
                block = NodeBlock(top.name, u, top.height)
                self.blocks[top.name] = block
                column.append(block)
                yield block
                u -= top.height
            else:
                yield Static(f"{u:>2} ·", classes="empty")
                u -= 1
        self.columns.append(column)

    def on_resize(self, event: events.Resize) -> None:
        self.query_one("#legend", Static).update(legend(event.size.width - 2))

    def on_mount(self) -> None:
        for block in self.blocks.values():
            block.refresh_state(self.fleet)
        first = next((col[-1] for col in self.columns if col), None)
        if first is not None:
            self.select(first.node_name)

    # ------------------------------------------------------------ live updates
    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        for name in message.nodes:
            block = self.blocks.get(name)
            if block is not None:
                block.refresh_state(self.fleet)

    # ------------------------------------------------------------ cursor
    def select(self, name: str) -> None:
        """Move the highlight to ``name`` and scroll it into view."""
        if self.cursor in self.blocks:
            self.blocks[self.cursor].remove_class("-cursor")
        self.cursor = name
        block = self.blocks[name]
        block.add_class("-cursor")
        block.scroll_visible(animate=False)
        rack = block.parent.parent if block.parent is not None else None
        if isinstance(rack, Widget):  # the rack's column, scrolled sideways into view
            rack.scroll_visible(animate=False)

    def _where(self, name: str) -> tuple[int, int]:
        for x, column in enumerate(self.columns):
            for y, block in enumerate(column):
                if block.node_name == name:
                    return x, y
        raise KeyError(name)

    def action_move(self, dx: int, du: int) -> None:
        """Arrows: ``du`` moves within the rack by U, ``dx`` to a neighbouring rack."""
        if self.cursor is None:
            return
        x, y = self._where(self.cursor)
        if du:
            y -= du  # columns run from the top U down
            if 0 <= y < len(self.columns[x]):
                self.select(self.columns[x][y].node_name)
            return
        current = self.columns[x][y]
        middle = (current.top_u + current.bottom_u) / 2
        x += dx
        while 0 <= x < len(self.columns):
            column = self.columns[x]
            if column:
                nearest = min(column, key=lambda b: (abs((b.top_u + b.bottom_u) / 2 - middle), b.bottom_u))
                self.select(nearest.node_name)
                return
            x += dx

    def click_node(self, name: str) -> None:
        """A click selects a node; a click on the selected node opens it."""
        if self.cursor == name:
            self.console.open_node(name)
        else:
            self.select(name)

    def action_targets(self) -> list[str]:
        """The nodes an action (power, PXE, reimage) applies to here: the highlighted node."""
        return [self.cursor] if self.cursor is not None else []

    def action_open_node(self) -> None:
        if self.cursor is not None:
            self.console.open_node(self.cursor)

    def action_back(self) -> None:
        self.console.pop_screen()
