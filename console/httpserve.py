"""Serving an aiohttp application on one loopback-or-site address (the boot server, the lab's stand-ins)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve"]


async def serve(app: web.Application, address: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind ``app`` at ``address:port`` (0: any free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
