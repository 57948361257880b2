"""The lab's SSH serial consoles (console.lab.ssh_console), driven by asyncssh's client.

A node whose ``bmc.console`` is ``kind: ssh`` gets a real SSH server on its BMC
address, as OpenBMC serves the host console on port 2200; the site context sees the
port the lab really bound and the lab's known_hosts file vouches for its key.
"""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from console.lab.lab import Lab

SITE = """
site: sshcon
images:
  - {name: flatcar, version: "4081.2.1", kernel: "http://127.0.0.1:8069/k", initrd: "http://127.0.0.1:8069/i"}
defaults:
  bmc:
    protocol: redfish
    scheme: http
    username: admin
    password: "lab:bmc"
    console: {kind: ssh, port: 2200, known_hosts: "lab:known_hosts"}
  image: flatcar@4081.2.1
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r1
    nodes:
      - {name: "sc-n[1-2]", host: "127.61.0.[1-2]", bmc: {address: "127.62.0.[1-2]"}}
      - name: sc-drac
        host: 127.61.0.3
        bmc: {address: 127.62.0.3, console: {kind: ssh, port: 2200, command: "console com2",
                                             known_hosts: "lab:known_hosts"}}
      - {name: sc-ipmi, host: 127.61.0.4, bmc: {protocol: ipmi, address: 127.62.0.4, console: null}}
lab:
  powered_off: [sc-n2]
"""


class Console(asyncssh.SSHClientSession):
    """Collects what the console prints."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()

    def data_received(self, data, datatype) -> None:
        self.out += data
        self._changed.set()

    def connection_lost(self, exc) -> None:
        self.closed.set()
        self._changed.set()

    async def expect(self, pattern: bytes, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while pattern not in self.out:
                if self.closed.is_set():
                    raise AssertionError(f"console closed before {pattern!r}; got {bytes(self.out[-300:])!r}")
                self._changed.clear()
                await self._changed.wait()
        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} not on the console; got {bytes(self.out[-300:])!r}") from None


@pytest.fixture
def lab(site_lab: Lab) -> Lab:
    return site_lab


def _connect(lab: Lab, node: str, **kwargs):
    bmc = lab.effective_site().node(node).bmc
    assert bmc.console is not None
    options = {"username": "admin", "password": lab.secrets["bmc"], "known_hosts": lab.secrets["known_hosts"],
               "client_keys": None, "connect_timeout": 10}
    options.update(kwargs)
    return asyncssh.connect(bmc.address, bmc.console.port, **options)


async def _open(conn, command: str | None = None) -> tuple[asyncssh.SSHClientChannel, Console]:
    chan, session = await conn.create_session(Console, command, term_type="vt100", term_size=(80, 24),
                                              encoding=None)
    return chan, session


def test_the_site_context_sees_the_bound_port_and_the_key(site_lab):
    site = site_lab.effective_site()
    known = open(site_lab.secrets["known_hosts"]).read()
    for name in ("sc-n1", "sc-n2", "sc-drac"):
        console = site.node(name).bmc.console
        assert console is not None and console.kind == "ssh"
        assert console.port not in (0, 2200)  # an ephemeral lab: the port really bound
        assert f"[{site.node(name).bmc.address}]:{console.port} ssh-ed25519 " in known
    assert site.node("sc-ipmi").bmc.console is None
    assert "console_port" not in site_lab.endpoints["nodes"]["sc-ipmi"]  # SOL only


async def test_login_prompt_shell_commands_and_exit(lab):
    async with _connect(lab, "sc-n1") as conn:
        chan, con = await _open(conn)
        await con.expect(b"sc-n1 login: ")  # replayed history: the prompt it last printed
        chan.write(b"core\r")
        await con.expect(b"core\r\nPassword: ")  # the user name echoed, the password not
        chan.write(lab.secrets["ssh"].encode() + b"\r")
        await con.expect(b"core@sc-n1:~$ ")
        assert lab.secrets["ssh"].encode() not in con.out
        chan.write(b"cat /etc/os-release\r")
        await con.expect(b"IMAGE_VERSION=4081.2.1\r\n")
        chan.write(b"uname -a\r")
        await con.expect(b"Linux sc-n1 6.6.60-flatcar")
        chan.write(b"exit\r")
        await con.expect(b"logout\r\n\r\nFlatcar Container Linux 4081.2.1 (127.61.0.1)\r\n\r\nsc-n1 login: ")
        chan.close()


async def test_wrong_console_password_gets_login_incorrect(lab):
    async with _connect(lab, "sc-n1") as conn:
        chan, con = await _open(conn)
        await con.expect(b"login: ")
        chan.write(b"core\rnot-the-password\r")
        await con.expect(b"Login incorrect\r\nsc-n1 login: ")
        chan.close()


async def test_wrong_bmc_password_is_refused(lab):
    with pytest.raises(asyncssh.PermissionDenied):
        async with _connect(lab, "sc-n1", password="not-the-password"):
            pass


async def test_unknown_host_key_is_refused(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with _connect(lab, "sc-n1", known_hosts=str(empty)):
            pass


async def test_break_reaches_the_running_kernel(lab):
    async with _connect(lab, "sc-n1") as conn:
        chan, con = await _open(conn)
        await con.expect(b"login: ")
        chan.send_break(250)
        await con.expect(b"SysRq : HELP : loglevel(0-9) reboot(b)")
        chan.close()


async def test_two_clients_see_the_same_console(lab):
    async with _connect(lab, "sc-n1") as one, _connect(lab, "sc-n1") as two:
        chan1, con1 = await _open(one)
        chan2, con2 = await _open(two)
        await con1.expect(b"login: ")
        await con2.expect(b"login: ")
        chan1.write(b"shared-typing\r")  # echoed by the machine: both see it
        await con1.expect(b"shared-typing\r\nPassword: ")
        await con2.expect(b"shared-typing\r\nPassword: ")
        chan2.write(b"\x03")  # ^C from the other one: both see the fresh prompt
        await con1.expect(b"^C\r\nPassword: ")
        await con2.expect(b"^C\r\nPassword: ")
        chan1.close()
        chan2.close()


async def test_powered_off_host_console_answers_and_shows_the_boot(lab):
    """The BMC is always up: its console answers while the host is off and then shows the boot."""
    async with _connect(lab, "sc-n2") as conn:
        chan, con = await _open(conn)
        await asyncio.sleep(0)  # connected while the host is off: nothing on the line
        await asyncio.to_thread(lab.call, "sc-n2", {"cmd": "power", "node": "sc-n2", "action": "on"})
        await con.expect(b"BIOS 1.4.2")
        await con.expect(b"Booting from Hard Disk...")
        await con.expect(b"sc-n2 login: ")
        chan.close()


async def test_a_console_command_is_needed_where_the_inventory_names_one(lab):
    async with _connect(lab, "sc-drac") as conn:
        result = await conn.run("racadm getsysinfo", encoding=None, timeout=10)
        assert result.exit_status == 127
        assert b"unknown command" in result.stdout
        chan, con = await _open(conn, "console com2")
        await con.expect(b"sc-drac login: ")
        chan.close()


async def test_stopping_the_lab_closes_connected_consoles(site_lab):
    from console.lab.lab import Lab as LabClass
    from inventory.loader import load_site_text

    lab = LabClass(load_site_text(SITE.replace("site: sshcon", "site: sshcon2"), "SITE"), ephemeral=True,
                   time_scale=0.02)
    await asyncio.to_thread(lab.start)
    try:
        async with _connect(lab, "sc-n1") as conn:
            chan, con = await _open(conn)
            await con.expect(b"login: ")
            await asyncio.to_thread(lab.stop)
            await asyncio.wait_for(con.closed.wait(), 10)
    finally:
        await asyncio.to_thread(lab.stop)
