"""The lab BMC's RMCP+ sessions: the RAKP handshake, and in-session framing and crypto.

Part of :mod:`console.lab.ipmi_bmc` (whose docstring says what is pyghmi's and what is
replaced, and why): :class:`LabSession` is a pyghmi ``ServerSession`` with the RAKP
handshake written here (failures are answered, a retransmitted RAKP 3 does not reset
the session), and :class:`SessionCrypto` frames an established session's IPMI and SOL
packets (AES-CBC-128, HMAC-SHA1-96) without a new cipher object per packet.  The
protocol constants (IPMI 2.0 tables) live here too.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import pyghmi.ipmi.private.serversession as pyghmi_serversession

from console.lab.ipmi_records import BMC_SLAVE_ADDRESS, _le16, _le32

if TYPE_CHECKING:
    from console.lab.machine import Machine

__all__ = ["LabSession", "SessionCrypto", "rmcp_plus_frame", "BmcHost", "LabLoop"]


class LabLoop(Protocol):
    """What a session's SOL payload needs from the lab's I/O loop (:class:`~console.lab.ipmi_bmc.IpmiLab`)."""

    @property
    def sol_retry_interval(self) -> float: ...

    @property
    def sol_max_tries(self) -> int: ...

    def wake(self, force: bool = False) -> None:
        """Have the loop look at the SOL channels again (output is waiting)."""
        ...


class BmcHost(Protocol):
    """What a :class:`LabSession` and its SOL payload need from the BMC that owns them
    (:class:`~console.lab.ipmi_bmc`'s ``_LabBmc``).  Sessions and SOL sit below the BMC:
    they know it through this, never by importing it."""

    @property
    def lab(self) -> LabLoop: ...

    @property
    def machine(self) -> Machine: ...

    @property
    def serversocket(self) -> socket.socket: ...

    @property
    def username(self) -> bytes: ...

    @property
    def password(self) -> bytes: ...

    @property
    def guid_bytes(self) -> bytes: ...

    @property
    def sessions(self) -> Mapping[int, LabSession]: ...

    def send(self, packet: bytes, addr: Any) -> None:
        """Send one datagram to a console."""
        ...

    def drop_session(self, session: LabSession, reason: str) -> None:
        """Forget a session (logout, timeout, failed handshake)."""
        ...

    def end_sol(self, reason: str, notify: bool = False) -> None:
        """Deactivate the SOL payload."""
        ...

    def handle_raw_request(self, request: Any, session: Any) -> Any:
        """Answer one IPMI request that came in over ``session``."""
        ...

log = logging.getLogger(__name__)

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


class SessionCrypto:
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


def rmcp_plus_frame(payload_type: int, payload: bytes) -> bytes:
    """An unauthenticated RMCP+ packet (session ID 0): the handshake messages before a session."""
    return RMCP_HEADER + bytes([0x06, payload_type]) + _le32(0) + _le32(0) + _le16(len(payload)) + payload


class LabSession(pyghmi_serversession.ServerSession):
    """One RMCP+ session with a console: the RAKP handshake, then IPMI and SOL payloads.

    Framing, encryption and integrity of in-session packets come from pyghmi's ``Session``
    (``_handle_ipmi_packet`` in, ``send_payload`` out).  The constructor does not call
    pyghmi's: that one registers the session in pyghmi's process-global routing table and
    answers the open-session request itself; here the BMC routes by session ID and answers
    after checking the cipher proposal.
    """

    def __new__(cls, *args, **kwargs):  # pyghmi's Session.__new__ would look for a shared client session
        return object.__new__(cls)

    def __init__(self, bmc: BmcHost, clientaddr, console_session_id: bytes, managed_session_id: int,
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
        self.pendingpayloads: deque[Any] = deque()
        self.pktqueue: deque[Any] = deque()
        self.broken = False
        self.sol_handler: Callable[[Any], None] | None = None
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
        self.bmc.send(rmcp_plus_frame(payload_type, payload), self.sockaddr)

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
            self.bmc.drop_session(self, f"RAKP 1 refused (status {status:02x}h)")
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
            self.bmc.drop_session(self, f"console refused RAKP 2 (status {data[1]:02x}h)")
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
    def _crypto(self) -> SessionCrypto | None:
        """The session's keys once established (made on first use, kept with the session)."""
        if not self.established or not self.k1 or not self.aeskey:
            return None
        crypto = self.__dict__.get("_fast_crypto")
        if crypto is None or crypto.aeskey != self.aeskey:
            crypto = self.__dict__["_fast_crypto"] = SessionCrypto(bytes(self.k1), bytes(self.aeskey))
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
