"""Every TOML shipped in configs/ parses and checks as the kind of config its name says."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _kind(path: Path) -> str:
    if path.name.startswith(("teacher-", "transfer-")):
        return "teacher"
    if path.name.startswith("student-"):
        return "student"
    return "pipeline"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_config_parses(path: Path) -> None:
    kind = _kind(path)
    if kind == "teacher":
        from distilrel.teacher.config import load_config

        cfg = load_config(path)
        assert cfg.level_mapping.k == cfg.model.num_levels
        assert cfg.training.output_dir.startswith("runs/")
    elif kind == "student":
        from distilrel.student.config import load_config as load_student

        assert load_student(path).training.output_dir.startswith("runs/")
    else:
        from distilrel.pipeline.config import load_pipeline_config

        cfg = load_pipeline_config(path)
        assert cfg.teacher.level_mapping == cfg.student.level_mapping
