"""Acting on nodes from the TUI: power menu, PXE reboot, reimage; the plan dialog; progress.

The flow is the CLI's (:mod:`console.act_commands`) with screens in place of the
prompts::

    p / x / i (app keys)  ->  PowerMenu / ImageChooser (a choice)
                          ->  ConfirmScreen   (plans in a worker, shows Plan.text(),
                                               ticket; types the node count for > 1)
                          ->  ProgressScreen  (screens.progress: the Runner on the app loop;
                                               one row per node)

Which nodes: a screen that can be acted on has ``action_targets() -> list[str]``
(marked nodes if any, else the node under the cursor).  :func:`targets_of` asks
the screen, and falls back to what the fleet and node screens expose (``marked``
and the cursor row, ``node_name``) for screens that do not have the method yet.

In read-only mode every entry point refuses with a notification.
"""

from __future__ import annotations

from functools import partial
from typing import Awaitable, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from console.actions import Plan, plan_power, plan_pxe, plan_reimage
from inventory.errors import FleetError
from console.text import visible
from inventory.ranges import compress, natural_key
from screens.common import outside
from screens.progress import ProgressScreen

__all__ = [
    "POWER_CHOICES",
    "ActionCommands",
    "ConfirmScreen",
    "ImageChooser",
    "PowerMenu",
    "start_action",
    "targets_of",
]

#: the power menu: (action, key, words)
POWER_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("on", "o", "power on"),
    ("off", "f", "hard power off (no OS shutdown)"),
    ("soft", "s", "ACPI shutdown: the OS shuts down"),
    ("cycle", "c", "power off and on again"),
    ("reset", "r", "warm reset"),
)
# --------------------------------------------------------------------------- targets
def _acting_screen(app) -> Screen:
    """The screen the operator acts from: the one under the command palette when it is open."""
    from textual.command import CommandPalette

    stack = app.screen_stack
    screen = stack[-1]
    if isinstance(screen, CommandPalette) and len(stack) > 1:
        screen = stack[-2]
    return screen


def targets_of(screen: Screen) -> list[str]:
    """The nodes an action from ``screen`` applies to: marked nodes if any, else the cursor's node.

    Screens that can be acted on implement ``action_targets()``; the fleet and node
    screens are read directly until they do.
    """
    own = getattr(type(screen), "action_targets", None)
    if callable(own):
        return list(screen.action_targets())
    marked = getattr(screen, "marked", None)
    if isinstance(marked, (set, frozenset)):  # FleetScreen: marks, else the cursor row
        if marked:
            return sorted(marked, key=natural_key)
        cursor = getattr(screen, "_cursor_name", None)
        name = cursor() if callable(cursor) else None
        return [name] if name else []
    name = getattr(screen, "node_name", None)  # NodeScreen
    return [name] if isinstance(name, str) and name else []


def _refuse_read_only(app, what: str) -> bool:
    if getattr(app, "read_only", False):
        app.notify(f"{what} refused: the console runs in read-only mode (--read-only)",
                   title="read-only mode", severity="error")
        return True
    return False


def _current_targets(app, what: str) -> list[str] | None:
    """Targets of the current screen, or None (notified) when there are none or acting is refused."""
    if _refuse_read_only(app, what):
        return None
    screen = _acting_screen(app)
    if isinstance(screen, (ModalScreen, ProgressScreen)):
        app.notify(f"{what}: close this dialog first", severity="warning")
        return None
    names = targets_of(screen)
    if not names:
        app.notify(f"{what}: no node selected here (mark nodes or put the cursor on one in the fleet, "
                   "rack or node screen)", severity="warning")
        return None
    known = {n.name for n in app.ctx.site.nodes}
    missing = [n for n in names if n not in known]
    if missing:
        app.notify(visible(f"{what}: unknown node(s) {compress(missing)}"), severity="error", markup=False)
        return None
    return names


def start_action(app, kind: str, choice: str | None = None, names: list[str] | None = None) -> None:
    """The entry point of ``p`` (kind ``power``), ``x`` (``pxe``) and ``i`` (``reimage``).

    ``choice`` skips the menu (a power verb, or an image ref); ``names`` overrides the
    current screen's targets.
    """
    what = {"power": "power", "pxe": "PXE reboot", "reimage": "reimage"}[kind]
    if names is None:
        names = _current_targets(app, what)
        if names is None:
            return
    elif _refuse_read_only(app, what):
        return
    # the step descriptions state the verification time the runner will use
    power_timeout = float((getattr(app, "action_options", None) or {}).get("power_timeout", 120.0))
    if kind == "power":
        if choice is None:
            app.push_screen(PowerMenu(names), callback=lambda verb: verb and start_action(app, kind, verb, names))
            return
        make = partial(plan_power, app.ctx, names, choice, power_timeout=power_timeout)
        title = f"power {choice}"
        danger = choice != "on"
    elif kind == "pxe":
        make = partial(plan_pxe, app.ctx, names, power_timeout=power_timeout)
        title, danger = "PXE reboot", True
    else:
        if choice is None:
            app.push_screen(ImageChooser(names), callback=lambda ref: ref and start_action(app, kind, ref, names))
            return
        make = partial(plan_reimage, app.ctx, names, choice)
        title, danger = f"reimage to {choice}", True

    def confirmed(plan: Plan | None) -> None:
        if plan is not None and not _refuse_read_only(app, title):
            app.push_screen(ProgressScreen(plan))

    app.push_screen(ConfirmScreen(title, names, make, danger=danger), callback=confirmed)


# --------------------------------------------------------------------------- choices
class ActionDialog(ModalScreen):
    """Base of the action dialogs (one stylesheet: ``ActionDialog #dialog``)."""

    CSS_PATH = "actions.tcss"


class PowerMenu(ActionDialog):
    """Choose a power action for the targets; escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")] + [
        Binding(key, f"choose('{verb}')", verb, show=False) for verb, key, _ in POWER_CHOICES]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="menu"):
            yield Label(outside(f"Power: {_who(self.names)}"), id="title")
            yield OptionList(*(Option(Text.assemble((f"{key} ", "bold"), (f"{verb:<6}", "bold"), f" {words}"),
                                      id=verb) for verb, key, words in POWER_CHOICES), id="choices")
            yield Static("enter or the letter chooses; escape cancels", classes="hint")

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_choose(self, verb: str) -> None:
        self.dismiss(verb)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ImageChooser(ActionDialog):
    """Choose the image to install from the site's catalog (the node's desired image first lit)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        site = self.app.ctx.site
        desired = {site.node(n).image for n in self.names} - {None}
        options = []
        for img in site.images:
            note = "  (desired)" if img.ref in desired else ""
            options.append(Option(Text.assemble((img.ref, "bold"), note), id=img.ref))
        with Vertical(id="dialog", classes="menu"):
            yield Label(outside(f"Reimage {_who(self.names)} to:"), id="title")
            if options:
                yield OptionList(*options, id="choices")
            else:
                yield Static(outside(f"site {site.name} has no images in its catalog"), classes="error")
            yield Static("enter chooses; escape cancels", classes="hint")

    def on_mount(self) -> None:
        site = self.app.ctx.site
        first = site.node(self.names[0]).image
        lists = self.query(OptionList)
        if lists and first is not None:
            olist = lists.first()
            try:
                olist.highlighted = olist.get_option_index(first)
            except Exception:  # the desired image is not in the catalog: leave the first lit
                pass

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _who(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{len(names)} nodes ({compress(names)})"


# --------------------------------------------------------------------------- confirm
class ConfirmScreen(ActionDialog):
    """The plan, read fresh from the BMCs, for the operator to confirm.

    One node: Confirm (or ``y``).  More than one: Confirm stays disabled until the
    number of nodes the plan acts on is typed.  Escape cancels: nothing happens.
    The optional ticket goes with every journal entry.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("y", "confirm", "Confirm", show=False)]

    def __init__(self, title: str, names: list[str], make_plan: Callable[[], Awaitable[Plan]], *,
                 danger: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.names = names
        self.make_plan = make_plan
        self.danger = danger
        self.plan: Plan | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger" if self.danger else ""):
            yield Label(outside(f"{self.title_text}: {_who(self.names)}"), id="title")
            with VerticalScroll(id="plan-box"):
                yield Static(f"planning: reading the power state of {len(self.names)} "
                             f"node{'' if len(self.names) == 1 else 's'} ...", id="plan")
            yield Input(placeholder="ticket (optional), e.g. INC-123", id="ticket")
            yield Input(placeholder="type the number of nodes to confirm", id="count", classes="hidden")
            with Horizontal(id="buttons"):
                yield Button("Confirm", id="confirm", variant="error" if self.danger else "primary", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self._plan()

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def _plan(self) -> None:
        try:
            plan = await self.make_plan()
        except FleetError as exc:  # bad selection or image, reimage not available: say it, never a traceback
            self._show_error(str(exc))
            return
        except Exception as exc:  # planning broke: the dialog says so and offers nothing to confirm
            self._show_error(f"planning failed: {type(exc).__name__}: {exc}")
            return
        self.plan = plan
        self.query_one("#plan", Static).update(_plan_text(plan))
        count = len(plan.targets)
        confirm = self.query_one("#confirm", Button)
        if count == 0:
            confirm.label = "Nothing to do"
            confirm.disabled = True
            self.query_one("#cancel", Button).label = "Close"
            confirm.refresh(layout=True)
            return
        if count == 1:
            confirm.label = f"Confirm {plan.action} (y)"
            confirm.disabled = False
            confirm.focus()
        else:
            confirm.label = f"Confirm {plan.action} on {count} nodes"
            box = self.query_one("#count", Input)
            box.placeholder = f"type {count} (the number of nodes) to enable Confirm"
            box.remove_class("hidden")
            box.focus()
        confirm.refresh(layout=True)  # the longer label needs a wider button

    def _show_error(self, text: str) -> None:
        self.error = text
        self.query_one("#plan", Static).update(outside(text, "bold red"))
        self.query_one("#plan", Static).add_class("error")
        self.query_one("#cancel", Button).label = "Close"

    @on(Input.Changed, "#count")
    def _count_typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = not self._count_ok()

    @on(Input.Submitted, "#count")
    def _count_submitted(self, event: Input.Submitted) -> None:
        if self._count_ok():
            self.action_confirm()
        else:
            self.notify(f"type {len(self.plan.targets) if self.plan else '?'} to confirm", severity="warning")

    def _count_ok(self) -> bool:
        return self.plan is not None and self.query_one("#count", Input).value.strip() == str(len(self.plan.targets))

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_confirm(self) -> None:
        """Go, if the plan is ready, acts on something, and (for > 1 node) the count is typed."""
        plan = self.plan
        if plan is None or not plan.targets:
            return
        if len(plan.targets) > 1 and not self._count_ok():
            self.notify(f"type {len(plan.targets)} (the number of nodes) to confirm", severity="warning")
            return
        ticket = self.query_one("#ticket", Input).value.strip()
        plan.ticket = ticket or None
        self.dismiss(plan)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _plan_text(plan: Plan) -> Text:
    """Plan.text() with the blast radius and skips picked out (node names and the BMCs'
    error texts in it are shown as text, control characters visible)."""
    out = Text()
    for i, line in enumerate(visible(plan.text(), newlines=True).splitlines()):
        style = ""
        if i == 0:
            style = "bold"
        elif line.startswith("blast radius"):
            style = "bold yellow"
        elif line.startswith("skipped"):
            style = "yellow"
        elif "INCLUDED" in line:
            style = "bold red"
        out.append(line + "\n", style=style)
    out.rstrip()
    return out


# --------------------------------------------------------------------------- palette
#: palette entries: (text, kind, choice, help)
PALETTE_ACTIONS: tuple[tuple[str, str, str | None, str], ...] = tuple(
    (f"power {verb} selected nodes", "power", verb, words) for verb, _, words in POWER_CHOICES
) + (
    ("PXE reboot selected nodes", "pxe", None, "boot override PXE once, then reset or power on"),
    ("reimage selected nodes", "reimage", None, "choose an image from the site's catalog"),
)


def open_activity(app) -> None:
    """Open the Activity screen (or stay on it)."""
    from screens.activity import ActivityScreen

    if not isinstance(_acting_screen(app), ActivityScreen):
        app.push_screen(ActivityScreen())


class ActionCommands(Provider):
    """Palette commands: the actions on the marked / cursor nodes, and the Activity screen."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        app = self.app
        out: list[tuple[str, Callable, str]] = [("activity screen", partial(open_activity, app),
                                                 "the journal of every action on this site")]
        for text, kind, choice, help_text in PALETTE_ACTIONS:
            out.append((text, partial(start_action, app, kind, choice), help_text))
        return out

    async def discover(self) -> Hits:
        for text, command, help_text in self._commands():
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=help_text)
