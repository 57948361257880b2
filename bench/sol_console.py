"""Serial-over-LAN consoles against the lab: keystroke-to-echo latency and sustained throughput.

    python bench/sol_console.py                      # both parts, 50 machines, 200 keys
    python bench/sol_console.py --part latency --keys 500
    python bench/sol_console.py --part throughput --nodes 50 --seconds 20 --rate 11520

**Latency**: keys typed at a lab node's login prompt (``a``, then DEL, alternately; each
waits for its echo: ``a``, or ``^H space ^H``), p50/p95/max through (i) a raw
:class:`~console.serial.sol.SolStream`, (ii) the broker's session, (iii) the attach path
(``fleet-console console NODE`` on a pseudo-terminal: from writing the key to the
master to its echo coming back), and (iv) ``ipmitool -I lanplus -C 3 sol activate``
driven the same way on the same node, in the same run.

**Throughput**: every machine prints a known pattern (64-byte lines, the lab worker's
``emit`` command) at ``--rate`` bytes a second (11,520: 115200 baud, 8N1) for
``--seconds`` while one broker here keeps a session per node and logs it to disk; then
each node's log is read back: lines expected vs logged (in order, each exact), bytes,
loss, and the CPU this process (the console) used.

The lab runs in child processes (its workers), on loopback, as a real BMC would be
elsewhere; this process has its own runtime, state and lock directories.  It prints
numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEYS = ((b"a", b"a"), (b"\x7f", b"\x08 \x08"))  # (typed, echoed) at the lab's login prompt


def private_dirs() -> str:
    base = tempfile.mkdtemp(prefix="fleet-solbench-")
    for name in ("run", "state"):
        os.mkdir(os.path.join(base, name), 0o700)
    os.environ["XDG_RUNTIME_DIR"] = os.path.join(base, "run")
    os.environ["XDG_STATE_HOME"] = os.path.join(base, "state")
    os.environ["FLEET_CONSOLE_LOCKS"] = os.path.join(base, "locks")
    os.environ["FLEET_OPERATOR"] = "bench"
    os.environ.pop("FLEET_CONSOLE_READ_ONLY", None)
    return base


def stats(name: str, ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    out = {"p50": statistics.median(s), "p95": s[max(0, int(len(s) * 0.95) - 1)], "max": s[-1]}
    print(f"  {name:<36} p50 {out['p50']:6.2f} ms   p95 {out['p95']:6.2f} ms   max {out['max']:7.2f} ms"
          f"   ({len(s)} keys)", flush=True)
    return out


# ------------------------------------------------------------------ (i) and (ii): in process
async def lat_stream(ctx, node: str, n: int) -> list[float]:
    from console.serial import open_stream

    stream = open_stream(ctx, node)
    await stream.open()
    try:
        buf = bytearray()
        try:  # the BMC replays what the node printed last
            async with asyncio.timeout(1.0):
                while True:
                    buf += await stream.read()
        except TimeoutError:
            pass
        out = []
        for i in range(n):
            key, echo = KEYS[i % 2]
            buf.clear()
            t0 = time.perf_counter()
            await stream.write(key)
            while echo not in buf:
                buf += await stream.read()
            out.append((time.perf_counter() - t0) * 1000)
        return out
    finally:
        await stream.close()


async def lat_broker(ctx, node: str, n: int) -> list[float]:
    from console.serial.broker import ConsoleBroker

    broker = ConsoleBroker(ctx, log=False)
    try:
        session = await broker.session(node)
        await session.acquire("bench")
        got: asyncio.Queue[bytes] = asyncio.Queue()
        session.subscribe(lambda item: got.put_nowait(item) if isinstance(item, bytes) else None)
        await asyncio.sleep(1.0)
        while not got.empty():
            got.get_nowait()
        out = []
        buf = bytearray()
        for i in range(n):
            key, echo = KEYS[i % 2]
            buf.clear()
            t0 = time.perf_counter()
            await session.write("bench", key)
            while echo not in buf:
                buf += await asyncio.wait_for(got.get(), 5)
            out.append((time.perf_counter() - t0) * 1000)
        await session.release("bench")
        return out
    finally:
        await broker.close()


# ------------------------------------------------------------------ (iii) and (iv): on a pty
def _read_until(fd: int, want: bytes, buf: bytearray, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while want not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            buf += chunk
    return True


def lat_pty(argv: list[str], ready: bytes, n: int, env: dict[str, str], leave: bytes) -> list[float]:
    """Run ``argv`` on a pseudo-terminal; after ``ready`` (and a quiet second), type keys."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            close_fds=True)
    os.close(slave)
    out: list[float] = []
    try:
        buf = bytearray()
        if not _read_until(master, ready, buf, 30):
            print(f"    ({argv[0]}: not ready: {bytes(buf[-300:])!r})")
            return out
        while select.select([master], [], [], 1.0)[0]:  # the replay, the banner: until quiet
            os.read(master, 65536)
        for i in range(n):
            key, echo = KEYS[i % 2]
            buf.clear()
            t0 = time.perf_counter()
            os.write(master, key)
            if not _read_until(master, echo, buf, 5):
                print(f"    (no echo after {i} keys: {bytes(buf[-200:])!r})")
                break
            out.append((time.perf_counter() - t0) * 1000)
        os.write(master, leave)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        return out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        os.close(master)


# ------------------------------------------------------------------ throughput
def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(lab, ctx, nodes: list[str], seconds: float, rate: float) -> None:
    from console.lab.worker import EMIT_LINE, emit_line
    from console.serial.broker import ConsoleBroker
    from console.serial.log import read_log

    broker = ConsoleBroker(ctx)
    sessions = dict(zip(nodes, await asyncio.gather(*(broker.session(n) for n in nodes)), strict=True))
    bad = {n: s.state for n, s in sessions.items() if s.state != "open"}
    if bad:
        print(f"  not open: {bad}")
    await asyncio.sleep(1.0)  # the BMCs' replays
    workers = lab.endpoints["workers"]
    cpu0, wall0 = time.process_time(), time.monotonic()
    lab_cpu0 = sum(_cpu_of(p) for p in workers)
    total = int(seconds * rate)
    expected = {}
    for n in nodes:
        reply = lab.call(n, {"cmd": "emit", "node": n, "bytes": total, "rate": rate})
        expected[n] = reply["lines"]
    end = time.monotonic() + seconds * 3 + 30
    while time.monotonic() < end:
        if all(f"EMIT {n} END".encode() in s.history()[-256:] for n, s in sessions.items()):
            break
        await asyncio.sleep(0.2)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    lab_cpu = sum(_cpu_of(p) for p in workers) - lab_cpu0
    await broker.close()
    lost_nodes = 0
    sum_exp = sum_got = 0
    for n in nodes:
        text = read_log(ctx.site.name, n)
        # the first line may follow the login prompt on its log line: the pattern ends each line
        got = [m.group(1) for m in re.finditer(r"(EMIT \S+ \d{8} [a-z]+)$", text, re.M)]
        want = [emit_line(n, i)[:-2].decode() for i in range(expected[n])]
        exact = got == want
        sum_exp += expected[n] * (EMIT_LINE - 1)  # as logged: CR LF becomes LF
        sum_got += sum(len(g) + 1 for g in got)
        if not exact:
            lost_nodes += 1
            missing = len(set(want) - set(got))
            print(f"  {n}: expected {len(want)} lines, logged {len(got)} ({missing} missing"
                  f"{', out of order or altered' if not missing else ''})")
    per_node = sum_exp / len(nodes)
    print(f"  {len(nodes)} consoles x {rate:,.0f} B/s for {seconds:g} s: expected {sum_exp:,} bytes "
          f"({per_node:,.0f} a node), logged {sum_got:,}; loss {sum_exp - sum_got:,} bytes, "
          f"{lost_nodes} node(s) not exact")
    print(f"  took {wall:.1f} s; console process CPU {cpu:.1f} s ({cpu / wall * 100:.0f}% of one core); "
          f"lab workers CPU {lab_cpu:.1f} s")


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("latency", "throughput", "both"), default="both")
    parser.add_argument("--nodes", type=int, default=50, help="lab machines (throughput: all of them)")
    parser.add_argument("--keys", type=int, default=200, help="keystrokes per path (latency)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each machine prints (throughput)")
    parser.add_argument("--rate", type=float, default=11520.0, help="bytes a second each machine prints")
    args = parser.parse_args()
    base = private_dirs()

    from console.lab import scale
    from console.lab.lab import Lab
    from console.lab.state import write_state
    from console.secrets import Secrets
    from console.site import SiteContext
    from inventory.loader import load_site

    site_file = Path(base) / "solbench.yaml"
    site_file.write_text(scale.scaled_site_yaml(args.nodes, protocol="ipmi", name="solbench"))
    os.chmod(site_file, 0o600)
    site = load_site(site_file)
    print(f"lab: {len(site.nodes)} IPMI machines (workers in child processes) ...", flush=True)
    lab = Lab(site, ephemeral=True)
    try:
        lab.start()
        write_state(lab, str(site_file))
        ctx = SiteContext(lab.effective_site(), Secrets(lab=lab.secrets))
        if args.part in ("latency", "both"):
            node = ctx.site.nodes[0]
            print(f"keystroke to echo, {node.name} (IPMI SOL {node.bmc.address}:{node.bmc.port}):", flush=True)
            got = {"raw SolStream": asyncio.run(lat_stream(ctx, node.name, args.keys)),
                   "broker session": asyncio.run(lat_broker(ctx, node.name, args.keys))}
            env = dict(os.environ)
            got["attach (fleet-console console, pty)"] = lat_pty(
                [sys.executable, "-m", "console.cli.main", "--site", "solbench", "console", node.name],
                b"login:", args.keys, env, b"\r~.")
            tool = shutil.which("ipmitool")
            if tool:
                env["IPMI_PASSWORD"] = lab.secrets["bmc"]  # -E: never on the command line
                got["ipmitool sol activate (pty)"] = lat_pty(
                    [tool, "-I", "lanplus", "-C", "3", "-H", node.bmc.address, "-p", str(node.bmc.port),
                     "-U", "admin", "-E", "sol", "activate"], b"SOL Session operational", args.keys, env, b"\r~.")
            else:
                print("  (ipmitool not installed: Debian package ipmitool)")
            res = {name: stats(name, ms) for name, ms in got.items() if ms}
            a, b = res.get("attach (fleet-console console, pty)"), res.get("ipmitool sol activate (pty)")
            if a and b:
                print(f"  attach / ipmitool: p50 {a['p50'] / b['p50']:.2f}x, p95 {a['p95'] / b['p95']:.2f}x",
                      flush=True)
        if args.part in ("throughput", "both"):
            print("sustained throughput, every console logged:", flush=True)
            asyncio.run(throughput(lab, ctx, [n.name for n in ctx.site.nodes], args.seconds, args.rate))
    finally:
        lab.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
