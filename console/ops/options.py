"""How a plan is run: one :class:`RunOptions`, built from the CLI's options or given to the TUI.

Both the ``power`` / ``pxe`` / ``reimage`` commands and the console's progress screen
hand the same value to :class:`console.ops.runner.Runner`, so a default or a check
lives here once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING

from console.ops.actions import PlanError

if TYPE_CHECKING:  # the reimage flow is imported only when a reimage runs
    from console.ops.reimage import PhaseTimeouts

__all__ = ["OnCancel", "RunOptions"]

class OnCancel(StrEnum):
    """What the first plain cancel does to the nodes in flight."""

    FINISH = "finish"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class RunOptions:
    """Fan-out, pacing and time limits of one run (see :class:`console.ops.runner.Runner`).

    ``poll_interval`` / ``power_timeout`` govern power verification; ``soft_timeout`` how
    long ``soft`` waits for the OS; with ``hard_after`` a ``soft`` waits that long, then
    forces the power off.  A canary is done when verified and healthy within
    ``canary_timeout``; ``boot_timeout`` is how long clear-boot waits for the provisioner
    to see the boot; ``reimage_timeouts`` the reimage's phase limits (its defaults if None).
    """

    fanout: int = 10
    canary: int = 0
    max_failures: int | None = None
    stagger: float = 0.0
    poll_interval: float = 1.0
    power_timeout: float = 120.0
    soft_timeout: float = 300.0
    hard_after: float | None = None
    request_timeout: float = 10.0
    canary_timeout: float = 900.0
    on_cancel: OnCancel | None = None
    boot_timeout: float = 600.0
    reimage_timeouts: PhaseTimeouts | None = None

    def __post_init__(self) -> None:
        if self.fanout < 1:
            raise PlanError(f"--fanout must be at least 1, got {self.fanout}")
        if self.canary < 0:
            raise PlanError(f"--canary must be 0 or more, got {self.canary}")
        if self.max_failures is not None and self.max_failures < 1:
            raise PlanError(f"--max-failures must be at least 1, got {self.max_failures}")
        if self.stagger < 0:
            raise PlanError(f"--stagger must be 0 or more seconds, got {self.stagger}")
        if self.on_cancel is not None:
            try:
                object.__setattr__(self, "on_cancel", OnCancel(self.on_cancel))
            except ValueError:
                raise PlanError(f"--on-cancel must be finish or rollback, got {self.on_cancel!r}") from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """The options an action command was given (``--timeout`` is the request timeout)."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        if hasattr(args, "timeout"):
            given["request_timeout"] = args.timeout
        return cls(**given)
