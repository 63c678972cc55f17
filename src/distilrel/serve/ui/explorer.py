"""What the relevance explorer shows, computed without any HTTP: a query's candidates ranked by BM25, the
student and the teacher side by side, human labels, NDCG@10 per ranker, related documents, judging, and
the agreement report. :mod:`distilrel.serve.ui.routes` only renders these objects.

Candidates of a query: when the catalog dataset judges it, exactly its judged documents (the re-ranking
setting every evaluation here uses, so the NDCG@10 shown is the one ``distilrel evaluate`` reports for a
re-ranker on this query); otherwise the union of the BM25 and ANN top ``pool`` documents. NDCG is computed
by :func:`distilrel.metrics.ndcg` with the catalog's own gains; it is shown only for judged queries.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from distilrel.judge.agreement import Disagreement, confusion, most_disagreeing, rank_disagreement
from distilrel.judge.store import Judgment, JudgmentStore, conflicts
from distilrel.metrics import level_accuracy, ndcg
from distilrel.serve.engine import Candidate, Engine, RankResult, TeacherUnavailable

if TYPE_CHECKING:
    from distilrel.data.schema import Dataset
    from distilrel.retrieve.bm25 import BM25Scorer

NDCG_K = 10
TITLE_CHARS = 120  # a title made from a long text is cut here (the full text is shown below it)
TEXT_CHARS = 400


class JudgingDisabled(RuntimeError):
    """The server was started without a judgments folder (``--judgments``)."""


@dataclass(frozen=True)
class DocView:
    title: str
    text: str


@dataclass(frozen=True)
class Row:
    doc_id: str
    rank: int  # 1-based
    score: float
    levels: tuple[float, ...] | None  # the ranker's level distribution, most relevant first
    human: str | None  # the catalog's label (a level name of the catalog), None when unjudged


@dataclass(frozen=True)
class Column:
    key: str  # bm25 / student / teacher
    title: str
    rows: list[Row]
    level_names: list[str] | None = None  # None: the ranker predicts no levels
    ndcg: float | None = None  # NDCG@10 on judged queries
    unavailable: str | None = None  # why the column is empty


@dataclass(frozen=True)
class Exploration:
    query: str
    judged: bool
    candidates_from: str
    columns: list[Column]
    docs: dict[str, DocView]
    judgments: dict[str, list[dict[str, str]]]  # doc id -> explorer judgments, oldest first
    conflicting: set[str]  # doc ids whose explorer judgments disagree
    not_indexed: list[str]  # judged doc ids that the embedding store lacks (not ranked)


@dataclass(frozen=True)
class ConfusionView:
    title: str
    human_levels: list[str]
    model_levels: list[str]
    counts: np.ndarray  # (len(human_levels), len(model_levels))
    accuracy: float | None  # when both sides use the same levels
    skipped: int  # pairs whose document is not in the index


@dataclass(frozen=True)
class AgreementReport:
    model: str  # which model's levels the matrices show
    matrices: list[ConfusionView]
    disagreement: list[tuple[str, Disagreement]] = field(default_factory=list)
    disagreement_note: str | None = None  # why there is no disagreement table


class Explorer:
    """The explorer over one engine, an optional catalog dataset (judged queries, human labels, titles)
    and an optional judgments store (judging is off without one)."""

    def __init__(
        self,
        engine: Engine,
        catalog: Dataset | None = None,
        store: JudgmentStore | None = None,
        annotator: str = "anonymous",
        pool: int = 20,
        related_k: int = 8,
    ) -> None:
        if pool < 1 or related_k < 1:
            raise ValueError(f"pool and related_k must be >= 1, got {pool}, {related_k}")
        self.engine = engine
        self.catalog = catalog
        self.store = store
        self.annotator = annotator
        self.pool = pool
        self.related_k = related_k  # related documents the page lists per result
        self.level_names = list(engine.level_names)
        self._texts = self._doc_texts()
        self._titles = self._doc_titles()
        self._qrels: dict[str, dict[str, int]] = defaultdict(dict)
        if catalog is not None:
            for q, d, lvl in catalog.judgments[["query", "doc_id", "level"]].itertuples(index=False):
                self._qrels[str(q).strip()][str(d)] = int(lvl)
        self._bm25 = self._build_bm25()

    # --- set-up --------------------------------------------------------------------------------------

    def _doc_texts(self) -> dict[str, str]:
        """The text each document is scored on: the store's (what the models read), else the catalog's
        fields joined."""
        texts = {d: t for d, t in zip(self.engine.store.doc_ids, self.engine.store.texts, strict=True) if t}
        if self.catalog is not None:
            fields = [f for f in self.catalog.fields if f in self.catalog.documents.columns]
            for row in self.catalog.documents[["doc_id", *fields]].itertuples(index=False):
                texts.setdefault(str(row[0]), " ".join(str(v) for v in row[1:] if v))
        return texts

    def _doc_titles(self) -> dict[str, str]:
        if self.catalog is None or not self.catalog.fields:
            return {}
        first = self.catalog.fields[0]
        docs = self.catalog.documents
        return dict(zip(docs["doc_id"].astype(str), docs[first].astype(str), strict=True))

    def _build_bm25(self) -> BM25Scorer | None:
        from distilrel.retrieve.bm25 import BM25Scorer

        ids = [d for d in self.engine.store.doc_ids if d in self._texts]
        if not ids:
            return None
        bm25 = BM25Scorer()
        try:
            bm25.index(ids, [self._texts[d] for d in ids])
        except ValueError:  # nothing indexable (every text empty or stopwords)
            return None
        return bm25

    # --- look-ups ------------------------------------------------------------------------------------

    def doc(self, doc_id: str) -> DocView:
        text = self._texts.get(doc_id, "")
        title = self._titles.get(doc_id) or text[:TITLE_CHARS] or doc_id
        return DocView(title=title, text=text[:TEXT_CHARS])

    def judged_queries(self, limit: int = 2000) -> list[tuple[str, int]]:
        """(query, judged documents) of the catalog, in catalog order, for the picker."""
        return [(q, len(docs)) for q, docs in list(self._qrels.items())[:limit]]

    @property
    def has_teacher(self) -> bool:
        return self.engine.teacher is not None

    @property
    def catalog_levels(self) -> list[str]:
        return list(self.catalog.levels.names) if self.catalog is not None else []

    # --- one query ------------------------------------------------------------------------------------

    def candidates(self, query: str) -> tuple[list[str], list[str], str]:
        """(candidate ids in the index, judged ids not in the index, where the candidates come from)."""
        judged = self._qrels.get(query.strip())
        if judged:
            ids = [d for d in judged if d in self.engine.store.row_of]
            return ids, [d for d in judged if d not in self.engine.store.row_of], "the catalog's judgments"
        pooled: dict[str, None] = {}
        if self._bm25 is not None:
            pooled.update((d, None) for d, _ in self._bm25.search([query], self.pool)[0])
        _, ann = self.engine.search(query, k=self.pool, top_n=self.pool)
        pooled.update((d, None) for d in ann)
        return list(pooled), [], f"BM25 top {self.pool} + ANN top {self.pool} (the query is not judged)"

    def explore(self, query: str) -> Exploration:
        query = query.strip()
        if not query:
            raise ValueError("the query is empty")
        ids, not_indexed, source = self.candidates(query)
        qrels = self._qrels.get(query, {})
        columns = [self._bm25_column(query, ids, qrels), *self._model_columns(query, ids, qrels)]
        judgments, conflicting = self._explorer_judgments(query)
        shown = {r.doc_id for c in columns for r in c.rows}
        return Exploration(
            query=query,
            judged=bool(qrels),
            candidates_from=source,
            columns=columns,
            docs={d: self.doc(d) for d in shown},
            judgments=judgments,
            conflicting=conflicting,
            not_indexed=not_indexed,
        )

    def _human(self, qrels: dict[str, int], doc_id: str) -> str | None:
        level = qrels.get(doc_id)
        return None if level is None or self.catalog is None else self.catalog.levels.names[level]

    def _ndcg(self, qrels: dict[str, int], ranked: Sequence[str]) -> float | None:
        if not qrels or self.catalog is None:
            return None
        gains = np.asarray(self.catalog.levels.gains, dtype=np.float64)
        ranked_gains = [gains[qrels[d]] if d in qrels else 0.0 for d in ranked]
        ideal = [gains[level] for level in qrels.values()]
        # One query: (1, n) rows, as the metrics kernels take a batch of queries.
        return float(ndcg(np.asarray([ranked_gains]), np.asarray([ideal]), k=NDCG_K)[0])

    def _bm25_column(self, query: str, ids: list[str], qrels: dict[str, int]) -> Column:
        title = "BM25"
        if self._bm25 is None:
            return Column("bm25", title, [], unavailable="no document texts to index")
        scorable = [d for d in ids if d in self._texts]
        scores = self._bm25.score([query] * len(scorable), [self._texts[d] for d in scorable])  # (n,)
        order = np.argsort(-scores, kind="stable")
        rows = [
            Row(scorable[j], r + 1, float(scores[j]), None, self._human(qrels, scorable[j]))
            for r, j in enumerate(order)
        ]
        return Column("bm25", title, rows, None, self._ndcg(qrels, [r.doc_id for r in rows]))

    def _rank(self, query: str, ids: list[str], teacher: bool) -> RankResult:
        cands = [Candidate(id=d) for d in ids]
        return self.engine.rerank(query, cands, teacher_top=len(cands) if teacher else 0)

    def _model_columns(self, query: str, ids: list[str], qrels: dict[str, int]) -> list[Column]:
        out = []
        for key, title, use_teacher in (("student", "student", False), ("teacher", "teacher", True)):
            if use_teacher and not self.has_teacher:
                out.append(
                    Column(key, title, [], unavailable="this server has no teacher (start it with --teacher)")
                )
                continue
            if not ids:
                out.append(Column(key, title, [], self.level_names, None))
                continue
            try:
                result = self._rank(query, ids, use_teacher)
            except TeacherUnavailable as e:
                out.append(Column(key, title, [], unavailable=str(e)))
                continue
            rows = [
                Row(str(s.id), r + 1, s.score, s.levels, self._human(qrels, str(s.id)))
                for r, s in enumerate(result.results)
            ]
            out.append(
                Column(key, title, rows, self.level_names, self._ndcg(qrels, [r.doc_id for r in rows]))
            )
        return out

    def _explorer_judgments(self, query: str) -> tuple[dict[str, list[dict[str, str]]], set[str]]:
        if self.store is None:
            return {}, set()
        df = self.store.read()
        df = df[df["query"].str.strip() == query]
        by_doc: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in df.itertuples(index=False):
            by_doc[str(row.doc_id)].append(
                {"label": row.label, "annotator": row.annotator, "judged_at": row.judged_at.isoformat()}
            )
        return dict(by_doc), set(conflicts(df)["doc_id"])

    # --- related, judging ------------------------------------------------------------------------------

    def related(self, doc_id: str, k: int = 8) -> list[tuple[str, float, DocView]]:
        """The engine's nearest documents (as ``/v1/related``) with their titles."""
        return [(d, s, self.doc(d)) for d, s in self.engine.related(doc_id, k)]

    def judge(
        self, query: str, doc_id: str, label: str, annotator: str | None = None
    ) -> list[dict[str, str]]:
        """Append one judgment; returns every explorer judgment of the pair (conflicts included)."""
        if self.store is None:
            raise JudgingDisabled("judging is off: start the server with --judgments FOLDER")
        query = query.strip()
        if not query:
            raise ValueError("the query is empty")
        if doc_id not in self._texts and doc_id not in self.engine.store.row_of:
            raise ValueError(f"doc id {doc_id!r} is not in the catalog")
        self.store.append([Judgment(query, doc_id, label, (annotator or self.annotator).strip())])
        return self._explorer_judgments(query)[0].get(doc_id, [])

    # --- agreement ---------------------------------------------------------------------------------------

    def agreement(self, max_queries: int = 50) -> AgreementReport:
        """Confusion of the teacher's levels (the student's where there is no teacher) against the
        explorer's judgments and the catalog's (its first ``max_queries`` judged queries), and the
        queries where the student and the teacher disagree most."""
        teacher = self.has_teacher
        model = "teacher" if teacher else "student (this server has no teacher)"
        matrices = []
        if self.store is not None:
            df = self.store.read()
            pairs = [
                (q.strip(), d, self.level_names.index(lbl))
                for q, d, lbl in df[["query", "doc_id", "label"]].itertuples(index=False)
            ]
            matrices.append(
                self._confusion(
                    "explorer judgments (every judgment, conflicts included)",
                    pairs,
                    self.level_names,
                    teacher,
                )
            )
        if self.catalog is not None:
            pairs = [
                (q, d, lvl) for q, docs in list(self._qrels.items())[:max_queries] for d, lvl in docs.items()
            ]
            title = f"catalog {self.catalog.name!r} judgments (first {max_queries} queries)"
            matrices.append(self._confusion(title, pairs, self.catalog_levels, teacher))
        if not teacher:
            note = "needs a teacher: start the server with --teacher to compare the student with it"
            return AgreementReport(model, matrices, [], note)
        queries = list(self._qrels)[:max_queries]
        if self.store is not None:
            queries += [q for q in dict.fromkeys(self.store.read()["query"].str.strip()) if q not in queries]
        by_query = {}
        for q in queries:
            ids = self.candidates(q)[0]
            if len(ids) < 2:
                continue
            student = {s.index: s.score for s in self._rank(q, ids, False).results}
            teach = {s.index: s.score for s in self._rank(q, ids, True).results}
            by_query[q] = rank_disagreement(
                [student[i] for i in range(len(ids))], [teach[i] for i in range(len(ids))]
            )
        note = None if by_query else "no query with at least 2 candidates"
        return AgreementReport(model, matrices, most_disagreeing(by_query), note)

    def _confusion(
        self, title: str, pairs: list[tuple[str, str, int]], human_levels: list[str], teacher: bool
    ) -> ConfusionView:
        by_query: dict[str, list[tuple[str, int]]] = defaultdict(list)
        skipped = 0
        for q, d, lvl in pairs:
            if d in self.engine.store.row_of:
                by_query[q].append((d, lvl))
            else:
                skipped += 1
        human: list[int] = []
        predicted: list[int] = []
        for q, items in by_query.items():
            ids = list(dict.fromkeys(d for d, _ in items))
            levels = {s.id: int(np.argmax(s.levels)) for s in self._rank(q, ids, teacher).results}
            human += [lvl for _, lvl in items]
            predicted += [levels[d] for d, _ in items]
        counts = confusion(human, predicted, len(human_levels), len(self.level_names))
        same = human_levels == self.level_names and len(human) > 0
        return ConfusionView(
            title,
            human_levels,
            self.level_names,
            counts,
            level_accuracy(human, predicted) if same else None,
            skipped,
        )


def format_score(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
