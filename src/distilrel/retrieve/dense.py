"""Zero-shot bi-encoder: a sentence-transformers model scores a pair by the cosine of its embeddings.

Documents are encoded once per distinct text and cached, because a judged "rerank" set shows the same
product to many queries; queries are encoded once per distinct text within a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilrel.evaluate.scorer import Scorer
from distilrel.weights import KNOWN_MODELS, canonical_id, model_prefixes, resolve_model

# Queries per matrix product in search: bounds the (queries, corpus) score block held in memory.
_SEARCH_QUERY_BLOCK = 256


class BiEncoderScorer(Scorer):
    """Cosine similarity of L2-normalised sentence embeddings, with the model's query/doc prefixes.

    ``model`` is anything :func:`distilrel.weights.resolve_model` takes: an alias (``minilm``, ``mpnet``,
    ``e5``), a Hugging Face id or a local sentence-transformers folder. Prefixes default to the model's
    own (``"query: "``/``"passage: "`` for E5); pass ``""`` to switch them off.
    """

    def __init__(
        self,
        model: str = "minilm",
        *,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
        query_prefix: str | None = None,
        doc_prefix: str | None = None,
        name: str | None = None,
        progress: bool = False,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.progress = progress
        path = resolve_model(model)
        self.model: Any = SentenceTransformer(str(path), device=device)
        if max_length is not None:
            self.model.max_seq_length = max_length
        # The folder's own prompts first (a hub snapshot folder is named by a hash), then the name.
        default_q, default_d = model_prefixes(path)
        if (default_q, default_d) == ("", ""):
            default_q, default_d = model_prefixes(model)
        self.query_prefix = default_q if query_prefix is None else query_prefix
        self.doc_prefix = default_d if doc_prefix is None else doc_prefix
        self.batch_size = batch_size
        self.name = name or _display_name(model)
        self._doc_cache: dict[str, np.ndarray] = {}  # doc text -> (dim,) normalised embedding
        self.docs_encoded = 0  # texts sent through the model so far (cache misses), for stats and tests
        self._index_ids: list[str] = []
        self._index_emb: np.ndarray | None = None  # (n_docs, dim)

    @property
    def dim(self) -> int:
        # sentence-transformers 6 renamed the method; 5.x only has the old name.
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    # --- encoding -----------------------------------------------------------------------------------

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """(n, dim) normalised query embeddings; repeated queries are encoded once."""
        unique = list(dict.fromkeys(queries))
        emb = self._encode([self.query_prefix + q for q in unique])  # (n_unique, dim)
        row = {q: i for i, q in enumerate(unique)}
        return emb[[row[q] for q in queries]] if queries else emb

    def encode_docs(self, docs: Sequence[str]) -> np.ndarray:
        """(n, dim) normalised document embeddings, from the cache where the text was seen before."""
        missing = [d for d in dict.fromkeys(docs) if d not in self._doc_cache]
        if missing:
            emb = self._encode([self.doc_prefix + d for d in missing])  # (n_missing, dim)
            self._doc_cache.update(zip(missing, emb, strict=True))
            self.docs_encoded += len(missing)
        if not docs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._doc_cache[d] for d in docs])

    def clear_cache(self) -> None:
        self._doc_cache.clear()

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            # A bar only where encoding takes a while (a corpus, a dataset's candidates), not per query batch.
            show_progress_bar=self.progress and len(texts) >= 512,
        )
        return np.asarray(emb, dtype=np.float32)

    # --- Scorer -------------------------------------------------------------------------------------

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if len(queries) != len(docs):
            raise ValueError(f"score: {len(queries)} queries but {len(docs)} docs; pairs must align")
        q = self.encode_queries(queries)  # (n, dim)
        d = self.encode_docs(docs)  # (n, dim)
        return np.einsum("nd,nd->n", q, d).astype(np.float64)  # cosine, as both are unit length

    # --- Retriever ----------------------------------------------------------------------------------

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        if len(doc_ids) != len(texts):
            raise ValueError(f"index: {len(doc_ids)} doc ids but {len(texts)} texts")
        seen: set[str] = set()
        for i, doc_id in enumerate(doc_ids):
            if doc_id in seen:
                raise ValueError(f"index: duplicate doc id {doc_id!r} (row {i})")
            seen.add(doc_id)
        self._index_ids = list(doc_ids)
        self._index_emb = self.encode_docs(texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Exact inner-product search over the indexed documents (FAISS can replace this at scale)."""
        if k < 1:
            raise ValueError(f"search: k must be >= 1, got {k}")
        if self._index_emb is None:
            raise RuntimeError("BiEncoderScorer.search: call index() with the corpus first")
        k = min(k, len(self._index_ids))
        q = self.encode_queries(queries)  # (n_queries, dim)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), _SEARCH_QUERY_BLOCK):
            block = q[start : start + _SEARCH_QUERY_BLOCK] @ self._index_emb.T  # (block, n_docs)
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]  # (block, k), unordered
            for scores, cand in zip(block, top, strict=True):
                cand = cand[np.lexsort((cand, -scores[cand]))]  # best first; ties by corpus order
                results.append([(self._index_ids[i], float(scores[i])) for i in cand])
        return results


def _display_name(model: str) -> str:
    """Short name for tables: the alias for known models, else the last path component."""
    hf_id = canonical_id(model)
    if hf_id is not None:
        return KNOWN_MODELS[hf_id].alias
    return Path(model.rstrip("/")).name or model
