"""The embedded ``ipxe`` provisioner: per-MAC iPXE scripts in a boot root, served over HTTP.

Writing side (:class:`IpxeProvisioner`): ``assign`` renders the image's script and
writes ``<root>/<aa-bb-cc-dd-ee-ff>.ipxe`` atomically (temporary file, fsync, rename),
so a node booting at that moment gets the old script or the new one, never half of
one.  The replaced script is kept as ``<mac>.ipxe.previous`` for :meth:`rollback`
(a file, so a rollback works from a later process too).

Serving side (:class:`IpxeServer`): ``GET /boot/<aa-bb-cc-dd-ee-ff>.ipxe`` from the
root, and ``GET /fetches[?mac=aa-bb-..]`` as JSON: every script fetch with time,
client address, path and status.  That list is how a reimage sees "PXE fetch
seen".  A site runs the server next to its DHCP (the lab runs it in its worker).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

from console.errors import ActionError, ProtocolError, Timeout, Unreachable
from console.httpserve import HttpService
from console.provision import Assignment, Fetch
from inventory.model import Image, Node

__all__ = ["IpxeProvisioner", "IpxeServer", "render_script", "script_name"]

_SCRIPT = re.compile(r"^[0-9a-f]{2}(-[0-9a-f]{2}){5}\.ipxe$")
_IMAGE_LINE = re.compile(r"^\s*set\s+image-(name|version)\s+(\S+)\s*$", re.M)
_KEEP_FETCHES = 5000


def script_name(mac: str) -> str:
    """``aa-bb-cc-dd-ee-ff.ipxe`` for MAC ``AA:BB:CC:DD:EE:FF``."""
    return mac.lower().replace(":", "-") + ".ipxe"


def render_script(node: Node, image: Image) -> str:
    """The iPXE script that installs ``image`` on ``node``.

    Image variables first (``image-name``, ``image-version``, ``image-sha256``), then a
    kernel line carrying ``fleet.image=NAME@VERSION`` for the installer.
    """
    if not image.kernel or not image.initrd:
        raise ActionError(f"image {image.ref} has no kernel/initrd URL (PXE boots a kernel and an initrd)")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        "#!ipxe",
        f"# fleet-console: {image.ref} for {node.name} ({node.mac}), written {stamp}",
        f"set image-name {image.name}",
        f"set image-version {image.version}",
    ]
    if image.sha256:
        lines.append(f"set image-sha256 {image.sha256}")
    initrd_name = image.initrd.rstrip("/").rsplit("/", 1)[-1] or "initrd"
    cmdline = " ".join(p for p in (f"initrd={initrd_name}", "fleet.image=${image-name}@${image-version}",
                                   image.cmdline, "console=ttyS0,115200n8") if p)
    lines += [f"kernel {image.kernel} {cmdline}", f"initrd {image.initrd}", "boot", ""]
    return "\n".join(lines)


def _image_of(script: str) -> str | None:
    found = dict(m.groups() for m in _IMAGE_LINE.finditer(script))
    if "name" in found and "version" in found:
        return f"{found['name']}@{found['version']}"
    return None


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # the HTTP server (maybe another user) must read it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class IpxeProvisioner:
    """Writes per-MAC boot scripts into ``root``; reads fetches from the server at ``url``."""

    kind = "ipxe"

    def __init__(self, root: str | os.PathLike[str], url: str | None = None, *, timeout: float = 5.0) -> None:
        self.root = Path(root)
        self.url = url.rstrip("/") if url else None
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None

    def _path(self, node: Node) -> Path:
        if not node.mac:
            raise ActionError(f"{node.name}: no MAC address in the inventory (the ipxe provisioner assigns by MAC)")
        return self.root / script_name(node.mac)

    @staticmethod
    def _read_text(path: Path) -> str | None:
        """A boot script's (or its .previous record's) text; None when there is none."""
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ActionError(f"cannot read boot script {path}: {exc.strerror}") from None

    def _read(self, path: Path) -> Assignment | None:
        text = self._read_text(path)
        return None if text is None else Assignment(_image_of(text), str(path))

    async def assign(self, node: Node, image: Image) -> Assignment | None:
        """Write the node's script for ``image``; keeps the replaced one for rollback."""
        path = self._path(node)
        script = render_script(node, image)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            old = self._read_text(path)
            # an empty .previous records "there was no script" (rollback then removes it)
            _write_atomic(self._previous(path), old or "")
            _write_atomic(path, script)
        except OSError as exc:
            raise ActionError(f"cannot write boot script {path}: {exc.strerror or exc}") from None
        return None if old is None else Assignment(_image_of(old), str(path))

    async def assignment(self, node: Node) -> Assignment | None:
        """The node's current script (None: no script, the node boots from disk)."""
        return self._read(self._path(node))

    @staticmethod
    def _previous(path: Path) -> Path:
        return path.with_name(path.name + ".previous")

    async def previous(self, node: Node) -> Assignment | None:
        """The script the last assign replaced: None when nothing was recorded,
        ``Assignment(None, ...)`` when the node had no script."""
        prev = self._previous(self._path(node))
        got = self._read(prev)
        if got is not None and prev.stat().st_size == 0:
            return Assignment(None, "no boot script")
        return got

    async def rollback(self, node: Node) -> Assignment | None:
        """Put the previous script back (remove the script when there was none).

        Returns the restored assignment; None when no previous one was recorded.
        """
        path = self._path(node)
        prev = self._previous(path)
        text = self._read_text(prev)
        if text is None:
            return None
        try:
            if text:
                _write_atomic(path, text)
            else:
                path.unlink(missing_ok=True)
            prev.unlink()
        except OSError as exc:
            raise ActionError(f"cannot roll back boot script {path}: {exc.strerror or exc}") from None
        return self._read(path) if text else Assignment(None, "no boot script")

    async def fetches(self, node: Node, since: float = 0.0) -> list[Fetch] | None:
        """Script fetches of ``node`` the server recorded after ``since`` (None: no server URL)."""
        if not self.url:
            return None
        mac = self._path(node).stem
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
        url = f"{self.url}/fetches"
        try:
            resp = await self._http.get(url, params={"mac": mac})
        except httpx.TimeoutException as exc:
            raise Timeout(f"ipxe provisioner {self.url}: no answer in time") from exc
        except httpx.HTTPError as exc:
            raise Unreachable(f"ipxe provisioner {self.url}: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise ProtocolError(f"ipxe provisioner {url}: HTTP {resp.status_code}")
        try:
            rows = resp.json()
            out = [Fetch(float(r["time"]), node.mac or "", int(r["status"]), r.get("path", "")) for r in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"ipxe provisioner {url}: unexpected answer ({type(exc).__name__})") from None
        return [f for f in out if f.time > since]

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None


class IpxeServer(HttpService):
    """HTTP server for per-MAC iPXE scripts, recording every fetch."""

    def __init__(self, root: str | os.PathLike[str], address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(address, port)
        self.root = Path(root)
        self.fetches: list[dict] = []

    def routes(self, app: web.Application) -> None:
        """Add this server's routes (subclasses add more)."""
        app.router.add_get("/boot/{name}", self._script)
        app.router.add_get("/fetches", self._fetches)

    def make_app(self) -> web.Application:
        self.root.mkdir(parents=True, exist_ok=True)
        app = web.Application()
        self.routes(app)
        return app

    def _record(self, entry: dict) -> None:
        self.fetches.append(entry)
        if len(self.fetches) > _KEEP_FETCHES:
            del self.fetches[: len(self.fetches) - _KEEP_FETCHES]

    async def _script(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].lower()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        entry = {"time": time.time(), "client": peer[0] if peer else None, "path": f"/boot/{name}",
                 "mac": name[:-5] if _SCRIPT.match(name) else None}
        if not _SCRIPT.match(name):
            entry["status"] = 400
            self._record(entry)
            return web.Response(status=400, text="expected /boot/aa-bb-cc-dd-ee-ff.ipxe\n")
        try:
            body = (self.root / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            entry["status"] = 404
            self._record(entry)
            return web.Response(status=404, text="no boot script assigned to this MAC\n")
        entry["status"] = 200
        self._record(entry)
        return web.Response(text=body, content_type="text/plain")

    async def _fetches(self, request: web.Request) -> web.Response:
        mac = request.query.get("mac", "").lower().replace(":", "-")
        rows = [f for f in self.fetches if not mac or f.get("mac") == mac]
        return web.Response(text=json.dumps(rows[-1000:]), content_type="application/json")
