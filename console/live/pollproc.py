"""The poller in a process of its own, feeding a :class:`~console.live.fleet.Fleet` in this one.

The console polls thousands of BMCs; on a thread of the UI's process that work
shares the interpreter lock with the screen, and a keypress waited behind it
(``bench/tui_scale.py``: cursor-move p95 60-70 ms, filter 100-250 ms at 5,000
nodes while polling).  In a child process the poller has its own interpreter, and
what crosses over is the state that changed:

- the child runs a :class:`~console.live.poller.Poller` on its own Fleet and, every
  ``FLUSH_S`` seconds, sends the changed nodes' and switches' states over a pipe
  (every message is a dataclass of :mod:`console.live.messages`);
- a reader thread here puts them into the console's Fleet
  (:meth:`Fleet.absorb`), which marks them changed for the screens, as a poll in
  this process would;
- polls asked for now (the node screen's ``r``) are requests; their results
  arrive before the reply does;
- the child's log records are re-logged here (the child's stdout and stderr go
  to /dev/null: a stray print must not scribble over the screen);
- the child runs at a lower priority (``NICE``): on a busy machine a keypress is
  served first, and the polls wait;
- :meth:`PollerProcess.aclose` asks the child to log out of every BMC and waits
  for it (bounded), then ends it.  If this process dies, however it dies (``q``,
  SIGHUP from a dropped terminal, SIGTERM, SIGKILL, an exception), the child logs
  out on its own and ends within ``CHILD_EXIT_S``: it sees the socket close, and,
  on Linux, the kernel sends it SIGTERM when its parent ends (``PR_SET_PDEATHSIG``)
  in case something else holds the socket open.  The logout is bounded, and the
  child leaves with ``os._exit``: a blocking BMC call stuck in a worker thread
  (pyghmi waits without a deadline) must not keep it alive in the interpreter's
  exit, which joins every worker thread; an orphaned poller was once found asleep
  there 30 minutes after its console was killed.

This is the seam docs/architecture.md plans for a per-site poller service: the console only
sees Fleet states arriving.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from multiprocessing.connection import Connection
from pathlib import Path

from console.drivers.sdrcache import SdrCache, sdr_cache_path
from console.live.fleet import Fleet
from console.live.messages import (
    Close,
    Failed,
    Logged,
    PollNode,
    PollSwitch,
    Replied,
    Report,
    Request,
    Setup,
    StatesChanged,
)
from console.live.poller import PollConfig, Poller, compact_site, quiet_gc, raise_fd_limit, settle
from console.secrets import Secrets
from inventory.model import Site

__all__ = ["PollerProcess", "PollerGone"]

log = logging.getLogger(__name__)

#: the directory holding the ``console`` package this module was imported from
_CODE_ROOT = str(Path(__file__).resolve().parents[2])
#: how often the child sends what changed (the console drains its Fleet at 20 Hz)
FLUSH_S = 0.05
#: the poller's scheduling priority, below the console's (nice(2) increment)
NICE = 10
#: how long aclose() waits for the child to log out of every BMC
CLOSE_TIMEOUT_S = 20.0
#: however the child is told to end, it is gone this many seconds later (logged out or not)
CHILD_EXIT_S = 10.0
#: of which the logout of every BMC may take this long
LOGOUT_S = 8.0
#: the IPMI SDR cache is saved at most this often while it changes (and at the end)
SDR_SAVE_S = 30.0


class PollerGone(Exception):
    """The poller's process ended (or was never started); the text says why."""


#: an asker waiting on its own event loop for a reply: (that loop, its future)
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[str | None]"]


class PollerProcess:
    """A Poller in a child process; its observations land in ``fleet`` here (a
    :class:`~console.live.source.PollSource`)."""

    def __init__(self, site: Site, fleet: Fleet, secrets: Secrets, config: PollConfig) -> None:
        self.site = site
        self.fleet = fleet
        self.secrets = secrets
        self.config = config
        #: why the poller's process ended, when it ended other than by aclose()
        self.failure: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------ life
    def start(self) -> None:
        """Start the child and the reader.

        The child is ``python -m console.live.pollproc FD`` over a socket pair (not
        multiprocessing: its spawn wants a real stderr, which a TUI has replaced), in a
        session of its own: a terminal's signals are the console's to handle, and if
        the console dies the child sees the socket close and logs out of every BMC.
        """
        ours, theirs = socket.socketpair()
        with ours, theirs:
            # the child imports this very code, wherever it was imported from here
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_CODE_ROOT, env.get("PYTHONPATH")) if p)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "console.live.pollproc", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, env=env)
            self._conn = Connection(ours.detach())
        # what the child unpickles is what it keeps: a site sent with its equal strings
        # shared, and without a stale node index, is a third of the memory there (22 MB
        # against 63 at 10,000 nodes)
        compact_site(self.site)
        self._conn.send(Setup(self.site, self.secrets.detached(), self.config, logging.getLogger().level))
        self._reader = threading.Thread(target=self._read, name="poller-pipe", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        """The child runs and has not failed."""
        return self._proc is not None and self._proc.poll() is None and self.failure is None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before :meth:`start`)."""
        return self._proc.pid if self._proc is not None else None

    async def aclose(self) -> None:
        """Log out of every BMC (in the child), then end the child; idempotent, bounded."""
        if self._closed or self._proc is None:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._request(Close), CLOSE_TIMEOUT_S)
        except (TimeoutError, PollerGone) as exc:
            log.warning("poller process did not close cleanly: %s", exc or "timed out")
        try:
            await asyncio.to_thread(self._proc.wait, 5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            await asyncio.to_thread(self._proc.wait, 5)
        try:
            if self._conn is not None:
                self._conn.close()
        except OSError:
            pass
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)

    # ------------------------------------------------------------ asks
    async def poll_node_now(self, name: str, jobs: Iterable[str] = ("power",)) -> None:
        """Poll ``jobs`` of node ``name`` now (no backoff); its state is in the Fleet on return."""
        jobs = tuple(jobs)
        await self._request(lambda rid: PollNode(rid, name, jobs))

    async def poll_switch_now(self, name: str) -> None:
        """Poll switch ``name`` now; its state is in the Fleet on return."""
        await self._request(lambda rid: PollSwitch(rid, name))

    async def _request(self, make: Callable[[int], Request]) -> None:
        """Send the request ``make(rid)`` and wait for its reply; PollerGone when the child is
        gone (or a close failed), RuntimeError with the child's reason when a poll failed."""
        if self._conn is None or self.failure is not None:
            raise PollerGone(self.failure or "the poller is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        rid = next(self._ids)
        request = make(rid)
        with self._lock:
            self._waiting[rid] = (loop, future)
        try:
            with self._send_lock:
                self._conn.send(request)
        except (OSError, ValueError) as exc:
            with self._lock:
                self._waiting.pop(rid, None)
            raise PollerGone(f"the poller's process is gone ({exc})") from None
        try:
            error = await future
        finally:
            with self._lock:
                self._waiting.pop(rid, None)
        if error:
            raise PollerGone(error) if isinstance(request, Close) else RuntimeError(error)

    # ------------------------------------------------------------ the pipe
    def _read(self) -> None:
        """Reader thread: states into the Fleet, replies to their askers, logs re-logged."""
        why = "the poller's process ended"
        assert self._conn is not None  # started before this thread
        try:
            while True:
                try:
                    message: Report = self._conn.recv()
                except (EOFError, OSError):
                    break
                if isinstance(message, StatesChanged):
                    self.fleet.absorb(message.nodes, message.switches, message.last_sweep_at)
                elif isinstance(message, Replied):
                    with self._lock:
                        waiter = self._waiting.get(message.rid)
                    if waiter is not None:
                        _settle(waiter, message.error)
                elif isinstance(message, Logged):
                    logging.getLogger(message.logger).log(message.level, "%s", message.text)
                elif isinstance(message, Failed):
                    why = f"the poller failed: {message.why}"
                    log.error("%s", why)
        finally:
            if not self._closed:
                self.failure = why
                code = self._proc.poll() if self._proc is not None else None
                log.error("%s (exit code %s)", why, code)
            with self._lock:
                waiting, self._waiting = self._waiting, {}
            for waiter in waiting.values():
                _settle(waiter, why)


def _settle(waiter: _Waiter, error: str | None) -> None:
    """Answer an asker waiting on its own loop (from the reader thread)."""
    loop, future = waiter

    def answer() -> None:
        if not future.done():
            future.set_result(error)

    try:
        loop.call_soon_threadsafe(answer)
    except RuntimeError:  # that loop is closed: nobody is waiting any more
        pass


# ---------------------------------------------------------------- the child
_Send = Callable[[Report], None]


class _PipeLogHandler(logging.Handler):
    """Sends the child's log records to the console, which logs them again."""

    def __init__(self, send: _Send) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._send(Logged(record.levelno, record.name, text))
        except Exception:  # noqa: BLE001 - a log record must never take the poller down
            pass


def _die_with_parent(parent: int | None) -> None:
    """Ask the kernel for SIGTERM when the console ends (Linux ``PR_SET_PDEATHSIG``).

    The socket closing says the same, unless another process holds its other end
    (a descriptor inherited across a fork); this does not depend on that.  When the
    console ended before this ran, the parent is already someone else: end now.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if parent is not None and os.getppid() != parent:
        os._exit(0)


def _exit_within(seconds: float) -> None:
    """Make sure this process is gone ``seconds`` from now, whatever is still running."""
    timer = threading.Timer(seconds, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


def _child_main(fd: int, parent: int | None = None) -> None:
    """The child's whole life: poll until asked to close or the console goes away; then
    log out (bounded) and leave at once (``os._exit``: see the module docstring)."""
    from console.libwarnings import silence_library_warnings

    silence_library_warnings()  # as the console does: before the SSH driver imports asyncssh
    try:
        _child_life(fd, parent)
    finally:
        logging.shutdown()
        os._exit(0)


def _child_life(fd: int, parent: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the console decides when polling ends
    _die_with_parent(parent)
    try:  # background work: on a busy jump host the operator's keypress comes first
        os.nice(NICE)
    except OSError:
        pass
    conn = Connection(fd)
    try:
        setup = conn.recv()
    except (EOFError, OSError, ValueError):
        return
    if not isinstance(setup, Setup):
        return
    send_lock = threading.Lock()

    def send(message: Report) -> None:
        with send_lock:
            conn.send(message)

    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(send)]
    root.setLevel(setup.log_level)
    try:
        asyncio.run(_serve(conn, send, setup.site, setup.secrets, setup.config))
    except Exception as exc:  # noqa: BLE001 - said to the console, which shows it
        logging.getLogger(__name__).exception("poller process failed")
        try:
            send(Failed(f"{type(exc).__name__}: {exc}"))
        except (OSError, ValueError):
            pass
    finally:
        conn.close()


async def _serve(conn: Connection, send: _Send, site: Site, secrets: Secrets, config: PollConfig) -> None:
    """Poll, answer the console's requests and send what changed, until told to close or
    the console is gone; then log out of every BMC (bounded) and answer the close."""
    loop = asyncio.get_running_loop()
    fleet = Fleet(site, history=False)  # the console's Fleet keeps the history of what it absorbs
    try:
        sdr_cache = SdrCache.load(sdr_cache_path(site.name))  # a console restart walks no BMC's SDR
    except ValueError:  # a site name that is no directory name: in memory only
        sdr_cache = SdrCache()
    poller = Poller(site, fleet, secrets, config, sdr_cache=sdr_cache)
    quiet_gc()  # the site, the Fleet and the Poller live as long as this process
    raise_fd_limit()  # a kept connection per Redfish BMC
    poller.start()
    #: set when polling is to end: the close request's id, or None (signal, console gone)
    done: asyncio.Future[int | None] = loop.create_future()
    asks: set[asyncio.Task[None]] = set()

    def flush() -> None:
        nodes, switches = fleet.drain_changes()
        if nodes or switches:
            send(StatesChanged({n: fleet.nodes[n] for n in nodes}, {s: fleet.switches[s] for s in switches},
                               fleet.last_sweep_at))

    async def answer(rid: int, make: Callable[[], Awaitable[None]]) -> None:
        error = None
        try:
            await make()
        except asyncio.CancelledError:
            error = "cancelled: the poller is closing"
        except Exception as exc:  # noqa: BLE001 - the asker gets the reason
            error = f"{type(exc).__name__}: {exc}"
        flush()  # the results first, then the reply
        send(Replied(rid, error))

    def readable() -> None:
        try:
            while conn.poll():
                message: Request = conn.recv()
                make: Callable[[], Awaitable[None]]
                if isinstance(message, PollNode):
                    make = functools.partial(poller.poll_node_now, message.name, message.jobs)
                elif isinstance(message, PollSwitch):
                    make = functools.partial(poller.poll_switch_now, message.name)
                elif isinstance(message, Close):
                    if not done.done():
                        done.set_result(message.rid)
                    continue
                else:
                    rid = getattr(message, "rid", None)
                    if isinstance(rid, int):
                        send(Replied(rid, f"unknown request {type(message).__name__}"))
                    continue
                task = loop.create_task(answer(message.rid, make))
                asks.add(task)
                task.add_done_callback(asks.discard)
        except (EOFError, OSError):  # the console is gone: log out and end
            loop.remove_reader(conn.fileno())
            if not done.done():
                done.set_result(None)

    def ended(why: str) -> None:  # SIGTERM (also the console's death), SIGHUP: log out and end
        logging.getLogger(__name__).info("poller process: %s: logging out", why)
        if not done.done():
            done.set_result(None)

    for sig, why in ((signal.SIGTERM, "terminated"), (signal.SIGHUP, "hung up")):
        loop.add_signal_handler(sig, ended, why)
    loop.add_reader(conn.fileno(), readable)
    try:
        next_save = loop.time() + SDR_SAVE_S
        while not done.done():
            await asyncio.wait([done], timeout=FLUSH_S)
            flush()
            if loop.time() >= next_save:
                next_save = loop.time() + SDR_SAVE_S
                await sdr_cache.save_async()
    finally:
        _exit_within(CHILD_EXIT_S)  # from here on, nothing may keep this process alive
        loop.remove_reader(conn.fileno())
        for task in list(asks):
            task.cancel()
        try:
            async with asyncio.timeout(LOGOUT_S):
                await poller.aclose()
                await settle()
                await sdr_cache.save_async()
        except TimeoutError:
            logging.getLogger(__name__).warning("poller process: logging out took over %g s: leaving", LOGOUT_S)
        rid = done.result() if done.done() else None
        try:
            flush()
            if rid is not None:
                send(Replied(rid, None))
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    _child_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
