"""The random baseline: a score that depends only on (seed, query, document text).

Hash-seeded rather than drawn from one generator, so a pair gets the same score whatever order,
batch or process it is scored in, and two runs of an evaluation agree exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from distilrel.evaluate.scorer import Scorer

_UNIT = float(2**64)


class RandomScorer(Scorer):
    """Uniform scores in [0, 1), deterministic per (seed, query, doc text)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if len(queries) != len(docs):
            raise ValueError(f"score: {len(queries)} queries but {len(docs)} docs; pairs must align")
        return np.array([self._one(q, d) for q, d in zip(queries, docs, strict=True)], dtype=np.float64)

    def _one(self, query: str, doc: str) -> float:
        # Length-prefixed fields, so ("ab", "c") and ("a", "bc") hash differently.
        h = hashlib.blake2b(digest_size=8, person=b"distilrel-rand")
        for part in (str(self.seed), query, doc):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return int.from_bytes(h.digest(), "little") / _UNIT
