"""The generated lab sites (console/lab/scale.py) up to 20,000 machines."""

from __future__ import annotations

import ipaddress

import pytest

from console.lab.scale import MAX_NODES, scaled_site_yaml
from inventory.loader import load_site_text


def test_twenty_thousand_machines_get_distinct_loopback_addresses():
    site = load_site_text(scaled_site_yaml(MAX_NODES, protocol="ipmi"), "scaled.yaml")
    assert MAX_NODES == 20000 and len(site.nodes) == 20000 and len(site.switches) == 500
    addresses = [n.bmc.address for n in site.nodes] + [n.host for n in site.nodes] + [s.address for s in site.switches]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses)
    assert len({n.mac for n in site.nodes}) == 20000
    # the first 10,000 keep the demo's plan
    assert site.nodes[0].bmc.address == "127.1.1.1" and site.nodes[9999].bmc.address == "127.1.250.40"
    assert site.nodes[10000].bmc.address == "127.11.1.1" and site.switches[250].address == "127.3.1.1"


@pytest.mark.parametrize("nodes", [0, MAX_NODES + 1])
def test_sizes_out_of_range_are_refused(nodes):
    with pytest.raises(ValueError, match="between 1 and 20000"):
        scaled_site_yaml(nodes)
