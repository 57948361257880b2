"""KeyFooter: the screen's keys on one line, drawn as one widget."""

from __future__ import annotations

from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.strip import Strip
from textual.widget import Widget

__all__ = ["KeyFooter", "KEPT_KEYS", "NODE_ACTIONS", "acts_here"]

#: keys the footer keeps where not all fit (help and quit), dropping others before them
KEPT_KEYS = frozenset({"question_mark", "q"})
#: the app's keys that act on nodes (the marked ones, else the one under the cursor): they
#: act only on a screen that has nodes to act on (``action_targets``, or the ``node_name`` it shows)
NODE_ACTIONS = frozenset({"power_menu", "pxe", "reimage", "consoles"})


def acts_here(screen, action: str) -> bool:
    """Whether an app key's ``action`` does something on ``screen`` (the footer shows it only then).

    A node action needs a screen with nodes to act on (:data:`NODE_ACTIONS`); a screen
    names the app actions that do nothing on it in ``INERT_APP_ACTIONS`` (the Activity
    screen's ``l``, which opens the screen it is on).
    """
    if action in getattr(screen, "INERT_APP_ACTIONS", ()):
        return False
    if action in NODE_ACTIONS:
        return callable(getattr(type(screen), "action_targets", None)) or isinstance(
            getattr(screen, "node_name", None), str)
    return True


class _Key(NamedTuple):
    """One key the footer shows."""

    key: str
    display: str
    description: str
    enabled: bool
    tooltip: str


class KeyFooter(Widget):
    """The screen's keys on one line, as Textual's Footer shows them, as one widget.

    Textual's Footer is a widget per key, unmounted and mounted again whenever the
    keys change: on every focus change, as the operator opens the filter (``/``) or
    leaves it.  That was 10-40 ms, plus a layout of the screen, each time.  This one
    draws the same line (key, then description; the command palette key on the
    right edge) and repaints only when the keys it shows change.  Where the keys do
    not all fit it shows those that fit whole, in order (Footer cut the last one
    mid-word), and help and quit (:data:`KEPT_KEYS`) before any other.  A key that is
    disabled (read-only) is dimmed and its description struck through, so it reads apart
    from a live one without colour too.  The app's keys are shown only on screens where
    they act (:func:`acts_here`: no power key on the switches).  A click on a key
    presses it; hovering one highlights it and shows its tooltip.
    """

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-footer--key", "key-footer--description", "key-footer--hover", "key-footer--edge"}
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .key-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .key-footer--hover {
            color: $footer-key-foreground;
            background: $block-hover-background;
        }
        & > .key-footer--edge {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._keys: tuple[_Key, ...] = ()
        self._palette: _Key | None = None
        self._hover: _Key | None = None
        #: where each key was drawn: (first cell, after the last cell, key)
        self._placed: list[tuple[int, int, _Key]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if screen is not self.screen:
            return
        app, active = self.app, screen.active_bindings
        keys, seen = [], set()
        for namespace, binding, enabled, tooltip in active.values():
            if namespace is app and not acts_here(screen, binding.action):
                continue  # an app key that does nothing on this screen (p on the switches)
            if binding.show and binding.action not in seen:  # one key per action, as Footer
                seen.add(binding.action)
                keys.append(_Key(binding.key, app.get_key_display(binding), binding.description, enabled, tooltip))
        palette = None
        if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
            _, binding, enabled, tooltip = active[app.COMMAND_PALETTE_BINDING]
            palette = _Key(binding.key, app.get_key_display(binding), binding.description, enabled,
                           tooltip or binding.description)
        if (tuple(keys), palette) != (self._keys, self._palette):
            self._keys, self._palette, self._hover = tuple(keys), palette, None
            self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = Style(bgcolor=self.rich_style.bgcolor)
        if y:
            return Strip.blank(width, base)
        component = self.get_component_rich_style
        key_style, description_style = component("key-footer--key"), component("key-footer--description")
        hover_style = component("key-footer--hover")
        hover, dim = Style(color=hover_style.color, bgcolor=hover_style.bgcolor), Style(dim=True)
        struck = Style(dim=True, strike=True)

        def look(key: _Key, description: bool = False) -> Style:
            """What a key's state adds to its styles: hovered, disabled (struck through)."""
            off = Style() if key.enabled else struck if description else dim
            return (hover if key == self._hover else Style()) + off

        placed: list[tuple[int, int, _Key]] = []
        right = 0
        tail: list[Segment] = []
        if self._palette is not None:  # on the right edge, after a thin rule, compact
            key = self._palette
            extra = look(key)
            tail = [Segment("▏", component("key-footer--edge")), Segment(key.display, key_style + extra),
                    Segment(f" {key.description}", description_style + look(key, True)), Segment(" ", base + extra)]
            right = sum(segment.cell_length for segment in tail)
            placed.append((width - right + 1, width, key))
        room = max(0, width - right)
        segments: list[Segment] = []
        x = 0
        drawn = [self._parts(key, key_style + look(key), description_style + look(key, True)) for key in self._keys]
        sizes = [sum(segment.cell_length for segment in parts) for parts in drawn]
        shown = _fitting(list(zip(self._keys, sizes, strict=True)), room)
        for key, parts in zip(self._keys, drawn, strict=True):  # in order (Footer cut the last one short)
            if key not in shown:
                continue
            size = sum(segment.cell_length for segment in parts)
            placed.append((x, x + size, key))
            segments += parts
            x += size
        self._placed = placed
        line = Strip(segments).extend_cell_length(room, base)
        return Strip.join([line, Strip(tail)]).adjust_cell_length(width, base)

    @staticmethod
    def _parts(key: _Key, key_style: Style, description_style: Style) -> list[Segment]:
        parts = [Segment(f" {key.display} ", key_style)]
        if key.description:
            parts.append(Segment(f"{key.description} ", description_style))
        return parts

    def _key_at(self, x: int) -> _Key | None:
        return next((key for start, end, key in self._placed if start <= x < end), None)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        key = self._key_at(event.x)
        if key != self._hover:
            self._hover = key
            self.tooltip = (key.tooltip or key.description) if key else None
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.tooltip = None
            self.refresh()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        key = self._key_at(event.x)
        if key is None:
            return
        if key.enabled:
            self.app.simulate_key(key.key)
        else:
            self.app.bell()


def _fitting(sized: list[tuple[_Key, int]], room: int) -> set[_Key]:
    """The keys shown in ``room`` cells: all when they fit; else help and quit
    (:data:`KEPT_KEYS`) first, then the others in order, each whole, while they fit."""
    if sum(size for _, size in sized) <= room:
        return {key for key, _ in sized}
    shown: set[_Key] = set()
    used = 0
    for key, size in sorted(sized, key=lambda item: item[0].key not in KEPT_KEYS):  # stable: order kept
        if used + size <= room:
            shown.add(key)
            used += size
        elif key.key not in KEPT_KEYS:
            break
    return shown
