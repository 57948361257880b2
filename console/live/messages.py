"""What crosses the pipe between the console and its poller's process (:mod:`console.live.pollproc`).

Every message is a small frozen dataclass, pickled by :class:`multiprocessing.connection.Connection`.
The console sends :class:`Setup` once, then requests (:class:`PollNode`, :class:`PollSwitch`,
:class:`Close`), each with an id its :class:`Replied` answer carries back.  The child sends what
changed (:class:`StatesChanged`), the answers, its log records (:class:`Logged`) and, when it
fails as a whole, why (:class:`Failed`).  A request's states are sent before its answer, so
they are in the console's Fleet when the asker resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.live.fleet import NodeState, SwitchState
    from console.live.poller import PollConfig
    from console.secrets import Secrets
    from inventory.model import Site

__all__ = ["Setup", "PollNode", "PollSwitch", "Close", "Request", "StatesChanged", "Replied", "Logged", "Failed",
           "Report"]


# ---------------------------------------------------------------- console -> poller
@dataclass(frozen=True)
class Setup:
    """The first message: what to poll, with which credentials and cadences; the log level."""

    site: Site
    secrets: Secrets
    config: PollConfig
    log_level: int


@dataclass(frozen=True)
class PollNode:
    """Poll ``jobs`` of node ``name`` now (an operator asked: no backoff wait)."""

    rid: int
    name: str
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class PollSwitch:
    """Poll switch ``name`` now."""

    rid: int
    name: str


@dataclass(frozen=True)
class Close:
    """Stop polling, log out of every BMC, answer, and end."""

    rid: int


Request = PollNode | PollSwitch | Close


# ---------------------------------------------------------------- poller -> console
@dataclass(frozen=True)
class StatesChanged:
    """The states of the nodes and switches that changed since the last of these."""

    nodes: dict[str, NodeState]
    switches: dict[str, SwitchState]
    last_sweep_at: float | None


@dataclass(frozen=True)
class Replied:
    """Request ``rid`` is done: ``error`` is None, or why it failed."""

    rid: int
    error: str | None


@dataclass(frozen=True)
class Logged:
    """A log record of the child, to be logged again in the console under its logger's name."""

    level: int
    logger: str
    text: str


@dataclass(frozen=True)
class Failed:
    """The poller failed as a whole (the child ends next)."""

    why: str


Report = StatesChanged | Replied | Logged | Failed
