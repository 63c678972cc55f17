"""Pieces every loader shares: finding its folder and assembling the checked tables into a Dataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from distilrel.data.levels import LevelMapping
from distilrel.data.schema import Dataset
from distilrel.data.validate import check_doc_refs, drop_bookkeeping


def resolve_dir(data_dir: str | Path | None, folder: str) -> Path:
    """``data_dir`` as given, else ``distilrel.paths.data_dir() / folder``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from distilrel.paths import data_dir as shared_data_dir

    return shared_data_dir() / folder


def assemble(
    name: str,
    judgments: pd.DataFrame,
    documents: pd.DataFrame,
    levels: LevelMapping,
    fields: Sequence[str],
    judgments_path: str | Path,
    *,
    task: Literal["rerank", "retrieve"] = "rerank",
    segments: Sequence[str] = ("language",),
    warnings: Sequence[str] = (),
    sources: Sequence[str | Path] = (),
    **meta: object,
) -> Dataset:
    """Check that every judged doc exists, drop the bookkeeping columns and build the Dataset.

    meta keys used across loaders: ``warnings`` (list[str], repairs and caveats the user should see),
    ``source_files`` (list[str]), ``corpus_by`` (columns present in BOTH tables that partition a
    ``retrieve`` corpus: a query ranks only the documents that share its values), ``split_note``,
    ``raw_scale`` (``(lo, hi)``, only where ``label`` is a numeric rating on that scale, least relevant
    ``lo``: evaluation then reports the RMSE of predicted ratings).
    """
    check_doc_refs(judgments, documents, judgments_path)
    info: dict[str, object] = {
        "warnings": list(warnings),
        "source_files": [str(s) for s in sources],
        "corpus_by": ("language",),
    }
    info.update(meta)
    return Dataset(
        name=name,
        documents=drop_bookkeeping(documents),
        judgments=drop_bookkeeping(judgments),
        levels=levels,
        fields=tuple(fields),
        task=task,
        segments=tuple(segments),
        meta=info,
    )
