"""``audit --csv FILE`` as root in a shared place: a planted file never receives the report."""

from __future__ import annotations

import os
import stat

import pytest

from console.cli.audit_cmd import _cell, _open_csv


def test_a_file_of_another_user_is_refused(tmp_path):
    planted = tmp_path / "report.csv"
    planted.write_text("theirs\n")
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(planted, 65534, 65534)
    with pytest.raises(ValueError, match="owned by uid 65534, not by you"):
        _open_csv(str(planted))
    assert planted.read_text() == "theirs\n"


def test_a_hard_linked_file_is_refused_and_an_own_file_made_private(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x\n")
    (tmp_path / "linked.csv").hardlink_to(target)
    with pytest.raises(ValueError, match="2 hard links"):
        _open_csv(str(tmp_path / "linked.csv"))
    own = tmp_path / "own.csv"
    own.write_text("old\n")
    own.chmod(0o644)
    fd = _open_csv(str(own))
    os.close(fd)
    assert stat.S_IMODE(own.stat().st_mode) == 0o600


def test_formula_starts_are_quoted_also_in_full_width():
    for lead in ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20"):
        assert _cell(f"{lead}HYPERLINK(1)").startswith("'"), lead
    assert _cell("flatcar@4081.2.1") == "flatcar@4081.2.1"
