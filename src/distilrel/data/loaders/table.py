"""A user's own judgments: Parquet / CSV / TSV / JSON-lines files (chosen by extension).

    load_dataset("table", judgments="j.csv", documents="d.parquet",
                 columns={"query": "q", "doc_id": "pid", "label": "grade"},
                 levels="default5", fields=("title", "body"))

``columns`` maps canonical names (query_id, query, doc_id, label, split, language, segments, and text
fields when they live in the judgments file) onto the file's columns; unmapped canonical names are
looked up as-is. ``doc_columns`` does the same for the documents file (default: the entries of
``columns`` whose source column exists there). Missing pieces are filled deterministically:

- no query_id: derived from the query text (stable hash);
- no split: by hashing the query id (seeded; 67% / 11% / 22% by default);
- no language: the ``language`` option (default ``"und"``, ISO 639 "undetermined"); documents without
  a language take that of the judgments (see ``_doc_language``);
- no documents file: documents are the judged doc ids, with the ``fields`` taken from the judgments file
  (one text per doc id, else a DataError), or no text at all when ``fields`` is empty (warned).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from distilrel.data.levels import LevelMapping, preset
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import DOC_KEYS, Dataset
from distilrel.data.splits import DEFAULT_FRACTIONS, SPLIT_SEED, assign_splits, stable_query_id
from distilrel.data.validate import (
    ROW,
    as_text,
    check_documents,
    check_judgments,
    read_table,
    rename_columns,
    require_columns,
)


def load(
    data_dir: Path | None,
    judgments: str | Path,
    documents: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    doc_columns: Mapping[str, str] | None = None,
    levels: str | LevelMapping | Mapping[str, object] = "default5",
    fields: Sequence[str] | None = None,
    segments: Sequence[str] = (),
    language: str = "und",
    task: Literal["rerank", "retrieve"] = "rerank",
    name: str = "table",
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = SPLIT_SEED,
) -> Dataset:
    """``data_dir``, when given, is the folder relative file names are resolved against.
    ``fields`` None: every documents-file column other than doc_id/language, in file order."""
    mapping = _levels(levels)
    if task not in ("rerank", "retrieve"):
        raise ValueError(f"table: task must be 'rerank' or 'retrieve', got {task!r}")
    jpath = _resolve(data_dir, judgments)
    dpath = _resolve(data_dir, documents) if documents is not None else None
    columns = dict(columns or {})
    warnings: list[str] = []

    raw = read_table(jpath)
    judg = rename_columns(raw, columns, jpath)
    require_columns(judg, ["query", "doc_id", "label"], jpath)
    if "query_id" not in judg.columns:
        judg["query_id"] = [stable_query_id(q) for q in as_text(judg["query"])]
    if "language" not in judg.columns:
        judg["language"] = language
    if "split" not in judg.columns:
        judg["split"] = assign_splits(judg["query_id"], fractions, seed)
        warnings.append(f"{jpath.name}: no split column: splits assigned by hashing query_id (seed {seed})")
    judg, check_warnings = check_judgments(judg, mapping, jpath, extra=tuple(segments))
    warnings += check_warnings
    doc_language = _doc_language(judg, language)

    if dpath is not None:
        docs = read_table(dpath)
        if doc_columns is None:
            doc_columns = {k: v for k, v in columns.items() if v in docs.columns and k not in segments}
        docs = rename_columns(docs, doc_columns, dpath)
        if fields is None:
            taken = set(doc_columns.values()) | set(DOC_KEYS) | {ROW}
            fields = tuple(c for c in docs.columns if c not in taken)
        if "language" not in docs.columns:
            require_columns(docs, ["doc_id"], dpath)
            docs["language"] = as_text(docs["doc_id"]).map(doc_language)
        docs, doc_warnings = check_documents(docs, tuple(fields), dpath)
        warnings += doc_warnings
    else:
        fields = tuple(fields or ())
        docs = _docs_from_judgments(raw, columns, fields, doc_language, jpath)
        if not fields:
            warnings.append(f"{jpath.name}: no documents file and no fields: documents have EMPTY text")

    return assemble(
        name,
        judg,
        docs,
        mapping,
        tuple(fields or ()),
        jpath,
        task=task,
        segments=("language", *[s for s in segments if s != "language"]),
        warnings=warnings,
        sources=[p for p in (jpath, dpath) if p is not None],
    )


def _levels(levels: str | LevelMapping | Mapping[str, object]) -> LevelMapping:
    if isinstance(levels, LevelMapping):
        return levels
    if isinstance(levels, str):
        return preset(levels)
    return LevelMapping.from_dict(dict(levels))


def _resolve(data_dir: Path | None, path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or data_dir is None else Path(data_dir) / p


def _doc_language(judg: pd.DataFrame, default: str) -> Callable[[str], str]:
    """Language of a document that has none: that of the first query judging it; for unjudged documents
    the judgments' only language, else ``default`` (a retrieve corpus is partitioned by language)."""
    by_doc = judg.drop_duplicates("doc_id").set_index("doc_id")["language"].to_dict()
    langs = judg["language"].unique()
    fallback = str(langs[0]) if len(langs) == 1 else default
    return lambda doc_id: by_doc.get(doc_id, fallback)


def _docs_from_judgments(
    raw: pd.DataFrame,
    columns: Mapping[str, str],
    fields: Sequence[str],
    doc_language: Callable[[str], str],
    path: Path,
) -> pd.DataFrame:
    """One document per judged doc id, text fields read from the judgments file itself."""
    df = rename_columns(raw, {k: v for k, v in columns.items() if k in ("doc_id", *fields)}, path)
    require_columns(df, ["doc_id", *fields], path, what="text fields of the documents")
    df["doc_id"] = as_text(df["doc_id"])
    df["language"] = df["doc_id"].map(doc_language)
    # Rows of one doc repeat its text: check_documents collapses identical repeats (expected here, so its
    # "collapsed duplicates" note is dropped) and rejects a doc id with two different texts.
    docs, _ = check_documents(df, fields, path)
    return docs
