"""The Redfish poll path's own HTTP/1.1 client (``_KeptConnection`` in redfish_http.py)
against a raw HTTP server on loopback that answers as a BMC might: chunked, gzipped,
closing idle connections, oversized, malformed, or not at all."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable

import pytest

from console.drivers.redfish_http import ROOT, RedfishSession
from console.errors import ProtocolError, Timeout
from console.secrets import Secret
from inventory.model import Bmc

BODY = json.dumps({"@odata.id": ROOT, "Id": "RootService", "Name": "Root"}).encode()

Answer = Callable[[int], bytes]  # request number on this connection -> raw answer (b"" closes)


def plain(body: bytes = BODY, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


class RawBmc:
    """A loopback HTTP server answering each request on a connection with ``answer(n)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            n = 0
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                raw = self.answer(n)
                n += 1
                if raw is None:
                    await asyncio.sleep(3600)  # never answers
                if not raw:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def raw_bmc():
    servers: list[RawBmc] = []
    sessions: list[RedfishSession] = []

    async def make(answer: Answer, **kw) -> tuple[RawBmc, RedfishSession]:
        server = RawBmc(answer)
        await server.start()
        servers.append(server)
        bmc = Bmc(protocol="redfish", address="127.0.0.1", port=server.port, scheme="http", username="root",
                  password="env:UNUSED")
        session = RedfishSession(bmc, Secret("calvin"), **kw)
        sessions.append(session)
        return server, session

    yield make
    for s in sessions:
        await s.close()
    for server in servers:
        await server.stop()


async def test_kept_connection_serves_every_get(raw_bmc) -> None:
    server, session = await raw_bmc(lambda n: plain())
    for _ in range(3):
        assert (await session.get(ROOT))["Id"] == "RootService"
    assert server.connections == 1 and len(server.requests) == 3
    head = server.requests[0].decode()
    assert head.startswith(f"GET {ROOT} HTTP/1.1\r\n") and f"Host: 127.0.0.1:{server.port}\r\n" in head


async def test_chunked_and_gzipped_answers_are_decoded(raw_bmc) -> None:
    packed = gzip.compress(BODY)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(packed[i:i + 7]), packed[i:i + 7]) for i in range(0, len(packed), 7))
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + chunks
           + b"0\r\nX-Trailer: 1\r\n\r\n")
    server, session = await raw_bmc(lambda n: raw)
    assert (await session.get(ROOT))["Name"] == "Root"
    assert (await session.get(ROOT))["Name"] == "Root"
    assert server.connections == 1


async def test_a_connection_the_bmc_closed_while_idle_is_replaced(raw_bmc) -> None:
    server, session = await raw_bmc(lambda n: plain() if n == 0 else b"")  # one answer per connection
    for _ in range(3):
        assert (await session.get(ROOT))["Id"] == "RootService"
    assert server.connections >= 2


async def test_connection_close_is_honoured(raw_bmc) -> None:
    server, session = await raw_bmc(lambda n: plain(extra="Connection: close\r\n"))
    await session.get(ROOT)
    await session.get(ROOT)
    assert server.connections == 2


async def test_oversized_and_inflating_bodies_are_refused(raw_bmc) -> None:
    _, session = await raw_bmc(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n{}")
    with pytest.raises(ProtocolError, match="response body over"):
        await session.get(ROOT)
    bomb = gzip.compress(b" " * (5 * 1024 * 1024))
    _, session = await raw_bmc(lambda n: plain(bomb, "Content-Encoding: gzip\r\n"))
    with pytest.raises(ProtocolError, match="response body over"):
        await session.get(ROOT)


@pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
async def test_malformed_answers_are_protocol_errors(raw_bmc, raw: bytes) -> None:
    _, session = await raw_bmc(lambda n: raw)
    with pytest.raises(ProtocolError):
        await session.get(ROOT)


async def test_a_silent_bmc_times_out(raw_bmc) -> None:
    _, session = await raw_bmc(lambda n: None, timeout=0.3)
    with pytest.raises(Timeout):
        await session.get(ROOT)
