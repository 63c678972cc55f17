"""XQuAD-R (LAReQA): the same 1,190 questions in 11 languages, each against the answer sentences of its
own language (binary; every unjudged sentence counts 0). A query ranks the corpus of its language.

Upstream every row is split ``test`` (the set is an evaluation set), and that stays the default.
``parallel_id`` (the SQuAD question id, shared by the 11 translations) is kept in the judgments.

Training on it (e.g. "fine-tune on English, measure every language") needs a split that is the SAME in
every language, or a question seen in training in English is tested in German. ``fractions`` assigns
train / validation / test by hashing a key shared by all translations: the question (``parallel_id``,
``split_by="question"``) or its Wikipedia article (``split_by="article"``, the default: the 5 or so
questions of a paragraph share their answer sentences' context, so splitting by question would put a
test question's paragraph among the training positives). ``languages`` keeps only some languages (both
tables); the split does not depend on it, so an English-only training view and an all-language
evaluation view agree on every question's split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from distilrel.data.levels import BINARY
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import DataError, Dataset
from distilrel.data.splits import SPLIT_SEED, assign_splits
from distilrel.data.validate import check_documents, check_judgments, read_table, rename_columns

FOLDER = "xquad_r_multilingual"
FIELDS = {"title": "title", "text": "text"}
SPLIT_BY = ("question", "article")


def load(
    data_dir: Path,
    languages: Sequence[str] | None = None,
    fractions: Sequence[float] | None = None,
    split_by: Literal["question", "article"] = "article",
    seed: int = SPLIT_SEED,
) -> Dataset:
    """``languages``: keep only these (None: all 11). ``fractions``: (train, validation, test) shares,
    assigned per ``split_by`` key with ``seed``; None keeps the upstream split (all ``test``)."""
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"
    if split_by not in SPLIT_BY:
        raise ValueError(f"xquad_r: split_by must be one of {list(SPLIT_BY)}, got {split_by!r}")

    docs = read_table(dpath, ["doc_id", "locale", *FIELDS.values()])
    docs = rename_columns(docs, {**FIELDS, "language": "locale"}, dpath)
    if "title" in docs.columns:
        # Titles are Wikipedia page names ("Super_Bowl_50"); spaces read better for every tokenizer.
        docs["title"] = docs["title"].astype(str).str.replace("_", " ", regex=False)

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "locale", "split", "parallel_id"])
    judg = rename_columns(judg, {"language": "locale"}, jpath)
    warnings: list[str] = []
    if fractions is not None:
        # Before the language filter: the split must not depend on which languages are loaded.
        judg["split"] = assign_splits(_split_keys(judg, split_by, jpath), _fractions(fractions), seed)
        warnings.append(
            f"xquad_r: splits assigned by hashing the {split_by} (seed {seed}), same in every language"
        )
    if languages is not None:
        docs, judg = _keep_languages(docs, judg, languages, dpath)

    docs, doc_warnings = check_documents(docs, tuple(FIELDS), dpath)
    judg, check_warnings = check_judgments(judg, BINARY, jpath, extra=("parallel_id",))

    return assemble(
        "xquad_r",
        judg,
        docs,
        BINARY,
        tuple(FIELDS),
        jpath,
        task="retrieve",
        warnings=[*doc_warnings, *warnings, *check_warnings],
        sources=[jpath, dpath],
        corpus_by=("language",),
    )


def _fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3:
        raise ValueError(f"xquad_r: fractions must be (train, validation, test), got {list(fractions)}")
    return values  # type: ignore[return-value]  # length checked above; assign_splits checks the values


def _split_keys(judg: pd.DataFrame, split_by: str, path: Path) -> pd.Series:
    """The hash key of each row: one per question across all its translations."""
    pid = judg["parallel_id"].astype(str)
    if split_by == "question":
        return pid
    # doc_id = "{lang}:{article:02d}:{paragraph:02d}:{sentence:02d}"; the article numbering is parallel.
    article = judg["doc_id"].astype(str).str.split(":").str[1]
    if article.isna().any():
        row = int(article.isna().to_numpy().argmax())
        raise DataError(f"{path}: row {row + 1}: doc_id {judg['doc_id'].iloc[row]!r} is not lang:article:...")
    per_question = article.groupby(pid).nunique()
    if (per_question > 1).any():
        bad = per_question[per_question > 1].index[0]
        raise DataError(
            f"{path}: question {bad!r} points to different articles in different languages; "
            "split_by='article' needs parallel article numbering (use split_by='question')"
        )
    return "article:" + article


def _keep_languages(
    docs: pd.DataFrame, judg: pd.DataFrame, languages: Sequence[str], path: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if isinstance(languages, str):
        languages = [languages]
    wanted = [str(lang) for lang in languages]
    have = sorted(docs["language"].astype(str).unique())
    unknown = [lang for lang in wanted if lang not in have]
    if not wanted or unknown:
        raise ValueError(f"xquad_r: unknown language(s) {unknown or wanted} in {path.parent}; it has {have}")
    keep_docs = docs["language"].astype(str).isin(wanted)
    keep_judg = judg["language"].astype(str).isin(wanted)
    return docs[keep_docs].reset_index(drop=True), judg[keep_judg].reset_index(drop=True)
