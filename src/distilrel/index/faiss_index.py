"""FAISS index over the store's document vectors, in process, with its doc-id mapping.

Vectors are unit length, so every index uses inner product (= cosine). Kinds:

* ``flat``  — exact search; the right choice for small catalogs (a 50k x 384 scan takes milliseconds);
* ``hnsw``  — graph search (``IndexHNSWFlat``): high recall, no training, more memory;
* ``ivfpq`` — inverted lists + product quantisation: compact, needs training on the vectors;
* ``auto``  — ``flat`` up to ``exact_max`` vectors, ``hnsw`` above.

Saved layout (a folder, swapped into place whole)::

    index/
      index.faiss      faiss.write_index
      doc_ids.parquet  one column doc_id: row i of the index is doc_ids[i]
      index.json       kind and parameters, model id, and the store generation it was built from
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from distilrel.io import atomic_dir

if TYPE_CHECKING:
    import faiss

    from distilrel.index.store import StoreSnapshot

IndexKind = Literal["auto", "flat", "hnsw", "ivfpq"]
INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")
INDEX_FILE = "index.faiss"
IDS_FILE = "doc_ids.parquet"
META_FILE = "index.json"


@dataclass(frozen=True)
class IndexConfig:
    kind: IndexKind = "auto"
    exact_max: int = 100_000  # auto: exact search up to this many vectors
    hnsw_m: int = 32  # graph degree
    ef_construction: int = 200
    ef_search: int = 128  # search beam; >= k, higher = better recall
    nlist: int | None = None  # IVF lists; None: 4 * sqrt(n), at most n / 39 (faiss's points-per-centroid)
    pq_m: int | None = None  # PQ sub-vectors; None: dim / 8 (8 dims per byte), must divide dim
    pq_bits: int = 8
    nprobe: int = 16  # IVF lists visited per query
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"IndexConfig.kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for name in ("exact_max", "hnsw_m", "ef_construction", "ef_search", "pq_bits", "nprobe"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexConfig.{name} must be >= 1, got {getattr(self, name)}")

    def resolved(self, n: int, dim: int) -> IndexConfig:
        """The concrete kind and parameters for ``n`` vectors of ``dim`` (raises on impossible ones)."""
        kind: IndexKind = self.kind
        if kind == "auto":
            kind = "flat" if n <= self.exact_max else "hnsw"
        if kind != "ivfpq":
            return replace(self, kind=kind)
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        pq_m = self.pq_m or max(1, dim // 8)
        if dim % pq_m:
            raise ValueError(f"IVF-PQ: pq_m={pq_m} must divide the vector dim {dim}")
        need = max(nlist, 2**self.pq_bits)
        if n < need:
            raise ValueError(
                f"IVF-PQ with nlist={nlist} and {self.pq_bits}-bit codes needs at least {need} vectors to "
                f"train, the store has {n}: use kind 'flat' or 'hnsw' for a catalog this small"
            )
        return replace(self, kind="ivfpq", nlist=nlist, pq_m=pq_m)


class VectorIndex:
    """A FAISS index and the doc ids of its rows. ``search`` returns doc ids and cosine scores."""

    def __init__(
        self, index: faiss.Index, doc_ids: list[str], config: IndexConfig, model_id: str, generation: int
    ) -> None:
        if index.ntotal != len(doc_ids):
            raise ValueError(
                f"VectorIndex: the index holds {index.ntotal} vectors but {len(doc_ids)} doc ids"
            )
        self.index = index
        self.doc_ids = doc_ids
        self.config = config
        self.model_id = model_id
        self.generation = generation
        self._apply_search_params()

    def __len__(self) -> int:
        return len(self.doc_ids)

    @property
    def kind(self) -> str:
        return self.config.kind

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        doc_ids: list[str],
        config: IndexConfig | None = None,
        model_id: str = "",
        generation: int = 0,
    ) -> VectorIndex:
        """Index ``vectors`` (n, dim), row i being ``doc_ids[i]``."""
        import faiss

        x = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, dim)
        if x.ndim != 2 or x.shape[0] != len(doc_ids):
            raise ValueError(f"VectorIndex.build: vectors {x.shape} for {len(doc_ids)} doc ids")
        if not len(doc_ids):
            raise ValueError("VectorIndex.build: no vectors to index (is the store empty?)")
        n, dim = x.shape
        cfg = (config or IndexConfig()).resolved(n, dim)
        if cfg.kind == "flat":
            index: faiss.Index = faiss.IndexFlatIP(dim)
        elif cfg.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.ef_construction
        else:
            assert cfg.nlist is not None and cfg.pq_m is not None
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(
                quantizer, dim, cfg.nlist, cfg.pq_m, cfg.pq_bits, faiss.METRIC_INNER_PRODUCT
            )
            index.cp.seed = cfg.seed
            index.train(x)  # faiss's Python wrapper keeps the quantizer alive with the index
        index.add(x)
        return cls(index, list(doc_ids), cfg, model_id, generation)

    @classmethod
    def from_store(cls, snapshot: StoreSnapshot, config: IndexConfig | None = None) -> VectorIndex:
        return cls.build(
            snapshot.vectors, list(snapshot.doc_ids), config, snapshot.model_id, snapshot.generation
        )

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per query row of ``queries`` (m, dim): up to k (doc_id, cosine) pairs, best first."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)  # (m, dim)
        k = min(k, len(self.doc_ids))
        if k < 1:
            return [[] for _ in range(q.shape[0])]
        scores, rows = self.index.search(q, k)  # (m, k) each; row -1 where fewer than k were found
        return [
            [(self.doc_ids[r], float(s)) for r, s in zip(row, score, strict=True) if r >= 0]
            for row, score in zip(rows, scores, strict=True)
        ]

    def _apply_search_params(self) -> None:
        import faiss

        if self.config.kind == "hnsw":
            self.index.hnsw.efSearch = self.config.ef_search
        elif self.config.kind == "ivfpq":
            faiss.extract_index_ivf(self.index).nprobe = self.config.nprobe

    # --- persistence -----------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the folder layout of the module docstring, replacing ``folder`` in one rename."""
        import faiss

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            pd.DataFrame({"doc_id": self.doc_ids}).to_parquet(tmp / IDS_FILE, index=False)
            meta = {
                "config": asdict(self.config),
                "model_id": self.model_id,
                "store_generation": self.generation,
                "count": len(self.doc_ids),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VectorIndex:
        import faiss

        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a distilrel index ({META_FILE} missing): `distilrel index build`"
            )
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / INDEX_FILE))
        doc_ids = pd.read_parquet(folder / IDS_FILE)["doc_id"].astype(str).tolist()
        return cls(
            index, doc_ids, IndexConfig(**meta["config"]), meta["model_id"], int(meta["store_generation"])
        )


def build_index(store_dir: str | Path, out: str | Path, config: IndexConfig | None = None) -> VectorIndex:
    """``distilrel index build``: index the store's current generation and save it to ``out``."""
    from distilrel.index.store import EmbeddingStore

    index = VectorIndex.from_store(EmbeddingStore(store_dir).load(with_text=False), config)
    index.save(out)
    return index
