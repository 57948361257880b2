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

from rich.terminal_theme import TerminalTheme
from rich.text import Text
from textual.message import Message

from console.live import words
from console.live.columns import AGE_WARNING_S, age_words
from console.live.words import STATE_WORDS, node_words, words_signature
from console.text import visible
from inventory.model import PLAIN_HTTP, TLS_NOT_VERIFIED

__all__ = ["FleetChanged", "status_text", "SYMBOLS", "age_text", "short_time", "node_words", "words_signature",
           "STATE_WORDS", "outside", "transport_warning", "INSECURE", "ANSI_DARK"]


class FleetChanged(Message):
    """A batch of fleet state changes (one message per batch, never one per host)."""

    def __init__(self, nodes: set[str], switches: set[str]) -> None:
        super().__init__()
        self.nodes = nodes
        self.switches = switches


#: status word -> its style: ANSI colours, which the app maps through its ANSI theme
#: (:data:`ANSI_DARK` on dark themes), so every theme works; the symbols keep the
#: meaning without colour.  ``?`` (unknown) is cyan and ``!`` (warning) orange: two
#: meanings, two colours.  Each reads at 4.5:1 or more on the default theme
#: (tests/tui/test_colours.py computes it).
STYLES: dict[str, str] = {
    "on": "green", "off": "dim", "unknown": "cyan",
    "ok": "green", "warning": "yellow", "critical": "bold red", "error": "bold red",
    "drift": "magenta", "match": "green", "mismatch": "bold red", "ambiguous": "yellow", "unmanaged": "dim",
    "up": "green", "down": "red",
}

#: the app's ANSI colours on dark themes: Textual's Monokai with a red that reads (its
#: #F4005F is 4.0:1 on the table's background), a magenta that is not that red (drift
#: and critical looked alike) and a bright black at 4.5:1 instead of 2.9:1
ANSI_DARK = TerminalTheme(
    (12, 12, 12), (217, 217, 217),
    [(26, 26, 26), (255, 95, 135), (152, 224, 36), (253, 151, 31), (157, 101, 255), (215, 135, 255),
     (88, 209, 235), (196, 197, 181)],
    [(148, 148, 148), (255, 107, 139), (152, 224, 36), (224, 213, 97), (157, 101, 255), (215, 135, 255),
     (88, 209, 235), (246, 246, 239)],
)
#: word -> (symbol, style): the engine's symbol (:data:`console.live.words.SYMBOLS`) in its colour
SYMBOLS: dict[str, tuple[str, str]] = {word: (symbol, STYLES[word]) for word, symbol in words.SYMBOLS.items()}


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
    """How long ago, coarsely, so an idle screen stays still: ``<1m`` (fresh: a fact polled
    every few seconds does not tick), then whole minutes ``3m``, hours ``2h``, days ``4d``
    (each moves once a minute, hour, day); ``never`` when None.  Yellow past two minutes."""
    if ts is None:
        return Text("never", style="dim")
    now = now if now is not None else time.time()  # the words: the fleet table's AGE column's
    return Text(age_words(ts, now), style="yellow" if now - ts > AGE_WARNING_S else "")


def short_time(value: str | float | None, missing: str = "-") -> str:
    """``11-27 02:10:03`` (UTC) from an ISO 8601 string (the journal's, a BMC's event) or
    unix seconds (:func:`console.live.words.iso`); ``missing`` when None, any other text as it is."""
    if value is None:
        return missing
    text = (words.iso(value) or "") if isinstance(value, (int, float)) else str(value)
    # 2026-11-27T02:10:03.120Z -> 11-27 02:10:03
    if len(text) >= 19 and text[4] == "-" and text[10] == "T":
        return f"{text[5:10]} {text[11:19]}"
    return text
