"""The SSH front door in front of the real site service: operators log in with asyncssh and
get the real fleet-console (the TUI, or one command) as the service's clients.

This module's lab is published (a state file) so the sessions' fleet-console finds it;
the service and its front door run in the test's event loop, their sessions' consoles
in processes of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import types

import asyncssh
import pytest

from console import site as sites
from console.live.poller import PollConfig
from console.ops.journal import read_entries
from console.secrets import Secrets
from console.service.server import SiteService
from console.service.sshfront import SshFront
from console.site import SiteContext
from tests.support import wait_until

SITE = """\
site: sshsvc
defaults:
  bmc: {protocol: redfish, scheme: http, username: admin, password: "lab:bmc"}
racks:
  - name: r01
    nodes:
      - name: sshs-n[01-03]
        mac: "52:54:00:93:00:[01-03]"
        bmc: {address: "127.1.93.[1-3]"}
lab:
  running: {}
"""

FAST = PollConfig(power_interval=1.0, sensors_interval=600, events_interval=600, identity_interval=600,
                  image_interval=600, switch_interval=600, timeout=10.0, min_interval=0.0)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, private_runtime_dir):
    from console.lab.lab import Lab
    from console.lab.state import write_state

    path = tmp_path_factory.mktemp("sshsvcsite") / "sshsvc.yaml"
    path.write_text(SITE)
    with Lab(sites.load(str(path)), ephemeral=True, time_scale=0.02) as lab:
        write_state(lab, str(path))
        lab.site_file = str(path)
        yield lab


@pytest.fixture(scope="module")
def keys() -> dict[str, asyncssh.SSHKey]:
    return {name: asyncssh.generate_private_key("ssh-ed25519") for name in ("alice", "bob")}


@pytest.fixture
async def served(lab, keys, tmp_path):
    ops = tmp_path / "operators.yaml"
    ops.write_text("operators:\n" + "".join(
        f'  - {{name: {n}, role: {r}, keys: ["{keys[n].export_public_key().decode().strip()}"]}}\n'
        for n, r in (("alice", "operator"), ("bob", "viewer"))))
    ops.chmod(0o600)
    site = lab.effective_site()
    service = SiteService(SiteContext(site, Secrets(lab=lab.secrets)), poll_config=FAST)
    await service.start()
    front = SshFront(service, "127.0.0.1:0", ops, tmp_path / "ssh", site=lab.site_file)
    try:
        await front.start()
        yield types.SimpleNamespace(service=service, front=front, keys=keys, lab=lab)
    finally:
        await front.stop("test over")
        await service.stop("test over")


async def login(s, name: str) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect("127.0.0.1", s.front.bound_port, username=name, client_keys=[s.keys[name]],
                                  known_hosts=None, agent_path=None, config=None)


async def test_exec_status_json_through_the_service(served):
    async with await login(served, "alice") as conn:
        result = await conn.run("status --json", check=False)
    assert result.exit_status == 0, result.stderr
    assert f"via service (pid {served.service.pid})" in result.stderr
    records = json.loads(result.stdout)
    assert [r["name"] for r in records] == ["sshs-n01", "sshs-n02", "sshs-n03"]


async def test_viewer_cannot_power_off_and_operator_is_journalled(served):
    async with await login(served, "bob") as conn:
        result = await conn.run("power off sshs-n01 --yes --json", check=False)
    assert result.exit_status == 2, result.stderr
    assert "read-only" in result.stderr  # a viewer's console is read-only; the service refuses too
    assert served.lab.machine("sshs-n01")["powered"] is True
    async with await login(served, "alice") as conn:
        result = await conn.run("power cycle sshs-n02 --yes --json --poll-interval 0.1", check=False)
    assert result.exit_status == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]["id"]
    entries = [e for e in read_entries("sshsvc", limit=200) if e.get("plan") == plan]
    assert entries and {e["operator"] for e in entries} == {"alice"}


async def test_shell_opens_the_console_as_the_service_s_client(served):
    async with await login(served, "alice") as conn:
        proc = await conn.create_process(term_type="xterm-256color", term_size=(100, 30), encoding=None)
        seen = b""

        async def screen_has(text: str) -> None:
            nonlocal seen
            while text not in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode("utf-8", "replace")):
                chunk = await proc.stdout.read(65536)
                assert chunk, "the console ended"
                seen += chunk

        await asyncio.wait_for(screen_has("sshs-n01"), 60)  # the fleet table drawn in the child
        await asyncio.wait_for(screen_has("sshsvc"), 30)
        await wait_until(lambda: any(x.identity.name == "alice" and x.identity.via == "ssh"
                                     for x in served.service.sessions()), what="the console's session")
        proc.stdin.write(b"q")
        await asyncio.wait_for(proc.wait_closed(), 60)
    await wait_until(lambda: len(served.service.tokens) == 0, what="the token revoked")


async def test_serve_listen_sighup_reloads_sigterm_tells_the_sessions(lab, keys, tmp_path):
    """``fleet-console serve --listen --operators`` as an administrator runs it."""
    import os
    import signal
    import sys

    ops = tmp_path / "operators.yaml"
    ops.write_text(f'operators:\n  - {{name: alice, role: operator, '
                   f'keys: ["{keys["alice"].export_public_key().decode().strip()}"]}}\n')
    ops.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_SERVICE")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli.main", "--site", lab.site_file, "serve", "--listen", "127.0.0.1:0",
        "--operators", str(ops), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None
        port = 0
        while not port:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "serve ended"
            if line.startswith("SSH front door on "):
                port = int(line.rsplit(":", 1)[1])
        served = types.SimpleNamespace(front=types.SimpleNamespace(bound_port=port), keys=keys)
        async with await login(served, "alice") as conn:  # answered: serve waits in run_until_stopped
            assert (await conn.run("--version", check=False)).exit_status == 0
        proc.send_signal(signal.SIGHUP)  # read the operators file again; the service goes on
        async with await login(served, "alice") as conn:
            result = await conn.run("--version", check=False)
            assert result.exit_status == 0 and result.stdout.startswith("fleet-console")
            shell = await conn.create_process(term_type="xterm", term_size=(80, 24), encoding=None)
            seen = b""
            while b"sshs-n01" not in seen:
                chunk = await asyncio.wait_for(shell.stdout.read(65536), 60)
                assert chunk, "the console ended"
                seen += chunk
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            while b"this session ends" not in seen:
                chunk = await asyncio.wait_for(shell.stdout.read(65536), 60)
                assert chunk, f"closed without the message: {seen[-300:]!r}"
                seen += chunk
            assert b"the site service is stopping (terminated (SIGTERM))" in seen
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
