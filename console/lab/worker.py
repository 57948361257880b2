"""One lab worker process: a shard of simulated machines with all their endpoints.

Run as ``python -m console.lab.worker``.  The supervisor (:mod:`console.lab.lab`)
writes one JSON line of configuration on stdin; the worker starts the machines,
their IPMI or Redfish BMCs, their SSH hosts, the switches of their racks (SNMP),
and optionally the PXE boot server, then answers one JSON line on stdout:
``{"ready": true, "nodes": {name: {"bmc_port", "ssh_port", "console_port"}}, "switches": {name:
port}, "boot_port": int|null, "provisioner_url": str|null, "ssh_host_key": str}`` or
``{"error": "..."}``.  A ``drp`` section in the configuration starts the Digital Rebar
stand-in (:mod:`console.lab.drp`) too; the machines then PXE-boot from it.

After that, each stdin line is a control command answered by one stdout line
(see :meth:`Worker.command`; ``{"cmd": "emit", "node": N, "bytes": B, "rate": R}`` makes
machine N print B bytes of a known pattern, :func:`emit_line`, at R bytes a second, then
``EMIT N END``: ``bench/sol_console.py`` measures console throughput with it).  End of
stdin means the supervisor is gone: the
worker stops everything and exits, so no lab process outlives its owner.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from console.lab.machine import BootDevice, Machine, MachineSpec

if TYPE_CHECKING:
    from console.lab.boot import BootServer
    from console.lab.drp import DrpLab
    from console.lab.ipmi_bmc import IpmiLab
    from console.lab.redfish_bmc import RedfishLab
    from console.lab.snmp_agent import SnmpLab
    from console.lab.ssh_console import SshConsoles
    from console.lab.ssh_host import SshHosts

__all__ = ["Worker", "main"]


def _power_of(machine: Machine) -> Callable[[], bool]:
    """A switch port's link state: up while the machine behind it is powered."""
    return lambda: machine.powered


class Worker:
    """Everything one worker process serves."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.machines: dict[str, Machine] = {}
        # each part exists once start() has reached it; stop() copes with any subset
        self.ipmi: IpmiLab | None = None
        self.redfish: RedfishLab | None = None
        self.snmp: SnmpLab | None = None
        self.ssh: SshHosts | None = None
        self.consoles: SshConsoles | None = None
        self._emitters: set[asyncio.Task[None]] = set()  # ``emit`` commands running
        self.boot: BootServer | None = None
        self.drp: DrpLab | None = None
        self._http: aiohttp.ClientSession | None = None

    async def _http_get(self, url: str) -> tuple[int, str]:
        assert self._http is not None
        async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status, await resp.text()

    async def start(self) -> dict[str, Any]:
        """Start every endpoint; returns the ready message."""
        from console.lab.ipmi_bmc import IpmiLab
        from console.lab.redfish_bmc import RedfishLab
        from console.lab.snmp_agent import SnmpLab, SwitchPort, SwitchSpec
        from console.lab.ssh_console import SshConsoles
        from console.lab.ssh_host import SshHosts, host_key

        cfg = self.config
        loop = asyncio.get_running_loop()
        secrets = cfg["secrets"]
        self._http = aiohttp.ClientSession()
        ephemeral = cfg.get("ephemeral", False)
        frozen = cfg.get("frozen_time")
        clock = (lambda: frozen) if frozen is not None else time.time
        boot_port = None
        if cfg.get("serve_boot"):
            from console.lab.boot import BootServer

            self.boot = boot = BootServer(cfg["boot_root"], cfg.get("boot_address", "127.0.0.1"),
                                          0 if ephemeral else cfg.get("boot_port", 8069))
            boot_port = await boot.start()
        provisioner_url = cfg.get("provisioner_url")
        if provisioner_url is None and cfg.get("drp"):
            from console.lab.drp import DrpLab

            d = cfg["drp"]
            self.drp = drp = DrpLab(d["machines"], secrets["drp"], d.get("address", "127.0.0.1"),
                                    0 if ephemeral else d.get("port", 8092))
            provisioner_url = f"http://{d.get('address', '127.0.0.1')}:{await drp.start()}"
        if provisioner_url is None and boot_port is not None:
            provisioner_url = f"http://{cfg.get('boot_address', '127.0.0.1')}:{boot_port}"
        boot_path = cfg.get("boot_path")

        self.ipmi = ipmi = IpmiLab()
        self.redfish = redfish = RedfishLab(cert_dir=cfg.get("cert_dir"))
        self.ssh = ssh = SshHosts(cert_dir=cfg["cert_dir"], username=cfg.get("ssh_user", "core"),
                                  password=secrets["ssh"])
        # the BMCs' SSH consoles (OpenBMC's port 2200) log in with the BMC's credentials
        self.consoles = consoles = SshConsoles(host_key(cfg["cert_dir"]), username="admin", password=secrets["bmc"])
        nodes: dict[str, dict[str, int | None]] = {}
        any_ipmi = any_redfish = False
        services: dict[tuple[str, int], list[tuple[Machine, dict[str, Any]]]] = {}  # Redfish, by address:port
        for m in cfg["machines"]:
            spec = MachineSpec(**m["spec"], provisioner_url=provisioner_url,
                               login=(cfg.get("ssh_user", "core"), secrets["ssh"]),
                               **({"boot_path": boot_path} if boot_path else {}))
            machine = Machine(spec, loop, time_scale=cfg.get("time_scale", 1.0), http_get=self._http_get, clock=clock)
            self.machines[spec.name] = machine
            bmc = m["bmc"]
            port = 0 if ephemeral else bmc["port"]
            if bmc["protocol"] == "ipmi":
                any_ipmi = True
                bound = ipmi.add(machine, bmc["address"], port, b"admin", secrets["bmc"].encode(),
                                 flavor=bmc.get("flavor") or "standard", sol_fault=m.get("sol_fault") or "")
                nodes[spec.name] = {"bmc_port": bound}
            else:
                any_redfish = True
                # nodes at one address and port are the systems of one service (validated: each its own Id)
                services.setdefault((bmc["address"], bmc["port"]), []).append((machine, bmc))
                nodes[spec.name] = {"bmc_port": None}
            if m.get("ssh"):
                ssh.add(machine, m["ssh"]["address"], 0 if ephemeral else m["ssh"]["port"])
            if m.get("console"):
                c = m["console"]
                consoles.add(machine, c["address"], 0 if ephemeral else c["port"], command=c.get("command"))
        for (address, port), members in services.items():
            machine, bmc = members[0]
            redfish.add(machine, address, 0 if ephemeral else port, scheme=bmc.get("scheme", "https"),
                             username="admin", password=secrets["bmc"], flavor=bmc.get("flavor") or "dmtf",
                             systems=bmc.get("systems", 1),
                             members={b["system"]: m for m, b in members} if len(members) > 1 else None)
        if any_ipmi:
            # the "drop" SOL fault comes quickly in a fast lab, after half a minute in the demo
            ipmi.sol_drop_after = max(1.0, 30.0 * cfg.get("time_scale", 1.0))
            ipmi.start()
        if any_redfish:
            for name, port in (await redfish.start()).items():
                nodes[name]["bmc_port"] = port
        for name, port in (await ssh.start()).items():
            nodes[name]["ssh_port"] = port
        for name, port in (await consoles.start()).items():
            nodes[name]["console_port"] = port

        switches: dict[str, int] = {}
        if cfg.get("switches"):
            self.snmp = snmp = SnmpLab(clock=(lambda: frozen) if frozen is not None else time.monotonic)
            for sw in cfg["switches"]:
                ports = []
                for p in sw["ports"]:
                    linked = self.machines.get(p.get("node") or "")
                    ports.append(SwitchPort(
                        ifindex=p["ifindex"], name=p["name"], alias=p.get("alias", ""),
                        speed_mbps=p.get("speed_mbps", 25000), node_mac=p.get("mac"),
                        lldp=tuple(p["lldp"]) if p.get("lldp") else None,
                        # a port's link follows its server's power; empty ports are dark, uplinks lit
                        link=_power_of(linked) if linked else
                        (None if p.get("alias") == "uplink" else (lambda: False)),
                    ))
                snmp.add(SwitchSpec(
                    name=sw["name"], address=sw["address"], port=0 if ephemeral else sw["port"],
                    community=secrets["snmp"], v3_user=sw.get("v3_user"),
                    v3_auth_key=secrets.get("snmp-auth") if sw.get("v3_user") else None,
                    v3_priv_key=secrets.get("snmp-priv") if sw.get("v3_user") else None,
                    ports=ports,
                ))
            switches = await snmp.start()
        return {
            "ready": True,
            "nodes": nodes,
            "switches": switches,
            "boot_port": boot_port,
            "provisioner_url": provisioner_url,
            "ssh_host_key": ssh.public_key,
            "pid": os.getpid(),
        }

    async def stop(self) -> None:
        """Stop every endpoint (each part is idempotent)."""
        for part in (self.snmp, self.redfish, self.ssh, self.consoles, self.boot, self.drp):
            if part is not None:
                try:
                    await part.stop()
                except Exception:
                    traceback.print_exc(file=sys.stderr)
        if self.ipmi is not None:
            await asyncio.to_thread(self.ipmi.stop)
        if self._http is not None:
            await self._http.close()

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Answer one control command from the supervisor (tests and the CLI use these)."""
        op = cmd.get("cmd")
        if op == "machine":
            m = self.machines[cmd["node"]]
            return {
                "name": m.name, "powered": m.powered, "phase": m.phase.value,
                "image": "@".join(m.image) if m.image else None,
                "boot_override": m.boot_override.value, "boot_persistent": m.boot_override_persistent,
                "boots": m.boots, "pxe_fetches": [list(f) for f in m.pxe_fetches],
                "last_boot_source": m.last_boot_source.value if m.last_boot_source else None,
                "virtual_cd": m.virtual_cd,
            }
        if op == "power":
            m = self.machines[cmd["node"]]
            getattr(m, f"power_{cmd['action']}")()
            return {"ok": True}
        if op == "boot_override":
            self.machines[cmd["node"]].set_boot_override(BootDevice(cmd["device"]), cmd.get("persistent", False))
            return {"ok": True}
        if op == "serial":
            history = self.machines[cmd["node"]].serial.history()
            return {"output": history[-cmd.get("tail", 4096):].decode(errors="replace")}
        if op == "emit":  # a known pattern on a machine's serial port at a rate (bench/sol_console.py)
            m = self.machines[cmd["node"]]
            total, rate = int(cmd["bytes"]), float(cmd["rate"])
            if not (0 < total <= 64 * 1024 * 1024 and 0 < rate <= 10 * 1024 * 1024):
                raise ValueError("emit: bytes must be 1..64 MiB and rate 1..10 MiB/s")
            lines = -(-total // EMIT_LINE)
            self._emitters.add(asyncio.get_running_loop().create_task(_emit(m, lines, rate)))
            self._emitters = {t for t in self._emitters if not t.done()}
            return {"ok": True, "lines": lines, "bytes": lines * EMIT_LINE}
        if op == "sessions":
            return {
                "ipmi": self.ipmi.session_count() if self.ipmi else 0,
                "redfish": self.redfish.session_count() if self.redfish else 0,
            }
        if op == "ipmi_stats":  # datagrams every IPMI BMC of this worker received (bench/service_sessions.py)
            # and its power polls (Get Chassis Status): one a node a poller's power sweep
            return {"received": self.ipmi.received if self.ipmi else 0,
                    "power_polls": self.ipmi.commands[(0x00, 0x01)] if self.ipmi else 0}
        if op == "redfish_stats":
            return {"stats": self.redfish.stats() if self.redfish else {}}
        if op == "redfish_latency":
            if self.redfish:
                self.redfish.latency = cmd["seconds"]
            return {"ok": True}
        if op == "fault":
            target, mode = cmd["target"], cmd.get("mode", "")
            if cmd["kind"] == "sol":  # target: the BMC address; mode: drop, held or "" (healed)
                if self.ipmi is None:
                    raise RuntimeError("this worker serves no ipmi endpoint")
                self.ipmi.set_sol_fault(target, mode)
                return {"ok": True}
            parts = {"switch": self.snmp, "redfish": self.redfish, "ipmi": self.ipmi}
            if cmd["kind"] in parts:
                part = parts[cmd["kind"]]
                if part is None:
                    raise RuntimeError(f"this worker serves no {cmd['kind']} endpoint")
                part.fault[target] = mode
            return {"ok": True}
        if op == "sol_retry":  # seconds before the BMCs send an unacknowledged SOL packet again
            if self.ipmi is None:
                raise RuntimeError("this worker serves no ipmi endpoint")
            seconds = float(cmd["seconds"])
            if not 0.1 <= seconds <= 600:
                raise ValueError("sol_retry: seconds must be 0.1..600")
            self.ipmi.sol_retry_interval = seconds
            return {"ok": True}
        if op == "ping":
            return {"ok": True, "time": time.time()}
        return {"error": f"unknown command {op!r}"}


#: bytes of one line of the ``emit`` pattern, CR LF included
EMIT_LINE = 64


def emit_line(node: str, seq: int) -> bytes:
    """Line ``seq`` of the ``emit`` pattern of ``node``: ``EMIT node 00000042 abc...`` ending CR LF."""
    head = f"EMIT {node} {seq:08d} ".encode()
    fill = bytes(0x61 + (seq + i) % 26 for i in range(EMIT_LINE - 2 - len(head)))
    return head + fill + b"\r\n"


async def _emit(machine: Machine, lines: int, rate: float) -> None:
    """Write ``lines`` pattern lines to ``machine``'s serial port at ``rate`` bytes a second
    (every 20 ms what is due), then ``EMIT node END``."""
    loop = asyncio.get_running_loop()
    start, seq = loop.time(), 0
    while seq < lines:
        due = min(lines, int((loop.time() - start) * rate / EMIT_LINE) + 1)
        if due > seq:
            machine.serial.write(b"".join(emit_line(machine.name, i) for i in range(seq, due)))
            seq = due
        await asyncio.sleep(0.02)
    machine.serial.write(f"EMIT {machine.name} END\r\n".encode())


async def _serve(config: dict[str, Any]) -> int:
    worker = Worker(config)
    loop = asyncio.get_running_loop()
    out = sys.stdout
    try:
        ready = await worker.start()
    except Exception as exc:  # report why, then exit: the supervisor shows it
        await worker.stop()
        detail = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps({"error": detail}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps(ready) + "\n")
    out.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def control() -> None:
        while True:
            line = await reader.readline()
            if not line:
                break  # supervisor gone
            try:
                cmd = json.loads(line)
                if cmd.get("cmd") == "stop":
                    break
                reply = worker.command(cmd)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()
        stop.set()

    task = asyncio.create_task(control())
    await stop.wait()
    task.cancel()
    await worker.stop()
    return 0


def _raise_fd_limit() -> None:
    """Soft descriptor limit up to the hard one: a worker of 1,000 machines holds a UDP
    socket and one or two listeners for each (the hard limit is the administrator's word)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):
        pass  # the start then reports the bind that failed, naming it


def main() -> None:
    """Entry point for ``python -m console.lab.worker``."""
    _raise_fd_limit()
    line = sys.stdin.readline()
    if not line:
        sys.exit(2)
    config = json.loads(line)
    # stdout carries the protocol; anything a library prints goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = proto
    sys.exit(asyncio.run(_serve(config)))


if __name__ == "__main__":
    main()
