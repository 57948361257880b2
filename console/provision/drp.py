"""The ``drp`` provisioner: Digital Rebar Provision's REST API over httpx.

Subset used (DRP doc/api.rst; token auth ``Authorization: Bearer``):

- find the machine by MAC: ``GET /api/v3/machines?slim=Params,Meta``, matched on
  ``HardwareAddrs`` (then cached for this provisioner's lifetime);
- assign: save what it had as the ``fleet/previous`` param (``POST .../params/{key}``)
  unless that is an unfinished assignment (an image param still ``pending``, or an
  older one without a state and BootEnv ``fleet-install``: the record of the known-good
  one is kept), set the
  ``fleet/image`` param (``{name, version, kernel, initrd, cmdline, sha256, state}``),
  then ``PATCH /api/v3/machines/{uuid}`` with a JSON Patch that tests the old BootEnv
  and replaces it with ``fleet-install`` (optimistic locking, as drpcli does), and read
  the machine back;
- confirm (the reimage finished): the image param's ``state`` becomes ``verified``;
- boots seen: the install task's Jobs (``GET /api/v3/jobs?Machine={uuid}``).

The site names the endpoint (``provisioner.url``) and a token reference
(``provisioner.token``); the token never appears in an error or a log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx

from console.drivers.redfish_http import load_json, read_body
from console.errors import ActionError, AuthFailed, ProtocolError, Timeout, Unreachable
from console.provision import Assignment, Fetch
from console.provision.ipxe import check_script_image, check_script_node
from console.secrets import Secret
from console.text import visible
from inventory.model import Image, Node

__all__ = ["DrpProvisioner", "INSTALL_BOOTENV", "LOCAL_BOOTENV"]

INSTALL_BOOTENV = "fleet-install"
LOCAL_BOOTENV = "local"
IMAGE_PARAM = "fleet/image"
PREVIOUS_PARAM = "fleet/previous"
#: an answer's size, nesting and container count are bounded like a BMC's (see
#: console/drivers/redfish_http.py), with room for a machine list of a large site
MAX_DRP_BODY = 64 * 1024 * 1024
MAX_DRP_DEPTH = 64
MAX_DRP_CONTAINERS = 4_000_000


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


class DrpProvisioner:
    """An open DRP endpoint (no request before the first call)."""

    kind = "drp"

    def __init__(self, url: str, token: Secret, *, timeout: float = 10.0, verify: bool = True) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=verify,
                                       headers={"Authorization": f"Bearer {token.get()}",
                                                "Accept": "application/json"})
        self._by_mac: dict[str, dict[str, Any]] | None = None
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
        if resp.status_code in (401, 403):
            raise AuthFailed(f"drp {self.url}: the API token was refused (HTTP {resp.status_code})")
        try:
            body = load_json(content, max_depth=MAX_DRP_DEPTH, max_containers=MAX_DRP_CONTAINERS) if content else None
        except ValueError as exc:
            raise ProtocolError(f"drp {method} {path}: HTTP {resp.status_code}, the answer {exc}") from None
        if resp.status_code >= 400:
            msgs = body.get("Messages") if isinstance(body, dict) else None
            why = "; ".join(map(str, msgs)) if isinstance(msgs, list) and msgs else f"HTTP {resp.status_code}"
            raise ProtocolError(f"drp {method} {path}: {visible(why[:300])} (HTTP {resp.status_code})")
        return body

    async def _read(self, resp: httpx.Response, method: str, path: str) -> bytes:
        """The answer's body, refused past :data:`MAX_DRP_BODY` (announced, sent or inflated)."""
        where = f"drp {method} {path}"
        return await read_body(resp, MAX_DRP_BODY, where, f"{where}: answer over {MAX_DRP_BODY // (1024 * 1024)} MiB")

    async def _uuid(self, node: Node) -> str:
        if not node.mac:
            raise ActionError(f"{node.name}: no MAC address in the inventory "
                              "(the drp provisioner finds machines by MAC)")
        if self._by_mac is None:
            rows = await self._call("GET", "/api/v3/machines", params={"slim": "Params,Meta"})
            if not isinstance(rows, list):
                raise ProtocolError(f"drp {self.url}: the machine list is not a JSON array")
            self._by_mac = {}
            for row in rows:
                for mac in row.get("HardwareAddrs") or () if isinstance(row, dict) else ():
                    self._by_mac[str(mac).lower()] = row
        row = self._by_mac.get(node.mac.lower())
        if row is None or not row.get("Uuid"):
            raise ActionError(f"{node.name}: DRP at {self.url} has no machine with MAC {node.mac}")
        try:  # it goes into request paths: a UUID and nothing else ("../../x" would reach other APIs)
            return str(uuid.UUID(str(row["Uuid"])))
        except ValueError:
            raise ProtocolError(f"drp {self.url}: machine with MAC {node.mac} has an invalid Uuid "
                                f"{visible(str(row['Uuid'])[:60])!r}") from None

    async def machine(self, node: Node) -> dict[str, Any]:
        """The DRP machine object for ``node`` (found by MAC)."""
        body = await self._call("GET", f"/api/v3/machines/{await self._uuid(node)}")
        if not isinstance(body, dict):
            raise ProtocolError(f"drp {self.url}: a machine is not a JSON object")
        return body

    @staticmethod
    def _assignment(m: dict[str, Any]) -> Assignment:
        boot_env = m.get("BootEnv") or ""
        image = _ref((m.get("Params") or {}).get(IMAGE_PARAM))
        return Assignment(image, f"BootEnv {boot_env}" + (f", Workflow {m['Workflow']}" if m.get("Workflow") else ""))

    async def assign(self, node: Node, image: Image) -> Assignment | None:
        """Set the image param and the install BootEnv; keeps the old ones in ``fleet/previous``."""
        # DRP renders an iPXE script from these values: refuse what would break out of it
        check_script_node(node)
        check_script_image(image)
        uuid = await self._uuid(node)
        m = await self.machine(node)
        params = m.get("Params") or {}
        old_env = m.get("BootEnv") or LOCAL_BOOTENV
        previous = {"BootEnv": old_env, "image": params.get(IMAGE_PARAM)}
        current = params.get(IMAGE_PARAM)
        state = current.get("state") if isinstance(current, dict) else None
        unfinished = state == "pending" or (state is None and old_env == INSTALL_BOOTENV)
        if not (unfinished and isinstance(params.get(PREVIOUS_PARAM), dict)):
            # an earlier attempt that never finished keeps its record of the known-good assignment
            await self._call("POST", f"/api/v3/machines/{uuid}/params/{PREVIOUS_PARAM}", json=previous)
        await self._call("POST", f"/api/v3/machines/{uuid}/params/{IMAGE_PARAM}", json=_image_param(image))
        await self._call("PATCH", f"/api/v3/machines/{uuid}", json=[
            {"op": "test", "path": "/BootEnv", "value": m.get("BootEnv")},
            {"op": "replace", "path": "/BootEnv", "value": INSTALL_BOOTENV},
        ])
        got = await self.machine(node)
        got_image = _ref((got.get("Params") or {}).get(IMAGE_PARAM))
        if got.get("BootEnv") != INSTALL_BOOTENV or got_image != image.ref:
            raise ProtocolError(f"drp {self.url}: {node.name} reads back BootEnv {got.get('BootEnv')!r}, "
                                f"image {got_image}: the assignment did not stick")
        return Assignment(_ref(previous["image"]), f"BootEnv {old_env}")

    async def confirm(self, node: Node) -> None:
        """Mark the image param verified: it is the known-good assignment from now on."""
        uuid = await self._uuid(node)
        image = ((await self.machine(node)).get("Params") or {}).get(IMAGE_PARAM)
        if isinstance(image, dict) and image.get("state") == "pending":
            await self._call("POST", f"/api/v3/machines/{uuid}/params/{IMAGE_PARAM}",
                             json={**image, "state": "verified"})

    async def assignment(self, node: Node) -> Assignment | None:
        """The machine's BootEnv and image param."""
        return self._assignment(await self.machine(node))

    async def previous(self, node: Node) -> Assignment | None:
        """What the last assign replaced (the ``fleet/previous`` param)."""
        prev = ((await self.machine(node)).get("Params") or {}).get(PREVIOUS_PARAM)
        if not isinstance(prev, dict):
            return None
        return Assignment(_ref(prev.get("image")), f"BootEnv {prev.get('BootEnv') or LOCAL_BOOTENV}")

    async def rollback(self, node: Node) -> Assignment | None:
        """Restore the BootEnv and image param saved by the last assign."""
        uuid = await self._uuid(node)
        m = await self.machine(node)
        prev = (m.get("Params") or {}).get(PREVIOUS_PARAM)
        if not isinstance(prev, dict):
            return None
        if prev.get("image") is None:
            if IMAGE_PARAM in (m.get("Params") or {}):
                pointer = "/" + IMAGE_PARAM.replace("~", "~0").replace("/", "~1")  # JSON Pointer escapes
                await self._call("PATCH", f"/api/v3/machines/{uuid}/params",
                                 json=[{"op": "remove", "path": pointer}])
        else:
            await self._call("POST", f"/api/v3/machines/{uuid}/params/{IMAGE_PARAM}", json=prev["image"])
        await self._call("PATCH", f"/api/v3/machines/{uuid}", json=[
            {"op": "test", "path": "/BootEnv", "value": m.get("BootEnv")},
            {"op": "replace", "path": "/BootEnv", "value": prev.get("BootEnv") or LOCAL_BOOTENV},
        ])
        return self._assignment(await self.machine(node))

    async def fetches(self, node: Node, since: float = 0.0) -> list[Fetch] | None:
        """The install task's jobs for the machine started after ``since``."""
        uuid = await self._uuid(node)
        jobs = await self._call("GET", "/api/v3/jobs", params={"Machine": uuid})
        out = []
        for job in jobs if isinstance(jobs, list) else ():
            started = _time(job.get("StartTime")) if isinstance(job, dict) else None
            if started is not None and started > since:
                out.append(Fetch(started, node.mac or "", 200, f"DRP job {job.get('Task', '?')}"))
        return out

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        await self._http.aclose()
