"""FleetTable (screens/table.py): draws what DataTable draws, and behaves as it does.

The fleet table is a Line-API widget of its own (DataTable's rendering path cost
50-400 ms a filter key at 5,000 rows).  It must still look like the stock table
the other screens use: each screen line is compared here with a stock DataTable
holding the same rows (so a Textual upgrade that changes the stock look fails
here), and the keys, mouse, cursor and per-row redraws are driven through Pilot.
"""

from __future__ import annotations

import pytest
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable

from screens.table import FleetTable, cell_key

COLUMNS = (("mark", " ", 1), ("name", "NODE", 14), ("power", "POWER", 9), ("error", "ERROR", 20))
NAMES = [f"n{i:03d}" for i in range(200)]


def cells_of(name: str, version: int = 0) -> list:
    return [
        Text("●", style="bold") if version else Text(" "),
        Text(name, style="bold" if version else ""),
        Text.assemble(("● ", "green"), ("on" if not version else "off", "dim")),
        Text(f"error {version}: " + "x" * (5 * version), style="red") if version else Text(""),
    ]


class TableApp(App):
    """A FleetTable and a stock DataTable side by side, same rows, same width."""

    CSS = "Horizontal > * { width: 1fr; height: 1fr; }"

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.versions: dict[str, int] = {}
        self.selected: list[str] = []
        self.headers: list[str] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield FleetTable()
            yield DataTable(cursor_type="row", zebra_stripes=True)

    def cells(self, name: str) -> list:
        return cells_of(name, self.versions.get(name, 0))

    def on_mount(self) -> None:
        table = self.query_one(FleetTable)
        table.cells_for = self.cells
        table.set_columns(COLUMNS)
        table.replace_rows(self.names)
        stock = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            stock.add_column(label, width=width, key=key)
        for name in self.names:
            stock.add_row(*self.cells(name), key=name)
        table.focus()

    def change(self, name: str) -> None:
        self.versions[name] = self.versions.get(name, 0) + 1
        self.query_one(FleetTable).refresh_rows([name])
        stock = self.query_one(DataTable)
        for (key, _, _), cell in zip(COLUMNS, self.cells(name)):
            stock.update_cell(name, key, cell)

    def on_fleet_table_row_selected(self, message: FleetTable.RowSelected) -> None:
        self.selected.append(message.key)

    def on_fleet_table_header_selected(self, message: FleetTable.HeaderSelected) -> None:
        self.headers.append(message.key)


def plain_segments(strip) -> list[tuple[str, Style]]:
    """A line's text and styles, without meta (the two tables put different meta on cells)."""
    bare = [Segment(seg.text, seg.style.copy() if seg.style else None) for seg in strip]
    for seg in bare:
        if seg.style is not None:
            seg.style._meta = None
            seg.style._hash = None
    out: list[tuple[str, Style]] = []
    for seg in bare:  # merge runs of one style, character by character
        for ch in seg.text:
            if out and out[-1][1] == seg.style:
                out[-1] = (out[-1][0] + ch, seg.style)
            else:
                out.append((ch, seg.style))
    return out


def screen_lines(widget) -> list[list[tuple[str, Style]]]:
    return [plain_segments(strip) for strip in widget.render_lines(widget.size.region)]


async def same_as_stock(app, pilot) -> None:
    """Each table focused in turn: both focused draw alike, both blurred too."""
    table, stock = app.query_one(FleetTable), app.query_one(DataTable)
    table.focus()
    await pilot.pause()
    assert table.size == stock.size
    table_focused, stock_blurred = screen_lines(table), screen_lines(stock)
    stock.focus()
    await pilot.pause()
    assert screen_lines(stock) == table_focused
    assert screen_lines(table) == stock_blurred
    table.focus()
    await pilot.pause()


async def test_lines_are_those_of_the_stock_table() -> None:
    """Header, zebra rows, the cursor row (focused or not), cropped and padded cells, a
    changed row, a scrolled table: screen line for screen line what DataTable draws."""
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table, stock = app.query_one(FleetTable), app.query_one(DataTable)
        await same_as_stock(app, pilot)
        table.move_cursor(row=3)
        stock.move_cursor(row=3)
        app.change("n001")  # a longer error than the column: cropped
        app.change("n004")
        await same_as_stock(app, pilot)
        assert "error 1: xxx" in table.render_line(2).text
        table.move_cursor(row=150)
        stock.move_cursor(row=150, animate=False)
        await pilot.pause()
        assert table.scroll_y == stock.scroll_y > 0
        await same_as_stock(app, pilot)


async def test_a_change_redraws_only_its_row() -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()
        before = [table.render_line(y) for y in range(6)]
        assert [table.render_line(y) for y in range(6)] == before
        kept = [table._lines[name][2] for name in NAMES[:5]]
        serials = [table._lines[name][1] for name in NAMES[:5]]
        app.change("n002")
        await pilot.pause()
        after = [table.render_line(y) for y in range(6)]
        assert "error 1" in after[3].text and "error" not in before[3].text
        assert [table._lines[name][2] for name in NAMES[:5]][:2] == kept[:2]
        assert table._lines["n000"][2] is kept[0] and table._lines["n002"][2] is not kept[2]
        # a line put together again has a number no line had: its old styling is not reused
        assert table._lines["n000"][1] == serials[0] and table._lines["n002"][1] > max(serials)
        assert table.get_cell("n002", "error").plain == "error 1: xxxxx"


async def test_equal_cells_are_drawn_once_whatever_their_object() -> None:
    """The drawn cells are kept by what they show (cell_key), not by the cell object's
    id(): equal cells of other rows, or made again, share one entry; a cell that looks
    otherwise (a style, a width) has its own."""
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()
        contents = table._contents
        assert all(isinstance(key, tuple) for key in contents.keys())
        # every row's power cell is its own object, all alike: drawn once for the column
        on = [key for key in contents.keys() if "● on" in key]
        assert len(on) == 1, on
        assert cell_key(Text("● on", style="green"), 9) != cell_key(Text("● on"), 9) != cell_key(Text("● on"), 8)
        before = len(contents)
        app.change("n001")
        app.change("n001")  # version 2: another error text, another mark
        await pilot.pause()
        assert len(contents) > before
        again = cells_of("n001", 2)  # new objects, the same cells: nothing new to draw
        size = len(contents)
        table.prepare(again)
        assert len(contents) == size


async def test_a_styled_line_is_reused_until_its_row_changes() -> None:
    """Lines Textual styled are kept by the number of the line they styled: a repaint of
    the same lines reuses them, a changed row is styled again, a scrolled table too."""
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()
        region = table.size.region
        first = table.render_lines(region)
        second = table.render_lines(region)
        assert all(a is b for a, b in zip(first, second, strict=True))
        app.change("n003")
        await pilot.pause()
        third = table.render_lines(region)
        changed = [y for y, (a, b) in enumerate(zip(second, third, strict=True)) if a is not b]
        assert changed == [4], changed  # the header is line 0: row 3 is line 4
        assert "error 1" in third[4].text
        table.scroll_to(y=10, animate=False, force=True)
        await pilot.pause()
        scrolled = table.render_lines(region)
        assert "n010" in scrolled[1].text and scrolled[0] is third[0]  # the header stays


async def test_keys_move_the_cursor_and_scroll() -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.press("down", "down")
        assert table.cursor_row == 2 and table.cursor_key == "n002"
        await pilot.press("up")
        assert table.cursor_row == 1
        page = table.size.height - 1  # rows under the header
        await pilot.press("pagedown")
        assert table.cursor_row == 1 + page
        assert table.scroll_y <= table.cursor_row < table.scroll_y + page  # in view
        await pilot.press("end")
        assert table.cursor_row == len(NAMES) - 1 and table.scroll_y == table.max_scroll_y
        await pilot.pause()
        assert "n199" in table.render_line(table.size.height - 1).text
        await pilot.press("pageup")
        assert table.cursor_row == len(NAMES) - 1 - page
        await pilot.press("home")
        assert table.cursor_row == 0 and table.scroll_y == 0
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ["n000"]


async def test_replacing_rows_keeps_the_cursor_in_range() -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table = app.query_one(FleetTable)
        table.move_cursor(row=120)
        table.replace_rows(NAMES[:10])
        await pilot.pause()
        assert table.row_count == 10 and table.cursor_row == 9 and table.scroll_y == 0
        assert table.rows == {name: i for i, name in enumerate(NAMES[:10])}
        table.replace_rows([])
        await pilot.pause()
        assert table.row_count == 0 and table.cursor_key is None
        assert "NODE" in table.render_line(0).text and table.render_line(1).text.strip() == ""
        await pilot.press("down", "enter")  # nothing to move to or select
        assert app.selected == []


async def test_mouse_hover_click_and_header_click() -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(110, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()
        plain = table.render_line(4)
        await pilot.hover(FleetTable, offset=(3, 4))  # row 3
        await pilot.pause()
        assert table._hover == 3 and table.render_line(4) != plain
        await pilot.click(FleetTable, offset=(3, 4))
        assert table.cursor_row == 3 and app.selected == []
        await pilot.click(FleetTable, offset=(3, 4))  # the cursor row again: selected
        await pilot.pause()
        assert app.selected == ["n003"]
        await pilot.click(FleetTable, offset=(5, 0))  # NODE's header (after the 3-cell mark column)
        await pilot.click(FleetTable, offset=(22, 0))  # POWER's
        await pilot.pause()
        assert app.headers == ["name", "power"]
        await pilot.press("down")  # a key: the hover highlight goes, as DataTable's does
        assert table._hover is None
