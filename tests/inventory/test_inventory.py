"""Loader, model and site search: every bad input gets a named, located error."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from console import site as sites
from inventory.errors import InventoryError, SiteNotFound
from inventory.loader import load_site_text
from inventory.model import Bmc
from tests import cli_fork

DATA = Path(__file__).parents[1] / "data"

GOOD = """\
site: dal1
defaults:
  bmc: {protocol: redfish, username: admin, password: env:DAL1_BMC_PASSWORD, verify_tls: false}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,
     kernel: http://boot.dal1/f/4081.2.1/vmlinuz, initrd: http://boot.dal1/f/4081.2.1/initrd}
provisioner: {kind: ipxe, url: http://127.0.0.1:8069, root: /var/lib/fleet-console/boot}
switches:
  - {name: dal1-r01-tor, address: 10.1.0.2, port: 161, snmp: {version: 2c, community: env:DAL1_SNMP}}
racks:
  - name: r01
    height: 42
    nodes:
      - name: dal1-r01-n[01-20]
        u: "[1-20]"
        mac: "52:54:00:01:00:[01-20]"
        host: 10.3.1.[1-20]
        bmc: {address: "10.2.1.[1-20]"}
        switch_port: {switch: dal1-r01-tor, port: "Ethernet[1-20]"}
      - name: dal1-r01-gpu01
        u: 30
        height: 4
        bmc: {protocol: ipmi, address: 10.2.1.100, port: 623, username: ADMIN, password: file:/etc/fleet/ipmi.pw}
      - name: dal1-r01-chassis-a
        bmc: {protocol: redfish, address: 10.2.1.200, port: 8443, scheme: https, system: "437XR1138R2"}
"""


def test_issue_example_loads_and_expands_in_step():
    site = load_site_text(GOOD, "dal1.yaml")
    assert site.summary() == "site dal1: 1 racks, 22 nodes, 1 switches, 1 images"
    n7 = site.node("dal1-r01-n07")
    assert (n7.u, n7.mac, n7.host, n7.bmc.address) == (7, "52:54:00:01:00:07", "10.3.1.7", "10.2.1.7")
    assert n7.switch_port.port == "Ethernet7"
    assert n7.bmc.protocol == "redfish" and n7.bmc.effective_port == 443 and not n7.bmc.verify_tls
    gpu = site.node("dal1-r01-gpu01")
    assert gpu.bmc.protocol == "ipmi" and gpu.bmc.username == "ADMIN" and gpu.bmc.effective_port == 623
    assert gpu.bmc.verify_tls is False  # inherited from defaults
    chassis = site.node("dal1-r01-chassis-a")
    assert chassis.bmc.system == "437XR1138R2" and chassis.bmc.effective_port == 8443
    assert chassis.image == "flatcar@4081.2.1"


def problems(text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_site_text(textwrap.dedent(text), "site.yaml")
    return [str(p) for p in info.value.problems]


def base(nodes: str, extra: str = "") -> str:
    return (
        "site: t\n"
        "defaults:\n  bmc: {protocol: ipmi, username: admin, password: env:PW}\n"
        "images:\n  - {name: img, version: '1'}\n"
        "switches:\n  - {name: sw, address: 127.0.0.1, snmp: {community: env:C}}\n"
        + extra
        + "racks:\n  - name: r1\n    nodes:\n"
        + textwrap.indent(textwrap.dedent(nodes), "      ")
    )


@pytest.mark.parametrize(
    "nodes, expected",
    [
        ("- {name: a, bmc: {address: 127.0.0.1, password: hunter2}}\n",
         "site.yaml:11:55: racks[0].nodes[0].bmc.password: a literal secret is not allowed"),
        ("- {name: 'n[1-3]', u: '[1-2]', bmc: {address: '127.0.0.[1-3]'}}\n",
         "site.yaml:11:29: racks[0].nodes[0].u: name expands to 3 values but u expands to 2"),
        ("- {name: a, colour: red, bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:19: racks[0].nodes[0].colour: unknown field 'colour' in a node"),
        ("- {name: a, bmc: {address: 127.0.0.1, protocol: snmp}}\n",
         "site.yaml:11:55: racks[0].nodes[0].bmc.protocol: Input should be 'ipmi' or 'redfish' (node a)"),
        ("- {name: a, image: other@2, bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:26: racks[0].nodes[0].image: image 'other@2' is not in the images catalog"),
        ("- {name: a, switch_port: {switch: nope, port: E1}, bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:41: racks[0].nodes[0].switch_port.switch: unknown switch 'nope'"),
        ("- {name: a, bmc: {address: 127.0.0.1}}\n- {name: a, bmc: {address: 127.0.0.2}}\n",
         "site.yaml:12:16: racks[0].nodes[1].name: duplicate node name 'a' (first defined at line 11)"),
        ("- {name: a, bmc: {address: 127.0.0.1}}\n- {name: b, bmc: {address: 127.0.0.1}}\n",
         "site.yaml:12:34: racks[0].nodes[1].bmc.address: BMC 127.0.0.1:623 is also a's"),
        ("- {name: a, bmc: {protocol: redfish, address: 127.0.0.1, port: 8000, system: '1'}}\n"
         "- {name: b, bmc: {protocol: redfish, address: 127.0.0.1, port: 8000, system: '1'}}\n",
         "site.yaml:12:84: racks[0].nodes[1].bmc.system: BMC 127.0.0.1:8000 system 1 is also a's"),
        ("- {name: a, bmc: {protocol: redfish, address: 127.0.0.1, port: 8000, system: '1'}}\n"
         "- {name: b, bmc: {protocol: redfish, address: 127.0.0.1, port: 8000}}\n",
         "site.yaml:12:9: racks[0].nodes[1]: BMC 127.0.0.1:8000 is also a's; nodes sharing a Redfish service "
         "need each a bmc.system (b has none)"),
        ("- {name: a, bmc: {protocol: redfish, address: 127.0.0.1, port: 623, system: '1'}}\n"
         "- {name: b, bmc: {address: 127.0.0.1, system: '2'}}\n",
         "site.yaml:12:34: racks[0].nodes[1].bmc.address: BMC 127.0.0.1:623 is also a's"),
        ("- {name: a, u: 41, height: 4, bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:22: racks[0].nodes[0].u: a occupies U41-U44, above the rack's 42U"),
        ("- {name: a, u: 3, height: 2, bmc: {address: 127.0.0.1}}\n- {name: b, u: 4, bmc: {address: 127.0.0.2}}\n",
         "site.yaml:12:22: racks[0].nodes[1].u: b overlaps a at U4 in rack r1"),
        ("- {name: a, mac: '52:54:zz:00:00:01', bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:24: racks[0].nodes[0].mac: not a MAC address"),
        ("- {name: 'n[05-01]', bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:16: racks[0].nodes[0].name: name: reversed range"),
        ("- {bmc: {address: 127.0.0.1}}\n",
         "site.yaml:11:9: racks[0].nodes[0]: required field 'name' is missing"),
        ("- {name: a, bmc: {address: 127.0.0.1, password: 'env:'}}\n",
         "site.yaml:11:55: racks[0].nodes[0].bmc.password: empty env: reference"),
    ],
)
def test_each_bad_node_gets_a_located_error(nodes, expected):
    found = problems(base(nodes))
    assert any(p.startswith(expected) for p in found), found


def test_systems_of_one_redfish_service_share_its_address():
    """A blade enclosure or chassis manager: one service, one node per ``bmc.system`` (ranged in step)."""
    text = base("- {name: 'blade[1-4]', bmc: {protocol: redfish, address: 127.0.0.1, port: 8000,\n"
                "                          system: 'Blade[1-4]'}}\n")
    site = load_site_text(text, "site.yaml")
    assert [(n.bmc.address, n.bmc.effective_port, n.bmc.system) for n in site.nodes] == [
        ("127.0.0.1", 8000, f"Blade{i}") for i in range(1, 5)]


def test_systems_compare_without_case():
    text = base("- {name: a, bmc: {protocol: redfish, address: 127.0.0.1, system: Blade1}}\n"
                "- {name: b, bmc: {protocol: redfish, address: 127.0.0.1, system: BLADE1}}\n")
    assert any("system BLADE1 is also a's" in p for p in problems(text))


def test_error_from_defaults_points_at_defaults_once():
    text = base("- {name: 'n[1-20]', bmc: {address: '127.0.0.[1-20]'}}\n")
    text = text.replace("password: env:PW", "password: pw123")
    found = problems(text)
    assert found == ["site.yaml:3:52: defaults.bmc.password: a literal secret is not allowed in the inventory; "
                     "use env:NAME, file:/path (mode 0600) or cmd:COMMAND"]


def test_secret_values_never_appear_in_errors():
    text = base("- {name: a, bmc: {address: 127.0.0.1, password: Sup3rS3cret!}}\n")
    with pytest.raises(InventoryError) as info:
        load_site_text(text, "site.yaml")
    assert "Sup3rS3cret" not in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "site.yaml:1:1: the file is empty"),
        ("site: [unclosed\n", "site.yaml:2:1: YAML syntax error"),
        ("- just\n- a list\n", "site.yaml:1:1: the site must be a mapping"),
        ("site: x\nsite: y\nracks: []\n", "site.yaml:2:1: site: duplicate key 'site'"),
        ("racks: []\n", "site.yaml:1:1: required field 'site'"),
        ("site: x\nrack: []\n", "site.yaml:2:1: rack: unknown field 'rack' in the site; did you mean 'racks'?"),
        ("site: x\nswitches:\n  - {name: s, address: 127.0.0.1, snmp: {version: '3', username: u}}\nracks: []\n",
         "site.yaml:3:41: switches[0].snmp: SNMP v3 needs username, auth_key and priv_key"),
    ],
)
def test_document_level_errors(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_groups_and_node_groups():
    text = base("- {name: 'n[1-4]', u: '[1-4]', groups: [web], bmc: {address: '127.0.0.[1-4]'}}\n",
                extra="groups:\n  db: 'n[3-4]'\n")
    site = load_site_text(text, "site.yaml")
    assert site.groups == {"web": ("n1", "n2", "n3", "n4"), "db": ("n3", "n4")}
    bad = base("- {name: a, bmc: {address: 127.0.0.1}}\n", extra="groups:\n  db: 'zz[1-2]'\n")
    assert any("group 'db' names unknown node(s): zz1, zz2" in p for p in problems(bad))


def test_rack_defaults_override_site_defaults():
    text = (
        "site: t\ndefaults:\n  bmc: {protocol: ipmi, username: admin, password: env:PW}\n  role: compute\n"
        "racks:\n  - name: r1\n    defaults:\n      bmc: {protocol: redfish, scheme: http}\n      role: storage\n"
        "    nodes:\n      - {name: a, bmc: {address: 127.0.0.1}}\n"
    )
    a = load_site_text(text).node("a")
    assert (a.bmc.protocol, a.bmc.scheme, a.bmc.username, a.role) == ("redfish", "http", "admin", "storage")
    assert a.bmc.effective_port == 80


def test_demo_site_is_valid():
    site = sites.load("demo")
    assert 80 <= len(site.nodes) <= 100
    assert len(site.racks) == 3 and len(site.switches) == 3 and len(site.images) == 2
    protocols = {n.bmc.protocol for n in site.nodes}
    assert protocols == {"ipmi", "redfish"}
    assert site.lab and site.lab.running  # some nodes deliberately drifted
    assert all(ip.startswith("127.") for n in site.nodes for ip in (n.bmc.address, n.host))


def test_site_search_path(tmp_path, monkeypatch):
    d = tmp_path / "sites"
    d.mkdir()
    (d / "lab9.yaml").write_text(base("- {name: a, bmc: {address: 127.0.0.1}}\n"))
    monkeypatch.setenv("FLEET_CONSOLE_SITES", str(d))
    monkeypatch.chdir(tmp_path / "sites")
    assert sites.find_site("lab9") == d / "lab9.yaml"
    with pytest.raises(SiteNotFound, match="no site named 'nope'"):
        sites.find_site("nope")
    xdg = tmp_path / "xdg"
    (xdg / "fleet-console" / "sites").mkdir(parents=True)
    (xdg / "fleet-console" / "sites" / "x1.yml").write_text("site: x1\nracks: []\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert sites.find_site("x1").name == "x1.yml"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return cli_fork.run([*args], capture_output=True, text=True, timeout=60)


def test_cli_validate_broken_file_prints_located_errors_and_exits_2():
    r = run_cli("--site", str(DATA / "broken.yaml"), "validate")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("fleet-console: ") and "problems in the site file" in lines[-1]
    for line in lines[:-1]:
        file, lineno, col, rest = line.split(":", 3)
        assert file.endswith("broken.yaml") and lineno.isdigit() and col.isdigit()
    assert "hunter2" not in r.stderr
    assert "hieght: unknown field 'hieght' in a rack; did you mean 'height'?" in r.stderr


def test_cli_validate_demo_summary():
    r = run_cli("--site", "demo", "validate")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok: site demo: 3 racks, 89 nodes, 3 switches, 2 images")


def test_cli_unknown_site_and_missing_site():
    r = run_cli("--site", "no-such-site", "validate")
    assert r.returncode == 2 and "no site named 'no-such-site'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("validate")
    assert r.returncode == 2 and "--site is required" in r.stderr


# --------------------------------------------------------------------------- plain text on the wire
def test_insecure_transport_says_why():
    def bmc(**kw):
        return Bmc(**{"protocol": "redfish", "address": "10.0.0.1", "username": "u", "password": "env:P", **kw})

    assert bmc(scheme="http").insecure_transport == "plain HTTP"
    assert bmc(scheme="http", verify_tls=True).insecure_transport == "plain HTTP"
    assert bmc(verify_tls=False).insecure_transport == "TLS not verified"
    assert bmc().insecure_transport is None
    assert bmc(ca_bundle="/etc/fleet/ca.pem").insecure_transport is None
    assert bmc(protocol="ipmi", verify_tls=False).insecure_transport is None  # RMCP+ never sends the password


MIXED = """\
site: t
defaults:
  bmc: {protocol: redfish, username: admin, password: env:PW, verify_tls: false}
racks:
  - name: r1
    nodes:
      - {name: 'n[01-20]', bmc: {address: '10.0.0.[1-20]'}}
      - {name: n21, bmc: {address: 10.0.0.21, verify_tls: true}}
      - {name: n22, bmc: {address: 10.0.0.22, protocol: ipmi}}
      - {name: n23, bmc: {address: 10.0.0.23, scheme: http}}
  - name: r2
    defaults:
      bmc: {scheme: http}
    nodes:
      - {name: 'm[1-4]', bmc: {address: '10.0.1.[1-4]'}}
"""


def test_site_warnings_group_nodes_by_the_line_that_causes_them():
    warnings = load_site_text(MIXED, "mixed.yaml").warnings()
    assert [str(w) for w in warnings] == [
        "mixed.yaml:3:75: defaults.bmc.verify_tls: warning: the BMC password of n[01-20] (20 nodes) goes over TLS "
        "without checking the certificate: whoever answers at the address gets it; set verify_tls: true (and "
        "ca_bundle: PATH for a private CA)",
        "mixed.yaml:10:55: racks[0].nodes[3].bmc.scheme: warning: the BMC password of n23 (1 node) goes over plain "
        "HTTP: anyone on the path reads it; use scheme: https with verify_tls: true",
        "mixed.yaml:13:21: racks[1].defaults.bmc.scheme: warning: the BMC password of m[1-4] (4 nodes) goes over "
        "plain HTTP: anyone on the path reads it; use scheme: https with verify_tls: true",
    ]
    assert load_site_text(GOOD.replace("verify_tls: false", "verify_tls: true")).warnings() == ()


def test_cli_validate_warns_and_strict_fails(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    r = run_cli("--site", str(path), "validate")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{path}: ok: site t: 2 racks, 27 nodes, 0 switches, 0 images"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and all(f"{path}:" in line and ": warning: the BMC password of " in line for line in lines)
    assert "n[01-20] (20 nodes)" in lines[0] and "m[1-4] (4 nodes)" in lines[2]
    assert run_cli("--site", str(path), "validate", "--strict").returncode == 1
    r = run_cli("--site", str(path), "validate", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"] is True
    assert [(w["line"], w["reason"], w["nodes"], w["count"]) for w in report["warnings"]] == [
        (3, "TLS not verified", "n[01-20]", 20), (10, "plain HTTP", "n23", 1), (13, "plain HTTP", "m[1-4]", 4)]


def readme_site_example() -> str:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text[text.index("\n## Site files\n"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    return section[start : section.index("```", start)]


def test_readme_site_example_validates_as_printed(tmp_path):
    """The README's example is what operators copy: it must load, verify TLS and warn about nothing."""
    example = readme_site_example()
    site = load_site_text(example, "README.md")
    assert site.warnings() == ()
    n07 = site.node("dal1-r01-n07")
    assert n07.bmc.verify_tls and n07.bmc.ca_bundle == "/etc/fleet/dal1-bmc-ca.pem"
    assert site.image(n07.image) is not None
    path = tmp_path / "dal1.yaml"
    path.write_text(example)
    r = run_cli("--site", str(path), "validate", "--strict")
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_every_lab_selection_is_checked_with_its_place():
    """A lab departure naming no node is a problem at its key, whichever map it is in."""
    digest = "a" * 64
    found = problems(base("- {name: n1, bmc: {address: 127.0.0.1}}",
                          f"lab:\n  digests: {{n9: '{digest}'}}\n  sol_faults: {{nope: drop}}\n"))
    assert any("lab.digests.n9" in p and "unknown node" in p for p in found), found
    assert any("lab.sol_faults.nope" in p and "unknown node" in p for p in found), found
