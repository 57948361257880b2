"""The operators file (console/service/operators.py): who logs in over SSH, with which
keys and role; trusted as a site file is, every problem located."""

from __future__ import annotations

import os

import asyncssh
import pytest

from console.service.operators import OperatorsError, load_operators


@pytest.fixture(scope="module")
def pubs() -> list[str]:
    return [asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip() for _ in range(3)]


def write(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_reads_operators_roles_keys_and_limits(tmp_path, pubs):
    f = write(tmp_path / "ops.yaml", f"""\
operators:
  - {{name: alice, role: operator, keys: ["{pubs[0]} alice@laptop", "{pubs[1]}"]}}
  - {{name: bob, role: viewer, keys: ["{pubs[2]}"]}}
limits: {{sessions_per_operator: 2, idle_minutes: 5}}
""")
    ops = load_operators(f)
    assert {n: o.role for n, o in ops.operators.items()} == {"alice": "operator", "bob": "viewer"}
    key = asyncssh.import_public_key(pubs[1])
    assert ops.match("alice", key) is ops.operators["alice"]
    assert ops.match("bob", key) is None and ops.match("nobody", key) is None
    assert (ops.limits.sessions_per_operator, ops.limits.sessions_total, ops.limits.idle_minutes) == (2, 64, 5)


def test_every_problem_located(tmp_path, pubs):
    f = write(tmp_path / "ops.yaml", f"""\
operators:
  - {{name: alice, role: boss, keys: ["{pubs[0]}"]}}
  - {{name: Bob, role: viewer, keys: ["{pubs[1]}"]}}
  - {{name: carol, role: viewer, keys: ["ssh-ed25519 AAAAnotakey"]}}
  - {{name: dan, role: admin, keys: ["{pubs[0]}"]}}
  - {{name: dan, role: admin, keys: ["{pubs[2]}"]}}
  - {{name: erin, role: admin, keys: ['command="x" {pubs[2]}']}}
  - {{name: fay, role: admin}}
limits: {{sessions_total: 0, idle: 3}}
""")
    with pytest.raises(OperatorsError) as exc:
        load_operators(f)
    text = str(exc.value)
    for expected in (
        "ops.yaml:2:25: operators[0].role: role must be viewer, operator or admin",
        "ops.yaml:3:12: operators[1].name: 'Bob' is not a login name",
        "ops.yaml:4:",  # carol's key
        "operators[2].keys[0]: not a public key",
        "ops.yaml:6:12: operators[4].name: operator 'dan' is listed twice",
        "authorized_keys options are not supported",
        "ops.yaml:8:5: operators[6].keys: required field 'keys' is missing",
        "limits.sessions_total",
        "limits.idle: unknown field 'idle' in limits",
    ):
        assert expected in text, (expected, text)
    assert pubs[0].split()[1] not in text  # keys are named by fingerprint, never shown


def test_a_key_names_one_operator(tmp_path, pubs):
    f = write(tmp_path / "ops.yaml", f"""\
operators:
  - {{name: alice, role: operator, keys: ["{pubs[0]}"]}}
  - {{name: bob, role: viewer, keys: ["{pubs[0]} bob@desk"]}}
""")
    with pytest.raises(OperatorsError, match=r"ops.yaml:3:\d+: operators\[1\].keys\[0\]: this key \(SHA256:.*"
                                             r"\) is also alice's"):
        load_operators(f)


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("- alice\n", "must be a mapping"),
    ("operators: alice\n", "must be a list of operators"),
    ("operators: [\n", "YAML syntax error"),
    ("users: []\n", "unknown field 'users'"),
])
def test_shapes_refused(tmp_path, text, message):
    with pytest.raises(OperatorsError, match=message):
        load_operators(write(tmp_path / "ops.yaml", text))


def test_writable_by_others_refused(tmp_path, pubs):
    f = write(tmp_path / "ops.yaml", f'operators: [{{name: a, role: admin, keys: ["{pubs[0]}"]}}]\n', 0o620)
    with pytest.raises(OperatorsError, match=r"writable by group or others \(mode 0620\); run: chmod go-w"):
        load_operators(f)
    f.chmod(0o644)  # public keys: readable by others is fine
    assert "a" in load_operators(f).operators
    tmp_path.chmod(0o777)
    try:
        with pytest.raises(OperatorsError, match="writable by group or others"):
            load_operators(f)
    finally:
        tmp_path.chmod(0o700)


def test_not_a_file_and_too_large_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OperatorsError, match="not a regular file"):
        load_operators(tmp_path / "fifo")
    big = write(tmp_path / "big.yaml", "# " + "x" * (3 * 1024 * 1024) + "\n")
    with pytest.raises(OperatorsError, match="the most read is"):
        load_operators(big)
    with pytest.raises(OperatorsError, match="cannot check"):
        load_operators(tmp_path / "missing.yaml")


def test_not_utf8_refused_with_its_line(tmp_path):
    f = tmp_path / "ops.yaml"
    f.write_bytes(b"operators:\n  - {name: al\xffice}\n")
    f.chmod(0o600)
    with pytest.raises(OperatorsError, match=r"ops.yaml:2: the operators file is not UTF-8"):
        load_operators(f)


def test_symlink_followed_only_to_a_safe_file(tmp_path, pubs):
    real = write(tmp_path / "real.yaml", f'operators: [{{name: a, role: admin, keys: ["{pubs[0]}"]}}]\n')
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert "a" in load_operators(link).operators
    real.chmod(0o666)
    with pytest.raises(OperatorsError, match="writable by group or others"):
        load_operators(link)
