"""The zero-shot fusion baseline: per-query z-scores by hand, the registry name, BM25 + random fused."""

from __future__ import annotations

import numpy as np
import pytest

from distilrel.evaluate.scorers import load_scorer
from distilrel.retrieve.bm25 import BM25Scorer
from distilrel.retrieve.fusion import FusionScorer, zscore_by_query
from distilrel.retrieve.random import RandomScorer


def test_zscore_by_query_by_hand() -> None:
    got = zscore_by_query(["a", "b", "a", "a", "b", "c"], np.array([1.0, 5.0, 2.0, 3.0, 5.0, 7.0]))
    # a: (1, 2, 3) -> mean 2, population sd sqrt(2/3); b and c are constant -> 0.
    s = np.sqrt(2 / 3)
    np.testing.assert_allclose(got, [-1 / s, 0.0, 0.0, 1 / s, 0.0, 0.0])


def test_fusion_adds_the_parts_z_scores() -> None:
    docs = ["red shoe", "blue shoe lamp", "red lamp", "green desk"]
    queries = ["red shoe"] * 3 + ["desk"]
    bm25, rnd = BM25Scorer(), RandomScorer(seed=1)
    fusion = FusionScorer([bm25, rnd], weights=[2.0, 1.0])
    fusion.fit_corpus([str(i) for i in range(4)], docs)  # BM25 takes its IDF from the corpus
    want = 2 * zscore_by_query(queries, bm25.score(queries, docs[:3] + docs[3:]))
    want += zscore_by_query(queries, RandomScorer(seed=1).score(queries, docs))
    np.testing.assert_allclose(fusion.score(queries, docs), want)
    assert fusion.name == "fusion:bm25+random"


def test_fusion_by_name_and_its_errors() -> None:
    s = load_scorer("fusion:bm25+random")
    assert isinstance(s, FusionScorer) and [p.name for p in s.parts] == ["bm25", "random"]
    with pytest.raises(ValueError, match="two or more"):
        load_scorer("fusion:bm25")
    with pytest.raises(ValueError, match="non-negative weights"):
        FusionScorer([BM25Scorer(), RandomScorer()], weights=[1.0])
