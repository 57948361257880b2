"""HTTP for the Redfish driver: one client, one session and one request at a time per BMC.

:class:`RedfishSession` is the layer under :class:`console.drivers.redfish.RedfishDriver`.
It owns the ``httpx.AsyncClient`` (or borrows the caller's) and, for the poll path's
GETs, an ``aiohttp.ClientSession`` with one kept connection; it logs in through the
SessionService, sends ``X-Auth-Token`` and logs in again once on a 401, falls back to
HTTP Basic when the service has no SessionService or its login answers 404/405, and
deletes the session on :meth:`RedfishSession.close`.

Error mapping lives here and nowhere else: :meth:`RedfishSession._send`
turns httpx and aiohttp exceptions into :mod:`console.errors` classes ``from exc``, and
:func:`decode` / :func:`http_error` turn unusable answers into :class:`ProtocolError`.
Messages name the BMC, the method and the path, never the password or the token.

A BMC's answer is untrusted input, so every request is bounded (an unbounded body is
all one hostile BMC needs to exhaust the console's memory): the body is streamed and refused past :data:`MAX_BODY`
bytes (decompressed, and at once when Content-Length says so), the whole request,
redirects included, ends at ``deadline`` seconds however slowly the body trickles
(httpx's and aiohttp's own timeouts are per network read), and the JSON is refused when it nests
deeper than :data:`MAX_DEPTH` or holds more than :data:`MAX_CONTAINERS` objects and
arrays, checked by a scan of the bytes before anything is decoded.
"""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import logging
import os
import re
import ssl
import zlib
from itertools import accumulate
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError
from httpx import codes
from yarl import URL

from console.errors import AuthFailed, DriverError, ProtocolError, Timeout, Unreachable
from console.secrets import Secret
from inventory.model import Bmc

__all__ = ["MAX_BODY", "MAX_CONTAINERS", "MAX_DEPTH", "ROOT", "Missing", "RedfishSession", "decode", "read_body",
           "http_error", "load_json"]

log = logging.getLogger(__name__)

ROOT = "/redfish/v1"
_PUBLIC = ("/redfish", ROOT)  # the spec lets these answer without credentials
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5
_HEADERS = {"Accept": "application/json", "OData-Version": "4.0", "Accept-Encoding": "gzip, deflate"}

#: Largest response body accepted from a BMC, in bytes after decompression (Redfish
#: resources are a few KiB; a page of a big event log some hundreds).
MAX_BODY = 4 * 1024 * 1024
#: Deepest JSON nesting accepted (Redfish resources nest a handful of levels).
MAX_DEPTH = 32
#: Most JSON objects and arrays in one answer: a body of ``[{},{},...]`` under
#: MAX_BODY would otherwise decode to ~100 MB of dicts.
MAX_CONTAINERS = 100_000


class Missing(ProtocolError):
    """HTTP 404 for a URL the service itself linked (optional reads turn it into None)."""


# --------------------------------------------------------------------------- TLS
@functools.lru_cache(maxsize=64)
def _ssl_context(ca_bundle: str | None, stamp: tuple[int, int] | None) -> ssl.SSLContext:
    """One verifying context per CA bundle version, shared by every client (loading CAs is not free)."""
    if ca_bundle is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=ca_bundle)


def _verify(bmc: Bmc) -> ssl.SSLContext | bool:
    """httpx ``verify`` from ``verify_tls`` and ``ca_bundle``."""
    if not bmc.verify_tls:
        return False
    try:
        stamp = None
        if bmc.ca_bundle is not None:
            st = os.stat(bmc.ca_bundle)
            stamp = (st.st_mtime_ns, st.st_size)  # a rewritten bundle gets a fresh context
        return _ssl_context(bmc.ca_bundle, stamp)
    except (OSError, ssl.SSLError) as exc:
        raise DriverError(f"{bmc.address}: cannot load CA bundle {bmc.ca_bundle}: {exc}") from exc


# --------------------------------------------------------------------------- the session
class RedfishSession:
    """Authenticated JSON requests to one BMC; see the module docstring."""

    #: body size limit (bytes) of every answer; see :data:`MAX_BODY`
    max_body = MAX_BODY

    def __init__(self, bmc: Bmc, password: Secret, *, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None, deadline: float | None = None) -> None:
        self.bmc = bmc
        self.address = bmc.address
        self._password = password
        host = f"[{bmc.address}]" if ":" in bmc.address else bmc.address
        self.base = f"{bmc.scheme}://{host}:{bmc.effective_port}"
        self._origin = urlsplit(self.base)[:2]
        self._own_client = client is None
        self._timeout = timeout
        #: seconds one request may take in all, body and redirects included (default: ``timeout``)
        self.deadline = timeout if deadline is None else deadline
        if client is None:
            client = self._new_client()
        self._client = client
        # One in-flight request per BMC (docs/protocols.md, "Operating limits"; BmcDriver's contract).
        self._lock = asyncio.Lock()
        self._closed = False
        self._logged_in = False
        self._basic = False
        self._token: str | None = None
        self._pending_login: asyncio.Future | None = None  # a login POST whose caller was cancelled
        self._session_uri: str | None = None
        self._root: dict[str, Any] | None = None
        #: the GET fast path's client (one kept connection), our own client only; made on first use
        self._http: aiohttp.ClientSession | None = None
        #: per URL polled: its parsed forms (an httpx Request parses its URL: 0.1 ms), for _fast
        self._requests: dict[tuple[str, str], tuple[httpx.Request, URL]] = {}

    @property
    def auth_mode(self) -> str:
        """``session``, ``basic`` (every request carries Basic credentials) or ``none`` yet."""
        if not self._logged_in:
            return "none"
        return "basic" if self._basic else "session"

    # ------------------------------------------------------------------ requests
    async def service_root(self) -> dict[str, Any]:
        """``/redfish/v1``, read once."""
        if self._root is None:
            self._root = await self.get(ROOT)
        return self._root

    async def get(self, uri: str) -> dict[str, Any]:
        """GET a resource: its JSON object, or a DriverError."""
        return decode(await self.request("GET", uri), "GET", uri, self.address)

    async def get_optional(self, uri: str) -> dict[str, Any] | None:
        """GET a linked resource that a BMC may lack: None for 404."""
        try:
            return await self.get(uri)
        except Missing:
            return None

    async def get_with_etag(self, uri: str) -> tuple[dict[str, Any], str | None]:
        """GET a resource and the ETag (header, else ``@odata.etag``) to send back in If-Match."""
        response = await self.request("GET", uri)
        doc = decode(response, "GET", uri, self.address)
        etag = response.headers.get("ETag") or doc.get("@odata.etag")
        return doc, etag if isinstance(etag, str) else None

    async def request(self, method: str, uri: str, *, json: Any = None,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        """One authenticated request: logs in on first use and once more on a 401; raises on >= 400."""
        if self._closed:
            raise DriverError(f"{self.address}: driver is closed")
        async with self._lock:
            public = method == "GET" and _path(uri).rstrip("/") in _PUBLIC
            if not self._logged_in and not public:
                await self._login()
            response = await self._send(method, uri, json=json, headers=headers, auth=not public)
            if response.status_code == 401 and (public or not self._basic):
                # public: this BMC wants credentials even for the service root;
                # else: the BMC forgot our session (idle timeout, BMC reboot).  Log in once more.
                await self._logout()
                await self._login()
                response = await self._send(method, uri, json=json, headers=headers, auth=True)
            if response.status_code == 401:
                raise AuthFailed(f"{self.address}: {method} {_path(uri)} refused our credentials (401)")
            if response.status_code == 403:
                raise AuthFailed(f"{self.address}: {method} {_path(uri)} is forbidden for "
                                 f"{self.bmc.username!r} (403)")
            if response.status_code >= 400:
                raise http_error(response, method, uri, self.address)
            return response

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=_verify(self.bmc),
            timeout=httpx.Timeout(self._timeout),
            # GETs (the polls) go over the session's aiohttp client and its kept connection;
            # this client's are for the rare rest (login, logout, actions) and are not kept:
            # two descriptors a BMC ran a 10,000-BMC poller out of them.
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
        )

    async def close(self) -> None:
        """Delete our session (logout) and close the client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            async with self._lock:
                await self._adopt_pending_login()
                if self._own_client and self._session_uri is not None:
                    # A request cancelled mid-flight (shutdown cancels polls) can keep its
                    # pooled connection from being handed back, and the logout would wait
                    # for the pool until it timed out, leaking the session: log out on a
                    # fresh connection instead.
                    await self._client.aclose()
                    self._client = self._new_client()
                await self._logout()
        finally:
            if self._http is not None:
                await self._http.close()
                self._http = None
            if self._own_client:
                await self._client.aclose()

    # ------------------------------------------------------------------ sessions
    async def _login(self) -> None:
        """Create a session, or settle for Basic auth when the service has no usable SessionService."""
        self._logged_in = False
        if self._root is None:
            response = await self._send("GET", ROOT, auth=False)
            if response.status_code == 401:  # some BMCs guard even the service root
                response = await self._send("GET", ROOT, auth=True)
            self._root = decode(_refused(response, self, "GET", ROOT), "GET", ROOT, self.address)
        root = self._root
        sessions = None
        links = root.get("Links")
        if isinstance(links, dict) and isinstance(links.get("Sessions"), dict):
            sessions = odata_id(links["Sessions"], "Links.Sessions")
        elif isinstance(root.get("SessionService"), dict):
            # Reading the SessionService itself needs credentials: Basic, this once.
            uri = odata_id(root["SessionService"], "SessionService")
            service = decode(_refused(await self._send("GET", uri, auth=True), self, "GET", uri),
                             "GET", uri, self.address)
            if isinstance(service.get("Sessions"), dict):
                sessions = odata_id(service["Sessions"], "SessionService.Sessions")
        if sessions is None:
            self._basic, self._logged_in = True, True
            return
        body = {"UserName": self.bmc.username, "Password": self._password.get()}
        # Shielded: if our caller is cancelled mid-login the BMC still creates the session;
        # close() then waits for this POST and deletes what it made (no leaked session).
        post = asyncio.ensure_future(self._send("POST", sessions, json=body, auth=False))
        self._pending_login = post
        response = await asyncio.shield(post)
        self._pending_login = None
        if response.status_code in (404, 405):
            self._basic, self._logged_in = True, True
            log.info("%s: no SessionService login (%s); using Basic auth", self.address, response.status_code)
            return
        if response.status_code in (401, 403):
            raise AuthFailed(f"{self.address}: login as {self.bmc.username!r} refused ({response.status_code})")
        if response.status_code >= 400:
            raise http_error(response, "POST", sessions, self.address)
        token = response.headers.get("X-Auth-Token")
        if not token:
            raise ProtocolError(f"{self.address}: login answered {response.status_code} without X-Auth-Token")
        location = response.headers.get("Location")
        if not location:
            try:
                doc = load_json(response.content)
            except ValueError:
                doc = None
            location = doc.get("@odata.id") if isinstance(doc, dict) else None
        self._token = token
        # Only the path: some BMCs put their own host name in Location; the session lives here anyway.
        self._session_uri = _path(location) if isinstance(location, str) and location else None
        self._basic, self._logged_in = False, True

    async def _adopt_pending_login(self) -> None:
        """A login whose caller was cancelled: wait for it and take its session, to delete it."""
        post, self._pending_login = self._pending_login, None
        if post is None:
            return
        try:
            response = await asyncio.wait_for(asyncio.shield(post), 5)
        except BaseException:
            post.cancel()
            return
        token = response.headers.get("X-Auth-Token")
        location = response.headers.get("Location")
        if response.status_code < 300 and token and location:
            self._token, self._session_uri = token, _path(location)

    async def _logout(self) -> None:
        """Best-effort DELETE of our session: it expires anyway, and a dead BMC must not block close()."""
        uri, token = self._session_uri, self._token
        self._session_uri = self._token = None
        self._logged_in = False
        if uri is None or token is None or self._client.is_closed:
            return
        try:
            response = await self._send("DELETE", uri, headers={"X-Auth-Token": token}, auth=False)
            if response.status_code >= 400 and response.status_code not in (401, 404):
                log.info("%s: logout answered HTTP %s", self.address, response.status_code)
        except DriverError as exc:
            log.info("%s: logout failed: %s", self.address, exc)

    # ------------------------------------------------------------------ the wire
    async def _send(self, method: str, uri: str, *, json: Any = None, headers: dict[str, str] | None = None,
                    auth: bool) -> httpx.Response:
        """One request within :attr:`deadline`, redirects included (a trickling body ends there)."""
        try:
            async with asyncio.timeout(self.deadline):
                return await self._send_unbounded(method, uri, json=json, headers=headers, auth=auth)
        except TimeoutError as exc:
            raise Timeout(f"{self.address}: {method} {_path(uri)} took longer than {self.deadline:g} s") from exc

    async def _send_unbounded(self, method: str, uri: str, *, json: Any = None,
                              headers: dict[str, str] | None = None, auth: bool) -> httpx.Response:
        """The one place httpx exceptions become DriverErrors; follows same-origin redirects only."""
        url = self._url(uri)
        if self._client.is_closed:  # a caller-supplied client its owner already closed
            raise DriverError(f"{self.address}: the HTTP client is closed")
        for _ in range(_MAX_REDIRECTS + 1):
            hdrs = {**_HEADERS, **(headers or {})}
            extra: dict[str, Any] = {}
            if auth and self._token is not None:
                hdrs["X-Auth-Token"] = self._token
            elif auth:
                extra["auth"] = httpx.BasicAuth(self.bmc.username, self._password.get())
            try:
                response = await self._exchange(method, url, json=json, headers=hdrs, **extra)
            except aiohttp.ClientError as exc:
                raise self._aiohttp_error(exc, method, url) from exc
            except HttpProcessingError as exc:
                raise ProtocolError(f"{self.address}: {method} {_path(url)}: broken HTTP answer") from exc
            except httpx.ConnectTimeout as exc:  # nothing answered the SYN: errors.Unreachable's "no reply"
                raise Unreachable(f"{self.address}: no answer to connect ({self.base})") from exc
            except httpx.TimeoutException as exc:
                raise Timeout(f"{self.address}: {method} {_path(url)} timed out ({type(exc).__name__})") from exc
            except httpx.ConnectError as exc:
                if _is_tls_error(exc):
                    raise ProtocolError(f"{self.address}: TLS handshake failed: {_tls_reason(exc)}") from exc
                raise Unreachable(f"{self.address}: cannot connect to {self.base}") from exc
            except httpx.RemoteProtocolError as exc:
                raise ProtocolError(f"{self.address}: {method} {_path(url)}: broken HTTP answer") from exc
            except httpx.NetworkError as exc:
                raise Unreachable(f"{self.address}: connection lost during {method} {_path(url)}") from exc
            except httpx.HTTPError as exc:
                raise DriverError(f"{self.address}: {method} {_path(url)} failed ({type(exc).__name__})") from exc
            if response.status_code not in _REDIRECTS or "Location" not in response.headers:
                return response
            # Aliases redirect (docs/protocols.md); credentials go to this BMC only, never elsewhere.
            url = str(response.request.url.join(response.headers["Location"]))
            if urlsplit(url)[:2] != self._origin:
                raise ProtocolError(f"{self.address}: {method} {_path(uri)} redirects off the BMC; not followed")
            if response.status_code == 303:
                method, json = "GET", None
        raise ProtocolError(f"{self.address}: {method} {_path(uri)}: too many redirects")

    def _aiohttp_error(self, exc: aiohttp.ClientError, method: str, url: str) -> DriverError:
        """The DriverError for an exception of the fast path's aiohttp client (as for httpx's)."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):  # nothing answered the SYN
            return Unreachable(f"{self.address}: no answer to connect ({self.base})")
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return Timeout(f"{self.address}: {method} {_path(url)} timed out ({type(exc).__name__})")
        if isinstance(exc, aiohttp.ClientConnectorError):
            if isinstance(exc, aiohttp.ClientSSLError) or _is_tls_error(exc):
                return ProtocolError(f"{self.address}: TLS handshake failed: {_tls_reason(exc)}")
            return Unreachable(f"{self.address}: cannot connect to {self.base}")
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError,
                            aiohttp.ServerDisconnectedError)):
            # a malformed head or body, or the BMC hung up before a whole answer (twice for a GET:
            # aiohttp retries an idempotent request once on a kept connection the BMC closed)
            return ProtocolError(f"{self.address}: {method} {_path(url)}: broken HTTP answer")
        if isinstance(exc, aiohttp.ClientConnectionError):
            return Unreachable(f"{self.address}: connection lost during {method} {_path(url)}")
        return DriverError(f"{self.address}: {method} {_path(url)} failed ({type(exc).__name__})")

    async def _exchange(self, method: str, url: str, *, json: Any, headers: dict[str, str],
                        **auth: Any) -> httpx.Response:
        """Send one request and read its body, at most :attr:`max_body` bytes of it.

        A GET without Basic credentials (the poll path: a session token, or a public
        resource, and a logout's DELETE) goes over :meth:`_fast` when the client is our own."""
        if method in ("GET", "DELETE") and not auth and self._own_client and json is None:
            return await self._fast(method, url, headers)
        request = self._client.build_request(method, url, json=json, headers=headers)
        response = await self._client.send(request, stream=True, **auth)
        try:
            body = await self._read_body(response, method, url)
        finally:
            await response.aclose()  # a body left unread closes the connection
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_HEADERS]
        return httpx.Response(response.status_code, headers=kept, content=body, request=request)

    def _new_http(self) -> aiohttp.ClientSession:
        """The fast path's aiohttp client: one kept connection, answers bounded as :func:`read_body` bounds them."""
        tls: ssl.SSLContext | bool = True
        if self.bmc.scheme == "https":
            tls = _verify(self.bmc)  # False: no verification (verify_tls: false)
        connector = aiohttp.TCPConnector(limit=1, ssl=tls, keepalive_timeout=_KEEPALIVE_S)
        return aiohttp.ClientSession(
            connector=connector,
            # reads end at the whole request's limit (RedfishSession.deadline, the caller's): a
            # per-read limit would cost a timer a read and change nothing
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # inflated by _Body, within the body limit (gzip bombs)
            max_line_size=_MAX_LINE, max_field_size=_MAX_LINE, max_headers=_MAX_HEADERS,
            trust_env=False,
        )

    async def _fast(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        """GET (or a logout's DELETE) over the aiohttp client; aiohttp itself retries once
        on a kept connection the BMC closed while idle."""
        parsed = self._requests.get((method, url))
        if parsed is None:
            if len(self._requests) >= 16:
                self._requests.clear()
            parsed = self._requests[(method, url)] = (httpx.Request(method, url), URL(url))
        request, target = parsed
        http = self._http
        if http is None or http.closed:
            self._http = http = self._new_http()
        async with http.request(method, target, headers=headers, allow_redirects=False) as resp:
            try:
                status = resp.status
                if resp.content_length is not None and resp.content_length > self.max_body:
                    raise ProtocolError(f"{self.address}: {method} {_path(url)}: response body over "
                                        f"{_size(self.max_body)}")
                body = _Body(resp.headers.get("Content-Encoding", "identity").strip().lower(), self.max_body,
                             self.address, method, _path(url))
                while chunk := await resp.content.readany():
                    body.add(chunk)
            except BaseException:
                resp.close()  # half an answer on it: the connection is never reused
                raise
            fields = [(k, v) for k, v in resp.headers.items() if k.lower() not in _BODY_HEADERS]
        if _REQUEST_LOG.isEnabledFor(logging.INFO):  # the line httpx writes for the other requests
            _REQUEST_LOG.info('HTTP Request: %s %s "HTTP/1.1 %d %s"', method, url, status,
                              codes.get_reason_phrase(status))
        return httpx.Response(status, headers=fields, content=body.done(), request=request)

    async def _read_body(self, response: httpx.Response, method: str, url: str) -> bytes:
        where = f"{self.address}: {method} {_path(url)}"
        return await read_body(response, self.max_body, where, f"{where}: response body over {_size(self.max_body)}")

    def _url(self, uri: str) -> str:
        """Absolute URL of an ``@odata.id``; links pointing off this BMC are refused."""
        uri = uri.split("#", 1)[0]
        if uri.startswith("/"):
            return self.base + uri
        if urlsplit(uri)[:2] == self._origin:
            return uri
        raise ProtocolError(f"{self.address}: link {uri[:80]!r} points off the BMC")


async def read_body(response: httpx.Response, limit: int, where: str, too_big: str) -> bytes:
    """A streamed answer's body, decompressed, refused (ProtocolError ``too_big``) past ``limit``
    bytes whether announced, sent or inflated: a compressed bomb never inflates more than one
    byte past it.  ``where`` starts the other errors' messages."""
    length = response.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise ProtocolError(too_big)
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if coding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | (16 if "gzip" in coding else 0))
    elif coding in ("", "identity"):
        inflate = None
    else:
        raise ProtocolError(f"{where}: unsupported Content-Encoding {coding[:40]!r}")
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        if inflate is not None:
            try:
                raw = inflate.decompress(raw, limit + 1 - size)
            except zlib.error as exc:
                raise ProtocolError(f"{where}: body does not decompress ({coding})") from exc
        size += len(raw)
        if size > limit:
            raise ProtocolError(too_big)
        chunks.append(raw)
    return b"".join(chunks)


# --------------------------------------------------------------------------- the GET fast path
#: a status line or one header field of a fast-path answer, at most (bytes)
_MAX_LINE = 8190
#: header fields of a fast-path answer, at most (a head is thus at most ~0.5 MiB)
_MAX_HEADERS = 64
#: seconds an idle fast-path connection is kept (polls come more often; BMCs close sooner anyway)
_KEEPALIVE_S = 120.0
#: the fast path's per-request lines (INFO), as httpx writes its own: off unless asked (console.cli.main)
_REQUEST_LOG = logging.getLogger(f"{__name__}.requests")


class _Body:
    """A fast-path body being read: inflated (gzip, deflate) and bounded as :func:`read_body` does."""

    def __init__(self, coding: str, limit: int, address: str, method: str, path: str) -> None:
        where = f"{address}: {method} {path}"
        self.too_big = f"{where}: response body over {_size(limit)}"
        if coding in ("gzip", "x-gzip", "deflate"):
            self._inflate: Any = zlib.decompressobj(zlib.MAX_WBITS | (16 if "gzip" in coding else 0))
        elif coding in ("", "identity"):
            self._inflate = None
        else:
            raise ProtocolError(f"{where}: unsupported Content-Encoding {coding[:40]!r}")
        self._coding, self._limit, self._where = coding, limit, where
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, raw: bytes) -> None:
        if self._inflate is not None:
            try:
                raw = self._inflate.decompress(raw, self._limit + 1 - self._size)
            except zlib.error as exc:
                raise ProtocolError(f"{self._where}: body does not decompress ({self._coding})") from exc
        self._size += len(raw)
        if self._size > self._limit:
            raise ProtocolError(self.too_big)
        self._chunks.append(raw)

    def done(self) -> bytes:
        return b"".join(self._chunks)


# --------------------------------------------------------------------------- answers
def _refused(response: httpx.Response, session: RedfishSession, method: str, uri: str) -> httpx.Response:
    if response.status_code in (401, 403):
        raise AuthFailed(f"{session.address}: {method} {_path(uri)} refused our credentials "
                         f"({response.status_code})")
    return response


def decode(response: httpx.Response, method: str, uri: str, address: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer, else ProtocolError."""
    if response.status_code >= 400:
        raise http_error(response, method, uri, address)
    try:
        doc = load_json(response.content)
    except ValueError as exc:
        raise ProtocolError(f"{address}: {method} {_path(uri)}: answer {exc}") from exc
    if not isinstance(doc, dict):
        raise ProtocolError(f"{address}: {method} {_path(uri)}: answer is a JSON {type(doc).__name__}, not an object")
    return doc


def http_error(response: httpx.Response, method: str, uri: str, address: str) -> ProtocolError:
    """ProtocolError (Missing for 404) for an HTTP error status, naming the Redfish MessageId."""
    message_id = ""
    try:
        body = load_json(response.content)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            info = err.get("@Message.ExtendedInfo")
            if isinstance(info, list) and info and isinstance(info[0], dict):
                message_id = str(info[0].get("MessageId") or "")
            message_id = message_id or str(err.get("code") or "")
    except ValueError:
        pass
    kind = Missing if response.status_code == 404 else ProtocolError
    text = f"{address}: {method} {_path(uri)} answered HTTP {response.status_code}"
    short = message_id.rsplit(".", 1)[-1][:60]
    exc = kind(text + (f" ({short})" if short else ""), detail=f"{text} {message_id}".strip())
    exc.status = response.status_code  # type: ignore[attr-defined]
    return exc


_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
#: a JSON string, or an unterminated one up to the end of the body: one pass over each
#: string whatever it holds (a string that may not end would be rescanned from every quote
#: inside it, which is quadratic in the body's size)
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opening +1, closing -1 (as signed bytes)


def load_json(body: bytes, *, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS) -> Any:
    """Decode a BMC's JSON answer, or raise ValueError saying what is wrong with it.

    Nesting and size are checked on the bytes first (strings blanked out, brackets
    counted), so a ``[[[[...`` a million deep costs a scan, not a RecursionError.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 (byte {exc.start})") from None
    steps = _JSON_STRING.sub(b"", body).translate(_BRACKET_STEP, _NOT_BRACKETS)
    depth = max(accumulate(memoryview(steps).cast("b")), default=0)
    if depth > max_depth:
        raise ValueError(f"nests deeper than {max_depth} levels")
    if steps.count(1) > max_containers:
        raise ValueError(f"holds more than {max_containers} JSON objects and arrays")
    try:
        return jsonlib.loads(text)
    except ValueError as exc:  # JSONDecodeError, and int() past sys.get_int_max_str_digits
        raise ValueError(f"is not valid JSON ({str(exc)[:80]})") from None
    except RecursionError:  # cannot happen after the depth check; never let it out
        raise ValueError(f"nests deeper than {max_depth} levels") from None


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


def odata_id(link: Any, what: str) -> str:
    """The ``@odata.id`` of a link object, else ProtocolError."""
    if not isinstance(link, dict) or not isinstance(link.get("@odata.id"), str):
        raise ProtocolError(f"{what}: link without @odata.id")
    return link["@odata.id"]


def _is_tls_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return "SSL" in str(exc) or "certificate" in str(exc).lower()


def _tls_reason(exc: BaseException) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "certificate verify failed (set ca_bundle, or verify_tls: false for a lab)"
    return text[:120] or type(exc).__name__


def _path(uri: str) -> str:
    return urlsplit(uri).path or uri
