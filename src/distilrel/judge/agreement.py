"""Agreement between people and models, as plain functions over arrays (the explorer's agreement page
calls them; so can a notebook).

* :func:`confusion`: people's levels against a model's predicted (arg-max) levels, one count per judgment;
* :func:`rank_disagreement`: how differently two scorers order one query's candidates — Spearman's rank
  correlation and the mean absolute score difference (both scores are expected gains in [0, 1]);
* :func:`most_disagreeing`: queries ordered most-disagreeing first: where a judge's next hour helps the
  student most, since there the student has not learnt what the teacher knows (or the teacher is wrong).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def confusion(human: npt.ArrayLike, model: npt.ArrayLike, k_human: int, k_model: int) -> np.ndarray:
    """(k_human, k_model) counts: row = the person's level, column = the model's level (0 = most relevant).
    The two scales may differ (a catalog's own levels against the model's)."""
    h = np.asarray(human, dtype=np.int64)
    m = np.asarray(model, dtype=np.int64)
    if h.shape != m.shape or h.ndim != 1:
        raise ValueError(
            f"confusion: human and model levels must be 1-D of one length, got {h.shape}, {m.shape}"
        )
    for name, arr, k in (("human", h, k_human), ("model", m, k_model)):
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise ValueError(f"confusion: {name} levels must lie in 0..{k - 1}, got {arr.min()}..{arr.max()}")
    return np.bincount(h * k_model + m, minlength=k_human * k_model).reshape(k_human, k_model)


@dataclass(frozen=True)
class Disagreement:
    """``spearman``: rank correlation of the two score lists (nan when undefined: fewer than 2 candidates
    or a scorer that ties them all); ``mean_abs_diff``: mean |a - b|; ``n``: candidates."""

    spearman: float
    mean_abs_diff: float
    n: int


def rank_disagreement(a: npt.ArrayLike, b: npt.ArrayLike) -> Disagreement:
    """How two scorers disagree on one query's candidates (scores aligned by candidate)."""
    from scipy.stats import rankdata

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"rank_disagreement: score lists must be 1-D of one length, got {x.shape}, {y.shape}"
        )
    if x.size == 0:
        return Disagreement(math.nan, math.nan, 0)
    mad = float(np.abs(x - y).mean())
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Disagreement(math.nan, mad, int(x.size))
    # Spearman = Pearson correlation of the (average, for ties) ranks.
    rx, ry = rankdata(x), rankdata(y)  # (n,), (n,)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    return Disagreement(rho, mad, int(x.size))


def most_disagreeing(
    by_query: Mapping[str, Disagreement], top: int | None = None
) -> list[tuple[str, Disagreement]]:
    """Queries, most disagreeing first: lowest rank correlation, then largest mean score difference;
    queries with an undefined correlation come after every defined one (ordered by score difference)."""

    def key(item: tuple[str, Disagreement]) -> tuple[bool, float, float, str]:
        q, d = item
        undefined = math.isnan(d.spearman)
        mad = -d.mean_abs_diff if not math.isnan(d.mean_abs_diff) else math.inf
        return undefined, (0.0 if undefined else d.spearman), mad, q

    ranked = sorted(by_query.items(), key=key)
    return ranked[:top] if top is not None else ranked
