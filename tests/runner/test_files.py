"""The one atomic write: a reader (or a crash) sees the old file or the new one, never half, and no
temporary file is left behind either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.files import atomic, write_json


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"status": "finished"})
    with pytest.raises(RuntimeError):
        with atomic(path) as f:
            f.write('{"status": "half')
            raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"status": "finished"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_write_replaces_the_file_whole_and_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with atomic(path, "wb") as f:
        f.write(b"new" * 1000)
    assert path.read_bytes() == b"new" * 1000
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
