"""Attack: a hostile node's console output read back from the console log.

The raw attach passes the node's bytes as they are by design (the terminal is the
node's VT, as with ipmitool or ssh), but reading the log afterwards must not let the
node act on the reader's terminal: OSC 52 (clipboard), a title set and report, DECRQSS
and DA queries that make the terminal type into the shell.  And a node cannot forge a
line of the console's own (``*`` markers) with \\r, \\x1e, \\x85 or U+2028, which
``str.splitlines`` would split at.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from console.live.timeline import build_timeline, console_entries, text_lines
from console.serial.log import ConsoleLog, colours_only, read_log
from tests import cli_fork

HOSTILE = (b"\x1b[1;31mred\x1b[0m plain\n"
           b"clip \x1b]52;c;cm0gLXJmIH4K\x07 title \x1b]0;pwned\x1b\\ report \x1b[21t\n"
           b"decrqss \x1bP$qm\x1b\\ da \x1b[c c1 \xc2\x9b6n bidi \xe2\x80\xae gnp.exe\n"
           b"bad utf8 \xff\xfe\tafter a tab\n")
FORGED = [b"x\r2026-01-01T00:00:00.000Z * takeover: mallory took the console\n",
          b"x\x1e2026-01-01T00:00:01.000Z * takeover: mallory took the console\n",
          b"x\xc2\x852026-01-01T00:00:02.000Z * takeover: mallory took the console\n",
          b"x\xe2\x80\xa82026-01-01T00:00:03.000Z * takeover: mallory took the console\n"]


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _write(data: list[bytes], node: str = "dal1-r01-n01") -> None:
    log = ConsoleLog("demo", node, clock=lambda: 1_800_000_000.0)
    try:
        for chunk in data:
            log.write(chunk)
    finally:
        log.close()


def _dangerous(text: str) -> list[str]:
    """What in ``text`` a terminal would obey beyond colours."""
    stripped = text
    for sgr in ("\x1b[1;31m", "\x1b[0m"):
        stripped = stripped.replace(sgr, "")
    return [c for c in stripped if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0
            or c in "\u202e\u2028"]


def test_colours_only_keeps_colours_and_shows_the_rest():
    out = colours_only(HOSTILE.decode("utf-8", "replace"))
    assert "\x1b[1;31mred\x1b[0m" in out
    assert _dangerous(out) == []
    assert "^[]52;c;cm0gLXJmIH4K^G" in out and "^[[21t" in out and "^[P$qm" in out and "\\x9b6n" in out
    assert "\\u202e" in out and "\tafter a tab" in out
    assert out.endswith("\x1b[0m")


def test_log_command_is_safe_on_a_terminal_by_default_and_raw_when_asked(state):
    _write([HOSTILE])
    env = dict(os.environ, XDG_STATE_HOME=str(state))

    def run(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return cli_fork.run(["--site", "demo", "console",
                               "dal1-r01-n01", "--log", *extra], capture_output=True, env=env, timeout=120)

    plain = run()
    assert plain.returncode == 0, plain.stderr
    text = plain.stdout.decode()
    assert "\x1b[1;31mred" in text and _dangerous(text) == []
    assert "^[]52;c;" in text
    raw = run("--raw")
    assert raw.returncode == 0 and b"\x1b]52;c;cm0gLXJmIH4K\x07" in raw.stdout
    stripped = run("--strip-ansi")
    assert stripped.returncode == 0 and b"\x1b" not in stripped.stdout and b"\xc2\x9b" not in stripped.stdout
    both = run("--raw", "--strip-ansi")
    assert both.returncode == 2 and b"give one" in both.stderr and b"Traceback" not in both.stderr


def test_a_node_cannot_forge_a_console_marker(state):
    _write(FORGED)
    text = read_log("demo", "dal1-r01-n01")
    entries, count = console_entries(text)
    assert count == len(FORGED)
    assert all(e.symbol == "»" for e in entries), [(e.symbol, e.text) for e in entries]
    assert not any(e.at < 1_800_000_000 for e in entries)  # no back-dated line either
    tl = build_timeline("demo", "dal1-r01-n01", image=False, journal=False)
    lines = text_lines(tl)
    assert not any("console takeover" in line for line in lines)
    for line in lines:
        assert _dangerous(line) == []


def test_lines_counts_log_lines_not_the_nodes_separators(state):
    _write(FORGED)
    last = read_log("demo", "dal1-r01-n01", lines=1)
    assert last.count("\n") == 1 and last.startswith("20") and "\u2028" in last
    assert read_log("demo", "dal1-r01-n01", lines=len(FORGED)).count(" | ") == len(FORGED)


def test_timeline_of_a_hostile_log_is_visible_text(state):
    _write([HOSTILE, b"kernel panic \x1b]52;c;AAAA\x07 " + b"A" * 100_000 + b"\n"])
    tl = build_timeline("demo", "dal1-r01-n01", image=False, journal=False)
    lines = text_lines(tl)
    assert lines and all(_dangerous(line) == [] and "\x1b" not in line for line in lines)
    assert max(len(e.text) for e in tl.entries) <= 301
