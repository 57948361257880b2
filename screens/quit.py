"""Quitting while actions run: ask first, and say what aborting them would leave.

``q`` and ctrl+q with an action running open :class:`QuitScreen`: the running plans
(action, nodes, phases) and, for each, what aborting leaves behind.  The default
answer (enter, escape) keeps the console open; ``a`` (or its button) aborts them as
``c`` ``c`` does (rolling back what can be undone), waits for that, and quits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from console.ops.runner import Runner
from screens.appref import FleetAppMixin
from screens.common import outside

__all__ = ["QuitScreen", "describe_runs"]

#: reimage phases before the node fetched its new assignment: aborting can still undo it
_UNDOABLE = ("planned", "reimage", "assigned", "rebooting")


def _what_abort_leaves(runner: Runner, phases: Counter) -> str:
    """In words, what aborting this run leaves on its nodes in flight."""
    if runner.plan.kind == "reimage":
        early = sum(v for k, v in phases.items() if k in _UNDOABLE)
        late = sum(v for k, v in phases.items() if k in ("installing", "verifying"))
        words = []
        if early:
            words.append(f"{early} node{'s' if early != 1 else ''} mid-reimage (assigned new image, rebooting): "
                         f"aborting restores the previous assignment and clears the boot override")
        if late:
            words.append(f"{late} node{'s' if late != 1 else ''} already installing the new image: the install "
                         f"goes on on its own; nothing to roll back")
        return "; ".join(words) or "nothing in flight"
    if runner.plan.kind == "pxe":
        return ("aborting clears a PXE boot override not yet booted; a node already reset boots the network "
                "anyway")
    return "aborting stops waiting for the power state: a request already sent to a BMC still applies"


def describe_runs(runners: Iterable[Runner]) -> list[Text]:
    """One paragraph per running plan: action, nodes, phases, what aborting leaves."""
    out = []
    for runner in runners:
        plan = runner.plan
        running = [p for p in runner.progress.values() if not p.final]
        phases = Counter(p.phase for p in running)
        done = sum(1 for p in runner.progress.values() if p.phase == "done")
        head = (f"{plan.action} (plan {plan.id}): {len(plan.targets)} node{'s' if len(plan.targets) != 1 else ''}; "
                + (", ".join(f"{v} {k}" for k, v in phases.most_common()) or "ending")
                + (f"; {done} done" if done else ""))
        text = outside(head, "bold")
        text.append("\n  ")
        text.append_text(outside(_what_abort_leaves(runner, phases)))
        out.append(text)
    return out


class QuitScreen(FleetAppMixin, ModalScreen[bool]):
    """Quit with actions running?  Dismisses True to abort them and quit, False to stay."""

    CSS_PATH = "quit.tcss"
    BINDINGS = [
        Binding("escape", "stay", "Keep running"),
        Binding("a", "abort", "Abort them and quit"),
    ]

    def __init__(self, runners: list[Runner]) -> None:
        super().__init__()
        self.runners = runners

    def compose(self) -> ComposeResult:
        with Vertical(id="quit"):
            n = len(self.runners)
            yield Static(f"{n} action{'s are' if n != 1 else ' is'} running. Quit anyway?", id="quit-title")
            with VerticalScroll(id="quit-runs"):
                for text in describe_runs(self.runners):
                    yield Static(text, classes="quit-run")
            with Horizontal(id="quit-buttons"):
                yield Button("Keep running (enter)", id="stay", variant="primary")
                yield Button("Abort, roll back and quit (a)", id="abort", variant="error")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()  # the default answer keeps the console open

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "abort")

    def action_stay(self) -> None:
        self.dismiss(False)

    def action_abort(self) -> None:
        self.dismiss(True)
