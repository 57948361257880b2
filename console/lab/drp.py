"""A stand-in for the part of Digital Rebar Provision (DRP v4) the ``drp`` provisioner uses.

Built from DRP's API definition (the swagger ``drppy-client`` is generated from: the
contract test drives this stand-in through it) and its docs.  JSON over HTTP under
``/api/v3``, ``Authorization: Bearer <token>``, RFC 6902 JSON Patch for updates.  It
refuses what DRP refuses, so the console meets here the failures it would meet on a site:

- auth: no or a malformed ``Authorization`` is 401; a token that expired is 403;
- lists (machines, jobs, profiles, ...) take DRP's filters: ``Index=value`` (Eq) or
  ``Index=Op(args)`` with Eq, Ne, Lt, Lte, Gt, Gte, In, Nin, Re, Between, Except (a list
  index such as ``HardwareAddrs`` matches when any member does); an unknown index or op is
  406; ``offset``/``limit`` page (``X-DRP-LIST-COUNT``, ``X-DRP-LIST-TOTAL-COUNT``), ``sort``,
  ``reverse``, ``slim=Params,Meta``; ``aggregate=true`` merges the params of the machine's
  profiles and the ``global`` profile under its own;
- ``PATCH`` of a machine: a failed ``test`` is 409; a BootEnv change while the machine has
  a Workflow (and keeps it) is 422 "Changing machine bootenv not allowed; remove workflow
  first"; an unknown BootEnv, Workflow or Profile is 422; a param that does not match its
  definition's Schema is 422 (the request changes nothing);
- setting a Workflow does what DRP does: Stage becomes its first stage, BootEnv that
  stage's, Tasks the expanded list (``stage:X``, ``bootenv:Y``, the stage's tasks, ...),
  CurrentTask -1, WorkflowComplete false;
- the runner: when a machine in a workflow network-boots sledgehammer, the stand-in runs
  its task list as DRP's runner (the agent in sledgehammer) does: each task makes a Job
  (``created`` -> ``running`` -> ``finished``/``failed`` with an ExitState), the machine's
  Stage, BootEnv, CurrentTask, CurrentJob, JobState follow, and WorkflowComplete is set at
  the end of the list.  A ``lab/fail-task`` param naming a task makes its job fail (the
  machine stops: JobState failed, Runnable false).

Errors are DRP's ``models.Error``: ``{"Model", "Key", "Type", "Messages", "Code"}``.
Content: DRP's stock ``local``, ``sledgehammer``, ``ignore`` BootEnvs and ``global``
profile, plus the content pack ``contrib/drp/fleet-console.yaml`` (params with schemas,
the fleet-install BootEnv, the fleet-image-deploy task, stages and workflow), as a DRP
admin loads it with drpcli.  Without it (``content=False``) the stand-in is a stock DRP.

The provisioner side: ``GET /{aa:bb:cc:dd:ee:ff}.ipxe`` (what DRP's default.ipxe chains to)
renders the machine's BootEnv: ``local`` exits to the disk, ``fleet-install`` chains the
installer named by ``fleet/image`` (no Job: nothing runs a task there, as on DRP), and
``sledgehammer`` boots the runner, which installs ``fleet/image`` when a
``fleet-image-deploy`` task is left in the machine's list.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
import secrets as pysecrets
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from console.provision.httpserve import HttpService

__all__ = ["CONTENT_PACK", "DrpLab", "INSTALL_BOOTENV", "apply_patch", "check_schema"]

INSTALL_BOOTENV = "fleet-install"
#: the content pack a DRP admin loads for fleet-console (the stand-in loads the same file)
CONTENT_PACK = Path(__file__).resolve().parents[2] / "contrib" / "drp" / "fleet-console.yaml"
WORKFLOW_BOOTENV_REFUSED = "Changing machine bootenv not allowed; remove workflow first"
ZERO_TIME = "0001-01-01T00:00:00Z"
#: the query words that are not index filters (DRP's list options)
LIST_OPTIONS = {"offset", "limit", "sort", "reverse", "slim", "params", "aggregate", "decode", "filter",
                "exclude-self", "range-only", "group-by", "raw", "commented", "reduced", "expand"}
#: filterable indexes per collection (DRP answers 406 for any other)
INDEXES = {
    "machines": {"Uuid", "Name", "Description", "Address", "BootEnv", "Workflow", "Stage", "HardwareAddrs",
                 "Runnable", "WorkflowComplete", "CurrentTask", "CurrentJob", "JobState", "JobExitState",
                 "Locked", "Arch", "OS", "Profiles", "Pool", "Available", "Validated"},
    "jobs": {"Uuid", "Machine", "Task", "Stage", "Workflow", "BootEnv", "State", "ExitState", "StartTime",
             "EndTime", "Current", "Previous", "Available"},
    "profiles": {"Name", "Description", "Available"},
    "bootenvs": {"Name", "OnlyUnknown", "Available"},
    "stages": {"Name", "BootEnv", "Available"},
    "workflows": {"Name", "Available"},
    "tasks": {"Name", "Available"},
    "params": {"Name", "Secure", "Available"},
}
_FILTER = re.compile(r"^(Eq|Ne|Lt|Lte|Gt|Gte|In|Nin|Re|Between|Except)\((.*)\)$", re.S)


class PatchError(Exception):
    """A JSON Patch that does not apply (409) or is malformed (400)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ApiError(Exception):
    """A DRP error answer."""

    def __init__(self, code: int, message: str, model: str = "", key: str = "", kind: str = "API_ERROR") -> None:
        super().__init__(message)
        self.code, self.model, self.key, self.kind = code, model, key, kind


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not isinstance(path, str) or not path.startswith("/"):
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
            parent[key] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if key not in parent:
                raise PatchError(409, f"Patch error: remove {op['path']}: no such member")
            del parent[key]
        else:
            raise PatchError(400, f"unsupported patch operation {kind!r}")
    return out


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check_schema(value: Any, schema: Any, where: str = "") -> list[str]:
    """What is wrong with ``value`` under a JSON Schema (the subset DRP param schemas here use)."""
    if not isinstance(schema, dict):
        return []
    errs: list[str] = []
    want = schema.get("type")
    if want is not None:
        kinds = want if isinstance(want, list) else [want]
        ok = False
        for k in kinds:
            if k == "integer":
                ok = ok or (isinstance(value, int) and not isinstance(value, bool))
            elif k == "number":
                ok = ok or (isinstance(value, int | float) and not isinstance(value, bool))
            elif k in _TYPES:
                ok = ok or (isinstance(value, _TYPES[k]) and not (k != "boolean" and isinstance(value, bool)))
        if not ok:
            return [f"{where or 'value'}: expected {'/'.join(kinds)}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{where or 'value'}: must be one of {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errs.append(f"{where or 'value'}: does not match {schema['pattern']}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errs.append(f"{where}/{key}: required")
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                errs.extend(check_schema(sub, props[key], f"{where}/{key}"))
            elif schema.get("additionalProperties") is False:
                errs.append(f"{where}/{key}: not allowed")
    return errs


def _error(code: int, message: str, model: str = "", key: str = "", kind: str = "API_ERROR") -> web.Response:
    body = {"Model": model, "Key": key, "Type": kind, "Messages": [message], "Code": code}
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(value), content_type="application/json", headers=headers)


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _scalar(have: Any, text: str) -> Any:
    """``text`` as the type of the index value it is compared with."""
    if isinstance(have, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not a boolean")
        return text.lower() == "true"
    if isinstance(have, int):
        return int(text)
    return text


def _match(have: Any, op: str, args: list[str]) -> bool:
    if isinstance(have, list):  # a list index: any member
        if op in ("Ne", "Nin"):
            return all(_match(h, op, args) for h in have)
        return any(_match(h, op, args) for h in have)
    if have is None:
        have = ""
    if op == "Re":
        return re.search(args[0], str(have)) is not None
    vals = [_scalar(have, a) for a in args]
    if isinstance(have, str):
        have = have.lower() if op in ("Eq", "Ne", "In", "Nin") and _looks_mac(have) else have
        vals = [v.lower() if isinstance(v, str) and _looks_mac(v) else v for v in vals]
    if op == "Eq":
        return bool(have == vals[0])
    if op == "Ne":
        return bool(have != vals[0])
    if op == "In":
        return have in vals
    if op == "Nin":
        return have not in vals
    if op == "Between":
        return bool(vals[0] <= have <= vals[1])
    if op == "Except":
        return not (vals[0] <= have <= vals[1])
    return bool({"Lt": have < vals[0], "Lte": have <= vals[0], "Gt": have > vals[0], "Gte": have >= vals[0]}[op])


def _looks_mac(text: str) -> bool:
    return re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", text) is not None


def _parse_filter(value: str) -> tuple[str, list[str]]:
    m = _FILTER.match(value)
    if not m:
        return "Eq", [value]
    op, inner = m.group(1), m.group(2)
    args = [inner] if op in ("Eq", "Ne", "Lt", "Lte", "Gt", "Gte", "Re") else inner.split(",")
    if op in ("Between", "Except") and len(args) != 2:
        raise ValueError(f"{op} needs two values")
    if op == "Re":
        re.compile(args[0])
    return op, args


class DrpLab(HttpService):
    """The DRP stand-in: API, runner and provisioner on one loopback HTTP port."""

    def __init__(self, machines: list[dict[str, Any]], token: str, address: str = "127.0.0.1", port: int = 0,
                 *, content: bool = True, task_seconds: float = 0.2, workflow: str | None = "fleet-image-deploy",
                 ) -> None:
        super().__init__(address, port)
        #: token -> expiry (unix seconds; None: never)
        self._tokens: dict[str, float | None] = {token: None}
        self.task_seconds = task_seconds
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "bootenvs": {n: {"Name": n, "Description": d, "OnlyUnknown": False, "Available": True,
                             "Validated": True, "Errors": [], "Templates": [], "RequiredParams": []}
                         for n, d in (("local", "boot the next device (the disk)"),
                                      ("sledgehammer", "DRP's discovery and runner image"),
                                      ("ignore", "DRP does not answer this machine's boots"))},
            "stages": {"none": {"Name": "none", "BootEnv": "", "Tasks": [], "Available": True}},
            "workflows": {}, "tasks": {}, "params": {},
            "profiles": {"global": {"Name": "global", "Description": "", "Params": {}, "Profiles": [],
                                    "Available": True, "Validated": True, "Errors": []}},
        }
        if content:
            self.load_content(CONTENT_PACK)
        self.machines: dict[str, dict[str, Any]] = {}
        for m in machines:
            uid = m.get("uuid") or str(uuidlib.uuid3(uuidlib.NAMESPACE_DNS, m["name"]))
            self.machines[uid] = {
                "Uuid": uid, "Name": m["name"], "Description": "", "Address": m.get("address") or "",
                "HardwareAddrs": [m["mac"].lower()] if m.get("mac") else [],
                "BootEnv": "local", "Workflow": "", "Stage": "none", "Profiles": [], "Tasks": [],
                "CurrentTask": -1, "CurrentJob": "", "JobState": "", "JobExitState": "", "JobResultErrors": [],
                "WorkflowComplete": False, "Runnable": True, "Locked": False, "Arch": "amd64", "OS": "",
                "Params": {}, "Meta": {}, "Available": True, "Validated": True, "Errors": [],
            }
            if content and workflow:  # installed by the fleet's workflow: it ran to its end
                mach = self.machines[uid]
                self._start_workflow(mach, workflow)
                last = mach["Tasks"]
                for entry in last:
                    if entry.startswith("stage:"):
                        mach["Stage"] = entry[6:]
                    elif entry.startswith("bootenv:"):
                        mach["BootEnv"] = entry[8:]
                mach["CurrentTask"], mach["WorkflowComplete"] = len(last), True
        self.jobs: list[dict[str, Any]] = []
        self.fetches: list[dict[str, Any]] = []
        self._runners: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------- content and tokens
    def load_content(self, path: Path) -> None:
        """Load a content pack (DRP's bundle format: ``meta`` and ``sections``), as drpcli does."""
        pack = yaml.safe_load(path.read_text())
        for section, objs in (pack.get("sections") or {}).items():
            self.objects.setdefault(section, {})
            for name, obj in objs.items():
                self.objects[section][name] = {**obj, "Name": name, "Available": True, "Validated": True,
                                               "Errors": []}

    def issue_token(self, ttl: float) -> str:
        """A new API token that expires ``ttl`` seconds from now (negative: already expired)."""
        token = "drp-" + pysecrets.token_urlsafe(18)
        self._tokens[token] = time.time() + ttl
        return token

    def expire(self, token: str) -> None:
        """``token`` has expired from now on."""
        self._tokens[token] = time.time() - 1

    async def stop(self) -> None:
        for task in self._runners.values():
            task.cancel()
        for task in list(self._runners.values()):
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._runners.clear()
        await super().stop()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth])
        r = app.router
        r.add_get("/api/v3/machines", self._list_machines)
        r.add_get("/api/v3/machines/{id}", self._get)
        r.add_patch("/api/v3/machines/{id}", self._patch)
        r.add_get("/api/v3/machines/{id}/params", self._params)
        r.add_patch("/api/v3/machines/{id}/params", self._patch_params)
        r.add_get("/api/v3/machines/{id}/params/{key:.+}", self._get_param)
        r.add_post("/api/v3/machines/{id}/params/{key:.+}", self._set_param)
        r.add_delete("/api/v3/machines/{id}/params/{key:.+}", self._delete_param)
        r.add_get("/api/v3/jobs", self._list_jobs)
        r.add_get("/api/v3/jobs/{id}", self._get_job)
        for kind in ("bootenvs", "stages", "workflows", "tasks", "params", "profiles"):
            r.add_get(f"/api/v3/{kind}", self._lister(kind))
            r.add_get(f"/api/v3/{kind}/{{id:.+}}", self._getter(kind))
        r.add_post("/api/v3/profiles", self._create_profile)
        r.add_get("/{name}", self._boot_script)
        return app

    # ------------------------------------------------------------- middlewares
    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.code, str(exc), exc.model, exc.key, exc.kind)

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if not request.path.startswith("/api/"):
            return await handler(request)  # the provisioner's files are unauthenticated, as on DRP
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        known = next((t for t in self._tokens if hmac.compare_digest(token.encode(), t.encode())), None)
        if scheme.lower() != "bearer" or known is None:
            return _error(401, "Unauthorized", kind="AUTH_ERROR")
        expiry = self._tokens[known]
        if expiry is not None and expiry <= time.time():
            return _error(403, "Forbidden: token expired", kind="AUTH_ERROR")
        return await handler(request)

    # ------------------------------------------------------------- lists
    def _aggregate(self, m: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        profiles = self.objects["profiles"]
        for name in ["global", *reversed(m.get("Profiles") or [])]:
            out.update((profiles.get(name) or {}).get("Params") or {})
        out.update(m["Params"])
        return out

    def _present(self, kind: str, obj: dict[str, Any], query: Any) -> dict[str, Any]:
        item = copy.deepcopy(obj)
        if kind == "machines" and query.get("aggregate", "").lower() == "true":
            item["Params"] = self._aggregate(obj)
        if query.get("params") and isinstance(item.get("Params"), dict):
            keep = set(query["params"].split(","))
            item["Params"] = {k: v for k, v in item["Params"].items() if k in keep}
        for field in set(query.get("slim", "").split(",")) & {"Params", "Meta"}:
            if field in item:
                item[field] = {}
        return item

    def _select(self, kind: str, rows: list[dict[str, Any]], request: web.Request) -> web.Response:
        q = request.query
        tests = []
        for key, value in q.items():
            if key in LIST_OPTIONS:
                continue
            if key not in INDEXES.get(kind, set()):
                raise ApiError(406, f"Filter {key}: not a valid index for {kind}", kind=request.method)
            try:
                tests.append((key, *_parse_filter(value)))
            except (ValueError, re.error) as exc:
                raise ApiError(406, f"Filter {key}: {exc}", kind=request.method) from None
        try:
            out = [r for r in rows if all(_match(r.get(k), op, args) for k, op, args in tests)]
        except (ValueError, TypeError) as exc:
            raise ApiError(406, f"Filter: {exc}", kind=request.method) from None
        sort = q.get("sort")
        if sort:
            if sort not in INDEXES.get(kind, set()):
                raise ApiError(406, f"Sort {sort}: not a valid index for {kind}", kind=request.method)
            out.sort(key=lambda r: str(r.get(sort)))
        if q.get("reverse", "").lower() == "true":
            out.reverse()
        total = len(out)
        try:
            offset = int(q.get("offset", "0"))
            limit = int(q.get("limit", "-1"))
            if offset < 0:
                raise ValueError
        except ValueError:
            raise ApiError(406, "offset and limit must be whole numbers", kind=request.method) from None
        out = out[offset:] if limit < 0 else out[offset:offset + limit]
        headers = {"X-DRP-LIST-COUNT": str(len(out)), "X-DRP-LIST-TOTAL-COUNT": str(total)}
        return _json([self._present(kind, r, q) for r in out], headers=headers)

    async def _list_machines(self, request: web.Request) -> web.Response:
        return self._select("machines", list(self.machines.values()), request)

    async def _list_jobs(self, request: web.Request) -> web.Response:
        return self._select("jobs", self.jobs, request)

    async def _get_job(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        job = next((j for j in self.jobs if j["Uuid"] == ident), None)
        if job is None:
            raise ApiError(404, f"Not Found: jobs:{ident}", "jobs", ident, "GET")
        return _json(job)

    def _lister(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            return self._select(kind, list(self.objects[kind].values()), request)
        return handler

    def _getter(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            ident = request.match_info["id"]
            obj = self.objects[kind].get(ident)
            if obj is None:
                raise ApiError(404, f"Not Found: {kind}:{ident}", kind, ident, "GET")
            return _json(obj)
        return handler

    async def _create_profile(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("Name"), str) or not body["Name"]:
            raise ApiError(422, "a profile needs a Name", "profiles", "", "ValidationError")
        name = body["Name"]
        if name in self.objects["profiles"]:
            raise ApiError(409, f"Profile {name} already exists", "profiles", name, "CONFLICT")
        params = body.get("Params") or {}
        self._check_params(params, "profiles", name)
        obj = {"Description": "", "Profiles": [], **body, "Params": params, "Available": True,
               "Validated": True, "Errors": []}
        self.objects["profiles"][name] = obj
        return _json(obj, 201)

    # ------------------------------------------------------------- machines
    def _machine(self, request: web.Request) -> dict[str, Any]:
        ident = request.match_info["id"]
        if ident.startswith("Name:"):
            m = next((x for x in self.machines.values() if x["Name"] == ident[5:]), None)
        else:
            m = self.machines.get(ident)
        if m is None:
            raise ApiError(404, f"Not Found: machines:{ident}", "machines", ident, request.method)
        return m

    async def _get(self, request: web.Request) -> web.Response:
        return _json(self._present("machines", self._machine(request), request.query))

    async def _read_json(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "body is not JSON", kind="API_ERROR") from None

    def _check_params(self, params: Any, model: str, key: str) -> None:
        if not isinstance(params, dict):
            raise ApiError(422, "Params must be an object", model, key, "ValidationError")
        errs: list[str] = []
        for name, value in params.items():
            schema = (self.objects["params"].get(name) or {}).get("Schema")
            errs.extend(f"Param {name}: {e}" for e in check_schema(value, schema))
        if errs:
            raise ApiError(422, "; ".join(errs), model, key, "ValidationError")

    def _start_workflow(self, m: dict[str, Any], name: str) -> None:
        wf = self.objects["workflows"].get(name)
        assert wf is not None
        tasks: list[str] = []
        for stage_name in wf.get("Stages") or ():
            stage = self.objects["stages"].get(stage_name) or {}
            tasks.append(f"stage:{stage_name}")
            if stage.get("BootEnv"):
                tasks.append(f"bootenv:{stage['BootEnv']}")
            tasks.extend(stage.get("Tasks") or ())
        first = self.objects["stages"].get((wf.get("Stages") or ["none"])[0]) or {}
        m.update({"Workflow": name, "Stage": first.get("Name", "none"), "Tasks": tasks, "CurrentTask": -1,
                  "WorkflowComplete": False, "Runnable": True, "JobState": "", "JobExitState": "",
                  "CurrentJob": ""})
        if first.get("BootEnv"):
            m["BootEnv"] = first["BootEnv"]

    async def _patch(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        ops = await self._read_json(request)
        uid = m["Uuid"]
        try:
            new = apply_patch(m, ops)
        except PatchError as exc:
            raise ApiError(exc.code, str(exc), "machines", uid, "JsonPatchError") from None
        if not isinstance(new, dict):
            raise ApiError(422, "a machine is an object", "machines", uid, "ValidationError")
        for field in ("Uuid", "Tasks", "CurrentJob", "JobState", "JobExitState", "WorkflowComplete"):
            if new.get(field) != m.get(field):
                raise ApiError(422, f"{field} cannot be changed", "machines", uid, "ValidationError")
        for ref, kind, what in (("BootEnv", "bootenvs", "Bootenv"), ("Workflow", "workflows", "Workflow")):
            value = new.get(ref)
            if not isinstance(value, str) or (value and value not in self.objects[kind]):
                raise ApiError(422, f"{what} {value} does not exist", "machines", uid, "ValidationError")
        if not new.get("BootEnv"):
            raise ApiError(422, "Bootenv  does not exist", "machines", uid, "ValidationError")
        profiles = new.get("Profiles")
        if not isinstance(profiles, list) or any(p not in self.objects["profiles"] for p in profiles):
            missing = [p for p in profiles or () if p not in self.objects["profiles"]]
            raise ApiError(422, f"Profile {', '.join(map(str, missing)) or '?'} does not exist", "machines", uid,
                           "ValidationError")
        self._check_params(new.get("Params"), "machines", uid)
        wf_changed = new["Workflow"] != m["Workflow"]
        if new["BootEnv"] != m["BootEnv"] and new["Workflow"]:
            raise ApiError(422, WORKFLOW_BOOTENV_REFUSED, "machines", uid, "ValidationError")
        if wf_changed and not new["Workflow"]:
            new.update({"Stage": "none", "Tasks": [], "CurrentTask": -1, "WorkflowComplete": False})
        self._stop_runner(uid) if wf_changed else None
        m.clear()
        m.update(new)
        if wf_changed and new["Workflow"]:
            self._start_workflow(m, new["Workflow"])
        return _json(m)

    async def _params(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        return _json(self._aggregate(m) if request.query.get("aggregate", "").lower() == "true" else m["Params"])

    async def _patch_params(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        ops = await self._read_json(request)
        try:
            params = apply_patch(m["Params"], ops)
        except PatchError as exc:
            raise ApiError(exc.code, str(exc), "machines", m["Uuid"], "JsonPatchError") from None
        self._check_params(params, "machines", m["Uuid"])
        m["Params"] = params
        return _json(m["Params"])

    async def _get_param(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        params = self._aggregate(m) if request.query.get("aggregate", "").lower() == "true" else m["Params"]
        return _json(params.get(request.match_info["key"]))

    async def _set_param(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        key = request.match_info["key"]
        value = await self._read_json(request)
        self._check_params({key: value}, "machines", m["Uuid"])
        m["Params"][key] = value
        return _json(value)

    async def _delete_param(self, request: web.Request) -> web.Response:
        m = self._machine(request)
        return _json(m["Params"].pop(request.match_info["key"], None))

    # ------------------------------------------------------------- the runner
    def _stop_runner(self, uid: str) -> None:
        task = self._runners.pop(uid, None)
        if task is not None:
            task.cancel()

    def _start_runner(self, m: dict[str, Any]) -> None:
        uid = m["Uuid"]
        running = self._runners.get(uid)
        if running is not None and not running.done():
            return
        self._runners[uid] = asyncio.get_running_loop().create_task(self._run(uid, m["Workflow"]))

    async def _run(self, uid: str, workflow: str) -> None:
        """Run the machine's task list as DRP's runner does: a Job per task, in order."""
        m = self.machines[uid]
        previous = ""
        while m["Workflow"] == workflow and m["Runnable"]:
            index = m["CurrentTask"] + 1
            if index >= len(m["Tasks"]):
                m["CurrentTask"] = len(m["Tasks"])
                m["WorkflowComplete"] = True
                return
            entry = m["Tasks"][index]
            m["CurrentTask"] = index
            if entry.startswith("stage:"):
                m["Stage"] = entry[6:]
                continue
            if entry.startswith("bootenv:"):
                m["BootEnv"] = entry[8:]
                continue
            now = time.time()
            for j in self.jobs:
                if j["Machine"] == uid:
                    j["Current"] = False
            job = {"Uuid": str(uuidlib.uuid4()), "Machine": uid, "Task": entry, "Stage": m["Stage"],
                   "Workflow": workflow, "BootEnv": m["BootEnv"], "State": "created", "ExitState": "",
                   "StartTime": _rfc3339(now), "EndTime": ZERO_TIME, "Current": True, "Previous": previous,
                   "Errors": [], "ResultErrors": [], "Archived": False, "Available": True, "Validated": True}
            self.jobs.append(job)
            previous = job["Uuid"]
            m.update({"CurrentJob": job["Uuid"], "JobState": "created", "JobExitState": "", "JobResultErrors": []})
            await asyncio.sleep(0)
            job["State"] = m["JobState"] = "running"
            await asyncio.sleep(self.task_seconds)
            failed = self._aggregate(m).get("lab/fail-task") == entry
            job["State"] = m["JobState"] = "failed" if failed else "finished"
            job["ExitState"] = m["JobExitState"] = "failed" if failed else "complete"
            job["EndTime"] = _rfc3339(time.time())
            if failed:
                job["ResultErrors"] = m["JobResultErrors"] = [f"task {entry} failed (lab/fail-task)"]
                m["Runnable"] = False
                return

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
        env = m["BootEnv"]
        image = self._aggregate(m).get("fleet/image")
        image = image if isinstance(image, dict) else {}
        if env == INSTALL_BOOTENV:
            return web.Response(text=_install_script(m, image, INSTALL_BOOTENV), content_type="text/plain")
        if env == "sledgehammer":
            if m["Workflow"] and not m["WorkflowComplete"] and m["Runnable"]:
                left = m["Tasks"][m["CurrentTask"] + 1:]
                self._start_runner(m)
                if "fleet-image-deploy" in left:  # the runner's task kexecs the image's installer
                    return web.Response(text=_install_script(m, image, "sledgehammer"), content_type="text/plain")
            return web.Response(text="#!ipxe\necho sledgehammer: nothing to run\nexit\n", content_type="text/plain")
        return web.Response(text="#!ipxe\necho Booting from local disk\nexit\n", content_type="text/plain")


def _install_script(machine: dict[str, Any], image: dict[str, Any], env: str) -> str:
    lines = ["#!ipxe", f"# DRP BootEnv {env} for {machine['Name']}"]
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
