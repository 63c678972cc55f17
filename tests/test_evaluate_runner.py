"""The evaluation runner on a small judged table written in tmp_path."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distilrel.data import load_dataset
from distilrel.data.levels import DEFAULT_5
from distilrel.evaluate.runner import EvalSettings, break_ties, evaluate, text_builder_for
from distilrel.evaluate.scorer import Scorer
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


def test_evaluate_reports_auroc_per_level_threshold(shop: Path) -> None:
    ds = _load(shop)
    scorer = BM25Scorer()
    res = evaluate(ds, scorer, text_builder_for(scorer, ds), EvalSettings(split="test"))
    # Test levels: excellent x2, good, fair, bad x2 and no "irrelevant": the last cut (>= bad vs the rest)
    # has no negatives and is left out; BM25 predicts no levels, so no rmse.
    aurocs = {k for k in res.classifier if k.startswith("auroc")}
    assert aurocs == {"auroc>=excellent", "auroc>=good", "auroc>=fair"}
    assert all(0.0 <= res.classifier[k] <= 1.0 for k in aurocs) and "rmse" not in res.classifier


class _LevelScorer(Scorer):
    """Fixed distributions over DEFAULT_5 (grades 4..0) by the title in the document text; the score is the
    expected grade."""

    name = "fixed-levels"
    levels = DEFAULT_5

    def __init__(self, probs: dict[str, list[float]]) -> None:
        self.probs = probs

    @property
    def predicts_levels(self) -> bool:
        return True

    def predict_levels(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return np.array([next(p for title, p in self.probs.items() if title in d) for d in docs])

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return self.predict_levels(queries, docs) @ np.array(DEFAULT_5.grades, dtype=np.float64)


def test_evaluate_reports_rmse_of_ratings_on_home_depot(tmp_path: Path) -> None:
    rows = [
        ("q1", "drill", "h1", "3", "test"), ("q1", "drill", "h2", "2.33", "test"),
        ("q1", "drill", "h3", "1", "test"), ("q1", "drill", "h4", "2.67", "test"),
        ("q2", "hose", "h3", "3", "train"),
    ]  # fmt: skip
    cols = ["query_id", "query", "doc_id", "label", "split"]
    pd.DataFrame(rows, columns=cols).to_parquet(tmp_path / "judgments.parquet")
    titles = {"h1": "cordless drill", "h2": "drill bits", "h3": "garden hose", "h4": "drill case"}
    pd.DataFrame(
        {"doc_id": list(titles), "language": "en", "product_title": list(titles.values())}
    ).to_parquet(tmp_path / "documents.parquet")
    ds = load_dataset("homedepot", data_dir=tmp_path)
    assert ds.meta["raw_scale"] == (1.0, 3.0)
    scorer = _LevelScorer(
        {
            "cordless drill": [1, 0, 0, 0, 0],  # E[grade] 4   -> rating 1 + 4/2 = 3.0, raw 3.0
            "drill bits": [0, 0.5, 0.5, 0, 0],  # E[grade] 2.5 -> 2.25, raw 2.33
            "garden hose": [0, 0, 0, 0, 1],  # E[grade] 0   -> 1.0, raw 1.0
            "drill case": [0, 0, 1, 0, 0],  # E[grade] 2   -> 2.0, raw 2.67
        }
    )
    res = evaluate(ds, scorer, text_builder_for(scorer, ds), EvalSettings(split="test"))
    c = res.classifier
    # errors 0, 0.08, 0, 0.67 -> sqrt((0.0064 + 0.4489) / 4)
    assert c["rmse"] == pytest.approx(math.sqrt((0.08**2 + 0.67**2) / 4))
    # Home Depot levels: h1 "3.0", h4 "2.5+", h2 "2.0+", h3 "<1.5"; scores 4, 2, 2.5, 0.
    # >=3.0: 4 beats all -> 1.  >=2.5+: {4, 2} vs {2.5, 0}: 4>2.5, 4>0, 2<2.5, 2>0 -> 3/4.  Deeper cuts: 1.
    assert {k: v for k, v in c.items() if k.startswith("auroc")} == pytest.approx(
        {"auroc>=3.0": 1.0, "auroc>=2.5+": 0.75, "auroc>=2.0+": 1.0, "auroc>=1.5+": 1.0}
    )
    assert c["level_accuracy"] == 0.5  # h1 and h3 right; h2 argmax "good" (first of the tie), h4 "fair"
    # Without a declared numeric raw rating there is no rmse.
    plain = dataclasses.replace(ds, meta={k: v for k, v in ds.meta.items() if k != "raw_scale"})
    assert "rmse" not in evaluate(plain, scorer, text_builder_for(scorer, plain), EvalSettings()).classifier


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
