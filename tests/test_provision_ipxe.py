"""The ipxe provisioner: scripts written atomically, served over real HTTP, fetches seen, rollback."""

from __future__ import annotations

import os

import httpx
import pytest

from console.errors import ActionError
from console.lab.machine import parse_ipxe
from console.provision import Assignment, check_node, open_provisioner
from console.provision.ipxe import IpxeProvisioner, IpxeServer, render_script, script_name
from console.secrets import Secrets
from inventory.loader import load_site_text

SITE = """
site: t-ipxe
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "env:NOPE"}
images:
  - {name: flatcar, version: 4081.2.1, kernel: "http://127.0.0.1:8069/images/flatcar/4081.2.1/vmlinuz",
     initrd: "http://127.0.0.1:8069/images/flatcar/4081.2.1/initrd", cmdline: flatcar.first_boot=1,
     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
  - {name: flatcar, version: 4152.2.0, kernel: "http://127.0.0.1:8069/images/flatcar/4152.2.0/vmlinuz",
     initrd: "http://127.0.0.1:8069/images/flatcar/4152.2.0/initrd"}
  - {name: bare, version: "1", iso: "http://127.0.0.1:8069/images/bare/1/bare.iso"}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069", root: ROOT}
racks:
  - name: r01
    nodes:
      - {name: n01, mac: "52:54:00:AA:00:01", bmc: {address: 127.1.9.1}}
      - {name: n02, bmc: {address: 127.1.9.2}}
"""


@pytest.fixture
def site(tmp_path):
    return load_site_text(SITE.replace("ROOT", str(tmp_path / "boot")))


def test_script_carries_the_image_the_lab_machine_installs(site):
    node, image = site.node("n01"), site.image("flatcar@4081.2.1")
    script = render_script(node, image)
    info = parse_ipxe(script)
    assert info["image_name"] == "flatcar" and info["image_version"] == "4081.2.1"
    assert info["sha256"] == image.sha256
    assert info["kernel"] == image.kernel and info["initrd"] == image.initrd
    assert "fleet.image=${image-name}@${image-version}" in script and "flatcar.first_boot=1" in script
    assert script_name("52:54:00:AA:00:01") == "52-54-00-aa-00-01.ipxe"


def test_nodes_and_images_that_cannot_pxe_are_refused_clearly(site):
    with pytest.raises(ActionError, match="n02: no MAC address"):
        check_node(site, site.node("n02"), site.image("flatcar@4081.2.1"))
    with pytest.raises(ActionError, match="bare@1 has no kernel/initrd"):
        check_node(site, site.node("n01"), site.image("bare@1"))
    no_root = site.model_copy(update={"provisioner": site.provisioner.model_copy(update={"root": None})})
    with pytest.raises(ActionError, match="needs provisioner.root"):
        open_provisioner(no_root, Secrets(environ={}))


async def test_assign_is_atomic_keeps_the_previous_and_rolls_back(site, tmp_path):
    prov = open_provisioner(site, Secrets(environ={}))
    node = site.node("n01")
    root = tmp_path / "boot"
    try:
        assert await prov.assignment(node) is None
        assert await prov.rollback(node) is None  # nothing recorded: nothing touched
        assert await prov.assign(node, site.image("flatcar@4152.2.0")) is None
        assert (await prov.assignment(node)).image == "flatcar@4152.2.0"
        assert await prov.previous(node) == Assignment(None, "no boot script")
        old = await prov.assign(node, site.image("flatcar@4081.2.1"))
        assert old.image == "flatcar@4152.2.0"
        assert (await prov.assignment(node)).image == "flatcar@4081.2.1"
        assert (await prov.previous(node)).image == "flatcar@4152.2.0"
        # only the script and its previous: no temporary file left behind
        assert sorted(os.listdir(root)) == ["52-54-00-aa-00-01.ipxe", "52-54-00-aa-00-01.ipxe.previous"]
        assert oct((root / "52-54-00-aa-00-01.ipxe").stat().st_mode & 0o777) == "0o644"
        restored = await prov.rollback(node)
        assert restored.image == "flatcar@4152.2.0"
        assert (await prov.assignment(node)).image == "flatcar@4152.2.0"
        assert await prov.previous(node) is None
        # a first assignment rolled back leaves no script at all
        other = IpxeProvisioner(root)
        n3 = node.model_copy(update={"name": "n03", "mac": "52:54:00:aa:00:03"})
        await other.assign(n3, site.image("flatcar@4081.2.1"))
        assert await other.rollback(n3) == Assignment(None, "no boot script")
        assert await other.assignment(n3) is None
    finally:
        await prov.close()


async def test_server_serves_scripts_and_records_fetches_per_mac(site, tmp_path):
    root = tmp_path / "boot"
    server = IpxeServer(root, "127.0.0.1", 0)
    port = await server.start()
    url = f"http://127.0.0.1:{port}"
    prov = IpxeProvisioner(root, url)
    node = site.node("n01")
    try:
        assert await prov.fetches(node) == []
        await prov.assign(node, site.image("flatcar@4081.2.1"))
        async with httpx.AsyncClient() as http:
            got = await http.get(f"{url}/boot/52-54-00-aa-00-01.ipxe")
            assert got.status_code == 200 and parse_ipxe(got.text)["image_version"] == "4081.2.1"
            assert (await http.get(f"{url}/boot/52-54-00-aa-00-09.ipxe")).status_code == 404
            assert (await http.get(f"{url}/boot/52-54-00-aa-00-01.ipxe.previous")).status_code == 400
            assert (await http.get(f"{url}/boot/..%2Fsecret")).status_code in (400, 404)
        seen = await prov.fetches(node)
        assert [f.status for f in seen] == [200]
        assert seen[0].what == "/boot/52-54-00-aa-00-01.ipxe"
        assert await prov.fetches(node, since=seen[0].time) == []
        other = node.model_copy(update={"mac": "52:54:00:aa:00:09"})
        assert [f.status for f in await prov.fetches(other)] == [404]
    finally:
        await prov.close()
        await server.stop()


async def test_unreachable_server_is_a_clear_error(site, tmp_path):
    from console.errors import Unreachable

    server = IpxeServer(tmp_path, "127.0.0.1", 0)
    port = await server.start()
    await server.stop()  # nothing listens there now
    prov = IpxeProvisioner(tmp_path, f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(Unreachable, match="ipxe provisioner"):
            await prov.fetches(site.node("n01"))
    finally:
        await prov.close()
