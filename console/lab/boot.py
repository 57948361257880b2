"""The lab's PXE boot server: per-MAC iPXE scripts over HTTP.

Serves ``GET /boot/<aa-bb-cc-dd-ee-ff>.ipxe`` from a boot root directory (the
``ipxe`` provisioner writes those files atomically; the lab only reads them),
``GET /images/...`` as small stand-in kernels and initrds, and
``GET /lab/fetches`` as JSON: every script fetch with time, client address, path
and status, which is how tests and reimage see that a machine really PXE-booted.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from aiohttp import web

__all__ = ["BootServer"]

_SCRIPT = re.compile(r"^[0-9a-f]{2}(-[0-9a-f]{2}){5}\.ipxe$")


class BootServer:
    """HTTP server for iPXE scripts (one per lab)."""

    def __init__(self, root: str | Path, address: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root)
        self.address = address
        self.port = port
        self.fetches: list[dict] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
        self.root.mkdir(parents=True, exist_ok=True)
        app = web.Application()
        app.router.add_get("/boot/{name}", self._script)
        app.router.add_get("/images/{path:.*}", self._image)
        app.router.add_get("/lab/fetches", self._fetches)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _script(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].lower()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        entry = {"time": time.time(), "client": peer[0] if peer else None, "path": f"/boot/{name}"}
        if not _SCRIPT.match(name):
            entry["status"] = 400
            self.fetches.append(entry)
            return web.Response(status=400, text="expected /boot/aa-bb-cc-dd-ee-ff.ipxe\n")
        path = self.root / name
        try:
            body = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            entry["status"] = 404
            self.fetches.append(entry)
            return web.Response(status=404, text="no boot script assigned to this MAC\n")
        entry["status"] = 200
        self.fetches.append(entry)
        return web.Response(text=body, content_type="text/plain")

    async def _image(self, request: web.Request) -> web.Response:
        # Stand-in artefacts: real bytes, tiny, so a client can fetch and hash them.
        return web.Response(body=f"fleet-lab artefact {request.match_info['path']}\n".encode(),
                            content_type="application/octet-stream")

    async def _fetches(self, request: web.Request) -> web.Response:
        return web.json_response(self.fetches[-1000:])
