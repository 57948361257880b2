"""The simulated machines' operating systems, as seen over SSH (asyncssh server).

Each host address runs a real SSH server.  It accepts connections only while the
machine's OS is up (``Machine.ssh_up``): during POST, PXE or installation the
connection is closed straight after it opens, as a host that is still booting
would refuse it.  Password authentication with the lab's generated password;
commands answered: ``cat /etc/os-release``, ``hostname``, ``uptime``, ``uname -a``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh

from console.lab.machine import Machine

__all__ = ["SshHosts", "host_key"]


def host_key(cert_dir: str | Path) -> asyncssh.SSHKey:
    """The lab's SSH host key, generated once and kept in ``cert_dir``."""
    path = Path(cert_dir) / "ssh_host_ed25519_key"
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    key.write_private_key(str(tmp))
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


class _HostServer(asyncssh.SSHServer):
    def __init__(self, machine: Machine, username: str, password: str) -> None:
        self._machine = machine
        self._username = username
        self._password = password

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        if not self._machine.ssh_up:
            conn.close()  # OS not up: nothing is listening on a real host

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and password == self._password


class SshHosts:
    """Serves SSH for many machines in one process."""

    def __init__(self, *, cert_dir: str | Path, username: str, password: str) -> None:
        self._key = host_key(cert_dir)
        self._username = username
        self._password = password
        self._pending: list[tuple[Machine, str, int]] = []
        self._servers: list[asyncssh.SSHAcceptor] = []

    @property
    def public_key(self) -> str:
        """The host public key in OpenSSH format (for a known_hosts file)."""
        return self._key.export_public_key().decode().strip()

    def add(self, machine: Machine, address: str, port: int) -> None:
        """Serve ``machine``'s OS on address:port (0 = ephemeral) once started."""
        self._pending.append((machine, address, port))

    async def start(self) -> dict[str, int]:
        """Bind every host; returns {machine name: bound port}."""
        ports: dict[str, int] = {}
        for machine, address, port in self._pending:
            server = await asyncssh.listen(
                address,
                port,
                server_factory=lambda m=machine: _HostServer(m, self._username, self._password),
                server_host_keys=[self._key],
                process_factory=lambda proc, m=machine: self._run(proc, m),
                reuse_address=True,
            )
            self._servers.append(server)
            ports[machine.name] = server.sockets[0].getsockname()[1]
        return ports

    async def stop(self) -> None:
        """Close every listener."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except (TimeoutError, Exception):
                pass

    @staticmethod
    def _run(process: asyncssh.SSHServerProcess, machine: Machine) -> None:
        command = (process.command or "").strip()
        if command in ("cat /etc/os-release", "cat /usr/lib/os-release"):
            text = machine.os_release()
            if text:
                process.stdout.write(text)
                process.exit(0)
            else:
                process.stderr.write("cat: /etc/os-release: No such file or directory\n")
                process.exit(1)
        elif command == "hostname":
            process.stdout.write(machine.name + "\n")
            process.exit(0)
        elif command == "uptime":
            process.stdout.write(f" up {int(machine.uptime // 60)} min,  load average: 0.08, 0.03, 0.01\n")
            process.exit(0)
        elif command.startswith("uname"):
            process.stdout.write(f"Linux {machine.name} 6.6.60 #1 SMP x86_64 GNU/Linux\n")
            process.exit(0)
        elif not command:
            process.stdout.write(f"{machine.name}: interactive shells are not simulated\n")
            process.exit(0)
        else:
            process.stderr.write(f"bash: {command.split()[0]}: command not found\n")
            process.exit(127)
