"""Japanese question -> Wikipedia paragraph retrieval (JSQuAD v1.3 valid + test, JaQuAD dev), binary.

Every part of this set is evaluation data upstream, so ALL judgments are served as split ``test``;
nothing here is meant for training. The upstream part is kept as the segment ``source``
(``jsquad-v1.3/valid``, ``jsquad-v1.3/test``, ``jaquad-v0.1.0/dev``) in both tables: a query ranks the
paragraphs of its own source (``meta["corpus_by"]``), as the folder's README suggests (BEIR-style,
unjudged paragraphs count 0).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from distilrel.data.levels import BINARY
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import Dataset
from distilrel.data.validate import as_text, check_documents, check_judgments, read_table, require_columns

FOLDER = "ja_qa_paragraph_retrieval"
FIELDS = ("title", "text")


def _source(df: pd.DataFrame, path: Path) -> pd.Series:
    require_columns(df, ["source", "split"], path)
    return as_text(df["source"]) + "/" + as_text(df["split"])


def load(data_dir: Path) -> Dataset:
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"

    docs = read_table(dpath, ["doc_id", "language", *FIELDS, "source", "split"])
    docs["source"] = _source(docs, dpath)
    docs, doc_warnings = check_documents(docs, FIELDS, dpath, extra=("source",))

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "language", "source", "split"])
    judg["source"] = _source(judg, jpath)
    judg["split"] = "test"  # all upstream parts are evaluation sets (see module docstring)
    judg, warnings = check_judgments(judg, BINARY, jpath, extra=("source",))

    return assemble(
        "ja_qa",
        judg,
        docs,
        BINARY,
        FIELDS,
        jpath,
        task="retrieve",
        segments=("language", "source"),
        warnings=[*doc_warnings, *warnings],
        sources=[jpath, dpath],
        corpus_by=("language", "source"),
        split_note="all rows are test; the upstream part/split is the 'source' segment",
    )
