"""Shared reading and checking of judgment and document tables, used by every loader.

Every problem raises :class:`DataError` naming the file, the 1-based data row (header excluded) and the
offending value; nothing is dropped silently. The one repair we make — collapsing *identical* duplicate
rows — is reported back as a warning string that the loader stores in ``Dataset.meta["warnings"]``.

Loaders call :func:`read_table` (which numbers the rows in :data:`ROW`), rename their dataset's columns to
the canonical names, then call :func:`check_judgments`, :func:`check_documents` and
:func:`check_doc_refs`. The row number travels with each row through filtering and renaming, so an error
found late still points at the right line of the right file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from distilrel.data.levels import LevelMapping
from distilrel.data.schema import DOC_KEYS, JUDGMENT_COLUMNS, SPLITS, DataError

#: Column holding the 1-based data row of the source file (removed before a Dataset is returned).
ROW = "__row__"

#: Column naming the source file of each row (set where one table is read from several files).
FILE = "__file__"

#: Spellings of split names found in the wild, mapped onto SPLITS.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "eval": "test",
}

READERS = (".parquet", ".pq", ".csv", ".tsv", ".jsonl", ".ndjson")


def read_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, object]] | None = None,
) -> pd.DataFrame:
    """Read a Parquet, CSV, TSV or JSON-lines file (chosen by extension) and number its rows in ``ROW``.

    ``columns`` restricts a Parquet read to those of the named columns that exist (a missing one is left
    for :func:`require_columns` to report); ``filters`` are pyarrow row filters (Parquet only). CSV/TSV
    cells are read as text so ids such as ``"00123"`` survive; empty cells become ``""``.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in READERS:
        raise DataError(f"{path}: unknown file extension {ext!r}; supported: {list(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if ext in (".parquet", ".pq"):
            df = _read_parquet(path, columns, filters)
        elif ext in (".csv", ".tsv"):
            sep = "\t" if ext == ".tsv" else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
        else:
            # dtype=False: keep ids as written (no float coercion of numeric-looking strings).
            df = pd.read_json(path, lines=True, dtype=False, convert_dates=False, encoding="utf-8")
    except DataError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types; all mean "this file is unreadable"
        raise DataError(f"{path}: cannot read as {ext[1:]}: {type(exc).__name__}: {exc}") from exc
    if filters is None:
        df.insert(0, ROW, range(1, len(df) + 1))
    return df


def _read_parquet(
    path: Path, columns: Sequence[str] | None, filters: list[tuple[str, str, object]] | None
) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    cols = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    if filters is None:
        return pd.read_parquet(path, columns=cols)
    # Row numbers must refer to the file, not to the filtered result: number before filtering.
    table = pq.read_table(path, columns=cols)
    table = table.add_column(0, ROW, pa.array(range(1, table.num_rows + 1), type=pa.int64()))
    mask = None
    for col, op, value in filters:
        if op == "==":
            cond = pc.equal(table[col], value)
        elif op == "in":
            cond = pc.is_in(table[col], value_set=pa.array(list(value)))  # type: ignore[call-overload]
        else:
            raise ValueError(f"unsupported filter operator {op!r}; use '==' or 'in'")
        mask = cond if mask is None else pc.and_(mask, cond)
    return (table.filter(mask) if mask is not None else table).to_pandas()


def require_columns(df: pd.DataFrame, columns: Sequence[str], path: str | Path, what: str = "") -> None:
    """Raise DataError naming the file, the missing columns and the columns it has."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = [c for c in df.columns if c not in (ROW, FILE)]
        role = f" ({what})" if what else ""
        raise DataError(f"{path}{role}: missing column(s) {missing}; the file has {have}")


def cell_text(value: object) -> str:
    """Canonical text of one cell: missing → ``""``; integral floats as ints (``3.0`` → ``"3"``, as ids
    and labels read back from CSV/JSON are); everything else ``str``."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def as_text(series: pd.Series) -> pd.Series:
    """Column of :func:`cell_text` values (dtype str)."""
    # Fast paths for the common typed columns (millions of rows in the official ESCI files).
    if isinstance(series.dtype, pd.StringDtype):
        return series.fillna("").astype(str)
    if pd.api.types.is_integer_dtype(series.dtype) and not series.hasnans:
        return series.astype(str)
    return series.map(cell_text).astype(str)


def row_error(df: pd.DataFrame, bad: pd.Series, column: str, path: str | Path, problem: str) -> DataError:
    """DataError for the first row where ``bad`` holds, naming the file, row and value (+ how many more)."""
    hits = df.loc[bad]
    first = hits.iloc[0]
    where = first[FILE] if FILE in df.columns else path
    more = f" (and {len(hits) - 1} more row(s))" if len(hits) > 1 else ""
    return DataError(f"{where}: row {first[ROW]}: {problem}: {column}={first[column]!r}{more}")


def normalize_splits(df: pd.DataFrame, path: str | Path) -> pd.Series:
    """Map split spellings (``val``, ``dev``, ...) onto SPLITS; any other value is a DataError."""
    raw = as_text(df["split"])
    mapped = raw.str.strip().str.lower().map(SPLIT_ALIASES)
    bad = mapped.isna()
    if bad.any():
        raise row_error(df, bad, "split", path, f"unknown split (use one of {list(SPLITS)})")
    return mapped.astype(str)


def levels_of_labels(df: pd.DataFrame, levels: LevelMapping, path: str | Path) -> pd.Series:
    """Level index per row from the raw ``label`` column; an unknown label is a DataError."""
    lookup: dict[str, int] = {}
    for raw in df["label"].unique():
        try:
            lookup[raw] = levels.level_of(raw)
        except ValueError:
            known = sorted(set(levels.labels) | set(levels.names))
            raise row_error(
                df, df["label"] == raw, "label", path, f"unknown label (known: {known})"
            ) from None
    return df["label"].map(lookup).astype("int64")


def check_judgments(
    df: pd.DataFrame,
    levels: LevelMapping,
    path: str | Path,
    extra: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Validate and canonicalise a judgments table.

    ``df`` holds the canonical columns (``level`` optional: computed from ``label`` when absent), ``ROW``,
    and the ``extra`` (segment) columns to keep. Returns the table in canonical column order and the
    warnings (collapsed identical duplicates).
    """
    require_columns(df, [c for c in JUDGMENT_COLUMNS if c != "level"] + list(extra), path)
    df = df.copy()
    for col in ("query_id", "query", "doc_id", "label", "language"):
        df[col] = as_text(df[col])
    df["split"] = normalize_splits(df, path)

    if (bad := df["query"].str.strip() == "").any():
        raise row_error(df, bad, "query", path, "empty or whitespace-only query")
    if (bad := df["query_id"].str.strip() == "").any():
        raise row_error(df, bad, "query_id", path, "empty query id")
    if (bad := df["doc_id"].str.strip() == "").any():
        raise row_error(df, bad, "doc_id", path, "empty doc id")
    if (bad := df["label"].str.strip() == "").any():
        raise row_error(df, bad, "label", path, "missing label")
    if "level" not in df.columns:
        df["level"] = levels_of_labels(df, levels, path)
    df["level"] = df["level"].astype("int64")
    if (bad := ~df["level"].between(0, levels.k - 1)).any():
        raise row_error(df, bad, "level", path, f"level index outside 0..{levels.k - 1}")

    _check_query_consistency(df, path)
    df, warnings = _collapse_duplicates(df, ["query_id", "doc_id"], "label", path, "judgment")
    cols = [*JUDGMENT_COLUMNS, *[c for c in extra if c not in JUDGMENT_COLUMNS], ROW]
    if FILE in df.columns:
        cols.append(FILE)
    return df[cols].reset_index(drop=True), warnings


def _check_query_consistency(df: pd.DataFrame, path: str | Path) -> None:
    """One query id must mean one query text, in one split (a query straddling splits leaks)."""
    for col, problem in (("query", "has two different query texts"), ("split", "appears in two splits")):
        first = df.drop_duplicates("query_id").set_index("query_id")[col]
        bad = df[col] != df["query_id"].map(first)
        if bad.any():
            hit = df.loc[bad].iloc[0]
            raise row_error(
                df,
                bad,
                col,
                path,
                f"query id {hit['query_id']!r} {problem} (first: {first[hit['query_id']]!r})",
            )


def _collapse_duplicates(
    df: pd.DataFrame, key: list[str], value_cols: str | list[str], path: str | Path, what: str
) -> tuple[pd.DataFrame, list[str]]:
    """Drop exact repeats of ``key`` with the same values (warning); differing values are a DataError."""
    values = [value_cols] if isinstance(value_cols, str) else list(value_cols)
    dup_key = df.duplicated(key, keep=False)
    if not dup_key.any():
        return df, []
    dups = df.loc[dup_key]
    conflicting = dups.groupby(key, sort=False)[values].nunique().gt(1).any(axis=1)
    if conflicting.any():
        k = conflicting[conflicting].index[0]
        k = k if isinstance(k, tuple) else (k,)
        rows = dups
        for col, v in zip(key, k, strict=True):
            rows = rows[rows[col] == v]
        shown = ", ".join(f"{c}={v!r}" for c, v in zip(key, k, strict=True))
        detail = "; ".join(
            f"row {r[ROW]}: " + ", ".join(f"{c}={_short(r[c])!r}" for c in values) for _, r in rows.iterrows()
        )
        where = rows.iloc[0][FILE] if FILE in rows.columns else path
        raise DataError(f"{where}: {what} {shown} appears with different values: {detail}")
    out = df.drop_duplicates(key, keep="first")
    n = len(df) - len(out)
    first_rows = dups.loc[dups.duplicated(key, keep="first"), ROW].head(5).tolist()
    return out, [f"{path}: collapsed {n} identical duplicate {what} row(s) (e.g. rows {first_rows})"]


def _short(value: object, n: int = 60) -> str:
    s = str(value)
    return s if len(s) <= n else s[: n - 3] + "..."


def check_documents(
    df: pd.DataFrame, fields: Sequence[str], path: str | Path, extra: Sequence[str] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """Validate and canonicalise a documents table: doc_id, language, the text fields (str, ``""`` when
    missing), then ``extra`` columns. Duplicate doc ids with different content are a DataError."""
    require_columns(df, [*DOC_KEYS, *fields, *extra], path)
    df = df.copy()
    for col in (*DOC_KEYS, *fields):
        df[col] = as_text(df[col])
    if (bad := df["doc_id"].str.strip() == "").any():
        raise row_error(df, bad, "doc_id", path, "empty doc id")
    df, warnings = _collapse_duplicates(df, ["doc_id"], ["language", *fields], path, "document")
    cols = [*DOC_KEYS, *fields, *[c for c in extra if c not in fields], ROW]
    return df[cols].reset_index(drop=True), warnings


def check_doc_refs(judgments: pd.DataFrame, documents: pd.DataFrame, path: str | Path) -> None:
    """Every judged doc id must have a document (a judgment we cannot build text for is an error)."""
    bad = ~judgments["doc_id"].isin(documents["doc_id"])
    if bad.any():
        raise row_error(judgments, bad, "doc_id", path, "judged document not found in the documents table")


def drop_bookkeeping(df: pd.DataFrame) -> pd.DataFrame:
    """Remove the row/file bookkeeping columns (before a table leaves the loader)."""
    return df.drop(columns=[c for c in (ROW, FILE) if c in df.columns]).reset_index(drop=True)


def rename_columns(df: pd.DataFrame, mapping: Mapping[str, str], path: str | Path) -> pd.DataFrame:
    """Copy ``{canonical: source}`` columns to their canonical names, checking the sources exist.

    Copying (not renaming) lets one source column feed two canonical ones and lets an explicit mapping
    win over a same-named column the file also has.
    """
    require_columns(df, list(mapping.values()), path)
    df = df.copy()
    for canon, src in mapping.items():
        df[canon] = df[src]
    return df
