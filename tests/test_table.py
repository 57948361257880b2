"""FleetTable (screens/table.py): its shortcuts give what the stock DataTable gives.

The table renders one-line text cells itself, keeps rows across filters and
remembers row styles; each is checked here against the stock DataTable path on
the same table, so a Textual upgrade that changes the stock rendering fails here
rather than on screen.
"""

from __future__ import annotations

import pytest
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from screens.table import FleetTable

COLUMNS = (("mark", " ", 1), ("name", "NODE", 14), ("power", "POWER", 9), ("error", "ERROR", 20))


def cells_of(name: str, version: int = 0) -> list:
    return [
        Text(" "),
        Text(name, style="bold" if version else ""),
        Text.assemble(("● ", "green"), ("on" if not version else "off", "dim")),
        Text(f"error {version}: " + "x" * (5 * version), style="red") if version else Text(""),
    ]


class TableApp(App):
    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.versions: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield FleetTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(FleetTable)
        table.cells_for = lambda name: cells_of(name, self.versions.get(name, 0))
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        table.replace_rows(self.names)


NAMES = [f"n{i:03d}" for i in range(200)]


def lines(rendered) -> list[list[Segment]]:
    return [list(Segment.simplify(line)) for line in rendered]


@pytest.mark.parametrize("base", [Style(), Style(color="white", bgcolor="#202020")])
async def test_cells_render_as_the_stock_table_renders_them(base: Style) -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(FleetTable)
        app.versions["n002"] = 9  # a long error: cropped to its column
        table.mark_stale(["n002"])
        await pilot.pause()
        compared = 0
        for row in range(-1, 6):  # the header too
            for column, (_, _, width) in enumerate(COLUMNS):
                for cursor in (False, True):
                    for hover in (False, True):
                        table._cell_render_cache.clear()
                        ours = table._render_cell(row, column, base, width + 2, cursor, hover)
                        table._cell_render_cache.clear()
                        stock = DataTable._render_cell(table, row, column, base, width + 2, cursor, hover)
                        assert lines(ours) == lines(stock), (row, column, cursor, hover)
                        compared += 1
        assert compared == 7 * len(COLUMNS) * 4
        assert "error 9: xxxxxxxxxxx" in "".join(s.text for s in table._render_cell(2, 3, base, 22)[0])


async def test_row_lines_render_as_the_stock_table_renders_them() -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()
        for row in range(0, 4):
            key = table._row_locations.get_key(row)
            for cursor_row in (0, row):
                cursor = table.cursor_coordinate._replace(row=cursor_row)
                table._row_render_cache.clear()
                table._cell_render_cache.clear()
                ours = table._render_line_in_row(key, 0, Style(), cursor, cursor)
                table._row_render_cache.clear()
                table._cell_render_cache.clear()
                stock = DataTable._render_line_in_row(table, key, 0, Style(), cursor, cursor)
                assert [list(Segment.simplify(cell)) for cell in ours[1]] == [list(Segment.simplify(cell)) for cell in stock[1]]
                assert ours[0] == stock[0] == []


async def test_rows_hidden_by_a_filter_come_back_current() -> None:
    """A row changed while filtered out shows its new cells when the filter lets it back."""
    app = TableApp(NAMES)
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(FleetTable)
        table.replace_rows(NAMES[:10])
        await pilot.pause()
        assert table.row_count == 10
        app.versions["n150"] = 2
        table.mark_stale(["n150"])  # changed while not in the table
        table.replace_rows(NAMES)
        await pilot.pause()
        assert table.get_cell("n150", "error").plain == "error 2: xxxxxxxxxx"
        assert table.get_cell("n149", "error").plain == ""
        assert [table._row_locations.get_key(i).value for i in range(3)] == NAMES[:3]
        # cells updated in place while shown are what a later filter shows again
        table.update_cells([("n001", "error", Text("live"))])
        table.replace_rows(["n001"])
        table.replace_rows(NAMES)
        assert table.get_cell("n001", "error").plain == "live"


async def test_row_styles_follow_a_theme_change() -> None:
    app = TableApp(NAMES)
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()
        before = table._get_row_style(1, Style())
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await pilot.pause()
        after = table._get_row_style(1, Style())
        assert after == DataTable._get_row_style(table, 1, Style())
        assert after != before


async def test_changed_rows_are_painted_again_from_their_new_cells() -> None:
    """Renderings are cached per row version: a change (in place, or marked stale while off
    screen) is painted anew, and the rows that did not change keep their cached lines."""
    app = TableApp(NAMES)
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(FleetTable)
        await pilot.pause()

        def line(y: int) -> str:
            return table._render_line(y, 0, table.size.width, Style()).text

        assert "error 5" not in line(2)
        before_other = table._render_line(3, 0, table.size.width, Style())
        table.update_cells([("n001", "error", Text("error 5: in place"))])  # row 1 is line y=2
        assert "error 5: in place" in line(2)
        assert table._render_line(3, 0, table.size.width, Style()) is before_other  # still cached
        # changed while off screen: marked stale, remade when it scrolls into view
        far = table.row_count - 1
        app.versions[NAMES[far]] = 3
        table.mark_stale([NAMES[far]])
        table.move_cursor(row=far, animate=False)
        await pilot.pause()
        shown = [table.render_line(y).text for y in range(table.size.height)]  # as scrolled
        assert any("error 3: xxxxxxxxxxx" in text for text in shown)
