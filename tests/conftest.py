"""Shared fixtures: a private runtime dir, and the demo lab on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console import site as sites

# A whole run takes three to four minutes on two cores.  pytest-timeout ends a test that runs
# too long by raising in its main thread; a test stuck where that cannot reach it, or whose
# teardown hangs after it, would keep the run going until CI kills it, with nothing printed.
# A watchdog thread of faulthandler (C, no interpreter lock needed) bounds each test and the
# whole run in every process, and prints every thread's stack before it ends the process.
RUN_LIMIT = 20 * 60  # seconds for the whole run, per process
STUCK_AFTER_TIMEOUT = 30  # seconds a test may outlive its pytest-timeout limit
_run_deadline = 0.0
_orphans_adopted = False  # this process is the run's subreaper (pytest_sessionfinish)
_stderr = 2  # the process's stderr before pytest captured it (set at configure)


def pytest_configure(config: pytest.Config) -> None:
    """Arm the run's watchdog, and compile the project once, before the workers start.  A
    fresh clone has no bytecode, and an environment may forbid writing it
    (PYTHONDONTWRITEBYTECODE): then each of the few hundred Python processes a run starts
    (command lines, lab workers) would compile the project's modules again, a tenth of a
    second each."""
    global _run_deadline, _stderr, _orphans_adopted
    _run_deadline = time.monotonic() + RUN_LIMIT
    if not hasattr(config, "workerinput"):
        _orphans_adopted = _adopt_orphans()
    # pytest's capture has fd 2 in a temporary file by now; its saved copy is the real stderr
    # (a worker's is the controller's, so its dump reaches the run's output)
    capturing = getattr(config.pluginmanager.getplugin("capturemanager"), "_global_capturing", None)
    _stderr = getattr(getattr(capturing, "err", None), "targetfd_save", 2)
    _watchdog(RUN_LIMIT)
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("console", "inventory", "screens"):
        compileall.compile_dir(root / package, quiet=2)


def _adopt_orphans() -> bool:
    """Make this process the one that orphans of its descendants are re-parented to (Linux's
    child subreaper), so that what a test or a worker left running is found at the end."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the process that started the run, after its workers have ended: any process still
    here was left behind (re-parented to us as an orphan).  Give it a few seconds, then end
    it and name it, so a run leaves nothing behind, not even a process holding CI's output."""
    import signal

    from tests.support import children

    if hasattr(session.config, "workerinput") or not _orphans_adopted:
        return
    deadline = time.monotonic() + 5
    left: dict[int, tuple[str, str]] = {}
    while True:
        left = {}
        for pid, (state, command) in children(os.getpid()).items():
            if state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            else:
                left[pid] = (state, command)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    writer = session.config.get_terminal_writer()
    for pid, (_, command) in left.items():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        writer.line()
        writer.line(f"left behind by the run, now killed: pid {pid}: {command[:200]}", red=True)


def _watchdog(seconds: float) -> None:
    """After ``seconds``, print every thread's stack to the real stderr (headed
    ``Timeout (h:mm:ss)!``) and end this process with status 1 (an xdist worker's end is
    reported as a crash of the test it was running).  Arming it again replaces the earlier
    deadline."""
    import faulthandler

    faulthandler.dump_traceback_later(seconds, exit=True, file=_stderr)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests that share an expensive lab on one xdist worker (``--dist loadgroup``,
    set in pyproject.toml): the frozen demo lab and its sweep (``frozen_sweep``, seconds of CPU
    each time a worker builds it), and each module's own lab (a module-scoped fixture), which
    a worker starts again for every module whose tests it is given.  The largest groups are
    handed out first; tests that share nothing are spread one by one."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if "frozen_sweep" in info.names_closure:
            group = "frozen-demo"
        elif any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs
                 if d.argname in info.names_closure):
            group = item.nodeid.split("::", 1)[0]
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def private_runtime_dir():
    """Keep lab state files away from any lab the developer is running."""
    old = os.environ.get("XDG_RUNTIME_DIR")
    path = tempfile.mkdtemp(prefix="fleet-test-run-")
    os.environ["XDG_RUNTIME_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = old
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def cli_helper_stopped():
    """The helper that forks ``fleet-console`` commands (tests/cli_fork.py) ends with the run."""
    yield
    from tests import cli_fork

    cli_fork.stop()


@pytest.fixture(scope="session")
def demo_lab(private_runtime_dir):
    """The demo site's lab, fast (time_scale 0.02), on ephemeral ports; stopped at the end."""
    from console.lab.lab import Lab

    with Lab(sites.load("demo"), ephemeral=True, time_scale=0.02) as lab:
        yield lab


@pytest.fixture(scope="module")
def site_lab(request, private_runtime_dir):
    """A fast lab (time_scale 0.02, ephemeral ports) of the test module's own site: its
    ``SITE``, YAML text.  For tests that change what the machines run; stopped after the module."""
    from console.lab.lab import Lab
    from inventory.loader import load_site_text

    site = load_site_text(request.module.SITE, f"{request.module.__name__}.SITE")
    with Lab(site, ephemeral=True, time_scale=0.02) as lab:
        yield lab


@pytest.fixture
def site_ctx(site_lab):
    """``site_lab``'s effective site and secrets."""
    from console.secrets import Secrets

    return site_lab.effective_site(), Secrets(lab=site_lab.secrets)


@pytest.fixture
def machine_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop for in-process lab machines, run in a background thread; stopped after."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="lab-machines", daemon=True)
    thread.start()
    yield loop

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def need(tool: str) -> str:
    """Path of a third-party tool, or skip the test saying which package brings it."""
    path = shutil.which(tool)
    if path is None:
        pkg = {"ipmitool": "ipmitool", "ipmi-power": "freeipmi-tools", "snmpwalk": "snmp",
               "snmpbulkwalk": "snmp", "snmpget": "snmp", "curl": "curl"}.get(tool, tool)
        pytest.skip(f"{tool} not installed (Debian package {pkg})")
    return path


@pytest.fixture(scope="session", autouse=True)
def private_state_dir():
    """Keep the activity journal (XDG_STATE_HOME) and operator locks away from the real ones."""
    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "FLEET_CONSOLE_LOCKS")}
    path = tempfile.mkdtemp(prefix="fleet-test-state-")
    os.environ["XDG_STATE_HOME"] = os.path.join(path, "state")
    os.environ["FLEET_CONSOLE_LOCKS"] = os.path.join(path, "locks")
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TLS certificate cache for the whole run: generated once, reused by every Redfish lab."""
    return tmp_path_factory.mktemp("lab-tls")


@pytest.fixture
async def redfish_lab(cert_dir: Path):
    """An in-process Redfish lab that is always stopped, whatever the test did."""
    from console.lab.redfish_bmc import RedfishLab

    lab = RedfishLab(cert_dir=str(cert_dir))
    yield lab
    await lab.stop()


@pytest.fixture
def cli_in_process(monkeypatch, capsys):
    """``run(*args, env=None)``: `fleet-console ARGS` in this process, as (exit status, stdout,
    stderr).  For what a child process would show no differently (arguments and input refused
    before anything runs) without the second or so a Python child takes to start.  ``env``, a
    whole environment like a child's, is in force for the call; the SIGTERM handler and the
    logging that ``main`` sets up are put back after it.  A warning raised during the call is
    printed on its stderr under a fresh interpreter's filters, as a child's would be (one
    raised while importing was raised in this process long before, and is not)."""
    import logging
    import signal
    import sys
    import warnings

    from console.cli.main import CHATTY_LOGGERS, main

    def show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        chatty = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
        term = signal.getsignal(signal.SIGTERM)
        capsys.readouterr()
        with monkeypatch.context() as m, warnings.catch_warnings():
            warnings.resetwarnings()  # a fresh interpreter's filters, shown on stderr
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
            warnings.showwarning = show_on_stderr
            if env is not None:
                for key in set(os.environ) - set(env):
                    m.delenv(key)
                for key, value in env.items():
                    m.setenv(key, value)
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                signal.signal(signal.SIGTERM, term)
                for handler in root.handlers:
                    if handler not in handlers:
                        handler.close()
                root.handlers[:] = handlers
                root.setLevel(level)
                for name, was in chatty.items():
                    logging.getLogger(name).setLevel(was)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _timeout_of(request) -> float:
    """The test's pytest-timeout limit in seconds (its mark, else the ini's; 0: none)."""
    marker = request.node.get_closest_marker("timeout")
    return float(marker.args[0]) if marker and marker.args else float(request.config.getini("timeout") or 0)


@pytest.fixture(autouse=True)
def tasks_shown_before_the_timeout(request):
    """Print every asyncio task's stack shortly before pytest-timeout stops a hung test: its
    own dump shows the threads, where a hung coroutine is only an event loop waiting."""
    import gc
    import sys

    limit = _timeout_of(request)
    if limit <= 15:
        yield
        return

    def dump() -> None:
        loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
        for loop in loops:
            for _ in range(3):  # the set of tasks can change while it is read
                try:
                    tasks = list(asyncio.all_tasks(loop))
                    break
                except RuntimeError:
                    continue
            else:
                continue
            sys.stderr.write(f"\n--- {len(tasks)} asyncio tasks of {loop!r} ---\n")
            for task in tasks:
                task.print_stack(limit=30, file=sys.stderr)

    timer = threading.Timer(limit - 10, dump)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


@pytest.fixture(autouse=True)
def stuck_test_ends_the_process(request):
    """A test that outlives its pytest-timeout limit by ``STUCK_AFTER_TIMEOUT`` (the limit's
    exception never reached it, or its teardown hung after it) ends this process, stacks
    printed: the run goes on without it.  Between tests the run's own deadline is in force."""
    limit = _timeout_of(request)
    left = _run_deadline - time.monotonic()
    if limit > 0 and _run_deadline:
        _watchdog(max(1.0, min(limit + STUCK_AFTER_TIMEOUT, left)))
    yield
    if limit > 0 and _run_deadline:
        _watchdog(max(1.0, _run_deadline - time.monotonic()))
