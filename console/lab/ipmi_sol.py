"""The lab BMC's Serial-over-LAN payload: a small non-blocking state machine.

Part of :mod:`console.lab.ipmi_bmc`.  The stock pyghmi ``ServerConsole`` waits for
acknowledgements inside the I/O loop and crashes when the client leaves mid-send; this
one is driven by the lab's loop (:meth:`SolChannel.pump`), replays recent output to a
console on activation, and gives up on a console that stops acknowledging after
``sol_max_tries`` retransmissions.  A BREAK from the console (operation byte bit 4)
reaches the machine.  With ``drop`` set (the lab's ``sol_faults: {NODE: drop}``) the
BMC deactivates the payload on its own after that many seconds or bytes of output, as
a flaky BMC does mid-stream, telling the console so.
"""

from __future__ import annotations

import threading
import time

from console.lab.ipmi_session import PAYLOAD_SOL, BmcHost, LabSession

__all__ = ["SOL_MAX_PAYLOAD", "SolChannel"]

#: Largest SOL payload we accept or send, including the 4-byte SOL header.
SOL_MAX_PAYLOAD = 252
SOL_CHUNK = SOL_MAX_PAYLOAD - 4
SOL_HISTORY_BYTES = 2048  # replayed to a console on activation
SOL_BUFFER_LIMIT = 64 * 1024  # unsent output beyond this is dropped, oldest first (a UART overrun)


class SolChannel:
    """The SOL payload of one BMC, active on one session (IPMI 2.0 section 15).

    Serial output is buffered and sent one packet at a time; each waits for the console's
    acknowledgement, is retransmitted every ``sol_retry_interval`` seconds, and after
    ``sol_max_tries`` sends the console is taken to be gone and the payload is deactivated.
    Keys typed on the console are acknowledged at once and passed to the machine.
    """

    def __init__(self, bmc: BmcHost, session: LabSession, *, drop: tuple[float, int] | None = None) -> None:
        self.bmc = bmc
        self.session = session
        self.machine = bmc.machine
        self._lock = threading.Lock()  # guards _pending, _early, _priming (machine thread vs lab thread)
        self._pending = bytearray()
        self._early: list[bytes] = []
        self._priming = True
        self._seq = 0
        self._inflight: bytes | None = None  # the unacknowledged packet
        self._sent_at = 0.0
        self._tries = 0
        self._last_in: tuple[int, int] | None = None  # (sequence, length) of the last console packet
        self.closed = False
        #: (seconds, bytes of output) after which the BMC drops the payload itself, or None
        self._drop = drop
        self._started = time.monotonic()
        self._sent = 0
        # Subscribe before reading the history so nothing is lost in between.  Output that
        # arrives meanwhile is parked in _early; if the history already ends with it, it is
        # dropped, so each byte is replayed once.
        self._unsubscribe = self.machine.serial.subscribe(self._on_output)
        history = self.machine.serial.history()
        with self._lock:
            early = b"".join(self._early)
            if early and history.endswith(early):
                early = b""
            replay = history[-SOL_HISTORY_BYTES:]
            if len(history) > SOL_HISTORY_BYTES and b"\n" in replay[:256]:
                replay = replay[replay.index(b"\n") + 1:]  # start at a line, not mid-way
            self._pending += replay + early
            self._early.clear()
            self._priming = False
        session.sol_handler = self._on_packet

    # -- machine side (any thread) --------------------------------------------------------
    def _on_output(self, data: bytes) -> None:
        with self._lock:
            if self._priming:
                self._early.append(bytes(data))
                return
            self._pending += data
            if len(self._pending) > SOL_BUFFER_LIMIT:
                del self._pending[: len(self._pending) - SOL_BUFFER_LIMIT]
        self.bmc.lab.wake()

    # -- console side (lab thread) ---------------------------------------------------------
    def _on_packet(self, payload) -> None:
        if isinstance(payload, dict) or len(payload) < 4 or self.closed:
            return
        self.session.last_seen = time.monotonic()
        # Byte 4: only "generate BREAK" (bit 4) means something to the lab UART; flow control
        # and flush requests do not.
        seq, acked, accepted = payload[0] & 0x0F, payload[1] & 0x0F, payload[2]
        data = bytes(payload[4:])
        if acked and self._inflight is not None and acked == self._inflight[0] & 0x0F:
            sent = self._inflight[4:]
            rest = sent[min(accepted, len(sent)):]  # partial ACK or NACK: resend the rest later
            if rest:
                with self._lock:
                    self._pending[:0] = rest
            self._inflight = None
        if seq:
            new = data
            repeated = bool(self._last_in and self._last_in[0] == seq)
            if self._last_in and repeated:
                new = data[self._last_in[1]:]  # a retransmission: only bytes not seen before
            self._last_in = (seq, len(data))
            if payload[3] & 0x10 and not repeated:
                self._break()
            self.session.send_payload(bytes([0, seq, len(data), 0]), payload_type=PAYLOAD_SOL, retry=False)
            if new:
                self._type(new)
        self.pump(time.monotonic())

    def _type(self, keys: bytes) -> None:
        try:
            self.machine.loop.call_soon_threadsafe(self.machine.serial.send_input, keys)
        except RuntimeError:  # the machine's loop is closed: the keys go nowhere, as on a dead host
            pass

    def _break(self) -> None:
        try:
            self.machine.loop.call_soon_threadsafe(self.machine.serial.send_break)
        except RuntimeError:
            pass

    def _drop_due(self, now: float) -> bool:
        return self._drop is not None and (now - self._started >= self._drop[0] or self._sent >= self._drop[1])

    def pump(self, now: float) -> None:
        """Send the next packet, or retransmit the unacknowledged one when it is due."""
        if self.closed:
            return
        if self._drop_due(now):
            self.bmc.end_sol("fault: the BMC dropped the SOL payload", notify=True)
            return
        if self._inflight is not None:
            if now - self._sent_at < self.bmc.lab.sol_retry_interval:
                return
            if self._tries >= self.bmc.lab.sol_max_tries:
                self.bmc.end_sol("console stopped acknowledging")
                return
            self._tries += 1
            self._sent_at = now
            self.session.send_payload(self._inflight, payload_type=PAYLOAD_SOL, retry=False)
            return
        with self._lock:
            chunk = bytes(self._pending[:SOL_CHUNK])
            del self._pending[: len(chunk)]
        if not chunk:
            return
        self._seq = self._seq % 15 + 1  # 1..15; 0 means "no data, ACK only"
        self._inflight = bytes([self._seq, 0, 0, 0]) + chunk
        self._sent += len(chunk)
        self._sent_at, self._tries = now, 1
        self.session.send_payload(self._inflight, payload_type=PAYLOAD_SOL, retry=False)

    def deadline(self) -> float | None:
        """When ``pump`` next has something to do (monotonic seconds), or None."""
        if self.closed:
            return None
        drop = self._started + self._drop[0] if self._drop is not None else None
        if self._inflight is not None:
            due = self._sent_at + self.bmc.lab.sol_retry_interval
            return due if drop is None else min(due, drop)
        with self._lock:
            return 0.0 if self._pending else drop

    def close(self, notify: bool) -> None:
        """Stop bridging; with ``notify`` tell the console the payload was deactivated."""
        if self.closed:
            return
        self.closed = True
        self._unsubscribe()
        if self.session.sol_handler == self._on_packet:
            self.session.sol_handler = None
        if notify and self.session.established:
            self._seq = self._seq % 15 + 1
            # Operation/status bit 4: "SOL is deactivated" (IPMI 2.0 table 15-2).  It also
            # NACKs the console's last packet: pyghmi's console looks for the bit only there.
            last = self._last_in[0] if self._last_in else 0
            status = 0x10 | (0x40 if last else 0)
            self.session.send_payload(bytes([self._seq, last, 0, status]), payload_type=PAYLOAD_SOL, retry=False)
