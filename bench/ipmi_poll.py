"""Poll N lab IPMI BMCs concurrently through IpmiDriver and print call latencies.

    python bench/ipmi_poll.py                # power: the asyncio RMCP+ poll session (rmcp.py)
    python bench/ipmi_poll.py --op sensors   # sensors: pyghmi, with the pyghmi fixes
    python bench/ipmi_poll.py --op sensors --unpatched    # pyghmi as shipped, for comparison
    python bench/ipmi_poll.py --op sensors --cap 0.05     # another IO_WAIT_CAP

    python -m bench.ipmi_poll --op cold      # requests per BMC of a first poll, by command

``power`` and ``login`` run on :mod:`console.drivers.rmcp` (no threads); ``--unpatched``
and ``--cap`` only matter for ``sensors``, the op that still goes through pyghmi.
``cold`` counts what the lab's BMCs received for one power + health poll each: the first
ever (an empty SDR cache), after a restart (new drivers and sessions, the SDR cache
saved by the first and loaded from its file), and a steady one (kept sessions).

Each round is one ``asyncio.gather`` of ``power_state()`` on every driver (sessions are
logged in during a warm-up round and kept).  Run each variant in its own process: the
fixes are installed once per process.  The lab runs in a child process, as a real BMC
would be elsewhere: in the same process it competes for the GIL and answers so late
that pyghmi's slow-pickup race (docs/protocols.md) hardly ever shows.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.drivers import ipmi, ipmi_fixes  # noqa: E402
from console.drivers.sdrcache import SdrCache  # noqa: E402
from console.lab.ipmi_bmc import IpmiLab  # noqa: E402
from console.lab.machine import Machine, MachineSpec  # noqa: E402
from console.secrets import Secret  # noqa: E402
from inventory.model import Bmc  # noqa: E402


def driver(address: str, port: int) -> ipmi.IpmiDriver:
    bmc = Bmc(protocol="ipmi", address=address, port=port, username="admin", password="env:UNUSED")
    return ipmi.IpmiDriver(bmc, Secret("secret"), timeout=10.0)


async def bench(ports: dict[str, int], rounds: int, op: str) -> tuple[list[float], list[float]]:
    drivers = [driver(a, p) for a, p in ports.items()]

    async def timed(d: ipmi.IpmiDriver) -> float:
        start = time.perf_counter()
        if op == "login":  # a fresh session every time: login, one command, logout
            fresh = driver(d.address, d.port)
            await fresh.power_state()
            await fresh.close()
        elif op == "sensors":  # ~20 round trips on the kept session
            await d.sensors()
        else:
            await d.power_state()
        return time.perf_counter() - start

    try:
        await asyncio.gather(*(timed(d) for d in drivers))  # warm-up: log in, read the SDR
        calls, walls = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            calls += await asyncio.gather(*(timed(d) for d in drivers))
            walls.append(time.perf_counter() - start)
        return calls, walls
    finally:
        await asyncio.gather(*(d.close() for d in drivers))


#: what the ``cold`` op names (netfn, command)
COMMANDS = {(0x00, 0x01): "Get Chassis Status", (0x06, 0x01): "Get Device ID",
            (0x06, 0x3B): "Set Session Privilege Level", (0x06, 0x3C): "Close Session",
            (0x0A, 0x20): "Get SDR Repository Info", (0x0A, 0x22): "Reserve SDR Repository",
            (0x0A, 0x23): "Get SDR", (0x04, 0x2D): "Get Sensor Reading", (0x04, 0x27): "Get Sensor Thresholds"}


async def cold(ports: dict[str, int], conn) -> None:
    """Requests per BMC, by command, of a first poll, a first poll after a restart, a steady poll."""
    import tempfile

    def counted() -> tuple[int, dict]:
        conn.send("count")
        return conn.recv()

    with tempfile.TemporaryDirectory(prefix="fleet-bench-sdr-") as tmp:
        path = Path(tmp) / "sdrtest" / "sdr-cache.json"
        rows: dict[str, tuple[int, dict]] = {}
        drivers: list[ipmi.IpmiDriver] = []
        for phase in ("first ever", "restart", "steady"):
            if phase != "steady":
                await asyncio.gather(*(d.close() for d in drivers))
                cache = SdrCache.load(path)
                drivers = [driver(a, p) for a, p in ports.items()]
                for d in drivers:
                    d.use_sdr_cache(cache)
            before = counted()
            await asyncio.gather(*(d.power_state() for d in drivers))
            await asyncio.gather(*(d.health() for d in drivers))
            after = counted()
            rows[phase] = (after[0] - before[0], {k: n - before[1].get(k, 0) for k, n in after[1].items()})
            cache.save()
        await asyncio.gather(*(d.close() for d in drivers))
    n = len(ports)
    keys = sorted({k for _, c in rows.values() for k, v in c.items() if v}, key=lambda k: list(COMMANDS).index(k)
                  if k in COMMANDS else 99)
    print(f"requests per BMC ({n} lab BMCs), one power + health poll each:")
    print(f"{'':32}" + "".join(f"{p:>12}" for p in rows))
    for k in keys:
        name = COMMANDS.get(k, f"netfn {k[0]:02x}h cmd {k[1]:02x}h")
        print(f"{name:32}" + "".join(f"{c.get(k, 0) / n:12.1f}" for _, c in rows.values()))
    print(f"{'login handshake, other':32}"
          + "".join(f"{(d - sum(c.values())) / n:12.1f}" for d, c in rows.values()))
    print(f"{'datagrams in all':32}" + "".join(f"{d / n:12.1f}" for d, _ in rows.values()))


def serve_lab(count: int, conn) -> None:
    """In the child process: serve ``count`` BMCs, send their ports; answer "count" with
    (datagrams received, requests by command) until told to stop."""
    machine_loop = asyncio.new_event_loop()
    threading.Thread(target=machine_loop.run_forever, daemon=True).start()
    lab = IpmiLab()
    ports = {}
    for i in range(1, count + 1):
        address = f"127.81.9.{i}"
        spec = MachineSpec(name=f"bench-{i:02d}", mac=f"52:54:00:81:09:{i:02x}", bmc_address=address,
                           host_address=f"127.82.9.{i}")
        ports[address] = lab.add(Machine(spec, machine_loop, time_scale=0.01), address, 0, b"admin", b"secret")
    lab.start()
    conn.send(ports)
    while conn.recv() == "count":
        conn.send((lab.received, dict(lab.commands)))
    lab.stop()
    machine_loop.call_soon_threadsafe(machine_loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bmcs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--op", choices=("power", "sensors", "login", "cold"), default="power")
    parser.add_argument("--unpatched", action="store_true", help="leave pyghmi as shipped")
    parser.add_argument("--cap", type=float, default=None, help="IO_WAIT_CAP in seconds")
    args = parser.parse_args()
    if args.unpatched:
        ipmi_fixes._fixes_installed = False  # ipmi_fixes.install() then does nothing
    if args.cap is not None:
        ipmi_fixes.IO_WAIT_CAP = args.cap

    parent, child = multiprocessing.Pipe()
    lab = multiprocessing.Process(target=serve_lab, args=(args.bmcs, child), daemon=True)
    lab.start()
    try:
        ports = parent.recv()
        if args.op == "cold":
            asyncio.run(cold(ports, parent))
            return
        cpu = time.process_time()
        calls, walls = asyncio.run(bench(ports, args.rounds, args.op))
        cpu = time.process_time() - cpu
    finally:
        parent.send("stop")
        lab.join(timeout=10)
    calls.sort()
    ms = [c * 1000 for c in calls]
    label = "unpatched" if args.unpatched else f"fixed, cap {ipmi_fixes.IO_WAIT_CAP * 1000:g} ms"
    if args.op != "sensors":
        label = "rmcp (asyncio)"
    print(f"{label}: {args.op}: {args.bmcs} BMCs x {args.rounds} rounds: call median {statistics.median(ms):.1f} ms, "
          f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms, max {ms[-1]:.1f} ms; "
          f"round median {statistics.median(walls) * 1000:.1f} ms; process CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
