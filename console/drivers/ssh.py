"""Node facts over SSH (asyncssh): which image a node is really running.

The running image is read from the node's release file (``/etc/os-release``:
``IMAGE_ID``/``IMAGE_VERSION``, falling back to ``ID``/``VERSION_ID``; ``IMAGE_SHA256``,
where the image carries it, is the digest of the build installed).  Host keys
are checked against the site's ``ssh.known_hosts`` file (``lab:known_hosts`` names
the running lab's file; ``ignore`` disables the check and is meant for labs only).
A node without SSH access reports ``unknown`` with the reason: never an exception
out of :func:`read_image`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import asyncssh

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.secrets import Secrets
from inventory.errors import SecretError
from inventory.model import Node, SshConfig

__all__ = ["RunningImage", "read_image", "parse_os_release", "MAX_RELEASE"]

#: the most of /etc/os-release read (a real one is well under 1 KiB)
MAX_RELEASE = 64 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RunningImage:
    """What a node reports it runs; ``ref`` is ``name@version`` or None when unknown;
    ``sha256`` the digest its release file names (None: it names none, or not 64 hex digits)."""

    ref: str | None
    error: str | None = None
    sha256: str | None = None


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5) text: KEY=value lines, optionally quoted."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def _image_ref(release: dict[str, str]) -> str:
    name = release.get("IMAGE_ID") or release.get("ID")
    version = release.get("IMAGE_VERSION") or release.get("VERSION_ID")
    if not name or not version:
        raise ProtocolError("os-release names no IMAGE_ID/IMAGE_VERSION (nor ID/VERSION_ID)")
    return f"{name}@{version}"


def _known_hosts(cfg: SshConfig, secrets: Secrets):
    kh = cfg.known_hosts
    if kh is None:
        return ()  # asyncssh default: ~/.ssh/known_hosts
    if kh == "ignore":
        return None
    if kh.startswith("lab:"):
        return secrets.resolve(kh).get()
    return kh


async def _read(node: Node, cfg: SshConfig, secrets: Secrets, timeout: float) -> str:
    kwargs: dict = {"username": cfg.username, "port": node.ssh_port or cfg.port, "connect_timeout": timeout}
    kh = _known_hosts(cfg, secrets)
    if kh != ():
        kwargs["known_hosts"] = kh
    if cfg.key:
        kwargs["client_keys"] = [asyncssh.import_private_key(secrets.resolve(cfg.key).get())]
    if cfg.password:
        kwargs["password"] = secrets.resolve(cfg.password).get()
    if not cfg.key:
        kwargs.setdefault("client_keys", None)  # don't offer the operator's own keys unasked
    try:
        async with asyncssh.connect(node.host, **kwargs) as conn:
            status, out = await asyncio.wait_for(_cat(conn), timeout)
    except asyncssh.PermissionDenied as exc:
        raise AuthFailed("ssh: permission denied") from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        raise AuthFailed("ssh: host key not verifiable (known_hosts)") from exc
    except TimeoutError as exc:
        raise Timeout("ssh: no answer in time") from exc
    except ConnectionRefusedError as exc:
        raise Unreachable("ssh: connection refused") from exc
    except (asyncssh.ConnectionLost, ConnectionResetError) as exc:
        # one text for one cause: the host closed the connection before it answered (a
        # host still booting, or off behind a proxy) is seen as either, by timing
        raise Unreachable("ssh: connection closed by the host") from exc
    except asyncssh.DisconnectError as exc:
        raise Unreachable(f"ssh: {type(exc).__name__}") from exc
    except OSError as exc:
        raise Unreachable(f"ssh: {exc.strerror or type(exc).__name__}") from exc
    except asyncssh.Error as exc:
        raise ProtocolError(f"ssh: {type(exc).__name__}") from exc
    if status != 0:
        raise ProtocolError(f"ssh: reading /etc/os-release exited {status}")
    return out


async def _cat(conn: asyncssh.SSHClientConnection) -> tuple[int | None, str]:
    """``cat /etc/os-release``: its exit status and at most :data:`MAX_RELEASE` characters."""
    async with conn.create_process("cat /etc/os-release", stdin=asyncssh.DEVNULL) as proc:
        chunks: list[str] = []
        size = 0
        while chunk := await proc.stdout.read(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RELEASE:
                raise ProtocolError(f"ssh: /etc/os-release is longer than {MAX_RELEASE} characters")
        await proc.wait_closed()
        return proc.exit_status, "".join(chunks)


async def read_image(node: Node, cfg: SshConfig, secrets: Secrets, *, timeout: float = 10.0) -> RunningImage:
    """The image ``node`` runs, or ``RunningImage(None, reason)``."""
    if not node.host:
        return RunningImage(None, "no host address in the inventory")
    try:
        text = await _read(node, cfg, secrets, timeout)
        release = parse_os_release(text)
        digest = release.get("IMAGE_SHA256", "").lower()
        return RunningImage(_image_ref(release), sha256=digest if _SHA256.match(digest) else None)
    except (DriverError, SecretError) as exc:
        return RunningImage(None, str(exc))
