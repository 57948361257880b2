"""Where ``--site NAME`` looks, and which site files it refuses.

The console runs as root on shared hosts and a site file names ``cmd:`` secrets it
runs, so the current directory is never searched, and a site file someone else could
have written is refused with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from console import site as sites
from console.site import UntrustedSite
from tests import cli_fork

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _evil_site(name: str, marker: Path, *, lab: bool = False) -> str:
    """A site whose BMC password runs a command that leaves ``marker`` behind."""
    return (f"site: {name}\ndefaults:\n  bmc: {{protocol: redfish, scheme: http, username: a, "
            f"password: 'cmd:touch {marker}'}}\nracks:\n  - name: r1\n    nodes:\n"
            "      - {name: n1, bmc: {address: 127.0.0.1, port: 9}}\n" + ("lab: {}\n" if lab else ""))


@pytest.fixture
def hostile_cwd(tmp_path):
    """A world-writable directory with an attacker's ``sites/`` in it, and a clean environment."""
    cwd = tmp_path / "shared"
    (cwd / "sites").mkdir(parents=True)
    cwd.chmod(0o777)
    marker = tmp_path / "pwned"
    (cwd / "sites" / "demo.yaml").write_text(_evil_site("demo", marker, lab=True))
    (cwd / "sites" / "evil.yaml").write_text(_evil_site("evil", marker))
    env = {k: v for k, v in os.environ.items() if k != "FLEET_CONSOLE_SITES"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # nothing there
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return cwd, marker, env


def test_sites_in_the_current_directory_are_not_searched(hostile_cwd):
    cwd, marker, env = hostile_cwd
    out = cli_fork.run(["--site", "demo", "validate"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{sites.BUILTIN_SITES / 'demo.yaml'}: ok: "), out.stdout  # the packaged demo
    # a command that resolves secrets: the planted site's cmd: would run here
    out = cli_fork.run(["--site", "evil", "status"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=60)
    assert not marker.exists()
    assert out.returncode == 2
    assert "fleet-console: error: no site named 'evil' (looked in " in out.stderr
    assert str(cwd) not in out.stderr


def test_search_path_is_only_trusted_places(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_CONSOLE_SITES", f"{tmp_path}/a:{tmp_path}/b")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)
    assert sites.search_path() == [tmp_path / "a", tmp_path / "b", tmp_path / "cfg" / "fleet-console" / "sites",
                                   Path("/etc/fleet-console/sites"), sites.BUILTIN_SITES]


def test_group_writable_site_file_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "sites"
    d.mkdir()
    f = d / "gw.yaml"
    f.write_text("site: gw\nracks: []\n")
    f.chmod(0o664)
    monkeypatch.setenv("FLEET_CONSOLE_SITES", str(d))
    with pytest.raises(UntrustedSite, match=rf"refusing site file {f}: {f} is writable by group or others "
                                            rf"\(mode 0664\); run: chmod go-w {f}"):
        sites.find_site("gw")
    with pytest.raises(UntrustedSite):  # an explicit path gets the same check
        sites.find_site(str(f))
    f.chmod(0o644)
    assert sites.find_site("gw") == f
    env = dict(os.environ, FLEET_CONSOLE_SITES=str(d))
    f.chmod(0o666)
    out = cli_fork.run(["--site", "gw", "validate"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"fleet-console: error: refusing site file {f}: {f} is writable by group or "
                                  f"others (mode 0666); run: chmod go-w {f}")


def test_writable_directory_on_the_way_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "open" / "sites"
    d.mkdir(parents=True)
    (d / "x.yaml").write_text("site: x\nracks: []\n")
    (tmp_path / "open").chmod(0o777)  # anyone can rename sites/ away and put their own
    monkeypatch.setenv("FLEET_CONSOLE_SITES", str(d))
    with pytest.raises(UntrustedSite, match=rf"{tmp_path / 'open'} is writable by group or others \(mode 0777\)"):
        sites.find_site("x")
    (tmp_path / "open").chmod(0o1777)  # sticky, like /tmp: entries are then checked for their owner
    assert sites.find_site("x") == d / "x.yaml"


@ROOT_ONLY
def test_site_file_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "sites"
    d.mkdir()
    f = d / "other.yaml"
    f.write_text("site: other\nracks: []\n")
    os.chown(f, 65534, 65534)
    monkeypatch.setenv("FLEET_CONSOLE_SITES", str(d))
    with pytest.raises(UntrustedSite, match=rf"refusing site file {f}: {f} is owned by uid 65534 .*not by you or root"):
        sites.find_site("other")
    os.chown(f, 0, 0)
    os.chown(d, 65534, 65534)  # a directory of another user on the way
    with pytest.raises(UntrustedSite, match=rf"{d} is owned by uid 65534"):
        sites.find_site("other")


def test_symlink_to_a_file_in_an_open_directory_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "sites"
    d.mkdir()
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o777)
    (drop / "real.yaml").write_text("site: real\nracks: []\n")
    (d / "linked.yaml").symlink_to(drop / "real.yaml")
    monkeypatch.setenv("FLEET_CONSOLE_SITES", str(d))
    with pytest.raises(UntrustedSite, match=rf"{drop} is writable by group or others"):
        sites.find_site("linked")


def test_explicit_path_still_works(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("site: mine\nracks: []\n")
    assert sites.find_site(str(f)) == f
    assert sites.load(str(f)).name == "mine"
