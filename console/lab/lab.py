"""The embedded lab: a site's machines, BMCs, switches and boot server, simulated.

:class:`Lab` turns a :class:`~inventory.model.Site` into worker processes
(:mod:`console.lab.worker`), each holding whole racks: the machines, their IPMI or
Redfish BMC on the node's BMC address (IPMI BMCs serve SOL; a node whose
``bmc.console`` is ``kind: ssh`` gets an SSH console there too, :mod:`console.lab.ssh_console`),
their SSH host on the node's host address, the rack's switch (SNMP), and (worker 0) the PXE boot server (the ``ipxe``
provisioner's HTTP server) plus, for a site whose provisioner is ``drp``, the
Digital Rebar stand-in (:mod:`console.lab.drp`) the machines then PXE-boot from.
Worker 0 starts first so the other workers' machines know where to boot from.  Racks are split
across processes to use every core, about 1,000 machines a worker (a few descriptors each:
a worker raises its soft descriptor limit to the hard one); a worker costs about a second
of CPU to start (imports, host key), so 42 workers of 250 took 22 s of a 10,000-machine
lab's start and 10 workers of 1,000 take 6 s (``bench/README.md``).

Ports: *standard* mode binds the inventory's ports (623/udp, 443/80, 161/udp, 22,
and the SSH consoles' 2200, which fall back to an ephemeral port when taken), which
needs root; *ephemeral* mode binds port 0 everywhere and records what was bound.
Either way :meth:`Lab.effective_site` returns the site with the real endpoints, and
:meth:`Lab.write_state` publishes them (with the generated secrets, 0600) in the
runtime directory so later commands use the same lab.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from console.errors import LabError
from console.lab.runtime import runtime_dir
from console.lab.state import remove_state
from inventory.model import Node, Site
from inventory.ranges import natural_key
from inventory.selection import select

__all__ = ["Lab", "runtime_dir", "NODES_PER_WORKER"]

#: racks are packed into workers up to about this many machines each
NODES_PER_WORKER = 1000
#: the lab's boot server when the site's provisioner does not name it (drp, vmedia sites)
DEFAULT_BOOT_URL = "http://127.0.0.1:8069"

_LAB_SERIAL = itertools.count(1)


class _Proc:
    """One worker subprocess and its line-oriented control channel."""

    def __init__(self, config: dict[str, Any], index: int) -> None:
        self.index = index
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console.lab.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("FLEET_LAB_DEBUG") else subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal goes to us; we stop workers in order
        )
        self._lock = threading.Lock()
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(config) + "\n")
        self.proc.stdin.flush()

    def read_ready(self, timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def read() -> None:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            result["line"] = line

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        line = result.get("line")
        if not line:
            code = self.proc.poll()
            raise LabError(f"lab worker {self.index} did not start (exit status {code})"
                           + ("" if code is not None else f" within {timeout:.0f} s"))
        msg = json.loads(line)
        if "error" in msg:
            raise LabError(f"lab worker {self.index} failed: {msg['error']}")
        return msg

    def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise LabError(f"lab worker {self.index} is gone")
        return json.loads(line)

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f:
                    f.close()
            except Exception:
                pass


def _catalog_digest(site: Site, ref: str | None) -> str | None:
    """The sha256 the site's image catalog gives ``ref`` (None: not in it, or none given)."""
    image = next((i for i in site.images if ref and i.ref == ref), None)
    return image.sha256 if image is not None else None


class Lab:
    """A running (or ready to run) simulation of a site."""

    def __init__(
        self,
        site: Site,
        *,
        ephemeral: bool = False,
        time_scale: float = 1.0,
        runtime: Path | None = None,
        nodes_per_worker: int = NODES_PER_WORKER,
        frozen_time: float | None = None,
    ) -> None:
        self.site = site
        self.ephemeral = ephemeral
        self.time_scale = time_scale
        self.runtime = runtime or runtime_dir()
        self.nodes_per_worker = nodes_per_worker
        #: a fixed clock for every machine and switch: sensors, logs and counters stand
        #: still, for snapshot tests (delays still pass in real time)
        self.frozen_time = frozen_time
        self.secrets = {
            "bmc": pysecrets.token_urlsafe(12),
            "snmp": "lab-" + pysecrets.token_hex(6),
            "snmp-auth": pysecrets.token_urlsafe(12),
            "snmp-priv": pysecrets.token_urlsafe(12),
            "ssh": pysecrets.token_urlsafe(12),
            "drp": "drp-" + pysecrets.token_urlsafe(18),  # the DRP stand-in's API token
        }
        # one directory per lab, so two labs of one site (a test's and the session's) never
        # share boot scripts, known_hosts or secrets; removed when the lab stops
        self.lab_dir = self.runtime / f"lab-{site.name}-{os.getpid()}-{next(_LAB_SERIAL)}"
        self.boot_root = self.lab_dir / "boot"
        self.cert_dir = self.runtime / "lab-certs"
        self._procs: list[_Proc] = []
        self._where: dict[str, _Proc] = {}  # node or switch name -> worker
        self.endpoints: dict[str, Any] = {}
        self.started_at: float | None = None
        self._cabled_to: dict[str, list[Node]] | None = None  # switch -> its nodes (_switch_config)

    # ------------------------------------------------------------- plan
    def _machine_overrides(self) -> dict[str, dict[str, Any]]:
        site, lab = self.site, self.site.lab
        names = [n.name for n in site.nodes]
        out: dict[str, dict[str, Any]] = {n: {} for n in names}
        if lab is None:
            return out

        def sel(expr: str) -> list[str]:
            return select(expr, names, attrs=lambda n: site.node(n).attributes(), groups=site.groups)

        # (selection -> value) pairs for each machine property the lab section sets
        settings = [
            ("image", lab.running.items()),
            ("digest", lab.digests.items()),
            ("fault", lab.faults.items()),
            ("flavor", lab.flavors.items()),
            ("powered", ((expr, False) for expr in lab.powered_off)),
            ("unplugged", ((expr, True) for expr in lab.unplugged)),
            ("sol_fault", lab.sol_faults.items()),
        ]
        for key, pairs in settings:
            for expr, value in pairs:
                for n in sel(expr):
                    out[n][key] = value
        for n, o in out.items():
            node = site.node(n)
            if o.get("sol_fault") and (node.bmc.protocol != "ipmi" or _console(node) is not None):
                raise LabError(f"site {site.name}: lab.sol_faults selects node {n}, whose console is not "
                               "IPMI SOL (SOL faults are for IPMI BMCs without an ssh console)")
        return out

    def _shards(self) -> list[list[str]]:
        """Racks packed into workers (a rack is never split: its switch goes with it)."""
        shards: list[list[str]] = [[]]
        count = 0
        for rack in self.site.racks:
            if count and count + len(rack.nodes) > self.nodes_per_worker:
                shards.append([])
                count = 0
            shards[-1].append(rack.name)
            count += len(rack.nodes)
        return shards

    def _check_services(self) -> None:
        """LabError when nodes sharing one BMC (the systems of one Redfish service, which the
        lab serves as one simulated BMC) would fall in different worker processes."""
        where = {r: i for i, racks in enumerate(self._shards()) for r in racks}
        served: dict[tuple[str, int], tuple[str, int]] = {}
        for node in self.site.nodes:
            key = (node.bmc.address, node.bmc.effective_port)
            first = served.setdefault(key, (node.name, where[node.rack]))
            if first[1] != where[node.rack]:
                raise LabError(f"site {self.site.name}: nodes {first[0]} and {node.name} share the BMC "
                               f"{key[0]}:{key[1]} but fall in different lab workers; put them in one rack")

    def _configs(self) -> list[dict[str, Any]]:
        site = self.site
        over = self._machine_overrides()
        configs = []
        switch_home: dict[str, int] = {}
        shards = self._shards()
        first_member: dict[str, str] = {}  # switch -> the rack of its first cabled node (one pass)
        for n in site.nodes:
            if n.switch_port:
                first_member.setdefault(n.switch_port.switch, n.rack)
        for i, racks in enumerate(shards):
            for sw in site.switches:
                if sw.rack in racks or first_member.get(sw.name) in racks:
                    switch_home.setdefault(sw.name, i)
        for sw in site.switches:
            switch_home.setdefault(sw.name, 0)
        prov = site.provisioner
        for i, racks in enumerate(shards):
            machines = []
            for node in site.nodes:
                if node.rack not in racks:
                    continue
                o = over[node.name]
                image = o.get("image", node.image)
                machines.append({
                    "spec": {
                        "name": node.name,
                        "mac": node.mac or "02:00:00:00:00:00",
                        "bmc_address": node.bmc.address,
                        "host_address": node.host or "",
                        "image": image.split("@", 1) if image else None,
                        "image_sha256": o.get("digest") or _catalog_digest(site, image),
                        "powered": o.get("powered", True),
                        "fault": o.get("fault"),
                        "vendor": _VENDORS.get(node.bmc.flavor or node.bmc.protocol, ("Fleet Lab", "FL-1000"))[0],
                        "model": _VENDORS.get(node.bmc.flavor or node.bmc.protocol, ("Fleet Lab", "FL-1000"))[1]
                        + ("-G4" if node.height >= 4 else ""),
                    },
                    "bmc": {
                        "protocol": node.bmc.protocol,
                        "address": node.bmc.address,
                        "port": node.bmc.effective_port,
                        "scheme": node.bmc.scheme,
                        "system": node.bmc.system,
                        # the lab section's flavors are Redfish layouts; IPMI ones come from bmc.flavor
                        "flavor": (o.get("flavor") if node.bmc.protocol == "redfish" else None)
                        or _lab_flavor(node.bmc),
                    },
                    "ssh": {"address": node.host, "port": node.ssh_port or site.ssh.port} if node.host else None,
                    "sol_fault": o.get("sol_fault", ""),
                    "console": _console(node),
                })
            switches = []
            for sw in site.switches:
                if switch_home[sw.name] != i:
                    continue
                switches.append(self._switch_config(sw, over))
            drp = prov is not None and prov.kind == "drp"
            url = prov.url if prov and prov.kind == "ipxe" and prov.url else DEFAULT_BOOT_URL
            host, _, port = url.split("://", 1)[-1].partition(":")
            config: dict[str, Any] = {
                "index": i,
                "time_scale": self.time_scale,
                "frozen_time": self.frozen_time,
                "ephemeral": self.ephemeral,
                "cert_dir": str(self.cert_dir),
                "boot_root": str(self.boot_root),
                "serve_boot": i == 0,
                "boot_address": host or "127.0.0.1",
                "boot_port": int(port.strip("/") or 80),
                "secrets": self.secrets,
                "ssh_user": site.ssh.username,
                "machines": machines,
                "switches": switches,
            }
            if drp:
                config["boot_path"] = "/{mac}.ipxe"  # DRP's default.ipxe chains to ${netX/mac}.ipxe
                if i == 0:
                    assert prov is not None and prov.url
                    dhost, _, dport = prov.url.split("://", 1)[-1].partition(":")
                    config["drp"] = {
                        "address": dhost or "127.0.0.1",
                        "port": int(dport.strip("/") or 8092),
                        "machines": [{"name": n.name, "mac": n.mac, "address": n.host}
                                     for n in site.nodes if n.mac],
                    }
            configs.append(config)
        return configs

    def _switch_config(self, sw, over) -> dict[str, Any]:
        cabled_to = self._cabled_to
        if cabled_to is None:  # switch -> its cabled nodes, in site order (one pass for every switch)
            cabled_to = self._cabled_to = {}
            for n in self.site.nodes:
                if n.switch_port:
                    cabled_to.setdefault(n.switch_port.switch, []).append(n)
        nodes = {n.switch_port.port: n for n in cabled_to.get(sw.name, []) if n.switch_port}
        names = list(nodes)
        # a 48-port ToR plus 4 uplinks; inventory port names first, then the rest
        for k in range(1, 49):
            if f"Ethernet{k}" not in nodes:
                names.append(f"Ethernet{k}")
        uplinks = [f"Ethernet{k}" for k in range(49, 53)]
        names = sorted(dict.fromkeys(names), key=natural_key) + uplinks
        spare = [p for p in names if p not in nodes and p not in uplinks]
        cabled: dict[str, Node] = {}
        for pname, cable_end in nodes.items():
            if over[cable_end.name].get("unplugged") and spare:
                cabled[spare.pop()] = cable_end  # cable moved to a spare port: a miscabling finding
            else:
                cabled[pname] = cable_end
        ports = []
        for idx, pname in enumerate(names, start=1):
            node = cabled.get(pname)
            ports.append({
                "ifindex": idx,
                "name": pname,
                "alias": node.name if node else ("uplink" if pname in uplinks else ""),
                "speed_mbps": 100000 if pname in uplinks else 25000,
                "node": node.name if node else None,
                "mac": node.mac if node else None,
                # some servers advertise their MAC as the LLDP port id (docs/protocols.md)
                "lldp": ([node.mac, node.mac if node.rack.endswith("1") else "eth0", node.name]
                         if node and node.mac else None),
            })
        return {
            "name": sw.name,
            "address": sw.address,
            "port": sw.port,
            "v3_user": sw.snmp.username if sw.snmp.version == "3" else None,
            "ports": ports,
        }

    # ------------------------------------------------------------- run
    def _check_loopback(self) -> None:
        """LabError unless every address the lab would bind is a loopback one.

        The lab is a simulation on this machine: its BMCs take any password the lab
        generated and its boot server serves scripts, so none of it may listen where
        another host can reach it (a site's ``0.0.0.0`` or a real BMC address).
        """
        site, prov = self.site, self.site.provisioner
        wanted: list[tuple[str, str]] = []
        for node in site.nodes:
            wanted.append((f"node {node.name} bmc.address", node.bmc.address))
            if node.bmc.console is not None and node.bmc.console.address:
                wanted.append((f"node {node.name} bmc.console.address", node.bmc.console.address))
            if node.host:
                wanted.append((f"node {node.name} host", node.host))
        for sw in site.switches:
            wanted.append((f"switch {sw.name} address", sw.address))
        if prov is not None and prov.url and prov.kind in ("ipxe", "drp"):
            host = _url_host(prov.url)
            if host:
                wanted.append(("provisioner.url", host))
        bad = [(what, addr) for what, addr in wanted if not _is_loopback(addr)]
        if bad:
            shown = "; ".join(f"{what} is {addr}" for what, addr in bad[:3])
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            raise LabError(f"site {site.name}: the lab binds loopback addresses only (127.0.0.0/8 or ::1): "
                           f"{shown}{more}")

    def start(self, timeout: float = 60) -> dict[str, Any]:
        """Start every worker; returns the endpoints.  LabError on failure (nothing left running)."""
        self._check_loopback()
        self._check_services()
        self.lab_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.boot_root.mkdir(parents=True, exist_ok=True)
        self.cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        configs = self._configs()
        try:
            # worker 0 first: it binds the boot server (and the DRP stand-in), whose address
            # every other worker's machines need for their PXE boots
            self._procs = [_Proc(configs[0], 0)]
            readies = [self._procs[0].read_ready(timeout)]
            for i, c in enumerate(configs[1:], start=1):
                c["provisioner_url"] = readies[0].get("provisioner_url")
                self._procs.append(_Proc(c, i))
            readies += [p.read_ready(timeout) for p in self._procs[1:]]
        except Exception:
            self.stop()
            raise
        nodes: dict[str, Any] = {}
        switches: dict[str, Any] = {}
        boot_port = None
        host_key = ""
        for proc, ready in zip(self._procs, readies, strict=True):
            for name, ep in ready["nodes"].items():  # bmc_port, ssh_port and console_port
                nodes[name] = ep
                self._where[name] = proc
            for name, port in ready["switches"].items():
                switches[name] = port
                self._where[name] = proc
            boot_port = boot_port or ready.get("boot_port")
            host_key = ready.get("ssh_host_key") or host_key
        cfg0 = configs[0]
        boot_url = f"http://{cfg0['boot_address']}:{boot_port}"
        prov = self.site.provisioner
        self.endpoints = {
            "nodes": nodes,
            "switches": switches,
            # where nodes boot from: the DRP stand-in for drp sites, else the boot server
            "provisioner_url": readies[0].get("provisioner_url") or boot_url,
            "boot_root": str(self.boot_root),
            # the boot server (iPXE scripts, stand-in kernels, initrds and ISOs) and the URL
            # the site's image catalog names for it
            "boot_url": boot_url,
            "boot_url_configured": prov.url if prov and prov.kind == "ipxe" and prov.url else DEFAULT_BOOT_URL,
            "workers": [p.proc.pid for p in self._procs],
        }
        self._write_known_hosts(host_key)
        self.started_at = time.time()
        return self.endpoints

    def _write_known_hosts(self, host_key: str) -> None:
        lines = []
        for node in self.site.nodes:
            ep = self.endpoints["nodes"].get(node.name, {})
            port = ep.get("ssh_port")
            if node.host and port:
                host = node.host if port == 22 else f"[{node.host}]:{port}"
                lines.append(f"{host} {host_key}")
            console, port = _console(node), ep.get("console_port")
            if console is not None and port:  # the BMC's SSH console (the lab's one host key)
                host = console["address"] if port == 22 else f"[{console['address']}]:{port}"
                lines.append(f"{host} {host_key}")
        path = self.lab_dir / "known_hosts"
        path.write_text("\n".join(lines) + "\n")
        self.secrets["known_hosts"] = str(path)

    def stop(self) -> None:
        """Stop every worker (idempotent) and remove the published state."""
        procs, self._procs = self._procs, []
        threads = [threading.Thread(target=p.stop) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        remove_state(self.site.name, os.getpid())
        if procs:
            shutil.rmtree(self.lab_dir, ignore_errors=True)

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, name: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send a control command to the worker holding node or switch ``name``."""
        proc = self._where.get(name)
        if proc is None:
            raise LabError(f"the lab has no node or switch named {name!r}")
        return proc.call(cmd)

    def machine(self, node: str) -> dict[str, Any]:
        """A machine's simulated state (power, phase, image, boot override, PXE fetches)."""
        return self.call(node, {"cmd": "machine", "node": node})

    def fault(self, kind: str, target: str, mode: str, *, name: str | None = None) -> None:
        """Make one BMC or switch misbehave (``kind``: ipmi, redfish, switch, or sol: a node's
        IPMI SOL, ``mode`` drop, held or "" to heal it; see :data:`console.lab.ipmi_bmc.SOL_FAULTS`)."""
        reply = self.call(name or target, {"cmd": "fault", "kind": kind, "target": self._fault_key(kind, target),
                                           "mode": mode})
        if "error" in reply:
            raise LabError(f"lab fault {kind} {mode!r} on {target}: {reply['error']}")

    def _fault_key(self, kind: str, target: str) -> str:
        if kind == "switch":
            return target
        return self.site.node(target).bmc.address

    def sessions(self) -> dict[str, int]:
        """Live BMC sessions across the lab: {ipmi: n, redfish: n}."""
        total = {"ipmi": 0, "redfish": 0}
        for p in self._procs:
            r = p.call({"cmd": "sessions"})
            for k in total:
                total[k] += r.get(k, 0)
        return total

    def ipmi_requests(self) -> int:
        """Datagrams received by every IPMI BMC of the lab since it started (requests,
        session handshakes included): what pollers cost the BMCs."""
        return self.ipmi_counts()["received"]

    def ipmi_counts(self) -> dict[str, int]:
        """:meth:`ipmi_requests` (``received``) and the Get Chassis Status requests every IPMI
        BMC answered (``power_polls``: a poller's power sweep is one a node), read together."""
        total = {"received": 0, "power_polls": 0}
        for p in self._procs:
            r = p.call({"cmd": "ipmi_stats"})
            for k in total:
                total[k] += int(r.get(k, 0))
        return total

    def redfish_stats(self, node: str) -> dict[str, int]:
        """What the Redfish service of ``node`` has seen: ``logins`` (sessions created),
        live ``sessions``, ``requests`` and ``max_in_flight`` (most requests at once)."""
        bmc = self.effective_site().node(node).bmc
        stats = self.call(node, {"cmd": "redfish_stats"})["stats"]
        return stats[f"{bmc.address}:{bmc.effective_port}"]

    def redfish_latency(self, seconds: float) -> None:
        """Make every simulated Redfish BMC take ``seconds`` to answer each request."""
        for p in self._procs:
            p.call({"cmd": "redfish_latency", "seconds": seconds})

    def effective_site(self) -> Site:
        """The site with the endpoints the lab really bound."""
        return apply_endpoints(self.site, self.endpoints)


def _console(node: Node) -> dict[str, Any] | None:
    """What the lab serves for a node's SSH console (None: SOL or no console)."""
    console = node.bmc.console
    if console is None or console.kind != "ssh":
        return None
    return {"address": console.address or node.bmc.address, "port": console.port or 22,
            "command": console.command}


def _url_host(url: str) -> str:
    """The host part of ``scheme://host[:port]/...`` (brackets of an IPv6 literal removed)."""
    hostport = url.split("://", 1)[-1].split("/", 1)[0]
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0]
    return hostport.rpartition(":")[0] if ":" in hostport else hostport


def _is_loopback(address: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ::1 (a name is not: it could resolve anywhere)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def apply_endpoints(site: Site, endpoints: dict[str, Any]) -> Site:
    """Rewrite a site's ports and provisioner URL to a lab's endpoints."""
    nodes = []
    for node in site.nodes:
        ep = endpoints["nodes"].get(node.name)
        if not ep:
            nodes.append(node)
            continue
        bmc = node.bmc.model_copy(update={"port": ep["bmc_port"]})
        if bmc.console is not None and ep.get("console_port"):
            bmc = bmc.model_copy(update={"console": bmc.console.model_copy(update={"port": ep["console_port"]})})
        nodes.append(node.model_copy(update={"bmc": bmc, "ssh_port": ep.get("ssh_port")}))
    switches = tuple(
        sw.model_copy(update={"port": endpoints["switches"].get(sw.name, sw.port)}) for sw in site.switches
    )
    prov = site.provisioner
    if prov is not None:
        update: dict[str, Any] = {"url": endpoints["provisioner_url"]}
        if prov.kind == "ipxe":
            update["root"] = endpoints["boot_root"]
        prov = prov.model_copy(update=update)
    images = site.images
    old, new = endpoints.get("boot_url_configured"), endpoints.get("boot_url")
    if old and new and old != new:
        # the catalog's artefact URLs point at the boot server's configured address: follow it
        def move(url: str | None) -> str | None:
            return new + url[len(old):] if url and url.startswith(old + "/") else url

        images = tuple(img.model_copy(update={k: move(getattr(img, k)) for k in ("kernel", "initrd", "iso")})
                       for img in site.images)
    return site.model_copy(update={"nodes": tuple(nodes), "switches": switches, "provisioner": prov,
                                   "images": images})


# what each BMC flavor's machine claims to be (Redfish Manufacturer/Model, IPMI FRU)
_VENDORS = {
    "ipmi": ("Supermicro", "SYS-1029U-TRT"),
    "redfish": ("Contoso", "3500RX"),
    "dell": ("Dell Inc.", "PowerEdge R750"),
    "hpe": ("HPE", "ProLiant DL325 Gen10 Plus"),
    "openbmc": ("OpenBMC", "Romulus"),
    "lenovo": ("Lenovo", "ThinkSystem SR650"),
    "supermicro": ("Supermicro", "SYS-2029U"),
}
# inventory flavor names -> the Redfish simulator's layouts
_FLAVOR = {"dell": "idrac", "hpe": "ilo", "openbmc": "openbmc", "sushy": "sushy", "": "dmtf"}
# inventory flavor names -> the IPMI simulator's behaviours (console.lab.ipmi_bmc.FLAVORS)
_IPMI_FLAVOR = {"openipmi": "openipmi"}


def _lab_flavor(bmc: Any) -> str:
    """The simulator flavor serving an inventory BMC (its ``flavor:`` where the lab has one)."""
    if bmc.protocol == "ipmi":
        return _IPMI_FLAVOR.get(bmc.flavor or "", "standard")
    return _FLAVOR.get(bmc.flavor or "", "dmtf")
