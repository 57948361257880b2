"""Provisioners: where a node boots its installer from.

One small interface, three backends (chosen by the site's ``provisioner.kind``):

``ipxe``    (default, embedded) per-MAC iPXE scripts written atomically into a boot
            root and served over HTTP by :class:`console.provision.ipxe.IpxeServer`
``drp``     Digital Rebar Provision's REST API: an image param and a workflow (or a BootEnv)
``vmedia``  Redfish VirtualMedia: InsertMedia of the image's ISO URL

Every backend keeps the assignment it replaced (``previous``) so a failed reimage
can be rolled back; :meth:`ProvisionerBackend.confirm` marks an assignment that
finished, so a retried reimage keeps the record of the last known-good one.  Errors
are :class:`console.errors.ActionError` (bad input, missing data) or
:class:`console.errors.DriverError` subclasses (the provisioner's endpoint failed),
never a library exception, and never contain a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from console.errors import ActionError
from console.secrets import Secrets
from inventory.model import Image, Node, Site

__all__ = [
    "Assignment",
    "Fetch",
    "ProvisionerBackend",
    "boot_target",
    "check_node",
    "open_provisioner",
]


@dataclass(frozen=True)
class Assignment:
    """What a provisioner will hand a node on its next boot.

    ``image`` is ``name@version`` (None when nothing installs: boot from disk);
    ``detail`` says where (a script path, a DRP BootEnv, an ISO URL).
    """

    image: str | None
    detail: str = ""


@dataclass(frozen=True)
class Fetch:
    """A node's boot seen by the provisioner (an iPXE script fetch, a DRP job)."""

    time: float  # unix seconds, the provisioner's clock
    mac: str
    status: int  # HTTP status of the fetch (200: the node got its script)
    what: str = ""


@runtime_checkable
class ProvisionerBackend(Protocol):
    """An open provisioner for one site.  Always :meth:`close` it."""

    kind: str

    async def assign(self, node: Node, image: Image) -> Assignment | None:
        """Make ``node`` install ``image`` on its next network (or CD) boot; returns the
        replaced assignment (None: there was none)."""

    async def assignment(self, node: Node) -> Assignment | None:
        """What the provisioner holds for ``node`` now (None: nothing)."""

    async def previous(self, node: Node) -> Assignment | None:
        """The assignment the last :meth:`assign` replaced (None: nothing was recorded)."""

    async def rollback(self, node: Node) -> Assignment | None:
        """Restore the previous assignment; returns it (None: nothing to restore)."""

    async def confirm(self, node: Node) -> None:
        """The node booted and runs what :meth:`assign` gave it: that assignment is now the
        known-good one a later :meth:`assign` keeps for rollback (until then a retried
        assign keeps the record of what was there before the first attempt)."""

    async def fetches(self, node: Node, since: float = 0.0) -> list[Fetch] | None:
        """Boots of ``node`` seen after ``since`` (None: this provisioner cannot see boots)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""


def boot_target(site: Site) -> str:
    """The boot override a reimage needs: ``pxe`` (ipxe, drp) or ``cd`` (vmedia)."""
    return "cd" if _kind(site) == "vmedia" else "pxe"


def _kind(site: Site) -> str:
    return site.provisioner.kind if site.provisioner is not None else "ipxe"


def check_node(site: Site, node: Node, image: Image) -> None:
    """ActionError when ``node`` cannot be reimaged to ``image`` with the site's provisioner."""
    kind = _kind(site)
    if kind == "vmedia":
        if node.bmc.protocol != "redfish":
            raise ActionError(f"{node.name}: virtual media needs a Redfish BMC; this node's BMC speaks "
                              f"{node.bmc.protocol} (reimage it with an ipxe or drp provisioner)")
        if not image.iso:
            raise ActionError(f"image {image.ref} has no iso URL (virtual media boots an ISO)")
        return
    if not node.mac:
        raise ActionError(f"{node.name}: no MAC address in the inventory (the {kind} provisioner assigns by MAC)")
    if not image.kernel or not image.initrd:
        raise ActionError(f"image {image.ref} has no kernel/initrd URL (PXE boots a kernel and an initrd)")
    # both render an iPXE script from these values: refuse what would break out of it
    from console.provision.ipxe import check_script_image, check_script_node

    check_script_node(node)
    check_script_image(image)


def open_provisioner(site: Site, secrets: Secrets) -> ProvisionerBackend:
    """The site's provisioner backend (nothing is sent before the first call)."""
    prov = site.provisioner
    kind = _kind(site)
    if kind == "ipxe":
        from console.provision.ipxe import IpxeProvisioner

        if prov is None or not prov.root:
            raise ActionError(f"site {site.name}: the ipxe provisioner needs provisioner.root "
                              f"(the directory its HTTP server serves boot scripts from)")
        return IpxeProvisioner(prov.root, prov.url)
    if kind == "drp":
        from console.provision.drp import DrpProvisioner

        assert prov is not None
        if not prov.url:
            raise ActionError(f"site {site.name}: the drp provisioner needs provisioner.url (the DRP API endpoint)")
        if not prov.token:
            raise ActionError(f"site {site.name}: the drp provisioner needs provisioner.token (a credential reference)")
        return DrpProvisioner(prov.url, secrets.resolve(prov.token), verify=prov.verify_tls, ca_bundle=prov.ca_bundle,
                              mode=prov.mode, workflow=prov.workflow)
    if kind == "vmedia":
        from console.provision.vmedia import VmediaProvisioner

        return VmediaProvisioner(site, secrets)
    raise ActionError(f"site {site.name}: unknown provisioner kind {kind!r}")
