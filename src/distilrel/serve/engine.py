"""The serving engine: the student (towers and head, each behind a micro-batcher) and a query cache, the
embedding store and the ANN index, and optionally the teacher for the head of a ranking. The HTTP layer
(``app.py``) is a thin translation of this API; nothing here knows about HTTP or pydantic.

Request path of a re-rank: query → normalised → cache (hit: no model call) → query tower (batched with
concurrent requests) → candidate vectors (doc ids: from the store; inline texts: the store by content
hash, else a document LRU, else the doc tower) → head (batched with concurrent requests too) → level
distributions and scores → optionally the teacher re-scores the best ``teacher_top`` → sorted results.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from distilrel.index.faiss_index import IndexConfig, VectorIndex
from distilrel.index.store import EmbeddingStore, StoreSnapshot
from distilrel.serve.cache import LRUCache, QueryCache, cache_key, normalize_query
from distilrel.text.builder import content_hash

if TYPE_CHECKING:
    from distilrel.student.model import StudentModel
    from distilrel.teacher.scorer import TeacherScorer


class UnknownDocument(LookupError):
    """A doc id that is not in the index (``related``)."""


class EngineSetupError(ValueError):
    """Parts that do not belong together (store of another model, stale index, teacher of other levels)."""


@dataclass(frozen=True)
class EngineConfig:
    teacher_top: int = 0  # default number of results the teacher re-scores (a request may ask otherwise)
    max_batch: int = 64  # texts per tower call of the micro-batchers
    max_head_pairs: int = 4096  # (query, document) pairs per head call
    batch_wait_s: float = 0.0  # extra wait to fill a batch; 0: take whatever queued during the last call
    doc_cache_items: int = 10_000  # inline document texts whose embeddings are kept
    encode_batch_size: int = 64

    def __post_init__(self) -> None:
        if min(self.max_batch, self.max_head_pairs, self.doc_cache_items) < 1 or self.teacher_top < 0:
            raise ValueError(f"EngineConfig: sizes must be >= 1 and teacher_top >= 0, got {self}")
        if self.batch_wait_s < 0:
            raise ValueError(f"EngineConfig.batch_wait_s must be >= 0, got {self.batch_wait_s}")


@dataclass(frozen=True)
class Candidate:
    id: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Scored:
    index: int  # position among the request's candidates
    id: str | None
    score: float
    student_score: float
    levels: tuple[float, ...]
    scorer: str  # "student" or "teacher"


@dataclass(frozen=True)
class RankResult:
    results: list[Scored]
    unknown_ids: list[str]
    query_cached: bool
    teacher_rescored: int
    candidates: int  # scored candidates (known ids + texts)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


J = TypeVar("J")  # one caller's job for a micro-batcher
HeadJob = tuple[np.ndarray, np.ndarray]  # (q (1, dim), candidates (m, dim))


class MicroBatcher(Generic[J]):
    """Runs ``fn(jobs) -> one array per job`` on one worker thread, giving it every job that queued
    during the previous call (up to ``max_batch`` items, counted by ``size``).

    While the model runs one batch, concurrent requests queue up and form the next one, so at
    concurrency 1 nothing waits and at concurrency 32 one forward pass serves many requests. One thread
    owning the model also keeps torch from running many small forward passes against each other (each
    with its own intra-op threads), which on a few cores costs more than the passes themselves.
    """

    def __init__(
        self,
        fn: Callable[[list[J]], list[np.ndarray]],
        size: Callable[[J], int] = len,  # type: ignore[assignment]
        max_batch: int = 64,
        wait_s: float = 0.0,
    ) -> None:
        self.fn = fn
        self.size = size
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queue: queue.SimpleQueue[tuple[J, Future[np.ndarray]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="distilrel-batcher", daemon=True)
        self._thread.start()

    def __call__(self, job: J) -> np.ndarray:
        done: Future[np.ndarray] = Future()
        self._queue.put((job, done))
        return done.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, closing = self._gather(item)
            try:
                results = self.fn([job for job, _ in batch])
            except Exception as e:  # each caller gets the error, the worker lives on
                for _, done in batch:
                    done.set_exception(e)
            else:
                for (_, done), result in zip(batch, results, strict=True):
                    done.set_result(result)
            if closing:
                return

    def _gather(self, first: tuple[J, Future[np.ndarray]]) -> tuple[list[tuple[J, Future[np.ndarray]]], bool]:
        batch, size = [first], self.size(first[0])
        deadline = time.monotonic() + self.wait_s
        while size < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += self.size(item[0])
        return batch, False


def per_job_rows(encode: Callable[[list[str]], np.ndarray]) -> Callable[[list[list[str]]], list[np.ndarray]]:
    """Batch function for text jobs: every job's texts in one ``encode`` call, rows split back per job."""

    def run(jobs: list[list[str]]) -> list[np.ndarray]:
        out = encode([text for job in jobs for text in job])  # (total texts, dim)
        return np.split(out, np.cumsum([len(job) for job in jobs])[:-1])

    return run


def head_batch(student: StudentModel) -> Callable[[list[HeadJob]], list[np.ndarray]]:
    """Batch function for head jobs: the pairs of every job in one head pass, (m, K) distributions back."""

    def run(jobs: list[HeadJob]) -> list[np.ndarray]:
        q = np.concatenate([np.repeat(qj, len(dj), axis=0) for qj, dj in jobs])  # (total pairs, dim)
        d = np.concatenate([dj for _, dj in jobs])  # (total pairs, dim)
        levels = student.predict_levels(q, d)  # (total pairs, K)
        return np.split(levels, np.cumsum([len(dj) for _, dj in jobs])[:-1])

    return run


class Engine:
    """Everything a request needs, loaded once. Thread-safe: the web server calls it from many threads."""

    def __init__(
        self,
        student: StudentModel,
        query_model_id: str,
        store: StoreSnapshot,
        index: VectorIndex,
        cache: QueryCache,
        teacher: TeacherScorer | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.student = student
        self.query_model_id = query_model_id
        self.store = store
        self.index = index
        self.cache = cache
        self.teacher = teacher
        self.config = config or EngineConfig()
        self._check_parts()
        self.level_names = list(student.levels.names)
        # Expected gain as a fraction of the top gain: scores in [0, 1] for student and teacher alike.
        self._student_gains = _unit_gains(student.levels.gains)
        self._teacher_gains = _unit_gains(teacher.gains) if teacher is not None else None
        self._doc_cache = LRUCache(max_items=self.config.doc_cache_items)
        bs, cfg = self.config.encode_batch_size, self.config
        self._encode_queries: MicroBatcher[list[str]] = MicroBatcher(
            per_job_rows(lambda texts: student.encode_queries(texts, batch_size=bs)),
            max_batch=cfg.max_batch,
            wait_s=cfg.batch_wait_s,
        )
        self._encode_docs: MicroBatcher[list[str]] = MicroBatcher(
            per_job_rows(lambda texts: student.encode_docs(texts, batch_size=bs)),
            max_batch=cfg.max_batch,
            wait_s=cfg.batch_wait_s,
        )
        self._head: MicroBatcher[HeadJob] = MicroBatcher(
            head_batch(student), size=lambda job: len(job[1]), max_batch=cfg.max_head_pairs
        )
        self._teacher_lock = threading.Lock()  # one cross-encoder pass at a time: it saturates the CPU alone

    @property
    def model_id(self) -> str:
        """Documents and queries both: the store's doc-tower id and the query-tower id."""
        return f"{self.query_model_id}+{self.store.model_id}"

    @property
    def dim(self) -> int:
        return self.student.dim

    def _check_parts(self) -> None:
        if self.index.model_id != self.store.model_id or self.index.generation != self.store.generation:
            raise EngineSetupError(
                f"the index was built from model {self.index.model_id!r} generation {self.index.generation}, "
                f"the store holds {self.store.model_id!r} generation {self.store.generation}: "
                "rebuild it with `distilrel index build`"
            )
        if len(self.store) and self.store.dim != self.student.dim:
            raise EngineSetupError(
                f"store vectors have dim {self.store.dim}, the student's towers {self.student.dim}"
            )
        if self.teacher is not None and self.teacher.teacher.levels.names != self.student.levels.names:
            raise EngineSetupError(
                f"the teacher's levels {list(self.teacher.teacher.levels.names)} differ from the student's "
                f"{list(self.student.levels.names)}"
            )

    # --- embeddings --------------------------------------------------------------------------------------

    def query_vectors(self, queries: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """(n, dim) query embeddings and, per query, whether the cache answered it."""
        keys = [cache_key(q, self.query_model_id) for q in queries]
        found: dict[str, np.ndarray] = {}
        for key in dict.fromkeys(keys):
            value = self.cache.get(key)
            if value is not None:
                found[key] = value
        cached = [k in found for k in keys]
        missing = {k: normalize_query(q) for k, q in zip(keys, queries, strict=True) if k not in found}
        if missing:
            vectors = self._encode_queries(list(missing.values()))  # (n_missing, dim)
            for key, vec in zip(missing, vectors, strict=True):
                self.cache.put(key, vec)
                found[key] = vec
        out = np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
        return out, cached

    def doc_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) document embeddings: the store's when a text is stored as is, else cached or encoded."""
        hashes = [content_hash(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        todo: dict[str, str] = {}
        for h, text in zip(hashes, texts, strict=True):
            if h in found or h in todo:
                continue
            row = self.store.row_of_hash.get(h)
            value = self.store.vectors[row] if row is not None else self._doc_cache.get(h)
            if value is None:
                todo[h] = text
            else:
                found[h] = value
        if todo:
            for h, vec in zip(todo, self._encode_docs(list(todo.values())), strict=True):
                self._doc_cache.put(h, vec)
                found[h] = vec
        return np.stack([found[h] for h in hashes]) if hashes else np.zeros((0, self.dim), np.float32)

    # --- ranking -----------------------------------------------------------------------------------------

    def rerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        top_n: int | None = None,
        teacher_top: int | None = None,
    ) -> RankResult:
        """Score the candidates for ``query``. Unknown ids (no text given) are reported, not scored."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q, cached = self.query_vectors([query])  # (1, dim)
        timings["query_encode"] = time.perf_counter() - t

        t = time.perf_counter()
        rows, vectors, unknown = self._candidate_vectors(candidates)
        timings["doc_vectors"] = time.perf_counter() - t
        if not rows:
            return RankResult([], unknown, cached[0], 0, 0, timings)
        return self._rank(
            query, q, candidates, rows, vectors, unknown, cached[0], top_n, teacher_top, timings
        )

    def search(
        self, query: str, k: int = 100, top_n: int = 10, teacher_top: int | None = None
    ) -> tuple[RankResult, list[str]]:
        """ANN retrieval of ``k`` documents, re-ranked; returns the result and the retrieved doc ids."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q, cached = self.query_vectors([query])
        timings["query_encode"] = time.perf_counter() - t
        t = time.perf_counter()
        hits = self.index.search(q, k)[0]
        timings["ann"] = time.perf_counter() - t
        ids = [doc_id for doc_id, _ in hits]
        candidates = [Candidate(id=d) for d in ids]
        rows = list(range(len(ids)))
        vectors = self.store.vectors[[self.store.row_of[d] for d in ids]] if ids else np.zeros((0, self.dim))
        if not ids:
            return RankResult([], [], cached[0], 0, 0, timings), ids
        result = self._rank(query, q, candidates, rows, vectors, [], cached[0], top_n, teacher_top, timings)
        return result, ids

    def related(self, doc_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` nearest documents to a document of the index (itself excluded), by cosine."""
        row = self.store.row_of.get(doc_id)
        if row is None:
            raise UnknownDocument(f"doc id {doc_id!r} is not in the index")
        hits = self.index.search(self.store.vectors[row : row + 1], k + 1)[0]
        return [(d, s) for d, s in hits if d != doc_id][:k]

    def _candidate_vectors(self, candidates: Sequence[Candidate]) -> tuple[list[int], np.ndarray, list[str]]:
        """(rows of the scored candidates, their (m, dim) vectors, unknown ids)."""
        rows: list[int] = []
        unknown: list[str] = []
        text_rows = [i for i, c in enumerate(candidates) if c.text is not None]
        text_vecs = self.doc_vectors([candidates[i].text or "" for i in text_rows])
        by_row = dict(zip(text_rows, text_vecs, strict=True))
        vectors: list[np.ndarray] = []
        for i, c in enumerate(candidates):
            if i in by_row:
                vectors.append(by_row[i])
            elif c.id is not None and c.id in self.store.row_of:
                vectors.append(self.store.vectors[self.store.row_of[c.id]])
            else:
                unknown.append(str(c.id))
                continue
            rows.append(i)
        return rows, (np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)), unknown

    def _rank(
        self,
        query: str,
        q: np.ndarray,
        candidates: Sequence[Candidate],
        rows: list[int],
        vectors: np.ndarray,
        unknown: list[str],
        query_cached: bool,
        top_n: int | None,
        teacher_top: int | None,
        timings: dict[str, float],
    ) -> RankResult:
        t = time.perf_counter()
        levels = self._head((q, vectors))  # (m, K)
        if self.student.settings.score_mode == "cosine":
            scores = vectors @ q[0]  # (m,) unit vectors
        else:
            scores = levels @ self._student_gains  # (m,)
        order = np.argsort(-scores, kind="stable")
        timings["head"] = time.perf_counter() - t
        final = [
            Scored(
                rows[j],
                candidates[rows[j]].id,
                float(scores[j]),
                float(scores[j]),
                tuple(map(float, levels[j])),
                "student",
            )
            for j in order
        ]
        n_teacher = self.config.teacher_top if teacher_top is None else teacher_top
        n_teacher = min(n_teacher, len(final))
        if n_teacher and self.teacher is not None:
            t = time.perf_counter()
            final = self._teacher_rescore(query, candidates, final, n_teacher) + final[n_teacher:]
            timings["teacher"] = time.perf_counter() - t
        elif n_teacher:
            raise TeacherUnavailable("this server has no teacher: start it with --teacher to use teacher_top")
        return RankResult(
            final[:top_n] if top_n else final, unknown, query_cached, n_teacher, len(rows), timings
        )

    def _teacher_rescore(
        self, query: str, candidates: Sequence[Candidate], ranked: list[Scored], n: int
    ) -> list[Scored]:
        assert self.teacher is not None and self._teacher_gains is not None
        head = ranked[:n]
        texts = [self._text_of(candidates[s.index]) for s in head]
        with self._teacher_lock:
            probs = np.asarray(self.teacher.predict_levels([query] * n, texts))  # (n, K)
        scores = probs @ self._teacher_gains  # (n,)
        rescored = [
            Scored(s.index, s.id, float(scores[i]), s.student_score, tuple(map(float, probs[i])), "teacher")
            for i, s in enumerate(head)
        ]
        return [rescored[i] for i in np.argsort(-scores, kind="stable")]

    def _text_of(self, candidate: Candidate) -> str:
        if candidate.text is not None:
            return candidate.text
        text = self.store.texts[self.store.row_of[str(candidate.id)]]
        if text is None:
            raise TeacherUnavailable(
                f"the store keeps no text for doc id {candidate.id!r}: the teacher needs it"
            )
        return text

    # --- lifecycle -----------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        stats = self.cache.stats()
        return {
            "status": "ok",
            "model_id": self.model_id,
            "documents": len(self.store),
            "index": self.index.kind,
            "store_generation": self.store.generation,
            "cache": stats.backend,
            "redis_up": stats.remote_up,
            "teacher": self.teacher is not None,
        }

    def close(self) -> None:
        for batcher in (self._encode_queries, self._encode_docs, self._head):
            batcher.close()
        self.cache.close()


class TeacherUnavailable(ValueError):
    """Teacher re-scoring was asked for but cannot run (no teacher, or no text for a candidate)."""


def _unit_gains(gains: Sequence[float]) -> np.ndarray:
    g = np.asarray(gains, dtype=np.float32)
    return g / g.max() if g.max() > 0 else g


def load_engine(
    student_dir: str | Path,
    store_dir: str | Path,
    index_dir: str | Path | None = None,
    cache: QueryCache | None = None,
    teacher_dir: str | Path | None = None,
    config: EngineConfig | None = None,
    index_config: IndexConfig | None = None,
    device: str | None = None,
) -> Engine:
    """Load every part from disk. Without ``index_dir`` the index is built in memory from the store
    (``index_config``; exact search for small catalogs). Checks that the store was embedded by this
    student's document tower and that a saved index matches the store's generation."""
    from distilrel.index.embed import student_ids
    from distilrel.student.model import load_student

    query_id, doc_id = student_ids(student_dir)
    snapshot = EmbeddingStore(store_dir).load()
    if snapshot.model_id != doc_id:
        raise EngineSetupError(
            f"the store {store_dir} was embedded by {snapshot.model_id!r}, but the student's document "
            f"tower is {doc_id!r}: run `distilrel embed` with this student first"
        )
    index = VectorIndex.load(index_dir) if index_dir else VectorIndex.from_store(snapshot, index_config)
    teacher = None
    if teacher_dir is not None:
        from distilrel.teacher.scorer import load_teacher_scorer

        teacher = load_teacher_scorer(teacher_dir, device=device)
    return Engine(
        load_student(student_dir, device=device),
        query_id,
        snapshot,
        index,
        cache if cache is not None else LRUCache(),
        teacher,
        config,
    )
