"""Benchmark: the fleet screen with thousands of nodes, headless, while the poller runs.

    python bench/tui_scale.py                     # 5,000 lab machines, 1 run
    python bench/tui_scale.py --nodes 2000 --runs 3
    python bench/tui_scale.py --no-lab            # no lab, no polling: the screen alone
    python bench/tui_scale.py --profile /tmp/keys # cProfile of the keys, into /tmp/keys.1

It starts a generated lab site (``console/lab/scale.py``, worker processes on
loopback, ephemeral ports), then runs the app headless (``App.run_test``) with
polling on at the default cadences and measures, in wall-clock time:

- first table: from starting the app to the first paint of the fleet screen with
  every node's row in the table;
- change-to-screen: 500 nodes change state at once (states with a fault arrive in
  the Fleet, as from the poller's process); from then until the paint by which
  every one of them has been shown (the table's cells held the new state and a
  screen refresh completed after), repeated ``--batches`` times;
- filter index ready: from the first table until the fleet screen has read every
  node into the filter's index (a key typed before waits for the rest);
- keypress-to-screen, p50/p95: cursor moves (``down``) and typing a filter
  character by character (and clearing it with ``escape``), each key sent through
  the driver like a real one; until the paint that shows its effect.  For filter
  typing both: the typed character on screen ("echo") and the table filtered
  ("filter typing": the first paint that started after the screen applied the
  filter, or the echo when applying it changed nothing on screen, as when a
  character keeps the same rows).  The first character typed into the filter is
  reported on its own, and the keypress p50/p95 are of the keys after it.

"Paint" is the fleet screen's compositor refresh: the headless driver discards the
output, so everything up to the terminal write is counted.  Targets: first table
< 1.5 s, change-to-screen < 200 ms, keypress p95 < 50 ms.  The numbers are noisy
on a shared machine: run it more than once.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual import events  # noqa: E402
from textual.screen import Screen  # noqa: E402

from console.cli.main import SiteContext  # noqa: E402
from console.lab.scale import scaled_site_yaml  # noqa: E402
from console.live.poller import PollConfig  # noqa: E402
from console.secrets import Secrets  # noqa: E402
from inventory.loader import load_site_text  # noqa: E402
from screens.app import make_app  # noqa: E402
from screens.fleet import FleetScreen  # noqa: E402
from screens.table import FleetTable  # noqa: E402

TARGETS = {"first table": 1.5, "change-to-screen": 0.200, "keypress p95": 0.050}

# ------------------------------------------------------------------ paint probe
#: every compositor refresh of a FleetScreen calls these (screen, time) after it
_paint_hooks: list[Callable[[Screen, float], None]] = []
_original_refresh = Screen._compositor_refresh


#: (start, end) of the fleet screen's latest paints
_paints: list[tuple[float, float]] = []


def _probed_refresh(self: Screen) -> None:
    start = time.perf_counter()
    _original_refresh(self)
    if isinstance(self, FleetScreen):
        now = time.perf_counter()
        _paints.append((start, now))
        del _paints[:-200]
        for hook in list(_paint_hooks):
            hook(self, now)


Screen._compositor_refresh = _probed_refresh  # the bench's own process only

#: (filter text, when the fleet screen applied it, whether that changed what is on screen)
_applied: list[tuple[str, float, bool]] = []
_original_show_filter = FleetScreen._show_filter


def _probed_show_filter(self: FleetScreen, text: str, chosen) -> None:
    table = self.query_one(FleetTable)
    before, problem = table.keys, self.filter_problem
    _original_show_filter(self, text, chosen)
    _applied.append((text, time.perf_counter(), table.keys is not before or self.filter_problem != problem))
    del _applied[:-200]


FleetScreen._show_filter = _probed_show_filter


async def until_painted(predicate: Callable[[FleetScreen], bool], timeout: float = 60.0) -> float:
    """perf_counter() of the first fleet-screen paint after which ``predicate`` holds."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()

    def hook(screen: Screen, now: float) -> None:
        if not done.done() and predicate(screen):  # type: ignore[arg-type]
            done.set_result(now)

    _paint_hooks.append(hook)
    try:
        return await asyncio.wait_for(done, timeout)
    finally:
        _paint_hooks.remove(hook)


#: key name -> the character a terminal sends for it
_CHARS = {"slash": "/", "equals_sign": "=", "escape": "\x1b", "backspace": "\x7f", "enter": "\r", "down": None}


async def filter_applied(text: str, since: float, timeout: float = 10.0) -> float:
    """When the filter ``text`` typed at ``since`` is on screen: the end of the first paint
    that started after the screen applied it or, if applying it changed nothing on
    screen (same rows, same error state), the moment it was applied."""
    deadline = time.perf_counter() + timeout
    while True:
        hit = next((entry for entry in _applied if entry[0] == text and entry[1] >= since), None)
        if hit is not None:
            _, applied, changed = hit
            if not changed:
                return applied
            paint = next((end for start, end in _paints if start >= applied), None)
            if paint is not None:
                return paint
        if time.perf_counter() > deadline:
            raise TimeoutError(f"filter {text!r} not shown")
        await asyncio.sleep(0.001)


def send_key(app, key: str) -> None:
    """A key event through the driver, as the terminal would deliver it (no wait for idle)."""
    event = events.Key(key, _CHARS.get(key, key if len(key) == 1 else None))
    event.set_sender(app)
    app._driver.send_message(event)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def absorb(fleet, names: list[str], fault: str | None) -> dict:
    """A batch of changed states arriving, as from the poller's process: ``fault`` as an
    error on each of ``names`` (None: that error gone).  Returns the states put in."""
    states = {}
    for name in names:
        st = copy.copy(fleet.nodes[name])
        st.errors = {job: why for job, why in st.errors.items() if job != "bench"}
        if fault is not None:
            st.errors["bench"] = fault
        states[name] = st
    fleet.absorb(states, {})
    return states


# ------------------------------------------------------------------ one run
async def one_run(site, secrets, *, poll: bool, batches: int, size: tuple[int, int],
                  poller_process: bool = False, profile: str | None = None) -> dict:
    n = len(site.nodes)
    out: dict = {}
    # the app polls in a process of its own (PollerProcess); --poller-on-ui-loop puts the
    # poller on the app's event loop, as it was at first, for comparison
    app = make_app(SiteContext(site, secrets), poll=poll and poller_process, poll_config=PollConfig())
    background = app.poller if poll and not poller_process else None
    first = asyncio.ensure_future(until_painted(lambda s: s.query_one(FleetTable).row_count == n, timeout=120))
    t0 = time.perf_counter()
    async with app.run_test(size=size, notifications=False):
        out["first table"] = shown = await first - t0
        if background is not None:
            background.start()
        screen: FleetScreen = app.screen  # type: ignore[assignment]
        table = screen.query_one(FleetTable)
        fleet = app.fleet
        started = time.perf_counter()
        while not screen._index_built and time.perf_counter() < started + 3.0:
            await asyncio.sleep(0.005)
        # None: not built 3 s after the first table (a first key then reads what is left)
        out["filter index ready"] = time.perf_counter() - t0 - shown if screen._index_built else None
        await asyncio.sleep(max(0.0, started + 3.0 - time.perf_counter()))  # let the poller's opening
        # storm get going: measure under load
        polled = sum(1 for st in fleet.nodes.values() if st.last_success)
        out["polled before the batches"] = polled

        # -------------------------------------------- 500 changes at once
        names = [nd.name for nd in site.nodes]
        step = max(1, n // 500)
        batch = names[:30] + [nm for nm in names[30::step]][: 500 - 30]  # the visible rows too
        latencies = []

        def error_shown(nm: str) -> str | None:
            """The poll error the row's WHY cell shows (``⊘ error``, after what is being done), or None."""
            why = table.get_cell(nm, "why").plain
            return why.split("⊘ ", 1)[1] if "⊘ " in why else None

        for round_ in range(batches):
            text = f"bench fault {round_}"
            seen: set[str] = set()
            injected: dict = {}  # the states put in, filled just before the clock starts

            def shows(s: FleetScreen, text=text, seen=seen, injected=injected) -> bool:
                # each node counts once shown; a real poll that arrived since and replaced
                # the fault counts once the screen shows what it brought
                for nm in batch:
                    if nm not in seen:
                        st = fleet.nodes[nm]
                        wanted = text if st is injected[nm] else st.error
                        if error_shown(nm) == wanted:
                            seen.add(nm)
                return len(seen) == len(batch)

            t = time.perf_counter()
            injected.update(absorb(fleet, batch, text))
            latencies.append(await until_painted(shows) - t)
            absorb(fleet, batch, None)  # cleared again
            await until_painted(lambda s, text=text: all(error_shown(nm) != text for nm in batch))
            await asyncio.sleep(0.3)
        out["change-to-screen"] = latencies

        # -------------------------------------------- keys: cursor moves
        pauses: list[tuple[int, float]] = []  # garbage collections while keys are typed

        started = [0.0]  # when the collection in progress began

        def collected(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses.append((info["generation"], time.perf_counter() - started[0]))

        gc.callbacks.append(collected)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        moves = []
        for _ in range(40):
            row = table.cursor_row
            t = time.perf_counter()
            send_key(app, "down")
            moves.append(await until_painted(lambda s, row=row: table.cursor_row == row + 1) - t)
            await asyncio.sleep(0.02)
        out["cursor down"] = moves

        # -------------------------------------------- keys: typing a filter
        t = time.perf_counter()
        send_key(app, "slash")
        await until_painted(lambda s: s.query_one("#filter-bar").display)
        out["open filter"] = [time.perf_counter() - t]
        typing, echo, typed_texts = [], [], []
        word = f"rack=r{min(42, len(site.racks)):03d}"
        typed = ""
        filter_input = screen.query_one("#filter")
        for ch in word + "\b" * len(word) + "off":  # a rack, erased, then a state word
            key = "backspace" if ch == "\b" else ("equals_sign" if ch == "=" else ch)
            typed = typed[:-1] if ch == "\b" else typed + ch
            shown = asyncio.ensure_future(until_painted(lambda s, typed=typed: filter_input.value == typed))
            await asyncio.sleep(0)  # the probe in place
            t = time.perf_counter()
            send_key(app, key)
            echo.append(await shown - t)
            # the result is on screen once both the typed text and the filtered table are
            typing.append(max(await filter_applied(typed, t) - t, echo[-1]))
            typed_texts.append(typed)
            await asyncio.sleep(0.02)
        out["filter echo"] = echo
        out["filter typing"] = typing
        out["typed"] = typed_texts
        t = time.perf_counter()
        send_key(app, "escape")  # back to every node: the biggest rebuild
        out["clear filter (escape)"] = [await until_painted(lambda s: table.row_count == n) - t]
        gc.callbacks.remove(collected)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        out["gc pauses"] = pauses
        out["polled at the end"] = sum(1 for st in fleet.nodes.values() if st.last_success)
        await app.action_quit()  # closes the app's poller (process or not)
    return out


def report(run: int, out: dict, n: int, mode: str, verbose: bool = False) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"run {run}: {n} nodes, {mode}   (load average {load} at its end)")
    print(f"  first table           {ms(out['first table'])}   (target < {ms(TARGETS['first table'])})")
    lat = out["change-to-screen"]
    print(f"  change-to-screen      500 changes: {', '.join(ms(x) for x in lat)}   "
          f"median {ms(statistics.median(lat))}, max {ms(max(lat))}   (target < {ms(TARGETS['change-to-screen'])})")
    ready = out["filter index ready"]
    print("  filter index ready    " + (f"{ms(ready)} after the first table" if ready is not None
                                      else "not 3 s after the first table"))
    print(f"  first filter key      {out['typed'][0]!r}: {ms(out['filter typing'][0])} "
          f"(echo {ms(out['filter echo'][0])})   (target < {ms(TARGETS['keypress p95'])}, as any key)")
    later = {"cursor down": out["cursor down"], "filter echo": out["filter echo"][1:],
             "filter typing": out["filter typing"][1:]}
    for key in ("cursor down", "filter echo", "filter typing", "open filter", "clear filter (escape)"):
        v = later.get(key, out[key])
        if len(v) > 1:
            print(f"  {key:<21} p50 {ms(pct(v, 0.5))}  p95 {ms(pct(v, 0.95))}  max {ms(max(v))}  (n={len(v)}"
                  + (", after the first key)" if key.startswith("filter ") else ")"))
        else:
            print(f"  {key:<21} {ms(v[0])}")
    for label, keys in (("keys (echo)", later["cursor down"] + later["filter echo"]),
                        ("keys (table result)", later["cursor down"] + later["filter typing"])):
        print(f"  {label:<21} p50 {ms(pct(keys, 0.5))}  p95 {ms(pct(keys, 0.95))}   "
              f"(target p95 < {ms(TARGETS['keypress p95'])}; the first filter key apart)")
    if verbose:
        print("  per key typed (echo / table): " + ", ".join(
            f"{text!r} {ms(e)}/{ms(f)}" for text, e, f in zip(out["typed"], out["filter echo"], out["filter typing"],
                                                  strict=True)))
    full = [p for g, p in out["gc pauses"] if g == 2]
    young = [p for g, p in out["gc pauses"] if g < 2]
    print(f"  garbage collections while keys were typed: {len(full)} full"
          + (f" (max {ms(max(full))})" if full else "")
          + f", {len(young)} young" + (f" (max {ms(max(young))})" if young else ""))
    print(f"  nodes polled: {out['polled before the batches']} before the batches, "
          f"{out['polled at the end']} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batches", type=int, default=5, help="500-change batches per run")
    parser.add_argument("--no-lab", action="store_true", help="no lab and no polling: the screen alone")
    parser.add_argument("--size", default="160x48", help="terminal size, COLSxROWS")
    parser.add_argument("--verbose", action="store_true", help="also print each typed key's latencies")
    parser.add_argument("--lab-nice", type=int, default=0, metavar="N",
                        help="run the lab's processes at nice N (the BMCs they simulate are not on the "
                             "console's machine; default 0: they compete with it for the CPU)")
    parser.add_argument("--poller-on-ui-loop", action="store_true",
                        help="run the poller on the app's event loop (as at first), for comparison")
    parser.add_argument("--profile", metavar="PATH",
                        help="cProfile the app's process while keys are typed, into PATH.<run> (pstats)")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    site = load_site_text(scaled_site_yaml(args.nodes), "<scaled>")
    lab = None
    secrets = Secrets(lab={})
    if not args.no_lab:
        from console.lab.lab import Lab

        lab = Lab(site, ephemeral=True)
        t = time.perf_counter()
        print(f"starting a lab of {args.nodes} machines ...", flush=True)
        lab.start(timeout=900)
        print(f"lab up in {time.perf_counter() - t:.1f} s", flush=True)
        if args.lab_nice:
            # the lab stands in for thousands of BMCs on other machines; niced, it takes
            # the CPU the console does not use, as remote BMCs would take none of it
            for proc in lab._procs:
                os.setpriority(os.PRIO_PROCESS, proc.proc.pid, args.lab_nice)
        site = lab.effective_site()
        secrets = Secrets(lab=lab.secrets)
    try:
        for run in range(1, args.runs + 1):
            profile = f"{args.profile}.{run}" if args.profile else None
            out = asyncio.run(one_run(site, secrets, poll=lab is not None, batches=args.batches, size=size,
                                      poller_process=not args.poller_on_ui_loop, profile=profile))
            report(run, out, len(site.nodes), "no polling" if lab is None else
                   "poller on the app's event loop" if args.poller_on_ui_loop else "poller in its own process",
                   verbose=args.verbose)
            sys.stdout.flush()
    finally:
        if lab is not None:
            lab.stop()


if __name__ == "__main__":
    main()
