"""Acting on nodes from the TUI: power menu, PXE reboot, reimage; the plan dialog; progress.

The flow is the CLI's (:mod:`console.cli.act_commands`) with screens in place of the
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

In service mode (the app is a client of the site service: ``app.service``) the plan is
made and run in the service (:func:`service_plan`, then
:class:`~screens.progress.ServiceProgress`), so a run outlives this terminal.  The
service enforces roles: when this operator's role does not allow the action, the
service is asked anyway and its refusal is shown as it words it ("refused by the site
service: bob is viewer; power needs the operator role"), not as read-only mode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from console.ops.actions import Plan, SkipKind, plan_power, plan_pxe, plan_reimage
from console.service import protocol as proto
from console.service.client import ServicePollSource, ServiceRefused, plan_from_json
from console.service.identity import allows
from console.text import visible
from inventory.errors import FleetError
from inventory.ranges import compress
from screens.appref import FleetAppMixin, fleet_app
from screens.common import outside
from screens.footer import KeyFooter
from screens.progress import ProgressScreen, ServiceProgress

if TYPE_CHECKING:  # screens.app imports this module: only the type is needed here
    from screens.app import FleetConsoleApp

__all__ = [
    "POWER_CHOICES",
    "PROTECTED_SKIP",
    "ActionCommands",
    "ConfirmScreen",
    "ImageChooser",
    "PowerMenu",
    "start_action",
    "protected_skipped",
    "protected_words",
    "targets_of",
    "warnings_of",
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
def _acting_screen(app: FleetConsoleApp) -> Screen:
    """The screen the operator acts from: the one under the command palette when it is open."""
    from textual.command import CommandPalette

    stack = app.screen_stack
    screen = stack[-1]
    if isinstance(screen, CommandPalette) and len(stack) > 1:
        screen = stack[-2]
    return screen


def targets_of(screen: Screen) -> list[str]:
    """The nodes an action from ``screen`` applies to: marked nodes if any, else the cursor's node.

    Screens that can be acted on implement ``action_targets()``; the node screen is
    read directly (its node is the one on screen).
    """
    own = getattr(type(screen), "action_targets", None)
    if callable(own):
        return list(own(screen))
    name = getattr(screen, "node_name", None)  # NodeScreen
    return [name] if isinstance(name, str) and name else []


def warnings_of(screen: Screen, names: list[str]) -> list[str]:
    """What about ``names`` the operator may not see on ``screen`` (marked nodes hidden by a
    filter, a filter that was not applied), in words for the confirm dialog; [] when nothing."""
    own = getattr(type(screen), "target_warnings", None)
    return list(own(screen, names)) if callable(own) else []


def _refuse_read_only(app: FleetConsoleApp, what: str) -> bool:
    if getattr(app, "read_only", False):
        app.notify(f"{what} refused: the console runs in read-only mode (--read-only)",
                   title="read-only mode", severity="error")
        return True
    return False


def _current_targets(app: FleetConsoleApp, what: str) -> tuple[Screen, list[str]] | None:
    """(the acting screen, its targets), or None (notified) when there are none or acting is refused."""
    if _refuse_read_only(app, what):
        return None
    screen = _acting_screen(app)
    if isinstance(screen, (ModalScreen, ProgressScreen)):
        app.notify(f"{what}: close this dialog first", severity="warning")
        return None
    names = targets_of(screen)
    if not names:
        app.notify(f"{what}: no node under the cursor and none marked (mark nodes, or put the cursor on a "
                   "node shown in the fleet, rack or node screen)", severity="warning")
        return None
    known = {n.name for n in app.ctx.site.nodes}
    missing = [n for n in names if n not in known]
    if missing:
        app.notify(visible(f"{what}: unknown node(s) {compress(missing)}"), severity="error", markup=False)
        return None
    return screen, names


def _role_refused(app: FleetConsoleApp, kind: str) -> bool:
    """Service mode, and this operator's role does not allow ``kind``: ask the service all
    the same (it decides, not this console) and show its refusal in its words."""
    service = app.service
    welcome = service.welcome if service is not None else None
    if service is None or welcome is None or allows(welcome.identity.role, kind):
        return False

    async def ask(service: ServicePollSource) -> None:
        names = targets_of(_acting_screen(app)) or [n.name for n in app.ctx.site.nodes[:1]]
        try:
            data = await service.request(proto.PlanAction(id=0, kind=kind, names=names))
        except FleetError as exc:  # ServiceRefused with its words, ServiceGone
            app.notify(visible(str(exc)), title="refused by the site service", severity="error", timeout=10,
                       markup=False)
            return
        # the service allowed it after all (its roles are the authority): go on as asked
        del data
        app.call_later(partial(start_action, app, kind, role_checked=True))

    app.run_worker(ask(service), group="role-check", exit_on_error=False)
    return True


async def service_plan(service: ServicePollSource, kind: str, names: list[str], choice: str | None, *,
                       force: bool = False, force_protected: bool = False, power_timeout: float = 120.0,
                       soft_timeout: float = 300.0, hard_after: float | None = None,
                       timeout: float = 10.0) -> Plan:
    """The plan of ``kind`` on ``names``, made in the site service (it reads the BMCs and
    keeps the plan for the run): ServiceRefused in its words when it says no."""
    data = await service.request(proto.PlanAction(
        id=0, kind=kind, names=names,
        power_action=choice if kind == "power" else None, image=choice if kind == "reimage" else None,
        force=force, force_protected=force_protected, timeout=timeout, power_timeout=power_timeout,
        soft_timeout=soft_timeout, hard_after=hard_after))
    try:
        return plan_from_json(data.get("plan"))
    except proto.ProtocolError as exc:
        raise ServiceRefused(f"the site service sent {exc}") from None


def start_action(app: FleetConsoleApp, kind: str, choice: str | None = None, names: list[str] | None = None, *,
                 warnings: list[str] | None = None, source: Screen | None = None, force: bool = False,
                 role_checked: bool = False) -> None:
    """The entry point of ``p`` (kind ``power``), ``x`` (``pxe``) and ``i`` (``reimage``).

    ``choice`` skips the menu (a power verb, or an image ref); ``names`` overrides the
    current screen's targets.  ``warnings`` are what the confirm dialog says before the
    plan (targets the operator may not see); ``source`` the screen acted from, told
    when the action was started and when it finished (its marks are cleared then).
    ``force``: a reimage reinstalls nodes that report the image already (the audit's
    digest drift: the same version, another build).
    """
    what = {"power": "power", "pxe": "PXE reboot", "reimage": "reimage"}[kind]
    if not role_checked and _role_refused(app, kind):
        return
    if names is None:
        found = _current_targets(app, what)
        if found is None:
            return
        source, names = found
        warnings = warnings_of(source, names)
    elif _refuse_read_only(app, what):
        return
    warnings = list(warnings or ())
    again = partial(start_action, app, kind, names=names, warnings=warnings, source=source, force=force,
                    role_checked=role_checked)
    # the step descriptions state the verification time the runner will use
    options = app.run_options
    power_timeout = options.power_timeout
    service = app.service
    make: Callable[..., Awaitable[Plan]]
    if kind in ("power", "reimage") and choice is None:
        if kind == "power":
            app.push_screen(PowerMenu(names), callback=lambda verb: verb and again(verb))
        else:
            app.push_screen(ImageChooser(names), callback=lambda ref: ref and again(ref))
        return
    if service is not None:  # planned (and later run) in the site service
        make = partial(service_plan, service, kind, names, choice, force=force, power_timeout=power_timeout,
                       soft_timeout=options.soft_timeout, hard_after=options.hard_after,
                       timeout=options.request_timeout)
    elif kind == "power":
        make = partial(plan_power, app.ctx, names, choice or "", power_timeout=power_timeout)
    elif kind == "pxe":
        make = partial(plan_pxe, app.ctx, names, power_timeout=power_timeout)
    else:
        make = partial(plan_reimage, app.ctx, names, choice or "", force=force)
    if kind == "power":
        title, danger = f"power {choice}", choice != "on"
    elif kind == "pxe":
        title, danger = "PXE reboot", True
    else:
        title, danger = f"reimage to {choice}", True

    def confirmed(plan: Plan | None) -> None:
        if plan is not None and not _refuse_read_only(app, title):
            progress = ServiceProgress(plan) if app.service is not None else ProgressScreen(plan)
            app.push_screen(progress)
            started = getattr(source, "action_started", None)
            if callable(started):
                started(names, progress)

    app.push_screen(ConfirmScreen(title, names, make, danger=danger, warnings=warnings), callback=confirmed)


# --------------------------------------------------------------------------- choices
class ActionDialog(ModalScreen):
    """Base of the action dialogs (one stylesheet: ``ActionDialog #dialog``)."""

    CSS_PATH = "actions.tcss"


class PowerMenu(ActionDialog):
    """Choose a power action for the targets; escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        *(Binding(key, f"choose('{verb}')", verb, show=False) for verb, key, _ in POWER_CHOICES)]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="menu"):
            yield Label(outside(f"Power: {_who(self.names)}"), id="title")
            yield OptionList(*(Option(Text.assemble((f"{key} ", "bold"), (f"{verb:<6}", "bold"), f" {words}"),
                                      id=verb) for verb, key, words in POWER_CHOICES), id="choices")
            yield Static("enter or the letter chooses; escape cancels", classes="hint")
        yield KeyFooter()

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
        site = fleet_app(self).ctx.site
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
        yield KeyFooter()

    def on_mount(self) -> None:
        site = fleet_app(self).ctx.site
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
#: the start of a skip reason that means "protected in the inventory" (console.ops.actions._plan)
PROTECTED_SKIP = "protected"


def protected_skipped(plan: Plan) -> list[str]:
    """The nodes ``plan`` skips only because they are protected (what "include" would add)."""
    return [n.node for n in plan.skipped if n.protected and n.skip is not None and n.skip.kind is SkipKind.PROTECTED]


def protected_words(names: list[str]) -> str:
    """What the operator types to include protected nodes: the node's name for one, else
    ``protected N`` (as deliberate as the CLI's ``--force-protected`` and a typed count)."""
    return names[0] if len(names) == 1 else f"protected {len(names)}"


class ConfirmScreen(ActionDialog):
    """The plan, read fresh from the BMCs, for the operator to confirm.

    One node: Confirm (or ``y``).  More than one, or anything the operator may not
    see (``warnings``: marked nodes hidden by a filter, a filter not applied): Confirm
    stays disabled until the number of nodes the plan acts on is typed.  Escape
    cancels: nothing happens.  The optional ticket goes with every journal entry.

    Protected nodes the plan skips are listed with a way through: typing the node's
    name (``protected N`` for several) plans again with ``force_protected``.

    The dialog fits any terminal: the title and warnings at the top, the count,
    ticket and buttons at the bottom always show; the plan between them scrolls.
    Focus goes to the field to type in first, then the ticket, then the buttons.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("y", "confirm", "Confirm"),
                Binding("tab", "app.focus_next", "Next field")]

    def __init__(self, title: str, names: list[str], make_plan: Callable[..., Awaitable[Plan]], *,
                 danger: bool = True, warnings: list[str] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.names = names
        self.make_plan = make_plan
        self.danger = danger
        #: what the operator may not see about the targets, said before the plan
        self.warnings = list(warnings or ())
        self.plan: Plan | None = None
        self.error: str | None = None
        #: protected nodes the plan skips (None: none), and whether they were asked for
        self.protected: list[str] = []
        self.force_protected = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger" if self.danger else ""):
            with Vertical(id="head"):
                yield Label(outside(f"{self.title_text}: {_who(self.names)}"), id="title")
                warning = Static(_warning_text(self.warnings), id="warnings", classes="warning")
                warning.display = bool(self.warnings)
                yield warning
            with Vertical(id="controls"):
                with Vertical(id="protected-box", classes="hidden"):
                    yield Static("", id="protected-note", classes="warning")
                    yield Input(id="protected", compact=True)
                yield Input(placeholder="type the number of nodes to confirm", id="count", classes="hidden",
                            compact=True)
                yield Input(placeholder="ticket (optional), e.g. INC-123", id="ticket", compact=True)
                with Horizontal(id="buttons"):
                    yield Button("Confirm", id="confirm", variant="error" if self.danger else "primary",
                                 disabled=True, compact=True)
                    yield Button("Cancel", id="cancel", compact=True)
            with VerticalScroll(id="plan-box"):
                yield Static(f"planning: reading the power state of {len(self.names)} "
                             f"node{'' if len(self.names) == 1 else 's'} ...", id="plan")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self._plan()

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def _plan(self) -> None:
        try:
            plan = await (self.make_plan(force_protected=True) if self.force_protected else self.make_plan())
        except FleetError as exc:  # bad selection or image, reimage not available: say it, never a traceback
            self._show_error(str(exc))
            return
        except Exception as exc:  # planning broke: the dialog says so and offers nothing to confirm
            self._show_error(f"planning failed: {type(exc).__name__}: {exc}")
            return
        self.plan = plan
        self.query_one("#plan", Static).update(_plan_text(plan))
        self._offer_protected(plan)
        count = len(plan.targets)
        confirm = self.query_one("#confirm", Button)
        box = self.query_one("#count", Input)
        box.value = ""
        if count == 0:
            confirm.label = "Nothing to do"
            confirm.disabled = True
            box.add_class("hidden")
            self.query_one("#cancel", Button).label = "Close"
            if self.protected:
                self.query_one("#protected", Input).focus()
        elif not self.count_needed:
            confirm.label = f"Confirm {plan.action} (y)"
            confirm.disabled = False
            box.add_class("hidden")
            confirm.focus()
        else:
            confirm.label = f"Confirm {plan.action} on {count} node{'' if count == 1 else 's'}"
            confirm.disabled = True
            box.placeholder = f"type {count} (the number of nodes) to enable Confirm"
            box.remove_class("hidden")
            box.focus()
        confirm.refresh(layout=True)  # the longer label needs a wider button
        self.refresh_bindings()

    def _offer_protected(self, plan: Plan) -> None:
        """List the protected nodes the plan skips, and how to include them (or that they are)."""
        self.protected = [] if plan.force_protected else protected_skipped(plan)
        box = self.query_one("#protected-box")
        forced = [n.node for n in plan.targets if n.protected]
        if forced:
            self.warnings = [w for w in self.warnings if not w.startswith("PROTECTED")]
            self.warnings.append(f"PROTECTED node{'' if len(forced) == 1 else 's'} included on request: "
                                 f"{compress(forced)}")
            warning = self.query_one("#warnings", Static)
            warning.update(_warning_text(self.warnings))
            warning.display = True
        if not self.protected:
            box.add_class("hidden")
            return
        n = len(self.protected)
        words = protected_words(self.protected)
        note = Text(f"{n} protected node{'' if n == 1 else 's'} skipped: ", style="bold")
        note.append(visible(compress(self.protected)))
        self.query_one("#protected-note", Static).update(note)
        field = self.query_one("#protected", Input)
        field.value = ""
        field.placeholder = f'to include {"it" if n == 1 else "them"}, type "{visible(words)}" and enter'
        box.remove_class("hidden")

    @property
    def count_needed(self) -> bool:
        """The node count must be typed: several nodes, or targets the operator may not see."""
        return self.plan is not None and (len(self.plan.targets) > 1 or bool(self.warnings))

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

    @on(Input.Submitted, "#protected")
    def _protected_submitted(self, event: Input.Submitted) -> None:
        """Enter in the protected field: plan again with the protected nodes, if their words were typed."""
        event.stop()
        if not self.protected or self.plan is None:
            return
        words = protected_words(self.protected)
        if event.value.strip() != words:
            self.notify(visible(f'type "{words}" to include the protected '
                                f'node{"" if len(self.protected) == 1 else "s"}'), severity="warning",
                        markup=False)
            return
        self.force_protected = True
        self.plan = None
        self.query_one("#confirm", Button).disabled = True
        self.query_one("#protected-box").add_class("hidden")
        self.query_one("#plan", Static).update(f"planning again with the protected "
                                               f"node{'' if len(self.protected) == 1 else 's'} included ...")
        self._plan()

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer shows ``y`` only when it confirms (one node, nothing to type)."""
        if action == "confirm":
            return self.plan is not None and bool(self.plan.targets) and not self.count_needed
        return True

    def action_confirm(self) -> None:
        """Go, if the plan is ready, acts on something, and (when needed) the count is typed."""
        plan = self.plan
        if plan is None or not plan.targets:
            return
        if self.count_needed and not self._count_ok():
            self.notify(f"type {len(plan.targets)} (the number of nodes) to confirm", severity="warning")
            return
        ticket = self.query_one("#ticket", Input).value.strip()
        plan.ticket = ticket or None
        self.dismiss(plan)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _warning_text(warnings: list[str]) -> Text:
    """The warnings as the dialog's head shows them: each on its own line, bold, the BMC's
    or the filter's words in them as text."""
    out = Text(style="bold")
    for i, warning in enumerate(warnings):
        if i:
            out.append("\n")
        out.append(f"⚠ {visible(warning)}")
    return out


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


def open_activity(app: FleetConsoleApp) -> None:
    """Open the Activity screen (or stay on it)."""
    from screens.activity import ActivityScreen

    if not isinstance(_acting_screen(app), ActivityScreen):
        app.push_screen(ActivityScreen())


class ActionCommands(FleetAppMixin, Provider):
    """Palette commands: the actions on the marked / cursor nodes, and the Activity screen."""

    def _commands(self) -> list[tuple[str, Callable, str]]:
        app = self.console
        out: list[tuple[str, Callable, str]] = [("activity screen", partial(open_activity, app),
                                                 "the journal of every action on this site")]
        for text, kind, choice, help_text in PALETTE_ACTIONS:
            out.append((text, partial(start_action, app, kind, choice), help_text))
        return out

    async def discover(self) -> Hits:
        """Nothing of its own: :class:`screens.palette.FleetCommands` lists these, so that
        one provider orders every command shown before anything is typed (two providers'
        hits interleave as they arrive)."""
        return
        yield  # an async generator that yields nothing

    def discovery_hits(self) -> list[DiscoveryHit]:
        """What the palette lists of these before anything is typed."""
        return [DiscoveryHit(text, command, help=help_text) for text, command, help_text in self._commands()]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, text=text, help=help_text)
