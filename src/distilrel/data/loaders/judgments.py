"""Judgments recorded by people in the relevance explorer (``distilrel serve --judgments DIR``), read as a
dataset, so ``distilrel teacher train`` learns from them like from any other judgment source::

    [[data.datasets]]
    name = "judgments"
    path = "runs/judgments"                                  # the folder the explorer appends to
    options = { catalog = "homedepot", levels = "default5" }  # document texts; the labels' level names

Table layout (written by :mod:`distilrel.judge.store`): a folder of Parquet part files
``part-<UTC time>-<random>.parquet``, one per appended batch, each written to a dot-file first and renamed
into place, so a reader sees whole parts only; dot-files (a writer killed mid-write) are ignored. Columns:
``query``, ``doc_id``, ``label`` (a level name), ``annotator``, ``judged_at`` (UTC timestamp).

Every judgment is kept, conflicting ones included; ``conflicts`` chooses the one a pair trains with:
``latest`` (the most recent judgment), ``majority`` (the most frequent label, ties to the most recent) or
``error``. Document texts are joined from the ``catalog`` dataset (or a ``documents`` table); a judged doc
id missing there is a DataError naming the part file and row. A query the catalog judges keeps the
catalog's query id, language and split (a test query judged in the explorer must not leak into train);
other queries get a stable id and a split by hashing it, as the ``table`` loader does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from distilrel.data.levels import LevelMapping, preset
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import DOC_KEYS, DataError, Dataset
from distilrel.data.splits import DEFAULT_FRACTIONS, SPLIT_SEED, assign_splits, stable_query_id
from distilrel.data.validate import FILE, ROW, check_documents, check_judgments, read_table, row_error

COLUMNS = ("query", "doc_id", "label", "annotator", "judged_at")
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"

Conflicts = Literal["latest", "majority", "error"]


def part_files(folder: str | Path) -> list[Path]:
    """The complete part files of a judgments folder, oldest first (names start with their UTC time)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"judgments folder {folder} does not exist")
    return sorted(
        p for p in folder.iterdir() if p.name.startswith(PART_PREFIX) and p.name.endswith(PART_SUFFIX)
    )


def read_parts(folder: str | Path, levels: LevelMapping | None = None) -> pd.DataFrame:
    """Every judgment of the folder, ordered by ``judged_at`` (file order on ties), with the bookkeeping
    columns ``FILE`` (part path) and ``ROW`` (1-based row in it). ``levels``: labels must be its level
    names. A part that cannot be read, lacks a column or holds a bad row is a DataError naming it."""
    import pyarrow.parquet as pq

    frames = []
    for part in part_files(folder):
        try:
            df = pq.read_table(part).to_pandas()
        except Exception as e:  # any reader error (arrow, OS, thrift) means the same thing: a bad part
            raise DataError(f"{part}: unreadable judgments part: {e}") from e
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{part}: judgments part lacks column(s) {missing}; it has {list(df.columns)}")
        df = df[list(COLUMNS)].copy()
        df[ROW] = range(1, len(df) + 1)
        df[FILE] = str(part)
        frames.append(df)
    if not frames:
        return empty_table()
    df = pd.concat(frames, ignore_index=True)
    check_rows(df, folder, levels)
    df["judged_at"] = pd.to_datetime(df["judged_at"], utc=True)
    return df.sort_values("judged_at", kind="stable").reset_index(drop=True)


def empty_table() -> pd.DataFrame:
    """A judgments table without rows (a folder nobody has written to yet), bookkeeping columns included."""
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    df["judged_at"] = pd.Series(dtype="datetime64[us, UTC]")
    return df.assign(**{ROW: pd.Series(dtype="int64"), FILE: pd.Series(dtype=object)})


def check_rows(df: pd.DataFrame, where: str | Path, levels: LevelMapping | None = None) -> None:
    """Text columns non-blank strings, ``judged_at`` set, labels level names of ``levels`` (when given).
    Errors name the row's part file (``FILE``) when the table has one, else ``where``."""
    for col in ("query", "doc_id", "label", "annotator"):
        blank = df[col].map(lambda v: not isinstance(v, str) or not v.strip())
        if blank.any():
            raise row_error(df, blank, col, where, f"{col} must be a non-blank string")
    if (bad := df["judged_at"].isna()).any():
        raise row_error(df, bad, "judged_at", where, "missing judgment time")
    if levels is not None and (bad := ~df["label"].isin(levels.names)).any():
        raise row_error(df, bad, "label", where, f"not a level name (levels: {list(levels.names)})")


def resolve_conflicts(df: pd.DataFrame, policy: Conflicts) -> tuple[pd.DataFrame, int]:
    """One row per (query, doc_id) chosen by ``policy`` from a table ordered by time; also returns the
    number of pairs whose judgments disagree."""
    if policy not in ("latest", "majority", "error"):
        raise ValueError(f"judgments: conflicts must be 'latest', 'majority' or 'error', got {policy!r}")
    key = ["query", "doc_id"]
    n_labels = df.groupby(key, sort=False)["label"].transform("nunique")
    disagree = n_labels > 1
    n_conflicts = int(df.loc[disagree, key].drop_duplicates().shape[0])
    if policy == "error" and n_conflicts:
        raise row_error(df, disagree, "label", "judgments", "the pair has conflicting judgments")
    if policy == "majority":
        votes = df.groupby([*key, "label"], sort=False)["label"].transform("size")
        # Most votes first, then the most recent (the table is in time order: a later row wins ties).
        ranked = df.assign(_votes=votes, _t=range(len(df))).sort_values(["_votes", "_t"], kind="stable")
        chosen = ranked.drop_duplicates(key, keep="last").drop(columns=["_votes", "_t"])
    else:
        chosen = df.drop_duplicates(key, keep="last")
    return chosen.sort_index(), n_conflicts


def load(
    data_dir: Path | None,
    catalog: str | None = None,
    catalog_dir: str | Path | None = None,
    catalog_options: Mapping[str, Any] | None = None,
    documents: str | Path | None = None,
    fields: Sequence[str] | None = None,
    levels: str | Mapping[str, object] = "default5",
    conflicts: Conflicts = "latest",
    language: str = "und",
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = SPLIT_SEED,
) -> Dataset:
    """``data_dir``: the judgments folder. Texts from ``catalog`` (a dataset name, read from
    ``catalog_dir`` with ``catalog_options``) or ``documents`` (a table with doc_id and ``fields``)."""
    if data_dir is None:
        raise ValueError("judgments: give the judgments folder as the dataset's path")
    if (catalog is None) == (documents is None):
        raise ValueError("judgments: give the document texts as catalog = NAME or documents = FILE (one)")
    mapping = preset(levels) if isinstance(levels, str) else LevelMapping.from_dict(dict(levels))
    folder = Path(data_dir).expanduser()
    raw = read_parts(folder, mapping)
    if raw.empty:
        raise DataError(f"{folder}: no judgments yet (no {PART_PREFIX}*{PART_SUFFIX} files)")
    chosen, n_conflicts = resolve_conflicts(raw, conflicts)
    warnings = [f"{folder}: {n_conflicts} pair(s) had conflicting judgments; kept the {conflicts}"] * bool(
        n_conflicts
    )

    known_queries = pd.DataFrame(columns=["query", "query_id", "split", "language"])
    if catalog is not None:
        from distilrel.data.loaders import load_dataset

        cat = load_dataset(catalog, catalog_dir, **dict(catalog_options or {}))
        docs, fields = cat.documents, cat.fields
        known_queries = cat.queries[["query", "query_id", "split", "language"]].drop_duplicates("query")
        source = f"catalog {catalog!r}"
    else:
        assert documents is not None
        dpath = Path(documents).expanduser()
        table = read_table(dpath)
        if fields is None:
            fields = tuple(c for c in table.columns if c not in (*DOC_KEYS, ROW))
        if "language" not in table.columns:
            table["language"] = language
        docs, doc_warnings = check_documents(table, tuple(fields), dpath)
        warnings += doc_warnings
        source = str(dpath)

    judg = chosen.merge(known_queries, on="query", how="left")
    new = judg["query_id"].isna()
    judg.loc[new, "query_id"] = [stable_query_id(q) for q in judg.loc[new, "query"]]
    judg.loc[new, "split"] = assign_splits(judg.loc[new, "query_id"], fractions, seed).to_numpy()
    doc_lang = docs.set_index("doc_id")["language"]
    judg.loc[new, "language"] = judg.loc[new, "doc_id"].map(doc_lang).fillna(language).to_numpy()
    if (bad := ~judg["doc_id"].isin(docs["doc_id"])).any():
        raise row_error(judg, bad, "doc_id", folder, f"judged document not found in {source}")
    judg, check_warnings = check_judgments(judg, mapping, folder)
    docs = docs[docs["doc_id"].isin(judg["doc_id"])]
    return assemble(
        "judgments",
        judg,
        docs,
        mapping,
        tuple(fields),
        folder,
        warnings=[*warnings, *check_warnings],
        sources=[folder],
        annotators=sorted(chosen["annotator"].unique()),
    )
