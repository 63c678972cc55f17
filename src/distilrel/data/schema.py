"""Canonical tables. Every loader returns a :class:`Dataset`; nothing downstream knows a dataset's columns.

documents:  doc_id (str), language (str), then one str column per named text field (title, description, ...).
judgments:  query_id (str), query (str), doc_id (str), level (int, 0 = most relevant), label (str, raw),
            split (str: train / validation / test), language (str), plus optional segment columns.
queries:    derived: query_id, query, split, language (one row per query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from distilrel.data.levels import LevelMapping

SPLITS = ("train", "validation", "test")
DOC_KEYS = ("doc_id", "language")
JUDGMENT_COLUMNS = ("query_id", "query", "doc_id", "level", "label", "split", "language")


class DataError(ValueError):
    """Bad input data. The message names the file and row (1-based data row, header excluded)."""


@dataclass(frozen=True)
class Dataset:
    """A judged collection.

    task:   ``rerank`` — each query's judged candidates are re-ranked (graded e-commerce sets);
            ``retrieve`` — each query ranks the whole corpus (of its language), unjudged docs count 0.
    fields: the document text fields in their default order (the text builder's default).
    meta:   loader notes. Every loader sets ``warnings`` (list[str]: repairs and caveats, e.g. collapsed
            identical duplicates, synthesised ids, empty document text), ``source_files`` (list[str]) and
            ``corpus_by`` (columns present in BOTH tables that partition a ``retrieve`` corpus: a query
            ranks only the documents sharing its values; ``("language",)`` by default). Optional
            ``raw_scale``: ``(lo, hi)`` where ``label`` is a numeric rating on that scale (Home Depot).
    """

    name: str
    documents: pd.DataFrame
    judgments: pd.DataFrame
    levels: LevelMapping
    fields: tuple[str, ...]
    task: Literal["rerank", "retrieve"] = "rerank"
    segments: tuple[str, ...] = ("language",)
    meta: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    @property
    def queries(self) -> pd.DataFrame:
        cols = ["query_id", "query", "split", "language"]
        return self.judgments[cols].drop_duplicates("query_id").reset_index(drop=True)

    def split(self, name: str) -> Dataset:
        """Judgments of one split (``all`` keeps everything); documents are kept whole (the corpus)."""
        if name == "all":
            return self
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {[*SPLITS, 'all']}")
        j = self.judgments[self.judgments["split"] == name].reset_index(drop=True)
        if j.empty:
            have = sorted(self.judgments["split"].unique())
            raise ValueError(f"dataset {self.name!r} has no judgments in split {name!r}; it has {have}")
        return Dataset(
            self.name, self.documents, j, self.levels, self.fields, self.task, self.segments, self.meta
        )

    def doc_table(self) -> pd.DataFrame:
        """Documents indexed by doc_id (for lookups)."""
        return self.documents.set_index("doc_id", drop=False)
