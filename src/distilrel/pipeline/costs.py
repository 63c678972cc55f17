"""Serving-cost numbers for the report, timed in process on this machine.

* student query encoding: short queries sent one at a time through the query tower (what a cache miss
  costs online);
* re-ranking ``depth`` candidates: the teacher reads ``depth`` (query, document) pairs; the student encodes
  the query and runs its head over document vectors computed beforehand (as the embedding store serves
  them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from distilrel.data.schema import Dataset
from distilrel.pipeline.config import EvaluateSection


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3)}


def measure_latency(teacher: Any, student: Any, ds: Dataset, settings: EvaluateSection) -> dict[str, Any]:
    """p50/p90 milliseconds: student query encoding, and re-ranking ``rerank_depth`` candidates with the
    teacher and with the student. Queries are the dataset's distinct query texts (seeded sample)."""
    rng = np.random.default_rng(0)
    queries = ds.judgments["query"].astype(str).drop_duplicates().tolist()
    picked = [queries[i] for i in rng.permutation(len(queries))]
    short = (picked * (settings.latency_queries // max(len(picked), 1) + 1))[: settings.latency_queries]
    student.model.encode_queries(short[:5], batch_size=1)  # warm-up: first calls allocate
    encode_ms = [_timed(lambda q=q: student.model.encode_queries([q], batch_size=1)) for q in short]

    depth = min(settings.rerank_depth, len(ds.documents))
    doc_rows = ds.documents.iloc[rng.choice(len(ds.documents), size=depth, replace=False)]
    out: dict[str, Any] = {
        "queries_timed": len(short),
        "student_query_encode": _percentiles(encode_ms),
        "rerank_depth": depth,
    }
    for name, scorer in (("student", student), ("teacher", teacher)):
        lacking = [f["name"] for f in scorer.text_fields if f["name"] not in doc_rows.columns]
        texts = scorer.text_builder().build_many(doc_rows.assign(**dict.fromkeys(lacking, "")))
        scorer.score([picked[0]] * depth, texts)  # warm-up; fills the student's document-vector cache
        timed = picked[: settings.rerank_queries]
        ms = [_timed(lambda q=q, sc=scorer, t=texts: sc.score([q] * depth, t)) for q in timed]
        out[f"{name}_rerank"] = _percentiles(ms)
    out["rerank_speedup_p50"] = round(
        out["teacher_rerank"]["p50_ms"] / max(out["student_rerank"]["p50_ms"], 1e-9), 1
    )
    return out
