"""The home screen: one row per node, a summary bar, live filter, sort and marks.

The columns follow the terminal width (:func:`screens.columns.layout`).  Built for
thousands of nodes (``bench/tui_scale.py``): :class:`~screens.table.FleetTable`
redraws only changed rows; equal cells are one object, drawn once; rows are made
ready to draw in idle time, and again after their node changed off screen; the
summary counts move per changed node (:class:`~screens.summary.FleetSummary`); the
filter selects through an index of every node's words
(:class:`~inventory.selection.AttrIndex`), built right after the first paint and
kept current, a slice at a time between keys, and is applied in the frame that
shows the typed character.

The filter forgives as a search box does (``select(..., loose=True)``): spaces mean
``&`` and a word that is no node, group, attribute value or state word matches as a
substring of names (``n19``, ``db01``, ``r02 critical``).  A filter that still
means nothing (an unknown group, a bad range) empties the table and says why in full
under the filter line.

Sorting shows in the header (``NODE ▲``); ``s`` goes to the next column, ``S``
reverses.  Rows re-sort as their values change; the cursor stays on its node.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.color import Color
from textual.containers import Horizontal
from textual.content import Content
from textual.geometry import Size
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from console.live.columns import Cell, age_cell, sort_key
from console.live.fleet import Fleet
from console.text import visible
from inventory.errors import FleetError
from inventory.ranges import compress, natural_key
from inventory.selection import AttrIndex, AttrValue, select
from screens.appref import FleetAppMixin
from screens.columns import BY_KEY, cell_text, layout
from screens.common import STATE_WORDS, FleetChanged, node_words, outside, words_signature
from screens.footer import KeyFooter
from screens.summary import FleetSummary
from screens.table import FleetTable, same_cell

if TYPE_CHECKING:  # the progress screen imports the action machinery: only its type here
    from screens.progress import ProgressScreen

__all__ = ["FilterInput", "FleetScreen"]


#: seconds of (re)reading nodes into the filter's index per slice, and per slice while the
#: operator types: a key waits for a slice under way.  Slices run back to back from the
#: first paint until every node is read (the first key finds the index built), then one
#: per 50 ms tick for the nodes that changed.
INDEX_SLICE_S, INDEX_SLICE_TYPING_S = 0.004, 0.001
#: nodes read between two looks at the clock (a few hundred microseconds)
INDEX_STEP = 16
#: rows made ready to draw per 50 ms tick once the index is current (~2 ms), not while
#: the operator types (rows are made for the next filter, not this one)
ROWS_SLICE = 20
#: the operator is typing: input less than this many seconds ago
TYPING_S = 0.5
#: distinct cells kept as one object each (FleetScreen._shared)
ALIKE_MAX = 20_000

#: the columns whose cells are each node's own (the others are shared: FleetScreen._shared)
_OWN = frozenset({"name", "rack"})
#: the mark column's cells (the marks are the screen's: no column of the engine says them)
_MARKED, _UNMARKED = Cell("●", "marked"), Cell(" ")


class FilterInput(Input):
    """The filter line: an Input that applies its text as it changes, in the same frame.

    - ``on_text`` is called with the new text as soon as it changes, before the
      typed character is painted: the filtered table comes with the echo.  Through
      the Input's Changed message it would land a frame later (17 ms at 60 fps,
      more under load), as the message bubbles up after the echo's paint.
    - Typing does not re-lay out the screen.  Input sets its virtual width to the
      text's length on every key, and Widget's ``virtual_size`` asks for a layout of
      the whole screen when it changes: with a 5,000-row table under it, 5-15 ms a
      key.  The input's size does not follow its text (it is ``1fr`` wide, scrolled
      horizontally by the Input itself), so here a new virtual size repaints the
      input only.
    """

    virtual_size = Reactive(Size(0, 0), layout=False)

    def __init__(self, *, on_text: Callable[[str], None], **kwargs) -> None:
        super().__init__(**kwargs)
        self._on_text = on_text

    def watch_value(self, value: str) -> None:
        self._on_text(value)


class _Matches:
    """Whether a node is one of a filter's rows (``n``/``N``), for a table's ``search``: the
    set is made at the first question, not on every key typed (20,000 rows: a millisecond)."""

    __slots__ = ("_names", "_set")

    def __init__(self, names: list[str]) -> None:
        self._names = tuple(names)  # a copy: a tenth of the set's cost
        self._set: frozenset[str] | None = None

    def __call__(self, name: str) -> bool:
        if self._set is None:
            self._set = frozenset(self._names)
        return name in self._set


class FleetScreen(FleetAppMixin, Screen):
    """Fleet table with filter (`/`), sort (click a header or `s`), marks (space, `a`).

    The columns follow the terminal width (:func:`layout`).  Rows are built once per
    filter or layout change from a per-node cell cache; a :class:`FleetChanged`
    batch updates only the cells that changed.  The filter is live (a node that
    powers off joins ``off``); a sorted table re-sorts as values change, the cursor
    staying on its node.
    """

    CSS_PATH = "fleet.tcss"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear", show=False),
        Binding("space", "mark", "Mark"),
        Binding("a", "mark_all", "Mark all", show=False),  # in ? help; the footer keeps ? and q at 80 columns
        Binding("u", "unmark_all", "Unmark", show=False),
        Binding("s", "sort_next", "Sort", show=False),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
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
        #: what is wrong with the filter typed (None: nothing); the table is empty meanwhile
        self.filter_problem: str | None = None
        self.sort_key = ""  # "" = inventory order
        self._sort_reverse = False
        #: each shown node's sort key as of its last sort (a live re-sort compares them)
        self._sort_values: dict[str, Any] = {}
        self.columns: tuple[tuple[str, str, int], ...] = ()
        self._compact: frozenset[str] = frozenset()
        self._cache: dict[str, dict[str, Text]] = {}  # name -> column key -> cell
        #: one object per distinct (column, cell) (see _shared); distinct errors and ages come and go
        self._alike: LRUCache[tuple[str, Cell], Text] = LRUCache(ALIKE_MAX)
        #: nodes whose rows are not made yet (ordered): made ahead in idle time (_work_ahead)
        self._unmade: dict[str, None] = {}
        self._index: AttrIndex | None = None  # every node's selection words, for the filter
        self._index_built = False
        self._signatures: dict[str, tuple] = {}  # name -> words_signature when last indexed
        self._banner_shown: str | None = None
        self._name_width = 18
        self._rack_width = 7
        #: marks an action took, cleared when it finishes: (its progress screen, nodes)
        self._consumed: list[tuple[ProgressScreen, list[str]]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="banner")
        yield FleetSummary(id="summary")
        with Horizontal(id="filter-bar"):
            yield FilterInput(on_text=self._apply_filter, id="filter",
                              placeholder="filter: n19, r02 critical, rack=r01, @group, off, drift, error…")
        yield Static(id="filter-problem")
        yield FleetTable(id="fleet")
        yield KeyFooter()

    @property
    def fleet(self) -> Fleet:
        return self.console.fleet

    def on_mount(self) -> None:
        nodes = self.fleet.site.nodes
        self._name_width = min(30, max([len("NODE")] + [len(n.name) for n in nodes]))
        self._rack_width = min(12, max([len("RACK/U")] + [len(f"{n.rack}/{n.u or '-'}") for n in nodes]))
        self.shown = [n.name for n in nodes]
        self._names = tuple(self.shown)  # inventory order
        self._index = AttrIndex(self.shown, self._node_words)
        self.query_one("#filter-bar").display = False
        self.query_one("#filter-problem").display = False
        table = self.query_one(FleetTable)
        table.focus()  # not the (hidden) filter input
        table.cells_for = self._row
        self._relayout(self.console.size.width)
        self._refresh_summary()
        self.set_interval(1.0, self._tick)
        self.set_interval(0.05, self._work_ahead)
        self.call_after_refresh(self._start_index)

    def on_screen_resume(self) -> None:
        """Back on top (an action's progress closed): its marks go at once if it finished."""
        self._clear_consumed_marks()

    def on_resize(self, event: events.Resize) -> None:
        self._relayout(event.size.width)
        self._refresh_summary()

    def _relayout(self, width: int) -> None:
        """Pick the columns for ``width``; rebuild the table when they change."""
        table = self.query_one(FleetTable)
        columns = layout(width - table.styles.scrollbar_size_vertical,
                         name_width=self._name_width, rack_width=self._rack_width)
        if columns == self.columns:
            return
        self.columns = columns
        self._compact = frozenset(k for k, _, w in columns if BY_KEY[k].narrow == w != BY_KEY[k].width)
        self._cache.clear()
        self._unmade = dict.fromkeys(self._names)
        cursor = self._cursor_name()
        with self.console.batch_update():
            table.set_columns(self._headers())
            self._fill(cursor)

    def _headers(self) -> list[tuple[str, str, int]]:
        """The columns with the sort column's header marked: ``NODE ▲`` (``▼`` reversed)."""
        marker = "▼" if self._sort_reverse else "▲"
        out = []
        for key, label, width in self.columns:
            if key == self.sort_key:
                label = f"{label} {marker}" if len(label) + 2 <= width else label[:max(0, width - 1)] + marker
            out.append((key, label, width))
        return out

    # ------------------------------------------------------------ rows
    def _cells(self, name: str) -> dict[str, Text]:
        """Every visible column's cell for one node, in the current forms (cached)."""
        cells = self._cache.get(name)
        if cells is None:
            cells = self._cache[name] = self._make_cells(name)
        return cells

    def _shared(self, key: str, cell: Cell) -> Text:
        """One object for equal cells of a column (most nodes' power, health, image, age
        and port cells are alike): drawn once by the table, whichever rows show it.  Cells
        are never changed in place: a new state is a new cell."""
        kept = self._alike.get((key, cell))
        if kept is None:
            kept = cell_text(key, cell)
            self._alike.set((key, cell), kept)
        return kept

    def _make_cells(self, name: str) -> dict[str, Text]:
        """The node's cells as the columns give them (:meth:`~console.live.columns.Column.cell`),
        drawn in their state's look; the marks are the screen's own."""
        fleet, compact, now, shared = self.fleet, self._compact, self.console.clock(), self._shared
        cells = {"mark": shared("mark", _MARKED if name in self.marked else _UNMARKED)}
        for key, _, _ in self.columns:
            if key != "mark":
                cell = BY_KEY[key].cell(fleet, name, "compact" if key in compact else "full", now)
                cells[key] = cell_text(key, cell) if key in _OWN else shared(key, cell)
        return cells

    def _row(self, name: str) -> list[Text]:
        cells = self._cells(name)
        return [cells[key] for key, _, _ in self.columns]

    def _fill(self, cursor: str | None = None) -> None:
        """(Re)build the rows for ``self.shown`` in sort order; the cursor stays on ``cursor``."""
        table = self.query_one(FleetTable)
        self.shown = self._sorted(self.shown)
        table.replace_rows(self.shown)
        if cursor is not None and cursor in table.rows:
            table.move_cursor(row=table.get_row_index(cursor))
        self._refresh_ages()

    def _node_words(self, name: str) -> dict[str, AttrValue]:
        return node_words(self.fleet, self.fleet.site.node(name))

    def _start_index(self) -> None:
        self.run_worker(self._build_index(), name="filter index", group="filter-index")

    async def _build_index(self) -> None:
        """The filter's index of every node, read after the first paint in slices back to
        back, each a few ms, keys and paints in between: built well before a first key
        comes, which would otherwise read every node still unread (at 20,000 nodes,
        seconds at 50 ms ticks)."""
        index = self._index
        while index is not None and index.pending and not self._index_built:
            self._index_slice()
            await asyncio.sleep(0)

    def _index_slice(self) -> None:
        """(Re)read nodes into the filter's index for a slice's time (less while typing)."""
        index = self._index
        if index is None:
            return
        typing = self.console.input_quiet_for() < TYPING_S
        deadline = time.perf_counter() + (INDEX_SLICE_TYPING_S if typing else INDEX_SLICE_S)
        while index.pending:
            index.sync(limit=INDEX_STEP)
            if time.perf_counter() >= deadline:
                break
        if not index.pending and not self._index_built:
            self._index_built = True
            index.frozen(self._names)  # the names as a set, kept for every select: not on the first key
            self.console.freeze_heap()  # thousands of long-lived tuples and sets

    def _work_ahead(self) -> None:
        """In idle time, a slice at a time, so that a key typed finds it (nearly) done:
        the filter's index, kept current as nodes change (:meth:`_build_index` builds
        it); then, while the operator is not typing, the rows not shown yet, made ready
        to draw, so that a filter showing rows never drawn does not make them then."""
        index = self._index
        if index is None:  # not mounted yet
            return
        if index.pending:
            self._index_slice()
            return
        unmade = self._unmade
        if unmade and self.console.input_quiet_for() >= TYPING_S:
            table = self.query_one(FleetTable)
            # a slice's names in one pass: each next(iter()) would scan the slots taken before
            for name in list(itertools.islice(unmade, ROWS_SLICE)):
                del unmade[name]
                table.prepare(self._row(name))

    def _select(self, text: str) -> list[str] | FleetError:
        """The nodes the filter ``text`` selects, in inventory order, or the problem with it."""
        fleet = self.fleet
        names = self._names
        if not text.strip():
            return list(names)
        try:
            # the index is the words, kept; before it is built (not mounted yet) ask for them
            attrs = self._index if self._index is not None else self._node_words
            return select(text, names, attrs=attrs, groups=fleet.site.groups, allow_empty=True,
                          vocabulary=STATE_WORDS, loose=True)
        except FleetError as exc:
            return exc

    def _apply_filter(self, text: str) -> None:
        """Show the nodes ``text`` selects (on every key typed: the index makes it ~1-5 ms)."""
        self._show_filter(text, self._select(text))

    def _show_filter(self, text: str, chosen: list[str] | FleetError) -> None:
        self.filter_text = text
        if isinstance(chosen, FleetError):
            self._flag(str(chosen))
            chosen = []  # rows of another filter would read as this one's
        else:
            self._flag(None)
            if text.strip():  # n/N step through these rows, also once the filter is cleared
                self.query_one(FleetTable).search = _Matches(chosen)
        shown = self.shown
        if len(chosen) != len(shown) or (chosen != shown and set(chosen) != set(shown)):
            self.shown = chosen
            cursor = self._cursor_name()
            with self.console.batch_update():
                self._fill(cursor)
        self._refresh_summary()

    def _flag(self, problem: str | None) -> None:
        """Show what is wrong with the filter (red border on its line, the reason in full
        under it, wrapped, and as its tooltip), or that nothing is.  Inline styles, not a
        CSS class: a class change re-applies the stylesheet to the line, ~2 ms a key."""
        if problem == self.filter_problem:
            return
        self.filter_problem = problem
        line = self.query_one("#filter", Input)
        why = self.query_one("#filter-problem", Static)
        if problem is None:
            line.styles.border = None  # the stylesheet's again
            line.tooltip = None
            why.display = False
        else:
            line.styles.border = ("tall", Color.parse(self.console.current_theme.error))
            line.tooltip = Content(visible(problem))  # not markup: ranges have brackets, and it echoes the filter
            why.update(Text.assemble(("✗ filter rejected, no rows shown: ", "bold"), visible(problem)))
            why.display = True

    # ------------------------------------------------------------ sorting
    def _sort_value(self, key: str):
        """A function name -> sort key for column ``key``, from the fleet state (not the cells)."""
        if key == "mark":
            return lambda n: (n not in self.marked, natural_key(n))
        return sort_key(self.fleet, key)

    def _sorted(self, names: list[str]) -> list[str]:
        """``names`` in sort order; each one's sort key is kept (:meth:`_resort`)."""
        if not self.sort_key:
            self._sort_values = {}
            if not self._sort_reverse:
                return list(names)  # a selection comes in inventory order
            index = {n.name: i for i, n in enumerate(self.fleet.site.nodes)}
            return sorted(names, key=index.__getitem__, reverse=True)
        value = self._sort_value(self.sort_key)
        values = self._sort_values = {name: value(name) for name in names}
        return sorted(names, key=values.__getitem__, reverse=self._sort_reverse)

    def _resort(self, changed: Iterable[str]) -> bool:
        """Rows follow their values: when a changed node's sort key puts it out of order
        with its neighbours, the rows are sorted again (the kept keys of the others
        reused) and the cursor stays on its node.  True if the rows moved."""
        values = self._sort_values
        if not self.sort_key or not values:
            return False
        value = self._sort_value(self.sort_key)
        table = self.query_one(FleetTable)
        rows, shown = table.rows, self.shown
        last = len(shown) - 1
        out_of_order = False
        for name in changed:
            if name not in values:
                continue
            new = values[name] = value(name)
            i = rows.get(name)
            if i is None or out_of_order:
                continue
            before = values[shown[i - 1]] if i > 0 else None
            after = values[shown[i + 1]] if i < last else None
            if self._sort_reverse:
                before, after = after, before
            if (before is not None and new < before) or (after is not None and after < new):
                out_of_order = True
        if not out_of_order:
            return False
        cursor = self._cursor_name()
        self.shown = sorted(shown, key=values.__getitem__, reverse=self._sort_reverse)
        table.replace_rows(self.shown)
        if cursor is not None and cursor in table.rows:
            table.move_cursor(row=table.get_row_index(cursor))
        return True

    def sort_by(self, key: str, *, reverse: bool = False) -> None:
        """Sort the rows by column ``key`` (any column, shown or not); the header marks it."""
        if key not in BY_KEY:
            raise ValueError(f"no column {key!r}")
        self.sort_key = key
        self._sort_reverse = reverse
        with self.console.batch_update():
            self.query_one(FleetTable).set_columns(self._headers())
            self._fill(self._cursor_name())  # the cursor stays on its node

    # ------------------------------------------------------------ live updates
    @on(FleetChanged)
    def _fleet_changed(self, message: FleetChanged) -> None:
        if message.switches:  # a switch polled the first time: miscabling may be known now
            self.query_one(FleetSummary).switches_changed(message.switches)
        if not message.nodes:
            self._refresh_summary()
            return
        self.query_one(FleetSummary).nodes_changed(message.nodes)
        nodes, signatures = self.fleet.nodes, self._signatures
        moved = []
        for name in message.nodes:
            signature = words_signature(nodes[name])
            if signatures.get(name) != signature:
                signatures[name] = signature
                moved.append(name)
        if self._index is not None:
            self._index.invalidate(moved)
        table = self.query_one(FleetTable)
        keys = [key for key, _, _ in self.columns]
        # cells are remade now only for rows on screen; the others when they scroll into view
        on_screen = set(table.keys_in_view())
        changed = []
        for name in message.nodes:
            old = self._cache.pop(name, None)
            if name not in on_screen:  # its cells are remade ahead, or when it is shown
                self._unmade[name] = None
                changed.append(name)
                continue
            new = self._cells(name)
            if old is None or any(not same_cell(old[key], new[key]) for key in keys):
                changed.append(name)
        table.refresh_rows(changed)
        self._resort(message.nodes)
        if moved and self.filter_text.strip():
            # the filter is live: nodes whose state words moved may now be in or out
            chosen = self._select(self.filter_text)
            if not isinstance(chosen, FleetError):
                self._show_filter(self.filter_text, chosen)  # refills only if the set changed
                return
        self._refresh_summary()

    def _tick(self) -> None:
        """Once a second: ages move, the stale banner follows the poller, finished actions'
        marks go."""
        self._clear_consumed_marks()
        self._refresh_ages()
        self._refresh_summary()

    def _refresh_ages(self) -> None:
        """The rows on screen show their nodes' age as of now (a row made ahead, or kept
        while off screen, holds the age of when it was made)."""
        table = self.query_one(FleetTable)
        now = self.console.clock()
        changed = []
        # WHY and POWER say since when (``· 14m``, ``○ off 3h``): they move with the clock too
        timed = [key for key in ("why", "power") if any(k == key for k, _, _ in self.columns)]
        compact = self._compact
        for name in table.keys_in_view():
            age = self._shared("age", age_cell(self.fleet.nodes[name].polled_at, now))
            cells = self._cells(name)
            moved = not same_cell(cells["age"], age)
            if moved:
                cells["age"] = age
            for key in timed:
                cell = BY_KEY[key].cell(self.fleet, name, "compact" if key in compact else "full", now)
                if cell.since or key == "why":
                    drawn = cell_text(key, cell) if key in _OWN else self._shared(key, cell)
                    if not same_cell(cells[key], drawn):
                        cells[key] = drawn
                        moved = True
            if moved:
                changed.append(name)
        table.refresh_rows(changed)

    def _refresh_summary(self) -> None:
        """The summary bar, and the banner when the poller is stale or the site unreachable."""
        self.query_one(FleetSummary).show(shown=len(self.shown), marked=len(self.marked))
        message = self.console.staleness() or ""
        if message != self._banner_shown:
            self._banner_shown = message
            banner = self.query_one("#banner", Static)
            banner.update(outside(message))
            banner.display = bool(message)

    # ------------------------------------------------------------ actions
    def action_filter(self) -> None:
        bar = self.query_one("#filter-bar")
        bar.display = True
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        line = self.query_one("#filter", Input)
        if line.value:
            line.value = ""  # which applies it
        else:
            self._apply_filter("")
        self.query_one("#filter-bar").display = False
        self.query_one(FleetTable).focus()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)  # enter: the result now, whatever a thread is doing
        if not event.value.strip():
            self.query_one("#filter-bar").display = False
        self.query_one(FleetTable).focus()

    def _cursor_name(self) -> str | None:
        return self.query_one(FleetTable).cursor_key

    # ------------------------------------------------------------ what actions act on
    def action_targets(self) -> list[str]:
        """The nodes an action (``p``, ``x``, ``i``) takes: the marked ones, else the node
        under the cursor when its row is on screen (none otherwise: never a node the
        operator cannot see)."""
        if self.marked:
            return sorted(self.marked, key=natural_key)
        table = self.query_one(FleetTable)
        cursor = table.cursor_key
        return [cursor] if cursor is not None and table.cursor_in_view else []

    def target_warnings(self, names: list[str]) -> list[str]:
        """What the operator may not see about ``names``, in words that stop them: marked
        nodes the filter hides, and a filter typed but not applied (the rows are the
        last good filter's)."""
        out = []
        shown = set(self.shown)
        hidden = [n for n in names if n in self.marked and n not in shown]
        if hidden:
            total = len(self.marked)
            out.append(f"{len(hidden)} of the {total} marked node{'' if total == 1 else 's'} "
                       f"{'is' if len(hidden) == 1 else 'are'} hidden by the filter and in this plan: "
                       f"{compress(hidden)}")
        if self.filter_problem is not None:
            out.append(f"the filter {self.filter_text.strip()!r} was not applied ({self.filter_problem}): "
                       "no rows are shown")
        return out

    def action_started(self, names: list[str], progress: ProgressScreen) -> None:
        """An action on ``names`` started (``progress``: its screen): the marks that chose
        them are cleared when it finishes, so they cannot be acted on again by mistake."""
        consumed = [n for n in names if n in self.marked]
        if consumed:
            self._consumed.append((progress, consumed))

    def _clear_consumed_marks(self) -> None:
        """Clear the marks of the actions that finished (checked with the ages, once a second)."""
        done = [(progress, names) for progress, names in self._consumed if progress.finished]
        if not done:
            return
        self._consumed = [entry for entry in self._consumed if not entry[0].finished]
        # a run that never started (refused: a lock directory unsafe) keeps its marks to try again
        cleared = [n for progress, names in done if progress.result is not None for n in names if n in self.marked]
        self.marked.difference_update(cleared)
        self._redraw_marks(cleared)

    def _redraw_marks(self, names) -> None:
        names = list(names)
        for name in names:
            if name in self._cache:
                self._cache[name]["mark"] = self._shared("mark", _MARKED if name in self.marked else _UNMARKED)
        self.query_one(FleetTable).refresh_rows(names)
        self._refresh_summary()

    def action_mark(self) -> None:
        name = self._cursor_name()
        if name is None:
            return
        self.marked.symmetric_difference_update({name})
        self._redraw_marks([name])
        table = self.query_one(FleetTable)
        table.move_cursor(row=table.cursor_row + 1)

    def action_mark_all(self) -> None:
        self.marked.update(self.shown)
        self._redraw_marks(self.shown)

    def action_unmark_all(self) -> None:
        old, self.marked = self.marked, set()
        self._redraw_marks(old)

    def action_sort_next(self) -> None:
        """``s``: sort by the next shown column (the header marks it)."""
        keys = [key for key, _, _ in self.columns if key != "mark"]
        following = keys.index(self.sort_key) + 1 if self.sort_key in keys else 0
        self.sort_by(keys[following % len(keys)])

    def action_sort_reverse(self) -> None:
        """``S``: the same order, the other way round (inventory order too)."""
        if self.sort_key:
            self.sort_by(self.sort_key, reverse=not self._sort_reverse)
        else:
            self._sort_reverse = not self._sort_reverse
            self._fill(self._cursor_name())

    @on(FleetTable.HeaderSelected)
    def _header(self, event: FleetTable.HeaderSelected) -> None:
        key = event.key
        self.sort_by(key, reverse=not self._sort_reverse if key == self.sort_key else False)

    def action_open_node(self) -> None:
        name = self._cursor_name()
        if name:
            self.console.open_node(name)

    @on(FleetTable.RowSelected)
    def _row_selected(self, event: FleetTable.RowSelected) -> None:
        self.console.open_node(event.key)

    def action_racks(self) -> None:
        self.console.open_screen("racks")

    def action_switches(self) -> None:
        self.console.open_screen("switches")

    def action_help(self) -> None:
        self.console.action_help()

