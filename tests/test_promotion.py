"""The promotion gate's decision on hand-made per-query scores (the pipeline test runs it end to end)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distilrel.pipeline.promotion import decide

QUERIES = [f"q{i}" for i in range(40)]


def scores(values: np.ndarray) -> pd.Series:
    return pd.Series(values, index=QUERIES)


def test_a_model_significantly_worse_than_the_best_baseline_is_held() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.9, size=len(QUERIES))
    per_query = {
        "random": scores(base + 0.2),  # never counts, however high
        "bm25": scores(base - 0.05),
        "minilm": scores(base),  # the best zero-shot baseline
        "teacher": scores(base + 0.01 + rng.normal(0, 0.01, size=len(QUERIES))),
        "student": scores(base - 0.08 + rng.normal(0, 0.01, size=len(QUERIES))),
    }
    got = decide(per_query, ["random", "bm25", "minilm"], ["teacher", "student"])
    assert got["best_baseline"] == "minilm" and got["queries"] == 40
    assert got["models"]["teacher"]["passed"] and got["models"]["teacher"]["diff"] > 0
    st = got["models"]["student"]
    assert not st["passed"] and st["diff"] == pytest.approx(float((per_query["student"] - base).mean()))
    assert st["p"] < 0.05 and st["ci"][1] < 0
    assert got["promoted"] == "minilm" and "serve minilm instead" in got["why"]


def test_a_model_level_with_the_baseline_is_promoted() -> None:
    base = np.linspace(0.5, 0.9, len(QUERIES))
    noise = np.tile([0.01, -0.01], len(QUERIES) // 2)
    got = decide({"bm25": scores(base), "student": scores(base + noise)}, ["bm25"], ["student"])
    assert got["models"]["student"]["passed"] and got["promoted"] == "student"
    assert "not significantly worse than bm25" in got["why"]


def test_the_gate_needs_a_baseline_and_the_same_queries() -> None:
    base = scores(np.full(len(QUERIES), 0.5))
    with pytest.raises(ValueError, match="zero-shot baseline"):
        decide({"random": base, "student": base}, ["random"], ["student"])
    with pytest.raises(ValueError, match="same queries"):
        decide({"bm25": base, "student": base.iloc[:10]}, ["bm25"], ["student"])
    with pytest.raises(ValueError, match="no scores"):
        decide({"bm25": base}, ["bm25"], ["student"])


def test_serve_refuses_a_student_the_gate_held(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from distilrel.cli.main import app
    from distilrel.pipeline.promotion import held_reason

    run = tmp_path / "runs" / "demo"
    student = run / "student" / "model"
    student.mkdir(parents=True)
    (run / "eval").mkdir()
    gate = {"crowdflower": {"promoted": "minilm", "why": "student is significantly worse than minilm"}}
    (run / "eval" / "promotion.json").write_text(json.dumps(gate))
    assert "significantly worse than minilm" in held_reason(student)
    result = CliRunner().invoke(app, ["serve", "--student", str(student), "--store", str(tmp_path / "s")])
    assert result.exit_code != 0 and "held this student" in result.output
    gate["crowdflower"]["promoted"] = "student"
    (run / "eval" / "promotion.json").write_text(json.dumps(gate))
    assert held_reason(student) is None
    assert held_reason(tmp_path / "elsewhere") is None  # not a pipeline run's student: no gate to read
