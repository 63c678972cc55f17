"""The evaluation runner on a small judged table written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from distilrel.data import load_dataset
from distilrel.evaluate.runner import EvalSettings, break_ties, evaluate, text_builder_for
from distilrel.evaluate.suite import run_suite
from distilrel.retrieve.bm25 import BM25Scorer
from distilrel.retrieve.random import RandomScorer


def test_break_ties_keeps_order_and_makes_scores_distinct() -> None:
    run = {"q": {"b": 1.0, "a": 1.0, "c": 2.0, "d": 0.5}}
    out = break_ties(run)["q"]
    ranked = sorted(out, key=lambda d: -out[d])
    assert ranked == ["c", "a", "b", "d"]  # ties in doc id order, the rest untouched
    assert len(set(out.values())) == 4
    assert out["c"] == 2.0 and out["a"] == 1.0 and out["d"] == 0.5
    assert 0.5 < out["b"] < 1.0


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    rows = [
        ("red shoes", "d1", 4, "train"), ("red shoes", "d2", 1, "train"),
        ("blue kettle", "d3", 4, "test"), ("blue kettle", "d4", 1, "test"), ("blue kettle", "d5", 2, "test"),
        ("steel knife", "d6", 4, "test"), ("steel knife", "d4", 3, "test"), ("steel knife", "d1", 1, "test"),
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["query", "doc_id", "grade", "split"]).to_csv(tmp_path / "j.csv", index=False)
    docs = {
        "d1": "red running shoes", "d2": "garden hose", "d3": "blue electric kettle",
        "d4": "kitchen knife block", "d5": "blue tea kettle lid", "d6": "steel chef knife",
    }  # fmt: skip
    pd.DataFrame({"doc_id": list(docs), "title": list(docs.values())}).to_parquet(tmp_path / "d.parquet")
    return tmp_path


def _load(folder: Path):
    return load_dataset(
        "table",
        judgments=folder / "j.csv",
        documents=folder / "d.parquet",
        columns={"label": "grade"},
        levels="default5",
        fields=("title",),
    )


def test_evaluate_table_with_bm25(shop: Path) -> None:
    ds = _load(shop)
    scorer = BM25Scorer()
    res = evaluate(ds, scorer, text_builder_for(scorer, ds), EvalSettings(split="test"))
    assert sorted(res.per_query.index) == sorted(ds.split("test").queries["query_id"])
    # BM25 puts the exact-term document first for both test queries: MRR@10 is 1.
    assert res.summary["mrr@10"] == pytest.approx(1.0)
    assert set(res.per_query.columns) >= {"ndcg@10", "p@8", "language", "query_length"}
    assert res.pairs_scored == 6


def test_suite_reuses_finished_runs(shop: Path, tmp_path: Path) -> None:
    ds = _load(shop)
    logs: list[str] = []
    out = tmp_path / "suite"
    table = run_suite([ds], ["random", "bm25"], out, log=logs.append)
    assert list(table["scorer"]) == [RandomScorer().name, BM25Scorer().name]
    assert (out / "results.md").is_file() and (out / "results.png").stat().st_size > 0
    folder = out / ds.name / "bm25"
    first = json.loads(folder.joinpath("metrics.json").read_text())
    logs.clear()
    run_suite([ds], ["random", "bm25"], out, log=logs.append)
    assert len(logs) == 2 and all("up to date" in line for line in logs)
    assert json.loads(folder.joinpath("metrics.json").read_text()) == first
