"""The lab's PXE boot server: the ``ipxe`` provisioner's HTTP server plus lab extras.

:class:`BootServer` is :class:`console.provision.ipxe.IpxeServer` (``GET
/boot/<aa-bb-cc-dd-ee-ff>.ipxe`` from the boot root the provisioner writes,
``GET /fetches``) with two lab-only routes: ``GET /images/...`` answers small
stand-in kernels, initrds and ISOs (real bytes, so a client can fetch and hash
them), and ``GET /lab/fetches`` is the fetch list under its older name.
"""

from __future__ import annotations

from aiohttp import web

from console.provision.ipxe import IpxeServer

__all__ = ["BootServer", "serve_images"]


async def _image(request: web.Request) -> web.Response:
    return web.Response(body=f"fleet-lab artefact {request.match_info['path']}\n".encode(),
                        content_type="application/octet-stream")


def serve_images(app: web.Application) -> None:
    """Add the lab's ``/images/...`` stand-in artefacts to ``app``."""
    app.router.add_get("/images/{path:.*}", _image)


class BootServer(IpxeServer):
    """The ipxe provisioner's server with the lab's stand-in artefacts (one per lab)."""

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        serve_images(app)
        app.router.add_get("/lab/fetches", self._fetches)
