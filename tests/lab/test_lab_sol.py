"""The lab's Serial-over-LAN as an operator meets it: ``ipmitool sol activate`` in a terminal.

ipmitool runs in a pseudo-terminal (it puts its terminal in raw mode and reads the
``~.`` escape from it), against BMCs of a lab started from an inventory, including
the two SOL faults the lab's ``sol_faults`` section gives: ``drop`` (the BMC ends the
session by itself) and ``held`` (another client holds the payload until it is taken over).
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from console.lab.lab import Lab
from tests.conftest import need
from tests.support import wait_for

pytestmark = pytest.mark.thirdparty

SITE = """
site: solfaults
images:
  - {name: flatcar, version: "4081.2.1", kernel: "http://127.0.0.1:8069/k", initrd: "http://127.0.0.1:8069/i"}
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r1
    nodes:
      - {name: "sol-n[1-4]", host: "127.63.0.[1-4]", bmc: {address: "127.64.0.[1-4]"}}
lab:
  sol_faults: {sol-n2: drop, sol-n3: held}
"""


class Terminal:
    """A command in a pseudo-terminal: type into it, read what it shows, see it exit."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the command (its stdio is the pty)
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.out = bytearray()
        self.status: int | None = None

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the child is gone and the pty closed
                chunk = b""
            self.out += chunk
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def expect(self, pattern: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.out:
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the terminal; got {bytes(self.out[-400:])!r}")
            self._pump(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; shows {bytes(self.out[-400:])!r}")
            self._pump(0.05)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.status = -9
        os.close(self.fd)


@pytest.fixture
def lab(site_lab: Lab) -> Lab:
    return site_lab


def _base(lab: Lab, node: str) -> list[str]:
    bmc = lab.effective_site().node(node).bmc
    return [need("ipmitool"), "-I", "lanplus", "-C", "3", "-H", bmc.address, "-p", str(bmc.port),
            "-U", "admin", "-P", lab.secrets["bmc"], "-N", "1", "-R", "2"]


def _ipmitool(lab: Lab, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_base(lab, node) + list(args), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def _payload_status(lab: Lab, node: str) -> str:
    """Get Payload Activation Status for SOL: 'active' or 'inactive'."""
    out = _ipmitool(lab, node, "raw", "0x06", "0x4a", "0x01").stdout.split()
    return "active" if len(out) >= 2 and int(out[1], 16) & 0x01 else "inactive"


@pytest.fixture
def sol(lab: Lab):
    """Open ``ipmitool sol activate`` terminals; every one is killed at the end if still running."""
    terminals: list[Terminal] = []

    def open_(node: str) -> Terminal:
        term = Terminal(_base(lab, node) + ["sol", "activate"])
        terminals.append(term)
        return term

    yield open_
    for term in terminals:
        term.close()


def test_sol_shows_the_login_prompt_echoes_keys_and_leaves_with_tilde_dot(lab, sol):
    term = sol("sol-n1")
    term.expect(b"[SOL Session operational.  Use ~? for help]")
    term.expect(b"sol-n1 login: ")  # the history replayed: the prompt the machine last printed
    term.type(b"core\r")
    term.expect(b"core\r\nPassword: ")  # the machine echoes the keys typed
    term.type(lab.secrets["ssh"].encode() + b"\r")
    term.expect(b"core@sol-n1:~$ ")
    term.type(b"uname -a\r")
    term.expect(b"Linux sol-n1 6.6.60-flatcar")
    term.type(b"exit\r")
    term.expect(b"logout")
    term.expect(b"sol-n1 login: ", timeout=5)
    term.type(b"~.")  # at the start of a line (after the Enter above): ipmitool's escape
    assert term.wait() == 0
    assert b"[terminated ipmitool]" in term.out
    wait_for(lambda: _payload_status(lab, "sol-n1") == "inactive", timeout=10, what="SOL deactivated on exit")


def test_tilde_mid_line_is_typed_not_an_escape(lab, sol):
    term = sol("sol-n1")
    term.expect(b"login: ")
    term.type(b"a~.b\r")  # not after a newline: sent as keys, echoed by the machine
    term.expect(b"a~.b\r\nPassword: ")
    assert term.status is None
    term.type(b"\x03")  # ^C: back to the login prompt
    term.expect(b"login: ")
    term.type(b"\r~.")
    assert term.wait() == 0


def test_sol_break_reaches_the_running_kernel(lab, sol):
    term = sol("sol-n1")
    term.expect(b"login: ")
    term.type(b"\r~B")  # ipmitool's escape for a serial BREAK
    term.expect(b"SysRq : HELP : loglevel(0-9)")
    term.type(b"\r~.")
    assert term.wait() == 0


def test_drop_fault_ends_the_session_and_a_new_one_is_dropped_again(lab, sol):
    for _ in range(2):  # the session is free again at once: a console reconnects, and is dropped again
        term = sol("sol-n2")
        term.expect(b"sol-n2 login: ")
        assert _payload_status(lab, "sol-n2") == "active"
        # the BMC ends the payload by itself (after 1 s in this fast lab) ...
        wait_for(lambda: _payload_status(lab, "sol-n2") == "inactive", timeout=10, what="the BMC to drop SOL")
        # ... and no longer takes the console's keys: ipmitool gives up on them and says so
        term.type(b"x")
        assert term.wait(timeout=20) != 0
        assert b"SOL session closed by BMC" in term.out


def test_held_fault_refuses_activation_until_taken_over(lab, sol):
    refused = _ipmitool(lab, "sol-n3", "sol", "activate")
    assert refused.returncode != 0
    assert "SOL payload already active on another session" in refused.stderr
    assert _payload_status(lab, "sol-n3") == "active"
    taken = _ipmitool(lab, "sol-n3", "sol", "deactivate")  # the forced takeover's first step
    assert taken.returncode == 0, taken.stderr
    term = sol("sol-n3")
    term.expect(b"[SOL Session operational.")
    term.expect(b"sol-n3 login: ")
    term.type(b"root\r")
    term.expect(b"root\r\nPassword: ")
    term.type(b"\r~.")
    assert term.wait() == 0
    # the other client takes it back once our session has ended
    wait_for(lambda: "already active" in _ipmitool(lab, "sol-n3", "sol", "activate").stderr, timeout=10,
             what="the other client to hold SOL again")


def test_sol_faults_can_be_set_and_healed_while_the_lab_runs(lab, sol):
    lab.fault("sol", "sol-n4", "held")
    assert "already active" in _ipmitool(lab, "sol-n4", "sol", "activate").stderr
    lab.fault("sol", "sol-n4", "")
    assert _ipmitool(lab, "sol-n4", "sol", "deactivate").returncode != 0  # nothing holds it now
    term = sol("sol-n4")
    term.expect(b"sol-n4 login: ")
    term.type(b"\r~.")
    assert term.wait() == 0


def test_sol_faults_only_on_ipmi_sol_nodes(private_runtime_dir):
    from console.errors import LabError
    from inventory.loader import load_site_text

    text = SITE.replace("sol-n2: drop", "sol-n2: drop, sol-rf: held").replace(
        'bmc: {address: "127.64.0.[1-4]"}}',
        'bmc: {address: "127.64.0.[1-4]"}}\n      - {name: sol-rf, bmc: {protocol: redfish, address: 127.64.0.9}}')
    with pytest.raises(LabError, match="sol_faults selects node sol-rf"):
        Lab(load_site_text(text, "SITE"), ephemeral=True).start()
