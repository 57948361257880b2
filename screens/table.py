"""FleetTable: Textual's DataTable with the shortcuts a fixed-width 5,000-row table needs.

Kept apart from the fleet screen so that what reaches into DataTable's private
state (pinned: textual<9) sits in one place, with its own tests
(``tests/test_table.py``: the fast cell rendering gives the very segments the
stock one does).
"""

from __future__ import annotations

from itertools import chain
from typing import Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.cache import LRUCache
from textual._segment_tools import line_crop
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import ColumnKey, Row, RowKey

__all__ = ["FleetTable", "same_cell"]


def same_cell(a, b) -> bool:
    """Cell equality that sees styles (rich's Text == compares the plain text only)."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return a == b


_JOIN = Text("")


def unlink(cache) -> None:
    """Break the ring of a Textual LRUCache about to be cleared.

    Its entries are a doubly linked ring; ``clear()`` drops the ring whole, which only
    the cyclic garbage collector can free: thousands of entries per filter, collected in
    50-120 ms pauses while typing (``bench/tui_scale.py``).  Emptied first, every entry
    is freed at once by reference counting."""
    links = getattr(cache, "_cache", None)
    if isinstance(cache, LRUCache) and links:
        for link in links.values():
            link.clear()


def cell_segments(console, text: Text, inner: int, pad: int) -> list[Segment]:
    """``text`` as one table cell line, unstyled by the table: cropped to ``inner`` cells,
    ``pad`` blanks each side (as DataTable's Padding and ``render_lines`` give it)."""
    if text.cell_len > inner:
        text = text.copy()
        text.truncate(inner, overflow=text.overflow or "fold")
    if text.style:  # as rich's own rendering does: the text's style becomes a span under the others
        text = _JOIN.join((text,))
    blank = Style.null()
    segments = [Segment(" " * pad, blank)] if pad else []
    segments += text.render(console, end="")
    fill = inner - text.cell_len
    if fill > 0:
        segments.append(Segment(" " * fill, blank))
    if pad:
        segments.append(Segment(" " * pad, blank))
    return segments


class FleetTable(DataTable):
    """The built-in DataTable, with the shortcuts a fixed-width 5,000-row table needs.

    Measured with Textual 8.2 (``bench/tui_scale.py``), the stock table:

    - measures every cell of every new row, to grow auto-width columns, even when
      every column has a fixed width (seconds for 5,000 rows);
    - adds rows one by one, each re-validating the cursor;
    - keys every rendered cell on one table-wide update counter, so one changed cell
      re-renders every visible cell, each through rich's Styled/Padding (~0.3 ms);
    - sums the heights of every row above to find a row's region (each cursor move);
    - resolves CSS twice for every row line it draws.

    So: no measuring when no column is auto-width; :meth:`replace_rows` fills the
    table in one go and keeps rows across filters; a per-row version in the render
    caches' keys, so :meth:`update_cells` re-renders only changed rows; one-line
    cells drawn directly; row regions by arithmetic; row styles remembered.  These
    reach into DataTable's private state (pinned: textual<9).
    """

    def __init__(self, *args, **kwargs) -> None:
        #: row styles by (kind, base style, pseudo classes): see _get_row_style (set before
        #: DataTable's __init__, whose reactive watchers clear the caches)
        self._row_styles: dict[tuple, Style] = {}
        #: every row is one line high (replace_rows): row regions are arithmetic
        self._uniform = True
        #: how many times each row changed: part of every rendering cache key (see _bump)
        self._versions: dict[RowKey, int] = {}
        #: the {"row", "column"} meta style of each cell position (clicks read it)
        self._meta_styles: dict[tuple[int, int], Style] = {}
        #: each cell's segments before the table's styles, by id(cell): (cell, width, segments).
        #: Cells are never changed in place (a change is a new cell), and rows moved by a
        #: filter or a sort keep their cells.
        self._contents: dict[int, tuple[Text, int, list[Segment]]] = {}
        super().__init__(*args, **kwargs)
        #: rows whose cells are out of date, and what gives a row's cells (in column order)
        self._stale: set[RowKey] = set()
        self.cells_for = None
        #: every row ever shown with these columns, shown now or not: key -> (cells, Row, RowKey).
        #: A filter shows a subset again without remaking (or re-hashing) its rows.
        self._store: dict[str, tuple[dict, Row, RowKey]] = {}

    def mark_stale(self, keys: Iterable[str]) -> None:
        """These rows changed but are off-screen (or not in the table): their cells are remade
        when next needed."""
        rows = {RowKey(key) for key in keys}
        if rows:
            self._stale |= rows
            self._bump(rows)

    def _bump(self, rows: Iterable[RowKey]) -> None:
        """These rows changed: their cached renderings (cells, row lines, screen lines) are
        out of date.  Each row's version is in those caches' keys, so a new version misses
        them; the stale entries age out of the LRU caches (no scan of thousands of keys)."""
        versions = self._versions
        for row in rows:
            versions[row] = versions.get(row, 0) + 1
        unlink(self._row_renderable_cache)  # the stock path's, by row index: a screenful
        self._row_renderable_cache.clear()

    def _freshen(self, row_key: RowKey) -> None:
        if row_key in self._stale:
            self._stale.discard(row_key)
            if row_key in self._data and self.cells_for is not None:
                columns = [column.key for column in self.ordered_columns]
                self.update_cells((row_key.value, column, cell)
                                  for column, cell in zip(columns, self.cells_for(row_key.value)))

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False):
        """One cell's lines; one-line text (headers included) the quick way, the rest stock.

        The stock path renders every cell through rich's Styled(Padding(cell)) and
        ``render_lines`` (~0.3 ms a cell: 120 ms for a screenful of a fresh filter);
        a one-line Text is cropped, padded and styled directly to the same segments
        (``tests/test_table.py`` compares the two).
        """
        header = row_index == -1
        if column_index < 0 or row_index < -1 or 0 <= row_index < self.fixed_rows or column_index < self.fixed_columns:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._header_row_key if header else self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor,
                     self._update_count, self._pseudo_class_state, self._versions.get(row_key, 0))
        cache = self._cell_render_cache
        lines = cache.get(cache_key)
        if lines is not None:
            return lines
        if header:
            cell, height = self.columns[column_key].label, self.header_height
        else:
            self._freshen(row_key)
            row = self.rows.get(row_key)
            cell = self._data[row_key].get(column_key) if row is not None else None
            height = row.height if row is not None and not row.auto_height else 0
        inner = width - 2 * self.cell_padding
        if (height != 1 or not isinstance(cell, Text) or inner < 0
                or "\n" in cell.plain or "\t" in cell.plain or cell.justify not in (None, "default", "left")):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            header, False, False, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        where = (row_index, column_index)
        meta = self._meta_styles.get(where)
        if meta is None:  # kept: a Style's hash is computed once, and style sums then hit rich's cache
            if len(self._meta_styles) > 20_000:
                self._meta_styles.clear()
            meta = self._meta_styles[where] = Style.from_meta({"row": row_index, "column": column_index})
        content = self._contents.get(id(cell))
        if content is None or content[0] is not cell or content[1] != inner:
            if len(self._contents) > 50_000:
                self._contents.clear()
            content = self._contents[id(cell)] = (cell, inner,
                                                  cell_segments(self.app.console, cell, inner, self.cell_padding))
        lines = cache[cache_key] = [list(Segment.apply_style(content[2], base_style + meta + component_style,
                                                             post_style))]
        return lines

    def add_row(self, *args, **kwargs):
        self._uniform = False  # a row of any height: the stock region arithmetic again
        return super().add_row(*args, **kwargs)

    def _get_row_region(self, row_index: int) -> Region:
        """As the stock one, in O(1): the stock one sums the heights of every row above
        (each cursor move and each changed row asks: O(rows) at 5,000 rows)."""
        if not self._uniform:
            return super()._get_row_region(row_index)
        if not self.is_valid_row_index(row_index):
            return Region(0, 0, 0, 0)
        width = sum(column.get_render_width(self) for column in self.columns.values()) + self._row_label_column_width
        return Region(0, self._row_y(row_index), max(self.size.width, width), 1)

    def _get_cell_region(self, coordinate: Coordinate) -> Region:
        """As the stock one, in O(1) rows (see :meth:`_get_row_region`)."""
        if not self._uniform:
            return super()._get_cell_region(coordinate)
        if not self.is_valid_coordinate(coordinate):
            return Region(0, 0, 0, 0)
        row_index, column_index = coordinate
        columns = self.ordered_columns
        x = sum(column.get_render_width(self) for column in columns[:column_index]) + self._row_label_column_width
        return Region(x, self._row_y(row_index), columns[column_index].get_render_width(self), 1)

    def _row_y(self, row_index: int) -> int:
        return row_index + (self.header_height if self.show_header else 0)

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """The stock screen line, with the row's version in its cache key (see :meth:`_bump`)."""
        width = self.size.width
        try:
            row_key, y_offset_in_row = self._get_offsets(y)
        except LookupError:
            return Strip.blank(width, base_style)
        cache_key = (y, x1, x2, width, self.cursor_coordinate, self.hover_coordinate, base_style,
                     self.cursor_type, self._show_hover_cursor, self._update_count, self._pseudo_class_state,
                     self._versions.get(row_key, 0), row_key)
        strip = self._line_cache.get(cache_key)
        if strip is not None:
            return strip
        fixed, scrollable = self._render_line_in_row(row_key, y_offset_in_row, base_style,
                                                     cursor_location=self.cursor_coordinate,
                                                     hover_location=self.hover_coordinate)
        fixed_width = sum(column.get_render_width(self) for column in self.ordered_columns[: self.fixed_columns])
        fixed_line: list[Segment] = list(chain.from_iterable(fixed)) if fixed else []
        scrollable_line: list[Segment] = list(chain.from_iterable(scrollable))
        segments = fixed_line + line_crop(scrollable_line, x1 + fixed_width, x2, width)
        strip = Strip(segments).adjust_cell_length(width, base_style).simplify()
        self._line_cache[cache_key] = strip
        return strip

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        """The stock row style, remembered: the stock one resolves CSS for every row line
        (``rich_style`` walks the widget's ancestors), twice, which was most of a repaint."""
        if row_index == -1:
            kind = "header"
        elif row_index < self.fixed_rows:
            kind = "fixed"
        elif self.zebra_stripes:
            kind = "odd" if row_index % 2 else "even"
        else:
            return base_style
        key = (kind, base_style, self._pseudo_class_state)
        style = self._row_styles.get(key)
        if style is None:
            style = self._row_styles[key] = super()._get_row_style(row_index, base_style)
        return style

    def notify_style_update(self) -> None:
        self._row_styles.clear()
        super().notify_style_update()

    def _clear_caches(self) -> None:
        self._row_styles.clear()
        for name in ("_row_render_cache", "_cell_render_cache", "_row_renderable_cache", "_line_cache",
                     "_offset_cache", "_ordered_row_cache"):
            unlink(getattr(self, name, None))
        super()._clear_caches()

    def _render_line_in_row(self, row_key, line_no, base_style, cursor_location, hover_location):
        """The stock row line, less the CSS lookups for row labels and fixed columns (none here),
        for a row cursor (the fleet's); any other table takes the stock path."""
        cursor_type = self.cursor_type
        if cursor_type != "row" or self.fixed_columns or (self._labelled_row_exists and self.show_row_labels):
            return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)
        cache_key = (row_key, line_no, base_style, cursor_location, hover_location, cursor_type,
                     self.show_cursor, self._show_hover_cursor, self._update_count, self._pseudo_class_state,
                     self._versions.get(row_key, 0))
        cached = self._row_render_cache.get(cache_key)
        if cached is not None:
            return cached
        row_index = self._row_locations.get(row_key)
        if row_index is None:
            row_index = -1
        row_style = self._get_row_style(row_index, base_style)
        highlight = self._should_highlight
        scrollable_row = []
        table_width = self._row_label_column_width
        for column_index, column in enumerate(self.ordered_columns):
            width = column.get_render_width(self)
            table_width += width
            cell = Coordinate(row_index, column_index)
            scrollable_row.append(self._render_cell(
                row_index, column_index, row_style, width,
                cursor=highlight(cursor_location, cell, cursor_type),
                hover=highlight(hover_location, cell, cursor_type))[line_no])
        # as the stock table: the row's style carries on to the widget's right edge
        remaining = max(0, self.size.width - table_width)
        extend_style, _ = self._get_styles_to_render_cell(
            row_index == -1, False, False,
            highlight(hover_location, Coordinate(row_index or 0, 0), cursor_type),
            row_index == cursor_location.row, self.show_cursor, self._show_hover_cursor, False, False)
        extend_style = row_style + extend_style
        extend_style += Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
        scrollable_row.append([Segment(" " * remaining, extend_style)])
        pair = ([], scrollable_row)
        self._row_render_cache[cache_key] = pair
        return pair

    def _get_row_renderables(self, row_index: int):
        if self._stale and row_index >= 0:
            row_key = self._row_locations.get_key(row_index)
            if row_key is not None:
                self._freshen(row_key)
        return super()._get_row_renderables(row_index)

    def get_cell(self, row_key, column_key):
        self._freshen(RowKey(row_key) if isinstance(row_key, str) else row_key)
        return super().get_cell(row_key, column_key)

    def get_row(self, row_key):
        self._freshen(RowKey(row_key) if isinstance(row_key, str) else row_key)
        return super().get_row(row_key)

    def clear(self, columns: bool = False):
        self._contents.clear()
        self._uniform = True  # every row one line high, until add_row() says otherwise
        if columns:  # the stored rows are cells of these columns
            self._stale.clear()
            self._store.clear()
        return super().clear(columns)

    def _update_dimensions(self, new_rows) -> None:
        if not any(column.auto_width for column in self.columns.values()):
            rows = self.rows
            new_rows = [key for key in new_rows
                        if key in rows and (rows[key].label is not None or rows[key].auto_height)]
        super()._update_dimensions(new_rows)

    def replace_rows(self, keys: Iterable[str]) -> None:
        """Show the rows ``keys``, in order (height 1, no labels); the cells of a row not
        stored (or stale) come from ``cells_for(key)``.

        As ``clear()`` then ``add_row()`` for each, less what costs with thousands of
        rows: the stock ``clear()`` builds the list of every row's y offset to empty it,
        and every added row is hashed, stored and validated again.
        """
        self._clear_caches()
        columns = [column.key for column in self.ordered_columns]
        store, stale, make = self._store, self._stale, self.cells_for
        data: dict[RowKey, dict] = {}
        rows: dict[RowKey, Row] = {}
        locations: dict[RowKey, int] = {}
        for index, key in enumerate(keys):
            entry = store.get(key)
            if entry is None or (stale and entry[2] in stale):
                row_key = entry[2] if entry is not None else RowKey(key)
                stale.discard(row_key)
                entry = store[key] = (dict(zip(columns, make(key))), Row(row_key, 1), row_key)
            cells, row, row_key = entry
            data[row_key] = cells
            rows[row_key] = row
            locations[row_key] = index
        self._data, self.rows = data, rows
        self._row_locations = TwoWayDict(locations)
        self._require_update_dimensions = True
        self._labelled_row_exists = False
        self._update_count += 1
        self.hover_coordinate = Coordinate(0, 0)
        self.cursor_coordinate = self.cursor_coordinate  # clamps, highlights the first row
        self.check_idle()
        self.refresh()

    def update_cells(self, changes: Iterable[tuple[str, str, object]]) -> None:
        """Set cells ``(row key, column key, value)``; only their renderings are redone."""
        rows: set[RowKey] = set()
        for row, column, value in changes:
            row_key, column_key = RowKey(row), ColumnKey(column)
            old = self._data[row_key].get(column_key)
            if old is value or same_cell(old, value):
                continue
            self._data[row_key][column_key] = value
            rows.add(row_key)
        if not rows:
            return
        self._bump(rows)
        if len(rows) > 40:
            self.refresh()
            return
        locations = self._row_locations
        for row_key in rows:  # only those lines are painted again
            index = locations.get(row_key)
            if index is not None:
                self.refresh_row(index)
