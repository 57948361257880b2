"""The Redfish poll path's GETs over aiohttp (``RedfishSession._fast`` in redfish_http.py)
against a raw HTTP server on loopback that answers as a BMC might: chunked, gzipped,
closing idle connections, oversized, malformed, trickling, reset, or not at all."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import pytest

from console.drivers.redfish_http import ROOT, RedfishSession
from console.errors import ProtocolError, Timeout, Unreachable
from console.secrets import Secret
from inventory.model import Bmc

BODY = json.dumps({"@odata.id": ROOT, "Id": "RootService", "Name": "Root"}).encode()



@dataclass
class Trickle:
    """An answer sent a piece at a time, ``pause`` seconds apart."""
    pieces: list[bytes]
    pause: float


@dataclass
class Reset:
    """An answer cut short: ``raw`` is sent, then the connection is reset (RST)."""
    raw: bytes


# request number on this connection -> raw answer (b"" closes, None never answers)
Answer = Callable[[int], "bytes | Trickle | Reset | None"]


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
                if isinstance(raw, Trickle):
                    for piece in raw.pieces:
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(raw.pause)
                    continue
                if isinstance(raw, Reset):
                    writer.write(raw.raw)
                    await writer.drain()
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
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


async def test_kept_connection_serves_every_get(raw_bmc, caplog) -> None:
    caplog.set_level(logging.INFO, logger="console.drivers.redfish_http.requests")
    server, session = await raw_bmc(lambda n: plain())
    for _ in range(3):
        assert (await session.get(ROOT))["Id"] == "RootService"
    assert isinstance(session._http, aiohttp.ClientSession)
    assert server.connections == 1 and len(server.requests) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "console.drivers.redfish_http.requests"]
    assert lines == [f'HTTP Request: GET {session.base}{ROOT} "HTTP/1.1 200 OK"'] * 3
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


async def test_deflate_answers_are_decoded(raw_bmc) -> None:
    _, session = await raw_bmc(lambda n: plain(zlib.compress(BODY), "Content-Encoding: deflate\r\n"))
    assert (await session.get(ROOT))["Id"] == "RootService"


async def test_an_unknown_content_encoding_is_refused(raw_bmc) -> None:
    _, session = await raw_bmc(lambda n: plain(BODY, "Content-Encoding: br\r\n"))
    with pytest.raises(ProtocolError, match="unsupported Content-Encoding"):
        await session.get(ROOT)


async def test_oversized_and_inflating_bodies_are_refused(raw_bmc) -> None:
    _, session = await raw_bmc(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n{}")
    with pytest.raises(ProtocolError, match="response body over"):
        await session.get(ROOT)
    bomb = gzip.compress(b" " * (5 * 1024 * 1024))
    _, session = await raw_bmc(lambda n: plain(bomb, "Content-Encoding: gzip\r\n"))
    with pytest.raises(ProtocolError, match="response body over"):
        await session.get(ROOT)
    # no length given: read until the limit, not until the end
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    _, session = await raw_bmc(lambda n: Trickle([head] + [b"10000\r\n" + b" " * 65536 + b"\r\n"] * 80, 0))
    with pytest.raises(ProtocolError, match="response body over"):
        await session.get(ROOT)


async def test_oversized_heads_are_refused(raw_bmc) -> None:
    _, session = await raw_bmc(lambda n: plain(extra=f"X-Long: {'a' * 70000}\r\n"))
    with pytest.raises(ProtocolError):
        await session.get(ROOT)
    many = "".join(f"X-H{i}: {i}\r\n" for i in range(500))
    _, session = await raw_bmc(lambda n: plain(extra=many))
    with pytest.raises(ProtocolError):
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


async def test_a_trickling_body_ends_at_the_deadline(raw_bmc) -> None:
    """Every read gets a byte in time (the per-read limit never fires): the whole request's does."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    _, session = await raw_bmc(lambda n: Trickle([head] + [b" "] * 1000, 0.02), timeout=5.0, deadline=0.4)
    with pytest.raises(Timeout, match="took longer than 0.4 s"):
        await session.get(ROOT)


async def test_a_reset_mid_answer_is_an_error_and_the_next_get_reconnects(raw_bmc) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"
    server, session = await raw_bmc(lambda n: Reset(head) if server.connections == 1 else plain())
    with pytest.raises((ProtocolError, Unreachable), match="broken HTTP answer|connection lost"):
        await session.get(ROOT)
    assert (await session.get(ROOT))["Id"] == "RootService"
    assert server.connections == 2


async def test_a_refused_connection_is_unreachable(raw_bmc) -> None:
    server, session = await raw_bmc(lambda n: plain())
    await server.stop()
    with pytest.raises(Unreachable, match="cannot connect"):
        await session.get(ROOT)
