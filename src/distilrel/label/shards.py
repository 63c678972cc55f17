"""Shard plan, manifest and shard files of a labelling run.

The pool is cut into fixed shards by row order. ``manifest.json`` records what the shards were computed
from — the pool's content hash, the hash of the document texts the teacher read, the teacher id, K, the
gains and the shard size — so a rerun over another pool or teacher cannot mix its outputs with the old
ones. Each shard is ``shard-00000.parquet``: the pool's rows plus ``probs`` (list<float32>, length K) and
``score`` (expected gain). A shard file only ever appears by an atomic rename, and a rerun trusts one
only after checking its row count, schema, keys and prob lengths, so a damaged file is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, Self, TypeVar

import numpy as np
import pandas as pd

from distilrel.io import atomic_path, write_json

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST = "manifest.json"
SHARD_GLOB = "shard-*.parquet"
# atomic_path names its temp files ".{target name}.XXXX{suffix}" beside the target.
TEMP_GLOB = ".shard-*.parquet.*"
#: Columns a rerun compares with the pool to make sure a shard holds the rows it should.
KEY_COLUMNS = ("dataset", "query_id", "doc_id")
PLAN_VERSION = 1


@dataclass(frozen=True)
class ShardPlan:
    """What a labelling run computes; two runs may share an output folder only if their plans match."""

    kind: ClassVar[str] = "labels"  # what the shards hold, for messages
    n_rows: int
    shard_size: int
    pool_hash: str
    text_hash: str
    teacher_id: str
    k: int
    gains: tuple[float, ...]
    columns: tuple[str, ...]  # the pool's columns, in order
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.k < 2 or len(self.gains) != self.k:
            raise ValueError(f"need K >= 2 levels and K gains, got K={self.k} and gains {list(self.gains)}")

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        """Row range [start, stop) of ``shard``."""
        if not 0 <= shard < self.n_shards:
            raise IndexError(f"shard {shard} outside 0..{self.n_shards - 1}")
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.n_rows)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["gains"], d["columns"] = list(self.gains), list(self.columns)
        d["n_shards"] = self.n_shards
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ShardPlan:
        d = {k: v for k, v in d.items() if k != "n_shards"}
        d["gains"] = tuple(float(g) for g in d["gains"])  # type: ignore[union-attr]
        d["columns"] = tuple(d["columns"])  # type: ignore[arg-type]
        return cls(**d)  # type: ignore[arg-type]

    def differences(self, other: ShardPlan) -> list[str]:
        """``key: old -> new`` for every field that differs (empty: the plans match)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


# --- hashing -------------------------------------------------------------------------------------


def frame_hash(df: pd.DataFrame) -> str:
    """SHA-256 of a table's column names and cell values in row order. The index is ignored, and so are
    dtype names (``object`` vs ``str`` for the same strings must not make one pool two)."""
    h = hashlib.sha256()
    for col in df.columns:
        h.update(f"{col}\x1e".encode())
        # pandas' per-row hash uses a fixed key, so it is the same in every process and on every machine.
        h.update(pd.util.hash_pandas_object(df[col], index=False).to_numpy().tobytes())
    return h.hexdigest()


def texts_hash(texts: Sequence[str]) -> str:
    """SHA-256 of the texts in order (length-prefixed, so boundaries cannot shift)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


# --- manifest ------------------------------------------------------------------------------------


class Plan(Protocol):
    """What :func:`open_run` needs of a run's plan (:class:`ShardPlan`, the caption job's plan, ...)."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, object]: ...

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Self: ...

    def differences(self, other: Self) -> list[str]: ...


P = TypeVar("P", bound=Plan)


def read_manifest(out: Path, plan_type: type[P] = ShardPlan) -> P | None:  # type: ignore[assignment]
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        return plan_type.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc}); rerun with overwrite to start over") from exc


def open_run(out: Path, plan: Plan, overwrite: bool) -> None:
    """Claim ``out`` for ``plan``: refuse a folder written under another plan unless ``overwrite``
    (which deletes its shards), remove temp files a killed run left, and write the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out, type(plan)) if not overwrite else None
    if old is not None and old != plan:
        diff = "; ".join(old.differences(plan))
        raise ValueError(
            f"{out} holds {plan.kind} of another run ({diff}); use another output folder or overwrite=True "
            "(--overwrite) to delete them"
        )
    stray = sorted(out.glob(SHARD_GLOB)) if old is None else []
    if stray and not overwrite:
        raise ValueError(f"{out} has shard files but no manifest (e.g. {stray[0].name}); use --overwrite")
    if overwrite:
        for f in out.glob(SHARD_GLOB):
            f.unlink()
    for f in out.glob(TEMP_GLOB):  # a SIGKILL skips atomic_path's cleanup
        f.unlink()
    write_json(out / MANIFEST, plan.to_dict())


# --- shard files ---------------------------------------------------------------------------------


def shard_path(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:05d}.parquet"


def shard_table(rows: pd.DataFrame, probs: np.ndarray, gains: Sequence[float]) -> pa.Table:
    """The pool rows + ``probs`` (list<float32>, K per row) + ``score`` (expected gain, float64)."""
    import pyarrow as pa

    probs = np.ascontiguousarray(probs, dtype=np.float32)  # (n, K)
    n, k = probs.shape
    if n != len(rows):
        raise ValueError(f"{n} prob rows for {len(rows)} pairs")
    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    table = table.append_column("probs", pa.ListArray.from_arrays(offsets, pa.array(probs.ravel())))
    score = probs.astype(np.float64) @ np.asarray(gains, dtype=np.float64)  # (n,)
    return table.append_column("score", pa.array(score, type=pa.float64()))


def write_shard(path: Path, table: pa.Table) -> None:
    """Write to a temp file beside ``path`` and rename: ``path`` is either absent or complete."""
    import pyarrow.parquet as pq

    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def check_shard(path: Path, plan: ShardPlan, rows: pd.DataFrame) -> str | None:
    """None if ``path`` is the finished shard for ``rows``; else why it must be (re)computed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return "missing"
    try:
        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
        if names != [*plan.columns, "probs", "score"]:
            return f"columns {names}"
        if f.metadata.num_rows != len(rows):
            return f"{f.metadata.num_rows} rows, expected {len(rows)}"
        if f.schema_arrow.field("probs").type != pa.list_(pa.float32()):
            return f"probs type {f.schema_arrow.field('probs').type}"
        keys = [c for c in KEY_COLUMNS if c in plan.columns]
        table = f.read(columns=[*keys, "probs"])
    except (OSError, pa.ArrowException) as exc:  # truncated or overwritten by something else
        return f"unreadable ({type(exc).__name__}: {exc})"
    probs = table["probs"].combine_chunks()
    if probs.null_count or not np.all(probs.value_lengths().to_numpy(zero_copy_only=False) == plan.k):
        return f"probs not all of length {plan.k}"
    for col in keys:
        if table[col].to_pylist() != rows[col].astype(str).tolist():
            return f"column {col} does not match the pool"
    return None


def read_labels(out: str | Path) -> pd.DataFrame:
    """All shards of a finished run, in pool order (``probs`` as float32 arrays). Raises if unfinished."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    plan = read_manifest(out)
    if plan is None:
        raise FileNotFoundError(f"{out}: no {MANIFEST}; not a labelling output folder")
    missing = [i for i in range(plan.n_shards) if not shard_path(out, i).is_file()]
    if missing:
        raise ValueError(
            f"{out}: {len(missing)} of {plan.n_shards} shards not labelled yet (e.g. shard {missing[0]})"
        )
    tables = [pq.read_table(shard_path(out, i)) for i in range(plan.n_shards)]
    return (
        pa.concat_tables(tables).to_pandas()
        if tables
        else pd.DataFrame(columns=[*plan.columns, "probs", "score"])
    )
