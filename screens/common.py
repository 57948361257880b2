"""Shared bits for every screen: the FleetChanged message, status styling, outside text.

Every status is shown as a symbol *and* a theme colour, so it reads without colour
(``NO_COLOR`` is honoured by Textual itself).

Text from outside (node and switch names, whatever a BMC, switch or host said,
journal entries, the operator's name, a filter typed) is data: screens show it as
:func:`outside` ``Text`` (control characters made visible by
:func:`console.text.visible`), never inside a markup string, and notifications
carrying it go out with ``markup=False``.  A BMC whose Model is ``[/]`` would
otherwise stop the console with a MarkupError.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.message import Message

from console.text import visible
from inventory.model import PLAIN_HTTP, TLS_NOT_VERIFIED

__all__ = ["FleetChanged", "status_text", "SYMBOLS", "age_text", "node_words", "words_signature", "STATE_WORDS",
           "outside", "transport_warning", "INSECURE"]


class FleetChanged(Message):
    """A batch of fleet state changes (one message per batch, never one per host)."""

    def __init__(self, nodes: set[str], switches: set[str]) -> None:
        super().__init__()
        self.nodes = nodes
        self.switches = switches


#: word -> (symbol, style).  Styles are theme-neutral Rich styles resolved per theme by
#: the widgets' component classes where it matters; these keep meaning without colour.
SYMBOLS: dict[str, tuple[str, str]] = {
    "on": ("●", "green"),
    "off": ("○", "dim"),
    "unknown": ("?", "yellow"),
    "ok": ("✓", "green"),
    "warning": ("!", "yellow"),
    "critical": ("✗", "bold red"),
    "error": ("✗", "bold red"),
    "drift": ("≠", "magenta"),
    "match": ("✓", "green"),
    "mismatch": ("✗", "bold red"),
    "ambiguous": ("~", "yellow"),
    "unmanaged": ("-", "dim"),
    "up": ("▲", "green"),
    "down": ("▼", "red"),
}


def outside(value: object, style: str = "") -> Text:
    """Text that came from outside, shown as it is: no markup, control characters visible."""
    return Text(visible(value), style=style)


def status_text(word: str | None, label: str | None = None) -> Text:
    """``● on``-style text for a status word (the label may come from outside: shown as text)."""
    if word is None:
        return Text("-", style="dim")
    symbol, style = SYMBOLS.get(word, ("·", ""))
    return Text(f"{symbol} {visible(label if label is not None else word)}", style=style)


#: the mark of a node whose BMC password crosses the network unprotected
INSECURE = ("⚠", "bold yellow")


def transport_warning(bmc) -> str | None:
    """Why the BMC password of a node is exposed on the wire, or None when it is not
    (the inventory's :attr:`~inventory.model.Bmc.insecure_transport`, in words).

    Redfish sends the password with every login: over plain HTTP (``scheme: http``)
    anyone on the path reads it; over TLS that is not verified (``verify_tls:
    false``) it goes to whoever answers at the address.  IPMI's RMCP+ never sends
    the password itself.
    """
    reason = bmc.insecure_transport
    if reason == PLAIN_HTTP:
        return "BMC password sent over plain HTTP: anyone on the path can read it"
    if reason == TLS_NOT_VERIFIED:
        return f"TLS not verified: the BMC password goes to whoever answers at {visible(bmc.address)}"
    return None


def age_text(ts: float | None, now: float | None = None) -> Text:
    """How long ago, compactly: ``3s``, ``2m``, ``1h``; ``never`` when None."""
    if ts is None:
        return Text("never", style="dim")
    age = max(0.0, (now if now is not None else time.time()) - ts)
    if age < 60:
        s = f"{age:.0f}s"
    elif age < 3600:
        s = f"{age / 60:.0f}m"
    else:
        s = f"{age / 3600:.0f}h"
    return Text(s, style="yellow" if age > 120 else "")


def node_words(fleet, node) -> dict[str, object]:
    """Inventory attributes plus live state words, for the selection syntax in filters."""
    st = fleet.nodes[node.name]
    attrs: dict[str, object] = dict(node.attributes())
    attrs["power"] = st.power
    attrs["health"] = st.health
    attrs["image_state"] = fleet.image_state(node)
    finding = fleet.port_finding(node)
    if finding:
        attrs["port"] = finding
    attrs["state"] = tuple(w for w in (
        "error" if st.error else None,
        "drift" if fleet.image_state(node) == "drift" else None,
        "miscabled" if finding == "mismatch" else None,
        "stale" if st.last_success is None else None,
    ) if w)
    return attrs


def words_signature(st) -> tuple:
    """What :func:`node_words` reads of a node's live state: while it is the same, so are
    the words (a poll that only moved the node's timestamps changes nothing to select by)."""
    return (st.power, st.health, st.image_running, st.discovered_port, bool(st.port_evidence),
            bool(st.errors), st.last_success is None)


#: every live state word :func:`node_words` can give: a filter for one of them is valid
#: (and live) even while no node has it
STATE_WORDS = frozenset({"on", "off", "unknown", "ok", "warning", "critical", "drift", "unmanaged",
                         "match", "mismatch", "ambiguous", "error", "miscabled", "stale"})
