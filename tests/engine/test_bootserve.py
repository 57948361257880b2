"""``fleet-console serve-boot``: a real site's iPXE scripts over HTTP, run as its own process.

The server is the command itself (a subprocess on 127.0.0.1, port 0), the scripts are
written by the ipxe provisioner, and a reimage in this process sees the fetch through
``provisioner.url``/fetches, as it would on a jump host running the command.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from console.ops.reimage import PhaseTimeouts, _booted, _Follow, _mark
from console.provision import open_provisioner
from console.provision.ipxe import IpxeProvisioner, script_name
from console.secrets import Secrets
from inventory.loader import load_site
from tests import cli_fork
from tests.conftest import need

MAC = "52:54:00:0b:00:01"
SITE = """\
site: bootsrv
images:
  - {{name: flatcar, version: "1.0", kernel: http://127.0.0.1/k, initrd: http://127.0.0.1/i}}
provisioner: {{kind: ipxe, url: "http://127.0.0.1:9", root: "{root}"}}
racks:
  - name: r1
    nodes:
      - name: bs-n1
        u: 1
        mac: "{mac}"
        bmc: {{protocol: ipmi, address: 127.0.0.1, username: admin, password: env:BOOTSRV_PW}}
"""


class Served:
    """The serve-boot process, its port and its output."""

    def __init__(self, proc: subprocess.Popen, port: int, site_file: Path, root: Path) -> None:
        self.proc, self.port, self.site_file, self.root = proc, port, site_file, root
        self.url = f"http://127.0.0.1:{port}"

    def site(self):
        """The site with provisioner.url naming the port the command bound."""
        site = load_site(self.site_file)
        return site.model_copy(update={"provisioner": site.provisioner.model_copy(update={"url": self.url})})

    def logged(self) -> str:
        """The next request line the command printed."""
        return self.proc.stdout.readline()


@pytest.fixture
def site_file(tmp_path) -> Path:
    root = tmp_path / "boot"
    root.mkdir(mode=0o755)
    path = tmp_path / "bootsrv.yaml"
    path.write_text(SITE.format(root=root, mac=MAC))
    return path


@pytest.fixture
def served(site_file) -> Served:
    proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "--site", str(site_file), "serve-boot",
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        m = re.search(r"on http://127\.0\.0\.1:(\d+)/boot/", first)
        assert m, (first, proc.stderr.read() if proc.poll() is not None else "")
        yield Served(proc, int(m.group(1)), site_file, site_file.parent / "boot")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()


async def _assign(site) -> str:
    prov = open_provisioner(site, Secrets())
    node = site.node("bs-n1")
    await prov.assign(node, site.image("flatcar@1.0"))
    return (Path(site.provisioner.root) / script_name(MAC)).read_text()


def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client normalises the path); (status, whole answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_serves_the_script_the_provisioner_wrote_and_logs_the_fetch(served):
    script = asyncio.run(_assign(served.site()))
    r = httpx.get(f"{served.url}/boot/{script_name(MAC)}")
    assert r.status_code == 200 and r.text == script and "kernel http://127.0.0.1/k" in r.text
    assert re.fullmatch(rf"\S+Z 127\.0\.0\.1 GET /boot/{script_name(MAC)} 200\n", served.logged())
    head = httpx.head(f"{served.url}/boot/{script_name(MAC)}")
    assert head.status_code == 200 and head.content == b""
    assert " HEAD /boot/" in served.logged()
    missing = httpx.get(f"{served.url}/boot/52-54-00-0b-00-99.ipxe")
    assert missing.status_code == 404
    assert served.logged().endswith(" 404\n")


def test_curl_fetches_the_script(served):
    curl = need("curl")
    script = asyncio.run(_assign(served.site()))
    r = subprocess.run([curl, "-sS", "-f", f"{served.url}/boot/{script_name(MAC)}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stdout == script, r.stderr


@pytest.mark.parametrize("path", [b"/../etc/passwd", b"/boot/../../etc/passwd", b"/boot/%2e%2e/%2e%2e/etc/passwd",
                                  b"/boot/%2e%2e%2f%2e%2e%2fetc%2fpasswd", b"/boot/..%2fbootsrv.yaml",
                                  b"/bootsrv.yaml", b"/boot/"])
def test_no_path_leaves_the_root(served, path):
    status, data = _raw(served.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status in (400, 403, 404)
    assert b"root:" not in data and b"site: bootsrv" not in data and b"password" not in data


def test_a_symlink_in_the_root_is_not_followed(served, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("#!ipxe\nsecret-content\n")
    os.symlink(secret, served.root / script_name(MAC))
    r = httpx.get(f"{served.url}/boot/{script_name(MAC)}")
    assert r.status_code == 403 and "secret-content" not in r.text
    assert served.logged().endswith(" 403\n")


def test_only_get_and_head_and_small_requests(served):
    assert httpx.post(f"{served.url}/boot/{script_name(MAC)}", content=b"x").status_code == 405
    assert httpx.put(f"{served.url}/fetches", content=b"x").status_code == 405
    big = httpx.get(f"{served.url}/boot/{script_name(MAC)}", headers={"X-Pad": "a" * 4000})
    assert big.status_code in (400, 431)
    long_line, _ = _raw(served.port, b"GET /boot/" + b"a" * 4000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert long_line in (400, 414)


def test_reimage_sees_the_fetch_through_the_servers_record(served):
    """The reimage's own detection (provisioner.url/fetches): nothing before the boot, the fetch after it."""
    site = served.site()

    async def follow() -> str:
        await _assign(site)
        prov = open_provisioner(site, Secrets())
        assert isinstance(prov, IpxeProvisioner)
        node, image = site.node("bs-n1"), site.image("flatcar@1.0")
        try:
            mark = await _mark(prov, node)
            assert mark is not None and await prov.fetches(node, mark) == []
            async with httpx.AsyncClient() as client:  # the node boots: iPXE fetches its script
                assert (await client.get(f"{served.url}/boot/{script_name(MAC)}")).status_code == 200
            f = _Follow(node, image, site, Secrets(), None, prov, PhaseTimeouts())
            return await f.within("rebooting", 10, lambda: _booted(f, mark))
        finally:
            await prov.close()

    assert asyncio.run(follow()) == f"boot seen by the provisioner (/boot/{script_name(MAC)})"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return cli_fork.run([*args], capture_output=True, text=True, timeout=60)


def test_dnsmasq_snippet_points_ipxe_at_the_names_the_provisioner_writes(site_file):
    r = run_cli("--site", str(site_file), "serve-boot", "--dnsmasq", "10.3.1.0/24")
    assert r.returncode == 0, r.stderr
    assert "dhcp-range=10.3.1.0,proxy\n" in r.stdout
    assert "dhcp-userclass=set:ipxe,iPXE" in r.stdout
    assert 'pxe-service=tag:!ipxe,x86PC,"iPXE",undionly.kpxe' in r.stdout
    boot = re.search(r"^dhcp-boot=tag:ipxe,(\S+)$", r.stdout, re.M).group(1)
    assert boot == "http://127.0.0.1:9/boot/${mac:hexhyp}.ipxe"
    # iPXE's ${mac:hexhyp} is the MAC in lowercase hex joined by '-': the provisioner's file name
    assert boot.replace("${mac:hexhyp}", MAC.replace(":", "-")).endswith("/boot/" + script_name(MAC))


@pytest.mark.parametrize("args, says", [
    (("--dnsmasq", "not-a-net"), "is not a subnet"),
    (("--listen", "127.0.0.1:99999"), "listen is HOST:PORT"),
])
def test_bad_options_are_one_line(site_file, args, says):
    r = run_cli("--site", str(site_file), "serve-boot", *args)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_simulated_site_is_served_by_its_lab():
    r = run_cli("--site", "demo", "serve-boot")
    assert r.returncode == 2 and "its lab serves the boot scripts" in r.stderr and "Traceback" not in r.stderr
