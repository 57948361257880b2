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

__all__ = ["visible"]


def _shown(code: int) -> str:
    if code < 0x20:
        return "^" + chr(code + 0x40)  # ESC -> ^[, BEL -> ^G, NUL -> ^@
    if code == 0x7F:
        return "^?"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


#: every character :func:`visible` replaces, and what with (``str.translate`` does it in C)
_UNSAFE = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A), *range(0xD800, 0xE000)]
_TABLE = {code: _shown(code) for code in _UNSAFE}
#: the same, newline left alone
_TABLE_KEEP_NEWLINES = {code: shown for code, shown in _TABLE.items() if code != 0x0A}


def visible(text: object, *, newlines: bool = False) -> str:
    """``text`` (made a ``str``) with every control, bidi and separator character shown
    as printable text (``^[``, ``\\x9b``, ``\\u202e``); ``newlines=True`` keeps line
    breaks.  A string with none of them comes back as it is (the common case, cheap)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if text.isprintable():  # every character replaced is a non-printable one: the common case, cheap
        return text
    return text.translate(_TABLE_KEEP_NEWLINES if newlines else _TABLE)
