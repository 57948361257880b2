"""Credential references: env, file (0600 enforced), cmd, lab; secrets never shown."""

from __future__ import annotations

import sys

import pytest

from console.secrets import Secrets
from inventory.errors import SecretError


def test_env_reference():
    s = Secrets(environ={"PW": "s3cret"})
    secret = s.resolve("env:PW")
    assert secret.get() == "s3cret"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret) and "s3cret" not in f"{secret}"
    with pytest.raises(SecretError, match="environment variable MISSING is not set"):
        s.resolve("env:MISSING")


def test_file_reference_requires_private_mode(tmp_path):
    f = tmp_path / "pw"
    f.write_text("filepass\n")
    f.chmod(0o644)
    with pytest.raises(SecretError, match=r"readable by group or others \(mode 0644\); run: chmod 600") as info:
        Secrets().resolve(f"file:{f}")
    assert "filepass" not in str(info.value)
    f.chmod(0o600)
    assert Secrets().resolve(f"file:{f}").get() == "filepass"
    with pytest.raises(SecretError, match="does not exist"):
        Secrets().resolve(f"file:{tmp_path}/nope")
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(SecretError, match="is empty"):
        Secrets().resolve(f"file:{empty}")


def test_cmd_reference(tmp_path):
    ok = f"cmd:{sys.executable} -c \"print('cmdpass'); print('second line')\""
    assert Secrets().resolve(ok).get() == "cmdpass"
    with pytest.raises(SecretError, match="exited with status 3") as info:
        Secrets().resolve(f"cmd:{sys.executable} -c \"print('leak'); raise SystemExit(3)\"")
    assert "leak" not in str(info.value)
    with pytest.raises(SecretError, match="not found"):
        Secrets().resolve("cmd:/no/such/tool show x")


def test_lab_reference():
    assert Secrets(lab={"bmc": "labpw"}).resolve("lab:bmc").get() == "labpw"
    with pytest.raises(SecretError, match="needs a running lab"):
        Secrets().resolve("lab:bmc")
    with pytest.raises(SecretError, match="no secret named 'x'"):
        Secrets(lab={"bmc": "labpw"}).resolve("lab:x")
