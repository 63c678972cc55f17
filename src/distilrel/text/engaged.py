"""The ``engaged_queries`` document field: past queries that found the document highly relevant.

Built from the TRAIN split only. A test query's text must never reach a document's text, or a model
would be shown the evaluation query next to its answer. So we use only ``split == "train"`` judgments,
and we also drop any train query whose (case- and whitespace-normalised) text equals a validation or
test query, since the same words under another query id would leak just as much.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from distilrel.data.levels import LevelMapping
from distilrel.data.schema import Dataset

COLUMN = "engaged_queries"
SEPARATOR = " | "


def _norm(q: pd.Series) -> pd.Series:
    return q.astype(str).str.split().str.join(" ").str.lower()


def engaged_queries(
    judgments: pd.DataFrame, levels: LevelMapping, top_levels: int = 1, max_queries: int = 20
) -> pd.Series:
    """doc_id → ``"q1 | q2 | ..."``: distinct train queries that judged the doc at one of the
    ``top_levels`` most relevant levels, best level first then alphabetically, at most ``max_queries``.
    Docs without such a query are absent (see :func:`add_engaged_queries` for a full column)."""
    if not 1 <= top_levels <= levels.k:
        raise ValueError(f"top_levels must be in 1..{levels.k}, got {top_levels}")
    if max_queries < 1:
        raise ValueError(f"max_queries must be >= 1, got {max_queries}")
    held_out = set(_norm(judgments.loc[judgments["split"] != "train", "query"]))
    train = judgments[(judgments["split"] == "train") & (judgments["level"] < top_levels)]
    train = train.assign(_q=_norm(train["query"]))
    train = train[~train["_q"].isin(held_out)]
    # One entry per (doc, query text) at its best level; the order makes the output deterministic.
    best = (
        train.sort_values(["doc_id", "level", "_q"], kind="stable")
        .drop_duplicates(["doc_id", "_q"])
        .groupby("doc_id", sort=True)
        .head(max_queries)
    )
    out = best.groupby("doc_id", sort=True)["query"].agg(
        lambda qs: SEPARATOR.join(" ".join(q.split()) for q in qs)
    )
    out.name = COLUMN
    return out.astype(str)


def add_engaged_queries(dataset: Dataset, top_levels: int = 1, max_queries: int = 20) -> Dataset:
    """The dataset with a documents column ``engaged_queries`` (``""`` for docs no train query engaged).

    ``Dataset.fields`` is unchanged: add ``engaged_queries`` to the text builder's field list to use it.
    """
    eq = engaged_queries(dataset.judgments, dataset.levels, top_levels, max_queries)
    docs = dataset.documents.copy()
    docs[COLUMN] = docs["doc_id"].map(eq).fillna("").astype(str)
    meta = {
        **dataset.meta,
        COLUMN: {"top_levels": top_levels, "max_queries": max_queries, "from_split": "train"},
    }
    return dataclasses.replace(dataset, documents=docs, meta=meta)
