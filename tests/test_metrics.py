"""Metrics on tiny inputs with hand-computed answers (the arithmetic is in the comments).

log2 values used throughout: log2(2)=1, log2(3)=1.5849625, log2(4)=2, log2(5)=2.3219281, log2(6)=2.5849625.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import f1_score, roc_auc_score

from distilrel.metrics import (
    ESCI_GRADES,
    ESCI_KDD_GAINS,
    ESCI_REPO_GAINS,
    MetricSpec,
    auroc_at_thresholds,
    breakdown,
    dcg,
    grade_gains,
    level_accuracy,
    macro_f1,
    mean_scores,
    metric_label,
    mrr,
    ndcg,
    pair_auc,
    paired_test,
    parse_metric,
    precision,
    query_length_bucket,
    recall,
    rmse,
    score_run,
)
from distilrel.metrics import run as run_module

L3, L5, L6 = math.log2(3), math.log2(5), math.log2(6)

# --- array kernels -----------------------------------------------------------------------------


def test_dcg_by_hand() -> None:
    gains = [[3.0, 2.0, 0.0, 1.0]]
    # 3/1 + 2/1.5849625 + 0/2 + 1/2.3219281 = 3 + 1.2618595 + 0 + 0.4306766 = 4.6925361
    assert dcg(gains)[0] == pytest.approx(3 + 2 / L3 + 1 / L5)
    assert dcg(gains)[0] == pytest.approx(4.6925361, abs=1e-7)
    # top 2 only: 3 + 1.2618595
    assert dcg(gains, k=2)[0] == pytest.approx(3 + 2 / L3)
    # k beyond the list = whole list
    assert dcg(gains, k=10)[0] == dcg(gains)[0]


def test_ndcg_by_hand_with_unsorted_padded_ideal() -> None:
    ranked = [[0.0, 3.0, 2.0], [1.0, 0.0, 0.0]]
    ideal = [[2.0, 0.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.0]]  # any order, zero padding
    out = ndcg(ranked, ideal, k=2)
    # q0: DCG@2 = 0/1 + 3/log2(3) = 1.8928; IDCG@2 = 3 + 2/log2(3) = 4.2619; 1.8928/4.2619 = 0.44413
    assert out[0] == pytest.approx((3 / L3) / (3 + 2 / L3))
    assert out[0] == pytest.approx(0.44413, abs=1e-5)
    # q1: the only relevant doc is first -> 1
    assert out[1] == pytest.approx(1.0)
    # whole list, q0: DCG = 3/log2(3) + 2/2 = 2.8928; IDCG = 3 + 2/log2(3) = 4.2619 -> 0.67876
    assert ndcg(ranked, ideal)[0] == pytest.approx((3 / L3 + 1.0) / (3 + 2 / L3))


def test_ndcg_is_zero_when_nothing_is_relevant() -> None:
    # ideal DCG 0 -> 0 (ranx convention), not NaN
    assert ndcg([[0.0, 0.0]], [[0.0, 0.0]], k=5).tolist() == [0.0]
    assert ndcg(np.zeros((2, 0)), np.zeros((2, 0))).tolist() == [0.0, 0.0]


def test_precision_divides_by_k_even_for_short_lists() -> None:
    rel = [[True, False, False]]
    # 1 relevant in the top 5, 3 docs ranked + padding: 1/5 (trec_eval P@5), not 1/3
    assert precision(rel, k=5)[0] == pytest.approx(0.2)
    # whole list with 2 real docs (third column is padding): 1/2
    assert precision(rel, n_ranked=[2])[0] == pytest.approx(0.5)
    # empty list -> 0
    assert precision([[False]], n_ranked=[0])[0] == 0.0


def test_recall_by_hand() -> None:
    rel = [[True, False, True], [False, False, False]]
    n_rel = [4, 0]
    # q0: 1 of 4 in the top 2 -> 0.25; whole list 2 of 4 -> 0.5; q1: no relevant docs -> 0
    assert recall(rel, n_rel, k=2).tolist() == [0.25, 0.0]
    assert recall(rel, n_rel).tolist() == [0.5, 0.0]


def test_mrr_by_hand() -> None:
    rel = [[False, False, True], [True, True, False], [False, False, False]]
    # first relevant at rank 3 -> 1/3; at rank 1 -> 1; none -> 0
    assert mrr(rel) == pytest.approx([1 / 3, 1.0, 0.0])
    # within the top 2 the first query finds nothing
    assert mrr(rel, k=2) == pytest.approx([0.0, 1.0, 0.0])


@pytest.mark.parametrize("bad_k", [0, -1, True, 2.5])
def test_kernels_reject_bad_k(bad_k: object) -> None:
    with pytest.raises(ValueError, match="k must be"):
        dcg([[1.0]], k=bad_k)  # type: ignore[arg-type]


def test_grade_gains_schemes() -> None:
    grades = np.array([3, 2, 1, 0, -1])
    # linear: the grade; negative "judged non-relevant" codes give 0
    assert grade_gains(grades).tolist() == [3.0, 2.0, 1.0, 0.0, 0.0]
    # exponential: 2^3-1=7, 2^2-1=3, 2^1-1=1, 0, 0
    assert grade_gains(grades, "exponential").tolist() == [7.0, 3.0, 1.0, 0.0, 0.0]
    # explicit map; grade 0 defaults to 0 when the map leaves it out
    assert grade_gains(np.array([3, 0]), {3: 1.0}).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"grades \[2\] have no gain"):
        grade_gains(np.array([3, 2]), {3: 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        grade_gains(np.array([1]), {1: -1.0})
    with pytest.raises(ValueError, match="integers"):
        grade_gains(np.array([1.5]))


def test_level_accuracy_and_macro_f1_by_hand() -> None:
    # 2 of 4 levels right
    assert level_accuracy([0, 1, 2, 2], [0, 2, 2, 1]) == 0.5
    true, pred = [0, 0, 1, 2], [0, 1, 1, 1]
    # level 0: tp 1, |true| 2, |pred| 1 -> F1 = 2*1/(2+1) = 2/3
    # level 1: tp 1, |true| 1, |pred| 3 -> 2/4 = 1/2
    # level 2: tp 0 -> 0;  level 3 never occurs -> left out.  mean(2/3, 1/2, 0) = 0.388889
    assert macro_f1(true, pred, k_levels=4) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert macro_f1(true, pred, k_levels=4) == pytest.approx(f1_score(true, pred, average="macro"))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        macro_f1([0, 3], [0, 1], k_levels=3)
    with pytest.raises(ValueError, match="equal length"):
        level_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        level_accuracy([], [])


def test_pair_auc_by_hand() -> None:
    # relevant scores 0.9, 0.3; non-relevant 0.8, 0.1 -> pairs (0.9>0.8, 0.9>0.1, 0.3<0.8, 0.3>0.1) = 3/4
    assert pair_auc(np.array([True, False, True, False]), [0.9, 0.8, 0.3, 0.1]) == 0.75
    assert pair_auc(np.array([True, False]), [0.5, 0.5]) == 0.5  # a tie counts one half
    assert pair_auc(np.array([False, True]), [1.0, 0.0]) == 0.0
    rng = np.random.default_rng(0)
    rel, s = rng.random(200) < 0.3, rng.integers(0, 5, 200).astype(float)  # many ties
    assert pair_auc(rel, s) == pytest.approx(roc_auc_score(rel, s))
    with pytest.raises(ValueError, match="relevant and non-relevant"):
        pair_auc(np.array([True, True]), [0.1, 0.2])
    with pytest.raises(ValueError, match="boolean"):
        pair_auc([1, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="equal length"):
        pair_auc(np.array([True]), [0.1, 0.2])


def test_auroc_at_thresholds_by_hand() -> None:
    levels, scores = [0, 1, 2, 1], [0.9, 0.4, 0.6, 0.2]
    # t=1: level 0 (0.9) vs 0.4, 0.6, 0.2 -> 3/3.  t=2: levels 0-1 (0.9, 0.4, 0.2) vs level 2 (0.6) -> 1/3.
    # t=3 with 4 levels: every pair is positive, no negatives -> NaN.
    out = auroc_at_thresholds(levels, scores, k_levels=4)
    assert list(out) == [1, 2, 3]
    assert out[1] == 1.0 and out[2] == pytest.approx(1 / 3) and math.isnan(out[3])
    assert auroc_at_thresholds([0, 1], [0.5, 0.5], k_levels=2) == {1: 0.5}  # a tie counts one half
    rng = np.random.default_rng(0)
    lv, s = rng.integers(0, 5, 300), rng.integers(0, 7, 300).astype(float)  # many ties
    for t, auc in auroc_at_thresholds(lv, s, k_levels=5).items():
        assert auc == pytest.approx(roc_auc_score(lv < t, s))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        auroc_at_thresholds([0, 3], [0.1, 0.2], k_levels=3)
    with pytest.raises(ValueError, match="integers"):
        auroc_at_thresholds([0.0, 1.0], [0.1, 0.2], k_levels=2)
    with pytest.raises(ValueError, match="equal length"):
        auroc_at_thresholds([0, 1], [0.1], k_levels=2)
    with pytest.raises(ValueError, match="k_levels"):
        auroc_at_thresholds([0, 0], [0.1, 0.2], k_levels=1)


def test_rmse_by_hand() -> None:
    # errors 0, -2, 0 -> sqrt(4 / 3)
    assert rmse([1.0, 2.0, 3.0], [1.0, 4.0, 3.0]) == pytest.approx(math.sqrt(4 / 3))
    assert rmse([0.5], [0]) == 0.5
    with pytest.raises(ValueError, match="equal length"):
        rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])
    with pytest.raises(ValueError, match="finite"):
        rmse([np.nan], [1.0])


# --- metric names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "label"),
    [
        ("ndcg@10", MetricSpec("ndcg", 10, "given"), "ndcg@10"),
        ("ndcg", MetricSpec("ndcg", None, "given"), "ndcg"),
        (" NDCG@5 ", MetricSpec("ndcg", 5, "given"), "ndcg@5"),
        ("ndcg_exp@3", MetricSpec("ndcg", 3, "exponential"), "ndcg_exp@3"),
        ("ndcg_lin", MetricSpec("ndcg", None, "linear"), "ndcg_lin"),
        ("esci_ndcg", MetricSpec("ndcg", None, ESCI_KDD_GAINS), "esci_ndcg"),
        ("esci_repo_ndcg", MetricSpec("ndcg", None, ESCI_REPO_GAINS), "esci_repo_ndcg"),
        ("esci_ndcg@10", MetricSpec("ndcg", 10, ESCI_KDD_GAINS), "esci_ndcg@10"),
        ("p@5", MetricSpec("precision", 5), "precision@5"),
        ("precision@5", MetricSpec("precision", 5), "precision@5"),
        ("recall@10", MetricSpec("recall", 10), "recall@10"),
        ("mrr", MetricSpec("mrr", None), "mrr"),
        ("mrr@10", MetricSpec("mrr", 10), "mrr@10"),
    ],
)
def test_parse_every_form(name: str, spec: MetricSpec, label: str) -> None:
    assert parse_metric(name) == spec
    assert metric_label(spec) == label
    assert parse_metric(metric_label(spec)) == spec


@pytest.mark.parametrize("bad", ["", "map@10", "ndcg@0", "ndcg@", "ndcg@-1", "ndcg@1.5", "ndcg10", "p@k"])
def test_parse_errors_list_supported_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="ndcg") as err:
        parse_metric(bad)
    assert "k must be >= 1" in str(err.value) or "supported" in str(err.value)


def test_esci_presets_swap_s_and_c() -> None:
    kdd, repo = dict(ESCI_KDD_GAINS), dict(ESCI_REPO_GAINS)
    e, s, c, i = (ESCI_GRADES[x] for x in "ESCI")
    assert (kdd[e], kdd[s], kdd[c], kdd[i]) == (1.0, 0.1, 0.01, 0.0)
    assert (repo[e], repo[s], repo[c], repo[i]) == (1.0, 0.01, 0.1, 0.0)


def test_metric_spec_validation_and_custom_label() -> None:
    with pytest.raises(ValueError, match="only apply to ndcg"):
        MetricSpec("precision", 5, "exponential")
    with pytest.raises(ValueError, match="positive integer"):
        MetricSpec("ndcg", 0)
    assert metric_label(MetricSpec("ndcg", 10, ((3, 1.0), (1, 0.5)))) == "ndcg[3=1,1=0.5]@10"


# --- score_run --------------------------------------------------------------------------------

QRELS = {
    "q1": {"a": 3, "b": 2, "c": 0, "d": 1},
    "q2": {"x": 1},
    "q3": {"z": 0},  # judged, nothing relevant, absent from the run
}
RUN = {
    # ranked: a(3) u(unjudged) c(0) d(1) b(2)
    "q1": {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.3, "u": 0.8},
    "q2": {"y": 1.0},  # only an unjudged doc
    "q9": {"a": 1.0},  # not judged -> ignored
}
# q1 IDCG over the whole judged list: 3/1 + 2/log2(3) + 1/2 + 0 = 4.7618595
Q1_IDCG = 3 + 2 / L3 + 1 / 2


def test_score_run_by_hand() -> None:
    metrics = ["ndcg@3", "ndcg", "p@2", "recall@4", "mrr", "ndcg_exp@3", "esci_ndcg"]
    df = score_run(RUN, QRELS, metrics)
    assert df.index.tolist() == ["q1", "q2", "q3"]
    assert df.index.name == "query_id"
    assert df.columns.tolist() == metrics
    q1 = df.loc["q1"]
    # DCG@3 = 3 + 0 + 0 = 3; IDCG@3 = 4.7618595 -> 0.630006
    assert q1["ndcg@3"] == pytest.approx(3 / Q1_IDCG)
    # DCG = 3 + 0 + 0 + 1/log2(5) + 2/log2(6) = 3 + 0.4306766 + 0.7737056 = 4.2043822
    # NDCG = 4.2043822 / 4.7618595 = 0.8829286
    assert q1["ndcg"] == pytest.approx((3 + 1 / L5 + 2 / L6) / Q1_IDCG)
    assert q1["ndcg"] == pytest.approx(0.8829286, abs=1e-7)
    # top 2 = a (rel), u (unjudged) -> 1/2
    assert q1["p@2"] == 0.5
    # relevant judged: a, b, d (3); top 4 = a u c d -> 2 hits -> 2/3
    assert q1["recall@4"] == pytest.approx(2 / 3)
    assert q1["mrr"] == 1.0
    # exp gains 7, 3, 0, 1: DCG@3 = 7; IDCG@3 = 7 + 3/log2(3) + 1/2 = 9.3927893 -> 0.745253
    assert q1["ndcg_exp@3"] == pytest.approx(7 / (7 + 3 / L3 + 0.5))
    # ESCI gains E=1 S=.1 C=.01 on grades 3 2 1: DCG = 1 + .01/log2(5) + .1/log2(6) = 1.0429921
    # IDCG = 1 + .1/log2(3) + .01/2 = 1.0680930 -> 0.976499
    assert q1["esci_ndcg"] == pytest.approx((1 + 0.01 / L5 + 0.1 / L6) / (1 + 0.1 / L3 + 0.01 / 2))
    # q2 ranks only an unjudged doc, q3 is missing from the run: everything 0
    assert (df.loc[["q2", "q3"]] == 0.0).all().all()
    assert mean_scores(df)["mrr"] == pytest.approx(1 / 3)


def test_score_run_gain_map_and_threshold() -> None:
    gains = {3: 1.0, 2: 0.5, 1: 0.25}
    df = score_run(RUN, QRELS, ["ndcg@3", "ndcg_lin@3", "recall@4", "p@5"], gains=gains, rel_threshold=2)
    # gains 1, .5, .25: DCG@3 = 1; IDCG@3 = 1 + .5/log2(3) + .25/2 = 1.4404649 -> 0.694220
    assert df.loc["q1", "ndcg@3"] == pytest.approx(1 / (1 + 0.5 / L3 + 0.125))
    # ndcg_lin ignores the map: 3 / 4.7618595
    assert df.loc["q1", "ndcg_lin@3"] == pytest.approx(3 / Q1_IDCG)
    # relevant = grade >= 2: a, b; top 4 = a u c d -> 1 of 2
    assert df.loc["q1", "recall@4"] == 0.5
    # top 5 holds a and b -> 2/5
    assert df.loc["q1", "p@5"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"grades \[2\].*query 'q1'"):
        score_run(RUN, QRELS, ["ndcg"], gains={3: 1.0, 1: 0.5})


@pytest.mark.parametrize(
    ("run_q", "ties", "expected_mrr"),
    [
        # equal scores keep the run's order under ranx: a (grade 0) then b (grade 1) -> 1/2
        ({"a": 1.0, "b": 1.0}, "ranx", 0.5),
        ({"b": 1.0, "a": 1.0}, "ranx", 1.0),
        # trec_eval: doc id descending, b before a whatever the run's order -> 1
        ({"a": 1.0, "b": 1.0}, "trec_eval", 1.0),
        ({"b": 1.0, "a": 1.0}, "trec_eval", 1.0),
    ],
)
def test_tie_breaking(run_q: dict[str, float], ties: str, expected_mrr: float) -> None:
    df = score_run({"q": run_q}, {"q": {"a": 0, "b": 1}}, ["mrr"], ties=ties)  # type: ignore[arg-type]
    assert df.loc["q", "mrr"] == expected_mrr


def test_numba_argsort_emulation_is_a_sort() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 15, 16, 17, 40, 113):
        keys = rng.integers(0, 4, n).astype(float).tolist()
        order = run_module._numba_argsort(keys)
        assert sorted(order) == list(range(n))
        assert all(keys[i] <= keys[j] for i, j in itertools.pairwise(order))
        if n <= 15:  # insertion sort: stable
            assert order == np.argsort(keys, kind="stable").tolist()


def test_chunked_scoring_matches_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    qrels = {
        f"q{i}": {f"d{j}": int(rng.integers(0, 4)) for j in range(int(rng.integers(1, 30)))}
        for i in range(50)
    }
    run = {q: {d: float(rng.random()) for d in docs} | {"extra": 0.5} for q, docs in qrels.items()}
    metrics = ["ndcg@10", "ndcg", "p@8", "recall@10", "mrr"]
    whole = score_run(run, qrels, metrics)
    monkeypatch.setattr(run_module, "_CELL_BUDGET", 64)
    assert len(run_module._chunks(run_module._flatten(run, qrels, sorted(qrels), False))) > 1
    pd.testing.assert_frame_equal(score_run(run, qrels, metrics), whole)


def test_score_run_errors() -> None:
    with pytest.raises(ValueError, match=r"NaN or None at query 'q1', doc 'b'"):
        score_run({"q1": {"a": 1.0, "b": float("nan")}}, QRELS, ["ndcg"])
    with pytest.raises(ValueError, match=r"integers; query 'q', doc 'a' has grade 1.5"):
        score_run({}, {"q": {"a": 1.5}}, ["ndcg"])  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="qrels is empty"):
        score_run(RUN, {}, ["ndcg"])
    with pytest.raises(ValueError, match="supported"):
        score_run(RUN, QRELS, ["map@10"])
    with pytest.raises(ValueError, match="repeat"):
        score_run(RUN, QRELS, ["mrr", "mrr"])
    with pytest.raises(ValueError, match="sequence of names"):
        score_run(RUN, QRELS, "mrr")
    with pytest.raises(ValueError, match=">= 1"):
        score_run(RUN, QRELS, ["mrr"], rel_threshold=0)
    with pytest.raises(ValueError, match="must map doc id"):
        score_run({"q1": ["a"]}, QRELS, ["mrr"])  # type: ignore[dict-item]


# --- segments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "bucket"), [("shoes", "1"), ("red shoes", "2"), ("  a  b\tc ", "3"), ("a b c d e", "4+")]
)
def test_query_length_bucket(query: str, bucket: str) -> None:
    assert query_length_bucket(query) == bucket


def test_query_length_bucket_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no words"):
        query_length_bucket("   ")


def test_breakdown_by_hand() -> None:
    per_query = pd.DataFrame(
        {"ndcg@10": [1.0, 0.5, 0.0, 0.5], "mrr": [1.0, 1.0, 0.0, 0.5]},
        index=pd.Index(["q1", "q2", "q3", "q4"], name="query_id"),
    )
    segments = pd.DataFrame(
        {"locale": ["us", "us", "es", "jp", "jp"], "length": ["1", "2", "2", "4+", "1"]},
        index=pd.Index(["q1", "q2", "q3", "q4", "q5"], name="query_id"),  # q5 is not scored: ignored
    )
    out = breakdown(per_query, segments, ["locale", "length"])
    assert out.columns.tolist() == ["ndcg@10", "mrr", "queries"]
    assert out.index.names == ["segment", "value"]
    # all: ndcg (1 + .5 + 0 + .5)/4 = .5, mrr (1 + 1 + 0 + .5)/4 = .625
    assert out.loc[("all", "all")].tolist() == [0.5, 0.625, 4]
    # us = q1, q2: ndcg .75, mrr 1; es = q3: 0, 0; jp = q4: .5, .5
    assert out.loc[("locale", "us")].tolist() == [0.75, 1.0, 2]
    assert out.loc[("locale", "es")].tolist() == [0.0, 0.0, 1]
    assert out.loc[("locale", "jp")].tolist() == [0.5, 0.5, 1]
    # length "2" = q2, q3: ndcg .25, mrr .5
    assert out.loc[("length", "2")].tolist() == [0.25, 0.5, 2]
    assert out.index.tolist()[0] == ("all", "all")
    assert out.loc["locale"].index.tolist() == ["es", "jp", "us"]


def test_breakdown_errors() -> None:
    per_query = pd.DataFrame({"mrr": [1.0, 0.0]}, index=pd.Index(["q1", "q2"], name="query_id"))
    segments = pd.DataFrame({"locale": ["us"]}, index=pd.Index(["q1"], name="query_id"))
    with pytest.raises(ValueError, match=r"1 scored queries have no segment row, e.g. \['q2'\]"):
        breakdown(per_query, segments, ["locale"])
    with pytest.raises(ValueError, match="not in segments"):
        breakdown(per_query, segments, ["market"])


# --- significance -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["bootstrap", "ttest", "randomization"])
def test_identical_systems_are_not_different(method: str) -> None:
    a = np.random.default_rng(0).random(50)
    res = paired_test(a, a.copy(), method=method)  # type: ignore[arg-type]
    assert res.p_value == pytest.approx(1.0)
    assert (res.diff, res.ci_low, res.ci_high, res.n) == (0.0, 0.0, 0.0, 50)


@pytest.mark.parametrize("method", ["bootstrap", "ttest", "randomization"])
def test_clearly_better_system_has_small_p(method: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.random(200)
    b = np.clip(a + 0.1 + rng.normal(0, 0.05, 200), 0, None)
    res = paired_test(a, b, method=method, n_resamples=2000)  # type: ignore[arg-type]
    assert res.p_value < 0.001
    assert res.diff == pytest.approx(b.mean() - a.mean())
    assert res.rel_diff == pytest.approx(res.diff / a.mean())
    assert 0 < res.ci_low < res.diff < res.ci_high
    assert res.method == method


def test_ttest_matches_scipy_and_randomization_is_exact_for_tiny_n() -> None:
    a, b = np.array([0.1, 0.4, 0.3, 0.9]), np.array([0.2, 0.4, 0.6, 0.8])
    assert paired_test(a, b, method="ttest").p_value == pytest.approx(stats.ttest_rel(b, a).pvalue)
    # d = [1, 1, 1]: of the 2^3 = 8 sign patterns only +++ and --- reach |mean| >= 1 -> p = 2/8
    assert paired_test([0, 0, 0], [1, 1, 1], method="randomization").p_value == 0.25


def test_paired_test_is_seeded_and_validates() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(30), rng.random(30)
    assert paired_test(a, b, seed=7) == paired_test(a, b, seed=7)
    with pytest.raises(ValueError, match="equal length"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_test([1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_test([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown method"):
        paired_test([1.0, 2.0], [1.0, 2.0], method="wilcoxon")  # type: ignore[arg-type]
