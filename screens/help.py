"""Help: the keys of the screen it was opened from, the node selection syntax, the symbols.

``?`` opens it from anywhere (the app binds it; screens may bind it too); escape,
``q`` or ``?`` close it.  The keys are read from the screen's active bindings when
help opens, so they are always the ones that screen really has.  The screen's
docstring's first paragraph says what it shows, wrapped to the pane; a screen's
``HELP_NOTES`` (example, meaning) explain how to read its lines.
"""

from __future__ import annotations

from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from screens.common import INSECURE, SYMBOLS
from screens.table import MOVE_KEYS

__all__ = ["HelpScreen", "SELECTION_HELP", "binding_rows", "first_paragraph"]

#: the node selection syntax (inventory/selection.py), one (example, meaning) per row
SELECTION_HELP: tuple[tuple[str, str], ...] = (
    ("dal1-r02-n08", "one node by name"),
    ("dal1-r02-n[01-10]", "a range; [01-04,07] lists and ranges combine"),
    ("dal1-r0*-n1?", "a glob over node names (* any text, ? one character)"),
    ("@gpu", "the members of a group; @rack[01-03] names three groups"),
    ("rack=r01", "an attribute matches (the value may be a glob)"),
    ("role!=gpu", "an attribute does not match, or the node lacks it"),
    ("off  critical  drift  error", "state words: power, health, image drift, poll errors"),
    ("miscabled  stale", "more state words: cabling mismatch, never polled"),
    ("rack=r01&off", "& intersects: the nodes every part matches"),
    ("a,b", "comma: the union of several terms"),
    ("-TERM", "exclude, applied after every inclusion (-role=gpu&rack=r01)"),
    ("all  *", "every node"),
)

#: what each status symbol means, in the order they are explained
SYMBOL_HELP: tuple[tuple[str, str], ...] = (
    ("on", "powered on"),
    ("off", "powered off"),
    ("unknown", "not known yet, or cannot be vouched for"),
    ("ok", "health ok / image as desired / switch reachable"),
    ("warning", "health warning"),
    ("critical", "health critical (a sensor past its critical threshold)"),
    ("error", "a poll error: the BMC did not answer as asked (the row says why)"),
    ("drift", "running image differs from the inventory"),
    ("mismatch", "miscabled: on another switch port than the inventory says"),
    ("ambiguous", "seen on several switch ports"),
    ("unmanaged", "no desired image in the inventory"),
    ("up", "switch port link up"),
    ("down", "switch port link down"),
)

#: the fleet summary's freshness (screens.summary)
FRESHNESS_HELP = ("in the fleet summary: every node was polled within the last minute; past it, "
                  "the oldest poll's age in whole minutes, ↻3m (↻40 to go: 40 nodes not polled yet)")

#: the fleet summary's count of exposed BMC passwords, and node detail's warning line
INSECURE_HELP = ("in the fleet summary (⚠45 at 80 columns): nodes whose BMC password goes over plain "
                 "HTTP or unverified TLS; node detail says why on a line of its own")


def binding_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(where, keys, what) for each action bound on ``screen``, its focused widget and the app.

    ``where`` is ``screen`` (the screen's own bindings, even where a focused table
    handles the key first), ``widget`` (the focused widget's shown bindings, and the
    keys that move its cursor: :data:`~screens.table.MOVE_KEYS`) or
    ``app`` (bindings every screen has).  Keys bound to one action are merged
    (``esc, q``).
    """
    app = screen.app
    grouped: dict[tuple[str, str, str], list[str]] = {}

    def add(where: str, binding: Binding) -> None:
        if binding.system or not (binding.description or where == "screen"):
            return
        what = binding.description or binding.action.replace("_", " ")
        grouped.setdefault((where, binding.action, what), []).append(app.get_key_display(binding))

    own = [] if type(screen).BINDINGS is Screen.BINDINGS else list(Binding.make_bindings(type(screen).BINDINGS))
    for binding in own:
        add("screen", binding)
    own_keys = {b.key for b in own}
    for active in screen.active_bindings.values():
        node = active.node
        if node is app and active.binding.action != "command_palette" and active.binding.key not in own_keys:
            add("app", active.binding)
        elif node is not screen and node is not app and (active.binding.show or active.binding.key in MOVE_KEYS):
            add("widget", active.binding)
    for binding in Binding.make_bindings(Screen.BINDINGS):
        if binding.key not in own_keys:
            add("app", binding)
    if app.ENABLE_COMMAND_PALETTE:
        add("app", Binding(app.COMMAND_PALETTE_BINDING, "command_palette",
                           "Command palette: go to a node, rack, switch or screen"))
    order = {"screen": 0, "widget": 1, "app": 2}
    rows = [(where, ", ".join(dict.fromkeys(keys)), what) for (where, _, what), keys in grouped.items()]
    return sorted(rows, key=lambda r: order[r[0]])


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph as one line (the screen's summary: whole sentences,
    however the source wrapped them, never its first line cut mid-sentence); empty when
    there is none."""
    lines = []
    for line in (doc or "").strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines).replace("``", "")  # reST literals read as the keys they name


def _notes(rows) -> Table:
    """Example lines, each with its meaning below it, indented (examples are too wide to
    stand beside their meaning at 80 columns)."""
    table = Table.grid()
    table.add_column()
    for example, meaning in rows:
        table.add_row(example)
        table.add_row(Padding(Text(meaning, style="dim"), (0, 0, 0, 4)))
    return table


def _table(rows, key_style: str = "bold") -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, style=key_style)
    table.add_column()
    for left, right in rows:
        table.add_row(left, right)
    return table


class HelpScreen(ModalScreen):
    """The keys of one screen, the selection syntax and the status symbols."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help { width: 100; max-width: 100%; height: 90%; border: round $primary;
                       background: $surface; padding: 0 1; }
    HelpScreen #help-title { text-style: bold; height: 1; }
    HelpScreen .help-section { text-style: bold; color: $accent; margin-top: 1; }
    HelpScreen #help-doc { color: $text-muted; }
    HelpScreen #help-hint { color: $text-muted; height: 1; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.target_name = type(screen).__name__.removesuffix("Screen") or type(screen).__name__
        self.target_doc = first_paragraph(type(screen).__doc__)
        #: (example, meaning) rows a screen explains itself with (its ``HELP_NOTES``)
        self.notes: tuple[tuple[str, str], ...] = tuple(getattr(type(screen), "HELP_NOTES", ()))
        #: read now: once help is on top, the screen below is no longer active
        self.rows = binding_rows(screen)

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(f"Help: {self.target_name}", id="help-title")
            with VerticalScroll(id="help-body"):
                if self.target_doc:  # wrapped, and scrolled with the rest in a short pane
                    yield Static(Text(self.target_doc), id="help-doc")
                yield Static("Keys on this screen", classes="help-section")
                yield Static(_table([(keys, what) for where, keys, what in self.rows if where != "app"]),
                             id="help-keys")
                if self.notes:
                    yield Static("Reading this screen", classes="help-section")
                    yield Static(_notes(self.notes), id="help-notes")
                yield Static("Everywhere", classes="help-section")
                app_rows = [(keys, what) for where, keys, what in self.rows if where == "app"]
                yield Static(_table(app_rows), id="help-app-keys")
                yield Static("Selecting nodes (filters, command ranges)", classes="help-section")
                yield Static(_table(SELECTION_HELP, key_style="bold cyan"), id="help-selection")
                yield Static("Status symbols", classes="help-section")
                symbols = [(Text(f"{SYMBOLS[w][0]} {w}", style=SYMBOLS[w][1]), meaning) for w, meaning in SYMBOL_HELP]
                symbols += [(Text("↻<1m"), FRESHNESS_HELP),
                            (Text(f"{INSECURE[0]} 45", style=INSECURE[1]), INSECURE_HELP)]
                yield Static(_table(symbols),
                             id="help-symbols")
            yield Static("escape, q or ? closes · arrows/pgup/pgdn scroll", id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss()
