"""Benchmark: S operators' SSH sessions on one site service against S embedded consoles.

    python -m bench.service_sessions                        # 5,000 IPMI machines, 10 sessions
    python bench/service_sessions.py --nodes 1000 --sweeps 6  # the same at 1,000, in about 5 minutes

In one run, against one generated lab (``console/lab/scale.py``; its workers are child
processes, IPMI on loopback, ephemeral ports), with its own runtime, state and lock
directories:

1. ``fleet-console --site S serve --listen 127.0.0.1:0 --operators FILE`` (S operators,
   one ed25519 key each, the file 0600 in a 0700 temporary directory), then one asyncssh
   client opening a shell with a PTY (xterm, 80x24): the TUI, run by the service as that
   operator.  Once the service's poller is steady (a BMC session per machine logged in,
   then ``--warmup`` power sweeps for the cold first cycle), the lab's IPMI datagrams are
   counted over ``--sweeps`` completed power sweeps while the session types ``j``/``k``
   (cursor down ten rows, up ten) ``--keys`` times: keypress-to-screen is the time from
   writing the key to the first byte of terminal output that follows it (the console
   writes nothing at idle), the next key after the output has been quiet for 30 ms.
2. S-1 more sessions (S in all, one per operator), one sweep, the same counts, every
   session typing at once; the service's RSS and CPU, its poller process's, and its
   sessions' consoles' (the TUI processes it runs on their PTYs).
3. The service stopped (SIGTERM: it logs out of every BMC), S embedded consoles
   (``fleet-console --site S`` on PTYs of their own, 80x24, ``FLEET_SERVICE`` unset, each
   with its own poller process), the same counts over as many sweeps of every poller,
   keys, RSS and CPU.

Sweeps are counted at the lab, not on a clock: a power poll is one Get Chassis Status, so
a poller's sweep is done when the lab has answered one a node; a count ends when the lab
has answered ``sweeps x pollers x nodes`` of them since it began.  "Requests per sweep"
are the datagrams the lab's BMCs received meanwhile (session handshakes, power, sensors
and events polls: everything a poller costs a BMC) over the sweeps completed, so the
figure holds also when a loaded machine stretches the sweeps (each run says how long
its sweeps took, and the load average).  With one service it must not grow with the
sessions, and equal one embedded console's.  Prints a table and asserts nothing.  Every
process and temporary directory it made is removed on exit, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLS, ROWS = 80, 24
#: a key's frame is over when the terminal has been quiet this long
QUIET_S = 0.030
#: the pollers' BMC sessions the same this long: as logged in as they will be
PLATEAU_S = 30.0
#: how often the lab's counters are read while waiting for sweeps
SAMPLE_S = 0.5
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


# ------------------------------------------------------------------ processes
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (0 when gone)."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK") if f else 0.0


def rss_of(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of ``pid`` in MB (0 when gone)."""
    got = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in got:
                got[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return got["VmRSS"], got["VmHWM"]


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f and int(f[1]) == pid:
                out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[Any], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (only this process: its own children
    see their pipe or socket close, as they are built to)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ------------------------------------------------------------------ terminals
class Term:
    """One terminal's output as it arrives (time-stamped) and a way to type on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = bytearray()
        self.last_at = 0.0
        self.closed = False
        self._changed = asyncio.Event()

    def feed(self, data: bytes) -> None:
        if not data:
            self.closed = True
        self.buf += data
        if len(self.buf) > 1 << 20:  # keep the tail only: readiness looks at the last screenfuls
            del self.buf[: len(self.buf) - (1 << 19)]
        self.last_at = time.perf_counter()
        self._changed.set()

    async def changed(self, timeout: float) -> bool:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def text(self) -> str:
        return _ANSI.sub(b"", bytes(self.buf)).decode("utf-8", "replace")

    async def ready(self, marker: str, timeout: float) -> bool:
        """Until ``marker`` is on screen, then until a quiet second."""
        deadline = time.monotonic() + timeout
        while marker not in self.text():
            if self.closed or not await self.changed(max(0.0, deadline - time.monotonic())):
                return False
        while await self.changed(1.0):
            if self.closed:
                return False
        return True

    async def keys(self, n: int, keys: bytes = b"jjjjjjjjjjkkkkkkkkkk") -> list[float]:
        """Keypress-to-screen in ms, ``n`` times: write a key (cursor down ten rows, then up
        ten, so that a small fleet's last row never swallows one), wait for the first output."""
        out: list[float] = []
        for i in range(n):
            key = keys[i % len(keys):][:1]
            while await self.changed(QUIET_S):  # the previous frame, or a poll's redraw, ends
                pass
            t0 = time.perf_counter()
            self.write(key)
            if not await self.changed(5.0):
                print(f"  ({self.name}: no output 5 s after a key; stopped after {len(out)} keys)", flush=True)
                break
            out.append((self.last_at - t0) * 1000)
        return out


class SshTerm(Term):
    def __init__(self, name: str, conn: Any, proc: Any) -> None:
        super().__init__(name)
        self.conn, self.proc = conn, proc
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            data = await self.proc.stdout.read(65536)
            self.feed(data)
            if not data:
                return

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b"q")
            await asyncio.wait_for(self.proc.wait_closed(), 20)
        self.conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 10)
        self.task.cancel()


class PtyTerm(Term):
    """A ``fleet-console`` on a pseudo-terminal of its own, in a session of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(name)
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.feed(data)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self.write(b"q")
        deadline = time.monotonic() + 20
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # waiting for an exit; nothing measured
        await asyncio.to_thread(stop_process, self.proc, 10)
        self.kill()

    def kill(self) -> None:
        """Synchronous last resort (Ctrl-C): end the console, close the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.master < 0:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.master = -1


# ------------------------------------------------------------------ figures
def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))] if s else float("nan")


class Tree:
    """CPU and RSS of a set of processes, sampled at the start and end of a window."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.cpu0 = {k: sum(cpu_of(p) for p in v) for k, v in pids.items()}

    def finish(self, seconds: float) -> dict[str, dict[str, float]]:
        out = {}
        for k, v in self.pids.items():
            rss = [rss_of(p) for p in v]
            out[k] = {"n": len(v), "cpu_pct": (sum(cpu_of(p) for p in v) - self.cpu0[k]) / seconds * 100,
                      "rss": sum(r[0] for r in rss), "rss_max": max((r[0] for r in rss), default=0.0),
                      "hwm": sum(r[1] for r in rss)}
        return out


async def counts(lab: Any) -> tuple[int, int]:
    """(datagrams, power polls) the lab's IPMI BMCs received so far, read together."""
    got = await asyncio.to_thread(lab.ipmi_counts)
    return got["received"], got["power_polls"]


async def settle(lab: Any, sessions: int, pollers: int, warm: int, limit: float) -> float:
    """Wait until the pollers are steady: every BMC session they hold logged in (``sessions``
    at the lab, one per BMC per poller) or their number the same for :data:`PLATEAU_S`, then
    ``warm`` power sweeps of every poller more (each node's first cycle, whose SDR, FRU and
    SEL reads only a cold start makes, ends before its second power poll); returns the
    seconds waited (at most about ``limit``)."""
    t0 = changed_at = time.monotonic()
    held = -1
    while time.monotonic() - t0 < limit:
        now_held = (await asyncio.to_thread(lab.sessions))["ipmi"]
        if now_held >= sessions:
            break
        if now_held != held:
            held, changed_at = now_held, time.monotonic()
        elif time.monotonic() - changed_at >= PLATEAU_S:
            break
        await asyncio.sleep(1.0)  # polling a condition
    held = (await asyncio.to_thread(lab.sessions))["ipmi"]
    if held < sessions:
        print(f"  (the pollers hold {held} of {sessions} BMC sessions after {time.monotonic() - t0:.0f} s; "
              f"counting anyway)", flush=True)
    nodes = len(lab.site.nodes)
    print(f"  {held} BMC sessions in after {time.monotonic() - t0:.0f} s; {warm} sweeps of warm-up ...", flush=True)
    _r, c0 = await counts(lab)
    c = c0
    while time.monotonic() - t0 < limit:
        _r, c = await counts(lab)
        if c - c0 >= warm * pollers * nodes:
            break
        await asyncio.sleep(SAMPLE_S)  # polling a condition
    else:
        print(f"  (warm-up: {(c - c0) / nodes / pollers:.1f} of {warm} sweeps after {limit:.0f} s; "
              "counting anyway)", flush=True)
    return time.monotonic() - t0


async def measure(lab: Any, terms: Sequence[Term], tree: Tree | None, pollers: int, sweeps: int, keys: int,
                  limit: float) -> dict[str, Any]:
    """Count the lab's IPMI datagrams over ``sweeps`` completed power sweeps of each of
    ``pollers`` pollers (their power polls reach ``sweeps`` a node each) while every terminal
    types ``keys`` keys; at most ``limit`` seconds (then what was done is reported)."""
    nodes = len(lab.site.nodes)
    load0 = os.getloadavg()
    r0, c0 = await counts(lab)
    t0 = time.monotonic()
    typing = asyncio.gather(*(t.keys(keys) for t in terms))
    r1, c1 = r0, c0
    while time.monotonic() - t0 < limit:
        await asyncio.sleep(SAMPLE_S)  # polling a condition: the sweeps done
        r1, c1 = await counts(lab)
        if c1 - c0 >= sweeps * pollers * nodes:
            break
    seconds = time.monotonic() - t0
    lat = await typing  # keys still being typed finish (not counted: the sweeps are)
    done = (c1 - c0) / nodes / pollers
    if done < sweeps:
        print(f"  (only {done:.1f} of {sweeps} sweeps in {limit:.0f} s: figures over those)", flush=True)
    res = {"requests": r1 - r0, "polls": c1 - c0, "sweeps": done, "pollers": pollers, "seconds": seconds,
           "lat": lat, "load": (load0, os.getloadavg())}
    if tree is not None:
        res["procs"] = tree.finish(seconds)
    return res


def per_sweep(r: dict[str, Any]) -> float | None:
    """BMC datagrams a poller's sweep costs: the requests over the sweeps every poller
    completed; None when not one whole sweep was done (there is no figure then)."""
    if r["sweeps"] < 1:
        return None
    return float(r["requests"] / (r["sweeps"] * r["pollers"]))


def sweep_seconds(r: dict[str, Any]) -> float | None:
    """How long a sweep took, over the sweeps completed; None when not one was."""
    return float(r["seconds"] / r["sweeps"]) if r["sweeps"] >= 1 else None


def num(x: float | None, fmt: str, width: int = 0) -> str:
    """``x`` formatted, or ``-`` for a figure that does not exist."""
    return f"{'-' if x is None else format(x, fmt):>{width}}"


# ------------------------------------------------------------------ the run
def private_dirs() -> str:
    base = tempfile.mkdtemp(prefix="fleet-svcbench-")  # 0700
    for name in ("run", "state", "locks"):
        os.mkdir(os.path.join(base, name), 0o700)
    os.environ["XDG_RUNTIME_DIR"] = os.path.join(base, "run")
    os.environ["XDG_STATE_HOME"] = os.path.join(base, "state")
    os.environ["FLEET_CONSOLE_LOCKS"] = os.path.join(base, "locks")
    os.environ["FLEET_OPERATOR"] = "bench"
    for k in [k for k in os.environ if k.startswith("FLEET_SERVICE")] + ["FLEET_CONSOLE_READ_ONLY"]:
        os.environ.pop(k, None)
    return base


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class Serve:
    """``fleet-console serve --listen 127.0.0.1:0 --operators FILE``; its stderr read on a thread."""

    def __init__(self, site_file: Path, operators: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console.cli.main", "--site", str(site_file), "serve", "--listen", "127.0.0.1:0",
             "--operators", str(operators)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True, env=dict(os.environ))
        self.lines: deque[str] = deque(maxlen=40)
        self.port = 0
        self._port_seen = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("SSH front door on "):
                self.port = int(line.rsplit(":", 1)[1])
                self._port_seen.set()
        self._port_seen.set()

    def wait_port(self, timeout: float) -> int:
        self._port_seen.wait(timeout)
        return self.port

    def stop(self) -> None:
        stop_process(self.proc, 60)
        self._thread.join(10)
        if self.proc.stderr:
            self.proc.stderr.close()


async def ssh_session(port: int, name: str, key: Any) -> SshTerm:
    import asyncssh

    conn = await asyncssh.connect("127.0.0.1", port, username=name, client_keys=[key], known_hosts=None,
                                  agent_path=None, config=None)
    proc = await conn.create_process(term_type="xterm-256color", term_size=(COLS, ROWS), encoding=None)
    return SshTerm(name, conn, proc)


async def run(args: argparse.Namespace, base: str, lab: Any, site_file: Path, opened: list[Any],
              results: dict[str, Any]) -> dict[str, Any]:
    """The three parts; each one's figures go into ``results`` as it ends (a run cut short
    still reports the parts it finished)."""
    import asyncssh

    from console.live.poller import PollConfig

    cfg = PollConfig()  # the cadences the service and the consoles poll at
    interval = cfg.power_interval
    marker = lab.site.nodes[0].name
    names = [f"op{i:02d}" for i in range(1, args.sessions + 1)]
    keys = {n: asyncssh.generate_private_key("ssh-ed25519") for n in names}
    operators = Path(base) / "operators.yaml"
    write_private(operators, "operators:\n" + "".join(
        f'  - {{name: {n}, role: operator, keys: ["{keys[n].export_public_key().decode().strip()}"]}}\n'
        for n in names))
    results["interval"] = interval

    # -------------------------------------------- 1 and 2: the service, 1 then S sessions
    print(f"service: serve --listen 127.0.0.1:0, {args.sessions} operators ...", flush=True)
    serve = Serve(site_file, operators)
    opened.append(serve)
    port = await asyncio.to_thread(serve.wait_port, args.start_timeout)
    if not port:
        raise RuntimeError("serve did not listen: " + " | ".join(serve.lines))
    print(f"  SSH front door on 127.0.0.1:{port} (pid {serve.proc.pid})", flush=True)
    t = time.perf_counter()
    first = await ssh_session(port, names[0], keys[names[0]])
    opened.append(first)
    if not await first.ready(marker, args.start_timeout):
        raise RuntimeError(f"{names[0]}'s console did not draw the fleet: {first.text()[-400:]!r}")
    print(f"  session 1 drew the fleet in {time.perf_counter() - t:.1f} s; waiting for a steady poller ...",
          flush=True)
    waited = await settle(lab, len(lab.site.nodes), 1, args.warmup, args.settle_max)
    print(f"  steady after {waited:.0f} s; counting {args.sweeps} sweeps with 1 session typing", flush=True)
    results["service 1"] = await measure(lab, [first], None, 1, args.sweeps, args.keys, args.sweep_max)
    print(brief(results["service 1"], interval), flush=True)
    terms = [first]
    t = time.perf_counter()
    more = await asyncio.gather(*(ssh_session(port, n, keys[n]) for n in names[1:]))
    opened.extend(more)
    ok = await asyncio.gather(*(x.ready(marker, args.start_timeout) for x in more))
    terms += [x for x, good in zip(more, ok, strict=True) if good]
    print(f"  {len(terms)} sessions drew the fleet in {time.perf_counter() - t:.1f} s; one sweep, then "
          f"counting {args.sweeps} sweeps with {len(terms)} sessions typing", flush=True)
    await settle(lab, len(lab.site.nodes), 1, 1, args.settle_max)  # the new consoles' first frames done
    kids = children_of(serve.proc.pid)
    pollers = [p for p in kids if "console.live.pollproc" in cmdline(p)]
    consoles = [p for p in kids if p not in pollers]
    consoles += [g for c in consoles for g in children_of(c)]  # a session console's own children, if any
    tree = Tree({"service": [serve.proc.pid], "poller": pollers, "session consoles": consoles})
    results["service S"] = await measure(lab, terms, tree, 1, args.sweeps, args.keys, args.sweep_max)
    print(brief(results["service S"], interval), flush=True)
    results["sessions"] = len(terms)
    for s in terms:
        await s.close()
    await asyncio.to_thread(serve.stop)
    print(f"  service stopped (exit status {serve.proc.returncode})", flush=True)
    if args.no_embedded:
        return results

    # -------------------------------------------- 3: S embedded consoles
    if (await asyncio.to_thread(lab.sessions))["ipmi"]:
        await asyncio.sleep(5)  # the service's logouts in flight (reported below either way)
    print(f"embedded: {args.sessions} x fleet-console --site {lab.site.name} on PTYs ...", flush=True)
    env = dict(os.environ, TERM="xterm-256color")
    t = time.perf_counter()
    embedded = [PtyTerm(f"embedded {i}", [sys.executable, "-m", "console.cli.main", "--site", str(site_file)], env)
                for i in range(1, args.sessions + 1)]
    opened.extend(embedded)
    ok = await asyncio.gather(*(x.ready(marker, args.start_timeout) for x in embedded))
    eterms: list[Term] = [x for x, good in zip(embedded, ok, strict=True) if good]
    print(f"  {len(eterms)} consoles drew the fleet in {time.perf_counter() - t:.1f} s; waiting for steady "
          f"pollers ...", flush=True)
    waited = await settle(lab, len(embedded) * len(lab.site.nodes), len(embedded), args.warmup,
                          args.embedded_settle_max)
    print(f"  steady after {waited:.0f} s; counting {args.sweeps} sweeps of each poller with {len(eterms)} "
          f"consoles typing", flush=True)
    cpids = [x.proc.pid for x in embedded]
    tree = Tree({"consoles": cpids, "their pollers": [g for c in cpids for g in children_of(c)
                                                      if "console.live.pollproc" in cmdline(g)]})
    results["embedded S"] = await measure(lab, eterms, tree, len(embedded), args.sweeps, args.keys,
                                          args.embedded_sweep_max)
    print(brief(results["embedded S"], interval), flush=True)
    results["embedded"] = len(eterms)
    for e in embedded:
        await e.close()
    return results


def load_text(r: dict[str, Any]) -> str:
    """The load average at the start and the end of a count: ``1-min a-b (5-min c-d)``."""
    (a1, a5, _), (b1, b5, _) = r["load"]
    return f"{a1:.1f}-{b1:.1f} (5-min {a5:.1f}-{b5:.1f})"


def brief(r: dict[str, Any], interval: float) -> str:
    """One measurement in a line, printed as it is taken (the table comes at the end)."""
    lat = [x for xs in r["lat"] for x in xs]
    return (f"  -> {num(per_sweep(r), '.0f')} BMC requests a sweep over {r['sweeps']:.1f} sweeps of {r['pollers']} "
            f"poller(s) in {r['seconds']:.0f} s ({num(sweep_seconds(r), '.1f')} s a sweep, "
            f"every {interval:.0f} s asked), {r['requests'] / r['seconds']:.0f} requests/s in all; keys p50 "
            f"{pct(lat, 50):.1f} ms p95 {pct(lat, 95):.1f} ms ({len(lat)}); load {load_text(r)}")


def report(args: argparse.Namespace, res: dict[str, Any], lab_start: float) -> None:
    iv = res["interval"]
    print(f"\n{args.nodes} IPMI machines (lab start {lab_start:.0f} s), {res.get('sessions', 0)} SSH sessions, "
          f"{args.sweeps} power sweeps counted a run after {args.warmup} of warm-up, power interval {iv:.0f} s "
          f"(default cadences)")
    print(f"{'run':30} {'req/sweep':>9} {'sweeps':>6} {'s/sweep':>7} {'req/s':>6} {'keys':>5} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'max ms':>7}  load 1-min (5-min)")
    for label, key in (("service, 1 SSH session", "service 1"),
                       (f"service, {res.get('sessions', 0)} SSH sessions", "service S"),
                       (f"{res.get('embedded', 0)} embedded consoles", "embedded S")):
        r = res.get(key)
        if not r:
            continue
        lat = [x for xs in r["lat"] for x in xs]
        print(f"{label:30} {num(per_sweep(r), '.0f', 9)} {r['sweeps']:6.1f} {num(sweep_seconds(r), '.1f', 7)} "
              f"{r['requests'] / r['seconds']:6.0f} {len(lat):5} {pct(lat, 50):7.1f} {pct(lat, 95):7.1f} "
              f"{max(lat, default=float('nan')):7.1f}  {load_text(r)}")
        if len(r["lat"]) > 1:
            per = ", ".join(f"{pct(xs, 95):.0f}" for xs in r["lat"])
            print(f"{'':30} p95 per session (ms): {per}")
        for who, p in r.get("procs", {}).items():
            print(f"{'':30} {who:17} x{p['n']:<3} RSS {p['rss']:7.0f} MB (largest {p['rss_max']:5.0f}, peaks "
                  f"{p['hwm']:6.0f})  CPU {p['cpu_pct']:5.1f}% of a core")
    print("req/sweep: the BMC datagrams (logins, polls of every kind) one poller's power sweep costs, over the "
          "sweeps completed; req/s: every poller's together")
    a, b, c = res.get("service 1"), res.get("service S"), res.get("embedded S")
    pa, pb, pc = (per_sweep(r) if r else None for r in (a, b, c))
    if pa and pb:
        print(f"requests a sweep with {res['sessions']} sessions / with 1: {pb / pa:.2f}x")
    if b and c:
        rate = (c["requests"] / c["seconds"]) / max(b["requests"] / b["seconds"], 1e-9)
        if pb and pc:
            print(f"one embedded console's requests a sweep / the service's with {res['sessions']} sessions: "
                  f"{pc / pb:.2f}x; {res['embedded']} embedded consoles cost the BMCs {rate:.2f}x the requests "
                  "a second")
        else:
            print(f"the {res['embedded']} embedded consoles' pollers did not complete one power sweep in "
                  f"{c['seconds']:.0f} s ({c['sweeps']:.2f} of {args.sweeps}); they sent the BMCs {rate:.2f}x "
                  "the requests a second of the service with as many sessions")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000, help="lab IPMI machines (default 5000)")
    ap.add_argument("--sessions", type=int, default=10, help="SSH sessions, and embedded consoles (default 10)")
    ap.add_argument("--keys", type=int, default=100, help="keys each session types per window (default 100)")
    ap.add_argument("--sweeps", type=int, default=12, help="power sweeps of every poller requests are counted "
                    "over (default 12: at the default cadences 120 s, one events cycle, two sensors cycles)")
    ap.add_argument("--warmup", type=int, default=3, help="power sweeps after the BMC sessions are in before "
                    "counting (default 3: the cold first cycle over)")
    ap.add_argument("--settle-max", type=float, default=600.0, help="longest wait for steady pollers (s)")
    ap.add_argument("--sweep-max", type=float, default=900.0, help="longest count (s): what was done by then "
                    "is reported")
    ap.add_argument("--start-timeout", type=float, default=600.0, help="longest wait for a lab, service, console")
    ap.add_argument("--embedded-settle-max", type=float, default=300.0, help="longest wait for the embedded "
                    "consoles' pollers to be steady (s)")
    ap.add_argument("--embedded-sweep-max", type=float, default=600.0, help="longest count of the embedded "
                    "consoles (s)")
    ap.add_argument("--no-embedded", action="store_true", help="skip the embedded consoles (part 3)")
    args = ap.parse_args()
    if not 1 <= args.sessions <= 64 or args.keys < 1 or args.sweeps < 1 or args.warmup < 0:
        ap.error("--sessions must be 1..64 (the service's default limit), --keys and --sweeps positive")

    from console.lab import scale

    if not 1 <= args.nodes <= scale.MAX_NODES:
        ap.error(f"--nodes must be 1..{scale.MAX_NODES}")
    base = private_dirs()
    opened: list[Any] = []
    lab = None
    lab_start = 0.0
    res: dict[str, Any] = {}

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (&)
    try:
        from console.lab.lab import Lab
        from console.lab.state import write_state
        from inventory.loader import load_site

        site_file = Path(base) / "svcbench.yaml"
        write_private(site_file, scale.scaled_site_yaml(args.nodes, protocol="ipmi", name="svcbench"))
        site = load_site(site_file)
        print(f"lab: {args.nodes} IPMI machines (workers in child processes) ...", flush=True)
        lab = Lab(site, ephemeral=True)
        t = time.perf_counter()
        lab.start(timeout=args.start_timeout)
        lab_start = time.perf_counter() - t
        write_state(lab, str(site_file))
        print(f"  started in {lab_start:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
        asyncio.run(run(args, base, lab, site_file, opened, res))
        report(args, res, lab_start)
        print(f"IPMI sessions still open at the lab after everything closed: {lab.sessions()['ipmi']}")
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr, flush=True)
        if "service 1" in res:
            print("the parts done before the interruption:")
            report(args, res, lab_start)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        for x in reversed(opened):
            with contextlib.suppress(Exception):
                if isinstance(x, PtyTerm):
                    x.kill()
                elif isinstance(x, Serve):
                    x.stop()
        if lab is not None:
            lab.stop()
        shutil.rmtree(base, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    main()
