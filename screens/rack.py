"""The rack view: every rack drawn as a column of U slots, each node a coloured block.

Racks stand side by side (scrolling sideways when they do not fit); racks taller
than the screen scroll together, so a row of the screen is one U across every rack,
and follow the cursor.  Each rack's frame says which U it shows, and the line under
the racks names the node under the cursor, where it sits and its state.  The arrow
keys (and ``j``/``k``) move a highlighted cursor between nodes: up and down within a
rack by U, left and right to the nearest node in the neighbouring rack; ``g``/``G``
(Home/End) go to the top/bottom node, ctrl+u/ctrl+d half a screen of U, ctrl+b/ctrl+f
(PageUp/PageDown) a screen.  Every state has a symbol as well as a colour, so the
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
MISCABLED = SYMBOLS["mismatch"][0]
CRITICAL = SYMBOLS["critical"][0]


def state_symbol(state: str, health: str | None) -> str:
    """A block's symbol: its state's, but ``✗`` for a critical health (``⊘`` is a poll error)."""
    return CRITICAL if state == "error" and health == "critical" else STATE_SYMBOLS[state]
STATES = NODE_STATES

#: the legend's entries: a symbol and what it means, kept together on one line
LEGEND_ITEMS = (
    f"{STATE_SYMBOLS['ok']} on+ok", f"{STATE_SYMBOLS['warning']} warning",
    f"{CRITICAL} critical", f"{STATE_SYMBOLS['error']} poll error", f"{STATE_SYMBOLS['off']} off",
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
        lines = [f"{self.top_u:>2} {visible(short_name(self.node_name)):<6} {state_symbol(state, st.health)}{marks}"]
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


class RackSlots(VerticalScroll, can_focus=False):
    """A rack's U slots, top U first: one line per U (so line y is U ``height - y``)."""

    def __init__(self, rack: Rack) -> None:
        super().__init__(classes="rack-slots")
        self.rack_height = rack.height

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.show_range()

    def on_resize(self, event: events.Resize) -> None:
        self.show_range()

    def show_range(self) -> None:
        """The U shown, in the rack's frame: ``U42-26 ↓`` (arrows: more above, below)."""
        rack = self.parent
        shown = self.scrollable_content_region.height
        if not isinstance(rack, Widget) or shown <= 0:
            return
        top = self.rack_height - round(self.scroll_y)
        bottom = max(1, top - shown + 1)
        if top >= self.rack_height and bottom <= 1:
            rack.border_subtitle = None
            return
        more = ("↑" if top < self.rack_height else "") + ("↓" if bottom > 1 else "")
        rack.border_subtitle = f"U{top}-{bottom} {more}"

    def show_u(self, top_u: int) -> None:
        """Scroll so that ``top_u`` is the top line (as far as the rack goes)."""
        self.scroll_to(y=max(0, self.rack_height - top_u), animate=False, force=True, immediate=True)


class RackScreen(FleetAppMixin, Screen):
    """Racks side by side; arrows (j/k, g/G, page keys) move between nodes, enter opens one."""

    CSS_PATH = "rack.tcss"
    BINDINGS = [
        Binding("up,k", "move(0, 1)", "Up", show=False),
        Binding("down,j", "move(0, -1)", "Down", show=False),
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("g,home", "end(1)", "Top node", show=False),
        Binding("G,end", "end(-1)", "Bottom node", show=False),
        Binding("ctrl+u", "page(1, 0.5)", "Half a screen up", show=False),
        Binding("ctrl+d", "page(-1, 0.5)", "Half a screen down", show=False),
        Binding("ctrl+b,pageup", "page(1, 1)", "A screen up", show=False),
        Binding("ctrl+f,pagedown", "page(-1, 1)", "A screen down", show=False),
        Binding("enter", "open_node", "Detail"),
        Binding("w", "app.switches", "Switches"),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.blocks: dict[str, NodeBlock] = {}
        #: per rack, its node blocks from the top U down
        self.columns: list[list[NodeBlock]] = []
        self.cursor: str | None = None
        #: the node to open on (the operator's, where they came from); None: the first
        self.start = node

    @property
    def fleet(self) -> Fleet:
        return self.console.fleet

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(legend(self.console.size.width - 2), id="legend")  # (its padding)
        with HorizontalScroll(id="racks", can_focus=False):
            for rack in self.fleet.site.racks:
                column = Vertical(classes="rack", id=f"rack-{rack.name}")
                column.border_title = outside(f"{rack.name} (row {rack.row})")
                with column, RackSlots(rack):
                    yield from self._slots(rack)
        yield Static(id="where")
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
        if self.start is not None and self.start not in self.blocks:
            self.notify(visible(f"{self.start} has no place in a rack"), timeout=3, markup=False)
            self.start = None
        first = next((col[-1] for col in self.columns if col), None)
        start = self.start or (first.node_name if first is not None else None)
        if start is not None:
            self.select(start)
            self.call_after_refresh(self._follow)  # once the racks have their height

    def current_node(self) -> str | None:
        """The node under the cursor (the app opens switches on it)."""
        return self.cursor

    # ------------------------------------------------------------ live updates
    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        for name in message.nodes:
            block = self.blocks.get(name)
            if block is not None:
                block.refresh_state(self.fleet)
        if self.cursor in message.nodes:
            self._show_where()

    def _show_where(self) -> None:
        """The line under the racks: the node under the cursor, its rack and U, its state."""
        where = self.query_one("#where", Static)
        if self.cursor is None:
            where.update("")
            return
        node = self.fleet.site.node(self.cursor)
        st = self.fleet.nodes[self.cursor]
        block = self.blocks[self.cursor]
        span = f"U{block.bottom_u}" + (f"-{block.top_u}" if block.top_u != block.bottom_u else "")
        text = Text()
        text.append(visible(self.cursor), style="bold")
        text.append(f"  {visible(node.rack)} {span}  {state_symbol(block.state, st.health)} {st.power}/{st.health}")
        if st.error:
            text.append(f"  {visible(st.error)}")
        where.update(text)

    # ------------------------------------------------------------ cursor
    def select(self, name: str) -> None:
        """Move the highlight to ``name`` and scroll it into view."""
        if self.cursor in self.blocks:
            self.blocks[self.cursor].remove_class("-cursor")
        self.cursor = name
        block = self.blocks[name]
        block.add_class("-cursor")
        rack = block.parent.parent if block.parent is not None else None
        if isinstance(rack, Widget):  # the rack's column, scrolled sideways into view
            rack.scroll_visible(animate=False)
        self._follow()
        self._show_where()

    def _follow(self) -> None:
        """Every rack scrolled to the same U band, the one that shows the cursor's node."""
        if self.cursor is None:
            return
        block = self.blocks[self.cursor]
        slots = block.parent
        if not isinstance(slots, RackSlots):
            return
        shown = slots.scrollable_content_region.height
        if shown <= 0:
            return
        top = slots.rack_height - round(slots.scroll_y)  # the U on the top line now
        if block.top_u > top:
            top = block.top_u
        elif block.bottom_u < top - shown + 1:
            top = min(slots.rack_height, block.bottom_u + shown - 1)
        for other in self.query(RackSlots):
            other.show_u(top)

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

    def action_end(self, direction: int) -> None:
        """``g`` / ``G``: the top (1) or bottom (-1) node of the cursor's rack."""
        if self.cursor is None:
            return
        column = self.columns[self._where(self.cursor)[0]]
        self.select(column[0 if direction > 0 else -1].node_name)

    def action_page(self, direction: int, fraction: float) -> None:
        """Page keys: the node ``fraction`` of a screen of U up (1) or down (-1) the rack
        (the next node that way at least, when the nearest is the one under the cursor)."""
        if self.cursor is None:
            return
        x, y = self._where(self.cursor)
        column, current = self.columns[x], self.columns[x][y]
        slots = current.parent
        shown = slots.scrollable_content_region.height if isinstance(slots, Widget) else 0
        step = max(1, int(max(1, shown) * fraction))
        target = (current.top_u + current.bottom_u) / 2 + direction * step
        nearest = min(column, key=lambda b: (abs((b.top_u + b.bottom_u) / 2 - target), b.bottom_u))
        if nearest is current:
            y -= direction  # columns run from the top U down
            if not 0 <= y < len(column):
                return
            nearest = column[y]
        self.select(nearest.node_name)

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
