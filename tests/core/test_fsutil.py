"""The one atomic write: a reader sees the old file or the new one whole, and a failed write
leaves the old file and no temporary behind."""

from __future__ import annotations

import pytest

from codeio_dagster.fsutil import atomic_path, write_atomic


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "out.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError, match="half way"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("half way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_create_only_never_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "lease.json"
    write_atomic(target, "first")
    with pytest.raises(FileExistsError), atomic_path(target, create_only=True) as tmp:
        tmp.write_text("second")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["lease.json"]
    fresh = tmp_path / "new.json"
    with atomic_path(fresh, create_only=True) as tmp:
        tmp.write_text("made")
    assert fresh.read_text() == "made"
