"""The judgments table people fill in the relevance explorer: append, read, conflicts.

A folder of Parquet part files, one per appended batch (layout and reader: :mod:`distilrel.data.loaders.
judgments`, which also makes the folder a training dataset). Appending never touches an existing file:
a batch is written to a dot-file, fsynced, and renamed to a fresh ``part-*`` name, then the folder entry
is fsynced. So a writer killed at any instant leaves every part whole (at worst one stray dot-file, which
readers ignore), and a judgment acknowledged after :meth:`JudgmentStore.append` returned survives a crash
of the machine too. Writers need no lock: every batch gets its own name.

Conflicting judgments of one pair (two people, or one person changing their mind) are all kept;
:func:`conflicts` lists them, and the dataset loader picks one per pair only when training.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from distilrel.data.levels import LevelMapping
from distilrel.data.loaders.judgments import (
    COLUMNS,
    PART_PREFIX,
    PART_SUFFIX,
    check_rows,
    empty_table,
    part_files,
    read_parts,
)
from distilrel.data.validate import ROW, drop_bookkeeping


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Judgment:
    """One person's level for one (query, document) pair. ``label``: a level name."""

    query: str
    doc_id: str
    label: str
    annotator: str
    judged_at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.judged_at.tzinfo is None:
            raise ValueError(f"judged_at must carry a time zone (UTC), got naive {self.judged_at}")
        object.__setattr__(self, "judged_at", self.judged_at.astimezone(UTC))


class JudgmentStore:
    """The judgments folder at ``root``; ``levels``: the level names a label must be one of."""

    def __init__(self, root: str | Path, levels: LevelMapping) -> None:
        self.root = Path(root)
        self.levels = levels

    def append(self, judgments: Sequence[Judgment]) -> Path:
        """Write the batch as one new part (all or nothing) and return its path. Bad rows raise a
        DataError naming the batch row; nothing is written then."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not judgments:
            raise ValueError("append: no judgments to write")
        df = pd.DataFrame(
            {
                "query": [j.query for j in judgments],
                "doc_id": [j.doc_id for j in judgments],
                "label": [j.label for j in judgments],
                "annotator": [j.annotator for j in judgments],
                "judged_at": pd.to_datetime([j.judged_at for j in judgments], utc=True),
            }
        )
        check_rows(df.assign(**{ROW: range(1, len(df) + 1)}), "judgment batch", self.levels)
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = df["judged_at"].min().strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{PART_PREFIX}{stamp}-{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
        target, tmp = self.root / name, self.root / f".{name}.tmp"
        schema = pa.schema(
            [(c, pa.string()) for c in COLUMNS[:-1]] + [("judged_at", pa.timestamp("us", tz="UTC"))]
        )
        try:
            with open(tmp, "wb") as f:
                pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.root)
        return target

    def read(self, with_source: bool = False) -> pd.DataFrame:
        """Every judgment, oldest first; ``with_source`` keeps each row's part file and row number."""
        if not self.root.exists():
            return drop_bookkeeping(empty_table())
        df = read_parts(self.root, self.levels)
        return df if with_source else drop_bookkeeping(df)

    def parts(self) -> list[Path]:
        return part_files(self.root) if self.root.exists() else []


def conflicts(judgments: pd.DataFrame) -> pd.DataFrame:
    """The (query, doc_id) pairs judged with more than one label: their labels and annotators in time
    order and the number of judgments. Columns: query, doc_id, labels, annotators, n."""
    key = ["query", "doc_id"]
    cols = [*key, "labels", "annotators", "n"]
    if judgments.empty:
        return pd.DataFrame(columns=cols)
    ordered = judgments.sort_values("judged_at", kind="stable")
    grouped = ordered.groupby(key, sort=False)
    out = grouped.agg(labels=("label", list), annotators=("annotator", list), n=("label", "size"))
    out = out[grouped["label"].nunique() > 1].reset_index()
    return out[cols].reset_index(drop=True)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX: the new entry lives in the folder's own metadata)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
