"""The per-node console log (console.serial.log): lines, markers, rotation, safety."""

from __future__ import annotations

import os
import stat

import pytest

from console.serial.log import ConsoleLog, LogError, ansi_stripped, log_path, read_log


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def clock(start: float = 1_800_000_000.25):
    t = [start]

    def now() -> float:
        t[0] += 1
        return t[0]

    return now


def test_lines_are_timestamped_and_markers_cannot_be_forged():
    lg = ConsoleLog("s1", "n01", clock=clock())
    lg.write(b"BIOS\r\nlogin: ")
    lg.marker("attach", "alice")
    lg.write(b"root\r\n* takeover: mallory\r\n")
    lg.close()
    text = read_log("s1", "n01")
    assert text.splitlines() == [
        "2027-01-15T08:00:01.250Z | BIOS",
        "2027-01-15T08:00:01.250Z | login: ",
        "2027-01-15T08:00:02.250Z * attach: alice",
        "2027-01-15T08:00:03.250Z | root",
        "2027-01-15T08:00:03.250Z | * takeover: mallory",
    ]


def test_partial_lines_continue_and_a_new_process_starts_a_new_line():
    lg = ConsoleLog("s1", "n02", clock=clock())
    lg.write(b"log")
    lg.write(b"in: ")
    lg.close()
    lg = ConsoleLog("s1", "n02", clock=clock())
    lg.write(b"again\n")
    lg.close()
    lines = read_log("s1", "n02").splitlines()
    assert [line[25:] for line in lines] == ["| login: ", "| again"]


def test_files_are_private():
    lg = ConsoleLog("s1", "n03")
    lg.write(b"x\n")
    lg.close()
    path = log_path("s1", "n03")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700


def test_rotation_keeps_n_files_oldest_first(state_home):
    lg = ConsoleLog("s1", "n04", max_bytes=1024, backups=3, clock=clock())
    for i in range(200):
        lg.write(f"line {i:03d} ".encode() + b"x" * 40 + b"\r\n")
    lg.close()
    d = log_path("s1", "n04").parent
    names = sorted(p.name for p in d.iterdir())
    assert names == ["n04.log", "n04.log.1", "n04.log.2", "n04.log.3"]
    for name in names:
        size = (d / name).stat().st_size
        assert size <= 1024
        assert (d / name).read_bytes().startswith(b"20")  # every file starts with a time
    text = read_log("s1", "n04")
    numbers = [int(line.split("line ")[1][:3]) for line in text.splitlines()]
    assert numbers == sorted(numbers) and numbers[-1] == 199
    assert numbers[0] > 0  # the oldest were rotated away
    assert read_log("s1", "n04", lines=2).count("\n") == 2
    assert "line 199" in read_log("s1", "n04", lines=1)


def test_rotation_mid_line_keeps_time_prefixes():
    lg = ConsoleLog("s1", "n05", max_bytes=1024, backups=2, clock=clock())
    for _ in range(60):
        lg.write(b"abcdefghijklmnopqrstuvwxyz")  # one long line, written in pieces
    lg.close()
    for line in read_log("s1", "n05").splitlines():
        assert line[:4] == "2027" and line[24:27] == " | "


def test_ansi_kept_or_stripped():
    lg = ConsoleLog("s1", "n06")
    lg.write(b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain\n")
    lg.close()
    assert "\x1b[1;31mred" in read_log("s1", "n06")
    assert read_log("s1", "n06", strip_ansi=True).endswith("| red plain\n")
    assert ansi_stripped("\x1b[2J\x1b[Hok") == "ok"


def test_symlinks_are_refused(state_home, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    lg = ConsoleLog("s1", "n07")
    lg.write(b"x\n")
    lg.close()
    path = log_path("s1", "n07")
    path.unlink()
    path.symlink_to(target)
    lg = ConsoleLog("s1", "n07")
    with pytest.raises(LogError, match="symbolic link"):
        lg.write(b"y\n")
    lg.close()
    assert target.read_text() == ""
    with pytest.raises(LogError, match="symbolic link"):
        read_log("s1", "n07")


def test_a_linked_directory_is_refused(state_home, tmp_path):
    (state_home / "fleet-console" / "s2").mkdir(parents=True, mode=0o700)
    (tmp_path / "other").mkdir()
    (state_home / "fleet-console" / "s2" / "console").symlink_to(tmp_path / "other")
    with pytest.raises(LogError, match="not a directory"):
        ConsoleLog("s2", "n01").write(b"x\n")
    assert list((tmp_path / "other").iterdir()) == []


def test_bad_names_and_missing_logs():
    with pytest.raises(LogError, match="not a node name"):
        ConsoleLog("s1", "../x")
    with pytest.raises(LogError, match="not a site name"):
        read_log("a/b", "n01")
    assert read_log("s1", "never") == ""
    assert read_log("nosite", "n01") == ""
