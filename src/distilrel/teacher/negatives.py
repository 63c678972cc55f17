"""Hard negatives for retrieval datasets: a cross-encoder needs irrelevant pairs, a QA set judges only the
answer. For each query, the first-stage retriever's best documents the query has no judgment for become
pairs at the lowest level (see :class:`distilrel.teacher.config.NegativesConfig`).

The corpus a query searches is that of :meth:`Dataset` ``meta["corpus_by"]`` (its language, by default),
exactly as evaluation ranks it, so the negatives are the documents the teacher will later have to push down.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import pandas as pd

from distilrel.data.schema import Dataset
from distilrel.evaluate.scorer import Retriever

#: ``label`` of a mined pair (the raw-label column keeps them apart from human judgments).
MINED_LABEL = "mined-negative"


def mine_negatives(
    dataset: Dataset,
    judgments: pd.DataFrame,
    retriever: Retriever,
    k: int,
    texts_of: Callable[[Collection[str]], Mapping[str, str]],
) -> pd.DataFrame:
    """``judgments`` (rows of ``dataset``) plus up to ``k`` mined rows per query, level ``levels.k - 1``.

    A document any judgment of ``dataset`` pairs with the query (in any split) is never mined for it.
    ``texts_of(doc_ids)``: the text the retriever reads per doc id (the teacher's training text).
    Fewer than ``k`` rows come back only when the query's corpus has fewer unjudged documents.
    """
    if k < 1:
        raise ValueError(f"negatives: k must be >= 1, got {k}")
    if judgments.empty:
        return judgments
    judged = dataset.judgments.groupby("query_id")["doc_id"].agg(lambda s: set(s.astype(str))).to_dict()
    docs = dataset.documents
    by = [c for c in _corpus_by(dataset) if c in docs.columns and c in judgments.columns]
    queries = judgments.drop_duplicates("query_id")
    mined: list[dict[str, object]] = []
    groups = queries.groupby(by, sort=True) if by else [((), queries)]
    for key, qs in groups:
        corpus = docs
        for col, value in zip(by, key if isinstance(key, tuple) else (key,), strict=True):
            corpus = corpus[corpus[col] == value]
        ids = corpus["doc_id"].astype(str).tolist()
        texts = texts_of(ids)
        retriever.index(ids, [texts[d] for d in ids])
        # Enough extra hits that dropping the judged documents still leaves k.
        extra = max(len(judged.get(q, ())) for q in qs["query_id"])
        hits = retriever.search(qs["query"].astype(str).tolist(), k + extra)
        for (_, row), found in zip(qs.iterrows(), hits, strict=True):
            skip = judged.get(row["query_id"], set())
            picked = [d for d, _ in found if d not in skip][:k]
            mined += [{**row.to_dict(), "doc_id": d} for d in picked]
    if not mined:
        return judgments
    rows = pd.DataFrame(mined, columns=judgments.columns)
    rows["level"] = dataset.levels.k - 1
    rows["label"] = MINED_LABEL
    return pd.concat([judgments, rows.astype(judgments.dtypes.to_dict())], ignore_index=True)


def _corpus_by(dataset: Dataset) -> tuple[str, ...]:
    value = dataset.meta.get("corpus_by", ("language",))
    return tuple(str(c) for c in value) if isinstance(value, list | tuple) else ("language",)


def load_retriever(name: str, source: str = "config") -> Retriever:
    """The first-stage retriever a ``negatives`` table names; a scorer that cannot search is an error."""
    from distilrel.config import ConfigError
    from distilrel.evaluate.scorers import load_scorer

    try:
        scorer = load_scorer(name)
    except (FileNotFoundError, ImportError, ValueError) as e:
        raise ConfigError(f"{source}: negatives retriever {name!r} cannot be loaded: {e}") from e
    if not isinstance(scorer, Retriever):
        raise ConfigError(
            f"{source}: negatives retriever {name!r} ({type(scorer).__name__}) cannot search a corpus; "
            "use bm25, a bi-encoder (minilm, e5, a model folder)"
        )
    return scorer
