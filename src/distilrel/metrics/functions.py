"""Vectorised metric kernels over a batch of queries.

Every ranking metric takes PADDED 2-D arrays, one row per query, columns in rank order (rank 1 first),
and returns one score per query, shape ``(q,)``. Padding is harmless by construction: padded gain
cells hold 0 and padded relevance cells hold False, so they add nothing to any sum. Only
:func:`precision` over the whole list (``k=None``) needs the true list length, via ``n_ranked``.

Conventions (the same as ranx and trec_eval):

* DCG discounts rank ``r`` (1-based) by ``log2(r + 1)`` and sums the raw gains (Järvelin & Kekäläinen).
* ``k=None`` means the whole list; a ``k`` longer than the list simply sees the padding.
* A query whose ideal DCG is 0 (nothing to find) scores NDCG 0, as in ranx.
* ``precision@k`` divides by ``k`` even when fewer than ``k`` documents are ranked (trec_eval ``P@k``).

NDCG is implemented here and nowhere else in the package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt

#: How a grade becomes an NDCG gain: an explicit ``{grade: gain}`` map, ``"linear"`` (gain = grade,
#: ranx/trec_eval ``ndcg``) or ``"exponential"`` (gain = 2**grade - 1, Burges et al.).
GainScheme = Mapping[int, float] | Literal["linear", "exponential"]


def _check_k(k: int | None) -> None:
    # bool is an int subclass; ``k=True`` is always a caller bug.
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ValueError(f"k must be a positive integer or None (whole list), got {k!r}")


def _as_2d(x: npt.ArrayLike, dtype: type, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (queries, ranks) array, got shape {arr.shape}")
    return arr


def _discount(n: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks 1..n, shape ``(n,)``."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def grade_gains(grades: npt.ArrayLike, gains: GainScheme | None = None) -> np.ndarray:
    """Map integer relevance grades (any shape) onto NDCG gains (float64, same shape).

    ``None`` and ``"linear"`` give gain = grade; ``"exponential"`` gives 2**grade - 1. Negative grades
    (TREC's "judged non-relevant" codes such as -1) get gain 0 under both, like ranx and trec_eval.
    With an explicit map, grade 0 defaults to gain 0 when the map omits it (grade 0 is also what an
    unjudged document counts as); any other grade missing from the map is an error, never gain 0.
    """
    g = np.asarray(grades)
    if g.size and not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"grades must be integers, got dtype {g.dtype}")
    g = g.astype(np.int64, copy=False)
    if gains is None or gains == "linear":
        return np.maximum(g, 0).astype(np.float64)
    if gains == "exponential":
        return np.exp2(np.maximum(g, 0).astype(np.float64)) - 1.0
    if isinstance(gains, str):
        raise ValueError(
            f"unknown gain scheme {gains!r}; use 'linear', 'exponential' or a {{grade: gain}} map"
        )
    table_map = {int(k): float(v) for k, v in gains.items()}
    bad = [f"{k}: {v}" for k, v in table_map.items() if not np.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"gains must be finite and >= 0, got {', '.join(bad)}")
    table_map.setdefault(0, 0.0)
    if g.size == 0:
        return np.zeros(g.shape, dtype=np.float64)
    # A dense lookup table over the grade range turns the mapping into one fancy-index.
    lo, hi = min(int(g.min()), min(table_map)), max(int(g.max()), max(table_map))
    table = np.full(hi - lo + 1, np.nan)
    for grade, gain in table_map.items():
        table[grade - lo] = gain
    out = table[g - lo]
    if np.isnan(out).any():
        missing = sorted({int(x) for x in np.unique(g[np.isnan(out)])})
        raise ValueError(f"grades {missing} have no gain in the gain map {dict(sorted(table_map.items()))}")
    return out


def dcg(ranked_gains: npt.ArrayLike, k: int | None = None) -> np.ndarray:
    """DCG@k per query: ``sum_{r<=k} gain_r / log2(r + 1)``. ``ranked_gains``: (q, n) in rank order."""
    _check_k(k)
    g = _as_2d(ranked_gains, np.float64, "ranked_gains")  # (q, n)
    n = g.shape[1] if k is None else min(k, g.shape[1])
    if n == 0:
        return np.zeros(g.shape[0], dtype=np.float64)
    return g[:, :n] @ _discount(n)  # (q,)


def ndcg(ranked_gains: npt.ArrayLike, ideal_gains: npt.ArrayLike, k: int | None = None) -> np.ndarray:
    """NDCG@k per query.

    ranked_gains: (q, n) gains of the ranked documents in rank order (0 for unjudged and padding).
    ideal_gains:  (q, m) gains of ALL judged documents of each query, in any order, padded with 0;
                  the ideal DCG ranks them best first and cuts at the same ``k``.
    Queries with ideal DCG 0 score 0.
    """
    rg = _as_2d(ranked_gains, np.float64, "ranked_gains")
    ig = _as_2d(ideal_gains, np.float64, "ideal_gains")
    if rg.shape[0] != ig.shape[0]:
        raise ValueError(f"ranked_gains has {rg.shape[0]} queries but ideal_gains has {ig.shape[0]}")
    ideal_sorted = -np.sort(-ig, axis=1)  # (q, m), best gain first
    actual = dcg(rg, k)
    best = dcg(ideal_sorted, k)
    out = np.zeros(rg.shape[0], dtype=np.float64)
    np.divide(actual, best, out=out, where=best > 0)
    return out


def precision(
    ranked_rel: npt.ArrayLike, k: int | None = None, n_ranked: npt.ArrayLike | None = None
) -> np.ndarray:
    """Precision@k per query: relevant documents in the top k, divided by k.

    With ``k=None`` the denominator is the number of ranked documents of each query, ``n_ranked``
    (q,) — needed because the rows are padded; it defaults to the row width. An empty list scores 0.
    """
    _check_k(k)
    rel = _as_2d(ranked_rel, bool, "ranked_rel")  # (q, n)
    if k is not None:
        return rel[:, :k].sum(axis=1) / float(k)
    n = np.full(rel.shape[0], rel.shape[1]) if n_ranked is None else np.asarray(n_ranked)
    if n.shape != (rel.shape[0],):
        raise ValueError(f"n_ranked must have shape ({rel.shape[0]},), got {n.shape}")
    out = np.zeros(rel.shape[0], dtype=np.float64)
    np.divide(rel.sum(axis=1), n, out=out, where=n > 0)
    return out


def recall(ranked_rel: npt.ArrayLike, n_relevant: npt.ArrayLike, k: int | None = None) -> np.ndarray:
    """Recall@k per query: relevant documents in the top k / all relevant judged documents.

    ``n_relevant`` (q,) counts each query's judged relevant documents; queries with none score 0.
    """
    _check_k(k)
    rel = _as_2d(ranked_rel, bool, "ranked_rel")
    n = np.asarray(n_relevant)
    if n.shape != (rel.shape[0],):
        raise ValueError(f"n_relevant must have shape ({rel.shape[0]},), got {n.shape}")
    hits = rel[:, :k].sum(axis=1)
    out = np.zeros(rel.shape[0], dtype=np.float64)
    np.divide(hits, n, out=out, where=n > 0)
    return out


def mrr(ranked_rel: npt.ArrayLike, k: int | None = None) -> np.ndarray:
    """Reciprocal rank of the first relevant document within the top k, 0 if there is none."""
    _check_k(k)
    rel = _as_2d(ranked_rel, bool, "ranked_rel")[:, :k]  # (q, min(n, k))
    if rel.shape[1] == 0:
        return np.zeros(rel.shape[0], dtype=np.float64)
    first = rel.argmax(axis=1)  # (q,) index of the first True; 0 when the row has none
    return np.where(rel.any(axis=1), 1.0 / (first + 1.0), 0.0)


# --- classifier metrics over predicted levels -----------------------------------------------------


def _levels(true_levels: npt.ArrayLike, pred_levels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(true_levels), np.asarray(pred_levels)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(
            f"true and predicted levels must be 1-D of equal length, got {t.shape} and {p.shape}"
        )
    if t.size == 0:
        raise ValueError("no levels to score (empty arrays)")
    for name, arr in (("true", t), ("predicted", p)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} levels must be integers, got dtype {arr.dtype}")
    return t.astype(np.int64), p.astype(np.int64)


def level_accuracy(true_levels: npt.ArrayLike, pred_levels: npt.ArrayLike) -> float:
    """Share of pairs whose predicted level equals the judged level."""
    t, p = _levels(true_levels, pred_levels)
    return float(np.mean(t == p))


def macro_f1(true_levels: npt.ArrayLike, pred_levels: npt.ArrayLike, k_levels: int) -> float:
    """Unweighted mean of per-level F1 over levels 0..k_levels-1 that occur in the truth or the predictions.

    A level absent from both has an undefined F1 (0/0) and is left out of the mean, which is what
    ``sklearn.metrics.f1_score(average="macro")`` does without an explicit label list. Levels outside
    ``0..k_levels-1`` are an error.
    """
    t, p = _levels(true_levels, pred_levels)
    if k_levels < 1:
        raise ValueError(f"k_levels must be >= 1, got {k_levels}")
    for name, arr in (("true", t), ("predicted", p)):
        if arr.min() < 0 or arr.max() >= k_levels:
            raise ValueError(f"{name} levels must lie in 0..{k_levels - 1}, got {arr.min()}..{arr.max()}")
    confusion = np.bincount(t * k_levels + p, minlength=k_levels * k_levels).reshape(k_levels, k_levels)
    tp = np.diag(confusion).astype(np.float64)  # (K,)
    n_true, n_pred = confusion.sum(axis=1), confusion.sum(axis=0)  # (K,), (K,)
    present = (n_true + n_pred) > 0
    # F1 = 2 tp / (|true| + |pred|), the harmonic mean of precision and recall without 0/0 cases.
    f1 = 2.0 * tp[present] / (n_true[present] + n_pred[present])
    return float(f1.mean())


def pair_auc(relevant: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Pointwise ROC AUC over pairs: the chance that a relevant pair outscores a non-relevant one, a tie
    counting one half (the Mann-Whitney U statistic over average ranks, as ``sklearn.metrics.roc_auc_score``).

    For judgment sets with about one document per query (the Spanish ESCI sample), where per-query NDCG
    says nothing, this measures whether scores separate relevant from non-relevant pairs at all.
    """
    from scipy.stats import rankdata

    r, s = np.asarray(relevant), np.asarray(scores, dtype=np.float64)
    if r.ndim != 1 or r.shape != s.shape:
        raise ValueError(f"relevant and scores must be 1-D of equal length, got {r.shape} and {s.shape}")
    if r.dtype != np.bool_:
        raise ValueError(f"relevant must be a boolean array, got dtype {r.dtype}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n_pos = int(r.sum())
    n_neg = r.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"pair_auc needs relevant and non-relevant pairs, got {n_pos} and {n_neg}")
    ranks = rankdata(s)  # (n,) 1-based, ties get their average rank
    u = ranks[r].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def auroc_at_thresholds(levels: npt.ArrayLike, scores: npt.ArrayLike, k_levels: int) -> dict[int, float]:
    """ROC AUC of ``scores`` (higher = more relevant) at every cut of K ordered levels, ``{t: auc}``.

    ``levels`` are level indices, 0 the MOST relevant and ``k_levels - 1`` the least. Threshold ``t``
    (1..K-1) splits the pairs into positives, level index < t (at least as relevant as level ``t - 1``),
    and negatives, level >= t; its AUC is :func:`pair_auc` over that split. A threshold where one class
    is empty has no AUC and maps to NaN, so the keys are always 1..K-1. Levels outside ``0..K-1`` are
    an error.
    """
    lv, s = np.asarray(levels), np.asarray(scores, dtype=np.float64)
    if lv.ndim != 1 or lv.shape != s.shape:
        raise ValueError(f"levels and scores must be 1-D of equal length, got {lv.shape} and {s.shape}")
    if lv.size and not np.issubdtype(lv.dtype, np.integer):
        raise ValueError(f"levels must be integers, got dtype {lv.dtype}")
    if isinstance(k_levels, bool) or k_levels < 2:
        raise ValueError(f"k_levels must be >= 2, got {k_levels!r}")
    if lv.size and (lv.min() < 0 or lv.max() >= k_levels):
        raise ValueError(f"levels must lie in 0..{k_levels - 1}, got {lv.min()}..{lv.max()}")
    out: dict[int, float] = {}
    for t in range(1, k_levels):
        positive = lv < t  # (n,)
        out[t] = pair_auc(positive, s) if 0 < positive.sum() < positive.size else math.nan
    return out


def rmse(pred: npt.ArrayLike, target: npt.ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((pred - target)**2))`` of two equal-length 1-D arrays."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.ndim != 1 or p.shape != t.shape:
        raise ValueError(f"pred and target must be 1-D of equal length, got {p.shape} and {t.shape}")
    if p.size == 0:
        raise ValueError("no values to score (empty arrays)")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("pred and target must be finite")
    return float(np.sqrt(np.mean((p - t) ** 2)))
