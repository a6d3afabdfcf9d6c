"""m2s_lib.atomic: a failed write leaves the old file, a finished one replaces it, no temporary file stays behind."""
from __future__ import annotations

import os
import stat

import pytest

from m2s_lib.atomic import atomic_path, copy_file, write_bytes, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "last.pt"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]


def test_finished_writes_replace_with_usual_permissions(tmp_path):
    target = write_text(tmp_path / "a" / "b" / "config.yaml", "x: 1\n")  # parent folders are created
    assert target.read_text() == "x: 1\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600
    copy = copy_file(target, tmp_path / "best.yaml")
    assert copy.read_text() == "x: 1\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a", "best.yaml"]
