"""CrowdFlower e-commerce search relevance (Kaggle 2015): graded 1..4, title + description, English."""

from __future__ import annotations

from pathlib import Path

from distilrel.data.levels import CROWDFLOWER
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import Dataset
from distilrel.data.validate import check_documents, check_judgments, read_table, rename_columns

FOLDER = "crowdflower_search_relevance"
#: canonical field -> column of documents.parquet
FIELDS = {"title": "product_title", "description": "product_description"}


def load(data_dir: Path) -> Dataset:
    """Judgments keep the folder's own train/validation/test split; labels are the raters' median 1..4,
    a numeric rating (``meta["raw_scale"] = (1.0, 4.0)``)."""
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"

    docs = read_table(dpath, ["doc_id", "language", *FIELDS.values()])
    docs, doc_warnings = check_documents(rename_columns(docs, FIELDS, dpath), tuple(FIELDS), dpath)

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "split"])
    judg["language"] = "en"  # the whole set is English (documents say so too)
    judg, warnings = check_judgments(judg, CROWDFLOWER, jpath)

    return assemble(
        "crowdflower",
        judg,
        docs,
        CROWDFLOWER,
        tuple(FIELDS),
        jpath,
        task="rerank",
        warnings=[*doc_warnings, *warnings],
        sources=[jpath, dpath],
        raw_scale=(1.0, 4.0),
    )
