"""A stand-in for the subset of Digital Rebar Provision (DRP) the ``drp`` provisioner uses.

Built from DRP's published API documentation (doc/api.rst, doc/dev/dev-curl.rst, the
drpcli reference): JSON over HTTP under ``/api/v3``, token auth with
``Authorization: Bearer <token>``, RFC 6902 JSON Patch for updates.  Served:

``GET    /api/v3/machines[?Field=value...]``      list (filters on top-level fields)
``GET    /api/v3/machines/{uuid|Name:name}``        one machine
``PATCH  /api/v3/machines/{id}``                    JSON Patch (test/add/replace/remove)
``GET    /api/v3/machines/{id}/params``             all params
``PATCH  /api/v3/machines/{id}/params``             JSON Patch on the params
``GET    /api/v3/machines/{id}/params/{key}``       one param (keys may contain ``/``)
``POST   /api/v3/machines/{id}/params/{key}``       set one param (body: the JSON value)
``GET    /api/v3/bootenvs``                         the boot environments
``GET    /api/v3/jobs[?Machine=uuid]``              jobs
``GET    /{aa:bb:cc:dd:ee:ff}.ipxe``                the provisioner's per-MAC boot script
                                                    (what DRP's default.ipxe chains to)

Errors are DRP's error object: ``{"Model", "Key", "Type", "Messages", "Code"}``.

Boot environments: ``local`` (``exit``: boot the next device, the disk),
``fleet-install`` (renders an install script from the machine's ``fleet/image``
param: ``{name, version, kernel, initrd, cmdline, sha256}``).  When a machine
fetches its ``fleet-install`` script the stand-in does what the install content's
tasks do on a real endpoint: records ``last-boot-macaddr``, creates a Job for the
install task, and sets the BootEnv back to ``local`` so the next boot is from disk.
Machines (uuid, name, MAC, address) come from the lab's site.
"""

from __future__ import annotations

import copy
import hmac
import json
import time
import uuid as uuidlib
from typing import Any

from aiohttp import web

from console.provision.httpserve import HttpService

__all__ = ["DrpLab", "INSTALL_BOOTENV", "apply_patch"]

INSTALL_BOOTENV = "fleet-install"
BOOTENVS = ("local", "sledgehammer", INSTALL_BOOTENV)


class PatchError(Exception):
    """A JSON Patch that does not apply (409) or is malformed (400)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(400, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 patch (test, add, replace, remove) to a copy of ``doc``."""
    if not isinstance(ops, list):
        raise PatchError(400, "a JSON Patch must be an array of operations")
    out = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(400, "each patch operation needs op and path")
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind == "test":
            cur: Any = out
            for p in parts:
                if not isinstance(cur, dict) or p not in cur:
                    raise PatchError(409, f"Patch error: test failed: {op['path']} is missing")
                cur = cur[p]
            if cur != op.get("value"):
                raise PatchError(409, f"Patch error: test failed at {op['path']}")
            continue
        if not parts:
            raise PatchError(400, f"cannot {kind} the whole document")
        parent: Any = out
        for p in parts[:-1]:
            if not isinstance(parent, dict) or p not in parent:
                raise PatchError(409, f"Patch error: {op['path']}: no such parent")
            parent = parent[p]
        key = parts[-1]
        if not isinstance(parent, dict):
            raise PatchError(400, f"Patch error: {op['path']}: only objects are supported")
        if kind in ("add", "replace"):
            if "value" not in op:
                raise PatchError(400, f"{kind} needs a value")
            if kind == "replace" and key not in parent:
                raise PatchError(409, f"Patch error: replace {op['path']}: no such member")
            parent[key] = op["value"]
        elif kind == "remove":
            if key not in parent:
                raise PatchError(409, f"Patch error: remove {op['path']}: no such member")
            del parent[key]
        else:
            raise PatchError(400, f"unsupported patch operation {kind!r}")
    return out


def _error(code: int, message: str, model: str = "", key: str = "", kind: str = "API_ERROR") -> web.Response:
    body = {"Model": model, "Key": key, "Type": kind, "Messages": [message], "Code": code}
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(value), content_type="application/json")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class DrpLab(HttpService):
    """The DRP stand-in: API and provisioner on one loopback HTTP port."""

    def __init__(self, machines: list[dict[str, Any]], token: str, address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(address, port)
        self._token = token
        self.machines: dict[str, dict[str, Any]] = {}
        for m in machines:
            uid = m.get("uuid") or str(uuidlib.uuid3(uuidlib.NAMESPACE_DNS, m["name"]))
            self.machines[uid] = {
                "Uuid": uid, "Name": m["name"], "Description": "", "Address": m.get("address") or "",
                "HardwareAddrs": [m["mac"].lower()] if m.get("mac") else [],
                "BootEnv": "local", "Workflow": "", "Stage": "none", "Profiles": [], "Tasks": [],
                "CurrentTask": -1, "Runnable": True, "Locked": False, "Arch": "amd64", "OS": "",
                "Params": {}, "Meta": {}, "Available": True, "Validated": True, "Errors": [],
            }
        self.jobs: list[dict[str, Any]] = []
        self.fetches: list[dict[str, Any]] = []

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/api/v3/machines", self._list)
        r.add_get("/api/v3/machines/{id}", self._get)
        r.add_patch("/api/v3/machines/{id}", self._patch)
        r.add_get("/api/v3/machines/{id}/params", self._params)
        r.add_patch("/api/v3/machines/{id}/params", self._patch_params)
        r.add_get("/api/v3/machines/{id}/params/{key:.+}", self._get_param)
        r.add_post("/api/v3/machines/{id}/params/{key:.+}", self._set_param)
        r.add_get("/api/v3/bootenvs", self._bootenvs)
        r.add_get("/api/v3/jobs", self._jobs)
        r.add_get("/{name}", self._boot_script)
        return app

    # ------------------------------------------------------------- auth
    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if not request.path.startswith("/api/"):
            return await handler(request)  # the provisioner's files are unauthenticated, as on DRP
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token.encode()):
            return _error(401, "Unauthorized", kind="AUTH_ERROR")
        return await handler(request)

    # ------------------------------------------------------------- machines
    def _find(self, ident: str) -> dict[str, Any] | None:
        if ident.startswith("Name:"):
            name = ident[5:]
            return next((m for m in self.machines.values() if m["Name"] == name), None)
        return self.machines.get(ident)

    def _machine(self, request: web.Request) -> dict[str, Any]:
        ident = request.match_info["id"]
        m = self._find(ident)
        if m is None:
            raise web.HTTPNotFound(text=json.dumps({"Model": "machines", "Key": ident, "Type": "API_ERROR",
                                                    "Messages": [f"Not Found: machines:{ident}"], "Code": 404}),
                                   content_type="application/json")
        return m

    async def _list(self, request: web.Request) -> web.Response:
        out = []
        slim = set(request.query.get("slim", "").split(","))
        for m in self.machines.values():
            ok = True
            for key, want in request.query.items():
                if key in ("slim", "sort", "limit", "offset", "params"):
                    continue
                have = m.get(key, m["Params"].get(key))
                if isinstance(have, list):
                    ok = want.lower() in [str(h).lower() for h in have]
                else:
                    ok = str(have).lower() == want.lower() if have is not None else False
                if not ok:
                    break
            if ok:
                item = dict(m)
                for field in slim & {"Params", "Meta"}:
                    item[field] = {}
                out.append(item)
        return _json(out)

    async def _get(self, request: web.Request) -> web.Response:
        return _json(self._machine(request))

    async def _read_json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text=json.dumps({"Model": "", "Key": "", "Type": "API_ERROR",
                                                      "Messages": ["body is not JSON"], "Code": 400}),
                                     content_type="application/json") from None

    async def _patch(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        ops = await self._read_json(request)
        try:
            new = apply_patch(m, ops)
        except PatchError as exc:
            return _error(exc.code, str(exc), "machines", m["Uuid"])
        for field in ("Uuid", "Name"):
            if new.get(field) != m[field]:
                return _error(422, f"{field} cannot be changed", "machines", m["Uuid"], "ValidationError")
        if new.get("BootEnv") not in BOOTENVS:
            return _error(422, f"Bootenv {new.get('BootEnv')} does not exist", "machines", m["Uuid"],
                          "ValidationError")
        m.clear()
        m.update(new)
        return _json(m)

    async def _params(self, request: web.Request) -> web.Response:
        return _json(self._machine(request)["Params"])

    async def _patch_params(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        ops = await self._read_json(request)
        try:
            m["Params"] = apply_patch(m["Params"], ops)
        except PatchError as exc:
            return _error(exc.code, str(exc), "machines", m["Uuid"])
        return _json(m["Params"])

    async def _get_param(self, request: web.Request) -> web.Response:
        return _json(self._machine(request)["Params"].get(request.match_info["key"]))

    async def _set_param(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        value = await self._read_json(request)
        m["Params"][request.match_info["key"]] = value
        return _json(value)

    async def _bootenvs(self, request: web.Request) -> web.Response:
        return _json([{"Name": n, "Available": True, "OnlyUnknown": False} for n in BOOTENVS])

    async def _jobs(self, request: web.Request) -> web.Response:
        want = request.query.get("Machine")
        return _json([j for j in self.jobs if not want or j["Machine"] == want])

    # ------------------------------------------------------------- provisioner
    async def _boot_script(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].lower()
        if not name.endswith(".ipxe"):
            return web.Response(status=404, text="not found\n")
        mac = name[:-5].replace("-", ":")
        m = next((x for x in self.machines.values() if mac in x["HardwareAddrs"]), None)
        self.fetches.append({"time": time.time(), "mac": mac, "status": 200 if m else 404})
        if m is None:
            return web.Response(status=404, text="unknown machine\n")
        m["Params"]["last-boot-macaddr"] = mac
        if m["BootEnv"] != INSTALL_BOOTENV:
            return web.Response(text="#!ipxe\necho Booting from local disk\nexit\n", content_type="text/plain")
        image = m["Params"].get("fleet/image")
        script = _install_script(m, image if isinstance(image, dict) else {})
        now = time.time()
        self.jobs.append({
            "Uuid": str(uuidlib.uuid4()), "Machine": m["Uuid"], "BootEnv": INSTALL_BOOTENV,
            "Task": f"{INSTALL_BOOTENV}:install", "Stage": INSTALL_BOOTENV, "State": "running",
            "StartTime": _rfc3339(now), "EndTime": "0001-01-01T00:00:00Z", "Current": True,
        })
        m["BootEnv"] = "local"  # the install content's last task: next boot is from disk
        return web.Response(text=script, content_type="text/plain")


def _install_script(machine: dict[str, Any], image: dict[str, Any]) -> str:
    lines = ["#!ipxe", f"# DRP BootEnv {INSTALL_BOOTENV} for {machine['Name']}"]
    for key, var in (("name", "image-name"), ("version", "image-version"), ("sha256", "image-sha256")):
        if image.get(key):
            lines.append(f"set {var} {image[key]}")
    if image.get("kernel"):
        extra = image.get("cmdline") or ""
        lines.append(f"kernel {image['kernel']} fleet.image=${{image-name}}@${{image-version}} {extra}".rstrip())
    if image.get("initrd"):
        lines.append(f"initrd {image['initrd']}")
    lines.append("boot")
    return "\n".join(lines) + "\n"
