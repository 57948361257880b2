"""The vmedia provisioner: Redfish InsertMedia, CD-once boot, the lab machine installs from the ISO."""

from __future__ import annotations

import pytest

from console.drivers.ssh import read_image
from console.errors import ActionError
from console.ops.reimage import PHASES, PhaseTimeouts, reimage_steps
from console.provision import open_provisioner
from tests.support import reimage_phases

SITE = """
site: t-vmedia
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, iso: "http://127.0.0.1:8069/images/flatcar/4081.2.1/flatcar.iso"}
  - {name: flatcar, version: 4152.2.0, iso: "http://127.0.0.1:8069/images/flatcar/4152.2.0/flatcar.iso"}
  - {name: broken, version: "1", iso: "http://127.0.0.1:8069/images/broken/broken.iso"}
  - {name: netonly, version: "1", kernel: "http://127.0.0.1:8069/k", initrd: "http://127.0.0.1:8069/i"}
provisioner: {kind: vmedia}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: vm-n[01-02]
        mac: "52:54:00:0e:00:[01-02]"
        host: 127.2.14.[1-2]
        bmc: {address: "127.1.14.[1-2]"}
      - {name: vm-dell, mac: "52:54:00:0e:00:03", host: 127.2.14.3,
         bmc: {address: 127.1.14.3, scheme: https, verify_tls: false, flavor: dell}}
      - {name: vm-ipmi, mac: "52:54:00:0e:00:04", host: 127.2.14.4, bmc: {protocol: ipmi, address: 127.1.14.4}}
"""



def test_ipmi_nodes_and_isoless_images_are_refused_clearly(site_ctx):
    site, _ = site_ctx
    with pytest.raises(ActionError, match=r"vm-ipmi: virtual media needs a Redfish BMC; this node's BMC speaks ipmi"):
        reimage_steps(site.node("vm-ipmi"), site.image("flatcar@4152.2.0"), site)
    with pytest.raises(ActionError, match=r"image netonly@1 has no iso URL"):
        reimage_steps(site.node("vm-n01"), site.image("netonly@1"), site)
    steps = {s.name: s.description for s in reimage_steps(site.node("vm-n01"), site.image("flatcar@4152.2.0"), site)}
    assert "flatcar.iso as virtual CD on 127.1.14.1" in steps["assigned"] and "CD once" in steps["assigned"]


async def test_reimage_of_an_ipmi_node_fails_before_touching_it(site_lab, site_ctx):
    site, secrets = site_ctx
    with pytest.raises(ActionError, match="virtual media needs a Redfish BMC"):
        await reimage_phases(site, secrets, "vm-ipmi", "flatcar@4152.2.0")
    assert site_lab.machine("vm-ipmi")["boots"] == 1 and site_lab.machine("vm-ipmi")["boot_override"] == "none"


@pytest.mark.parametrize("name", ["vm-n01", "vm-dell"])  # media under the Manager (DMTF) / the System (iDRAC)
async def test_reimage_from_virtual_cd(site_lab, site_ctx, name):
    site, secrets = site_ctx
    phases = await reimage_phases(site, secrets, name, "flatcar@4152.2.0")
    assert [p for p, _ in phases] == list(PHASES)
    assert "CD once" in phases[0][1]
    state = site_lab.machine(name)
    assert state["image"] == "flatcar@4152.2.0" and state["last_boot_source"] == "cd"
    assert state["virtual_cd"].endswith("/images/flatcar/4152.2.0/flatcar.iso")
    assert state["pxe_fetches"] == []
    assert (await read_image(site.node(name), site.ssh, secrets)).ref == "flatcar@4152.2.0"
    serial = site_lab.call(name, {"cmd": "serial", "node": name, "tail": 8192})["output"]
    assert "Booting from virtual CD-ROM (flatcar.iso)" in serial
    assert "fleet-installer: writing flatcar 4152.2.0 to /dev/sda" in serial


async def test_rollback_reinserts_the_previous_iso(site_lab, site_ctx):
    site, secrets = site_ctx
    node = site.node("vm-n02")
    prov = open_provisioner(site, secrets)
    try:
        assert await prov.assignment(node) is None
        assert await prov.assign(node, site.image("flatcar@4152.2.0")) is None
        assert (await prov.assignment(node)).image == "flatcar@4152.2.0"
        old = await prov.assign(node, site.image("flatcar@4081.2.1"))
        assert old.image == "flatcar@4152.2.0"
        assert site_lab.machine("vm-n02")["virtual_cd"].endswith("/4081.2.1/flatcar.iso")
        assert (await prov.rollback(node)).image == "flatcar@4152.2.0"
        assert site_lab.machine("vm-n02")["virtual_cd"].endswith("/4152.2.0/flatcar.iso")
    finally:
        await prov.close()


async def test_media_without_an_installer_times_out_in_verifying(site_lab, site_ctx):
    site, secrets = site_ctx
    short = PhaseTimeouts(assigned=30, rebooting=30, installing=30, verifying=1.0, poll=0.05)
    with pytest.raises(ActionError) as err:
        await reimage_phases(site, secrets, "vm-n02", "broken@1", short)
    assert str(err.value) == "verifying: timed out after 1 s (node still reports flatcar@4081.2.1, expected broken@1)"
    serial = site_lab.call("vm-n02", {"cmd": "serial", "node": "vm-n02"})["output"]
    assert "no installer on this media" in serial
