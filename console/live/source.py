"""One interface for whatever keeps a Fleet fresh: :class:`PollSource`.

Two things satisfy it: :class:`~console.live.poller.Poller`, polling on this process's
event loop (the CLI, the tests), and :class:`~console.live.pollproc.PollerProcess`, the
same Poller in a child process whose observations land in this process's Fleet (the
TUI).  A per-site poller service would be a third.  Whoever uses one does not know which
it has: it starts it, asks for polls now, reads why it stopped, and closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from console.live.fleet import Fleet
    from console.live.poller import PollConfig
    from console.secrets import Secrets
    from inventory.model import Site

__all__ = ["PollSource", "PollSourceFactory"]


class PollSource(Protocol):
    """Keeps a :class:`~console.live.fleet.Fleet` fresh; polls asked for now land in it too."""

    @property
    def config(self) -> PollConfig:
        """Its cadences and limits."""
        ...

    @property
    def failure(self) -> str | None:
        """Why polling stopped other than by :meth:`aclose` (it needs replacing), or None."""
        ...

    def start(self) -> None:
        """Start polling in the background (from a running event loop)."""
        ...

    async def poll_node_now(self, name: str, jobs: Iterable[str] = ("power",)) -> None:
        """Poll ``jobs`` of node ``name`` now, skipping a failing BMC's backoff; in the Fleet on return."""
        ...

    async def poll_switch_now(self, name: str) -> None:
        """Poll switch ``name`` now; in the Fleet on return."""
        ...

    async def aclose(self) -> None:
        """Stop polling and log out of every BMC; bounded and idempotent."""
        ...


#: builds a poll source for a site, its Fleet, credentials and cadences (``Poller``,
#: ``PollerProcess``, or a test's own)
PollSourceFactory = Callable[["Site", "Fleet", "Secrets", "PollConfig"], PollSource]
