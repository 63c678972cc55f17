"""Atomic outputs: an interrupted write leaves the old file or folder intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from distilrel.io import atomic_dir, write_json, write_text


def test_atomic_dir_replaces_a_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").is_file()  # readers still see the old folder meanwhile
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp or old folder left behind
    assert target.stat().st_mode & 0o777 == 0o755


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "index"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_atomic_file_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_json(tmp_path / "metrics.json", {"ndcg@10": 0.5})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object.__new__(type("X", (), {"__str__": None}))})
    assert target.read_text() == '{\n  "ndcg@10": 0.5\n}\n'
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
