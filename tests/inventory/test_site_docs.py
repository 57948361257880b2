"""The site-file docs cannot drift: the reference is generated from the model, and every
YAML example in the docs validates as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli.sitedoc import EXAMPLE, SECTIONS, reference
from inventory import loader
from inventory.loader import load_site_text

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "site-reference.md"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_reference_file_is_up_to_date():
    assert REFERENCE.read_text() == reference(), (
        "docs/site-reference.md is out of date: run  fleet-console schema > docs/site-reference.md")


def test_schema_command_prints_the_reference():
    r = run_cli("schema")
    assert r.returncode == 0 and r.stdout == reference() and r.stderr == ""


def _section_of(path: str) -> str:
    if path == "":
        return "Top level"
    last = path.rsplit(".", 1)[-1]
    if last in ("bmc", "switch_port"):
        return last
    if path.endswith("bmc.console"):
        return "bmc.console"
    if last == "defaults":
        return "defaults"
    return path


def _shapes(shape, path: str = ""):
    if shape.items is not None:
        yield from _shapes(shape.items, path + "[]")
        return
    if shape.keys is not None:
        yield path, shape.keys
    for key, child in shape.fields.items():
        yield from _shapes(child, f"{path}.{key}" if path else key)


def test_every_key_the_loader_accepts_is_in_the_reference():
    """Walk the loader's own map of a site file: each place's keys are documented, and only those."""
    sections = {s.title: s for s in SECTIONS}
    text = reference()
    seen = set()
    for path, keys in _shapes(loader._SITE):
        section = sections[_section_of(path)]
        assert section.keys == keys, (path, keys ^ section.keys)
        seen.add(section.title)
        body = text.split(f"## `{section.title}`\n" if section.title != "Top level" else "## Top level\n", 1)[1]
        body = body.split("\n## ", 1)[0]
        for key in keys:
            assert re.search(rf"^\| `{re.escape(key)}` \| [^|]", body, re.M), (path, key)
    assert seen == set(sections)


def _doc_examples() -> list[tuple[str, str]]:
    out = [(str(EXAMPLE.relative_to(REPO)), EXAMPLE.read_text())]
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", md.read_text(), re.S)):
            out.append((f"{md.relative_to(REPO)}#{i + 1}", m.group(1)))
    out += [(str(p.relative_to(REPO)), p.read_text()) for p in sorted((REPO / "docs").glob("**/*.yaml"))]
    return out


@pytest.mark.parametrize("name, text", _doc_examples(), ids=[n for n, _ in _doc_examples()])
def test_every_yaml_example_in_the_docs_validates(name, text, tmp_path):
    if re.match(r"(#.*\n)*operators:", text):  # the site service's operators file, not a site
        from console.service.operators import load_operators

        path = tmp_path / "operators.yaml"
        path.write_text(text)
        path.chmod(0o600)
        tmp_path.chmod(0o700)
        assert load_operators(path).operators
        return
    if not re.search(r"^site:", text, re.M):  # a fragment of a site file: in a site of its own
        text = "site: doc\nracks:\n  - name: r1\n" + text
    site = load_site_text(text, name)
    assert site.warnings() == (), [str(w) for w in site.warnings()]
    for node in site.nodes:  # a node's image is in the catalog
        assert node.image is None or site.image(node.image) is not None, node.name


def test_the_annotated_example_comments_every_section_and_shows_the_undocumented_fields():
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line) and not line.startswith("site:"):
            before = lines[i - 1] if i else ""
            assert before.startswith("#") or "#" in line, f"top-level {line.split(':')[0]} has no comment"
    site = load_site_text(text, "example.yaml")
    bmcs = {n.bmc for n in site.nodes}
    assert any(b.protocol == "ipmi" and b.flavor for b in bmcs) and any(b.ca_bundle and b.port for b in bmcs)
    assert any(s.snmp.version == "3" for s in site.switches) and any(s.snmp.version == "2c" for s in site.switches)
    assert any(i.iso and i.cmdline for i in site.images) and site.ssh.key and site.provisioner.listen
    assert any(r.row for r in site.racks) and any(n.height > 1 for n in site.nodes)
