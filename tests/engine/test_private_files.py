"""What we keep ourselves (caches, histories, keys): console.trust's private directory and
whole-or-nothing 0600 writes, as the SDR cache, the audit history and the host key use them."""

from __future__ import annotations

import os
import stat

import pytest

from console.trust import open_private_dir, write_whole


class Refused(Exception):
    pass


def test_a_private_dir_is_made_0700_and_a_file_written_whole_0600(tmp_path):
    d = tmp_path / "state" / "site"
    assert open_private_dir(d, create=False, refused=Refused) is None  # missing: nothing made
    assert not d.exists()
    dfd = open_private_dir(d, create=True, refused=Refused)
    assert dfd is not None
    try:
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        write_whole(dfd, "f.json", b"old")
        write_whole(dfd, "f.json", b"new" * 100_000)
    finally:
        os.close(dfd)
    assert (d / "f.json").read_bytes() == b"new" * 100_000
    assert stat.S_IMODE(os.stat(d / "f.json").st_mode) == 0o600
    assert os.listdir(d) == ["f.json"]  # no temporary file left


@pytest.mark.parametrize("how", ["link", "group-writable", "a file"])
def test_a_dir_that_is_a_link_open_to_others_or_not_a_dir_is_refused(tmp_path, how):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    d = tmp_path / "d"
    if how == "link":
        d.symlink_to(real)
    elif how == "group-writable":
        d.mkdir()
        os.chmod(d, 0o770)
    else:
        d.write_text("x")
    with pytest.raises(Refused, match=str(d)):
        open_private_dir(d, create=True, refused=Refused)
    assert os.listdir(real) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    d = tmp_path / "d"
    dfd = open_private_dir(d, create=True, refused=Refused)
    assert dfd is not None
    try:
        write_whole(dfd, "f", b"kept")
        with pytest.raises(TypeError):
            write_whole(dfd, "f", "not bytes")  # type: ignore[arg-type]
        (d / "sub").mkdir()
        with pytest.raises(OSError):
            write_whole(dfd, "sub", b"x")  # renaming a file over a directory fails
    finally:
        os.close(dfd)
    assert (d / "f").read_bytes() == b"kept"
    assert sorted(os.listdir(d)) == ["f", "sub"]
