"""Incremental document embedding: embed only new or changed documents, drop deleted ones.

A document needs (re-)embedding when its doc id is new, when the content hash of its built text changed,
or when the store was embedded by another model. The model id is a fingerprint of the saved document
tower folder (weights, tokenizer, prompt and max length all live there), so retraining only the head
keeps every stored vector valid, and any change to the tower invalidates all of them.

The encoder runs in process, or on a Ray cluster (``ray_address``; :mod:`distilrel.index.ray_backend`)
for big catalogs; either way the store is updated by this process in one atomic step.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilrel.data.schema import DataError
from distilrel.index.store import EmbeddingRows, EmbeddingStore
from distilrel.text.builder import content_hash

Encode = Callable[[list[str]], np.ndarray]  # texts -> (n, dim) float32 unit vectors


@dataclass(frozen=True)
class EmbedReport:
    """What one ``distilrel embed`` run did."""

    total: int  # documents in the catalog
    new: int
    changed: int  # same doc id, other text (or another model)
    unchanged: int
    deleted: int  # in the store, gone from the catalog
    embedded: int  # new + changed
    seconds: float
    model_id: str
    generation: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DocEncoder:
    """A picklable recipe for a student's document encoder (Ray actors call :meth:`load` once each)."""

    student_dir: str
    device: str | None = None
    batch_size: int = 64

    def load(self) -> Encode:
        from distilrel.student.model import load_student

        model = load_student(self.student_dir, device=self.device)
        return lambda texts: model.encode_docs(texts, batch_size=self.batch_size)


@dataclass(frozen=True)
class EmbedPlan:
    new: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: int
    deleted: tuple[str, ...]


def plan_update(
    stored: pd.DataFrame, doc_ids: Sequence[str], hashes: Sequence[str], model_id: str
) -> EmbedPlan:
    """Compare the catalog with the store's keys (doc_id, content_hash, model_id)."""
    current = pd.DataFrame({"doc_id": list(doc_ids), "content_hash": list(hashes)})
    merged = current.merge(stored, on="doc_id", how="left", suffixes=("", "_stored"), validate="one_to_one")
    in_store = merged["content_hash_stored"].notna()
    same = (
        in_store
        & (merged["content_hash"] == merged["content_hash_stored"])
        & (merged["model_id"] == model_id)
    )
    deleted = sorted(set(stored["doc_id"]) - set(current["doc_id"]))
    return EmbedPlan(
        new=tuple(merged.loc[~in_store, "doc_id"]),
        changed=tuple(merged.loc[in_store & ~same, "doc_id"]),
        unchanged=int(same.sum()),
        deleted=tuple(deleted),
    )


def embed_incremental(
    store: EmbeddingStore,
    doc_ids: Sequence[str],
    texts: Sequence[str],
    encode: Encode,
    model_id: str,
    meta: dict[str, Any] | None = None,
) -> EmbedReport:
    """Bring ``store`` up to date with the catalog ``(doc_ids, texts)``: encode only what changed.

    ``encode`` is called once, on the texts to embed, and not at all when nothing changed (so a caller
    can load the model lazily). The store's new generation is written atomically.
    """
    start = time.perf_counter()
    doc_ids = [str(d) for d in doc_ids]
    if len(doc_ids) != len(texts):
        raise ValueError(f"embed: {len(doc_ids)} doc ids but {len(texts)} texts")
    seen: dict[str, int] = {}
    for row, doc_id in enumerate(doc_ids):
        if doc_id in seen:
            raise DataError(f"embed: doc id {doc_id!r} appears twice (rows {seen[doc_id] + 1} and {row + 1})")
        seen[doc_id] = row
    hashes = [content_hash(t) for t in texts]
    plan = plan_update(store.keys(), doc_ids, hashes, model_id)
    todo = [seen[d] for d in (*plan.new, *plan.changed)]
    if todo or plan.deleted or not store.exists():
        vectors = encode([texts[i] for i in todo]) if todo else np.zeros((0, 0), np.float32)  # (n, dim)
        if len(vectors) != len(todo):
            raise ValueError(f"embed: the encoder returned {len(vectors)} vectors for {len(todo)} texts")
        rows = EmbeddingRows(
            doc_ids=[doc_ids[i] for i in todo],
            content_hashes=[hashes[i] for i in todo],
            texts=[texts[i] for i in todo],
            vectors=vectors,
        )
        generation = store.update(model_id, rows, plan.deleted, meta=meta).generation
    else:
        generation = store.manifest().generation  # nothing to do: the store is left untouched
    return EmbedReport(
        total=len(doc_ids),
        new=len(plan.new),
        changed=len(plan.changed),
        unchanged=plan.unchanged,
        deleted=len(plan.deleted),
        embedded=len(todo),
        seconds=time.perf_counter() - start,
        model_id=model_id,
        generation=generation,
    )


def tower_id(folder: str | Path) -> str:
    """Content fingerprint of a saved tower folder: ``<folder name>:<16 hex digits>`` of the SHA-256 over
    every file's relative path and bytes (weights, tokenizer, prompts, max length)."""
    folder = Path(folder)
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved sentence-transformers tower (no modules.json)")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"{folder.parent.name}/{folder.name}:{digest.hexdigest()[:16]}"


def student_ids(student_dir: str | Path) -> tuple[str, str]:
    """(query tower id, document tower id) of a saved student folder."""
    from distilrel.student.model import DOC_DIR, QUERY_DIR, read_metadata

    student_dir = Path(student_dir)
    read_metadata(student_dir)  # raises when the folder is not a student
    return tower_id(student_dir / QUERY_DIR), tower_id(student_dir / DOC_DIR)


def embed_catalog(
    student_dir: str | Path,
    documents: pd.DataFrame,
    store_dir: str | Path,
    fields: Sequence[str | dict[str, Any]] | None = None,
    default_fields: Sequence[str] = (),
    device: str | None = None,
    batch_size: int = 64,
    log: Callable[[str], None] = lambda _: None,
    ray_address: str | None = None,
    num_actors: int = 1,
    chunk_size: int = 1024,
) -> EmbedReport:
    """``distilrel embed``: build each document's text as the student was trained to read it (its saved
    text fields, else ``fields``, else ``default_fields``), and update the store at ``store_dir``.

    The student is loaded only if some document needs embedding: in this process, or with
    ``ray_address`` once per actor of a pool of ``num_actors``, each embedding ``chunk_size`` texts a task.
    """
    from distilrel.student.model import read_metadata
    from distilrel.text.builder import TextBuilder

    student_dir = Path(student_dir)
    meta = read_metadata(student_dir)
    recipe = list(fields or meta.get("text", {}).get("fields") or default_fields)
    if not recipe:
        raise ValueError(f"{student_dir}: the student records no text fields; pass the fields to embed")
    if "doc_id" not in documents.columns:
        raise DataError(f"documents: no doc_id column; columns are {list(documents.columns)}")
    builder = TextBuilder.from_config(
        recipe, tokenizer=_tokenizer(student_dir) if _has_budget(recipe) else None
    )
    texts = builder.build_many(documents)
    _, doc_model = student_ids(student_dir)
    encoder = DocEncoder(str(student_dir.resolve()), device=device, batch_size=batch_size)

    def encode(batch: list[str]) -> np.ndarray:
        if ray_address:
            from distilrel.index.ray_backend import ray_encoder

            log(f"embedding {len(batch):,} documents with {doc_model} on Ray ({num_actors} actor(s))")
            return ray_encoder(encoder.load, ray_address, chunk_size=chunk_size, num_actors=num_actors)(batch)
        log(f"embedding {len(batch):,} documents with {doc_model}")
        return encoder.load()(batch)

    store_meta = {"student": str(student_dir), "fields": builder.to_config()}
    return embed_incremental(
        EmbeddingStore(store_dir),
        documents["doc_id"].astype(str).tolist(),
        texts,
        encode,
        doc_model,
        store_meta,
    )


def _has_budget(recipe: Sequence[str | dict[str, Any]]) -> bool:
    return any(isinstance(f, dict) and f.get("max_tokens") for f in recipe)


def _tokenizer(student_dir: Path) -> Any:
    # Token budgets count the document tower's tokens; its tokenizer loads in milliseconds, the model not.
    from transformers import AutoTokenizer

    from distilrel.student.model import DOC_DIR

    return AutoTokenizer.from_pretrained(str(student_dir / DOC_DIR))
