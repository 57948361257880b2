"""Fixes to pyghmi 1.6.19, applied once by :func:`install`, without editing pyghmi.

Only :mod:`console.drivers.ipmi` uses this module.  Each fix checks the private names it
relies on first and leaves pyghmi untouched (logging a warning) if they changed; the
driver then still works, only slower and with its asyncio-side timeout alone.

1. **Slow reply pickup.**  pyghmi's I/O thread only wakes waiters registered *before*
   a reply arrives; a reply that is already queued for the session when the caller
   starts waiting is noticed at the retransmit timer (0.5-1 s).  The replacement
   ``_io_wait`` returns at once when the session already has a reply queued, and never
   sleeps longer than :data:`IO_WAIT_CAP` (the remaining race between that check and
   registering the waiter).  This removes the retransmit-timer tail of concurrent
   calls (``bench/ipmi_poll.py``; its numbers are in ``bench/README.md``).
2. **Deadlines and junk.**  The same ``_io_wait`` raises :class:`DeadlineExceeded` in
   a worker thread whose call is past its deadline, so a silent BMC frees its thread
   after ``timeout`` instead of pyghmi's own ~30 s of retries; the abandoned session is
   then made to forget its pending request and dropped.  A malformed packet no longer
   raises ``struct.error`` in whichever thread happens to process it (pyghmi processes
   every session's packets in any waiting thread, so one lying BMC broke calls to
   others); it is dropped and remembered on its session, and a call that then runs out
   of time reports :class:`~console.errors.ProtocolError` instead of a timeout.
3. **A lock-order deadlock.**  ``Session.send_payload`` holds ``KEEPALIVE_SESSIONS`` while
   ``_xmit_packet`` takes ``WAITING_SESSIONS``; ``awaitresponse`` and ``wait_for_rsp``
   hold ``WAITING_SESSIONS`` while a retransmit (``_timedout`` -> ``send_payload``) takes
   ``KEEPALIVE_SESSIONS``.  Two threads retransmitting and sending at once hang forever,
   every pool thread stuck.  Both names are bound to
   the same reentrant lock, so there is no order left to invert.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyghmi.ipmi.private import session as pyghmi_session

__all__ = ["IO_WAIT_CAP", "MALFORMED", "DeadlineExceeded", "abandon", "deadline", "half_open_sessions",
           "install", "malformed_note"]

log = logging.getLogger(__name__)

#: Longest a pyghmi wait may sleep before looking for a reply again (seconds).
IO_WAIT_CAP = 0.005


class DeadlineExceeded(BaseException):
    """The worker's deadline passed inside pyghmi's wait loop.

    A BaseException because pyghmi's ``Session.pause`` swallows ``Exception``.
    """


_worker = threading.local()  # .deadline: time.monotonic() by which this thread's call must end
MALFORMED = (IndexError, KeyError, ValueError, TypeError, AssertionError, struct.error)
_fixes_installed: bool | None = None
_fixes_lock = threading.Lock()
_original_io_wait: Callable[..., Any] | None = None
_original_handle_packet: Callable[..., Any] | None = None


def _reply_queued(sockaddr: Any) -> bool:
    """Whether the I/O thread already queued a packet for a session talking to ``sockaddr``."""
    try:
        handlers = pyghmi_session.Session.bmc_handlers.get(sockaddr)
        return bool(handlers) and any(s.pktqueue for s in list(handlers.values()))
    except (RuntimeError, AttributeError):  # the dict changed under us: just wait
        return False


def _io_wait(timeout, myaddr=None, evq=None):  # same signature as pyghmi's private _io_wait
    deadline = getattr(_worker, "deadline", None)
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded()
        timeout = min(timeout, left)
    if evq is None and myaddr is not None and _reply_queued(myaddr):
        return None  # the reply is already here: do not wait for the retransmit timer
    return _original_io_wait(min(timeout, IO_WAIT_CAP), myaddr, evq)


def _handle_ipmi_packet(self, data, sockaddr=None, qent=None):
    try:
        return _original_handle_packet(self, data, sockaddr=sockaddr, qent=qent)
    except MALFORMED as exc:
        if getattr(self, "servermode", False):
            raise  # a pyghmi *server* session (the lab's BMCs): its caller handles it
        # Remembered on the session it was for; the caller waiting on it reports it.
        self.fleet_malformed = f"{type(exc).__name__}: {exc}"
        log.debug("dropped a malformed IPMI packet from %s: %s", sockaddr, self.fleet_malformed)
        return -9


def install() -> bool:
    """Install the two fixes described in the module docstring, once.  False if not possible."""
    global _fixes_installed, _original_io_wait, _original_handle_packet
    with _fixes_lock:
        if _fixes_installed is not None:
            return _fixes_installed
        try:
            session_cls = pyghmi_session.Session
            io_wait = pyghmi_session._io_wait
            params = list(inspect.signature(io_wait).parameters)
            handle = session_cls._handle_ipmi_packet
            if (params != ["timeout", "myaddr", "evq"]
                    or list(inspect.signature(handle).parameters) != ["self", "data", "sockaddr", "qent"]
                    or not isinstance(session_cls.bmc_handlers, dict)
                    or not hasattr(session_cls, "_mark_broken")):
                raise RuntimeError("pyghmi's private session API changed")
            rlock = type(threading.RLock())
            if not (isinstance(pyghmi_session.KEEPALIVE_SESSIONS, rlock)
                    and isinstance(pyghmi_session.WAITING_SESSIONS, rlock)):
                raise RuntimeError("pyghmi's session table locks changed")
            _original_io_wait, _original_handle_packet = io_wait, handle
            pyghmi_session._io_wait = _io_wait
            session_cls._handle_ipmi_packet = _handle_ipmi_packet
            # Fix 3: one lock for both session tables (see the module docstring).
            pyghmi_session.WAITING_SESSIONS = pyghmi_session.KEEPALIVE_SESSIONS
            _fixes_installed = True
        except Exception as exc:  # fail soft: pyghmi stays as it is
            log.warning("pyghmi fixes not installed (%s); IPMI replies will be slower", exc)
            _fixes_installed = False
        return _fixes_installed


def abandon(sess: Any) -> None:
    """Make pyghmi forget a session whose caller gave up mid-request, without waiting."""
    if sess is None:
        return
    try:
        sess.incommand = False
        sess.lastpayload = None
        sess.onlogpayload = None
        while sess.evq:
            sess.evq.popleft().set()
        sess._mark_broken("abandoned after its deadline")  # sends Close Session, no wait
    except Exception:
        log.debug("abandoning an IPMI session failed", exc_info=True)


def half_open_sessions(address: str, port: int, userid: bytes) -> list[Any]:
    """pyghmi's client sessions to one BMC (for a login that raised before returning one)."""
    found: list[Any] = []
    try:
        candidates = [s for h in list(pyghmi_session.Session.bmc_handlers.values()) for s in list(h.values())]
        candidates += list(pyghmi_session.Session.initting_sessions.values())
    except (RuntimeError, AttributeError):
        return found
    for s in candidates:
        if (getattr(s, "bmc", None) == address and getattr(s, "port", None) == port
                and getattr(s, "userid", None) == userid and not getattr(s, "servermode", False)
                and not getattr(s, "logged", 0)  # never an established one another driver uses
                and s not in found):
            found.append(s)
    return found


@contextlib.contextmanager
def deadline(when: float) -> Iterator[None]:
    """Within the block, pyghmi waits in this thread raise DeadlineExceeded after ``when``
    (a ``time.monotonic()`` value)."""
    previous = getattr(_worker, "deadline", None)
    _worker.deadline = when
    try:
        yield
    finally:
        _worker.deadline = previous


def malformed_note(sess: Any) -> str:
    """What malformed packet was dropped for ``sess`` ('' if none)."""
    return getattr(sess, "fleet_malformed", "")
