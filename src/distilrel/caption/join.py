"""Captions as a document field: join a captions table into a dataset's documents, and say plainly when a
dataset has no images (so a report does not read an empty caption field as a result).

A dataset config joins one with ``captions = "runs/x/captions.parquet"`` (or the caption output
folder) in its ``[[data.datasets]]`` entry; the ``caption`` column then reads like any other text field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from distilrel.data.schema import DataError, Dataset

CAPTION_FIELD = "caption"
#: Column names taken for an image column when none is named.
IMAGE_COLUMNS = ("image", "image_path", "image_file", "img")


def attach_captions(dataset: Dataset, captions: str | Path | pd.DataFrame) -> Dataset:
    """``dataset`` with a ``caption`` document column (``""`` for documents without a caption, and for
    images a ``--skip-missing`` run skipped) and ``caption`` appended to its fields.

    Refuses a dataset that already has a caption column and a table sharing no doc id with it (a
    captions table of another catalog); a partial match is noted in ``meta["warnings"]``.
    """
    from distilrel.caption.job import read_captions

    where = captions if not isinstance(captions, pd.DataFrame) else "captions table"
    table = captions if isinstance(captions, pd.DataFrame) else read_captions(captions)
    docs = dataset.documents
    if CAPTION_FIELD in docs.columns:
        raise DataError(
            f"{dataset.name}: the documents already have a {CAPTION_FIELD!r} column; not joining {where}"
        )
    ids = table["doc_id"].astype(str)
    if ids.duplicated().any():
        raise DataError(f"{where}: doc_id {ids[ids.duplicated()].iloc[0]!r} appears twice")
    by_id = dict(zip(ids, table["caption"].where(table["caption"].notna(), ""), strict=True))
    caption = docs["doc_id"].astype(str).map(by_id)
    matched = int(caption.notna().sum())
    if len(docs) and matched == 0:
        raise DataError(
            f"{where}: none of its {len(table)} doc ids is a document of {dataset.name!r} "
            f"(e.g. {ids.iloc[0] if len(ids) else 'none'!r} vs {docs['doc_id'].iloc[0]!r}); "
            "wrong captions table?"
        )
    warnings = list(dataset.meta.get("warnings", []))  # type: ignore[call-overload]
    if matched < len(docs):
        warnings.append(f"{where}: {len(docs) - matched} of {len(docs)} documents have no caption (empty)")
    docs = docs.assign(**{CAPTION_FIELD: caption.fillna("").astype(str)})
    fields = dataset.fields if CAPTION_FIELD in dataset.fields else (*dataset.fields, CAPTION_FIELD)
    meta = {**dataset.meta, "warnings": warnings, "captions": str(where)}
    return dataclasses.replace(dataset, documents=docs, fields=fields, meta=meta)


def image_column(documents: pd.DataFrame, candidates: Sequence[str] = IMAGE_COLUMNS) -> str | None:
    """The first of ``candidates`` that is a column of ``documents``, else None."""
    return next((c for c in candidates if c in documents.columns), None)


def caption_report(dataset: Dataset, image_col: str | None = None) -> str:
    """One plain sentence on the caption field of ``dataset``, for the pipeline report."""
    docs = dataset.documents
    if CAPTION_FIELD in docs.columns:
        filled = int((docs[CAPTION_FIELD].fillna("").astype(str).str.strip() != "").sum())
        return f"{dataset.name}: {filled} of {len(docs)} documents have a caption"
    col = image_col if image_col in docs.columns else image_column(docs)
    if col is None:
        return f"{dataset.name} has no images; the caption field is empty"
    return (
        f"{dataset.name} has images (column {col!r}) but no captions; the caption field is empty until "
        "`distilrel caption` runs and the dataset entry names its output as captions"
    )
