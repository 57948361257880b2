"""The attach escape filter: ``~`` only at the start of a line, as ssh reads it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.serial.escape import Command, Data, EscapeFilter, help_text

TILDE = ord("~")


def run(*chunks: bytes) -> list[Data | Command]:
    """Feed the chunks one by one, then flush; adjacent data merged (chunking must not matter)."""
    f = EscapeFilter()
    items = [item for chunk in chunks for item in f.feed(chunk)] + f.flush()
    merged: list[Data | Command] = []
    for item in items:
        if isinstance(item, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + item.data)
        else:
            merged.append(item)
    return merged


def sent(items: list[Data | Command]) -> bytes:
    return b"".join(i.data for i in items if isinstance(i, Data))


def line_starts(data: bytes) -> list[int]:
    """Indexes that start a line: 0, and each right after CR or LF."""
    return [i for i in range(len(data)) if i == 0 or data[i - 1] in (0x0D, 0x0A)]


def plain(data: bytes) -> bytes:
    """``data`` with an ``x`` put before every ``~`` that starts a line: text with no escape in it."""
    starts = set(line_starts(data))
    out = bytearray()
    for i, ch in enumerate(data):
        if ch == TILDE and i in starts:
            out += b"x"
        out.append(ch)
    return bytes(out)


def escaped(data: bytes) -> bytes:
    """``data`` as an operator types it to send it as is: every line-start ``~`` doubled."""
    starts = set(line_starts(data))
    return b"".join(b"~~" if ch == TILDE and i in starts else bytes([ch]) for i, ch in enumerate(data))


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


# Bytes with many tildes and line ends, so the interesting cases come up often.
console_bytes = st.binary(max_size=200) | st.lists(
    st.sampled_from([b"~", b"\r", b"\n", b".", b"B", b"?", b"a", b"\x00", b"\xff", b"~~"]), max_size=60
).map(b"".join)


@given(console_bytes, st.lists(st.integers(min_value=0), max_size=8))
def test_plain_data_passes_through_unchanged_in_any_chunks(data, cuts):
    text = plain(data)
    assert run(*splits(text, cuts)) == ([Data(text)] if text else [])


@given(console_bytes, st.lists(st.integers(min_value=0), max_size=8))
def test_doubled_line_start_tildes_send_the_exact_bytes(data, cuts):
    assert sent(run(*splits(escaped(data), cuts))) == data
    assert not [i for i in run(escaped(data)) if isinstance(i, Command)]


@given(console_bytes, st.lists(st.integers(min_value=0), max_size=8))
def test_chunking_never_changes_the_meaning(data, cuts):
    assert run(*splits(data, cuts)) == run(data)


@given(st.binary(max_size=100).filter(lambda b: b"\r" not in b and b"\n" not in b))
def test_a_tilde_mid_line_is_never_an_escape(rest):
    for command in (b"~.", b"~B", b"~?", b"~~"):
        data = b"ls " + rest + command
        assert run(data) == [Data(data)]


@pytest.mark.parametrize("typed, expected", [
    (b"~.", [Command("leave")]),
    (b"~B", [Command("break")]),
    (b"~?", [Command("help")]),
    (b"~~", [Data(b"~")]),
    (b"~x", [Data(b"~x")]),
    (b"~b", [Data(b"~b")]),  # ssh's escapes are case-sensitive; lowercase b is data
    (b"~", [Data(b"~")]),  # input ended after it: sent as typed
    (b"uname\r~.", [Data(b"uname\r"), Command("leave")]),
    (b"uname\n~.", [Data(b"uname\n"), Command("leave")]),
    (b"a~.", [Data(b"a~.")]),
    (b"~B~B~.", [Command("break"), Command("break"), Command("leave")]),  # still at the line's start
    (b"~~.", [Data(b"~.")]),  # the doubled ~ is data: the line is no longer at its start
    (b"~\r~.", [Data(b"~\r"), Command("leave")]),
    (b"root\r~?pw\r", [Data(b"root\r"), Command("help"), Data(b"pw\r")]),
])
def test_escapes(typed, expected):
    assert run(typed) == expected
    assert run(*[bytes([b]) for b in typed]) == expected  # typed one key at a time


def test_pending_escape_waits_for_the_next_key():
    f = EscapeFilter()
    assert f.feed(b"~") == [] and f.pending
    assert f.feed(b".") == [Command("leave")] and not f.pending
    assert f.flush() == []


def test_other_escape_character_and_help():
    f = EscapeFilter(b"&")
    assert f.feed(b"~.\r&.") == [Data(b"~.\r"), Command("leave")]
    assert f.feed(b"a&.") == [Data(b"a&.")]
    assert "&." in help_text(b"&") and "\r\n" in help_text()
    with pytest.raises(ValueError):
        EscapeFilter(b"~~")
