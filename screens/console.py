"""Serial consoles inside the TUI: live VT100 panes, one node or a grid of them.

Each pane shows one node's console through the process's
:class:`~console.serial.broker.ConsoleBroker` session (one per node, shared with every
other viewer), rendered by a real VT100 emulator (pyte), so a boot menu, a progress
bar or a full-screen installer looks as it would on the node's screen.  Panes are
read-only: ``t`` types into the focused one (it becomes the console's one writer,
asking before it takes the console over from another holder), ``ctrl+]`` stops
typing, ``a`` attaches the whole terminal (the app is suspended; ``~.`` comes back
to the same screen), ``b`` sends a break while typing.

What the node prints is outside text: pyte consumes its escape sequences into a grid
of characters, and a character that is still a control or format character is drawn
as ``?``, so nothing the node sends reaches the operator's terminal as a sequence.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyte
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.app import SuspendNotSupported
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Footer, Static

from console.errors import FleetError
from console.serial.stream import ConsoleBusy
from console.text import visible
from screens.appref import FleetAppMixin

if TYPE_CHECKING:
    from console.serial.broker import ConsoleEvent, ConsoleSession

__all__ = ["ConsoleScreen", "ConsolePane", "ConsoleView", "key_bytes", "MAX_PANES"]

#: the most consoles one screen watches at once (a 3 x 3 grid)
MAX_PANES = 9
#: keys typed into a console, as a terminal would send them
_KEYS: dict[str, bytes] = {
    "enter": b"\r", "tab": b"\t", "backspace": b"\x7f", "escape": b"\x1b", "delete": b"\x1b[3~",
    "up": b"\x1b[A", "down": b"\x1b[B", "right": b"\x1b[C", "left": b"\x1b[D",
    "home": b"\x1b[H", "end": b"\x1b[F", "pageup": b"\x1b[5~", "pagedown": b"\x1b[6~",
    "insert": b"\x1b[2~", "shift+tab": b"\x1b[Z",
    **{f"f{n}": seq for n, seq in zip(range(1, 13), (b"\x1bOP", b"\x1bOQ", b"\x1bOR", b"\x1bOS", b"\x1b[15~",
                                                      b"\x1b[17~", b"\x1b[18~", b"\x1b[19~", b"\x1b[20~",
                                                      b"\x1b[21~", b"\x1b[23~", b"\x1b[24~"), strict=True)},
}
#: the key that stops typing (as telnet's escape); everything else goes to the node
STOP_TYPING = "ctrl+right_square_bracket"


def key_bytes(event: events.Key) -> bytes | None:
    """What a terminal sends for ``event``, or None for a key a serial console has no use for."""
    if event.key in _KEYS:
        return _KEYS[event.key]
    if event.key.startswith("ctrl+") and len(event.key) == 6 and event.key[5].isalpha():
        return bytes([ord(event.key[5].lower()) - ord("a") + 1])
    if event.character and event.is_printable:
        return event.character.encode("utf-8")
    return None


_COLOURS = {"default": None, "black": "black", "red": "red", "green": "green", "brown": "yellow",
            "yellow": "yellow", "blue": "blue", "magenta": "magenta", "cyan": "cyan", "white": "white",
            "brightblack": "bright_black", "brightred": "bright_red", "brightgreen": "bright_green",
            "brightbrown": "bright_yellow", "brightyellow": "bright_yellow", "brightblue": "bright_blue",
            "brightmagenta": "bright_magenta", "brightcyan": "bright_cyan", "brightwhite": "bright_white"}


def _colour(name: str) -> str | None:
    if name in _COLOURS:
        return _COLOURS[name]
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return "#" + name
    return None


def _safe_char(data: str) -> str:
    """A cell's character, or ``?`` for one that would act on the terminal (control, format).
    The empty cell the emulator leaves after a wide character draws nothing: the wide
    character already takes its column."""
    if not data:
        return ""
    for ch in data:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            return "?"
    return data


class ConsoleView(Widget, can_focus=True):
    """A VT100 screen fed with a console's bytes, drawn cell by cell."""

    DEFAULT_CSS = """
    ConsoleView { height: 1fr; width: 1fr; background: $background; }
    ConsoleView:focus { background: $boost; }
    """

    #: typing: keys go to the node (set by the pane)
    typing: reactive[bool] = reactive(False)

    def __init__(self, *, name: str | None = None, id: str | None = None) -> None:  # noqa: A002
        super().__init__(name=name, id=id)
        self.vt = pyte.Screen(80, 24)
        self._stream = pyte.ByteStream(self.vt)
        self._styles: dict[tuple, Style] = {}

    def feed(self, data: bytes) -> None:
        """Show ``data`` as the node's terminal would."""
        self._stream.feed(data)
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        cols, rows = max(event.size.width, 20), max(event.size.height, 3)
        if (cols, rows) != (self.vt.columns, self.vt.lines):
            self.vt.resize(rows, cols)
            self.refresh()

    def text(self) -> str:
        """The screen as plain text (tests and incident notes)."""
        return "\n".join(line.rstrip() for line in self.vt.display)

    def _style(self, ch) -> Style:
        key = (ch.fg, ch.bg, ch.bold, ch.italics, ch.underscore, ch.reverse, ch.strikethrough)
        style = self._styles.get(key)
        if style is None:
            style = self._styles[key] = Style(color=_colour(ch.fg), bgcolor=_colour(ch.bg), bold=ch.bold or None,
                                               italic=ch.italics or None, underline=ch.underscore or None,
                                               reverse=ch.reverse or None, strike=ch.strikethrough or None)
        return style

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y >= self.vt.lines:
            return Strip.blank(width)
        row = self.vt.buffer[y]
        cursor = self.vt.cursor
        show_cursor = self.typing and self.has_focus and not cursor.hidden and cursor.y == y
        segments: list[Segment] = []
        run: list[str] = []
        run_style: Style | None = None
        for x in range(min(self.vt.columns, width)):
            ch = row[x]
            style = self._style(ch)
            if show_cursor and x == cursor.x:
                style = style + Style(reverse=True)
            if style is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = style
            run.append(_safe_char(ch.data))
        if run:
            segments.append(Segment("".join(run), run_style))
        return Strip(segments).adjust_cell_length(width)


class ConsolePane(FleetAppMixin, Vertical):
    """One node's console: a title line (node, transport, state, who types) and the screen."""

    DEFAULT_CSS = """
    ConsolePane { border: round $panel-lighten-2; height: 1fr; }
    ConsolePane:focus-within { border: round $accent; }
    ConsolePane.typing { border: heavy $warning; }
    ConsolePane > .pane-title { height: 1; padding: 0 1; }
    """

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self.session: ConsoleSession | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._note = "connecting"
        self.view = ConsoleView()

    def compose(self):
        yield Static(id="title", classes="pane-title", markup=False)
        yield self.view

    @property
    def typing(self) -> bool:
        return self.view.typing

    def on_mount(self) -> None:
        self._show_title()
        self.connect()

    @work(exclusive=True, group="connect")
    async def connect(self) -> None:
        try:
            session = await self.console.consoles.session(self.node)
        except FleetError as exc:
            self._note = f"no console: {exc}"
            self._show_title()
            return
        self.session = session
        history = session.history()
        if history:
            self.view.feed(history)
        self._unsubscribe = session.subscribe(self._on_output)
        self._show_title()

    def _on_output(self, item: bytes | ConsoleEvent) -> None:
        # broker callbacks run on the app's loop: no thread hand-over needed
        if isinstance(item, bytes):
            self.view.feed(item)
            return
        if item.kind in ("lost", "reconnected", "takeover", "closed"):
            if item.kind == "takeover" and self.view.typing and item.who != self.console.operator:
                self._set_typing(False)
            self.view.feed(f"\r\n[{item.kind}: {visible(item.detail)}]\r\n".encode())
        self._show_title()

    def _show_title(self) -> None:
        """Node, state, who types, then the transport: what matters first when the pane is narrow."""
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(visible(self.node), "bold")
        session = self.session
        if session is None:
            title.append(f"  {self._note}", "dim")
        else:
            state = session.state
            title.append("  ")
            title.append(state, "bold green" if state == "open" else "bold red" if state == "lost" else "yellow")
            if state != "open" and session.error:
                title.append(f" ({visible(session.error)})", "")
            if self.view.typing:
                title.append("  typing: ctrl+] stops", "bold reverse")
            elif session.holder:
                title.append(f"  typed by {visible(session.holder)}", "")
            else:
                title.append("  read-only: t types", "dim")
            title.append(f"  {visible(session.description)}", "dim")
        self.query_one("#title", Static).update(title)

    def _set_typing(self, on: bool) -> None:
        self.view.typing = on
        self.set_class(on, "typing")
        self._show_title()
        self.view.refresh()

    async def start_typing(self, *, force: bool = False) -> None:
        """Become the console's writer (:class:`ConsoleBusy` when someone else is and not ``force``)."""
        if self.session is None:
            raise FleetError(f"{self.node}: {self._note}")
        await self.session.acquire(self.console.operator, force=force)
        self._set_typing(True)
        self.view.focus()

    async def stop_typing(self) -> None:
        if self.session is not None and self.view.typing:
            await self.session.release(self.console.operator)
        self._set_typing(False)

    async def on_key(self, event: events.Key) -> None:
        if not self.view.typing or self.session is None:
            return
        event.stop()
        event.prevent_default()
        if event.key == STOP_TYPING:
            await self.stop_typing()
            return
        data = key_bytes(event)
        if data:
            try:
                await self.session.write(self.console.operator, data)
            except FleetError as exc:
                self.notify(visible(f"{self.node}: {exc}"), severity="error", markup=False)
                self._set_typing(False)

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.session is not None and self.view.typing:
            try:
                await self.session.release(self.console.operator)
            except FleetError:
                pass


class TakeOver(ModalScreen[bool]):
    """Asks before typing into a console someone else types into (they become a watcher)."""

    DEFAULT_CSS = """
    TakeOver { align: center middle; }
    TakeOver > Vertical { width: 64; max-width: 100%; height: auto; border: heavy $warning; padding: 0 1;
                          background: $surface; }
    """
    BINDINGS = [Binding("y", "answer(True)", "Take it over"), Binding("n,escape", "answer(False)", "Keep watching")]

    def __init__(self, node: str, why: str) -> None:
        super().__init__()
        self.node, self.why = node, why

    def compose(self):
        with Vertical():
            yield Static(Text.assemble((f"{self.node}'s console is in use", "bold"), f"\n{self.why}\n\n"
                                       "Take it over? The other holder can then only watch.\n"
                                       "y: take it over   n or escape: keep watching"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConsoleScreen(FleetAppMixin, Screen):
    """Watch one node's console, or a grid of several (a rack being reimaged)."""

    DEFAULT_CSS = """
    ConsoleScreen Grid { grid-gutter: 0 0; }
    ConsoleScreen #console-help { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("t", "type", "Type"),
        Binding("a", "attach", "Attach"),
        Binding("b", "send_break", "Break", show=False),
        Binding("tab", "app.focus_next", "Next", show=False),
        Binding("shift+tab", "app.focus_previous", "Previous", show=False),
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(self, nodes: list[str]) -> None:
        super().__init__()
        self.nodes = list(nodes)[:MAX_PANES]
        self.dropped = len(nodes) - len(self.nodes)

    def compose(self):
        count = len(self.nodes)
        cols = 1 if count == 1 else 2 if count <= 4 else 3
        grid = Grid(*(ConsolePane(n) for n in self.nodes))
        grid.styles.grid_size_columns = cols
        grid.styles.grid_size_rows = -(-count // cols)
        yield grid
        more = f"; {self.dropped} more not shown (at most {MAX_PANES})" if self.dropped else ""
        login = self.console.ctx.lab_login_file
        lab = (f"; lab login {self.console.ctx.site.ssh.username}, password in {login}" if login else "")
        yield Static(visible(f"read-only until t; a attaches the whole terminal (~. returns){more}{lab}"),
                     id="console-help", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query(ConsoleView).first().focus()

    def action_targets(self) -> list[str]:
        """What ``p``, ``x`` and ``i`` act on here: the focused console's node (its name is on screen)."""
        pane = self._pane()
        return [pane.node] if pane is not None else []

    def _pane(self) -> ConsolePane | None:
        focused = self.focused
        while focused is not None and not isinstance(focused, ConsolePane):
            focused = focused.parent if isinstance(focused.parent, Widget) else None
        return focused

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        pane = self._pane()
        if action == "send_break":
            return bool(pane and pane.typing) or None
        if action in ("type", "attach") and self.console.read_only and action == "type":
            return None
        return True

    async def action_type(self) -> None:
        """``t``: type into the focused console (asks before taking it from another holder)."""
        pane = self._pane()
        if pane is None:
            return
        if self.console.read_only:
            self.notify("typing refused: the console runs in read-only mode (--read-only)", severity="error")
            return
        try:
            await pane.start_typing()
        except ConsoleBusy as exc:
            holder = visible(str(exc))

            async def answer(yes: bool | None) -> None:
                if yes:
                    try:
                        await pane.start_typing(force=True)
                    except FleetError as again:
                        self.notify(visible(f"{pane.node}: {again}"), severity="error", markup=False)

            self.app.push_screen(TakeOver(pane.node, holder), callback=answer)
        except FleetError as exc:
            self.notify(visible(f"{pane.node}: {exc}"), severity="error", markup=False)

    async def action_send_break(self) -> None:
        pane = self._pane()
        if pane is not None and pane.session is not None and pane.typing:
            await pane.session.send_break(self.console.operator)
            self.notify(f"break sent to {pane.node}", timeout=3)

    async def action_attach(self) -> None:
        """``a``: the focused node's console on the whole terminal; ``~.`` comes back here."""
        pane = self._pane()
        if pane is None:
            return
        await pane.stop_typing()  # the attach becomes the writer, and lets go when it ends
        try:
            await self.console.attach_console(pane.node)
        except FleetError as exc:
            self.notify(visible(f"{pane.node}: {exc}"), severity="error", markup=False)
        except SuspendNotSupported:  # a headless or web app has no terminal to give
            self.notify("attach needs the console's own terminal", severity="error")

    async def action_back(self) -> None:
        for pane in self.query(ConsolePane):
            await pane.stop_typing()
        self.dismiss()
