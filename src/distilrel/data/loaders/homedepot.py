"""Home Depot product search relevance (Kaggle 2016): rater means on 1..3, title only, English.

Rater means (1.0, 1.33, 1.67, 2.0, 2.33, 2.5, 2.67, 3.0, ...) are binned into the 5 levels of
``levels.HOMEDEPOT``, most relevant first; each bin is closed below and open above:

    level 0  "3.0"    mean == 3.0           (every rater said "perfect match")
    level 1  "2.5+"   2.5 <= mean < 3.0
    level 2  "2.0+"   2.0 <= mean < 2.5
    level 3  "1.5+"   1.5 <= mean < 2.0
    level 4  "<1.5"   1.0 <= mean < 1.5

A mean outside [1, 3] (or not a number) is a DataError. The raw mean is kept in ``label`` (as text) and
``meta["raw_scale"] = (1.0, 3.0)`` declares it a numeric rating (evaluation reports its RMSE).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from distilrel.data.levels import HOMEDEPOT
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import Dataset
from distilrel.data.validate import (
    as_text,
    check_documents,
    check_judgments,
    read_table,
    rename_columns,
    row_error,
)

FOLDER = "homedepot_search_relevance"
FIELDS = {"title": "product_title"}

#: (lower edge, level name), most relevant first; a mean falls in the first bin whose edge it reaches.
BINS: tuple[tuple[float, str], ...] = (
    (3.0, "3.0"),
    (2.5, "2.5+"),
    (2.0, "2.0+"),
    (1.5, "1.5+"),
    (1.0, "<1.5"),
)
# Means are averages of 1/2/3 votes written with 2 decimals; the tolerance absorbs float noise (2.9999999).
_EPS = 1e-6


def bin_mean(mean: float) -> str:
    """Level name of one rater mean (see the module docstring for the edges)."""
    if not 1.0 - _EPS <= mean <= 3.0 + _EPS:
        raise ValueError(f"rater mean {mean} outside [1, 3]")
    for edge, name in BINS:
        if mean >= edge - _EPS:
            return name
    raise AssertionError("unreachable: the last bin starts at 1.0")


def load(data_dir: Path) -> Dataset:
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"

    docs = read_table(dpath, ["doc_id", "language", *FIELDS.values()])
    docs, doc_warnings = check_documents(rename_columns(docs, FIELDS, dpath), tuple(FIELDS), dpath)

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "split"])
    if "label" in judg.columns:
        means = pd.to_numeric(judg["label"], errors="coerce")
        bad = means.isna() | ~means.between(1.0 - _EPS, 3.0 + _EPS)
        if bad.any():
            raise row_error(judg, bad, "label", jpath, "rater mean is not a number in [1, 3]")
        judg["level"] = means.map(lambda m: HOMEDEPOT.index(bin_mean(float(m))))
        judg["label"] = as_text(means)
    judg["language"] = "en"
    judg, warnings = check_judgments(judg, HOMEDEPOT, jpath)

    return assemble(
        "homedepot",
        judg,
        docs,
        HOMEDEPOT,
        tuple(FIELDS),
        jpath,
        task="rerank",
        warnings=[*doc_warnings, *warnings],
        sources=[jpath, dpath],
        label_note="rater means binned: 3.0 | [2.5,3) | [2.0,2.5) | [1.5,2.0) | [1.0,1.5)",
        raw_scale=(1.0, 3.0),
    )
