"""Simulated IPMI 2.0 BMCs (RMCP+, ``lanplus``) in front of lab :class:`Machine` objects.

Every lab machine gets a BMC bound to its own loopback address (``127.x.y.z``) that
``ipmitool -I lanplus -C 3``, freeipmi and pyghmi's client can drive: chassis power and
status, boot device override (once or persistent), device ID and GUID, FRU inventory,
the SDR repository with sensor readings and thresholds, the SEL, and Serial-over-LAN
bridged to the machine's serial port.

Layout::

    IpmiLab ── one thread, one selector ─┬─ _LabBmc ── UDP socket 127.x.y.z:port ── Machine
                                         │    ├─ _LabSession × n  (RMCP+ sessions)
                                         │    ├─ _SolChannel      (the one SOL payload instance)
                                         │    └─ _SensorTable     (SDR records, readings)
                                         └─ wake-up socket pair   (serial output, add(), stop())

What comes from pyghmi: :class:`_LabBmc` is a :class:`pyghmi.ipmi.bmc.Bmc` (chassis control
goes through its ``control_chassis``), and :class:`_LabSession` is a pyghmi ``ServerSession``,
so in-session packets (IPMI 2.0 table 13-8 framing, AES-CBC-128 confidentiality, HMAC-SHA1-96
integrity, IPMI message encoding) are handled by pyghmi's ``Session`` code.

What is replaced, and why (each was seen to fail or is documented in
``shared/PROTOCOL-NOTES.md``):

* **The I/O loop.**  pyghmi's server side runs on its process-global I/O thread.  That
  thread can never be stopped, keeps every socket in a module-level list (closing one
  under it breaks its ``select``), uses ``select.select`` (about 1,000 descriptors at most),
  and wakes itself by sending to ``127.0.0.1``/``::1`` from its first socket, which for a
  socket bound to ``127.77.0.1`` reaches nobody.  It also routes packets by client address
  and BMC port, so two BMCs sharing a port, talked to by one client socket (pyghmi's
  client shares one socket among 64 BMCs), collide.  :class:`IpmiLab` runs its own
  ``selectors`` loop in one thread and routes by RMCP+ *session ID*, as a real BMC does.
  Nothing here touches pyghmi's global tables, so a pyghmi client in the same process is
  unaffected.
* **Binding.**  The stock server binds every address; here only the given loopback
  address is bound, port 0 gives an ephemeral port, and the real port is what the BMC
  reports (for SOL, the port must match the session's).
* **Cipher suites.**  Only cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) is
  offered; other proposals get the RMCP+ status codes of IPMI 2.0 table 13-15 (the stock
  server accepted a SHA-256 proposal and then answered with SHA-1).
* **The RAKP handshake** is written here: the stock one drops failures silently (clients
  wait for their timeout) and resets the session if a RAKP 3 is retransmitted.  Failures
  are answered (unknown user: RAKP 2 "unauthorized name"; bad RAKP 3 check value: RAKP 4
  "invalid integrity check value"), so clients fail at once.
* **SOL** is a small non-blocking state machine driven by the loop; the stock
  ``ServerConsole`` waits for acknowledgements inside the I/O loop and crashes when the
  client leaves mid-send.  A console that stops acknowledging loses the payload after
  ``sol_max_tries`` retransmissions.
* **In-session crypto.**  pyghmi's framing builds an AES ``Cipher`` and a Python ``hmac``
  object per packet; polled 1,000 times a second that was most of the lab's CPU, so
  established sessions frame IPMI and SOL payloads with :class:`_SessionCrypto` (same
  wire format; everything else still goes through pyghmi's ``Session``).  Measured with
  ``bench/poll_sweep.py`` at N=1000: lab CPU per Get Chassis Status 0.16 -> 0.10 ms.
* **SDR, SEL, FRU and sensors** do not exist in pyghmi's server; they are written from
  the IPMI 2.0 specification (section references in the code): the records in
  :mod:`console.lab.ipmi_records`, the commands serving them here.

Threading: everything protocol-side runs on the lab thread.  Machine methods are called
from that thread (the machine allows this; see its module docstring), except typed SOL
keys, which are handed to the machine's own loop with ``call_soon_threadsafe``.  Serial
output arrives on the machine's loop thread; it is appended to a locked buffer and the lab
thread is woken to send it.

Limits: IPMI 1.5 sessions are not offered (Get Channel Authentication Capabilities says so),
so freeipmi tools need ``-D LAN_2_0`` (their default driver is IPMI 1.5) and ``ipmitool -I
lan`` fails.  Cipher suites other than 3, Kg (BMC key), user management, LAN configuration
and sensor-threshold setting are not implemented; unknown commands answer "invalid
command" (C1h).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import selectors
import socket
import struct
import threading
import time
import zlib
from collections import deque
from typing import Callable

import pyghmi.ipmi.bmc as pyghmi_bmc
import pyghmi.ipmi.private.serversession as pyghmi_serversession

from console.lab.ipmi_records import (BMC_SLAVE_ADDRESS, _checksum, _fru_image, _le16, _le32, _sel_record,
                                     _sel_record_id, _SensorTable)
from console.lab.machine import BootDevice, Machine

__all__ = ["IpmiLab"]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ constants
NETFN_CHASSIS = 0x00
NETFN_SENSOR = 0x04
NETFN_APP = 0x06
NETFN_STORAGE = 0x0A
NETFN_TRANSPORT = 0x0C

# Completion codes, IPMI 2.0 table 5-2.
CC_OK = 0x00
CC_INVALID_COMMAND = 0xC1
CC_RESERVATION_INVALID = 0xC5
CC_REQUEST_LENGTH_INVALID = 0xC7
CC_PARAMETER_OUT_OF_RANGE = 0xC9
CC_NOT_PRESENT = 0xCB
CC_INVALID_DATA = 0xCC
CC_INSUFFICIENT_PRIVILEGE = 0xD4
# Command-specific codes (Activate/Deactivate Payload, Get/Set boot options, SOL config).
CC_PAYLOAD_ALREADY_ACTIVE = 0x80  # also "payload already deactivated", "parameter not supported"
CC_PARAMETER_NOT_SUPPORTED = 0x80
CC_PRIVILEGE_NOT_AVAILABLE = 0x81

# RMCP+ / RAKP status codes, IPMI 2.0 table 13-15.
RMCP_NO_RESOURCES = 0x01
RMCP_INVALID_AUTH_ALGORITHM = 0x04
RMCP_INVALID_INTEGRITY_ALGORITHM = 0x05
RMCP_INVALID_ROLE = 0x09
RMCP_UNAUTHORIZED_ROLE = 0x0A
RMCP_INVALID_NAME_LENGTH = 0x0C
RMCP_UNAUTHORIZED_NAME = 0x0D
RMCP_INVALID_INTEGRITY_CHECK = 0x0F
RMCP_INVALID_CONFIDENTIALITY_ALGORITHM = 0x10
RMCP_ILLEGAL_PARAMETER = 0x12

# RMCP+ payload types, IPMI 2.0 table 13-16.
PAYLOAD_IPMI = 0x00
PAYLOAD_SOL = 0x01
PAYLOAD_OPEN_SESSION_REQUEST = 0x10
PAYLOAD_OPEN_SESSION_RESPONSE = 0x11
PAYLOAD_RAKP1 = 0x12
PAYLOAD_RAKP2 = 0x13
PAYLOAD_RAKP3 = 0x14
PAYLOAD_RAKP4 = 0x15

# Privilege levels, IPMI 2.0 table 6-1 (and the minimum each command needs, appendix G).
PRIV_CALLBACK = 1
PRIV_USER = 2
PRIV_OPERATOR = 3
PRIV_ADMIN = 4

RMCP_HEADER = b"\x06\x00\xff\x07"  # RMCP v1.0, no ACK, class IPMI
LAN_CHANNEL = 1

#: Cipher suite 3: RAKP-HMAC-SHA1 (1), HMAC-SHA1-96 (1), AES-CBC-128 (1) (IPMI 2.0 table 22-20).
CIPHER_SUITE_3 = (1, 1, 1)
#: Get Channel Cipher Suites record data: one standard record, ID 3, with its three algorithms.
CIPHER_SUITE_RECORDS = bytes([0xC0, 0x03, 0x01, 0x41, 0x81])

#: Manufacturer ID reported in Get Device ID: IANA 32473, reserved for documentation (RFC 5612).
#: A real vendor's number would make clients load that vendor's OEM extensions.
MANUFACTURER_ID = 32473

#: Largest SOL payload we accept or send, including the 4-byte SOL header.
SOL_MAX_PAYLOAD = 252
SOL_CHUNK = SOL_MAX_PAYLOAD - 4
SOL_HISTORY_BYTES = 2048  # replayed to a console on activation
SOL_BUFFER_LIMIT = 64 * 1024  # unsent output beyond this is dropped, oldest first (a UART overrun)

#: Boot device selector (Get/Set System Boot Options, parameter 5, data 2 bits 5:2), table 28-14.
_SELECTOR_TO_DEVICE = {
    0x0: BootDevice.NONE,
    0x1: BootDevice.PXE,
    0x2: BootDevice.DISK,
    0x3: BootDevice.DISK,  # "force boot from default hard drive, request safe mode"
    0x5: BootDevice.CD,
    0x6: BootDevice.BIOS,
    0x8: BootDevice.CD,  # "force boot from remotely connected CD/DVD"
}
_DEVICE_TO_SELECTOR = {
    BootDevice.NONE: 0x0,
    BootDevice.PXE: 0x1,
    BootDevice.DISK: 0x2,
    BootDevice.CD: 0x5,
    BootDevice.BIOS: 0x6,
}


# =================================================================== sessions
class _SessionCrypto:
    """AES-CBC-128 and HMAC-SHA1-96 for one established session's IPMI and SOL packets.

    pyghmi's framing builds a CBC ``Cipher`` per packet (in and out) and a Python ``hmac``
    object per check; at 1,000 BMCs polled per second that was most of the lab's CPU.
    Here one ECB context per direction is kept and CBC chained by hand.  The wire format is
    pyghmi's (IPMI 2.0 table 13-8); ipmitool and freeipmi are cross-checked in the tests.
    """

    def __init__(self, k1: bytes, aeskey: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self.k1 = k1
        self.aeskey = aeskey
        self._enc = Cipher(algorithms.AES(aeskey), modes.ECB()).encryptor()
        self._dec = Cipher(algorithms.AES(aeskey), modes.ECB()).decryptor()

    def sign(self, data: bytes) -> bytes:
        return hmac.digest(self.k1, data, "sha1")[:12]

    def encrypt(self, clear: bytes) -> bytes:
        """IV + ciphertext of ``clear`` padded as table 13-20 asks (1, 2, 3 ... then the count)."""
        pad = (-(len(clear) + 1)) % 16
        clear = clear + bytes(range(1, pad + 1)) + bytes([pad])
        iv = os.urandom(16)
        out, prev = [iv], int.from_bytes(iv, "big")
        for i in range(0, len(clear), 16):
            block = self._enc.update((int.from_bytes(clear[i:i + 16], "big") ^ prev).to_bytes(16, "big"))
            out.append(block)
            prev = int.from_bytes(block, "big")
        return b"".join(out)

    def decrypt(self, body: bytes) -> bytes | None:
        """Plain text of IV + ciphertext with the pad removed (None if malformed)."""
        n = len(body) - 16
        if n <= 0 or n % 16:
            return None
        chained = int.from_bytes(body[:n], "big")  # IV, then each ciphertext block but the last
        plain = (int.from_bytes(self._dec.update(body[16:]), "big") ^ chained).to_bytes(n, "big")
        pad = plain[-1]
        return plain[:-(pad + 1)] if pad < 16 else None


def _rmcp_plus_frame(payload_type: int, payload: bytes) -> bytes:
    """An unauthenticated RMCP+ packet (session ID 0): the handshake messages before a session."""
    return RMCP_HEADER + bytes([0x06, payload_type]) + _le32(0) + _le32(0) + _le16(len(payload)) + payload


class _LabSession(pyghmi_serversession.ServerSession):
    """One RMCP+ session with a console: the RAKP handshake, then IPMI and SOL payloads.

    Framing, encryption and integrity of in-session packets come from pyghmi's ``Session``
    (``_handle_ipmi_packet`` in, ``send_payload`` out).  The constructor does not call
    pyghmi's: that one registers the session in pyghmi's process-global routing table and
    answers the open-session request itself; here the BMC routes by session ID and answers
    after checking the cipher proposal.
    """

    def __new__(cls, *args, **kwargs):  # pyghmi's Session.__new__ would look for a shared client session
        return object.__new__(cls)

    def __init__(self, bmc: "_LabBmc", clientaddr, console_session_id: bytes, managed_session_id: int,
                 max_privilege: int) -> None:
        # Attributes read by pyghmi's Session framing code (send_payload, _handle_ipmi2_packet ...).
        self.bmc = bmc
        self.socket = bmc.serversocket
        self.sockaddr = clientaddr
        self.servermode = True
        self.ipmiversion = 2.0
        self.authtype = 6
        self.currhashlib = hashlib.sha1
        self.currhashlen = 12
        self.rqaddr = BMC_SLAVE_ADDRESS
        self.rqlun = 0
        self.sequencenumber = 0
        self.sessionid = 0
        self.integrityalgo = 0
        self.confalgo = 0
        self.k1 = None
        self.aeskey = None
        self.kg = None
        self.remseqnumber = None
        self.lastpayload = None
        self.last_payload_type = None
        self.pendingpayloads = deque()
        self.pktqueue = deque()
        self.broken = False
        self.sol_handler = None
        self.ipmicallback = None
        # This session's state.
        self.clientsessionid = bytearray(console_session_id)
        self.managedsessionid = bytearray(_le32(managed_session_id))
        self.localsid = managed_session_id  # pyghmi checks inbound session IDs against this
        self.granted_privilege = max_privilege  # from the open-session exchange
        self.maxpriv = max_privilege  # narrowed by RAKP 1
        self.clientpriv = PRIV_USER  # sessions start at User level (IPMI 2.0 section 22.18)
        self.established = False
        self.last_seen = time.monotonic()

    # -- the RAKP handshake (IPMI 2.0 section 13.31) ---------------------------------------
    def _send_handshake(self, payload_type: int, payload: bytes) -> None:
        self.bmc.send(_rmcp_plus_frame(payload_type, payload), self.sockaddr)

    def _got_rakp1(self, data):
        if self.established or len(data) < 28:
            return
        tag = data[0]
        self.Rm = bytes(data[8:24])
        self.rolem = data[24]
        name_length = data[27]
        name = bytes(data[28:28 + name_length])
        requested = self.rolem & 0x0F
        status = 0
        if name_length > 16:
            status = RMCP_INVALID_NAME_LENGTH
        elif not 1 <= requested <= 5:
            status = RMCP_INVALID_ROLE
        elif not hmac.compare_digest(name, self.bmc.username):
            status = RMCP_UNAUTHORIZED_NAME  # also for a null user name: there is no anonymous user
        elif requested > min(self.granted_privilege, PRIV_ADMIN):
            status = RMCP_UNAUTHORIZED_ROLE
        if status:
            self._send_handshake(PAYLOAD_RAKP2, bytes([tag, status, 0, 0]) + self.clientsessionid)
            self.bmc.drop_session(self, "RAKP 1 refused (status %02xh)" % status)
            return
        self.maxpriv = requested
        self.username = name
        self.kuid = self.bmc.password
        self.kg = self.kuid  # no BMC key (Kg) configured: Kuid is used, as the spec says
        self.Rc = os.urandom(16)
        guid = self.bmc.guid_bytes
        hmacdata = (self.clientsessionid + self.managedsessionid + self.Rm + self.Rc + guid
                    + bytes([self.rolem, len(name)]) + name)
        authcode = hmac.new(self.kuid, bytes(hmacdata), hashlib.sha1).digest()
        self._send_handshake(PAYLOAD_RAKP2, bytes([tag, 0, 0, 0]) + self.clientsessionid + self.Rc + guid + authcode)

    def _got_rakp3(self, data):
        if len(data) < 8 or not hasattr(self, "Rc"):
            return
        tag = data[0]
        if data[1] != 0:
            # The console rejected our RAKP 2 (typically a wrong password on its side).
            self.bmc.drop_session(self, "console refused RAKP 2 (status %02xh)" % data[1])
            return
        hmacdata = self.Rc + self.clientsessionid + bytes([self.rolem, len(self.username)]) + self.username
        expected = hmac.new(self.kuid, bytes(hmacdata), hashlib.sha1).digest()
        if not hmac.compare_digest(expected, bytes(data[8:8 + len(expected)])):
            self._send_handshake(PAYLOAD_RAKP4, bytes([tag, RMCP_INVALID_INTEGRITY_CHECK, 0, 0]) + self.clientsessionid)
            self.bmc.drop_session(self, "RAKP 3 integrity check failed")
            return
        if not self.established:
            role_and_name = bytes([self.rolem, len(self.username)]) + self.username
            self.sik = hmac.new(self.kg, self.Rm + self.Rc + role_and_name, hashlib.sha1).digest()
            self.k1 = hmac.new(self.sik, b"\x01" * 20, hashlib.sha1).digest()  # integrity key
            self.k2 = hmac.new(self.sik, b"\x02" * 20, hashlib.sha1).digest()
            self.aeskey = self.k2[:16]  # confidentiality key
        icv = hmac.new(self.sik, self.Rm + self.managedsessionid + self.bmc.guid_bytes, hashlib.sha1).digest()[:12]
        self._send_handshake(PAYLOAD_RAKP4, bytes([tag, 0, 0, 0]) + self.clientsessionid + icv)
        if self.established:
            return  # a retransmitted RAKP 3 (our RAKP 4 was lost): same answer, session unchanged
        # From here on every packet is signed (HMAC-SHA1-96) and encrypted (AES-CBC-128), and
        # carries the console's session ID.
        self.integrityalgo, self.confalgo = "sha1", "aes"
        self.sequencenumber = 1
        self.sessionid = struct.unpack("<I", bytes(self.clientsessionid))[0]
        self.ipmicallback = self.handle_client_request
        self.clientpriv = min(PRIV_USER, self.maxpriv)
        self.established = True
        log.debug("%s: session %08x established for %r", self.bmc, self.localsid, self.username)

    # -- in-session packets: a fast path for established sessions ---------------------------
    def _handle_ipmi_packet(self, data, sockaddr=None, qent=None):
        """IPMI and SOL payloads of an established session are checked and decrypted here;
        anything else (and any packet this does not like) goes to pyghmi's code as before."""
        crypto = self._crypto
        if crypto is None or len(data) < 48 or data[4] != 0x06 or data[5] & 0xC0 != 0xC0 or data[5] & 0x3F > 1:
            return super()._handle_ipmi_packet(data, sockaddr=sockaddr, qent=qent)
        if not hmac.compare_digest(crypto.sign(bytes(data[4:-12])), bytes(data[-12:])):
            return None  # failed integrity: dropped, as pyghmi does
        if struct.unpack_from("<I", data, 6)[0] != self.localsid:
            return None
        seq = struct.unpack_from("<I", data, 10)[0]
        if self.remseqnumber is not None and seq < self.remseqnumber and self.remseqnumber != 0xFFFFFFFF:
            return None  # a replay
        self.remseqnumber = seq
        length = struct.unpack_from("<H", data, 14)[0]
        payload = crypto.decrypt(bytes(data[16:16 + length]))
        if payload is None:
            return None
        if data[5] & 0x3F == PAYLOAD_IPMI:
            self._parse_ipmi_payload(bytearray(payload))
        elif self.sol_handler is not None:
            self.sol_handler(bytearray(payload))
        return None

    def send_payload(self, payload=(), payload_type=None, retry=True, delay_xmit=None, needskeepalive=False,
                     timeout=None):
        crypto = self._crypto
        if crypto is None or payload_type not in (PAYLOAD_IPMI, PAYLOAD_SOL) or not payload:
            return super().send_payload(payload, payload_type, retry, delay_xmit, needskeepalive, timeout)
        body = crypto.encrypt(bytes(payload))
        header = struct.pack("<IIH", self.sessionid, self.sequencenumber, len(body))
        packet = bytes([0x06, 0xC0 | payload_type]) + header + body  # encrypted and signed
        pad = (-(len(packet) + 2)) % 4
        packet += b"\xff" * pad + bytes([pad, 0x07])
        self.netpacket = RMCP_HEADER + packet + crypto.sign(packet)
        self._xmit_packet(retry=False)
        return None

    @property
    def _crypto(self) -> _SessionCrypto | None:
        """The session's keys once established (made on first use, kept with the session)."""
        if not self.established or not self.k1 or not self.aeskey:
            return None
        crypto = self.__dict__.get("_fast_crypto")
        if crypto is None or crypto.aeskey != self.aeskey:
            crypto = self.__dict__["_fast_crypto"] = _SessionCrypto(bytes(self.k1), bytes(self.aeskey))
        return crypto

    def _xmit_packet(self, retry=True, delay_xmit=None, timeout=None):
        # Replaces pyghmi's: no retransmission timers on the server side (a console retries),
        # and sending goes through the BMC's socket without pyghmi's global bookkeeping.
        if self.sequencenumber:
            self.sequencenumber += 1
        self.bmc.send(bytes(self.netpacket), self.sockaddr)

    # -- in-session requests ----------------------------------------------------------------
    def handle_client_request(self, request):
        """Session-level commands here; everything else goes to the BMC's command table."""
        self.last_seen = time.monotonic()
        netfn, command, data = request["netfn"], request["command"], request["data"]
        if netfn == NETFN_APP and command == 0x3B:  # Set Session Privilege Level
            wanted = data[0] & 0x0F if data else 0
            if wanted == 0:  # "no change": report the present level
                return self.send_ipmi_response(data=[self.clientpriv])
            if wanted < PRIV_USER or wanted > 5:
                return self.send_ipmi_response(code=CC_INVALID_DATA)
            if wanted > self.maxpriv:
                return self.send_ipmi_response(code=CC_PRIVILEGE_NOT_AVAILABLE)
            self.clientpriv = wanted
            return self.send_ipmi_response(data=[wanted])
        if netfn == NETFN_APP and command == 0x3C:  # Close Session
            target = struct.unpack("<I", bytes(data[:4]))[0] if len(data) >= 4 else self.localsid
            victim = self.bmc.sessions.get(target or self.localsid)
            if victim is None:
                return self.send_ipmi_response(code=0x87)  # invalid session ID in request
            if victim is not self and self.clientpriv < PRIV_ADMIN:
                return self.send_ipmi_response(code=CC_INSUFFICIENT_PRIVILEGE)
            # Forgotten before the answer goes out: a console that got the answer never sees
            # the session still counted (the keys live on in this object for the reply).
            self.bmc.drop_session(victim, "closed by console")
            self.send_ipmi_response()
            return None
        return self.bmc.handle_raw_request(request, self)

    def send_ipmi_response(self, data=(), code=0):
        self._send_ipmi_net_payload(data=data, code=code)

    def logout(self, sessionok=True):  # pyghmi cleanup hook; nothing global to undo here
        return {"success": True}


# ======================================================================== SOL
class _SolChannel:
    """The SOL payload of one BMC, active on one session (IPMI 2.0 section 15).

    Serial output is buffered and sent one packet at a time; each waits for the console's
    acknowledgement, is retransmitted every ``sol_retry_interval`` seconds, and after
    ``sol_max_tries`` sends the console is taken to be gone and the payload is deactivated.
    Keys typed on the console are acknowledged at once and passed to the machine.
    """

    def __init__(self, bmc: "_LabBmc", session: _LabSession) -> None:
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
        # Byte 4 (break, flow control, flush requests) has no meaning for the lab UART.
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
            if self._last_in and self._last_in[0] == seq:
                new = data[self._last_in[1]:]  # a retransmission: only bytes not seen before
            self._last_in = (seq, len(data))
            self.session.send_payload(bytes([0, seq, len(data), 0]), payload_type=PAYLOAD_SOL, retry=False)
            if new:
                self._type(new)
        self.pump(time.monotonic())

    def _type(self, keys: bytes) -> None:
        try:
            self.machine.loop.call_soon_threadsafe(self.machine.serial.send_input, keys)
        except RuntimeError:  # the machine's loop is closed: the keys go nowhere, as on a dead host
            pass

    def pump(self, now: float) -> None:
        """Send the next packet, or retransmit the unacknowledged one when it is due."""
        if self.closed:
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
        self._sent_at, self._tries = now, 1
        self.session.send_payload(self._inflight, payload_type=PAYLOAD_SOL, retry=False)

    def deadline(self) -> float | None:
        """When ``pump`` next has something to do (monotonic seconds), or None."""
        if self.closed:
            return None
        if self._inflight is not None:
            return self._sent_at + self.bmc.lab.sol_retry_interval
        with self._lock:
            return 0.0 if self._pending else None

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
            # Operation/status bit 4: "SOL is deactivated" (IPMI 2.0 table 15-2).
            self.session.send_payload(bytes([self._seq, 0, 0, 0x10]), payload_type=PAYLOAD_SOL, retry=False)


# ======================================================================== BMC
class _LabBmc(pyghmi_bmc.Bmc):
    """One simulated BMC: a UDP socket, its sessions, and the IPMI command set for a machine.

    ``pyghmi.ipmi.bmc.Bmc`` supplies the chassis-control dispatch and the power hook names;
    its constructor is not called because it binds through pyghmi's global socket pool.
    """

    HANDSHAKE_TIMEOUT = 10.0  # seconds a half-open session (no RAKP 3 yet) is kept

    def __init__(self, lab: "IpmiLab", machine: Machine, sock: socket.socket, username: bytes, password: bytes) -> None:
        self.lab = lab
        self.machine = machine
        self.serversocket = sock
        self.address, self.port = sock.getsockname()[:2]
        self.username = username
        self.password = password
        self.uuid = machine.uuid
        self.guid_bytes = machine.uuid.bytes_le  # wire order of Get System GUID (SMBIOS order)
        self.sessions: dict[int, _LabSession] = {}
        self.sol: _SolChannel | None = None
        self.sensors = _SensorTable(machine)
        self.fru = _fru_image(machine)
        self._sdr_reservation = 0
        self._sel_reservation = 0
        self._sel_erased_at: float | None = None
        self._boot_uefi = False  # remembered from Set System Boot Options (the machine has no notion)
        self._boot_params = {0: bytes([0x00]), 3: bytes([0x00]), 4: bytes([0x00, 0x00])}
        self._identify_until = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"<BMC {self.machine.name} {self.address}:{self.port}>"

    # -- transport ------------------------------------------------------------------------
    def send(self, packet: bytes, addr) -> None:
        if self.lab.fault.get(self.address) == "truncated":
            packet = packet[:max(16, len(packet) // 2)]  # a BMC whose answers lose their tails
        try:
            self.serversocket.sendto(packet, socket.MSG_DONTWAIT, addr)
        except OSError as exc:  # a full buffer or a vanished peer: UDP drops, and so do we
            log.debug("%s: send to %s failed: %s", self, addr, exc)

    def dispatch(self, data: bytes, addr) -> None:
        """Route one datagram: handshake, session packet (by session ID), or sessionless."""
        fault = self.lab.fault.get(self.address, "")
        if fault == "silent":
            return  # a dead or wedged BMC: nothing comes back
        if fault == "garbage":
            # a lying BMC: an RMCP header followed by a truncated, undecodable message
            self.send(RMCP_HEADER + data[4:9] + b"\xff\x00", addr)
            return
        if len(data) < 16 or data[:4] != RMCP_HEADER:
            return  # not RMCP class IPMI (ASF presence pings are not answered)
        if data[4] == 0x06:  # RMCP+ session header (IPMI 2.0 table 13-8)
            payload_type = data[5] & 0x3F
            if payload_type == PAYLOAD_OPEN_SESSION_REQUEST:
                self._open_session(data[16:], addr)
                return
            if payload_type in (PAYLOAD_RAKP1, PAYLOAD_RAKP3):
                if len(data) < 24:
                    return
                session_id = struct.unpack_from("<I", data, 20)[0]  # managed system session ID
            else:
                session_id = struct.unpack_from("<I", data, 6)[0]
                if session_id == 0:
                    self._sessionless(data, addr)
                    return
            session = self.sessions.get(session_id)
            if session is not None:  # unknown IDs are dropped silently, as real BMCs do
                session._handle_ipmi_packet(bytearray(data), sockaddr=addr)
        elif struct.unpack_from("<I", data, 9)[0] == 0:  # IPMI 1.5 header outside a session
            self._sessionless(data, addr)

    # -- outside a session ----------------------------------------------------------------
    def _sessionless(self, data: bytes, addr) -> None:
        """Get Channel Authentication Capabilities and Get Channel Cipher Suites, before login."""
        v2 = data[4] == 0x06
        if v2 and data[5] != PAYLOAD_IPMI:  # only plain, unauthenticated IPMI messages here
            return
        if v2:
            length = struct.unpack_from("<H", data, 14)[0]
            msg = data[16:16 + length]
        else:
            msg = data[14:14 + data[13]]
        if len(msg) < 7:
            return
        rs_addr, netfn_lun, _, rq_addr, rq_seq_lun, command = msg[:6]
        request = msg[6:-1]
        if netfn_lun >> 2 != NETFN_APP:
            return
        if command == 0x38:
            body = self._auth_capabilities(request)
        elif command == 0x54:
            body = self._cipher_suites(request)
        else:
            return  # anything else needs a session
        head = bytes([rq_addr, ((NETFN_APP + 1) << 2) | (rq_seq_lun & 0x03)])
        tail = bytes([rs_addr, (rq_seq_lun & 0xFC) | (netfn_lun & 0x03), command]) + body
        msg_out = head + bytes([_checksum(head)]) + tail + bytes([_checksum(tail)])
        if v2:
            packet = RMCP_HEADER + bytes([0x06, PAYLOAD_IPMI]) + _le32(0) + _le32(0) + _le16(len(msg_out)) + msg_out
        else:
            packet = RMCP_HEADER + bytes([0x00]) + _le32(0) + _le32(0) + bytes([len(msg_out)]) + msg_out
        self.send(packet, addr)

    @staticmethod
    def _auth_capabilities(request: bytes) -> bytes:
        """IPMI 2.0 table 22-15: no IPMI 1.5 auth types; IPMI 2.0 with non-null user names."""
        return bytes([CC_OK, LAN_CHANNEL, 0x80, 0x04, 0x02, 0, 0, 0, 0])

    @staticmethod
    def _cipher_suites(request: bytes) -> bytes:
        """IPMI 2.0 section 22.15: 16 bytes of the record list per list index."""
        index = (request[2] & 0x3F) if len(request) >= 3 else 0
        return bytes([CC_OK, LAN_CHANNEL]) + CIPHER_SUITE_RECORDS[16 * index:16 * index + 16]

    def _open_session(self, request: bytes, addr) -> None:
        """RMCP+ Open Session Request (IPMI 2.0 section 13.17): check the proposal, make a session."""
        if len(request) < 8:
            return
        tag, console_id = request[0], bytes(request[4:8])
        status = self._check_proposal(request)
        requested = request[1] & 0x0F
        if not status and requested > PRIV_ADMIN:
            status = RMCP_UNAUTHORIZED_ROLE if requested == 5 else RMCP_INVALID_ROLE
        if not status and len(self.sessions) >= self.lab.max_sessions_per_bmc:
            status = RMCP_NO_RESOURCES
        if status:
            self.send(_rmcp_plus_frame(PAYLOAD_OPEN_SESSION_RESPONSE, bytes([tag, status, 0, 0]) + console_id), addr)
            return
        managed_id = 0
        while managed_id == 0 or managed_id in self.sessions:
            managed_id = struct.unpack("<I", os.urandom(4))[0]
        granted = requested or PRIV_ADMIN  # 0 means "the highest level the proposal allows"
        session = _LabSession(self, addr, console_id, managed_id, granted)
        self.sessions[managed_id] = session
        algorithms = b"".join(bytes([kind, 0, 0, 8, algo, 0, 0, 0]) for kind, algo in enumerate(CIPHER_SUITE_3))
        response = bytes([tag, 0, granted, 0]) + console_id + _le32(managed_id) + algorithms
        self.send(_rmcp_plus_frame(PAYLOAD_OPEN_SESSION_RESPONSE, response), addr)

    @staticmethod
    def _check_proposal(request: bytes) -> int:
        """0 if the proposed algorithms are cipher suite 3's, else the RMCP+ status code to send."""
        if len(request) < 32:
            return RMCP_ILLEGAL_PARAMETER
        refusals = (RMCP_INVALID_AUTH_ALGORITHM, RMCP_INVALID_INTEGRITY_ALGORITHM, RMCP_INVALID_CONFIDENTIALITY_ALGORITHM)
        for kind, (wanted, refusal) in enumerate(zip(CIPHER_SUITE_3, refusals)):
            record = request[8 + 8 * kind:16 + 8 * kind]
            if record[0] != kind:
                return RMCP_ILLEGAL_PARAMETER
            if record[3] == 0:
                continue  # a null payload lets the BMC choose: it chooses suite 3
            if record[4] & 0x3F != wanted:
                return refusal
        return 0

    def drop_session(self, session: _LabSession, reason: str) -> None:
        """Forget a session (logout, timeout, failed handshake), ending its SOL if it had it."""
        if self.sol is not None and self.sol.session is session:
            self.end_sol(reason)
        if self.sessions.get(session.localsid) is session:
            del self.sessions[session.localsid]
            log.debug("%s: session %08x ended: %s", self, session.localsid, reason)

    def expire_sessions(self, now: float) -> None:
        for session in list(self.sessions.values()):
            limit = self.lab.session_timeout if session.established else self.HANDSHAKE_TIMEOUT
            if now - session.last_seen > limit:
                self.drop_session(session, "inactivity timeout")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.sol is not None:
            self.end_sol("BMC stopped")
        self.sessions.clear()
        self.serversocket.close()

    # -- command dispatch -----------------------------------------------------------------
    #: (netfn, command) -> (method, minimum privilege).  Appendix G of IPMI 2.0 gives the levels.
    COMMANDS: dict[tuple[int, int], tuple[str, int]] = {
        (NETFN_APP, 0x01): ("_cmd_device_id", PRIV_USER),
        (NETFN_APP, 0x02): ("_cmd_cold_reset", PRIV_ADMIN),
        (NETFN_APP, 0x07): ("_cmd_acpi_power_state", PRIV_USER),
        (NETFN_APP, 0x37): ("_cmd_system_guid", PRIV_USER),
        (NETFN_APP, 0x38): ("_cmd_auth_capabilities", PRIV_CALLBACK),
        (NETFN_APP, 0x48): ("activate_payload", PRIV_USER),
        (NETFN_APP, 0x49): ("deactivate_payload", PRIV_USER),
        (NETFN_APP, 0x4A): ("_cmd_payload_activation_status", PRIV_USER),
        (NETFN_APP, 0x4B): ("_cmd_payload_instance_info", PRIV_USER),
        (NETFN_APP, 0x54): ("_cmd_cipher_suites", PRIV_CALLBACK),
        (NETFN_CHASSIS, 0x01): ("_cmd_chassis_status", PRIV_USER),
        (NETFN_CHASSIS, 0x02): ("control_chassis", PRIV_OPERATOR),
        (NETFN_CHASSIS, 0x04): ("_cmd_chassis_identify", PRIV_OPERATOR),
        (NETFN_CHASSIS, 0x08): ("set_system_boot_options", PRIV_OPERATOR),
        (NETFN_CHASSIS, 0x09): ("get_system_boot_options", PRIV_OPERATOR),
        (NETFN_SENSOR, 0x25): ("_cmd_sensor_hysteresis", PRIV_USER),
        (NETFN_SENSOR, 0x27): ("_cmd_sensor_thresholds", PRIV_USER),
        (NETFN_SENSOR, 0x2D): ("_cmd_sensor_reading", PRIV_USER),
        (NETFN_STORAGE, 0x10): ("_cmd_fru_area_info", PRIV_USER),
        (NETFN_STORAGE, 0x11): ("_cmd_read_fru", PRIV_USER),
        (NETFN_STORAGE, 0x20): ("_cmd_sdr_repository_info", PRIV_USER),
        (NETFN_STORAGE, 0x22): ("_cmd_reserve_sdr", PRIV_USER),
        (NETFN_STORAGE, 0x23): ("_cmd_get_sdr", PRIV_USER),
        (NETFN_STORAGE, 0x40): ("_cmd_sel_info", PRIV_USER),
        (NETFN_STORAGE, 0x41): ("_cmd_sel_allocation_info", PRIV_USER),
        (NETFN_STORAGE, 0x42): ("_cmd_reserve_sel", PRIV_USER),
        (NETFN_STORAGE, 0x43): ("_cmd_get_sel_entry", PRIV_USER),
        (NETFN_STORAGE, 0x47): ("_cmd_clear_sel", PRIV_OPERATOR),
        (NETFN_STORAGE, 0x48): ("_cmd_get_sel_time", PRIV_USER),
        (NETFN_TRANSPORT, 0x22): ("_cmd_sol_configuration", PRIV_USER),
    }

    def handle_raw_request(self, request, session):
        """Run one IPMI request from an established session and send its response."""
        key = (request["netfn"], request["command"])
        entry = self.COMMANDS.get(key)
        if entry is None:
            log.debug("%s: unsupported command netfn %02xh cmd %02xh", self, *key)
            return session.send_ipmi_response(code=CC_INVALID_COMMAND)
        method, privilege = entry
        if session.clientpriv < privilege:
            return session.send_ipmi_response(code=CC_INSUFFICIENT_PRIVILEGE)
        request["data"] = bytes(request["data"])
        try:
            return getattr(self, method)(request, session)
        except (IndexError, struct.error):  # a request shorter than its command needs
            return session.send_ipmi_response(code=CC_REQUEST_LENGTH_INVALID)
        except Exception:  # a bug here must cost one request, not the lab
            log.exception("%s: command netfn %02xh cmd %02xh failed", self, *key)
            return session.send_ipmi_response(code=0xFF)

    # -- Bmc hooks: power, identity -------------------------------------------------------
    def get_power_state(self):
        return "on" if self.machine.powered else "off"

    def power_on(self):
        self.machine.power_on()

    def power_off(self):
        self.machine.power_off()

    def power_cycle(self):
        self.machine.power_cycle()

    def power_reset(self):
        self.machine.power_reset()

    def power_shutdown(self):
        self.machine.power_soft()

    def pulse_diag(self):
        raise NotImplementedError  # no NMI on lab machines: Bmc.control_chassis answers CCh

    def get_system_guid(self):
        return self.machine.uuid

    def is_active(self):
        return self.machine.powered

    def _cmd_device_id(self, request, session):
        self.send_device_id(session)

    def send_device_id(self, session):
        """Get Device ID (IPMI 2.0 section 20.1)."""
        major, _, minor = self.machine.spec.bmc_firmware.partition(".")
        digits = re.sub(r"\D", "", minor)[:2].ljust(2, "0")
        data = bytes([
            0x20,  # device ID
            0x01,  # device revision 1; no device SDRs (the SDR repository is used)
            int(major) & 0x7F if major.isdigit() else 0,  # firmware major; bit 7 0 = normal operation
            int(digits, 16),  # firmware minor, BCD
            0x02,  # IPMI 2.0
            0x8F,  # chassis device, FRU inventory, SEL, SDR repository, sensor device
        ]) + MANUFACTURER_ID.to_bytes(3, "little") + _le16(zlib.crc32(self.machine.spec.model.encode()))
        session.send_ipmi_response(data=data)

    def _cmd_system_guid(self, request, session):
        session.send_ipmi_response(data=self.guid_bytes)

    def _cmd_cold_reset(self, request, session):
        session.send_ipmi_response()
        # A BMC reboot drops every session; do it after this response has gone out.
        self.lab.call_soon(self._drop_all_sessions)

    def _drop_all_sessions(self) -> None:
        for session in list(self.sessions.values()):
            self.drop_session(session, "BMC cold reset")

    def _cmd_acpi_power_state(self, request, session):
        session.send_ipmi_response(data=[0x00 if self.machine.powered else 0x05, 0x00])  # S0/G0 or S5/G2; D0

    def _cmd_auth_capabilities(self, request, session):
        session.send_ipmi_response(data=self._auth_capabilities(request["data"])[1:])

    def _cmd_cipher_suites(self, request, session):
        session.send_ipmi_response(data=self._cipher_suites(request["data"])[1:])

    # -- chassis --------------------------------------------------------------------------
    def _cmd_chassis_status(self, request, session):
        self.get_chassis_status(session)

    def get_chassis_status(self, session):
        """Get Chassis Status (IPMI 2.0 section 28.2)."""
        fault = self.machine.fault
        power = (0x01 if self.machine.powered else 0x00) | (0x08 if fault == "psu" else 0) | (0b01 << 5)  # restore: previous
        identify = 0x20 if time.monotonic() < self._identify_until else 0x00  # 01b temporary on
        misc = 0x40 | identify | (0x08 if fault == "fan" else 0)  # identify supported; cooling fault
        session.send_ipmi_response(data=[power, 0x00, misc])

    def _cmd_chassis_identify(self, request, session):
        data = request["data"]
        seconds = data[0] if data else 15
        if len(data) > 1 and data[1] & 0x01:
            seconds = 86400 * 365  # "force identify on"
        self._identify_until = time.monotonic() + seconds
        session.send_ipmi_response()

    def get_system_boot_options(self, request, session):
        """Get System Boot Options (IPMI 2.0 section 28.13); parameter 5 reflects the machine."""
        selector = request["data"][0] & 0x7F
        if selector == 5:
            device = self.machine.boot_override
            valid = device != BootDevice.NONE
            data1 = (0x80 if valid else 0) | (0x40 if valid and self.machine.boot_override_persistent else 0)
            data1 |= 0x20 if valid and self._boot_uefi else 0
            value = bytes([data1, _DEVICE_TO_SELECTOR[device] << 2, 0x00, 0x00, 0x00])
        elif selector in self._boot_params:
            value = self._boot_params[selector]
        else:
            return session.send_ipmi_response(code=CC_PARAMETER_NOT_SUPPORTED)
        session.send_ipmi_response(data=bytes([0x01, selector]) + value)  # version 1; bit 7 0 = valid

    def set_system_boot_options(self, request, session):
        """Set System Boot Options; parameter 5 sets the machine's override (once or persistent)."""
        data = request["data"]
        selector = data[0] & 0x7F
        if selector == 5:
            if len(data) < 3:
                return session.send_ipmi_response(code=CC_REQUEST_LENGTH_INVALID)
            flags, device_byte = data[1], data[2]
            device = _SELECTOR_TO_DEVICE.get((device_byte >> 2) & 0x0F)
            if device is None:
                return session.send_ipmi_response(code=CC_INVALID_DATA)
            if not flags & 0x80:  # "boot flags not valid": no override
                device = BootDevice.NONE
            self.machine.set_boot_override(device, persistent=bool(flags & 0x40))
            self._boot_uefi = bool(flags & 0x20)
        elif selector in self._boot_params:
            # Set-in-progress, valid-bit clearing and boot-info acknowledge are stored and read
            # back; like most BMCs we do not act on them.
            self._boot_params[selector] = bytes(data[1:1 + len(self._boot_params[selector])]).ljust(
                len(self._boot_params[selector]), b"\0")
        else:
            return session.send_ipmi_response(code=CC_PARAMETER_NOT_SUPPORTED)
        session.send_ipmi_response()

    # -- SOL ------------------------------------------------------------------------------
    def activate_payload(self, request, session):
        """Activate Payload (IPMI 2.0 section 24.1): SOL instance 1 only, one session at a time."""
        data = request["data"]
        if data[0] & 0x3F != PAYLOAD_SOL or data[1] & 0x0F != 1:
            return session.send_ipmi_response(code=CC_INVALID_DATA)
        if self.sol is not None:
            return session.send_ipmi_response(code=CC_PAYLOAD_ALREADY_ACTIVE)
        # Aux data, inbound and outbound payload sizes, UDP port (LS byte first), VLAN none.
        response = bytes(4) + _le16(SOL_MAX_PAYLOAD) + _le16(SOL_MAX_PAYLOAD) + _le16(self.port) + b"\xff\xff"
        session.send_ipmi_response(data=response)
        self.sol = _SolChannel(self, session)
        self.lab.sol_started(self.sol)
        log.debug("%s: SOL activated by session %08x", self, session.localsid)

    def deactivate_payload(self, request, session):
        """Deactivate Payload: any session of this BMC may end SOL (``ipmitool sol deactivate``)."""
        data = request["data"]
        if data[0] & 0x3F != PAYLOAD_SOL or data[1] & 0x0F != 1:
            return session.send_ipmi_response(code=CC_INVALID_DATA)
        if self.sol is None:
            return session.send_ipmi_response(code=CC_PAYLOAD_ALREADY_ACTIVE)  # 80h: already deactivated
        session.send_ipmi_response()
        self.end_sol("deactivated by session %08x" % session.localsid, notify=self.sol.session is not session)

    def end_sol(self, reason: str, notify: bool = False) -> None:
        sol, self.sol = self.sol, None
        if sol is not None:
            sol.close(notify)
            self.lab.sol_ended(sol)
            log.debug("%s: SOL ended: %s", self, reason)

    def _cmd_payload_activation_status(self, request, session):
        if request["data"][0] & 0x3F != PAYLOAD_SOL:
            return session.send_ipmi_response(data=[0x00, 0x00, 0x00])
        session.send_ipmi_response(data=[0x01, 0x01 if self.sol else 0x00, 0x00])

    def _cmd_payload_instance_info(self, request, session):
        data = request["data"]
        if data[0] & 0x3F != PAYLOAD_SOL or data[1] & 0x0F != 1:
            return session.send_ipmi_response(code=CC_INVALID_DATA)
        if self.sol is None:
            return session.send_ipmi_response(data=bytes(12))
        # Owning session ID, then payload-specific data: SOL port number 1.
        session.send_ipmi_response(data=_le32(self.sol.session.localsid) + bytes([1, 0, 0, 0, 0, 0, 0, 0]))

    def _cmd_sol_configuration(self, request, session):
        """Get SOL Configuration Parameters (IPMI 2.0 section 26.3), for ``ipmitool sol info``."""
        data = request["data"]
        if data[0] & 0x80:  # revision only
            return session.send_ipmi_response(data=[0x11])
        params = {
            0: [0x00],  # set complete
            1: [0x01],  # SOL enabled
            2: [PRIV_USER],  # no forced encryption/authentication; User may activate
            3: [0x0C, 0x60],  # character accumulate 60 ms, send threshold 96
            4: [0x07, 0x32],  # 7 retries, 500 ms apart
            5: [0x0A],  # 115.2 kbps (non-volatile)
            6: [0x0A],  # 115.2 kbps (volatile)
            7: [LAN_CHANNEL],
            8: list(_le16(self.port)),
        }
        value = params.get(data[1])
        if value is None:
            return session.send_ipmi_response(code=CC_PARAMETER_NOT_SUPPORTED)
        session.send_ipmi_response(data=[0x11] + value)

    # -- sensors and SDR ------------------------------------------------------------------
    def _cmd_sensor_reading(self, request, session):
        data = self.sensors.reading_bytes(request["data"][0])
        if data is None:
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        session.send_ipmi_response(data=data)

    def _cmd_sensor_thresholds(self, request, session):
        data = self.sensors.thresholds_bytes(request["data"][0])
        if data is None:
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        session.send_ipmi_response(data=data)

    def _cmd_sensor_hysteresis(self, request, session):
        if self.sensors.entry(request["data"][0]) is None:
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        session.send_ipmi_response(data=[0x00, 0x00])

    def _cmd_sdr_repository_info(self, request, session):
        """Get SDR Repository Info (IPMI 2.0 section 33.9)."""
        self.sensors.current()
        records = self.sensors.records
        data = (bytes([0x51]) + _le16(len(records)) + _le16(0x0800) + _le32(self.sensors.addition_timestamp)
                + _le32(0) + bytes([0x22]))  # non-modal updates; reserve supported
        session.send_ipmi_response(data=data)

    def _cmd_reserve_sdr(self, request, session):
        self._sdr_reservation = self._sdr_reservation % 0xFFFF + 1
        session.send_ipmi_response(data=_le16(self._sdr_reservation))

    def _cmd_get_sdr(self, request, session):
        """Get SDR (section 33.12): partial reads need the current reservation."""
        reservation, record_id, offset, count = struct.unpack("<HHBB", request["data"][:6])
        if offset and reservation != self._sdr_reservation:
            return session.send_ipmi_response(code=CC_RESERVATION_INVALID)
        self.sensors.current()
        records = self.sensors.records
        index = 0 if record_id == 0 else len(records) - 1 if record_id == 0xFFFF else record_id - 1
        if not 0 <= index < len(records):
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        record = records[index]
        if offset > len(record):
            return session.send_ipmi_response(code=CC_PARAMETER_OUT_OF_RANGE)
        chunk = record[offset:] if count == 0xFF else record[offset:offset + count]
        next_id = index + 2 if index + 1 < len(records) else 0xFFFF
        session.send_ipmi_response(data=_le16(next_id) + chunk)

    # -- FRU ------------------------------------------------------------------------------
    def _cmd_fru_area_info(self, request, session):
        if request["data"][0] != 0:
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        session.send_ipmi_response(data=_le16(len(self.fru)) + b"\x00")  # byte access

    def _cmd_read_fru(self, request, session):
        fru_id, offset, count = struct.unpack("<BHB", request["data"][:4])
        if fru_id != 0:
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        if offset >= len(self.fru):
            return session.send_ipmi_response(code=CC_PARAMETER_OUT_OF_RANGE)
        chunk = self.fru[offset:offset + min(count, 240)]
        session.send_ipmi_response(data=bytes([len(chunk)]) + chunk)

    # -- SEL ------------------------------------------------------------------------------
    def _cmd_sel_info(self, request, session):
        """Get SEL Info (section 31.2)."""
        events = self.machine.events()
        last_add = events[-1].timestamp if events else 0xFFFFFFFF
        erased = self._sel_erased_at if self._sel_erased_at is not None else 0xFFFFFFFF
        free = max(0, 512 - len(events)) * 16
        overflow = 0x80 if len(events) >= 512 else 0x00
        data = bytes([0x51]) + _le16(len(events)) + _le16(free) + _le32(last_add) + _le32(erased) + bytes([overflow | 0x02])
        session.send_ipmi_response(data=data)

    def _cmd_sel_allocation_info(self, request, session):
        used = len(self.machine.events())
        data = _le16(512) + _le16(16) + _le16(512 - min(used, 512)) + _le16(512 - min(used, 512)) + bytes([16])
        session.send_ipmi_response(data=data)

    def _cmd_reserve_sel(self, request, session):
        self._sel_reservation = self._sel_reservation % 0xFFFF + 1
        session.send_ipmi_response(data=_le16(self._sel_reservation))

    def _cmd_get_sel_entry(self, request, session):
        """Get SEL Entry (section 31.5): 0000h is the first record, FFFFh the last."""
        reservation, record_id, offset, count = struct.unpack("<HHBB", request["data"][:6])
        if offset and reservation != self._sel_reservation:
            return session.send_ipmi_response(code=CC_RESERVATION_INVALID)
        events = self.machine.events()
        if not events:
            return session.send_ipmi_response(code=CC_NOT_PRESENT)
        if record_id == 0:
            index = 0
        elif record_id == 0xFFFF:
            index = len(events) - 1
        else:
            index = next((i for i, ev in enumerate(events) if _sel_record_id(ev) == record_id), -1)
            if index < 0:
                return session.send_ipmi_response(code=CC_NOT_PRESENT)
        record = _sel_record(events[index], self.sensors)
        next_id = _sel_record_id(events[index + 1]) if index + 1 < len(events) else 0xFFFF
        chunk = record[offset:] if count == 0xFF else record[offset:offset + count]
        session.send_ipmi_response(data=_le16(next_id) + chunk)

    def _cmd_clear_sel(self, request, session):
        """Clear SEL (section 31.9): needs the reservation and the 'CLR' signature."""
        data = request["data"]
        reservation = struct.unpack("<H", data[:2])[0]
        if reservation != self._sel_reservation:
            return session.send_ipmi_response(code=CC_RESERVATION_INVALID)
        if data[2:5] != b"CLR":
            return session.send_ipmi_response(code=CC_INVALID_DATA)
        if data[5] == 0xAA:  # initiate erase (00h only asks for the status)
            self.machine.clear_events()
            self._sel_erased_at = self.machine.clock()
            self._sel_reservation = self._sel_reservation % 0xFFFF + 1  # erasing cancels reservations
        session.send_ipmi_response(data=[0x01])  # erasure completed

    def _cmd_get_sel_time(self, request, session):
        session.send_ipmi_response(data=_le32(self.machine.clock()))


# ======================================================================== lab
class IpmiLab:
    """Hosts many simulated BMCs in this process, all served by one I/O loop in one thread.

    Typical use::

        lab = IpmiLab()
        port = lab.add(machine, "127.77.0.1", 0, b"admin", b"secret")
        lab.start()
        ...
        lab.stop()

    Tunables (plain attributes, read when used, so they may be changed at any time):
    ``session_timeout`` (seconds of inactivity before a session is dropped; 60, as the IPMI
    spec suggests), ``max_sessions_per_bmc`` (16; half-open handshakes count, as on real
    BMCs), ``sol_retry_interval`` (1 s) and ``sol_max_tries`` (5).
    """

    def __init__(self) -> None:
        self.session_timeout = 60.0
        #: address -> fault mode ("" none, "silent" drops every packet, "garbage" answers truncated
        #: junk, "truncated" sends the first half of every real answer)
        self.fault: dict[str, str] = {}
        self.max_sessions_per_bmc = 16
        self.sol_retry_interval = 1.0
        self.sol_max_tries = 5
        self._bmcs: list[_LabBmc] = []
        self._bmcs_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()  # epoll on Linux: no 1,024-descriptor ceiling
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._wake_pending = False
        self._calls: deque[Callable[[], None]] = deque()
        self._sols: set[_SolChannel] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = False
        self._next_sweep = 0.0

    # ----------------------------------------------------------------- public API
    def add(self, machine: Machine, address: str, port: int, username: bytes, password: bytes) -> int:
        """Serve a BMC for ``machine`` on ``address:port`` (loopback only); returns the bound port.

        ``port`` 0 picks a free port.  One user, ``username``/``password``, with
        administrator privilege.  May be called before or after :meth:`start`.
        """
        if self._stopped:
            raise RuntimeError("IpmiLab is stopped")
        ip = ipaddress.ip_address(address)
        if not ip.is_loopback:
            # A lab BMC with a known password must never be reachable from a real network.
            raise ValueError(f"lab BMCs bind loopback addresses only, not {address}")
        if isinstance(username, str):
            username = username.encode()
        if isinstance(password, str):
            password = password.encode()
        if not 0 < len(username) <= 16 or len(password) > 20:
            raise ValueError("IPMI user names are 1-16 bytes and passwords at most 20 bytes")
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        bmc = _LabBmc(self, machine, sock, bytes(username), bytes(password))
        with self._bmcs_lock:
            self._bmcs.append(bmc)
        if self._thread is None:
            self._selector.register(sock, selectors.EVENT_READ, bmc)
        else:
            self.call_soon(lambda: self._selector.register(sock, selectors.EVENT_READ, bmc))
        log.debug("%s: serving", bmc)
        return bmc.port

    def start(self) -> None:
        """Start the serving thread (a daemon)."""
        if self._stopped:
            raise RuntimeError("IpmiLab is stopped")
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="ipmi-lab", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close every socket and join the thread.  Safe to call twice."""
        if self._stopped:
            return
        self._stopping = True
        thread = self._thread
        if thread is not None:
            self.wake(force=True)
            if thread is not threading.current_thread():
                thread.join()
        self._stopped = True
        with self._bmcs_lock:
            bmcs, self._bmcs = self._bmcs, []
        for bmc in bmcs:
            bmc.close()
        self._sols.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def session_count(self, address: str | None = None) -> int:
        """Established RMCP+ sessions, on every BMC or on those bound to ``address``."""
        with self._bmcs_lock:
            bmcs = list(self._bmcs)
        return sum(
            sum(1 for s in list(bmc.sessions.values()) if s.established)
            for bmc in bmcs
            if address is None or bmc.address == address
        )

    # ----------------------------------------------------------- thread plumbing
    def wake(self, force: bool = False) -> None:
        """Interrupt the loop's wait (from any thread); repeated calls coalesce."""
        if self._wake_pending and not force:
            return
        self._wake_pending = True
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):  # already full of wake-ups, or closed at stop
            pass

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the lab thread at its next turn."""
        self._calls.append(fn)
        self.wake(force=True)

    def sol_started(self, sol: _SolChannel) -> None:
        self._sols.add(sol)

    def sol_ended(self, sol: _SolChannel) -> None:
        self._sols.discard(sol)

    def _run(self) -> None:
        while not self._stopping:
            try:
                events = self._selector.select(self._timeout())
            except OSError:
                if self._stopping:
                    break
                raise
            for key, _ in events:
                if key.data is None:
                    self._drain_wake()
                else:
                    self._drain(key.data)
            while self._calls:
                self._guarded(self._calls.popleft())
            now = time.monotonic()
            for sol in list(self._sols):
                self._guarded(lambda: sol.pump(now))
            if now >= self._next_sweep:
                self._next_sweep = now + 1.0
                for bmc in list(self._bmcs):
                    self._guarded(lambda: bmc.expire_sessions(now))

    @staticmethod
    def _guarded(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:  # one faulty BMC must not stop the others
            log.exception("IPMI lab: unexpected error")

    def _timeout(self) -> float:
        now = time.monotonic()
        deadline = self._next_sweep
        for sol in self._sols:
            due = sol.deadline()
            if due is not None and due < deadline:
                deadline = due
        return max(0.0, min(deadline - now, 1.0))

    def _drain_wake(self) -> None:
        # Clear the flag before reading, so a wake-up sent meanwhile is never lost.
        self._wake_pending = False
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _drain(self, bmc: _LabBmc) -> None:
        # At most 64 datagrams per turn, so one busy BMC cannot starve the others.
        for _ in range(64):
            try:
                data, addr = bmc.serversocket.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("%s: receive failed: %s", bmc, exc)
                return
            try:
                bmc.dispatch(data, addr)
            except Exception:
                log.exception("%s: failed on a packet from %s", bmc, addr)
