"""Agreement with ranx to 1e-6, per query, on synthetic runs and on a real CrowdFlower run with ties.

ranx is given exactly the queries of the qrels (queries missing from the run as empty results), because
``Run.make_comparable`` re-sorts the run and so reorders tied documents a second time; see
``distilrel.metrics.run.Ties``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from distilrel.metrics import mean_scores, score_run
from distilrel.metrics import run as run_module

ranx = pytest.importorskip("ranx")
numba = pytest.importorskip("numba")

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaTypeSafetyWarning")

# our name -> ranx name (ranx: precision, not p; ndcg_burges = 2^grade - 1; "-lN" = relevance level N)
METRICS = {
    "ndcg@10": "ndcg@10",
    "ndcg": "ndcg",
    "p@8": "precision@8",
    "recall@10": "recall@10",
    "mrr": "mrr",
    "mrr@5": "mrr@5",
    "ndcg_exp@5": "ndcg_burges@5",
}

Qrels = dict[str, dict[str, int]]
RunDict = dict[str, dict[str, float]]


def ranx_per_query(qrels: Qrels, run: RunDict, metrics: dict[str, str]) -> pd.DataFrame:
    """ranx's per-query scores, columns named as ours."""
    ranx_run = ranx.Run({q: dict(run.get(q, {})) for q in qrels})
    ranx_qrels = ranx.Qrels(qrels)
    scores = ranx.evaluate(ranx_qrels, ranx_run, list(metrics.values()), return_mean=False)
    ids = list(ranx_run.get_query_ids())
    return pd.DataFrame({ours: np.asarray(scores[theirs]) for ours, theirs in metrics.items()}, index=ids)


def assert_agrees(
    qrels: Qrels, run: RunDict, metrics: dict[str, str], rel_threshold: int = 1
) -> pd.DataFrame:
    ours = score_run(run, qrels, list(metrics), rel_threshold=rel_threshold)
    theirs = ranx_per_query(qrels, run, metrics)
    assert sorted(theirs.index) == ours.index.tolist()
    diff = (ours.loc[theirs.index] - theirs).abs().max()
    assert (diff <= 1e-6).all(), f"disagreement with ranx per metric:\n{diff}"
    # the means reported to users agree too
    ranx_means = theirs.mean()
    for name, value in mean_scores(ours).items():
        assert value == pytest.approx(ranx_means[name], abs=1e-9)
    return ours


def synthetic(seed: int, n_queries: int, tied: bool) -> tuple[Qrels, RunDict]:
    """Graded qrels 0-3 over part of each query's candidates (the rest unjudged); every 10th query has
    no relevant document, every 7th is absent from the run, and the run has 5 unjudged queries."""
    rng = np.random.default_rng(seed)
    qrels: Qrels = {}
    run: RunDict = {}
    for i in range(n_queries):
        q = f"q{i:04d}"
        n = int(rng.integers(1, 60))
        docs = [f"d{j}" for j in rng.permutation(500)[:n]]
        judged = docs[: max(1, int(n * 0.7))]
        grades = rng.integers(0, 1 if i % 10 == 0 else 4, len(judged))
        qrels[q] = {d: int(g) for d, g in zip(judged, grades, strict=True)}
        if i % 7 == 3:
            continue
        scores = rng.integers(0, 4, n).astype(float) if tied else rng.normal(size=n)
        run[q] = {d: float(s) for d, s in zip(docs, scores, strict=True)}
    for i in range(5):
        run[f"unjudged{i}"] = {"d1": 1.0}
    return qrels, run


@pytest.mark.parametrize("tied", [False, True], ids=["distinct-scores", "tied-scores"])
def test_synthetic_runs_agree_with_ranx(tied: bool) -> None:
    qrels, run = synthetic(seed=11, n_queries=400, tied=tied)
    ours = assert_agrees(qrels, run, METRICS)
    assert len(ours) == 400  # every judged query, none of the unjudged ones
    assert (ours.loc["q0003"] == 0).all()  # absent from the run


def test_relevance_threshold_agrees_with_ranx_levels() -> None:
    qrels, run = synthetic(seed=5, n_queries=200, tied=True)
    metrics = {"p@8": "precision@8-l2", "recall@10": "recall@10-l2", "mrr": "mrr-l2"}
    assert_agrees(qrels, run, metrics, rel_threshold=2)


def test_numba_argsort_emulation_matches_numba() -> None:
    @numba.njit
    def numba_argsort(x: np.ndarray) -> np.ndarray:
        return np.argsort(x)

    rng = np.random.default_rng(0)
    for n in (16, 17, 31, 64, 113, 500):
        for levels in (2, 5, n):
            keys = -rng.integers(0, levels, n).astype(np.float64)
            assert run_module._numba_argsort(keys.tolist()) == numba_argsort(keys).tolist()


# --- a real run: CrowdFlower judgments, scored by query/title word overlap ----------------------


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


@pytest.fixture(scope="module")
def crowdflower() -> tuple[Qrels, RunDict, RunDict]:
    from distilrel.paths import data_dir

    try:
        folder = data_dir() / "crowdflower_search_relevance"
    except FileNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")
    if not (folder / "judgments.parquet").is_file():
        pytest.skip(f"{folder} has no judgments.parquet")
    judgments = pd.read_parquet(
        folder / "judgments.parquet", columns=["query_id", "query", "doc_id", "label"]
    )
    titles = pd.read_parquet(folder / "documents.parquet", columns=["doc_id", "product_title"])
    rows = judgments.merge(titles, on="doc_id", how="left", validate="many_to_one")
    assert rows["product_title"].notna().all()

    qrels: Qrels = {}
    overlap: RunDict = {}
    for qid, group in rows.groupby("query_id", sort=False):
        qrels[str(qid)] = {
            str(d): int(lbl) - 1 for d, lbl in zip(group["doc_id"], group["label"], strict=True)
        }
        q_words = _words(str(group["query"].iloc[0]))
        overlap[str(qid)] = {
            str(d): float(len(q_words & _words(t)))
            for d, t in zip(group["doc_id"], group["product_title"], strict=True)
        }
    # Make it a realistic retrieval run: a few unjudged docs per query (other queries' products, which
    # tie at overlap 0 mostly), and one query the system returned nothing for.
    rng = np.random.default_rng(0)
    all_docs = rows["doc_id"].astype(str).to_numpy()
    for qid, docs in overlap.items():
        for d in rng.choice(all_docs, 5, replace=False):
            docs.setdefault(str(d), 0.0)
        del qid
    del overlap[sorted(overlap)[0]]
    random_run = {
        q: {d: float(s) for d, s in zip(docs, rng.random(len(docs)), strict=True)}
        for q, docs in qrels.items()
    }
    return qrels, overlap, random_run


def test_real_crowdflower_overlap_run_with_ties_agrees_with_ranx(
    crowdflower: tuple[Qrels, RunDict, RunDict],
) -> None:
    qrels, overlap, _ = crowdflower
    n_tied = sum(len(set(d.values())) < len(d) for d in overlap.values())
    assert n_tied > 200  # the point of this test: ties in long lists (up to 118 docs)
    ours = assert_agrees(qrels, overlap, METRICS)
    assert len(ours) == 240
    # a word-overlap ranker beats nothing by a wide margin but is far from perfect
    assert 0.5 < ours["ndcg@10"].mean() < 0.99


def test_real_crowdflower_random_run_agrees_with_ranx(crowdflower: tuple[Qrels, RunDict, RunDict]) -> None:
    qrels, _, random_run = crowdflower
    assert_agrees(qrels, random_run, METRICS)
    assert_agrees(qrels, random_run, {"p@8": "precision@8-l3", "recall@10": "recall@10-l3"}, rel_threshold=3)
