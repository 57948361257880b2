"""Poll N lab IPMI BMCs concurrently through IpmiDriver and print call latencies.

    python bench/ipmi_poll.py                # power: the asyncio RMCP+ poll session (rmcp.py)
    python bench/ipmi_poll.py --op sensors   # sensors: pyghmi, with the pyghmi fixes
    python bench/ipmi_poll.py --op sensors --unpatched    # pyghmi as shipped, for comparison
    python bench/ipmi_poll.py --op sensors --cap 0.05     # another IO_WAIT_CAP

``power`` and ``login`` run on :mod:`console.drivers.rmcp` (no threads); ``--unpatched``
and ``--cap`` only matter for ``sensors``, the op that still goes through pyghmi.

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


def serve_lab(count: int, conn) -> None:
    """In the child process: serve ``count`` BMCs, send their ports, stop when told."""
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
    conn.recv()
    lab.stop()
    machine_loop.call_soon_threadsafe(machine_loop.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bmcs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--op", choices=("power", "sensors", "login"), default="power")
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
