"""The ``vmedia`` provisioner: Redfish VirtualMedia InsertMedia of the image's ISO URL.

Navigation follows links, never guessed paths: service root -> Systems -> the node's
ComputerSystem; its ``VirtualMedia`` collection, else the first ``Links.ManagedBy``
Manager's (where iDRAC and iLO keep it); the member whose ``MediaTypes`` offers CD or
DVD; its ``#VirtualMedia.InsertMedia`` / ``EjectMedia`` action targets.  The image
is read back after insertion.  IPMI BMCs have no virtual media: a clear error.

Each node gets its own Redfish session (opened on first use, closed by :meth:`close`);
the previous image (if any) is kept in memory for :meth:`rollback`.
"""

from __future__ import annotations

from typing import Any

from console.drivers.redfish_http import RedfishSession, odata_id
from console.errors import ActionError, DriverError, ProtocolError
from console.provision import Assignment, Fetch
from console.secrets import Secrets
from inventory.model import Image, Node, Site

__all__ = ["VmediaProvisioner"]


def _members(coll: dict[str, Any]) -> list[str]:
    out = []
    for m in coll.get("Members") or ():
        if isinstance(m, dict) and isinstance(m.get("@odata.id"), str):
            out.append(m["@odata.id"])
    return out


def _action(media: dict[str, Any], name: str, uri: str) -> str:
    act = (media.get("Actions") or {}).get(f"#VirtualMedia.{name}")
    if isinstance(act, dict) and isinstance(act.get("target"), str):
        return act["target"]
    return f"{uri.rstrip('/')}/Actions/VirtualMedia.{name}"  # DMTF's canonical target


class VmediaProvisioner:
    """Virtual media on each node's Redfish BMC."""

    kind = "vmedia"

    def __init__(self, site: Site, secrets: Secrets, *, timeout: float = 10.0) -> None:
        self.site = site
        self.secrets = secrets
        self.timeout = timeout
        self._sessions: dict[str, RedfishSession] = {}
        self._media_uri: dict[str, str] = {}
        self._previous: dict[str, Assignment | None] = {}

    def _session(self, node: Node) -> RedfishSession:
        if node.bmc.protocol != "redfish":
            raise ActionError(f"{node.name}: virtual media needs a Redfish BMC; this node's BMC speaks "
                              f"{node.bmc.protocol} (reimage it with an ipxe or drp provisioner)")
        s = self._sessions.get(node.name)
        if s is None:
            s = RedfishSession(node.bmc, self.secrets.resolve(node.bmc.password), timeout=self.timeout)
            self._sessions[node.name] = s
        return s

    async def _system(self, http: RedfishSession, node: Node) -> dict[str, Any]:
        root = await http.service_root()
        if "Systems" not in root:
            raise ProtocolError(f"{node.bmc.address}: the service root links no Systems collection")
        uris = _members(await http.get(odata_id(root["Systems"], "Systems")))
        if node.bmc.system:
            uris = [u for u in uris if u.rstrip("/").rsplit("/", 1)[-1].lower() == node.bmc.system.lower()]
        if len(uris) != 1:
            raise ProtocolError(f"{node.bmc.address}: cannot tell which system is {node.name} "
                                f"({len(uris)} candidates; set bmc.system)")
        return await http.get(uris[0])

    async def _media(self, node: Node) -> tuple[RedfishSession, str, dict[str, Any]]:
        """The node's virtual CD drive: (session, its URI, its body)."""
        http = self._session(node)
        uri = self._media_uri.get(node.name)
        if uri is not None:
            return http, uri, await http.get(uri)
        system = await self._system(http, node)
        owners = [system]
        for link in ((system.get("Links") or {}).get("ManagedBy") or ())[:1]:
            owners.append(await http.get(odata_id(link, "ManagedBy")))
        for owner in owners:
            if not isinstance(owner.get("VirtualMedia"), dict):
                continue
            for member in _members(await http.get(odata_id(owner["VirtualMedia"], "VirtualMedia"))):
                body = await http.get(member)
                types = [str(t).upper() for t in body.get("MediaTypes") or ()]
                if not types or "CD" in types or "DVD" in types:
                    self._media_uri[node.name] = member
                    return http, member, body
        raise ActionError(f"{node.name}: the BMC at {node.bmc.address} offers no virtual CD/DVD "
                          f"(no VirtualMedia on the system or its manager)")

    @staticmethod
    def _assignment(body: dict[str, Any], uri: str) -> Assignment | None:
        if not body.get("Inserted") or not body.get("Image"):
            return None
        return Assignment(_image_from_url(str(body["Image"])), str(body["Image"]))

    async def assign(self, node: Node, image: Image) -> Assignment | None:
        """Eject whatever is inserted, insert the image's ISO and read it back."""
        if not image.iso:
            raise ActionError(f"image {image.ref} has no iso URL (virtual media boots an ISO)")
        http, uri, body = await self._media(node)
        old = self._assignment(body, uri)
        self._previous[node.name] = old
        await self._insert(http, node, uri, body, image.iso)
        return old

    async def _insert(self, http: RedfishSession, node: Node, uri: str, body: dict[str, Any], iso: str | None) -> None:
        if body.get("Inserted"):
            await http.request("POST", _action(body, "EjectMedia", uri), json={})
        if iso is None:
            return
        await http.request("POST", _action(body, "InsertMedia", uri),
                           json={"Image": iso, "Inserted": True, "WriteProtected": True})
        got = await http.get(uri)
        if not got.get("Inserted") or got.get("Image") != iso:
            raise ProtocolError(f"{node.bmc.address}: virtual media reads back {got.get('Image')!r} "
                                f"(inserted: {got.get('Inserted')}), not {iso}")

    async def assignment(self, node: Node) -> Assignment | None:
        """The ISO inserted now (None: the drive is empty)."""
        _, uri, body = await self._media(node)
        return self._assignment(body, uri)

    async def previous(self, node: Node) -> Assignment | None:
        """What the last assign (in this process) replaced."""
        return self._previous.get(node.name)

    async def rollback(self, node: Node) -> Assignment | None:
        """Re-insert the previous ISO (or eject when the drive was empty)."""
        if node.name not in self._previous:
            return None
        prev = self._previous.pop(node.name)
        http, uri, body = await self._media(node)
        await self._insert(http, node, uri, body, prev.detail if prev is not None else None)
        return prev

    async def confirm(self, node: Node) -> None:
        """Nothing to mark: the record of the replaced ISO lives only as long as this object."""

    async def fetches(self, node: Node, since: float = 0.0) -> list[Fetch] | None:
        """A BMC does not say when the host read the media: None."""
        return None

    async def close(self) -> None:
        """Log out of every session (idempotent)."""
        sessions, self._sessions = self._sessions, {}
        for s in sessions.values():
            try:
                await s.close()
            except DriverError:
                pass


def _image_from_url(url: str) -> str | None:
    """``name@version`` from ``.../images/NAME/VERSION/file.iso`` (None when the URL does not say)."""
    parts = url.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-4] == "images":
        return f"{parts[-3]}@{parts[-2]}"
    return None
