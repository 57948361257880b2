"""Attack: a local client of the site service's socket sending what no client should.

Garbage, a hello nested ten thousand deep (json.loads raises RecursionError, not
ValueError), a hello line over the limit, a hello with a huge client name, a protocol
version that is no number, a token guessed or replayed after it was revoked, and many
connections that never say hello: each is refused with a reason or closed, never a
traceback in the log, and the service goes on serving the next client.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from console.secrets import Secrets
from console.service import protocol as p
from console.service.client import ServiceRefused
from console.service.identity import Identity
from console.service.server import SiteService
from console.site import SiteContext
from tests.engine.test_service import FAST, client

SITE = """\
site: svcattack
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
racks:
  - name: r01
    nodes:
      - name: atk-n[01-02]
        bmc: {address: "127.1.93.[1-2]"}
"""


@pytest.fixture
async def service(site_lab):
    svc = SiteService(SiteContext(site_lab.effective_site(), Secrets(lab=site_lab.secrets)), poll_config=FAST)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop("test over")


async def _say(svc: SiteService, data: bytes) -> bytes:
    """What the service answers ``data`` with before it closes (b"" for nothing)."""
    reader, writer = await asyncio.open_unix_connection(str(svc.socket_path))
    try:
        writer.write(data)
        with_eof = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        with_eof = b""
    finally:
        writer.close()
    return with_eof


def _refused(answer: bytes) -> str:
    msg = p.decode(answer.split(b"\n")[0])
    assert isinstance(msg, p.Refused), answer[:200]
    return msg.reason


def _hello(**kw) -> bytes:
    return json.dumps({"type": "hello", "version": p.PROTOCOL_VERSION, "client": "attack", **kw}).encode() + b"\n"


async def test_hostile_hellos_are_refused_without_a_traceback(service, caplog):
    caplog.set_level(logging.DEBUG)
    assert "hello" in _refused(await _say(service, b"\x00\xff\x1b]0;x\x07 garbage\n"))
    deep = b'{"type": "hello", "client": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n"
    assert "hello" in _refused(await _say(service, deep))
    assert "limit" in _refused(await _say(service, b"x" * (p.MAX_LINE + 10) + b"\n"))
    assert "client" in _refused(await _say(service, _hello(client="\x1b[2J" * 10_000)))
    why = _refused(await _say(service, _hello(version={"v": "\x1b]52;c;AAAA\x07" * 50})))
    assert "\x1b" not in why and len(why) < 300
    assert "token" in _refused(await _say(service, _hello(token="A" * 43)))
    assert "Traceback" not in caplog.text and "Unhandled exception" not in caplog.text
    c = await client(service)  # still serving
    await c.close()


async def test_revoked_token_is_refused_and_guessing_gets_nothing(service):
    token = service.tokens.issue(Identity("mallory", "operator", "ssh"))
    c = await client(service, token=token)
    await c.close()
    service.tokens.revoke(token)
    with pytest.raises(ServiceRefused, match="token"):
        await client(service, token=token)
    for guess in ("", "x", token[:-1], token + "A", token.upper()):
        if guess:
            with pytest.raises(ServiceRefused):
                await client(service, token=guess)


async def test_many_silent_connections_do_not_stop_a_client(service):
    conns = [await asyncio.open_unix_connection(str(service.socket_path)) for _ in range(100)]
    try:
        c = await client(service)
        await c.close()
    finally:
        for _r, w in conns:
            w.close()
