"""First-stage retrieval and zero-shot baselines: BM25, a sentence-transformers bi-encoder, random.

Each is a :class:`~distilrel.evaluate.scorer.Scorer`; BM25 and the bi-encoder are also
:class:`~distilrel.evaluate.scorer.Retriever`s. Heavy libraries load when a scorer is built, not here.
"""

from __future__ import annotations

from distilrel.evaluate.scorer import Retriever, Scorer
from distilrel.retrieve.bm25 import BM25Config, BM25Scorer, tokenize
from distilrel.retrieve.dense import BiEncoderScorer
from distilrel.retrieve.random import RandomScorer

__all__ = ["BM25Config", "BM25Scorer", "BiEncoderScorer", "RandomScorer", "Retriever", "Scorer", "tokenize"]
