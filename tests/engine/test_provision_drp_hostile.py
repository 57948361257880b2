"""The drp provisioner against a hostile DRP on loopback: every bad answer is a clean error.

A DRP endpoint is as untrusted as a BMC: its answers are bounded in size, nesting and
time, and the machine Uuid it returns goes into request paths only when it is a UUID.
"""

from __future__ import annotations

import asyncio
import functools
import json
import zlib
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from console.errors import ProtocolError, Timeout
from console.provision.drp import MAX_DRP_BODY, DrpProvisioner
from console.secrets import Secret
from inventory.model import Bmc, Node

MAC = "52:54:00:0d:00:01"
NODE = Node(name="h1", rack="r01", mac=MAC, bmc=Bmc(protocol="ipmi", address="127.0.0.1", username="admin",
                                                 password="env:PW"))
GOOD_UUID = "3f0c8d5e-4f7a-4c36-9d53-2b8c1e9a7b10"


def machines(uuid: str) -> list[dict]:
    return [{"Uuid": uuid, "Name": "h1", "HardwareAddrs": [MAC], "BootEnv": "local", "Params": {}}]


async def serve(handler: Callable[[web.Request], object]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def drp(request) -> AsyncIterator[tuple[DrpProvisioner, list[str]]]:
    """A DRP whose machine list is ``request.param(paths)``; the paths it was asked for are kept."""
    answer = request.param
    seen: list[str] = []

    async def handler(req: web.Request):
        seen.append(req.path)
        return await answer(req)

    async for url in serve(handler):
        prov = DrpProvisioner(url, Secret("token"), timeout=0.5)
        try:
            yield prov, seen
        finally:
            await prov.close()


async def deep(req: web.Request):
    return web.Response(body=b"[" * 200_000 + b"]" * 200_000, content_type="application/json")


async def oversized(req: web.Request):
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(req)
    await resp.write(b'["')
    chunk = b"x" * (1024 * 1024)
    for _ in range(MAX_DRP_BODY // len(chunk) + 2):
        await resp.write(chunk)
    return resp


async def trickle(req: web.Request):
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(req)
    for _ in range(100):
        await resp.write(b" ")
        await asyncio.sleep(0.1)
    return resp


@functools.cache
def _bomb() -> bytes:
    """128 MiB of JSON in about 130 KB of gzip (made once): past the 64 MiB cap only inflated."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(b"[" + b"0," * (64 * 1024 * 1024)) + packer.flush()


@pytest.fixture(scope="module", autouse=True)
def bomb_made_before_any_request():
    """Made before the server answers with it: compressing inside the handler took longer
    than the client's time limit on a loaded machine, and the test saw a timeout."""
    _bomb()


async def gzip_bomb(req: web.Request):
    return web.Response(body=_bomb(), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def uuid_traversal(req: web.Request):
    return web.json_response(machines("../../x"))


async def error_with_escapes(req: web.Request):
    return web.json_response({"Messages": ["\x1b]0;PWNED\x07denied"]}, status=422)


@pytest.mark.parametrize("drp, expected", [
    (deep, "nests deeper than"),
    (oversized, "answer over 64 MiB"),
    (gzip_bomb, "answer over 64 MiB"),
    (trickle, "took longer than"),
    (uuid_traversal, "invalid Uuid '../../x'"),
], indirect=["drp"], ids=["deep", "oversized", "gzip-bomb", "trickle", "uuid-traversal"])
async def test_a_hostile_answer_is_a_clean_error(drp, expected):
    prov, seen = drp
    with pytest.raises((ProtocolError, Timeout)) as info:
        await prov.machine(NODE)
    assert expected in str(info.value)
    assert seen == ["/api/v3/machines"]  # nothing was asked on the strength of a bad answer


@pytest.mark.parametrize("drp", [error_with_escapes], indirect=True)
async def test_an_error_message_from_drp_is_shown_visibly(drp):
    prov, _ = drp
    with pytest.raises(ProtocolError) as info:
        await prov.machine(NODE)
    assert "\x1b" not in str(info.value) and "^[]0;PWNED^Gdenied" in str(info.value)


async def good(req: web.Request):
    if req.path == "/api/v3/machines":
        return web.json_response(machines(GOOD_UUID.upper()))
    return web.Response(body=json.dumps({"Uuid": GOOD_UUID, "Params": {}}).encode(), content_type="application/json")


@pytest.mark.parametrize("drp", [good], indirect=True)
async def test_a_well_formed_uuid_is_used_normalised(drp):
    prov, seen = drp
    await prov.machine(NODE)
    assert seen[-1] == f"/api/v3/machines/{GOOD_UUID}"
