"""Text from outside made safe to show: :func:`visible`.

Strings that came from a BMC (model, serial, sensor names, event messages, error
bodies), a switch (sysDescr, port names, LLDP), a host (``/etc/os-release``), a
file (the site, the journal) or the environment (``$FLEET_OPERATOR``) are data.
Written to a terminal as they are, an ESC sequence in one of them sets the window
title, clears the screen or moves the cursor; a bidi override reorders the line so
it reads as something else.  Every output boundary (the CLI's tables and messages,
the TUI's widgets) passes such strings through :func:`visible` first, which shows
those characters the way ``cat -v`` does instead of letting the terminal act on
them:

- C0 controls and DEL in caret notation: ESC is ``^[``, BEL ``^G``, DEL ``^?``
  (newline is ``^J`` too, unless ``newlines=True``: a table cell stays one line);
- C1 controls (U+0080-U+009F; U+009B is a one-character CSI on some terminals),
  the bidi controls (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069), the
  line and paragraph separators (U+2028-U+2029) and lone surrogates (which no
  encoder writes) as Python escapes, ``\\x9b``, ``\\u202e``.

Markup is the screens' concern, not this module's: they build ``rich.text.Text``
from the result (never a markup string).  ``--json`` output needs nothing from
here: ``json.dump`` with ``ensure_ascii`` (its default) writes every character
outside ASCII, and every control character, as a ``\\uXXXX`` escape, so the bytes
of a JSON document never carry one while its values keep the exact text.

This module has no dependencies: the engine, the CLI and the screens all use it.
"""

from __future__ import annotations

import re

__all__ = ["visible"]

#: every character :func:`visible` replaces
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: the same, newline left alone
_UNSAFE_KEEP_NEWLINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                                   "\u2066-\u2069\ud800-\udfff]")


def _shown(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x20:
        return "^" + chr(code + 0x40)  # ESC -> ^[, BEL -> ^G, NUL -> ^@
    if code == 0x7F:
        return "^?"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def visible(text: object, *, newlines: bool = False) -> str:
    """``text`` (made a ``str``) with every control, bidi and separator character shown
    as printable text (``^[``, ``\\x9b``, ``\\u202e``); ``newlines=True`` keeps line
    breaks.  A string with none of them comes back as it is (the common case, cheap)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    pattern = _UNSAFE_KEEP_NEWLINES if newlines else _UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_shown, text)
