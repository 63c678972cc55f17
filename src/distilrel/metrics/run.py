"""Score a run (query -> doc -> score) against graded qrels (query -> doc -> grade), per query.

The dicts are flattened once into 1-D arrays, scattered into padded (queries, docs) matrices in
memory-bounded chunks, sorted row-wise, and handed to the array kernels in
:mod:`distilrel.metrics.functions`. Semantics follow ranx's ``evaluate(..., make_comparable=True)``:

* the rows are exactly the queries of ``qrels`` (sorted by id); a query missing from the run scores 0
  on every metric, and run queries without judgments are ignored;
* unjudged documents count as grade 0;
* ties: see :data:`Ties`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Literal

import numpy as np
import pandas as pd

from distilrel.metrics.functions import GainScheme, grade_gains, mrr, ndcg, precision, recall
from distilrel.metrics.names import MetricSpec, metric_label, parse_metric

#: How documents with equal scores are ordered.
#:
#: ``"ranx"``: exactly the order of ``ranx.Run(run)``, which sorts each query's documents (in the
#: order the run mapping lists them) by ``numpy.argsort(-score)`` compiled by numba. Numba's argsort
#: is an insertion sort for lists of at most 15 documents — stable, so ties keep the run's order — and
#: an (unstable) median-of-three quicksort above that; we reproduce it step by step where it matters.
#: Beware: ranx itself is not self-consistent — ``Run.make_comparable`` sorts a second time, and
#: ``evaluate`` on plain dicts reverses an ascending sort — so ties can come out differently there.
#: Insertion-order tie-breaking also means a scorer that ties everything inherits the candidates' order.
#:
#: ``"trec_eval"``: score descending, then document id descending as strings (trec_eval's
#: ``comp_sim_docno``); independent of the run's order.
Ties = Literal["ranx", "trec_eval"]

#: Padded cells per chunk: bounds memory (~32 MiB per float64 matrix) whatever the list lengths.
_CELL_BUDGET = 1 << 22
#: numba's argsort switches from insertion sort to quicksort partitions at this span (high - low).
_SMALL_QUICKSORT = 15


@dataclass(frozen=True)
class _Flat:
    """Run and qrels flattened in query order; ``*_off`` are (q+1,) offsets into the flat arrays."""

    run_len: np.ndarray  # (q,) documents ranked per query
    run_off: np.ndarray  # (q+1,)
    scores: np.ndarray  # (N,) float64, run order within each query
    grades: np.ndarray  # (N,) int64, grade of each ranked document (0 = unjudged)
    judged_len: np.ndarray  # (q,) judged documents per query
    judged_off: np.ndarray  # (q+1,)
    judged: np.ndarray  # (M,) int64, every judged grade
    doc_rank: np.ndarray | None  # (N,) int64 rank of the doc id in string order (trec_eval ties only)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    return off


def _locate(off: np.ndarray, idx: int, docs: Sequence[Mapping[str, object]], qids: Sequence[str]) -> str:
    """'query Q, doc D' of flat position ``idx`` (error messages only)."""
    qi = int(np.searchsorted(off, idx, side="right") - 1)
    doc = list(docs[qi])[idx - off[qi]]
    return f"query {qids[qi]!r}, doc {doc!r}"


def _floats(values: Iterable[object], count: int, what: str, where: str) -> np.ndarray:
    try:
        return np.fromiter(values, dtype=np.float64, count=count)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers ({where}): {exc}") from None


def _flatten(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    qids: list[str],
    with_doc_rank: bool,
) -> _Flat:
    judged_docs = [qrels[q] for q in qids]
    ranked_docs = [run.get(q, {}) for q in qids]
    for name, docs in (("qrels", judged_docs), ("run", ranked_docs)):
        for q, d in zip(qids, docs, strict=True):
            if not isinstance(d, Mapping):
                raise ValueError(f"{name}[{q!r}] must map doc id -> value, got {type(d).__name__}")

    judged_len = np.fromiter(map(len, judged_docs), dtype=np.int64, count=len(qids))
    judged_off = _offsets(judged_len)
    judged_f = _floats(
        chain.from_iterable(d.values() for d in judged_docs), int(judged_off[-1]), "grades", "qrels"
    )
    bad = np.flatnonzero(~np.isfinite(judged_f) | (judged_f != np.round(judged_f)))
    if bad.size:
        where = _locate(judged_off, int(bad[0]), judged_docs, qids)
        raise ValueError(f"qrels grades must be integers; {where} has grade {float(judged_f[bad[0]])!r}")

    run_len = np.fromiter(map(len, ranked_docs), dtype=np.int64, count=len(qids))
    run_off = _offsets(run_len)
    n = int(run_off[-1])
    scores = _floats(chain.from_iterable(d.values() for d in ranked_docs), n, "run scores", "run")
    bad = np.flatnonzero(np.isnan(scores))
    if bad.size:
        raise ValueError(f"run score is NaN or None at {_locate(run_off, int(bad[0]), ranked_docs, qids)}")
    # Grade of every ranked doc by one C-level dict lookup each; unjudged -> 0.
    lookups = (map(j.get, d, repeat(0)) for j, d in zip(judged_docs, ranked_docs, strict=True))
    grades = np.fromiter(chain.from_iterable(lookups), dtype=np.float64, count=n).astype(np.int64)

    doc_rank = None
    if with_doc_rank:
        doc_ids = np.fromiter(map(str, chain.from_iterable(ranked_docs)), dtype=object, count=n)
        # Codes in sorted string order (Python's code-point order == strcmp's UTF-8 byte order).
        doc_rank = pd.factorize(doc_ids, sort=True)[0].astype(np.int64)
    return _Flat(
        run_len, run_off, scores, grades, judged_len, judged_off, judged_f.astype(np.int64), doc_rank
    )


def _pad(values: np.ndarray, off: np.ndarray, rows: slice, mask: np.ndarray, fill: float | int) -> np.ndarray:
    """The flat segments of the queries in ``rows`` as a left-aligned (r, w) matrix; ``mask`` (r, w)
    marks each row's first len cells. Boolean assignment fills row-major, i.e. segment after segment."""
    out = np.full(mask.shape, fill, dtype=values.dtype)
    out[mask] = values[off[rows.start] : off[rows.stop]]
    return out


def _numba_argsort(keys: list[float]) -> list[int]:
    """``numpy.argsort(keys)`` exactly as numba compiles it (numba/misc/quicksort.py, kind quicksort).

    Only called for lists of 16+ documents with ties whose grades differ; elsewhere a stable sort is
    provably the same order (no ties, or numba's plain insertion sort).
    """
    order = list(range(len(keys)))
    stack = [(0, len(keys) - 1)]
    while stack:
        low, high = stack.pop()
        while high - low >= _SMALL_QUICKSORT:
            i = _numba_partition(keys, order, low, high)
            # Push the larger side, keep partitioning the smaller one (numba's order of work).
            if high - i > i - low:
                if high > i:
                    stack.append((i + 1, high))
                high = i - 1
            else:
                if i > low:
                    stack.append((low, i - 1))
                low = i + 1
        for i in range(low + 1, high + 1):  # insertion sort of order[low:high + 1]
            idx, v = order[i], keys[order[i]]
            j = i
            while j > low and v < keys[order[j - 1]]:
                order[j] = order[j - 1]
                j -= 1
            order[j] = idx
    return order


def _numba_partition(a: list[float], r: list[int], low: int, high: int) -> int:
    mid = (low + high) >> 1
    # Median of three {low, mid, high}, then the pivot is parked at `high` during the sweep.
    if a[r[mid]] < a[r[low]]:
        r[low], r[mid] = r[mid], r[low]
    if a[r[high]] < a[r[mid]]:
        r[high], r[mid] = r[mid], r[high]
    if a[r[mid]] < a[r[low]]:
        r[low], r[mid] = r[mid], r[low]
    pivot = a[r[mid]]
    r[high], r[mid] = r[mid], r[high]
    i, j = low, high - 1
    while True:
        while i < high and a[r[i]] < pivot:
            i += 1
        while j >= low and pivot < a[r[j]]:
            j -= 1
        if i >= j:
            break
        r[i], r[j] = r[j], r[i]
        i += 1
        j -= 1
    r[i], r[high] = r[high], r[i]
    return i


def _ranked_grades(flat: _Flat, rows: slice, ties: Ties) -> tuple[np.ndarray, np.ndarray]:
    """Grades in rank order, (r, w) int64 padded with 0, and the (r, w) mask of real cells."""
    lens = flat.run_len[rows]
    width = int(lens.max()) if len(lens) else 0
    valid = np.arange(width) < lens[:, None]  # (r, w)
    key = -_pad(flat.scores, flat.run_off, rows, valid, 0.0)  # (r, w) ascending key = descending score
    key[~valid] = np.inf  # padding last; a real -inf score ties with it but precedes it in every sort below
    grades = _pad(flat.grades, flat.run_off, rows, valid, 0)  # (r, w) run order
    if ties == "trec_eval":
        assert flat.doc_rank is not None
        neg_doc = -_pad(flat.doc_rank, flat.run_off, rows, valid, -1)  # padding: +1, after every real doc
        order = np.lexsort((neg_doc, key), axis=1)  # score desc, then doc id desc
        return np.take_along_axis(grades, order, axis=1), valid
    order = np.argsort(key, axis=1, kind="stable")  # (r, w)
    ranked = np.take_along_axis(grades, order, axis=1)
    sorted_key = np.take_along_axis(key, order, axis=1)
    # Where equal scores hold different grades, the tie order changes the metrics; numba's quicksort
    # differs from a stable sort only for lists of 16+ documents.
    differing_tie = (
        (sorted_key[:, 1:] == sorted_key[:, :-1]) & (ranked[:, 1:] != ranked[:, :-1]) & valid[:, 1:]
    )
    for r in np.flatnonzero(differing_tie.any(axis=1) & (lens > _SMALL_QUICKSORT)):
        n = int(lens[r])
        ranked[r, :n] = grades[r, _numba_argsort(key[r, :n].tolist())]
    return ranked, valid


def _chunks(flat: _Flat) -> list[slice]:
    """Consecutive query ranges whose padded matrices stay under the cell budget."""
    width = np.maximum(flat.run_len, flat.judged_len).tolist()  # (q,) cells per row, run and judged
    chunks, start, widest = [], 0, 0
    for i, w in enumerate(width):
        widest = max(widest, w)
        # Two padded matrices (ranked, judged) of at most `widest` columns each.
        if i > start and (i + 1 - start) * 2 * widest > _CELL_BUDGET:
            chunks.append(slice(start, i))
            start, widest = i, w
    chunks.append(slice(start, len(width)))
    return chunks


def _check_gains(
    spec: MetricSpec, scheme: GainScheme, flat: _Flat, qrels: Mapping[str, Mapping[str, int]], qids: list[str]
) -> None:
    """Fail early, naming a query and doc, if a judged grade has no gain under ``spec``."""
    for grade in np.unique(flat.judged):
        try:
            grade_gains(np.array([grade]), scheme)
        except ValueError as exc:
            pos = int(np.flatnonzero(flat.judged == grade)[0])
            where = _locate(flat.judged_off, pos, [qrels[q] for q in qids], qids)
            raise ValueError(f"metric {metric_label(spec)}: {exc} ({where} has grade {grade})") from None


def score_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str],
    gains: Mapping[int, float] | None = None,
    rel_threshold: int = 1,
    ties: Ties = "ranx",
) -> pd.DataFrame:
    """Per-query scores: one row per query of ``qrels`` (index ``query_id``, sorted), one column per
    metric name exactly as given.

    gains:         grade -> NDCG gain for ``ndcg``/``ndcg@k`` (None = linear, gain = grade).
    rel_threshold: grade >= threshold counts as relevant for precision, recall and MRR.
    ties:          how equal scores are ordered, see :data:`Ties`.
    """
    if isinstance(metrics, str):
        raise ValueError(
            f"metrics must be a sequence of names, got the string {metrics!r}; use [{metrics!r}]"
        )
    names = list(metrics)
    if not names:
        raise ValueError("no metrics requested")
    if len(set(names)) != len(names):
        raise ValueError(f"metric names repeat: {names}")
    specs = [parse_metric(m) for m in names]
    # Grade 0 is "not relevant" and also what unjudged documents count as, so the threshold must be above it.
    if (
        isinstance(rel_threshold, bool)
        or not isinstance(rel_threshold, int | np.integer)
        or rel_threshold < 1
    ):
        raise ValueError(f"rel_threshold must be an integer grade >= 1, got {rel_threshold!r}")
    if ties not in ("ranx", "trec_eval"):
        raise ValueError(f"ties must be 'ranx' or 'trec_eval', got {ties!r}")
    if not qrels:
        raise ValueError("qrels is empty: there are no judged queries to score")

    qids = sorted(qrels)
    flat = _flatten(run, qrels, qids, with_doc_rank=ties == "trec_eval")
    schemes = [s.gain_scheme(gains) if s.name == "ndcg" else "linear" for s in specs]
    for spec, scheme in zip(specs, schemes, strict=True):
        if spec.name == "ndcg":
            _check_gains(spec, scheme, flat, qrels, qids)
    # Specs that share a gain scheme share one gain lookup per chunk.
    scheme_keys = [(id(sc) if isinstance(sc, Mapping) else sc) for sc in schemes]

    out = np.zeros((len(qids), len(specs)), dtype=np.float64)  # (q, metrics)
    for rows in _chunks(flat):
        ranked, valid = _ranked_grades(flat, rows, ties)  # (r, w), (r, w)
        jlens = flat.judged_len[rows]
        jvalid = np.arange(int(jlens.max()) if len(jlens) else 0) < jlens[:, None]  # (r, m)
        judged = _pad(flat.judged, flat.judged_off, rows, jvalid, 0)  # (r, m)
        relevant = (ranked >= rel_threshold) & valid  # (r, w)
        n_relevant = ((judged >= rel_threshold) & jvalid).sum(axis=1)  # (r,)
        gain_cache: dict[int | str, tuple[np.ndarray, np.ndarray]] = {}
        for col, (spec, scheme, key) in enumerate(zip(specs, schemes, scheme_keys, strict=True)):
            if spec.name == "ndcg":
                if key not in gain_cache:
                    # Padding and unjudged cells hold grade 0; mask padding so gain(0) never leaks in.
                    gain_cache[key] = (
                        np.where(valid, grade_gains(ranked, scheme), 0.0),
                        np.where(jvalid, grade_gains(judged, scheme), 0.0),
                    )
                out[rows, col] = ndcg(*gain_cache[key], k=spec.k)
            elif spec.name == "precision":
                out[rows, col] = precision(relevant, spec.k, n_ranked=flat.run_len[rows])
            elif spec.name == "recall":
                out[rows, col] = recall(relevant, n_relevant, spec.k)
            else:
                out[rows, col] = mrr(relevant, spec.k)
    return pd.DataFrame(out, index=pd.Index(qids, name="query_id"), columns=names)


def mean_scores(per_query: pd.DataFrame) -> dict[str, float]:
    """Mean of every metric column over the queries (every query weighs the same)."""
    if per_query.empty:
        raise ValueError("no per-query scores to average (empty table)")
    return {str(c): float(per_query[c].mean()) for c in per_query.columns}
