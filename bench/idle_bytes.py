"""Benchmark: bytes per second the console writes to its terminal while nothing changes.

    python bench/idle_bytes.py                      # 80x24, 30 s after settling
    python bench/idle_bytes.py --size 200x60 --seconds 60
    python bench/idle_bytes.py --dump /tmp/idle.out # keep what was written, to see what

It runs the real console (``fleet-console --site demo``) in a pseudo-terminal of the
given size, with the demo lab and polling on at the default cadences, waits until the
fleet screen is up and the first polls have settled (``--settle`` seconds), then counts
the bytes written to the terminal over ``--seconds`` and prints bytes per second.  No
key is pressed while counting.  Over SSH every byte costs: the target is < 1 KB/s at
80x24 with nothing changing (polls that find the same state redraw nothing; ages past
a minute move once a minute).

The console gets a state and runtime directory of its own (so it starts its own demo
lab, and its log and journal go there).  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1024.0  # bytes per second at 80x24


def _read_for(fd: int, seconds: float, sink: list[bytes]) -> int:
    """Read what the console writes for ``seconds``; the number of bytes (kept in ``sink``)."""
    end = time.monotonic() + seconds
    total = 0
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the console ended
            break
        if not chunk:
            break
        total += len(chunk)
        sink.append(chunk)
    return total


def _wait_for(fd: int, marker: bytes, timeout: float) -> bool:
    """Read until ``marker`` was written (the fleet screen is up), at most ``timeout`` s."""
    seen = b""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            seen = (seen + chunk)[-65536:]
            if marker in seen:
                return True
    return False


def run(columns: int, rows: int, settle: float, seconds: float, dump: Path | None) -> float:
    """Bytes per second written at idle by the console in a ``columns`` x ``rows`` terminal."""
    with tempfile.TemporaryDirectory(prefix="idle-bytes-") as tmp:
        env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor",
                   XDG_STATE_HOME=str(Path(tmp, "state")), XDG_RUNTIME_DIR=str(Path(tmp, "run")),
                   FLEET_CONSOLE_LOCKS=str(Path(tmp, "locks")), FLEET_CONSOLE_READ_ONLY="0",
                   PYTHONPATH=str(ROOT))
        env.pop("NO_COLOR", None)
        for sub in ("state", "run"):
            Path(tmp, sub).mkdir(mode=0o700)
        pid, fd = pty.fork()
        if pid == 0:  # the console, in the pseudo-terminal
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.chdir(tmp)
            os.execve(sys.executable, [sys.executable, "-m", "console.cli.main", "--site", "demo"], env)
        try:
            if not _wait_for(fd, b"shown", timeout=120):
                raise SystemExit("the fleet screen did not show within 120 s")
            _read_for(fd, settle, [])
            sink: list[bytes] = []
            total = _read_for(fd, seconds, sink)
            if not _alive(pid) or os.waitpid(pid, os.WNOHANG)[0]:
                raise SystemExit("the console ended while counting")
            if dump is not None:
                dump.write_bytes(b"".join(sink))
            os.write(fd, b"q")  # quit: logs out of every BMC, stops the lab
            _read_for(fd, 10, [])
        finally:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                done = pid
            if not done:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            os.close(fd)
        return total / seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # (a zombie too: waitpid says whether it ended)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="80x24", help="COLUMNSxROWS (80x24)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the fleet screen shows (20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds counted (30)")
    parser.add_argument("--dump", type=Path, help="write the bytes counted to this file")
    args = parser.parse_args()
    columns, rows = (int(v) for v in args.size.lower().split("x"))
    rate = run(columns, rows, args.settle, args.seconds, args.dump)
    verdict = "" if (columns, rows) != (80, 24) else (" (target < 1024 B/s: "
                                                     f"{'met' if rate < TARGET else 'MISSED'})")
    print(f"idle {columns}x{rows}: {rate:,.0f} bytes/s written over {args.seconds:.0f} s{verdict}")


if __name__ == "__main__":
    main()
