"""Embedding store (doc id + content hash + model id + vector), incremental embedding, FAISS index."""

from __future__ import annotations

from distilrel.index.embed import (
    DocEncoder,
    EmbedReport,
    embed_catalog,
    embed_incremental,
    student_ids,
    tower_id,
)
from distilrel.index.faiss_index import IndexConfig, VectorIndex, build_index
from distilrel.index.store import EmbeddingRows, EmbeddingStore, StoreConfig, StoreError, StoreSnapshot

__all__ = [
    "DocEncoder",
    "EmbedReport",
    "EmbeddingRows",
    "EmbeddingStore",
    "IndexConfig",
    "StoreConfig",
    "StoreError",
    "StoreSnapshot",
    "VectorIndex",
    "build_index",
    "embed_catalog",
    "embed_incremental",
    "student_ids",
    "tower_id",
]
