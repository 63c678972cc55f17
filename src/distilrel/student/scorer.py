"""The student as a :class:`~distilrel.evaluate.scorer.Scorer`, with document embeddings cached by text.

Re-ranking scores the same documents again and again (a document is a candidate of many queries, and
``predict_levels`` follows ``score`` on the same pairs), so each distinct text is encoded once; afterwards
only the head runs, on cached embeddings — what the serving layer does with its embedding store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilrel.data.levels import LevelMapping
from distilrel.evaluate.scorer import Scorer
from distilrel.student.model import StudentModel, load_student


class EmbeddingCache:
    """text → embedding, least recently used evicted beyond ``max_items`` (None: unbounded)."""

    def __init__(self, max_items: int | None = None) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def missing(self, texts: Sequence[str]) -> list[str]:
        return [t for t in dict.fromkeys(texts) if t not in self._items]

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for t, v in zip(texts, vectors, strict=True):
            self._items[t] = v
            self._items.move_to_end(t)
        if self.max_items is not None:
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        # (n, dim); callers fill the cache first (and keep max_items above one call's distinct texts)
        for t in dict.fromkeys(texts):
            self._items.move_to_end(t)
        return np.stack([self._items[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)


class StudentScorer(Scorer):
    """Scores (query, document text) pairs with a :class:`StudentModel`.

    ``score`` follows the model's ``score_mode`` (expected gain from the head, or cosine);
    ``predict_levels`` gives the head's (n, K) distribution. Document embeddings are cached by text
    (``max_cached_docs`` bounds the cache; None keeps all), query embeddings per call.
    """

    def __init__(
        self,
        model: StudentModel,
        batch_size: int = 128,
        max_cached_docs: int | None = None,
        name: str = "student",
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.name = name
        self.doc_cache = EmbeddingCache(max_cached_docs)

    @property
    def predicts_levels(self) -> bool:
        return True

    @property
    def levels(self) -> LevelMapping:
        return self.model.levels

    @property
    def tokenizer(self) -> Any:
        """The document tower's tokenizer: text builders use it to apply token budgets."""
        return self.model.tokenizer

    @property
    def text_fields(self) -> tuple[dict[str, Any], ...]:
        """The document text recipe the student was trained with (as the teacher's scorer has it)."""
        return self.model.settings.fields

    def text_builder(self) -> Any:
        """The TextBuilder of training (same fields, labels, token budgets and tokenizer)."""
        from distilrel.text.builder import FieldSpec, TextBuilder

        if not self.text_fields:
            raise ValueError(f"{self.name}: the saved student records no text fields")
        return TextBuilder([FieldSpec(**f) for f in self.text_fields], tokenizer=self.tokenizer)

    def embed_pairs(self, queries: Sequence[str], docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) query and document embeddings of the pairs; each distinct text encoded at most once."""
        if len(queries) != len(docs):
            raise ValueError(f"{self.name}: {len(queries)} queries but {len(docs)} documents")
        new_docs = self.doc_cache.missing(docs)
        if new_docs:
            self.doc_cache.put(new_docs, self.model.encode_docs(new_docs, self.batch_size))
        distinct = list(dict.fromkeys(queries))
        q_vecs = self.model.encode_queries(distinct, self.batch_size)  # (n_distinct, dim)
        row = {q: i for i, q in enumerate(distinct)}
        return q_vecs[[row[q] for q in queries]], self.doc_cache.get(list(docs))

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if not len(queries):
            return np.zeros(0, dtype=np.float64)
        q, d = self.embed_pairs(queries, docs)
        return self._batched(q, d, self.model.score).astype(np.float64)

    def predict_levels(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if not len(queries):
            return np.zeros((0, self.model.levels.k), dtype=np.float64)
        q, d = self.embed_pairs(queries, docs)
        return self._batched(q, d, self.model.predict_levels).astype(np.float64)

    def _batched(self, q: np.ndarray, d: np.ndarray, fn: Any) -> np.ndarray:
        # The head is cheap, but the (n, 4*dim) features of a whole split need not sit in memory at once.
        step = max(self.batch_size, 1) * 32
        return np.concatenate([fn(q[i : i + step], d[i : i + step]) for i in range(0, len(q), step)])


def load_student_scorer(path: str | Path, device: str | None = None, **kwargs: Any) -> StudentScorer:
    """A :class:`StudentScorer` over the student saved in ``path`` (a folder whose distilrel.json kind is
    ``student``); ``kwargs`` go to :class:`StudentScorer`."""
    path = Path(path)
    kwargs.setdefault("name", f"student:{path.parent.name if path.name == 'model' else path.name}")
    return StudentScorer(load_student(path, device=device), **kwargs)
