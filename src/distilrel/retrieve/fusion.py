"""The zero-shot fusion baseline: per-query z-scored BM25 + bi-encoder cosine, summed.

Cheap, needs no training, and any engineer's first try at combining lexical and semantic signals: each
part's scores are standardised within each query's candidates (mean 0, standard deviation 1; a query whose
candidates all score alike contributes 0), then added with weights (default equal). It is a "best
zero-shot" candidate that trained models are compared with.

Z-scoring reads a query's whole candidate list, so :meth:`FusionScorer.score` must receive each query's
candidates in one call (``evaluate`` does: every pair of a split, or every re-ranked candidate of a query,
in one call). Queries are grouped by their exact text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distilrel.evaluate.scorer import Scorer


def zscore_by_query(queries: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """(n,) scores standardised within each distinct query text (population std; constant -> 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    _, inverse = np.unique(np.asarray(queries, dtype=object).astype(str), return_inverse=True)
    out = np.zeros_like(scores)
    for g in range(int(inverse.max()) + 1 if len(scores) else 0):
        idx = inverse == g
        sd = scores[idx].std()
        out[idx] = (scores[idx] - scores[idx].mean()) / sd if sd > 0 else 0.0
    return out


class FusionScorer(Scorer):
    """``sum_i w_i * zscore_by_query(part_i.score(...))`` over its parts (e.g. BM25 and MiniLM)."""

    def __init__(
        self, parts: Sequence[Scorer], weights: Sequence[float] | None = None, name: str | None = None
    ):
        if len(parts) < 2:
            raise ValueError(f"FusionScorer needs at least 2 scorers to fuse, got {len(parts)}")
        w = [1.0] * len(parts) if weights is None else [float(x) for x in weights]
        if len(w) != len(parts) or any(x < 0 for x in w) or not any(w):
            raise ValueError(f"FusionScorer: {len(parts)} scorers need as many non-negative weights, got {w}")
        self.parts = list(parts)
        self.weights = w
        self.name = name or "fusion:" + "+".join(p.name for p in self.parts)

    def fit_corpus(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        for p in self.parts:
            p.fit_corpus(doc_ids, texts)

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        total = np.zeros(len(queries), dtype=np.float64)
        for w, p in zip(self.weights, self.parts, strict=True):
            total += w * zscore_by_query(queries, np.asarray(p.score(queries, docs), dtype=np.float64))
        return total
