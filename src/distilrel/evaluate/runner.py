"""Re-rank (or retrieve) every query of a split with one Scorer and score the ranking per query.

``rerank`` datasets: each query's judged candidates are ranked by the scorer.
``retrieve`` datasets: each query ranks the corpus of its language; a scorer that is also a
:class:`Retriever` searches the corpus itself, any other scorer re-ranks BM25's top ``depth``.
Unjudged documents count as grade 0 (as BEIR does).

Besides the per-query ranking metrics, ``EvalResult.classifier`` holds measures over all judged pairs of
a ``rerank`` split (keys, for every scorer unless noted):

* ``pair_auc``: AUROC of the scores, relevant (the levels precision counts) vs not;
* ``auroc>=<level name>``, one per level but the last: AUROC of the scores, pairs at least as relevant
  as that level (in the dataset's own levels) vs the rest, e.g. ``auroc>=E``, ``auroc>=S``, ``auroc>=C``
  on ESCI; a threshold one of whose classes is empty in the split is left out;
* ``level_accuracy``, ``macro_f1``: scorers that predict levels, in the scorer's own level scale;
* ``rmse``: scorers that predict levels, on datasets whose loader declares a numeric raw rating
  (``Dataset.meta["raw_scale"]``, e.g. Home Depot's rater means on 1..3): the expected grade under the
  predicted distribution, mapped onto the raw scale, vs the raw ``label`` (see :func:`_rating_rmse`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from distilrel.data.levels import LevelMapping, remap_levels
from distilrel.data.schema import Dataset
from distilrel.evaluate.scorer import Retriever, Scorer
from distilrel.metrics import breakdown, mean_scores, query_length_bucket, score_run
from distilrel.metrics.functions import auroc_at_thresholds, level_accuracy, macro_f1, pair_auc, rmse
from distilrel.text.builder import TextBuilder

DEFAULT_METRICS = ("ndcg@10", "p@8", "ndcg", "mrr@10", "recall@10")
RETRIEVE_METRICS = ("ndcg@10", "p@8", "mrr@10", "recall@10", "recall@100")

Run = dict[str, dict[str, float]]


@dataclass(frozen=True)
class EvalSettings:
    split: str = "test"
    max_queries: int | None = None
    metrics: tuple[str, ...] = ()
    depth: int = 100  # candidates per query for retrieve tasks
    seed: int = 0  # which queries --max-queries keeps
    segments: tuple[str, ...] = ()  # extra segment columns; language + query length are always there


@dataclass
class EvalResult:
    dataset: str
    scorer: str
    split: str
    task: str
    run: Run
    qrels: dict[str, dict[str, int]]
    per_query: pd.DataFrame  # index query_id; one column per metric + segment columns
    metrics: tuple[str, ...]
    segments: tuple[str, ...]
    summary: dict[str, float]
    classifier: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    pairs_scored: int = 0

    def by_segment(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        for seg in self.segments:
            if self.per_query[seg].nunique() > 1:
                table = breakdown(self.per_query[list(self.metrics)], self.per_query[[seg]], by=[seg])
                # breakdown's index is (segment, value) with an ("all", "all") row; one segment a table.
                table.index = pd.Index([value for _, value in table.index], name=seg)
                table["queries"] = table["queries"].astype(int)
                out[seg] = table
        return out


def break_ties(run: Run) -> Run:
    """Make every query's scores strictly decreasing in our tie order (score desc, doc id asc).

    Tied scores are common (BM25 on identical titles, a classifier's identical distributions) and every
    tool breaks them its own way (ranx: an unstable sort on hashed ids; trec_eval: doc id descending).
    Nudging each tie by a step far below the query's smallest score gap makes run.trec mean one ranking
    to every tool, so metrics agree to the last digit.
    """
    out: Run = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
        scores = np.array([s for _, s in ranked], dtype=np.float64)
        distinct = np.unique(scores)
        if len(distinct) == len(scores):
            out[qid] = dict(ranked)
            continue
        gap = float(np.min(np.diff(distinct))) if len(distinct) > 1 else 1.0
        step = min(gap, 1.0) / (len(scores) + 1) * 1e-3
        adjusted = scores.copy()
        for i in range(1, len(scores)):
            if scores[i] == scores[i - 1]:
                adjusted[i] = adjusted[i - 1] - step
        out[qid] = {d: float(s) for (d, _), s in zip(ranked, adjusted, strict=True)}
    return out


def text_builder_for(
    scorer: Scorer, dataset: Dataset, fields: Sequence[str | dict[str, object]] | None = None
) -> TextBuilder:
    """The document text a scorer reads: explicit ``fields`` first, else the recipe a trained model was
    saved with (so evaluation builds the text training built), else the dataset's default fields."""
    tokenizer = getattr(scorer, "tokenizer", None)
    if fields:
        return TextBuilder.from_config(list(fields), tokenizer=tokenizer)
    recipe = getattr(scorer, "text_builder", None)
    if callable(recipe):
        return recipe()
    return TextBuilder.from_config(list(dataset.fields), tokenizer=tokenizer)


def _select_queries(judgments: pd.DataFrame, settings: EvalSettings) -> pd.DataFrame:
    qids = judgments["query_id"].drop_duplicates().sort_values()
    if settings.max_queries is not None and len(qids) > settings.max_queries:
        qids = qids.sample(n=settings.max_queries, random_state=settings.seed).sort_values()
        judgments = judgments[judgments["query_id"].isin(set(qids))]
    return judgments


def _score_pairs(scorer: Scorer, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    scores = np.asarray(scorer.score(list(queries), list(texts)), dtype=np.float64)
    if scores.shape != (len(queries),):
        raise ValueError(f"scorer {scorer.name!r} returned shape {scores.shape} for {len(queries)} pairs")
    return scores


def _rerank(judged: pd.DataFrame, texts: dict[str, str], scorer: Scorer) -> Run:
    scores = _score_pairs(scorer, judged["query"].tolist(), [texts[d] for d in judged["doc_id"]])
    run: Run = {}
    for qid, did, s in zip(judged["query_id"], judged["doc_id"], scores, strict=True):
        run.setdefault(qid, {})[did] = float(s)
    return run


def _retrieve(
    dataset: Dataset, judged: pd.DataFrame, texts: dict[str, str], scorer: Scorer, depth: int
) -> Run:
    from distilrel.retrieve.bm25 import BM25Scorer

    queries = judged.drop_duplicates("query_id")
    docs = dataset.documents
    run: Run = {}
    # One corpus per language: XQuAD-R ranks the sentences of the question's own language.
    for lang, qs in queries.groupby("language", sort=True):
        corpus = docs[docs["language"] == lang] if docs["language"].nunique() > 1 else docs
        ids = corpus["doc_id"].tolist()
        corpus_texts = [texts[d] for d in ids]
        first: Retriever = scorer if isinstance(scorer, Retriever) else BM25Scorer()
        first.index(ids, corpus_texts)
        hits = first.search(qs["query"].tolist(), depth)
        if first is scorer:
            for qid, h in zip(qs["query_id"], hits, strict=True):
                run[qid] = {d: float(s) for d, s in h}
            continue
        # Re-rank BM25's candidates with the (cross-encoder) scorer.
        scorer.fit_corpus(ids, corpus_texts)
        pq = [q for q, h in zip(qs["query"], hits, strict=True) for _ in h]
        pd_ = [d for h in hits for d, _ in h]
        scores = _score_pairs(scorer, pq, [texts[d] for d in pd_])
        i = 0
        for qid, h in zip(qs["query_id"], hits, strict=True):
            run[qid] = {d: float(s) for (d, _), s in zip(h, scores[i : i + len(h)], strict=True)}
            i += len(h)
    return run


def _classifier_metrics(
    judged: pd.DataFrame,
    texts: dict[str, str],
    scorer: Scorer,
    levels: LevelMapping,
    raw_scale: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Level accuracy and macro-F1, in the scorer's own level scale, and the rating RMSE where the dataset
    has a numeric ``raw_scale`` (see :func:`_rating_rmse`).

    A teacher trained on several datasets predicts ONE target scale (e.g. 5 levels); the dataset's human
    levels are moved onto it with the same relative-grade policy training used (``remap_levels``).
    """
    probs = np.asarray(scorer.predict_levels(judged["query"].tolist(), [texts[d] for d in judged["doc_id"]]))
    target: LevelMapping = getattr(scorer, "levels", None) or levels
    if probs.ndim != 2 or probs.shape[1] != target.k:
        raise ValueError(
            f"scorer {scorer.name!r} gave levels of shape {probs.shape}; expected (n, {target.k})"
        )
    to_target = np.asarray(remap_levels(levels, target)) if target != levels else np.arange(levels.k)
    true = to_target[judged["level"].to_numpy()]
    pred = probs.argmax(axis=1)
    out = {
        "level_accuracy": float(level_accuracy(true, pred)),
        "macro_f1": float(macro_f1(true, pred, target.k)),
    }
    if raw_scale is not None:
        out["rmse"] = _rating_rmse(probs, target, judged["label"], raw_scale)
    return out


def _rating_rmse(
    probs: np.ndarray, target: LevelMapping, labels: pd.Series, raw_scale: tuple[float, float]
) -> float:
    """RMSE of the predicted rating vs the raw rating ``labels`` (numbers, or numbers written as text).

    The predicted rating is the expected grade under each row of ``probs`` (n, K) over ``target``'s levels,
    mapped linearly onto ``raw_scale = (lo, hi)``: ``rating = lo + (E[grade] - g_min) / (g_max - g_min) *
    (hi - lo)``, so the least relevant grade lands on ``lo`` and the most relevant on ``hi`` (the same
    relative-grade reading ``remap_levels`` uses). Home Depot: grades 0..4 onto rater means 1..3, i.e.
    ``rating = 1 + grade / 2``, each level's grade landing on the lower edge of its bin.
    """
    raw = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(raw).all():
        bad = labels[~np.isfinite(raw)].iloc[0]
        raise ValueError(f"the dataset declares raw_scale {raw_scale} but has a non-numeric label {bad!r}")
    lo, hi = raw_scale
    grades = np.asarray(target.grades, dtype=np.float64)  # (K,)
    g_min, g_max = grades.min(), grades.max()
    expected = probs @ grades  # (n,)
    rating = lo + (expected - g_min) / (g_max - g_min) * (hi - lo)
    return rmse(rating, raw)


def _raw_scale(dataset: Dataset) -> tuple[float, float] | None:
    """``(lo, hi)`` of the numeric raw rating a loader declares in ``meta["raw_scale"]``; None without one."""
    scale = dataset.meta.get("raw_scale")
    if scale is None:
        return None
    lo, hi = (float(x) for x in scale)
    if not lo < hi:
        raise ValueError(f"dataset {dataset.name!r}: raw_scale must be (lo, hi) with lo < hi, got {scale}")
    return lo, hi


def _pointwise_metrics(judged: pd.DataFrame, run: Run, levels: LevelMapping) -> dict[str, float]:
    """Over all judged pairs, from the raw scores: pair AUC (relevant = the levels counted relevant for
    precision) and ``auroc>=<level name>`` at every level threshold of the dataset's own levels. Only
    meaningful where scores are comparable across queries; a measure is absent when one class is missing."""
    lv = judged["level"].to_numpy()
    scores = np.array([run[q][d] for q, d in zip(judged["query_id"], judged["doc_id"], strict=True)])
    out: dict[str, float] = {}
    relevant = lv < levels.relevant
    if relevant.any() and not relevant.all():
        out["pair_auc"] = pair_auc(relevant, scores)
    for t, auc in auroc_at_thresholds(lv, scores, levels.k).items():
        if not np.isnan(auc):
            out[f"auroc>={levels.names[t - 1]}"] = auc
    return out


def evaluate(dataset: Dataset, scorer: Scorer, builder: TextBuilder, settings: EvalSettings) -> EvalResult:
    """Rank every query of ``settings.split`` with ``scorer`` and compute per-query metrics."""
    start = time.perf_counter()
    split = dataset.split(settings.split)
    judged = _select_queries(split.judgments, settings)
    metrics = settings.metrics or (RETRIEVE_METRICS if dataset.task == "retrieve" else DEFAULT_METRICS)
    levels = dataset.levels

    needed = (
        dataset.documents
        if dataset.task == "retrieve"
        else dataset.documents[dataset.documents["doc_id"].isin(set(judged["doc_id"]))]
    )
    texts = dict(zip(needed["doc_id"], builder.build_many(needed), strict=True))

    pointwise: dict[str, float] = {}
    if dataset.task == "retrieve":
        run = _retrieve(dataset, judged, texts, scorer, settings.depth)
        pairs = sum(len(v) for v in run.values())
    else:
        scorer.fit_corpus(list(texts), list(texts.values()))
        run = _rerank(judged, texts, scorer)
        pairs = len(judged)
        pointwise = _pointwise_metrics(judged, run, levels)

    run = break_ties(run)
    grades = np.asarray(levels.grades)
    qrels: dict[str, dict[str, int]] = {}
    for qid, did, lvl in zip(judged["query_id"], judged["doc_id"], judged["level"], strict=True):
        qrels.setdefault(qid, {})[did] = int(grades[lvl])
    gain_map = {int(g): float(x) for g, x in zip(levels.grades, levels.gains, strict=True)}
    rel_threshold = int(levels.grades[levels.relevant - 1])
    per_query = score_run(run, qrels, list(metrics), gains=gain_map, rel_threshold=rel_threshold)

    seg_cols = ["language", *[s for s in (*dataset.segments, *settings.segments) if s != "language"]]
    qinfo = judged.drop_duplicates("query_id").set_index("query_id")
    seg = pd.DataFrame(index=per_query.index)
    for col in seg_cols:
        if col in qinfo.columns:
            seg[col] = qinfo.loc[per_query.index, col].astype(str)
    seg["query_length"] = [query_length_bucket(q) for q in qinfo.loc[per_query.index, "query"]]
    per_query = per_query.join(seg)

    classifier = (
        _classifier_metrics(judged, texts, scorer, levels, _raw_scale(dataset))
        if scorer.predicts_levels and dataset.task == "rerank"
        else {}
    )
    classifier = {**classifier, **pointwise}
    return EvalResult(
        dataset=dataset.name,
        scorer=scorer.name,
        split=settings.split,
        task=dataset.task,
        run=run,
        qrels=qrels,
        per_query=per_query,
        metrics=tuple(metrics),
        segments=tuple(seg.columns),
        summary=mean_scores(per_query[list(metrics)]),
        classifier=classifier,
        seconds=time.perf_counter() - start,
        pairs_scored=pairs,
    )
