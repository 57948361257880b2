"""Benchmark: how fast the poller sweeps N lab BMCs, against freeipmi and ipmitool.

    python bench/poll_sweep.py                      # N = 100 and 1000, IPMI and Redfish
    python bench/poll_sweep.py --sizes 100 --protocols ipmi
    python -m bench.poll_sweep --sizes 10000 --protocols ipmi --profile-cold /tmp/prof

For each protocol and size it starts the lab (worker processes, ephemeral ports on
loopback), then measures:

- cold sweep: first power + health poll of every BMC (logins included); for IPMI twice,
  each in a poller process of its own: the first ever (an empty SDR cache: every SDR is
  walked), then a restart on the cache the first one saved (console/drivers/sdrcache.py),
  each with the requests per BMC the lab received (datagrams: handshakes included);
- steady sweep: the same again on the kept sessions (median of ``--rounds``, 5);
- for Redfish, in the same run: ``curl --parallel --parallel-max 64`` fetching the
  same ComputerSystem resources (Basic auth, a new connection each; median of as many
  runs as steady sweeps);
- for IPMI, in the same run and over the same BMCs: ``ipmi-power --stat`` from
  freeipmi (its own fan-out, a full session handshake per host; median of as many
  runs as steady sweeps) and a sequential
  ``ipmitool power status`` loop over a sample, extrapolated;
- peak RSS of the poller's process (the sweeps run in a child process holding what
  console/live/pollproc.py holds); BMC sessions held per BMC while polling
  (IPMI: 1, the poll session) and left open after ``Poller.aclose()`` (must be 0), as
  counted by the lab.

Prints figures and ratios; asserts nothing (speed is measured, not tested).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.drivers.sdrcache import SdrCache  # noqa: E402
from console.lab.lab import Lab  # noqa: E402
from console.lab.scale import scaled_site_yaml  # noqa: E402
from console.live.fleet import Fleet  # noqa: E402
from console.live.poller import PollConfig, Poller, compact_site, quiet_gc, raise_fd_limit  # noqa: E402
from console.secrets import Secrets  # noqa: E402
from inventory.loader import load_site_text  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def sweeps(site, secrets, rounds: int, conn, profile: str | None = None, cache: str | None = None,
                 cold_profile: str | None = None) -> dict:
    """The poller's side, in a process of its own (as ``console/live/pollproc.py`` runs it):
    cold sweep (then the parent counts the lab's requests), ``rounds`` steady sweeps, the
    SDR cache saved to ``cache``; then waits for the parent's word (it counts the BMCs'
    sessions meanwhile) and logs out."""
    fleet = Fleet(site, history=False)  # as the poller's process keeps it
    t = time.perf_counter()
    sdr_cache = SdrCache.load(Path(cache)) if cache else None
    cache_load = time.perf_counter() - t
    poller = Poller(site, fleet, secrets, PollConfig(min_interval=0.0, timeout=5.0, global_limit=128),
                    sdr_cache=sdr_cache)
    quiet_gc()  # as the poller's own process does
    raise_fd_limit()
    cpu = _cpu()
    cold_prof = cProfile.Profile() if cold_profile else None
    t = time.perf_counter()
    if cold_prof is not None:
        cold_prof.enable()
    await poller.sweep(("power",), switches=False)
    if cold_prof is not None:
        cold_prof.disable()
    cold = time.perf_counter() - t
    cold_cpu = _cpu() - cpu
    if cold_prof is not None and cold_profile:
        cold_prof.dump_stats(cold_profile)
        print(f"cold sweep profile ({cold_profile}):")
        pstats.Stats(cold_prof).sort_stats("tottime").print_stats(18)
    conn.send({"cold": cold})
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the parent counted requests
    steady = []
    prof = cProfile.Profile() if profile else None
    cpu = _cpu()
    for _ in range(rounds):
        t = time.perf_counter()
        if prof is not None:
            prof.enable()
        await poller.sweep(("power",), switches=False)
        if prof is not None:
            prof.disable()
        steady.append(time.perf_counter() - t)
    steady_cpu = (_cpu() - cpu) / max(1, rounds)
    t = time.perf_counter()
    if sdr_cache is not None:
        sdr_cache.save()
    cache_save = time.perf_counter() - t
    if prof is not None and profile:
        prof.dump_stats(profile)
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    errors = [f"{name}: {st.error}" for name, st in fleet.nodes.items() if st.error]
    urls = []  # Redfish: the ComputerSystem each node's driver polls (for curl, in the parent)
    for node in site.nodes:
        driver = poller._bmcs[node.name].drivers.get(node.name)
        uri = getattr(driver, "_system_uri", None)
        if uri:
            urls.append(f"{node.bmc.scheme}://{node.bmc.address}:{node.bmc.effective_port}{uri}")
    result = {"cold": cold, "cold_cpu": cold_cpu, "steady": steady, "steady_cpu": steady_cpu,
              "errors": len(errors), "first_errors": errors[:3], "urls": urls,
              "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "cache_load": cache_load, "cache_save": cache_save, "cached_bmcs": len(sdr_cache or ())}
    conn.send(result)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the parent counted sessions
    await poller.aclose()
    return result


def _poller_child(conn, site, lab_secrets: dict, rounds: int, profile: str | None, cache: str | None,
                  cold_profile: str | None) -> None:
    try:
        asyncio.run(sweeps(site, Secrets(lab=lab_secrets), rounds, conn, profile, cache, cold_profile))
    finally:
        conn.send(None)
        conn.close()


def run_poller(lab: Lab, site, rounds: int, profile: str | None, cache: str | None = None,
               cold_profile: str | None = None) -> tuple[dict, int]:
    """Sweeps in a child process holding only what the poller's process holds (the
    site, the Fleet, the sessions), so its peak RSS is the poller's; returns its
    figures (with ``cold_requests``: datagrams the lab's IPMI BMCs received during the
    cold sweep) and the sessions the BMCs held while it polled."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    compact_site(site)  # as PollerProcess sends it
    proc = ctx.Process(target=_poller_child, args=(child, site, lab.secrets, rounds, profile, cache, cold_profile))
    ipmi = site.nodes[0].bmc.protocol == "ipmi"
    before = lab.ipmi_requests() if ipmi else 0
    proc.start()
    try:
        if parent.recv() is None:  # the cold sweep is done: count before the steady ones
            raise RuntimeError("the poller's process failed (see above)")
        cold_requests = lab.ipmi_requests() - before if ipmi else 0
        parent.send("counted")
        result = parent.recv()
        if result is None:
            raise RuntimeError("the poller's process failed (see above)")
        result["cold_requests"] = cold_requests
        held = lab.sessions()[site.nodes[0].bmc.protocol]
        parent.send("close")
        parent.recv()  # logged out
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    return result, held


#: hosts per ipmi-power run: one argument holds at most 128 KiB (MAX_ARG_STRLEN), and
#: 10,000 "127.1.R.N:PORT" entries overflowed it ("Argument list too long")
FREEIPMI_BATCH = 2000


def freeipmi(site, password: str) -> float | None:
    """Seconds for ``ipmi-power --stat`` over every BMC: batches of :data:`FREEIPMI_BATCH`
    hosts run one after another, each with freeipmi's own fan-out (ephemeral ports rule
    out a hostrange such as ``127.1.[1-250].[1-40]``, which would need one port)."""
    tool = shutil.which("ipmi-power")
    if not tool:
        return None
    hosts = [f"{n.bmc.address}:{n.bmc.port}" for n in site.nodes]
    ok = 0
    t = time.perf_counter()
    for i in range(0, len(hosts), FREEIPMI_BATCH):
        r = subprocess.run([tool, "-D", "LAN_2_0", "-I", "3", "-u", "admin", "-p", password,
                            "-h", ",".join(hosts[i:i + FREEIPMI_BATCH]), "--stat"],
                           capture_output=True, text=True, timeout=600)
        ok += r.stdout.count(": on") + r.stdout.count(": off")
    elapsed = time.perf_counter() - t
    if ok != len(site.nodes):
        print(f"    freeipmi answered {ok}/{len(site.nodes)}", file=sys.stderr)
    return elapsed


def curl_parallel(urls: list[str], password: str, fanout: int = 64) -> float | None:
    """Seconds for ``curl --parallel`` to GET every URL (Basic auth, a new connection each:
    one URL per BMC), its fan-out ``fanout``; the credentials go in a 0600 config file,
    never on the command line."""
    tool = shutil.which("curl")
    if not tool or not urls:
        return None
    with tempfile.TemporaryDirectory(prefix="fleet-bench-curl-") as tmp:
        config = os.path.join(tmp, "curl.conf")
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'user = "admin:{password}"\n')
            for u in urls:
                f.write(f'url = "{u}"\noutput = "/dev/null"\n')
        t = time.perf_counter()
        r = subprocess.run([tool, "--parallel", "--parallel-max", str(fanout), "-s", "-w", "%{http_code}\n",
                            "-K", config], capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - t
    ok = r.stdout.split().count("200")
    if ok != len(urls):
        print(f"    curl answered {ok}/{len(urls)} with 200", file=sys.stderr)
    return elapsed


def ipmitool_sample(site, password: str, sample: int) -> float | None:
    tool = shutil.which("ipmitool")
    if not tool:
        return None
    nodes = site.nodes[:sample]
    t = time.perf_counter()
    for n in nodes:
        subprocess.run([tool, "-I", "lanplus", "-C", "3", "-H", n.bmc.address, "-p", str(n.bmc.port), "-U", "admin",
                        "-P", password, "power", "status"], capture_output=True, timeout=60)
    return (time.perf_counter() - t) / len(nodes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--protocols", default="ipmi,redfish")
    ap.add_argument("--rounds", type=int, default=5, help="steady sweeps, and freeipmi runs (medians)")
    ap.add_argument("--sample", type=int, default=20, help="hosts in the sequential ipmitool loop")
    ap.add_argument("--profile", metavar="DIR", help="cProfile the steady sweeps into DIR/poll-PROTO-N.prof "
                    "and print the top functions")
    ap.add_argument("--profile-cold", metavar="DIR", help="cProfile the cold sweeps into "
                    "DIR/poll-PROTO-N-cold-{first,restart}.prof and print the top functions")
    args = ap.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="fleet-bench-"))
    rows = []
    for protocol in args.protocols.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            site = load_site_text(scaled_site_yaml(n, protocol=protocol, name=f"bench-{protocol}-{n}"))
            lab = Lab(site, ephemeral=True)
            t = time.perf_counter()
            lab.start(timeout=300)
            lab_start = time.perf_counter() - t
            try:
                eff = lab.effective_site()
                prof = os.path.join(args.profile, f"poll-{protocol}-{n}.prof") if args.profile else None
                load_before = os.getloadavg()[0]
                cache_dir = tempfile.mkdtemp(prefix="fleet-bench-sdr-")  # a first-ever poller: no cache yet
                cache = os.path.join(cache_dir, "sdr-cache.json") if protocol == "ipmi" else None
                try:
                    cold_prof = (os.path.join(args.profile_cold, f"poll-{protocol}-{n}-cold-%s.prof")
                                 if args.profile_cold else None)
                    res, held = run_poller(lab, eff, args.rounds, prof, cache, cold_prof and cold_prof % "first")
                    leaked = lab.sessions()
                    # a console restart: a new poller process on the cache the first one saved
                    again = (run_poller(lab, eff, 0, None, cache, cold_prof and cold_prof % "restart")[0]
                             if cache else None)
                finally:
                    shutil.rmtree(cache_dir, ignore_errors=True)
                cold, steady, errors = res["cold"], res["steady"], res["errors"]
                med = statistics.median(steady)
                row = {"protocol": protocol, "n": n, "lab_start_s": lab_start, "cold_s": cold, "steady_s": med,
                       "polls_per_s": n / med, "errors": errors, "leaked": leaked[protocol],
                       "sessions_per_bmc": held / n, "rss_mb": res["rss_mb"]}
                if protocol == "redfish":
                    runs = [curl_parallel(res["urls"], lab.secrets["bmc"]) for _ in range(args.rounds)]
                    row["curl_s"] = statistics.median(runs) if None not in runs else None
                    row["curl_runs_s"] = runs
                if protocol == "ipmi":
                    # as many freeipmi runs as steady sweeps, median: one run is as noisy as one sweep
                    runs = [freeipmi(eff, lab.secrets["bmc"]) for _ in range(args.rounds)]
                    row["freeipmi_s"] = statistics.median(runs) if None not in runs else None
                    row["freeipmi_runs_s"] = runs
                    row["ipmitool_per_host_s"] = ipmitool_sample(eff, lab.secrets["bmc"], args.sample)
                rows.append(row)
                print(f"{protocol:8} N={n:5}  lab start {lab_start:5.1f} s  cold {cold:6.2f} s  steady {med:6.2f} s "
                      f"({n / med:7.0f} BMC polls/s)  errors {errors}  sessions/BMC while polling {held / n:.2f}  "
                      f"leaked sessions {leaked[protocol]}  "
                      f"peak RSS {row['rss_mb']:.0f} MB", flush=True)
                if res["first_errors"]:
                    print(f"{'':8} errors, e.g. {'; '.join(res['first_errors'])}", flush=True)
                if again is not None:
                    row["cold_requests_per_bmc"] = res["cold_requests"] / n
                    row["cold_warm_s"] = again["cold"]
                    row["cold_warm_requests_per_bmc"] = again["cold_requests"] / n
                    print(f"{'':8} cold sweep, first ever (empty SDR cache): {cold:6.2f} s, "
                          f"{res['cold_requests'] / n:.1f} requests/BMC; after a restart (SDR cache warm, "
                          f"{again['cached_bmcs']} BMCs loaded in {again['cache_load'] * 1000:.0f} ms): "
                          f"{again['cold']:6.2f} s, {again['cold_requests'] / n:.1f} requests/BMC, errors "
                          f"{again['errors']}; cache saved in {res['cache_save'] * 1000:.0f} ms "
                          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                print(f"{'':8} poller CPU: cold {res['cold_cpu']:.2f} s, {res['steady_cpu']:.2f} s per steady sweep; "
                      f"steady sweeps {' '.join(f'{x:.2f}' for x in steady)} s; load average "
                      f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after", flush=True)
                if protocol == "ipmi" and row.get("freeipmi_s"):
                    fi = row["freeipmi_s"]
                    print(f"{'':8} freeipmi runs {' '.join(f'{x:.2f}' for x in row['freeipmi_runs_s'])} s "
                          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                    print(f"{'':8} freeipmi ipmi-power --stat: {fi:6.2f} s ({n / fi:7.0f} hosts/s); "
                          f"ours/freeipmi throughput ratio {fi / med:5.1f}x; "
                          f"ipmitool sequential {row['ipmitool_per_host_s'] * 1000:.0f} ms/host "
                          f"(≈{row['ipmitool_per_host_s'] * n:.1f} s for N)", flush=True)
                if protocol == "redfish" and row.get("curl_s"):
                    cu = row["curl_s"]
                    print(f"{'':8} curl --parallel --parallel-max 64 over the same {len(res['urls'])} ComputerSystem "
                          f"URLs: runs {' '.join(f'{x:.2f}' for x in row['curl_runs_s'])} s, median {cu:.2f} s "
                          f"(load average {os.getloadavg()[0]:.1f}); ours/curl time ratio {med / cu:.2f}x "
                          "(target <= 2)", flush=True)
            finally:
                lab.stop()
    print("\nnote: one poll = power state + health on a kept session (IPMI: one Get Chassis Status on the "
          "asyncio RMCP+ session, with sensor health read through pyghmi and cached 30 s; Redfish: one GET of "
          "the ComputerSystem); freeipmi and ipmitool do one power-status request per host, with a new "
          "session each.")


if __name__ == "__main__":
    main()
