"""FleetTable: the fleet screen's table, a Line-API widget drawn straight from the rows' cells.

Textual's DataTable (and textual-fastdatatable, its Arrow-backed fork, which is
built on the same rendering path) pays per table change for what a 5,000-row
table of fixed-width one-line cells never needs: row heights summed to find a
row, every visible cell re-rendered through rich's Styled/Padding, y-offset lists
rebuilt on each filter.  Measured with ``bench/tui_scale.py`` that was 50-400 ms a
filter key.  Here a row is a list of one-line :class:`~rich.text.Text` cells from
``cells_for(key)``; its screen line is built once and kept until the row changes
(:meth:`FleetTable.refresh_rows`) or its stripe, cursor or hover state does; a
filter or sort is a new list of keys (:meth:`FleetTable.replace_rows`).

It looks and behaves as DataTable with ``cursor_type="row"`` and zebra stripes
(same component classes, under ``fleet-table--`` names, same colours from the
theme): header fixed at the top, row cursor, mouse hover, click to move the
cursor and click again (or enter) to select, header click to sort, page keys.

Both tables here (this one and :class:`HabitDataTable`, DataTable for the smaller
screens) take the keys of k9s, htop and less as well (:data:`HABIT_BINDINGS`):
``j``/``k``, ``g``/``G``, ctrl+d/ctrl+u half a page, ctrl+f/ctrl+b a page, and
``n``/``N`` to the next/previous row the screen's search predicate (``search``) matches.
They are the table's bindings, not the screen's, so typing in a filter line is not
taken for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.strip import Strip
from textual.widgets import DataTable

__all__ = ["HABIT_BINDINGS", "MOVE_KEYS", "FleetTable", "HabitDataTable", "LeanScrollBar", "TableColumn",
           "cell_key", "cell_segments", "same_cell"]

#: the habit keys every table takes (k9s, htop, less), on top of arrows, Home/End and PageUp/PageDown
HABIT_BINDINGS = [
    Binding("j", "cursor_down", "Cursor down", show=False),
    Binding("k", "cursor_up", "Cursor up", show=False),
    Binding("g", "first", "First row", show=False),
    Binding("G", "last", "Last row", show=False),
    Binding("ctrl+d", "half_page(1)", "Half page down", show=False),
    Binding("ctrl+u", "half_page(-1)", "Half page up", show=False),
    Binding("ctrl+f", "page_down", "Page down", show=False),
    Binding("ctrl+b", "page_up", "Page up", show=False),
    Binding("n", "search_next(1)", "Next match", show=False),
    Binding("N", "search_next(-1)", "Previous match", show=False),
]


def next_match(keys: Sequence[str], cursor: int, step: int, search: Callable[[str], bool] | None) -> int | None:
    """The row after (``step`` 1) or before (-1) ``cursor`` whose key ``search`` matches,
    wrapping around as less and vim do; None: no search, or no other row matches."""
    if search is None or not keys:
        return None
    count = len(keys)
    for i in range(1, count + 1):
        row = (cursor + step * i) % count
        if search(keys[row]):
            return row
    return None


#: the keys that move a table's cursor: help lists them though the footer does not
MOVE_KEYS = frozenset({binding.key for binding in HABIT_BINDINGS} | {
    "up", "down", "pageup", "pagedown", "home", "end"})


def same_cell(a, b) -> bool:
    """Cell equality that sees styles (rich's Text == compares the plain text only)."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return a == b


#: cells kept drawn (FleetTable._contents) and lines kept styled (FleetTable._styled)
CONTENTS_MAX, STYLED_MAX = 60_000, 2_000


def cell_key(cell: object, width: int) -> tuple:
    """What a cell draws as in a column ``width`` wide: a Text's words, style, spans and
    overflow (rich's Text compares its words only, and is not hashable), another object's
    ``str``.  Equal keys draw the same segments."""
    if isinstance(cell, Text):
        spans = cell.spans
        return (width, cell.plain, cell.style, tuple(spans) if spans else (), cell.overflow)
    return (width, str(cell))

_JOIN = Text("")
_BLANK = Style.null()


def cell_segments(console: Console, text: Text | object, inner: int, pad: int) -> list[Segment]:
    """``text`` as one table cell line, unstyled by the table: cropped to ``inner`` cells,
    ``pad`` blanks each side (as DataTable draws a cell with ``cell_padding``), in as
    few segments as draw it (blanks and unstyled text share one)."""
    text = Text(str(text)) if not isinstance(text, Text) else text
    if "\n" in text.plain or "\t" in text.plain:
        text = Text(text.plain.replace("\t", " ").split("\n", 1)[0], style=text.style)
    if text.cell_len > inner:
        text = text.copy()
        text.truncate(inner, overflow=text.overflow or "fold")
    left, right = " " * pad, " " * (max(0, inner - text.cell_len) + pad)
    if not text.spans:  # most cells: one style for the whole text (what rich renders it as, quicker)
        if not text.style or not text.plain:
            return [Segment(left + text.plain + right)]
        inside = [Segment(text.plain, console.get_style(text.style))]
    else:
        if text.style:  # as rich's own rendering does: the text's style becomes a span under the others
            text = _JOIN.join((text,))
        inside = list(text.render(console, end=""))
    return list(Segment.simplify([Segment(left), *inside, Segment(right)]))


def _plain_box(widget) -> bool:
    """No border, padding or outline: each line's look depends on its content only, not on its y."""
    styles = widget.styles
    return not any(styles.gutter) and not any(edge for edge, _ in styles.outline)


class LeanScrollBar(ScrollBar):
    """Textual's ScrollBar, with each distinct line styled once per repaint.

    A vertical bar is a column of a few distinct cells (track above, thumb, track
    below), but Textual styles each of its lines on its own: 2-5 ms to repaint the
    fleet table's bar, as much as the table's rows, on every filter key.  Lines of
    the same content come out the same (a scrollbar has no border, padding or
    outline), so here one of each is styled, by Textual, and the others reuse it.
    """

    def render_lines(self, crop: Region) -> list[Strip]:
        if self.BLANK or not _plain_box(self):
            return super().render_lines(crop)
        styled: dict[tuple, Strip] = {}
        out = []
        for y in crop.line_range:
            content = tuple(self.render_line(y))
            strip = styled.get(content)
            if strip is None:
                strip = styled[content] = super().render_lines(Region(crop.x, y, crop.width, 1))[0]
            out.append(strip)
        return out


class TableColumn(NamedTuple):
    """A column: its key, header label and width (without the padding either side)."""

    key: str
    label: str
    width: int


class FleetTable(ScrollView, can_focus=True):
    """Rows of one-line cells under a fixed header, with a row cursor; built for thousands of rows.

    ``cells_for(key)`` gives a row's cells in column order; the screen keeps them.
    :meth:`replace_rows` shows a list of keys, :meth:`refresh_rows` says rows changed.
    """

    COMPONENT_CLASSES = {
        "fleet-table--header",
        "fleet-table--header-hover",
        "fleet-table--cursor",
        "fleet-table--hover",
        "fleet-table--even-row",
        "fleet-table--odd-row",
    }
    DEFAULT_CSS = """
    FleetTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .fleet-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .fleet-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .fleet-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .fleet-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .fleet-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .fleet-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .fleet-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .fleet-table--header-hover {
            background: $accent 30%;
        }
        & > .fleet-table--hover {
            background: $block-hover-background;
        }
    }
    """
    #: a new row count repaints the table and its scrollbars, not the whole screen
    #: (Widget's virtual_size asks for a layout of the screen: 5-20 ms each filter key)
    virtual_size = Reactive(Size(0, 0), layout=False)

    BINDINGS = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First row", show=False),
        Binding("end,ctrl+end", "last", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        *HABIT_BINDINGS,
    ]

    class RowSelected(Message):
        """Enter on the cursor row, or a click on it."""

        def __init__(self, table: FleetTable, key: str, row: int) -> None:
            super().__init__()
            self.table, self.key, self.row = table, key, row

        @property
        def control(self) -> FleetTable:
            return self.table

    class HeaderSelected(Message):
        """A click on a column's header."""

        def __init__(self, table: FleetTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> FleetTable:
            return self.table

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        #: a row's cells in column order (the screen keeps them)
        self.cells_for: Callable[[str], Sequence[object]] = lambda key: ()
        self.columns: tuple[TableColumn, ...] = ()
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._cursor = 0
        #: ``n``/``N`` go to the next/previous row whose key this matches (the screen sets it:
        #: the last search); None: they do nothing
        self.search: Callable[[str], bool] | None = None
        #: the row under the mouse (-1: the header), while the mouse moves over the table
        self._hover: int | None = None
        #: how many times each row changed (refresh_rows): a kept line of an older version is stale
        self._versions: dict[str, int] = {}
        #: the styles, for (pseudo classes, base style): see _styles
        self._style_sets: dict[tuple, dict[str, Style]] = {}
        self._state: tuple = ()
        #: a meta style per column: each cell stays a segment of its own (a screenshot draws
        #: cells apart, as DataTable's do), and an event's style names the column
        self._metas: list[Style] = []
        #: each cell's segments before the table's styles, by what it draws (:func:`cell_key`):
        #: (segments, and the segments styled, by (column style, post style)).  Equal cells of
        #: any rows share the work; a row shown again (other stripe, cursor, filter) reuses
        #: it.  The least recently drawn go first.
        self._contents: LRUCache[tuple, tuple[list[Segment], dict[tuple, list[Segment]]]] = LRUCache(CONTENTS_MAX)
        #: row style -> that style with each column's meta
        self._column_styles: dict[Style, list[Style]] = {}
        #: each line as Textual styled it (background, filters), by (the serial number of
        #: the line render_line gave, its horizontal scroll, crop columns); valid while
        #: ``_look`` stays the same
        self._styled: LRUCache[tuple[int, int, int, int], Strip] = LRUCache(STYLED_MAX)
        self._look: tuple = ()
        #: a new serial number for each line put together (_serial()): a kept line's
        #: number is never another line's
        self._serial = itertools.count(1).__next__
        #: each row's line as last drawn: key -> (what it was drawn for, serial, strip)
        self._lines: dict[str, tuple[tuple, int, Strip]] = {}
        self._header: tuple[tuple, int, Strip] | None = None
        #: the line below the last row: (width, style, serial, strip)
        self._blank: tuple[int, Style, int, Strip] | None = None

    # ------------------------------------------------------------ content
    def set_columns(self, columns: Iterable[tuple[str, str, int]]) -> None:
        """Show these columns ``(key, label, width)``; every kept line is redrawn."""
        self.columns = tuple(TableColumn(*column) for column in columns)
        self._metas = [Style.from_meta({"column": column.key}) for column in self.columns]
        self._column_styles.clear()
        self._lines.clear()
        self._header = None
        self._resize_virtual()
        self.refresh()

    def replace_rows(self, keys: Iterable[str]) -> None:
        """Show the rows ``keys``, in this order; the cursor stays on its row index (clamped)."""
        self._keys = list(keys)
        self._index = {key: i for i, key in enumerate(self._keys)}
        self._resize_virtual()
        self._cursor = self._clamp(self._cursor)
        self._scroll_to_cursor()
        self.refresh()

    def refresh_rows(self, keys: Iterable[str]) -> None:
        """These rows' cells changed: their lines are drawn again (now if on screen)."""
        versions, index = self._versions, self._index
        top, bottom = self._in_view()
        for key in keys:
            versions[key] = versions.get(key, 0) + 1
            row = index.get(key)
            if row is not None and top <= row < bottom:
                self._refresh_row(row)

    def _in_view(self) -> tuple[int, int]:
        """The rows on screen: from the first to before the second (one spare at the bottom)."""
        top = int(self.scroll_y)
        return top, top + self.size.height

    def keys_in_view(self) -> list[str]:
        """The rows on screen now."""
        return self._keys[slice(*self._in_view())]

    def _resize_virtual(self) -> None:
        width = sum(column.width + 2 for column in self.columns)
        size = Size(width, len(self._keys) + 1)
        if size != self.virtual_size:
            self.virtual_size = size
            if self.is_mounted:
                self._scroll_update(size)  # the scrollbars (a layout only if one shows or hides)

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> list[str]:
        """The rows shown, in order."""
        return self._keys

    @property
    def rows(self) -> dict[str, int]:
        """Row key -> row index, for the rows shown."""
        return self._index

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def row_key_at(self, row: int) -> str:
        return self._keys[row]

    def get_cell(self, key: str, column: str) -> object:
        """What row ``key`` shows in ``column`` now."""
        for i, col in enumerate(self.columns):
            if col.key == column:
                return self.cells_for(key)[i]
        raise KeyError(column)

    # ------------------------------------------------------------ cursor
    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def cursor_key(self) -> str | None:
        return self._keys[self._cursor] if self._keys else None

    def _clamp(self, row: int) -> int:
        return max(0, min(row, len(self._keys) - 1))

    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on ``row`` (clamped) and, unless told not to, scroll it into view."""
        row = self._clamp(row)
        if row != self._cursor:
            self._refresh_row(self._cursor)
            self._cursor = row
            self._refresh_row(row)
        if scroll:
            self._scroll_to_cursor()

    @property
    def cursor_in_view(self) -> bool:
        """The cursor's row is on screen (not scrolled out of view, and there is one)."""
        if not self._keys:
            return False
        top = int(self.scroll_y)
        return top <= self._cursor < top + max(0, self.scrollable_content_region.height - 1)

    def on_resize(self, event: events.Resize) -> None:
        """A shorter table (the filter line opened above it) keeps the cursor's row in view."""
        self._scroll_to_cursor()

    def _page(self) -> int:
        """Rows in view under the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        page = self.scrollable_content_region.height - 1
        if page <= 0:
            return
        top = int(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, force=True)
        elif self._cursor >= top + page:
            self.scroll_to(y=self._cursor - page + 1, animate=False, force=True)

    def _keyboard(self) -> None:
        """A key moved the cursor: the mouse's hover highlight goes (as DataTable does)."""
        if self._hover is not None:
            self._refresh_row(self._hover)
            self._hover = None

    def action_cursor_up(self) -> None:
        self._keyboard()
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self._keyboard()
        self.move_cursor(row=self._cursor + 1)

    def action_page_up(self) -> None:
        self._page_by(-1)

    def action_page_down(self) -> None:
        self._page_by(1)

    def _page_by(self, pages: int) -> None:
        """Scroll and move the cursor ``pages`` pages (negative: up)."""
        self._keyboard()
        step = pages * self._page()
        self.scroll_to(y=max(0, int(self.scroll_y) + step), animate=False, force=True)
        self.move_cursor(row=self._cursor + step, scroll=False)
        self._scroll_to_cursor()

    def action_half_page(self, direction: int) -> None:
        """ctrl+d / ctrl+u: the cursor half a page down (1) or up (-1), the view with it."""
        self._keyboard()
        step = direction * max(1, self._page() // 2)
        self.scroll_to(y=max(0, int(self.scroll_y) + step), animate=False, force=True)
        self.move_cursor(row=self._cursor + step, scroll=False)
        self._scroll_to_cursor()

    def action_search_next(self, step: int) -> None:
        """``n`` / ``N``: the next / previous row the last search matches."""
        row = next_match(self._keys, self._cursor, step, self.search)
        if row is not None:
            self._keyboard()
            self.move_cursor(row=row)

    def action_first(self) -> None:
        self._keyboard()
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self._keyboard()
        self.move_cursor(row=len(self._keys) - 1)

    def action_select_cursor(self) -> None:
        self._keyboard()
        if self._keys:
            self.post_message(self.RowSelected(self, self._keys[self._cursor], self._cursor))

    # ------------------------------------------------------------ mouse
    def _at(self, event: events.MouseEvent) -> tuple[int, str | None] | None:
        """(row, column key) under the mouse: row -1 is the header; None: not on the table."""
        offset = event.get_content_offset(self)
        if offset is None:
            return None
        row = -1 if offset.y == 0 else offset.y - 1 + int(self.scroll_y)
        if row >= len(self._keys):
            return None
        x, column = offset.x + int(self.scroll_x), None
        for col in self.columns:
            if x < col.width + 2:
                column = col.key
                break
            x -= col.width + 2
        return row, column

    def _on_mouse_move(self, event: events.MouseMove) -> None:
        at = self._at(event)
        hover = at[0] if at is not None else None
        if hover != self._hover:
            for row in (self._hover, hover):
                if row is not None:
                    self._refresh_row(row)
            self._hover = hover

    def _on_leave(self, event: events.Leave) -> None:
        if self._hover is not None:
            self._refresh_row(self._hover)
            self._hover = None

    async def _on_click(self, event: events.Click) -> None:
        at = self._at(event)
        if at is None:
            return
        row, column = at
        event.stop()
        if row == -1:
            if column is not None:
                self.post_message(self.HeaderSelected(self, column))
            return
        if row == self._cursor:
            self.post_message(self.RowSelected(self, self._keys[row], row))
        else:
            self.move_cursor(row=row)

    # ------------------------------------------------------------ drawing
    def _refresh_row(self, row: int) -> None:
        """Repaint table row ``row`` (-1: the header) if it is on screen."""
        if row == -1:
            self.refresh_line(int(self.scroll_y))  # the header's screen line is the top one
        else:
            self.refresh_line(row + 1)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_sets.clear()
        self._column_styles.clear()
        self._lines.clear()
        self._header = None
        self.refresh()

    def _styles(self) -> dict[str, Style]:
        """The table's styles for its current pseudo classes (focus changes the cursor's)."""
        state = (self.get_pseudo_class_state(), self.rich_style)
        styles = self._style_sets.get(state)
        if styles is None:
            component = self.get_component_rich_style
            cursor = component("fleet-table--cursor")
            hover = component("fleet-table--hover")
            styles = self._style_sets[state] = {
                "base": state[1],
                "header": self.get_component_styles("fleet-table--header").rich_style,
                "header-hover": hover + component("fleet-table--header-hover"),
                "even": self.get_component_styles("fleet-table--even-row").rich_style,
                "odd": self.get_component_styles("fleet-table--odd-row").rich_style,
                "cursor": cursor,
                "cursor-post": Style.from_color(color=cursor.color),
                "hover": hover,
            }
        self._state = state
        return styles

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        """The vertical scrollbar, a :class:`LeanScrollBar` (made as Widget makes its own)."""
        if self._vertical_scrollbar is None:
            bar = self._vertical_scrollbar = LeanScrollBar(
                vertical=True, name="vertical", thickness=self.scrollbar_size_vertical)
            bar.display = False
            self.app._start_widget(self, bar)
        return self._vertical_scrollbar

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines in ``crop``, styled by Textual (background, tint, the app's filters);
        a line drawn before (the same strip from render_line) is not styled again while
        the table's look is unchanged.  Styling is most of the cost of a line, and a
        filter, sort or scroll often brings back rows drawn before."""
        self._styles()  # once per paint: the pseudo classes and base style of this paint
        if not _plain_box(self):
            return super().render_lines(crop)
        styles = self.styles
        look = (self.size.width, self.background_colors, tuple(self.get_line_filters()), self._state, styles.tint,
                self.opacity, styles.text_opacity, styles.hatch)
        if look != self._look:
            self._look = look
            self._styled.clear()
        styled, x, width = self._styled, crop.x, crop.width
        scroll_x = int(self.scroll_x)
        out: list[Strip | None] = []
        keys = []
        for y in crop.line_range:
            key = (self._line_at(y)[0], scroll_x, x, width)
            out.append(styled.get(key))
            keys.append(key)
        # the lines not kept, styled by Textual a run of lines at a time
        top, i = crop.y, 0
        while i < len(out):
            if out[i] is not None:
                i += 1
                continue
            end = i
            while end < len(out) and out[end] is None:
                end += 1
            lines = super().render_lines(Region(crop.x, top + i, crop.width, end - i))
            for j, strip in enumerate(lines, i):
                out[j] = strip
                styled.set(keys[j], strip)
            i = end
        return out  # type: ignore[return-value]

    def render_line(self, y: int) -> Strip:
        serial, strip = self._line_at(y)
        if self._blank is not None and serial == self._blank[2]:
            return strip  # below the last row: the widget's width already
        scroll_x, width = int(self.scroll_x), self.size.width
        if scroll_x or strip.cell_length > width:
            strip = strip.crop(scroll_x, scroll_x + width)
        return strip.adjust_cell_length(width, self._style_sets[self._state]["base"])

    def _line_at(self, y: int) -> tuple[int, Strip]:
        """Screen line ``y`` before the horizontal scroll: (its serial number, its strip).
        The same number is the same strip: put together once, kept while what it shows
        (the row's cells, stripe, cursor, hover, the table's look) is unchanged."""
        styles = self._style_sets.get(self._state) or self._styles()
        width = self.size.width
        if y == 0:
            return self._header_line(styles, width)
        row = y - 1 + int(self.scroll_y)
        if row >= len(self._keys):
            if self._blank is None or self._blank[:2] != (width, styles["base"]):
                self._blank = (width, styles["base"], self._serial(), Strip.blank(width, styles["base"]))
            return self._blank[2:]
        return self._row_line(row, styles, width)

    def _header_line(self, styles: dict[str, Style], width: int) -> tuple[int, Strip]:
        hover = self._hover == -1
        drawn_for = (width, hover, self._state)
        if self._header is not None and self._header[0] == drawn_for:
            return self._header[1:]
        row_style = styles["header"]
        component = styles["header-hover"] if hover else _BLANK
        strip = self._line([Text(column.label) for column in self.columns], row_style, component, _BLANK, width)
        self._header = (drawn_for, self._serial(), strip)
        return self._header[1:]

    def _row_line(self, row: int, styles: dict[str, Style], width: int) -> tuple[int, Strip]:
        key = self._keys[row]
        cursor, hover = row == self._cursor, row == self._hover
        drawn_for = (self._versions.get(key, 0), row % 2, cursor, hover, width, self._state)
        kept = self._lines.get(key)
        if kept is not None and kept[0] == drawn_for:
            return kept[1:]
        row_style = styles["odd" if row % 2 else "even"]
        component, post = _BLANK, _BLANK
        if hover:
            component = styles["hover"]
        if cursor:
            component = component + styles["cursor"]
            post = styles["cursor-post"]
        strip = self._line(self.cells_for(key), row_style, component, post, width)
        kept = self._lines[key] = (drawn_for, self._serial(), strip)
        return kept[1:]

    def _line(self, cells: Sequence[object], row_style: Style, component: Style, post: Style, width: int) -> Strip:
        """One table line: each cell padded and cropped to its column, then the row's style
        carried on to the widget's right edge (as DataTable draws it)."""
        style = row_style + component
        post_style = post or None
        segments: list[Segment] = []
        used = 0
        for column, cell, column_style in zip(self.columns, cells, self._styles_by_column(style), strict=False):
            segments += self._styled_cell(column, cell, column_style, post_style)
            used += column.width + 2
        if used < width:
            segments.append(Segment(" " * (width - used), style))
        return Strip(segments, max(width, used))  # cells differ in meta: nothing to simplify

    def _styles_by_column(self, style: Style) -> list[Style]:
        """``style`` with each column's meta."""
        styles = self._column_styles.get(style)
        if styles is None:
            styles = self._column_styles[style] = [style + meta for meta in self._metas]
        return styles

    def _styled_cell(self, column: TableColumn, cell: object, column_style: Style, post: Style | None) -> list[Segment]:
        """A cell's segments in its column, styled.  Made once per cell object, and styled
        once per look (stripe, cursor, hover): rows that share cell objects (the screen
        gives equal cells as one object) share the work."""
        contents = self._contents
        key = cell_key(cell, column.width)
        content = contents.get(key)
        if content is None:
            content = (cell_segments(self.app.console, cell, column.width, 1), {})
            contents.set(key, content)
        styled = content[1].get((column_style, post))
        if styled is None:
            styled = content[1][column_style, post] = list(Segment.apply_style(content[0], column_style, post))
        return styled

    def prepare(self, cells: Sequence[object]) -> None:
        """Make a row's cells ready to draw, in either stripe, before the row is shown
        (the screen does it in idle time): a filter that shows rows never drawn then
        only puts their lines together."""
        styles = self._style_sets.get(self._state) or self._styles()
        for stripe in ("even", "odd"):
            column_styles = self._styles_by_column(styles[stripe])
            for column, cell, column_style in zip(self.columns, cells, column_styles, strict=False):
                self._styled_cell(column, cell, column_style, None)


class HabitDataTable(DataTable):
    """Textual's DataTable with the habit keys (:data:`HABIT_BINDINGS`), for a row cursor."""

    BINDINGS = [*HABIT_BINDINGS]

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        #: ``n``/``N``: rows whose key this matches; None: they do nothing
        self.search: Callable[[str], bool] | None = None

    def _keys(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]

    def action_first(self) -> None:
        self.action_scroll_top()

    def action_last(self) -> None:
        self.action_scroll_bottom()

    def action_half_page(self, direction: int) -> None:
        """ctrl+d / ctrl+u: the cursor half a page down (1) or up (-1), the view with it."""
        if not self.row_count:
            return
        page = self.scrollable_content_region.height - (self.header_height if self.show_header else 0)
        step = direction * max(1, page // 2)
        self.scroll_relative(y=step, animate=False, force=True)
        self.move_cursor(row=max(0, min(self.row_count - 1, self.cursor_row + step)), animate=False)

    def action_search_next(self, step: int) -> None:
        """``n`` / ``N``: the next / previous row the last search matches."""
        row = next_match(self._keys(), self.cursor_row, step, self.search)
        if row is not None:
            self.move_cursor(row=row, animate=False)
