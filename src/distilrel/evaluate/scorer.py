"""The one contract every ranker meets, so ``evaluate`` can rank with BM25, a zero-shot encoder,
a teacher or a student alike.

A :class:`Scorer` scores (query, document text) pairs; higher is more relevant. Scorers that
predict a distribution over relevance levels (teacher, student) also implement
:meth:`Scorer.predict_levels`. Scorers that can search a whole corpus by themselves (BM25, bi-encoders)
also implement :class:`Retriever`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


class Scorer(ABC):
    """Scores pairs. ``queries[i]`` goes with ``docs[i]``; returns one float per pair, shape ``(n,)``."""

    name: str = "scorer"

    def fit_corpus(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:  # noqa: B027 — optional hook
        """Called once with the whole corpus before scoring (BM25 takes its IDF from it). Default: nothing."""

    @abstractmethod
    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """(n,) relevance scores for the n pairs."""

    @property
    def predicts_levels(self) -> bool:
        return False

    def predict_levels(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """(n, K) probabilities over relevance levels, most relevant level first."""
        raise NotImplementedError(f"{type(self).__name__} does not predict relevance levels")


@runtime_checkable
class Retriever(Protocol):
    """First-stage retrieval over a corpus: ``index`` once, then ``search`` many queries."""

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None: ...

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Per query, up to k (doc_id, score) pairs, best first."""
        ...
