from __future__ import annotations

from distilrel.evaluate.scorer import Retriever, Scorer

__all__ = ["Retriever", "Scorer"]
