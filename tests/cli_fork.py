"""``fleet-console`` commands in processes of their own that start from a prepared interpreter.

A command run as ``python -m console.cli.main`` spends about 0.4 s of CPU starting Python and
importing the project before it does anything, and the suite runs some 170 of them.  Here a
helper process (one per test process, started on first use, stopped at the end of the run)
imports the command line once and forks a child for each command.  The child is a process of
its own, as an operator's shell would start it: its own pid, environment, working directory,
standard streams, signal dispositions and exit status; it runs the module as ``python -m``
does (``runpy``, as ``__main__``) and ends through the interpreter's normal exit (atexit
handlers, flushes, waiting for its threads).

:func:`run` has ``subprocess.run``'s shape for the cases the tests use (``args`` after
``python -m console.cli.main``, ``env``, ``cwd``, ``input``, ``stdin=DEVNULL``, ``timeout``,
``text``, captured output).  What a prepared interpreter cannot give is a real subprocess
instead: a ``PYTHON*`` variable that differs from the helper's (it acts at start-up), or a
helper that is gone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from typing import Any

__all__ = ["run", "stop"]

MODULE = "console.cli.main"
#: what the helper imports before it forks (what commands import lazily included: that is
#: the start-up a child skips)
PRELOAD = ("console.cli.main", "console.cli.commands", "console.cli.act_commands", "console.cli.console_cmd",
           "console.cli.audit_cmd", "console.cli.serve_cmd", "console.cli.timeline_cmd", "console.live.poller",
           "console.ops.runner", "console.ops.reimage", "console.drivers.ipmi", "console.drivers.redfish",
           "console.drivers.snmp", "console.serial.broker")

_lock = threading.Lock()
_helper: tuple[subprocess.Popen[bytes], socket.socket] | None = None
_broken = False


def run(args: list[str] | tuple[str, ...], *, env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None, input: str | bytes | None = None, stdin: int | None = None,
        timeout: float | None = None, text: bool = False,
        capture_output: bool = True) -> subprocess.CompletedProcess[Any]:
    """``python -m console.cli.main ARGS``, as ``subprocess.run(..., capture_output=True)``."""
    assert capture_output, "output is always captured"
    argv = [sys.executable, "-m", MODULE, *map(str, args)]
    environ = dict(os.environ if env is None else env)
    if stdin not in (None, subprocess.DEVNULL):
        raise ValueError("stdin: DEVNULL, or None with input")
    started = _start_helper(environ)
    if started is None:
        return subprocess.run(argv, env=environ, cwd=cwd, input=input, stdin=stdin if input is None else None,
                              timeout=timeout, text=text, capture_output=True)
    with _lock:
        return _run(started, argv, environ, cwd, input, timeout, text)


def _run(helper: socket.socket, argv: list[str], environ: dict[str, str], cwd: Any, input: str | bytes | None,
         timeout: float | None, text: bool) -> subprocess.CompletedProcess[Any]:
    data = input.encode() if isinstance(input, str) else input
    in_r, in_w = os.pipe() if data is not None else (os.open(os.devnull, os.O_RDONLY), -1)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    request = {"argv": argv, "env": environ, "cwd": os.fspath(cwd) if cwd is not None else os.getcwd()}
    try:
        socket.send_fds(helper, [json.dumps(request).encode()], [in_r, out_w, err_w])
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}

    def drain(fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            while piece := f.read1(65536):
                chunks[fd].append(piece)

    def feed() -> None:
        with os.fdopen(in_w, "wb") as f:
            try:
                f.write(data or b"")
            except BrokenPipeError:
                pass

    threads = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (out_r, err_r)]
    if data is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for t in threads:
        t.start()
    helper.settimeout(None)
    pid = json.loads(helper.recv(4096))["pid"]
    helper.settimeout(timeout)
    try:
        status = json.loads(helper.recv(4096))["status"]
    except TimeoutError:
        os.kill(pid, 9)
        helper.settimeout(None)
        helper.recv(4096)  # its status, now that it is killed
        for t in threads:
            t.join(5)
        raise subprocess.TimeoutExpired(argv, timeout or 0, b"".join(chunks[out_r]), b"".join(chunks[err_r])) from None
    finally:
        helper.settimeout(None)
    for t in threads:
        t.join()
    out, err = b"".join(chunks[out_r]), b"".join(chunks[err_r])
    if text:  # as subprocess decodes: the locale's encoding, universal newlines
        return subprocess.CompletedProcess(argv, status, _text(out), _text(err))
    return subprocess.CompletedProcess(argv, status, out, err)


def _text(data: bytes) -> str:
    import locale

    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def _start_helper(environ: dict[str, str]) -> socket.socket | None:
    """The helper's socket, started on first use; None when a real subprocess must be used."""
    global _helper, _broken
    if any(k.startswith("PYTHON") and environ.get(k) != os.environ.get(k)
           for k in set(environ) | set(os.environ)):
        return None
    with _lock:
        if _broken:
            return None
        if _helper is not None and _helper[0].poll() is None:
            return _helper[1]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen([sys.executable, "-c", "from tests.cli_fork import _serve; _serve()"],
                                pass_fds=(theirs.fileno(),),
                                env={**os.environ, "FLEET_CLI_FORK_FD": str(theirs.fileno())},
                                # never the run's own output: a helper that outlived its worker
                                # would hold it open
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        theirs.close()
        ready = ours.recv(4096)
        if ready != b"ready":
            _broken = True
            ours.close()
            proc.wait()
            return None
        _helper = (proc, ours)
        return ours


def stop() -> None:
    """End the helper (its children have all been waited for)."""
    global _helper
    with _lock:
        if _helper is None:
            return
        proc, sock = _helper
        _helper = None
        sock.close()  # the helper reads end-of-file and exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the helper process
def _serve() -> None:
    import importlib

    sock = socket.socket(fileno=int(os.environ.pop("FLEET_CLI_FORK_FD")))
    for name in PRELOAD:
        importlib.import_module(name)
    import gc

    gc.freeze()  # the children's collections leave the helper's objects, and their pages, alone
    if threading.active_count() != 1:  # a fork would copy a thread's half-done work: refuse
        sock.send(f"threads: {[t.name for t in threading.enumerate()]}".encode())
        return
    sock.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())


def _child(request: dict[str, Any], fds: list[int]) -> None:
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [request["argv"][0], *request["argv"][3:]]
    # as in a fresh interpreter, the module runs as __main__ only (what imports it by name
    # later gets a module of its own)
    sys.modules.pop(MODULE, None)
    code = 0
    try:
        runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except KeyboardInterrupt:
        code = -1  # below: ended by SIGINT, as the interpreter does
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
    _exit(code)


def _exit_status(code: object) -> int:
    """The interpreter's exit status for ``SystemExit(code)`` (a text is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """End as the interpreter's own exit does where a command can tell (its threads waited for,
    atexit handlers run, the standard streams flushed), without tearing down the modules the
    helper loaded: that would touch, and so copy, every page of memory the fork shares."""
    import atexit
    import signal

    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter does first at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code == -1:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)
