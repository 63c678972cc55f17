"""Query-grouped k-fold cross-validation: folds by query text, fold views, the out-of-fold scorer and
`teacher train --folds` end to end on the toy collection with a tiny BERT (tiny.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distilrel.evaluate.crossval import OutOfFoldScorer, fold_view, query_folds, query_key
from distilrel.retrieve.bm25 import BM25Scorer
from distilrel.retrieve.random import RandomScorer
from distilrel.teacher.config import load_config
from distilrel.teacher.crossval import cross_validate_teacher
from distilrel.teacher.scorer import load_teacher_scorer
from test_teacher import WORDS, write_config
from tiny import save_tiny_bert, toy_dataset, wordpiece_tokenizer


def test_every_query_is_in_exactly_one_fold_and_folds_are_balanced() -> None:
    queries = [f"query {i}" for i in range(23)] * 3 + ["  query   4 "]  # repeats and a spacing variant
    folds = query_folds(queries, 5, seed=1)
    assert set(folds) == {f"query {i}" for i in range(23)}  # one entry per distinct text
    sizes = np.bincount(list(folds.values()), minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 23
    assert query_folds(list(reversed(queries)), 5, seed=1) == folds  # order does not matter
    assert query_folds(queries, 5, seed=2) != folds
    with pytest.raises(ValueError, match="k >= 2"):
        query_folds(queries, 1)
    with pytest.raises(ValueError, match="cannot fill"):
        query_folds(["a", "b"], 3)


def test_a_fold_view_never_shares_a_query_between_its_splits() -> None:
    ds = toy_dataset(n_queries=24)
    # Two query ids with the same text must not straddle folds: give q1 the text of q0.
    j = ds.judgments.copy()
    j.loc[j["query_id"] == "q1", "query"] = j.loc[j["query_id"] == "q0", "query"].iloc[0]
    ds = type(ds)(ds.name, ds.documents, j, ds.levels, ds.fields)
    folds = query_folds(ds.judgments["query"], 4)
    seen_test: set[str] = set()
    for f in range(4):
        view = fold_view(ds, folds, f, val_fraction=0.25)
        by_split = {s: set(g["query"]) for s, g in view.judgments.groupby("split")}
        assert set(by_split) == {"train", "validation", "test"}
        assert not (by_split["test"] & (by_split["train"] | by_split["validation"]))
        assert not (by_split["train"] & by_split["validation"])
        assert {folds[query_key(q)] for q in by_split["test"]} == {f}
        assert not (seen_test & by_split["test"])
        seen_test |= by_split["test"]
    assert seen_test == set(ds.judgments["query"])  # every query is tested once


def test_the_out_of_fold_scorer_routes_each_query_to_its_folds_model() -> None:
    queries = ["red shoe", "blue lamp", "red shoe", "green desk"]
    docs = ["red shoe soft", "a lamp", "blue shoe", "green desk steel"]
    folds = {"red shoe": 0, "blue lamp": 1, "green desk": 1}
    bm25, rnd = BM25Scorer(), RandomScorer(seed=3)
    bm25.fit_corpus([str(i) for i in range(4)], docs)
    oof = OutOfFoldScorer({0: bm25, 1: lambda: rnd}, folds, name="oof")
    got = oof.score(queries, docs)
    np.testing.assert_allclose(got[[0, 2]], bm25.score([queries[0], queries[2]], [docs[0], docs[2]]))
    np.testing.assert_allclose(
        got[[1, 3]], RandomScorer(seed=3).score([queries[1], queries[3]], [docs[1], docs[3]])
    )
    with pytest.raises(ValueError, match="in no fold"):
        oof.score(["black chair"], ["a chair"])
    with pytest.raises(ValueError, match="no model for fold"):
        OutOfFoldScorer({0: bm25}, folds, name="oof")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = wordpiece_tokenizer(WORDS, bert_template=True)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tok, hidden=32, heads=2, intermediate=64)


def test_teacher_cross_validation_end_to_end_and_resumes(tmp_path: Path, bert_dir: Path) -> None:
    cfg = load_config(write_config(tmp_path, bert_dir, training="max_steps = 4\neval_steps = 4"))
    ds = toy_dataset(n_queries=12)
    out = tmp_path / "cv"
    summary = cross_validate_teacher(cfg, 3, out=out, val_fraction=0.25, datasets=[ds])
    plan = json.loads((out / "folds.json").read_text())
    assert plan["k"] == 3 and set(plan["folds"]) == set(ds.judgments["query"])
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2]
    assert sum(f["test_queries"] for f in summary["folds"]) == ds.judgments["query"].nunique()
    # The pooled run covers every query of the dataset, each scored by the fold model that never saw it.
    per_query = pd.read_parquet(out / "oof" / "toy" / "per_query.parquet")
    assert set(per_query["query_id"]) == set(ds.judgments["query_id"])
    assert summary["pooled"]["toy"]["queries"] == 12
    run_lines = (out / "oof" / "toy" / "run.trec").read_text().splitlines()
    first = run_lines[0].split()
    qid, did = first[0], first[2]
    row = ds.judgments[(ds.judgments["query_id"] == qid) & (ds.judgments["doc_id"] == did)].iloc[0]
    fold = plan["folds"][query_key(row["query"])]
    teacher = load_teacher_scorer(out / f"fold-{fold}" / "model")
    text = teacher.text_builder().build_many(ds.documents[ds.documents["doc_id"] == did])[0]
    assert float(first[4]) == pytest.approx(float(teacher.score([row["query"]], [text])[0]), abs=1e-4)
    # `distilrel compare` pairs the pooled run with a zero-shot run made on --split all, query by query.
    from distilrel.evaluate.compare import compare_runs
    from distilrel.evaluate.report import write_outputs
    from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for

    bm25 = BM25Scorer()
    res = evaluate(
        ds, bm25, text_builder_for(bm25, ds), EvalSettings(split="all", metrics=("ndcg@10", "p@8"))
    )
    write_outputs(res, tmp_path / "bm25-all", {})
    table, tests = compare_runs([tmp_path / "bm25-all", out / "oof" / "toy"], ["ndcg@10"])
    assert list(table["queries"]) == [12, 12] and len(tests) == 1
    # A rerun keeps the trained folds; other folds in the same folder are refused.
    stamps = {f: (out / f"fold-{f}" / "summary.json").stat().st_mtime_ns for f in range(3)}
    cross_validate_teacher(cfg, 3, out=out, val_fraction=0.25, datasets=[ds])
    assert {f: (out / f"fold-{f}" / "summary.json").stat().st_mtime_ns for f in range(3)} == stamps
    with pytest.raises(ValueError, match="other folds"):
        cross_validate_teacher(cfg, 4, out=out, val_fraction=0.25, datasets=[ds])
