"""Simulated IPMI 2.0 BMCs (RMCP+, ``lanplus``) in front of lab :class:`Machine` objects.

Every lab machine gets a BMC bound to its own loopback address (``127.x.y.z``) that
``ipmitool -I lanplus -C 3``, freeipmi and pyghmi's client can drive: chassis power and
status, boot device override (once or persistent), device ID and GUID, FRU inventory,
the SDR repository with sensor readings and thresholds, the SEL, and Serial-over-LAN
bridged to the machine's serial port.

Layout::

    IpmiLab ── one thread, one selector ─┬─ _LabBmc ── UDP socket 127.x.y.z:port ── Machine
                                         │    ├─ LabSession × n  (RMCP+ sessions)
                                         │    ├─ SolChannel      (the one SOL payload instance)
                                         │    └─ _SensorTable     (SDR records, readings)
                                         └─ wake-up socket pair   (serial output, add(), stop())

What comes from pyghmi: :class:`_LabBmc` is a :class:`pyghmi.ipmi.bmc.Bmc` (chassis control
goes through its ``control_chassis``), and :class:`LabSession` is a pyghmi ``ServerSession``,
so in-session packets (IPMI 2.0 table 13-8 framing, AES-CBC-128 confidentiality, HMAC-SHA1-96
integrity, IPMI message encoding) are handled by pyghmi's ``Session`` code.

What is replaced, and why (each was seen to fail or is documented in
``docs/protocols.md``):

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
  established sessions frame IPMI and SOL payloads with :class:`SessionCrypto` (same
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

import functools
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
from collections import Counter, deque
from collections.abc import Callable

import pyghmi.ipmi.bmc as pyghmi_bmc

from console.lab.ipmi_records import _checksum, _fru_image, _le16, _le32, _sel_record, _sel_record_id, _SensorTable
from console.lab.ipmi_session import (
    CC_INSUFFICIENT_PRIVILEGE,
    CC_INVALID_COMMAND,
    CC_INVALID_DATA,
    CC_NOT_PRESENT,
    CC_OK,
    CC_PARAMETER_NOT_SUPPORTED,
    CC_PARAMETER_OUT_OF_RANGE,
    CC_PAYLOAD_ALREADY_ACTIVE,
    CC_REQUEST_LENGTH_INVALID,
    CC_RESERVATION_INVALID,
    NETFN_APP,
    NETFN_CHASSIS,
    NETFN_SENSOR,
    NETFN_STORAGE,
    NETFN_TRANSPORT,
    PAYLOAD_IPMI,
    PAYLOAD_OPEN_SESSION_REQUEST,
    PAYLOAD_OPEN_SESSION_RESPONSE,
    PAYLOAD_RAKP1,
    PAYLOAD_RAKP3,
    PAYLOAD_SOL,
    PRIV_ADMIN,
    PRIV_CALLBACK,
    PRIV_OPERATOR,
    PRIV_USER,
    RMCP_HEADER,
    RMCP_ILLEGAL_PARAMETER,
    RMCP_INVALID_AUTH_ALGORITHM,
    RMCP_INVALID_CONFIDENTIALITY_ALGORITHM,
    RMCP_INVALID_INTEGRITY_ALGORITHM,
    RMCP_INVALID_ROLE,
    RMCP_NO_RESOURCES,
    RMCP_UNAUTHORIZED_ROLE,
    LabSession,
    rmcp_plus_frame,
)
from console.lab.ipmi_sol import SOL_MAX_PAYLOAD, SolChannel
from console.lab.machine import BootDevice, Machine

__all__ = ["FLAVORS", "IpmiLab"]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ constants
LAN_CHANNEL = 1

#: Cipher suite 3: RAKP-HMAC-SHA1 (1), HMAC-SHA1-96 (1), AES-CBC-128 (1) (IPMI 2.0 table 22-20).
CIPHER_SUITE_3 = (1, 1, 1)
#: Get Channel Cipher Suites record data: one standard record, ID 3, with its three algorithms.
CIPHER_SUITE_RECORDS = bytes([0xC0, 0x03, 0x01, 0x41, 0x81])

#: Manufacturer ID reported in Get Device ID: IANA 32473, reserved for documentation (RFC 5612).
#: A real vendor's number would make clients load that vendor's OEM extensions.
MANUFACTURER_ID = 32473

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


#: BMC behaviours :meth:`IpmiLab.add` takes (``flavor=``):
#:
#: ``standard``  boot flags as the IPMI spec has them: read back valid, once or persistent.
#: ``openipmi``  as OpenIPMI's ``ipmi_sim``: the boot flags (parameter 5) are stored as they
#:               came but without the valid bit, so ``chassis bootdev pxe`` reads back
#:               ``00 04 00 00 00`` ("Boot Flag Invalid", Force PXE); the host still boots
#:               from the selector, once, and the stored bytes stay as they are after that
#:               boot (ipmi_sim does not see the host boot) until they are written again.
FLAVORS = ("standard", "openipmi")

#: SOL faults (``IpmiLab.sol_fault[address]``, or ``add(sol_fault=...)``):
#:
#: ``drop``  the BMC deactivates the payload by itself ``sol_drop_after`` seconds after
#:           activation or after ``sol_drop_bytes`` of output, whichever comes first, and
#:           tells the console (status bit "SOL deactivated"); the session stays up, so
#:           the console may activate again (and is dropped again).
#: ``held``  another client holds the payload: Activate Payload answers 80h ("payload
#:           already active on another session") until someone deactivates it (a forced
#:           takeover); the other client takes it back whenever it is free again after a
#:           session of ours ends (a console server that reconnects).
SOL_FAULTS = ("", "drop", "held")


# ======================================================================== BMC
class _LabBmc(pyghmi_bmc.Bmc):
    """One simulated BMC: a UDP socket, its sessions, and the IPMI command set for a machine.

    ``pyghmi.ipmi.bmc.Bmc`` supplies the chassis-control dispatch and the power hook names;
    its constructor is not called because it binds through pyghmi's global socket pool.
    """

    HANDSHAKE_TIMEOUT = 10.0  # seconds a half-open session (no RAKP 3 yet) is kept

    def __init__(self, lab: IpmiLab, machine: Machine, sock: socket.socket, username: bytes, password: bytes,
                 flavor: str = "standard") -> None:
        self.lab = lab
        self.flavor = flavor
        #: openipmi flavor: parameter 5 as stored (valid bit dropped), read back as is
        self._stored_boot_flags: bytes | None = None
        self.machine = machine
        self.serversocket = sock
        self.address, self.port = sock.getsockname()[:2]
        self.username = username
        self.password = password
        self.uuid = machine.uuid
        self.guid_bytes = machine.uuid.bytes_le  # wire order of Get System GUID (SMBIOS order)
        self.sessions: dict[int, LabSession] = {}
        #: in-session IPMI requests this BMC received, by (netfn, command)
        self.commands: Counter[tuple[int, int]] = Counter()
        self.sol: SolChannel | None = None
        self.sensors = _SensorTable(machine)
        self.fru = _fru_image(machine)
        self._sdr_reservation = 0
        self._sel_reservation = 0
        self._sel_erased_at: float | None = None
        self._boot_uefi = False  # remembered from Set System Boot Options (the machine has no notion)
        self._boot_params = {0: bytes([0x00]), 3: bytes([0x00]), 4: bytes([0x00, 0x00])}
        self._identify_until = 0.0
        self._closed = False
        #: "held" fault: the ID of the session (none of ours) that holds the SOL payload, or 0
        self.sol_holder = 0
        self.set_sol_fault(lab.sol_fault.get(self.address, ""))

    def set_sol_fault(self, mode: str) -> None:
        """Apply a SOL fault (see :data:`SOL_FAULTS`); the lab thread or before the lab starts."""
        if mode not in SOL_FAULTS:
            raise ValueError(f"unknown SOL fault {mode!r} (known: {', '.join(m for m in SOL_FAULTS if m)})")
        self.lab.sol_fault[self.address] = mode
        if mode == "held":
            self._hold_sol()
        else:
            self.sol_holder = 0

    def _hold_sol(self) -> None:
        """The other client takes the payload whenever it is free (as a console server would)."""
        if self.sol is None and not self.sol_holder:
            self.sol_holder = 0x50C00000 | (zlib.crc32(self.address.encode()) & 0xFFFF)

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
            self.send(rmcp_plus_frame(PAYLOAD_OPEN_SESSION_RESPONSE, bytes([tag, status, 0, 0]) + console_id), addr)
            return
        managed_id = 0
        while managed_id == 0 or managed_id in self.sessions:
            managed_id = struct.unpack("<I", os.urandom(4))[0]
        granted = requested or PRIV_ADMIN  # 0 means "the highest level the proposal allows"
        session = LabSession(self, addr, console_id, managed_id, granted)
        self.sessions[managed_id] = session
        algorithms = b"".join(bytes([kind, 0, 0, 8, algo, 0, 0, 0]) for kind, algo in enumerate(CIPHER_SUITE_3))
        response = bytes([tag, 0, granted, 0]) + console_id + _le32(managed_id) + algorithms
        self.send(rmcp_plus_frame(PAYLOAD_OPEN_SESSION_RESPONSE, response), addr)

    @staticmethod
    def _check_proposal(request: bytes) -> int:
        """0 if the proposed algorithms are cipher suite 3's, else the RMCP+ status code to send."""
        if len(request) < 32:
            return RMCP_ILLEGAL_PARAMETER
        refusals = (RMCP_INVALID_AUTH_ALGORITHM, RMCP_INVALID_INTEGRITY_ALGORITHM,
                    RMCP_INVALID_CONFIDENTIALITY_ALGORITHM)
        for kind, (wanted, refusal) in enumerate(zip(CIPHER_SUITE_3, refusals, strict=True)):
            record = request[8 + 8 * kind:16 + 8 * kind]
            if record[0] != kind:
                return RMCP_ILLEGAL_PARAMETER
            if record[3] == 0:
                continue  # a null payload lets the BMC choose: it chooses suite 3
            if record[4] & 0x3F != wanted:
                return refusal
        return 0

    def drop_session(self, session: LabSession, reason: str) -> None:
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
        self.lab.commands[key] += 1
        self.commands[key] += 1
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
        # bits 6:5 = 01b: power restore policy "previous"
        power = (0x01 if self.machine.powered else 0x00) | (0x08 if fault == "psu" else 0) | (0b01 << 5)
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
        if selector == 5 and self._stored_boot_flags is not None:
            value = self._stored_boot_flags
        elif selector == 5:
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
            if self.flavor == "openipmi":
                self._stored_boot_flags = bytes([flags & 0x7F]) + bytes(data[2:6]).ljust(4, b"\0")
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
        if self.sol is not None or self.sol_holder:
            return session.send_ipmi_response(code=CC_PAYLOAD_ALREADY_ACTIVE)
        # Aux data, inbound and outbound payload sizes, UDP port (LS byte first), VLAN none.
        response = bytes(4) + _le16(SOL_MAX_PAYLOAD) + _le16(SOL_MAX_PAYLOAD) + _le16(self.port) + b"\xff\xff"
        session.send_ipmi_response(data=response)
        drop = None
        if self.lab.sol_fault.get(self.address) == "drop":
            drop = (self.lab.sol_drop_after, self.lab.sol_drop_bytes)
        self.sol = SolChannel(self, session, drop=drop)
        self.lab.sol_started(self.sol)
        log.debug("%s: SOL activated by session %08x", self, session.localsid)

    def deactivate_payload(self, request, session):
        """Deactivate Payload: any session of this BMC may end SOL (``ipmitool sol deactivate``)."""
        data = request["data"]
        if data[0] & 0x3F != PAYLOAD_SOL or data[1] & 0x0F != 1:
            return session.send_ipmi_response(code=CC_INVALID_DATA)
        if self.sol is None and self.sol_holder:
            log.debug("%s: SOL taken from session %08x by session %08x", self, self.sol_holder, session.localsid)
            self.sol_holder = 0  # the other client's console is cut off
            return session.send_ipmi_response()
        if self.sol is None:
            return session.send_ipmi_response(code=CC_PAYLOAD_ALREADY_ACTIVE)  # 80h: already deactivated
        session.send_ipmi_response()
        self.end_sol(f"deactivated by session {session.localsid:08x}", notify=self.sol.session is not session)

    def end_sol(self, reason: str, notify: bool = False) -> None:
        sol, self.sol = self.sol, None
        if sol is not None:
            sol.close(notify)
            self.lab.sol_ended(sol)
            log.debug("%s: SOL ended: %s", self, reason)
            if self.lab.sol_fault.get(self.address) == "held" and not self._closed:
                self._hold_sol()

    def _cmd_payload_activation_status(self, request, session):
        if request["data"][0] & 0x3F != PAYLOAD_SOL:
            return session.send_ipmi_response(data=[0x00, 0x00, 0x00])
        session.send_ipmi_response(data=[0x01, 0x01 if self.sol or self.sol_holder else 0x00, 0x00])

    def _cmd_payload_instance_info(self, request, session):
        data = request["data"]
        if data[0] & 0x3F != PAYLOAD_SOL or data[1] & 0x0F != 1:
            return session.send_ipmi_response(code=CC_INVALID_DATA)
        if self.sol is None:
            return session.send_ipmi_response(data=_le32(self.sol_holder) + bytes([1 if self.sol_holder else 0])
                                              + bytes(7))
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
        data = (bytes([0x51]) + _le16(len(events)) + _le16(free) + _le32(last_add) + _le32(erased)
                + bytes([overflow | 0x02]))
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
    BMCs), ``sol_retry_interval`` (1 s), ``sol_max_tries`` (5), and for the ``drop`` SOL
    fault ``sol_drop_after`` (2 s) and ``sol_drop_bytes`` (16 KiB).
    """

    def __init__(self) -> None:
        self.session_timeout = 60.0
        #: address -> fault mode ("" none, "silent" drops every packet, "garbage" answers truncated
        #: junk, "truncated" sends the first half of every real answer)
        self.fault: dict[str, str] = {}
        self.max_sessions_per_bmc = 16
        self.sol_retry_interval = 1.0
        self.sol_max_tries = 5
        #: address -> SOL fault (see :data:`SOL_FAULTS`); change it with :meth:`set_sol_fault`
        self.sol_fault: dict[str, str] = {}
        self.sol_drop_after = 2.0  # "drop" fault: seconds of SOL after activation ...
        self.sol_drop_bytes = 16 * 1024  # ... or bytes of output, whichever comes first
        self._bmcs: list[_LabBmc] = []
        self._bmcs_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()  # epoll on Linux: no 1,024-descriptor ceiling
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._wake_pending = False
        self._calls: deque[Callable[[], object]] = deque()
        self._sols: set[SolChannel] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = False
        self._next_sweep = 0.0
        #: datagrams received by every BMC of this lab (requests, handshakes included; for benchmarks)
        self.received = 0
        #: in-session IPMI requests by (netfn, command), every BMC of this lab (tests, benchmarks);
        #: each BMC counts its own in ``commands`` too
        self.commands: Counter[tuple[int, int]] = Counter()

    # ----------------------------------------------------------------- public API
    def add(self, machine: Machine, address: str, port: int, username: bytes, password: bytes,
            flavor: str = "standard", sol_fault: str = "") -> int:
        """Serve a BMC for ``machine`` on ``address:port`` (loopback only); returns the bound port.

        ``port`` 0 picks a free port.  One user, ``username``/``password``, with
        administrator privilege; ``flavor`` is one of :data:`FLAVORS`, ``sol_fault`` one of
        :data:`SOL_FAULTS`.  May be called
        before or after :meth:`start`.
        """
        if self._stopped:
            raise RuntimeError("IpmiLab is stopped")
        if flavor not in FLAVORS:
            raise ValueError(f"unknown IPMI lab flavor {flavor!r} (known: {', '.join(FLAVORS)})")
        if sol_fault not in SOL_FAULTS:
            raise ValueError(f"unknown SOL fault {sol_fault!r} (known: drop, held)")
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
        if sol_fault:
            self.sol_fault[address] = sol_fault
        bmc = _LabBmc(self, machine, sock, bytes(username), bytes(password), flavor)
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

    def set_sol_fault(self, address: str, mode: str) -> None:
        """Give the BMC at ``address`` a SOL fault (:data:`SOL_FAULTS`; "" heals it), from any thread."""
        if mode not in SOL_FAULTS:
            raise ValueError(f"unknown SOL fault {mode!r} (known: drop, held)")
        with self._bmcs_lock:
            bmcs = [b for b in self._bmcs if b.address == address]
        if not bmcs:
            raise ValueError(f"no lab IPMI BMC at {address}")
        for bmc in bmcs:
            if self._thread is None:
                bmc.set_sol_fault(mode)
            else:
                self.call_soon(functools.partial(bmc.set_sol_fault, mode))

    def session_count(self, address: str | None = None) -> int:
        """Established RMCP+ sessions, on every BMC or on those bound to ``address``."""
        with self._bmcs_lock:
            bmcs = list(self._bmcs)
        return sum(
            sum(1 for s in list(bmc.sessions.values()) if s.established)
            for bmc in bmcs
            if address is None or bmc.address == address
        )

    def commands_of(self, address: str) -> Counter[tuple[int, int]]:
        """In-session requests the BMCs bound to ``address`` received, by (netfn, command)."""
        with self._bmcs_lock:
            bmcs = [b for b in self._bmcs if b.address == address]
        total: Counter[tuple[int, int]] = Counter()
        for bmc in bmcs:
            total.update(bmc.commands)
        return total

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

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the lab thread at its next turn."""
        self._calls.append(fn)
        self.wake(force=True)

    def sol_started(self, sol: SolChannel) -> None:
        self._sols.add(sol)

    def sol_ended(self, sol: SolChannel) -> None:
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
                self._guarded(functools.partial(sol.pump, now))
            if now >= self._next_sweep:
                self._next_sweep = now + 1.0
                for bmc in list(self._bmcs):
                    self._guarded(functools.partial(bmc.expire_sessions, now))

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
            self.received += 1
            try:
                bmc.dispatch(data, addr)
            except Exception:
                log.exception("%s: failed on a packet from %s", bmc, addr)
