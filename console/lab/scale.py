"""Generated lab sites of any size, for benchmarks (``fleet-console lab --nodes N``).

Racks of 40 one-U machines, one ToR switch each (SNMP v2c), addresses in the
same plan as the demo site: BMC 127.1.R.N, host 127.2.R.N, switch 127.3.0.R for the
first 250 racks (10,000 machines); racks 251-500 (up to :data:`MAX_NODES`, 20,000) go
to BMC 127.11.R'.N, host 127.12.R'.N, switch 127.3.1.R' (R' = R - 250).  The
site is named for its size and protocol (``lab-1000-ipmi``); while its lab runs,
``--site lab-1000-ipmi`` finds it (:func:`console.site.find_site`).
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from console.lab.lab import runtime_dir

__all__ = ["scaled_name", "scaled_site_yaml", "write_scaled_site", "RACK_SIZE", "MAX_NODES"]

RACK_SIZE = 40
#: racks per address block (the third octet of 127.1.R.N)
_BLOCK = 250
#: the largest generated site: two address blocks of 250 racks
MAX_NODES = 2 * _BLOCK * RACK_SIZE


def _addresses(r: int) -> tuple[str, str, str]:
    """Rack ``r``'s BMC and host prefixes (``127.1.R``, ``127.2.R``) and its switch address."""
    block, rr = divmod(r - 1, _BLOCK)
    rr += 1
    return f"127.{1 + 10 * block}.{rr}", f"127.{2 + 10 * block}.{rr}", f"127.3.{block}.{rr}"


def scaled_name(nodes: int, protocol: str = "mixed") -> str:
    """A generated site's own name, ``lab-1000-ipmi``: never a real site's or the demo's,
    whose running lab other commands would take for that site's."""
    return f"lab-{nodes}-{protocol}"


def scaled_site_yaml(nodes: int, *, protocol: str = "mixed", name: str | None = None) -> str:
    """A site YAML with ``nodes`` machines; ``protocol``: ipmi, redfish or mixed (alternate racks).

    Named :func:`scaled_name` unless ``name`` is given."""
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"--nodes must be between 1 and {MAX_NODES}")
    name = name or scaled_name(nodes, protocol)
    racks = []
    switches = []
    for r in range(1, math.ceil(nodes / RACK_SIZE) + 1):
        count = min(RACK_SIZE, nodes - (r - 1) * RACK_SIZE)
        proto = protocol if protocol != "mixed" else ("ipmi" if r % 2 else "redfish")
        last = f"{count:02d}"
        bmc_net, host_net, switch_address = _addresses(r)
        bmc = {"address": f"{bmc_net}.[1-{count}]", "protocol": proto}
        if proto == "redfish":
            bmc["scheme"] = "http"
        switches.append({"name": f"lab-r{r:03d}-tor", "address": switch_address, "rack": f"r{r:03d}",
                         "snmp": {"version": "2c", "community": "lab:snmp"}})
        racks.append({
            "name": f"r{r:03d}",
            "nodes": [{
                "name": f"lab-r{r:03d}-n[01-{last}]",
                "u": f"[1-{count}]",
                "mac": f"52:54:{r // 256:02x}:{r % 256:02x}:00:[01-{count:02d}]",  # decimal digits are valid hex
                "host": f"{host_net}.[1-{count}]",
                "bmc": bmc,
                "switch_port": {"switch": f"lab-r{r:03d}-tor", "port": f"Ethernet[1-{count}]"},
            }],
        })
    doc = {
        "site": name,
        "description": f"generated lab site: {nodes} machines ({protocol})",
        "defaults": {"bmc": {"protocol": "ipmi", "username": "admin", "password": "lab:bmc"},
                     "image": "flatcar@4081.2.1"},
        "images": [{"name": "flatcar", "version": "4081.2.1"}],
        "provisioner": {"kind": "ipxe", "url": "http://127.0.0.1:8069"},
        "ssh": {"username": "core", "password": "lab:ssh", "known_hosts": "lab:known_hosts"},
        "switches": switches,
        "racks": racks,
        "lab": {"running": {}},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_scaled_site(nodes: int, *, protocol: str = "mixed", name: str | None = None) -> Path:
    """Write the generated site into the runtime directory (``lab-1000-ipmi.yaml``); returns its path."""
    name = name or scaled_name(nodes, protocol)
    path = runtime_dir() / f"{name}.yaml"
    path.write_text(scaled_site_yaml(nodes, protocol=protocol, name=name))
    return path
