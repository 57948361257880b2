"""Serving an aiohttp application on one address (the iPXE boot server, the lab's DRP stand-in)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["HttpService"]


class HttpService:
    """An aiohttp application bound at ``address:port`` (0: any free port) by :meth:`start`.

    ``handler_args`` bound what one request may send (aiohttp's request handler
    options: longest request line and header, how many headers, idle keep-alive).
    """

    handler_args: dict = {}

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The application to serve (subclasses build it with their routes)."""
        raise NotImplementedError

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
        runner = web.AppRunner(self.make_app(), access_log=None, **self.handler_args)
        await runner.setup()
        site = web.TCPSite(runner, self.address, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
