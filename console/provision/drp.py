"""The ``drp`` provisioner: Digital Rebar Provision (v4) over its REST API, with httpx.

Every call is one DRP documents and its swagger defines (the contract test checks each
against ``drppy-client``); token auth ``Authorization: Bearer``; docs/drp.md says what DRP
must hold (contrib/drp/fleet-console.yaml ships it).

- find the machine: ``GET /api/v3/machines?HardwareAddrs=Eq(mac)&slim=Params,Meta&limit=2``
  (a filter and a page, never the whole list; two answers are refused as ambiguous); the
  Uuid is kept for a minute, and looked up again when DRP says 404;
- read it: ``GET /api/v3/machines/{uuid}?aggregate=true`` (params set by its profiles and
  the global profile count), the raw object when it is the base of a change;
- assign, in one ``PATCH /api/v3/machines/{uuid}`` (DRP applies a JSON Patch whole or not
  at all): ``test`` the Workflow, BootEnv and the params it read, write ``fleet/previous``
  (what the machine had: BootEnv, Workflow, image) unless an unfinished assignment already
  keeps the known-good record there, write ``fleet/image`` (state ``pending``) and then
  - workflow mode (default when the machine has a Workflow): set ``Workflow`` to the site's
    workflow (DRP resets Stage, BootEnv and the task list); a machine already in that
    workflow has it cleared first (DRP restarts a workflow only when it changes);
  - bootenv mode (the machine has no Workflow): set ``BootEnv`` to ``fleet-install``;
  a refused request changes nothing; the machine is read back;
- follow (workflow mode): the machine's Stage, CurrentTask, JobState, JobExitState and
  WorkflowComplete, and the Jobs DRP's runner creates (``GET /api/v3/jobs?Machine=Eq(uuid)``,
  sorted, newest first, one page); a failed job fails the reimage;
- confirm: ``fleet/image``'s state becomes ``verified`` (bootenv mode: the BootEnv goes back
  to ``local`` in the same request);
- rollback: the image param back (or removed), the Workflow cleared, the BootEnv back.

The token never appears in an error or a log; ``ca_bundle``/``verify_tls`` set TLS checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from console.drivers.redfish_http import load_json, read_body
from console.errors import ActionError, AuthFailed, ProtocolError, Timeout, Unreachable
from console.provision import Assignment, Fetch
from console.provision.ipxe import check_script_image, check_script_node
from console.secrets import Secret
from console.text import visible
from inventory.model import Image, Node

__all__ = ["DrpProgress", "DrpProvisioner", "INSTALL_BOOTENV", "LOCAL_BOOTENV"]

INSTALL_BOOTENV = "fleet-install"
LOCAL_BOOTENV = "local"
IMAGE_PARAM = "fleet/image"
PREVIOUS_PARAM = "fleet/previous"
#: seconds a machine's Uuid found by MAC is used before it is looked up again
UUID_TTL = 60.0
#: the newest jobs read per poll (one page)
JOB_PAGE = 50
#: an answer's size, nesting and container count are bounded like a BMC's (see
#: console/drivers/redfish_http.py)
MAX_DRP_BODY = 64 * 1024 * 1024
MAX_DRP_DEPTH = 64
MAX_DRP_CONTAINERS = 4_000_000


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _image_param(image: Image) -> dict[str, Any]:
    # state: "pending" until confirm() (the reimage finished) says "verified"
    return {"ref": image.ref, "name": image.name, "version": image.version, "kernel": image.kernel,
            "initrd": image.initrd, "cmdline": image.cmdline, "sha256": image.sha256, "state": "pending"}


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("name") and value.get("version"):
        return f"{value['name']}@{value['version']}"
    return None


def _time(text: Any) -> float | None:
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _text(value: Any, limit: int = 80) -> str:
    return visible(str(value if value is not None else "")[:limit])


@dataclass(frozen=True)
class DrpProgress:
    """Where a machine is in its DRP workflow (values as DRP gave them, made visible)."""

    workflow: str
    stage: str
    task: str  # the current task list entry ("" before the first)
    index: int  # CurrentTask
    total: int  # entries in the task list
    job_state: str  # created, running, finished, failed, incomplete (or "")
    exit_state: str  # complete, failed, reboot, stop (or "")
    complete: bool  # WorkflowComplete
    runnable: bool
    errors: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.job_state == "failed" or self.exit_state == "failed"

    def words(self) -> str:
        step = f"task {self.task} ({self.index + 1}/{self.total})" if self.task else "no task yet"
        job = f", job {self.job_state}" if self.job_state else ""
        job += f"/{self.exit_state}" if self.exit_state else ""
        return f"DRP workflow {self.workflow}: stage {self.stage}, {step}{job}"


class _Status(ProtocolError):
    """A DRP error answer, with its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _verify(verify: bool, ca_bundle: str | None) -> bool | ssl.SSLContext:
    if not verify:
        return False
    if not ca_bundle:
        return True
    try:
        return ssl.create_default_context(cafile=os.path.expanduser(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ActionError(f"drp provisioner ca_bundle {visible(ca_bundle)!r}: cannot load it "
                          f"({type(exc).__name__}: {visible(str(exc))[:120]})") from None


class DrpProvisioner:
    """An open DRP endpoint (no request before the first call)."""

    kind = "drp"

    def __init__(self, url: str, token: Secret, *, timeout: float = 10.0, verify: bool = True,
                 ca_bundle: str | None = None, mode: str = "auto", workflow: str = "fleet-image-deploy") -> None:
        self.url = url.rstrip("/")
        if mode not in ("auto", "workflow", "bootenv"):
            raise ActionError(f"drp provisioner mode {mode!r}: auto, workflow or bootenv")
        self.mode = mode
        self.workflow = workflow
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=_verify(verify, ca_bundle),
                                       headers={"Authorization": f"Bearer {token.get()}",
                                                "Accept": "application/json"})
        #: MAC -> (Uuid, when it was looked up: time.monotonic())
        self._by_mac: dict[str, tuple[str, float]] = {}
        #: a whole call (connect, send, every byte of the answer) ends within this
        self._deadline = 3 * timeout

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._deadline):
                async with self._http.stream(method, path, **kwargs) as resp:
                    content = await self._read(resp, method, path)
        except TimeoutError as exc:  # the whole call, however slowly the answer trickles
            raise Timeout(f"drp {self.url}: {method} {path} took longer than {self._deadline:g} s") from exc
        except httpx.TimeoutException as exc:
            raise Timeout(f"drp {self.url}: no answer in time") from exc
        except httpx.HTTPError as exc:
            raise Unreachable(f"drp {self.url}: {type(exc).__name__}") from exc
        if resp.status_code == 401:
            raise AuthFailed(f"drp {self.url}: the API token was refused (HTTP 401)")
        if resp.status_code == 403:
            raise AuthFailed(f"drp {self.url}: the API token was refused: expired, or not allowed this call "
                             f"(HTTP 403)")
        try:
            body = load_json(content, max_depth=MAX_DRP_DEPTH, max_containers=MAX_DRP_CONTAINERS) if content else None
        except ValueError as exc:
            raise ProtocolError(f"drp {method} {path}: HTTP {resp.status_code}, the answer {exc}") from None
        if resp.status_code >= 400:
            msgs = body.get("Messages") if isinstance(body, dict) else None
            why = "; ".join(map(str, msgs)) if isinstance(msgs, list) and msgs else f"HTTP {resp.status_code}"
            raise _Status(f"drp {method} {path}: {visible(why[:300])} (HTTP {resp.status_code})", resp.status_code)
        return body

    async def _read(self, resp: httpx.Response, method: str, path: str) -> bytes:
        """The answer's body, refused past :data:`MAX_DRP_BODY` (announced, sent or inflated)."""
        where = f"drp {method} {path}"
        return await read_body(resp, MAX_DRP_BODY, where, f"{where}: answer over {MAX_DRP_BODY // (1024 * 1024)} MiB")

    async def _uuid(self, node: Node, *, fresh: bool = False) -> str:
        if not node.mac:
            raise ActionError(f"{node.name}: no MAC address in the inventory "
                              "(the drp provisioner finds machines by MAC)")
        mac = node.mac.lower()
        hit = self._by_mac.get(mac)
        if hit is not None and not fresh and time.monotonic() - hit[1] < UUID_TTL:
            return hit[0]
        rows = await self._call("GET", "/api/v3/machines", params={
            "HardwareAddrs": f"Eq({mac})", "slim": "Params,Meta", "offset": "0", "limit": "2"})
        if not isinstance(rows, list):
            raise ProtocolError(f"drp {self.url}: the machine list is not a JSON array")
        rows = [r for r in rows if isinstance(r, dict)]
        if not rows:
            raise ActionError(f"{node.name}: DRP at {self.url} has no machine with MAC {node.mac}")
        if len(rows) > 1:
            names = ", ".join(repr(_text(r.get("Name"), 40)) for r in rows)
            raise ActionError(f"{node.name}: DRP at {self.url} has more than one machine with MAC {node.mac} "
                              f"({names}): fix DRP's machines first")
        row = rows[0]
        try:  # it goes into request paths: a UUID and nothing else ("../../x" would reach other APIs)
            found = str(uuid.UUID(str(row.get("Uuid"))))
        except ValueError:
            raise ProtocolError(f"drp {self.url}: machine with MAC {node.mac} has an invalid Uuid "
                                f"{_text(row.get('Uuid'), 60)!r}") from None
        self._by_mac[mac] = (found, time.monotonic())
        return found

    async def _machine(self, node: Node, *, aggregate: bool) -> tuple[str, dict[str, Any]]:
        """(Uuid, machine object); a Uuid DRP no longer knows is looked up again once."""
        ident = await self._uuid(node)
        params = {"aggregate": "true"} if aggregate else None
        try:
            body = await self._call("GET", f"/api/v3/machines/{ident}", params=params)
        except _Status as exc:
            if exc.status != 404:
                raise
            ident = await self._uuid(node, fresh=True)
            body = await self._call("GET", f"/api/v3/machines/{ident}", params=params)
        if not isinstance(body, dict):
            raise ProtocolError(f"drp {self.url}: a machine is not a JSON object")
        if not isinstance(body.get("Params") or {}, dict):
            raise ProtocolError(f"drp {self.url}: machine {ident}: Params is not a JSON object")
        return ident, body

    async def machine(self, node: Node) -> dict[str, Any]:
        """The DRP machine object for ``node`` (found by MAC), params aggregated."""
        return (await self._machine(node, aggregate=True))[1]

    def _mode(self, m: dict[str, Any]) -> str:
        if self.mode != "auto":
            return self.mode
        return "workflow" if m.get("Workflow") else "bootenv"

    @staticmethod
    def _where(m: dict[str, Any]) -> str:
        words = [f"BootEnv {_text(m.get('BootEnv'))}"]
        if m.get("Workflow"):
            done = "complete" if m.get("WorkflowComplete") else f"stage {_text(m.get('Stage'))}"
            words.insert(0, f"Workflow {_text(m['Workflow'])} ({done})")
        return ", ".join(words)

    def _assignment(self, m: dict[str, Any]) -> Assignment:
        return Assignment(_ref((m.get("Params") or {}).get(IMAGE_PARAM)), self._where(m))

    async def _exists(self, kind: str, name: str, what: str) -> None:
        try:
            await self._call("GET", f"/api/v3/{kind}/{name}")
        except _Status as exc:
            if exc.status != 404:
                raise
            raise ActionError(f"DRP at {self.url} has no {what} {name}: load contrib/drp/fleet-console.yaml "
                              f"(drpcli contents create; see docs/drp.md)") from None

    async def assign(self, node: Node, image: Image) -> Assignment | None:
        """Write the image params and start the workflow (or set the install BootEnv) in one
        request; the machine's previous state is kept in ``fleet/previous`` (see the module
        docstring).  Refused: nothing changed."""
        # DRP renders an iPXE script from these values: refuse what would break out of it
        check_script_node(node)
        check_script_image(image)
        ident, m = await self._machine(node, aggregate=False)
        mode = self._mode(m)
        params = m.get("Params") or {}
        workflow = m.get("Workflow") or ""
        boot_env = m.get("BootEnv") or LOCAL_BOOTENV
        current = params.get(IMAGE_PARAM)
        state = current.get("state") if isinstance(current, dict) else None
        unfinished = state == "pending" or (state is None and boot_env == INSTALL_BOOTENV)
        keep = unfinished and isinstance(params.get(PREVIOUS_PARAM), dict)
        if mode == "bootenv":
            if workflow:
                raise ActionError(f"{node.name}: DRP machine is in Workflow {_text(workflow)}: DRP refuses a BootEnv "
                                  f"change while a Workflow is set (provisioner mode bootenv); use mode workflow or "
                                  f"auto, or remove the machine's workflow in DRP")
            await self._exists("bootenvs", INSTALL_BOOTENV, "BootEnv")
        else:
            await self._exists("workflows", self.workflow, "Workflow")
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/Workflow", "value": m.get("Workflow", "")},
            {"op": "test", "path": "/BootEnv", "value": m.get("BootEnv")},
        ]
        if current is not None:
            ops.append({"op": "test", "path": _pointer("Params", IMAGE_PARAM), "value": current})
        if keep:  # an earlier attempt that never finished keeps its record of the known-good assignment
            ops.append({"op": "test", "path": _pointer("Params", PREVIOUS_PARAM), "value": params[PREVIOUS_PARAM]})
        else:
            ops.append({"op": "add", "path": _pointer("Params", PREVIOUS_PARAM),
                        "value": {"BootEnv": boot_env, "Workflow": workflow, "image": current}})
        ops.append({"op": "add", "path": _pointer("Params", IMAGE_PARAM), "value": _image_param(image)})
        if "Params" not in m:
            ops.insert(2, {"op": "add", "path": "/Params", "value": {}})
        restart = mode == "workflow" and workflow == self.workflow
        if mode == "bootenv":
            ops.append({"op": "replace", "path": "/BootEnv", "value": INSTALL_BOOTENV})
        else:
            ops[0]["value"] = "" if restart else workflow
            ops.append({"op": "replace", "path": "/Workflow", "value": self.workflow})
        if restart:  # DRP starts a workflow again only when the machine's Workflow changes
            await self._call("PATCH", f"/api/v3/machines/{ident}", json=[
                {"op": "test", "path": "/Workflow", "value": workflow},
                {"op": "replace", "path": "/Workflow", "value": ""}])
            cleared = await self._call("GET", f"/api/v3/machines/{ident}")
            if isinstance(cleared, dict):
                ops[1]["value"] = cleared.get("BootEnv")
        try:
            await self._call("PATCH", f"/api/v3/machines/{ident}", json=ops)
        except ProtocolError as exc:
            if restart:  # the machine is left out of the workflow: its next boot runs nothing
                raise ProtocolError(f"{exc}; the machine's Workflow {_text(workflow)} was cleared to restart it and "
                                    f"is left cleared (BootEnv unchanged: nothing runs on its next boot)") from None
            raise
        got = await self.machine(node)
        got_image = _ref((got.get("Params") or {}).get(IMAGE_PARAM))
        if mode == "bootenv":
            stuck = got.get("BootEnv") == INSTALL_BOOTENV
        else:
            stuck = got.get("Workflow") == self.workflow and not got.get("WorkflowComplete")
        if not stuck or got_image != image.ref:
            raise ProtocolError(f"drp {self.url}: {node.name} reads back {self._where(got)}, image {got_image}: "
                                f"the assignment did not stick")
        return Assignment(_ref(current), self._where(m))

    async def confirm(self, node: Node) -> None:
        """Mark the image param verified (it is the known-good assignment from now on); in
        bootenv mode the BootEnv goes back to ``local`` in the same request."""
        ident, m = await self._machine(node, aggregate=False)
        image = (m.get("Params") or {}).get(IMAGE_PARAM)
        ops: list[dict[str, Any]] = []
        if isinstance(image, dict) and image.get("state") == "pending":
            ops += [{"op": "test", "path": _pointer("Params", IMAGE_PARAM), "value": image},
                    {"op": "replace", "path": _pointer("Params", IMAGE_PARAM, "state"), "value": "verified"}]
        if not m.get("Workflow") and m.get("BootEnv") == INSTALL_BOOTENV:
            ops += [{"op": "test", "path": "/BootEnv", "value": INSTALL_BOOTENV},
                    {"op": "replace", "path": "/BootEnv", "value": LOCAL_BOOTENV}]
        if ops:
            await self._call("PATCH", f"/api/v3/machines/{ident}", json=ops)

    async def assignment(self, node: Node) -> Assignment | None:
        """The machine's image param, Workflow and BootEnv."""
        return self._assignment(await self.machine(node))

    async def previous(self, node: Node) -> Assignment | None:
        """What the last assign replaced (the ``fleet/previous`` param)."""
        prev = ((await self.machine(node)).get("Params") or {}).get(PREVIOUS_PARAM)
        if not isinstance(prev, dict):
            return None
        return Assignment(_ref(prev.get("image")), self._where({"BootEnv": prev.get("BootEnv") or LOCAL_BOOTENV}))

    async def rollback(self, node: Node) -> Assignment | None:
        """Put back the image param and BootEnv saved by the last assign, clearing the
        Workflow (a workflow set again would run again), in one request."""
        ident, m = await self._machine(node, aggregate=False)
        params = m.get("Params") or {}
        prev = params.get(PREVIOUS_PARAM)
        if not isinstance(prev, dict):
            return None
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/Workflow", "value": m.get("Workflow", "")},
            {"op": "test", "path": "/BootEnv", "value": m.get("BootEnv")},
        ]
        if prev.get("image") is None:
            if IMAGE_PARAM in params:
                ops.append({"op": "remove", "path": _pointer("Params", IMAGE_PARAM)})
        else:
            ops.append({"op": "add", "path": _pointer("Params", IMAGE_PARAM), "value": prev["image"]})
        if m.get("Workflow"):
            ops.append({"op": "replace", "path": "/Workflow", "value": ""})
        ops.append({"op": "replace", "path": "/BootEnv", "value": prev.get("BootEnv") or LOCAL_BOOTENV})
        await self._call("PATCH", f"/api/v3/machines/{ident}", json=ops)
        return self._assignment(await self.machine(node))

    async def progress(self, node: Node) -> DrpProgress | None:
        """Where the machine is in its workflow (None: it has none: bootenv mode)."""
        m = await self.machine(node)
        if not m.get("Workflow"):
            return None
        raw_tasks, raw_index, raw_errors = m.get("Tasks"), m.get("CurrentTask"), m.get("JobResultErrors")
        tasks: list[Any] = raw_tasks if isinstance(raw_tasks, list) else []
        index: int = raw_index if isinstance(raw_index, int) and not isinstance(raw_index, bool) else -1
        task = str(tasks[index]) if 0 <= index < len(tasks) else ""
        errors: list[Any] = raw_errors if isinstance(raw_errors, list) else []
        return DrpProgress(
            workflow=_text(m["Workflow"]), stage=_text(m.get("Stage")), task=_text(task), index=index,
            total=len(tasks), job_state=_text(m.get("JobState"), 20), exit_state=_text(m.get("JobExitState"), 20),
            complete=m.get("WorkflowComplete") is True, runnable=m.get("Runnable") is not False,
            errors=tuple(_text(e, 200) for e in errors[:5]))

    async def fetches(self, node: Node, since: float = 0.0) -> list[Fetch] | None:
        """The jobs DRP's runner created for the machine after ``since`` (None in bootenv
        mode: nothing runs a task there, so DRP cannot see the boot)."""
        ident, m = await self._machine(node, aggregate=False)
        if self._mode(m) == "bootenv":
            return None
        jobs = await self._call("GET", "/api/v3/jobs", params={
            "Machine": f"Eq({ident})", "sort": "StartTime", "reverse": "true", "offset": "0", "limit": str(JOB_PAGE)})
        out = []
        for job in jobs if isinstance(jobs, list) else ():
            started = _time(job.get("StartTime")) if isinstance(job, dict) else None
            if started is not None and started > since:
                what = f"DRP job {_text(job.get('Task', '?'))} {_text(job.get('State'), 20)}"
                out.append(Fetch(started, node.mac or "", 200, what.rstrip()))
        return sorted(out, key=lambda f: f.time)

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        await self._http.aclose()
