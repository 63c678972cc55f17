"""A 600-pair Spanish ESCI sample, binarised upstream (1 = E, 0 = S/C/I), title only, lower-cased.

About one product per query, so use it pointwise (accuracy, calibration), not for per-query NDCG.
The stored split ``val`` (10% of ESCI-train queries, made upstream) is served as ``validation``.
"""

from __future__ import annotations

from pathlib import Path

from distilrel.data.levels import BINARY
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import Dataset
from distilrel.data.validate import check_documents, check_judgments, read_table, rename_columns

FOLDER = "esci_es_sample_binary"
FIELDS = {"title": "product_title"}


def load(data_dir: Path) -> Dataset:
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"

    docs = read_table(dpath, ["doc_id", "locale", *FIELDS.values()])
    docs = rename_columns(docs, {**FIELDS, "language": "locale"}, dpath)
    docs, doc_warnings = check_documents(docs, tuple(FIELDS), dpath)

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "locale", "split"])
    judg = rename_columns(judg, {"language": "locale"}, jpath)
    judg, warnings = check_judgments(judg, BINARY, jpath)  # split "val" -> "validation" (SPLIT_ALIASES)

    return assemble(
        "esci_es",
        judg,
        docs,
        BINARY,
        tuple(FIELDS),
        jpath,
        task="rerank",
        warnings=[*doc_warnings, *warnings],
        sources=[jpath, dpath],
    )
