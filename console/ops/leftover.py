"""What an action that did not finish left on a node.

A node an action cancelled or failed on is not simply "cancelled": its provisioner
may hold the new image or the previous one, its boot override may still say PXE,
it may have been power-cycled, and an installer may be running on its own.
:class:`Left` records those facts as the engine learnt them (``None``: not known),
for the progress rows, the CLI summary, ``--json`` and the journal alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Left"]


@dataclass
class Left:
    """The state an unfinished action left a node in (``None``: not known / not touched)."""

    #: the provisioner's assignment: "previous" (restored or never changed), "new", "none"
    assignment: str | None = None
    #: words about the assignment (which image), shown as they are
    assignment_detail: str | None = None
    #: the boot override: "set" (the next boot follows it), "cleared", "consumed" (the node booted it)
    boot_override: str | None = None
    #: power read back at the end: on, off, unknown
    power: str | None = None
    #: True when an install will still happen (or is happening) without us
    install_pending: bool | None = None
    #: True when what the action started was undone (assignment restored, override cleared)
    rolled_back: bool = False
    #: True when the node was never touched (not started)
    untouched: bool = False

    def text(self) -> str:
        """One line for a progress row or the CLI summary."""
        if self.untouched:
            return "untouched"
        parts: list[str] = []
        if self.rolled_back:
            parts.append("rolled back")
        if self.assignment is not None:
            words = {"previous": "previous assignment", "new": "NEW assignment", "none": "no assignment"}
            parts.append(words.get(self.assignment, self.assignment)
                         + (f" ({self.assignment_detail})" if self.assignment_detail else ""))
        if self.boot_override is not None:
            parts.append(f"boot override {self.boot_override}")
        if self.power is not None:
            parts.append(f"power {self.power}")
        if self.install_pending is True:
            parts.append("an install will still happen on its own")
        elif self.install_pending is False:
            parts.append("no install pending")
        return "; ".join(parts) if parts else "state not known"

    def to_json(self) -> dict[str, Any]:
        """Stable JSON record."""
        return {"assignment": self.assignment, "assignment_detail": self.assignment_detail,
                "boot_override": self.boot_override, "power": self.power,
                "install_pending": self.install_pending, "rolled_back": self.rolled_back,
                "untouched": self.untouched, "text": self.text()}
