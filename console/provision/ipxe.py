"""The embedded ``ipxe`` provisioner: per-MAC iPXE scripts in a boot root, served over HTTP.

Writing side (:class:`IpxeProvisioner`): ``assign`` renders the image's script and
writes ``<root>/<aa-bb-cc-dd-ee-ff>.ipxe`` atomically (a new temporary file, fsync,
rename), so a node booting at that moment gets the old script or the new one, never
half of one.  The replaced script is kept as ``<mac>.ipxe.previous`` for
:meth:`~IpxeProvisioner.rollback` (a file, so a rollback works from a later process too).

The rollback record is the last *known-good* assignment: a script we write says
``# fleet-console-state: pending`` until :meth:`~IpxeProvisioner.confirm` (the reimage
finished) turns it into ``verified``.  Assigning over a pending script (an earlier
attempt that failed or was killed) keeps the existing record instead of recording the
unfinished attempt.

What goes into a script is checked first (nothing is written when a check fails): a
script is run by iPXE line by line, a line is split at spaces, ``${...}`` is expanded
(it reads iPXE settings), and a token ``||``, ``&&``, ``;`` or one starting with ``#``
ends the command.  iPXE has no quoting, so a value that could do any of that is refused
(:func:`check_script_image`, :func:`check_script_node`): node names are hostname-like, MACs are MACs,
kernel and initrd are ``http``/``https``/``tftp`` URLs of plain characters, and the
command line is printable ASCII without ``$``, ``;``, a backslash, ``||``/``&&`` or ``#...``
tokens.

The boot root is shared with an HTTP server and maybe other users, so it is opened
without following a symbolic link and refused when someone else owns it or it is
writable by others; every file in it is opened relative to that directory with
``O_NOFOLLOW`` (a planted link is refused, never followed), and created with ``O_EXCL``.

Serving side (:class:`IpxeServer`): ``GET /boot/<aa-bb-cc-dd-ee-ff>.ipxe`` from the
root, and ``GET /fetches[?mac=aa-bb-..]`` as JSON: every script fetch with time,
client address, path and status.  That list is how a reimage sees "PXE fetch
seen": :meth:`IpxeProvisioner.fetches` asks the server at ``provisioner.url``
for it, so the reimage and the server may be different processes (``fleet-console
serve-boot`` runs the server for a site; the lab runs it in its worker; a site
service can embed :class:`IpxeServer` as it is).  Only names of that exact form
are served (no other file of the root, no path, so no ``..``); the root is checked
as the writer checks it and every script is opened without following a link.
Only GET and HEAD are answered, a request line or header is at most 1 KiB and a
body is refused.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from pathlib import Path

import httpx
from aiohttp import web

from console.errors import ActionError, ProtocolError, Timeout, Unreachable
from console.provision import Assignment, Fetch
from console.provision.httpserve import HttpService
from console.trust import write_whole
from inventory.model import Image, Node

__all__ = [
    "IpxeProvisioner",
    "IpxeServer",
    "check_script_image",
    "check_script_node",
    "open_root",
    "render_script",
    "script_name",
]

_SCRIPT = re.compile(r"^[0-9a-f]{2}(-[0-9a-f]{2}){5}\.ipxe$")
_IMAGE_LINE = re.compile(r"^\s*set\s+image-(name|version)\s+(\S+)\s*$", re.M)
_KEEP_FETCHES = 5000
#: a boot script is a few hundred bytes; anything far bigger in the root is not ours
_MAX_SCRIPT = 64 * 1024

_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
#: a hostname-like token: letters, digits, dot, dash, underscore; starts with a letter or digit
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_IMAGE_WORD = re.compile(r"^[A-Za-z0-9._+-]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: scheme http/https/tftp, a host name or [IPv6], an optional port, then RFC 3986 path and
#: query characters without ``$`` (iPXE settings expansion), ``;``, ``#``, ``|``, quotes,
#: backslash and whitespace.  No user:password@ (a secret does not belong in a boot script).
_URL = re.compile(r"^(?:https?|tftp)://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])"
                  r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~:/?@!&'()*+,=%-]*)?$")
#: kernel command line: printable ASCII, without the characters iPXE gives a meaning
_CMDLINE_BAD = {"$": "iPXE expands ${...} (it reads iPXE settings)", ";": "';' separates iPXE commands",
                "\\": "iPXE joins a line ending in a backslash with the next"}
_OPERATORS = ("||", "&&")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
#: longest URL and command line accepted (Linux keeps at most 2048-4096 bytes of command line)
_MAX_URL, _MAX_CMDLINE = 2048, 4096

_STATE = "# fleet-console-state: "
PENDING, VERIFIED = "pending", "verified"


def _shown(value: str, limit: int = 60) -> str:
    """A bad value for a one-line message: repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _printable_ascii(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ActionError(f"{what} is {len(value)} characters long, more than {limit}: refused for the iPXE script")
    if bad := _NOT_PRINTABLE.search(value):
        ch, i = bad.group(), bad.start()
        kind = "a line break" if ch in "\r\n\v\f\x85\u2028\u2029" else "a control or non-ASCII character"
        raise ActionError(f"{what} {_shown(value)} holds {kind} ({ch!r} at {i}): refused, it would "
                          f"end the iPXE script's line and start a command of its own")


def _check_url(what: str, value: str | None) -> str:
    if not value:
        raise ActionError(f"{what} is missing (PXE boots a kernel and an initrd)")
    _printable_ascii(what, value, _MAX_URL)
    if not _URL.match(value):
        raise ActionError(f"{what} {_shown(value)} is not a plain http, https or tftp URL (no spaces, '$', ';', "
                          f"'#', '|', quotes, backslashes or user@): refused for the iPXE script")
    return value


def _check_cmdline(what: str, value: str) -> str:
    _printable_ascii(what, value, _MAX_CMDLINE)
    for ch, why in _CMDLINE_BAD.items():
        if ch in value:
            raise ActionError(f"{what} {_shown(value)} contains {ch!r}: refused ({why})")
    for token in value.split():
        if token in _OPERATORS:
            raise ActionError(f"{what} {_shown(value)} contains the token {token!r}: refused "
                              f"(iPXE runs what follows it as another command)")
        if token.startswith("#"):
            raise ActionError(f"{what} {_shown(value)} has a word starting with '#': refused "
                              f"(iPXE drops the rest of the line as a comment)")
    return value


def _mac_of(node: Node) -> str:
    """The node's MAC as ``aa:bb:cc:dd:ee:ff``; ActionError when it is missing or not a MAC."""
    if not node.mac:
        raise ActionError(f"{_node_label(node)}: no MAC address in the inventory (the ipxe provisioner assigns by MAC)")
    mac = node.mac.lower()
    if not _MAC.match(mac):
        raise ActionError(f"{_node_label(node)}: MAC {_shown(node.mac)} is not a MAC address "
                          f"(aa:bb:cc:dd:ee:ff): refused as a boot script name")
    return mac.replace("-", ":")


def _node_label(node: Node) -> str:
    return node.name if _NODE_NAME.match(node.name or "") else f"node {_shown(node.name or '')}"


def check_script_node(node: Node) -> None:
    """ActionError unless ``node``'s name and MAC can go into a boot script and its name."""
    if not _NODE_NAME.match(node.name or ""):
        _printable_ascii("node name", node.name or "", 253)
        raise ActionError(f"node name {_shown(node.name or '')} is not hostname-like (letters, digits, '.', '-', "
                          f"'_', starting with a letter or digit): refused for the iPXE script")
    _mac_of(node)


def check_script_image(image: Image) -> None:
    """ActionError unless every value of ``image`` that goes into an iPXE script is safe there."""
    for field in ("name", "version"):
        value = getattr(image, field) or ""
        if not _IMAGE_WORD.match(value):
            raise ActionError(f"image {field} {_shown(value)} is not a plain word (letters, digits, '.', '_', "
                              f"'+', '-'): refused for the iPXE script")
    ref = image.ref
    if image.sha256 is not None and not _SHA256.match(image.sha256):
        raise ActionError(f"image {ref}: sha256 {_shown(image.sha256)} is not 64 lowercase hex digits")
    _check_url(f"image {ref}: kernel", image.kernel)
    _check_url(f"image {ref}: initrd", image.initrd)
    _check_cmdline(f"image {ref}: cmdline", image.cmdline or "")


def script_name(mac: str) -> str:
    """``aa-bb-cc-dd-ee-ff.ipxe`` for MAC ``AA:BB:CC:DD:EE:FF``; ActionError for anything else."""
    low = (mac or "").lower()
    if not _MAC.match(low):
        raise ActionError(f"MAC {_shown(mac or '')} is not a MAC address (aa:bb:cc:dd:ee:ff): "
                          f"refused as a boot script name")
    return low.replace(":", "-") + ".ipxe"


def render_script(node: Node, image: Image, state: str = PENDING) -> str:
    """The iPXE script that installs ``image`` on ``node``.

    Image variables first (``image-name``, ``image-version``, ``image-sha256``), then a
    kernel line carrying ``fleet.image=NAME@VERSION`` for the installer.  ActionError
    (nothing rendered) when a value could break out of its line or token.
    """
    if not image.kernel or not image.initrd:
        raise ActionError(f"image {image.ref} has no kernel/initrd URL (PXE boots a kernel and an initrd)")
    check_script_node(node)
    check_script_image(image)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        "#!ipxe",
        f"# fleet-console: {image.ref} for {node.name} ({_mac_of(node)}), written {stamp}",
        _STATE + state,
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
    found = {m[1]: m[2] for m in _IMAGE_LINE.finditer(script)}
    if "name" in found and "version" in found:
        return f"{found['name']}@{found['version']}"
    return None


def _state_of(script: str) -> str | None:
    """``pending`` / ``verified`` for a script we wrote; None for one that is not ours (or older)."""
    for line in script.splitlines()[:5]:
        if line.startswith(_STATE):
            return line[len(_STATE):].strip()
    return None


def _open_flags(extra: int) -> int:
    return extra | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _read_at(dfd: int, name: str, where: str) -> str | None:
    """The text of ``name`` in the directory ``dfd`` (None: no such file).

    Never follows a symbolic link, never blocks on a FIFO, reads at most _MAX_SCRIPT bytes.
    """
    try:
        fd = os.open(name, _open_flags(os.O_RDONLY | os.O_NONBLOCK), dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ActionError(f"{where} is a symbolic link: not following it (remove it)") from None
        raise ActionError(f"cannot read {where}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ActionError(f"{where} is not a regular file: refused (remove it)")
        if st.st_size > _MAX_SCRIPT:
            raise ActionError(f"{where} is {st.st_size} bytes, more than a boot script ({_MAX_SCRIPT}): refused")
        data = os.read(fd, _MAX_SCRIPT + 1)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ActionError(f"{where} is not UTF-8 text: refused") from None


def _write_at(dfd: int, name: str, text: str) -> None:
    """Replace ``name`` in the directory ``dfd`` atomically (:func:`~console.trust.write_whole`:
    a new file, never a link followed, fsync, renamed over the old one), 0644 whatever the
    umask (the HTTP server, maybe another user, must read it); then fsync of the directory."""
    write_whole(dfd, name, text.encode("utf-8"), mode=0o644)
    os.fsync(dfd)


def _unlink_at(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)  # removes a link itself, never what it points at
    except FileNotFoundError:
        pass


def open_root(root: Path, *, create: bool = False) -> int:
    """A descriptor of the boot root directory, checked as OpenSSH's StrictModes would.

    Refused (ActionError): a symbolic link, not a directory, owned by someone other than
    us or root, writable by others, or group-writable for a group other than ours.
    """
    if create:
        try:
            os.makedirs(root, mode=0o755, exist_ok=True)
        except OSError as exc:
            raise ActionError(f"cannot create boot root {root}: {exc.strerror or exc}") from None
    try:
        dfd = os.open(root, _open_flags(os.O_RDONLY | os.O_DIRECTORY))
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW on a link: ELOOP, or ENOTDIR on Linux
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and os.path.islink(root)):
            raise ActionError(f"boot root {root} is a symbolic link: refused (name the real directory)") from None
        if exc.errno == errno.ENOTDIR:
            raise ActionError(f"boot root {root} is not a directory") from None
        raise ActionError(f"cannot open boot root {root}: {exc.strerror or exc}") from None
    st = os.fstat(dfd)
    problem = None
    if st.st_uid not in (os.geteuid(), 0):
        problem = f"owned by uid {st.st_uid} (neither you nor root)"
    elif st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid not in (os.getegid(), 0)):
        problem = f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        os.close(dfd)
        raise ActionError(f"boot root {root} is {problem}: refused, anyone who can write there decides what "
                          f"nodes boot (chown it to you and chmod go-w)")
    return dfd


class IpxeProvisioner:
    """Writes per-MAC boot scripts into ``root``; reads fetches from the server at ``url``."""

    kind = "ipxe"

    def __init__(self, root: str | os.PathLike[str], url: str | None = None, *, timeout: float = 5.0) -> None:
        self.root = Path(root)
        self.url = url.rstrip("/") if url else None
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None

    def _name(self, node: Node) -> str:
        return script_name(_mac_of(node))

    def _path(self, node: Node) -> Path:
        return self.root / self._name(node)

    def _where(self, name: str) -> str:
        return f"boot script {self.root / name}"

    def _read(self, dfd: int, name: str) -> Assignment | None:
        text = _read_at(dfd, name, self._where(name))
        return None if text is None else Assignment(_image_of(text), str(self.root / name))

    async def assign(self, node: Node, image: Image) -> Assignment | None:
        """Write the node's script for ``image``; keeps the replaced one for rollback.

        The record of the replaced script (``.previous``) is left alone when the current
        script is our own unfinished assignment: it already holds the last known-good one.
        Nothing is written when a value is refused.
        """
        script = render_script(node, image)  # refuses before anything is touched
        name = self._name(node)
        prev = name + ".previous"
        dfd = open_root(self.root, create=True)
        try:
            old = _read_at(dfd, name, self._where(name))
            recorded = _read_at(dfd, prev, self._where(prev))
            if old is not None and _state_of(old) == PENDING:
                # an earlier attempt never finished: keep its record of what was there before it
                if recorded is None:
                    _write_at(dfd, prev, "")  # nothing known-good: a rollback boots from disk
            else:
                # an empty .previous records "there was no script" (rollback then removes it)
                _write_at(dfd, prev, old or "")
            _write_at(dfd, name, script)
        except OSError as exc:
            raise ActionError(f"cannot write {self._where(name)}: {exc.strerror or exc}") from None
        finally:
            os.close(dfd)
        return None if old is None else Assignment(_image_of(old), str(self.root / name))

    async def confirm(self, node: Node) -> None:
        """Mark the node's script verified (the reimage finished): from now on it is the
        known-good assignment the next :meth:`assign` keeps for rollback."""
        name = self._name(node)
        dfd = open_root(self.root)
        try:
            text = _read_at(dfd, name, self._where(name))
            if text is not None and _state_of(text) == PENDING:
                _write_at(dfd, name, text.replace(_STATE + PENDING, _STATE + VERIFIED, 1))
        except OSError as exc:
            raise ActionError(f"cannot write {self._where(name)}: {exc.strerror or exc}") from None
        finally:
            os.close(dfd)

    async def assignment(self, node: Node) -> Assignment | None:
        """The node's current script (None: no script, the node boots from disk)."""
        name = self._name(node)
        try:
            dfd = open_root(self.root)
        except ActionError:
            if not os.path.lexists(self.root):
                return None
            raise
        try:
            return self._read(dfd, name)
        finally:
            os.close(dfd)

    async def previous(self, node: Node) -> Assignment | None:
        """The script the last assign replaced: None when nothing was recorded,
        ``Assignment(None, ...)`` when the node had no script."""
        prev = self._name(node) + ".previous"
        if not os.path.lexists(self.root):
            return None
        dfd = open_root(self.root)
        try:
            text = _read_at(dfd, prev, self._where(prev))
        finally:
            os.close(dfd)
        if text is None:
            return None
        return Assignment(_image_of(text), str(self.root / prev)) if text else Assignment(None, "no boot script")

    async def rollback(self, node: Node) -> Assignment | None:
        """Put the previous script back (remove the script when there was none).

        Returns the restored assignment; None when no previous one was recorded.
        """
        name = self._name(node)
        prev = name + ".previous"
        if not os.path.lexists(self.root):
            return None
        dfd = open_root(self.root)
        try:
            text = _read_at(dfd, prev, self._where(prev))
            if text is None:
                return None
            if text:
                _write_at(dfd, name, text)
            else:
                _unlink_at(dfd, name)
            _unlink_at(dfd, prev)
            os.fsync(dfd)
            return self._read(dfd, name) if text else Assignment(None, "no boot script")
        except OSError as exc:
            raise ActionError(f"cannot roll back {self._where(name)}: {exc.strerror or exc}") from None
        finally:
            os.close(dfd)

    async def fetches(self, node: Node, since: float = 0.0) -> list[Fetch] | None:
        """Script fetches of ``node`` the server recorded after ``since`` (None: no server URL)."""
        if not self.url:
            return None
        mac = self._name(node)[: -len(".ipxe")]
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


def _serve_text(root: Path, name: str) -> str | None:
    """A script for the server to send: read without following a link (None: there is none).

    ActionError when the root is unsafe (a link, someone else's, writable by others) or
    the script is not a plain file of at most _MAX_SCRIPT bytes.
    """
    try:
        dfd = open_root(root)
    except ActionError:
        if not os.path.lexists(root):
            return None
        raise
    try:
        return _read_at(dfd, name, f"boot script {root / name}")
    finally:
        os.close(dfd)


#: a boot client sends a short request line and a few headers, and no body
_LIMITS = {"max_line_size": 1024, "max_field_size": 1024, "max_headers": 32, "keepalive_timeout": 15.0}


class IpxeServer(HttpService):
    """HTTP server for per-MAC iPXE scripts, recording every fetch.

    ``on_request(entry)``, when given, is called once per request answered (any path,
    any method) with ``time``, ``client``, ``method``, ``path`` (as sent, at most 200
    characters), ``status`` and, for a script, ``mac``: the boot server command logs it.
    """

    handler_args = _LIMITS

    def __init__(self, root: str | os.PathLike[str], address: str = "127.0.0.1", port: int = 0, *,
                 on_request=None) -> None:
        super().__init__(address, port)
        self.root = Path(root)
        self.fetches: list[dict] = []
        self.on_request = on_request

    def routes(self, app: web.Application) -> None:
        """Add this server's routes (subclasses add more)."""
        app.router.add_get("/boot/{name}", self._script)
        app.router.add_get("/fetches", self._fetches)

    def make_app(self) -> web.Application:
        self.root.mkdir(parents=True, exist_ok=True)
        app = web.Application(client_max_size=1024, middlewares=[self._logged])
        self.routes(app)
        return app

    @web.middleware
    async def _logged(self, request: web.Request, handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            resp: web.StreamResponse = web.Response(status=405, text="only GET and HEAD\n",
                                                    headers={"Allow": "GET, HEAD"})
        elif request.can_read_body:
            resp = web.Response(status=413, text="a request to the boot server has no body\n")
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:  # no route (404): logged, then answered as aiohttp does
                self._log(request, exc.status)
                raise
        self._log(request, resp.status)
        return resp

    def _log(self, request: web.Request, status: int) -> None:
        if self.on_request is not None:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.on_request({"time": time.time(), "client": peer[0] if peer else None, "method": request.method,
                             "path": request.raw_path[:200], "status": status})

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
            body = _serve_text(self.root, name)
        except ActionError:  # a link, not a file, too big, an unsafe root: never followed or served
            entry["status"] = 403
            self._record(entry)
            return web.Response(status=403, text="this boot script is not a plain file in a safe root\n")
        if body is None:
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
