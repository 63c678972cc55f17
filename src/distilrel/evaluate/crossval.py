"""Query-grouped k-fold cross-validation: evaluation with power for small judged sets.

CrowdFlower's test split has 46 queries; a 5-fold CV over all of its 240 queries judges every query once
with a model that never saw it. The pieces:

* :func:`query_folds`: each distinct query TEXT (whitespace-collapsed) gets one fold, by hash, balanced to
  within one query. Folds are keyed by text, not id, so two ids with the same text never straddle folds.
* :func:`fold_view`: the dataset with its ``split`` column rewritten for fold f: the fold's queries are
  ``test``, a seeded share of the others ``validation`` (checkpoint selection, search), the rest ``train``.
* :class:`OutOfFoldScorer`: one :class:`~distilrel.evaluate.scorer.Scorer` over the k fold models that
  scores each pair with the model whose training never saw its query, so the pooled out-of-fold run is
  evaluated by the ordinary :func:`~distilrel.evaluate.runner.evaluate` (every metric, every report) and
  compared with zero-shot scorers evaluated on ``--split all`` by ``distilrel compare`` (paired by query).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from distilrel.data.schema import Dataset
from distilrel.data.splits import hash_unit
from distilrel.evaluate.scorer import Scorer


def query_key(query: str) -> str:
    return " ".join(str(query).split())


def query_folds(queries: Sequence[str] | pd.Series, k: int, seed: int = 0) -> dict[str, int]:
    """query text (whitespace-collapsed) -> fold in 0..k-1: distinct texts ordered by hash and dealt out
    round-robin, so fold sizes differ by at most one and a query's fold depends only on (seed, the set of
    queries)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"cross-validation needs k >= 2 folds, got {k!r}")
    keys = sorted({query_key(q) for q in queries}, key=lambda q: (hash_unit(q, seed), q))
    if len(keys) < k:
        raise ValueError(f"{len(keys)} distinct queries cannot fill {k} folds")
    return {q: i % k for i, q in enumerate(keys)}


def fold_view(
    ds: Dataset, folds: Mapping[str, int], fold: int, val_fraction: float = 0.125, seed: int = 0
) -> Dataset:
    """``ds`` with ``split`` = test for fold ``fold``, validation for a seeded ``val_fraction`` of the other
    queries, train for the rest (every query of ``ds`` is used, whatever its original split)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = ds.judgments["query"].map(query_key)
    unknown = sorted(set(keys) - set(folds))
    if unknown:
        raise ValueError(f"{ds.name}: {len(unknown)} queries have no fold, e.g. {unknown[0]!r}")
    f = keys.map(folds).to_numpy()
    held_val = keys.map(lambda q: hash_unit(q, seed + 1) < val_fraction).to_numpy(dtype=bool)
    split = np.where(f == fold, "test", np.where(held_val, "validation", "train"))
    return dataclasses.replace(ds, judgments=ds.judgments.assign(split=split))


class OutOfFoldScorer(Scorer):
    """Scores each pair with ``models[folds[query]]``: the model trained without that query's fold.

    ``models``: fold -> a loaded scorer, or a zero-argument loader called on first use (fold models are
    loaded lazily). Text recipe, tokenizer and levels come from fold 0's model (all folds share one
    config). A query with no fold is an error, never a silent fallback."""

    def __init__(
        self, models: Mapping[int, Scorer | Callable[[], Scorer]], folds: Mapping[str, int], name: str
    ) -> None:
        missing = sorted(set(folds.values()) - set(models))
        if missing:
            raise ValueError(f"OutOfFoldScorer: no model for fold(s) {missing}")
        self._models = dict(models)
        self.folds = dict(folds)
        self.name = name

    def model(self, fold: int) -> Scorer:
        m = self._models[fold]
        if not isinstance(m, Scorer):
            m = self._models[fold] = m()
        return m

    def fit_corpus(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        for fold in sorted(self._models):
            self.model(fold).fit_corpus(doc_ids, texts)

    def _route(self, queries: Sequence[str]) -> np.ndarray:
        keys = [query_key(q) for q in queries]
        unknown = [q for q in keys if q not in self.folds]
        if unknown:
            raise ValueError(f"OutOfFoldScorer {self.name!r}: query {unknown[0]!r} is in no fold")
        return np.array([self.folds[q] for q in keys], dtype=np.int64)

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return self._by_fold(queries, docs, lambda m, q, d: np.asarray(m.score(q, d), dtype=np.float64))

    @property
    def predicts_levels(self) -> bool:
        return self.model(min(self._models)).predicts_levels

    def predict_levels(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return self._by_fold(queries, docs, lambda m, q, d: np.asarray(m.predict_levels(q, d)))

    def _by_fold(
        self,
        queries: Sequence[str],
        docs: Sequence[str],
        fn: Callable[[Scorer, list[str], list[str]], np.ndarray],
    ) -> np.ndarray:
        route = self._route(queries)
        out: np.ndarray | None = None
        for fold in np.unique(route):
            idx = np.flatnonzero(route == fold)
            part = fn(self.model(int(fold)), [queries[i] for i in idx], [docs[i] for i in idx])
            if out is None:
                out = np.zeros((len(queries), *part.shape[1:]), dtype=part.dtype)
            out[idx] = part
        return out if out is not None else np.zeros(0)

    def __getattr__(self, name: str) -> Any:
        # text_fields, text_builder, tokenizer, levels, gains: the shared recipe of the fold models.
        if name.startswith("_") or name in ("folds", "name"):
            raise AttributeError(name)
        return getattr(self.model(min(self._models)), name)
