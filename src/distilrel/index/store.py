"""Embedding store: one row per document — doc id, content hash of the built text, model id, text, vector.

Layout (a folder; every file but the manifest is immutable once written)::

    store/
      manifest.json          model id, dim, generation, the shard list with each shard's deleted rows
      shards/part-*.parquet  doc_id, content_hash, model_id, text, vector (fixed-size list of float32)
      .lock                  held (flock) by the one writer

An update never rewrites what it does not touch: new and changed documents go into a new shard, and the
old rows they replace (and deleted documents) are only listed in the manifest as deleted rows of their
shard — the deletion-vector design of Lance and Delta Lake. A shard is rewritten (compacted) only when
more than ``compact_dead_fraction`` of it is dead, and all shards are merged when there are more than
``max_shards``. So an update costs O(changed rows), not O(catalog).

Atomicity: shards are written under fresh names, then ``manifest.json`` is replaced in one rename; files
no manifest names any more are deleted after that. An interrupted update leaves the previous manifest,
which names only complete shards. ``generation`` grows by one per update: an ANN index records the
generation it was built from, so a stale index is detected.
"""

from __future__ import annotations

import fcntl
import json
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distilrel.io import atomic_path, write_json

FORMAT = "distilrel-embedding-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
KEY_COLUMNS = ("doc_id", "content_hash", "model_id")


class StoreError(ValueError):
    """A store that cannot be read or written as asked. The message names the folder and the problem."""


@dataclass(frozen=True)
class StoreConfig:
    """How updates lay out shards (reading needs none of it)."""

    shard_rows: int = 65_536  # rows per shard written by one update (a big first run gives several)
    compact_dead_fraction: float = 0.25  # a shard with more dead rows than this is rewritten
    max_shards: int = 64  # above this, every shard is merged into full ones

    def __post_init__(self) -> None:
        if self.shard_rows < 1 or self.max_shards < 1:
            raise ValueError(f"StoreConfig: shard_rows and max_shards must be >= 1, got {self}")
        if not 0.0 < self.compact_dead_fraction <= 1.0:
            raise ValueError(
                f"StoreConfig.compact_dead_fraction must be in (0, 1], got {self.compact_dead_fraction}"
            )


@dataclass(frozen=True)
class ShardEntry:
    file: str  # relative to the store folder
    rows: int  # rows in the file
    deleted: tuple[int, ...] = ()  # row numbers (0-based, sorted) no longer live

    @property
    def live(self) -> int:
        return self.rows - len(self.deleted)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "deleted": list(self.deleted)}


@dataclass(frozen=True)
class Manifest:
    model_id: str
    dim: int
    generation: int
    shards: tuple[ShardEntry, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def rows(self) -> int:
        return sum(s.live for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "generation": self.generation,
            "rows": self.rows,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "meta": self.meta,
            "shards": [s.to_dict() for s in self.shards],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> Manifest:
        if raw.get("format") != FORMAT:
            raise StoreError(f"{where}: not an embedding store manifest (format {raw.get('format')!r})")
        if int(raw.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(f"{where}: format_version {raw['format_version']} is newer than this code reads")
        shards = tuple(
            ShardEntry(s["file"], int(s["rows"]), tuple(int(i) for i in s.get("deleted", ())))
            for s in raw["shards"]
        )
        return cls(str(raw["model_id"]), int(raw["dim"]), int(raw["generation"]), shards, raw.get("meta", {}))


@dataclass(frozen=True)
class EmbeddingRows:
    """Rows to write: parallel doc ids, content hashes, texts and an (n, dim) float32 matrix."""

    doc_ids: Sequence[str]
    content_hashes: Sequence[str]
    texts: Sequence[str | None]
    vectors: np.ndarray  # (n, dim)

    def __post_init__(self) -> None:
        n = len(self.doc_ids)
        if not (len(self.content_hashes) == len(self.texts) == n and self.vectors.ndim == 2):
            raise ValueError(
                f"EmbeddingRows: {n} doc ids, {len(self.content_hashes)} hashes, {len(self.texts)} texts and "
                f"vectors of shape {self.vectors.shape} do not line up"
            )
        if self.vectors.shape[0] != n:
            raise ValueError(f"EmbeddingRows: {n} doc ids but {self.vectors.shape[0]} vectors")

    def __len__(self) -> int:
        return len(self.doc_ids)


@dataclass(frozen=True)
class StoreSnapshot:
    """The live rows of one generation, in memory: what the serving engine and the index builder read."""

    model_id: str
    dim: int
    generation: int
    doc_ids: tuple[str, ...]
    content_hashes: tuple[str, ...]
    texts: tuple[str | None, ...]
    vectors: np.ndarray  # (n, dim) float32, row i is doc_ids[i]
    row_of: dict[str, int] = field(init=False, repr=False, compare=False)
    row_of_hash: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "row_of", {d: i for i, d in enumerate(self.doc_ids)})
        # Several documents may share one text (hence one hash); any of their rows has the same vector.
        object.__setattr__(self, "row_of_hash", {h: i for i, h in enumerate(self.content_hashes)})

    def __len__(self) -> int:
        return len(self.doc_ids)


class EmbeddingStore:
    """The store folder at ``root``. Reading: :meth:`manifest`, :meth:`keys`, :meth:`load`.
    Writing: :meth:`update` (one writer at a time, enforced by a lock file)."""

    def __init__(self, root: str | Path, config: StoreConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or StoreConfig()

    def exists(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def manifest(self) -> Manifest:
        path = self.root / MANIFEST
        if not path.is_file():
            raise StoreError(
                f"{self.root} is not an embedding store ({MANIFEST} missing): "
                "create it with `distilrel embed`"
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise StoreError(f"{path}: not valid JSON: {e}") from e
        return Manifest.from_dict(raw, str(path))

    # --- reading ---------------------------------------------------------------------------------------

    def keys(self) -> pd.DataFrame:
        """Live rows without vectors or texts: doc_id, content_hash, model_id (what an update diffs)."""
        if not self.exists():
            return pd.DataFrame({c: pd.Series(dtype=str) for c in KEY_COLUMNS})
        frames = [
            self._read_live(entry, KEY_COLUMNS).to_pandas() for entry in self.manifest().shards if entry.live
        ]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=str) for c in KEY_COLUMNS})
        return pd.concat(frames, ignore_index=True)

    def load(self, with_text: bool = True) -> StoreSnapshot:
        """Every live row of the current generation, vectors as one (n, dim) matrix."""
        manifest = self.manifest()
        columns = (*KEY_COLUMNS, "text", "vector") if with_text else (*KEY_COLUMNS, "vector")
        tables = [self._read_live(e, columns) for e in manifest.shards if e.live]
        if not tables:
            return StoreSnapshot(
                manifest.model_id, manifest.dim, manifest.generation, (), (), (), _empty(manifest)
            )
        table = pa.concat_tables(tables)
        vectors = _vectors(table.column("vector"), manifest.dim)
        texts = table.column("text").to_pylist() if with_text else [None] * table.num_rows
        return StoreSnapshot(
            model_id=manifest.model_id,
            dim=manifest.dim,
            generation=manifest.generation,
            doc_ids=tuple(table.column("doc_id").to_pylist()),
            content_hashes=tuple(table.column("content_hash").to_pylist()),
            texts=tuple(texts),
            vectors=vectors,
        )

    def _read_live(self, entry: ShardEntry, columns: Sequence[str]) -> pa.Table:
        path = self.root / entry.file
        if not path.is_file():
            raise StoreError(f"{self.root}: shard {entry.file} named in {MANIFEST} is missing")
        table = pq.read_table(path, columns=list(columns))
        if table.num_rows != entry.rows:
            raise StoreError(f"{path}: {table.num_rows} rows, the manifest says {entry.rows}")
        if not entry.deleted:
            return table
        keep = np.ones(entry.rows, dtype=bool)
        keep[list(entry.deleted)] = False
        return table.filter(pa.array(keep))

    # --- writing ---------------------------------------------------------------------------------------

    def update(
        self,
        model_id: str,
        upserts: EmbeddingRows,
        deletes: Collection[str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Insert or replace the ``upserts`` rows and drop the ``deletes`` doc ids, in one new generation.

        A ``model_id`` other than the store's starts over: every old row is dropped (vectors of two models
        never mix), so the caller passes the whole catalog then.
        """
        ids = list(upserts.doc_ids)
        if len(set(ids)) != len(ids):
            dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
            raise ValueError(f"{self.root}: update repeats doc id {dup!r}")
        overlap = set(ids) & set(deletes)
        if overlap:
            raise ValueError(f"{self.root}: doc ids both upserted and deleted: {sorted(overlap)[:5]}")
        with self._lock():
            old = self.manifest() if self.exists() else None
            dim = upserts.vectors.shape[1] if len(upserts) else (old.dim if old else 0)
            same_model = old is not None and old.model_id == model_id
            if same_model and old is not None and len(upserts) and dim != old.dim:
                raise StoreError(f"{self.root}: vectors of dim {dim} for a store of dim {old.dim}")
            shards = list(old.shards) if same_model and old is not None else []
            if not same_model and not len(upserts) and old is not None and old.rows:
                raise StoreError(
                    f"{self.root}: model id {model_id!r} differs from the store's {old.model_id!r} but no "
                    "rows were given: re-embed the whole catalog"
                )
            shards = self._mark_deleted(shards, set(ids) | set(deletes))
            shards = self._compact(shards) + self._write_rows(upserts, model_id)
            if len(shards) > self.config.max_shards:
                shards = self._merge_all(shards)
            manifest = Manifest(
                model_id=model_id,
                dim=int(dim),
                generation=(old.generation + 1) if old else 1,
                shards=tuple(shards),
                meta=dict(meta or {}),
            )
            write_json(self.root / MANIFEST, manifest.to_dict())
            self._remove_unreferenced(manifest)
        return manifest

    def _mark_deleted(self, shards: list[ShardEntry], doc_ids: set[str]) -> list[ShardEntry]:
        if not doc_ids:
            return shards
        out = []
        wanted = pa.array(sorted(doc_ids), pa.string())
        for entry in shards:
            ids = pq.read_table(self.root / entry.file, columns=["doc_id"]).column("doc_id")
            hit = np.flatnonzero(pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False))
            dead = sorted(set(entry.deleted) | {int(i) for i in hit})
            out.append(ShardEntry(entry.file, entry.rows, tuple(dead)))
        return out

    def _compact(self, shards: list[ShardEntry]) -> list[ShardEntry]:
        out: list[ShardEntry] = []
        for entry in shards:
            if entry.live == 0:
                continue
            if len(entry.deleted) > self.config.compact_dead_fraction * entry.rows:
                out.extend(self._write_table(self._read_live(entry, (*KEY_COLUMNS, "text", "vector"))))
            else:
                out.append(entry)
        return out

    def _merge_all(self, shards: list[ShardEntry]) -> list[ShardEntry]:
        tables = [self._read_live(e, (*KEY_COLUMNS, "text", "vector")) for e in shards if e.live]
        return self._write_table(pa.concat_tables(tables)) if tables else []

    def _write_rows(self, rows: EmbeddingRows, model_id: str) -> list[ShardEntry]:
        if not len(rows):
            return []
        vectors = np.ascontiguousarray(rows.vectors, dtype=np.float32)
        dim = vectors.shape[1]
        table = pa.table(
            {
                "doc_id": pa.array(list(rows.doc_ids), pa.string()),
                "content_hash": pa.array(list(rows.content_hashes), pa.string()),
                "model_id": pa.array([model_id] * len(rows), pa.string()),
                "text": pa.array(list(rows.texts), pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            }
        )
        return self._write_table(table)

    def _write_table(self, table: pa.Table) -> list[ShardEntry]:
        (self.root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        out = []
        for start in range(0, table.num_rows, self.config.shard_rows):
            part = table.slice(start, self.config.shard_rows)
            name = f"{SHARD_DIR}/part-{uuid.uuid4().hex[:16]}.parquet"
            with atomic_path(self.root / name, suffix=".parquet") as tmp:
                # Vectors barely compress; zstd still shrinks ids, hashes and texts.
                pq.write_table(part, tmp, compression="zstd")
            out.append(ShardEntry(name, part.num_rows))
        return out

    def _remove_unreferenced(self, manifest: Manifest) -> None:
        keep = {self.root / s.file for s in manifest.shards}
        for path in (self.root / SHARD_DIR).glob("part-*.parquet"):
            if path not in keep:
                path.unlink(missing_ok=True)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.root}: another process is updating this store") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _vectors(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    flat = (
        pa.concat_arrays([chunk.flatten() for chunk in column.chunks]) if column.num_chunks else pa.array([])
    )
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)  # (n, dim)


def _empty(manifest: Manifest) -> np.ndarray:
    return np.zeros((0, manifest.dim), dtype=np.float32)
