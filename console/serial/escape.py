"""The attach escape: ``~.`` leaves, ``~B`` sends a break, ``~?`` helps, as ssh and conserver do.

An attached terminal sends every keystroke to the node's console, so the few
that control the attachment itself need an escape that plain typing never
produces by accident.  As in OpenSSH (``clientloop.c``, ``process_escapes``):

* the escape character (``~``) counts only at the start of a line: the very first
  byte, or right after a carriage return or a line feed (Enter sends CR in raw mode);
  a ``~`` anywhere else is data, always;
* ``~.`` leaves, ``~B`` sends a serial break, ``~?`` shows the help;
* ``~~`` sends one ``~``; ``~`` followed by anything else sends both bytes;
* after a command the line is still at its start, so ``~B~B`` sends two breaks.

:class:`EscapeFilter` is pure: :meth:`EscapeFilter.feed` takes the bytes read from
the terminal, in chunks of any size, and returns what to do, in order: runs of
:class:`Data` to send and :class:`Command` s.  A pending ``~`` is carried from one
chunk to the next; :meth:`EscapeFilter.flush` gives it back as data when input ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Command", "Data", "EscapeFilter", "ESCAPE", "help_text"]

#: the escape character, at the start of a line
ESCAPE = b"~"

CommandKind = Literal["leave", "break", "help"]
_COMMANDS: dict[int, CommandKind] = {ord("."): "leave", ord("B"): "break", ord("?"): "help"}
_LINE_ENDS = (0x0D, 0x0A)


@dataclass(frozen=True)
class Data:
    """Bytes to send to the console as they are."""

    data: bytes


@dataclass(frozen=True)
class Command:
    """An escape the operator typed: ``leave`` (``~.``), ``break`` (``~B``), ``help`` (``~?``)."""

    kind: CommandKind


def help_text(escape: bytes = ESCAPE) -> str:
    """The lines ``~?`` shows (CRLF line ends: the terminal is in raw mode)."""
    e = escape.decode("ascii")
    return (f"Supported escape sequences (at the start of a line):\r\n"
            f" {e}.  leave the console\r\n"
            f" {e}B  send a serial break\r\n"
            f" {e}?  this help\r\n"
            f" {e}{e}  send one {e}\r\n")


class EscapeFilter:
    """Splits terminal input into console data and escape commands (see the module's docs)."""

    def __init__(self, escape: bytes = ESCAPE) -> None:
        if len(escape) != 1:
            raise ValueError("the escape is one byte")
        self.escape = escape[0]
        #: the next byte starts a line (the very start counts)
        self._at_line_start = True
        #: a line-start escape was read; the next byte says what it means
        self._pending = False

    @property
    def pending(self) -> bool:
        """An escape character is waiting for the byte after it."""
        return self._pending

    def feed(self, data: bytes) -> list[Data | Command]:
        """What ``data`` means, in order: :class:`Data` runs and :class:`Command` s."""
        out: list[Data | Command] = []
        run = bytearray()
        escape = self.escape
        for ch in data:
            if self._pending:
                self._pending = False
                kind = _COMMANDS.get(ch)
                if kind is not None:
                    if run:
                        out.append(Data(bytes(run)))
                        run.clear()
                    out.append(Command(kind))
                    continue  # still at the start of the line, as ssh keeps it
                if ch != escape:
                    run.append(escape)  # not a command: the escape was data after all
            elif self._at_line_start and ch == escape:
                self._pending = True
                continue
            self._at_line_start = ch in _LINE_ENDS
            run.append(ch)
        if run:
            out.append(Data(bytes(run)))
        return out

    def flush(self) -> list[Data | Command]:
        """Input ended: a pending escape character is sent as the data it turned out to be."""
        if not self._pending:
            return []
        self._pending = False
        self._at_line_start = False
        return [Data(bytes([self.escape]))]
