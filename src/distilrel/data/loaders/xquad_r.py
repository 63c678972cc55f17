"""XQuAD-R (LAReQA): the same 1,190 questions in 11 languages, each against the answer sentences of its
own language (binary; every unjudged sentence counts 0). A query ranks the corpus of its language.

All rows are split ``test`` (the set is an evaluation set). ``parallel_id`` (the SQuAD question id,
shared by the 11 translations) is kept in the judgments for cross-lingual comparisons.
"""

from __future__ import annotations

from pathlib import Path

from distilrel.data.levels import BINARY
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import Dataset
from distilrel.data.validate import check_documents, check_judgments, read_table, rename_columns

FOLDER = "xquad_r_multilingual"
FIELDS = {"title": "title", "text": "text"}


def load(data_dir: Path) -> Dataset:
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"

    docs = read_table(dpath, ["doc_id", "locale", *FIELDS.values()])
    docs = rename_columns(docs, {**FIELDS, "language": "locale"}, dpath)
    if "title" in docs.columns:
        # Titles are Wikipedia page names ("Super_Bowl_50"); spaces read better for every tokenizer.
        docs["title"] = docs["title"].astype(str).str.replace("_", " ", regex=False)
    docs, doc_warnings = check_documents(docs, tuple(FIELDS), dpath)

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "locale", "split", "parallel_id"])
    judg = rename_columns(judg, {"language": "locale"}, jpath)
    judg, warnings = check_judgments(judg, BINARY, jpath, extra=("parallel_id",))

    return assemble(
        "xquad_r",
        judg,
        docs,
        BINARY,
        tuple(FIELDS),
        jpath,
        task="retrieve",
        warnings=[*doc_warnings, *warnings],
        sources=[jpath, dpath],
        corpus_by=("language",),
    )
