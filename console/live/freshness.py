"""How current a :class:`~console.live.fleet.Fleet` is: the stale banner and the polls' age.

Anything that reads a Fleet while it is kept fresh (the TUI, a CLI that watches) can
say when the data should not be trusted: the poller stopped, nothing has answered a
poll for a while, or every BMC fails (the site looks unreachable).  And how old the
oldest fact on show is: the least recently polled node's last poll.  And since when a
node's fact has been so (:func:`since_text`: ``14m``, ``≥2h``).

:class:`Freshness` follows the nodes that changed (as a Fleet's changes are drained)
instead of scanning every state each time: a scan of every state was ~5 ms at 5,000
nodes, and the banner is asked for every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from console.live.fleet import Fleet, NodeState, Since

__all__ = ["Freshness", "PollAge", "stale_after", "since_text", "node_since"]

#: :meth:`Freshness.poll_age` works its answer out at most this often (seconds)
POLL_AGE_EVERY_S = 1.0


def stale_after(power_interval: float) -> float:
    """Seconds without any successful poll after which the data is stale: three fast
    polls missed, and never under half a minute."""
    return max(3 * power_interval, 30.0)


class PollAge(NamedTuple):
    """How current the node states are."""

    #: nodes not polled yet
    unpolled: int
    #: when the least recently polled of the others was last polled (the Fleet's clock), or None
    oldest: float | None


class Freshness:
    """Follows a Fleet's changed nodes into the stale banner and the polls' age.

    Call :meth:`track` with the names drained from the Fleet (every one, or the
    banner misses them); :meth:`staleness` and :meth:`poll_age` then answer at once.
    """

    def __init__(self, fleet: Fleet, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.fleet = fleet
        self._monotonic = monotonic
        #: the newest successful poll of any node (the Fleet's clock), None before the first
        self.newest_success: float | None = None
        #: the nodes whose last poll failed
        self.failing: set[str] = set()
        self._age: tuple[float, PollAge] | None = None
        self.track(fleet.nodes)

    def track(self, names: Iterable[str]) -> None:
        """Follow the changed nodes ``names``."""
        nodes, failing, newest = self.fleet.nodes, self.failing, self.newest_success
        for name in names:
            st = nodes[name]
            if st.last_success is not None and (newest is None or st.last_success > newest):
                newest = st.last_success
            if st.error:
                failing.add(name)
            else:
                failing.discard(name)
        self.newest_success = newest

    def poll_age(self) -> PollAge:
        """How current the states are.  Worked out at most once a second
        (``POLL_AGE_EVERY_S``): a scan of every node, under a millisecond at 5,000."""
        now = self._monotonic()
        if self._age is None or now - self._age[0] >= POLL_AGE_EVERY_S:
            stamps = [st.polled_at for st in self.fleet.nodes.values()]
            polled = [stamp for stamp in stamps if stamp is not None]
            self._age = (now, PollAge(len(stamps) - len(polled), min(polled) if polled else None))
        return self._age[1]

    def staleness(self, *, power_interval: float, failure: str | None = None,
                  now: float | None = None) -> str | None:
        """A banner text when polling stopped (``failure``: why), the poller is behind, or
        nothing answers; else None.  ``power_interval``: the fast polls' cadence;
        ``now``: the Fleet's clock unless given."""
        if failure:
            return f"⚠ polling stopped ({failure}); restarting it"
        total = len(self.fleet.nodes)
        if not total:
            return None
        newest = self.newest_success
        if newest is None:
            if self.failing:
                return "⚠ no BMC has answered: check the network path to the site and the credentials"
            return None
        if now is None:
            now = self.fleet.clock()
        if now - newest > stale_after(power_interval):
            return f"⚠ data is stale: the last successful poll was {now - newest:.0f}s ago"
        if len(self.failing) == total:
            return "⚠ every BMC is failing: the site looks unreachable"
        return None


def since_text(since: Since | float | None, now: float) -> str:
    """How long a fact has been so, compactly, moving once a minute at most (an idle
    screen stays still): ``<1m``, ``14m``, ``3h``, ``2d``; ``≥14m`` when it was already
    so the first time the console looked (:attr:`Since.seen` False); "" when unknown."""
    if since is None:
        return ""
    at, seen = (since.at, since.seen) if isinstance(since, Since) else (since, True)
    age = max(0.0, now - at)
    if age < 60:
        text = "<1m"
    elif age < 3600:
        text = f"{int(age // 60)}m"
    elif age < 86400:
        text = f"{int(age // 3600)}h"
    else:
        text = f"{int(age // 86400)}d"
    return text if seen or text == "<1m" else "≥" + text


def node_since(st: NodeState, fact: str, now: float) -> str:
    """:func:`since_text` of one of the node's facts (``power``, ``health``, ``cabling``,
    ``image``, ``reachability``); "" when not known."""
    return since_text(st.since.get(fact), now)
