"""Throughput of our NDCG@k against ranx (numba) on synthetic queries.

    python benchmarks/metrics_bench.py --queries 100000

Builds ``--queries`` queries with 20-50 candidates each (uniform), every candidate judged 0-3 and
scored at random (seeded), then times, best of ``--repeats``:

* ours, end to end: ``score_run(run_dict, qrels_dict, ["ndcg@k"])``;
* ranx, end to end: ``Qrels(dict)`` + ``Run(dict)`` + ``evaluate``;
* ours, array core: row-wise sort of padded (queries, candidates) scores + gains + ``ndcg``;
* ranx, evaluate only, on ready ``Qrels``/``Run`` objects (its numba kernels, all cores).

ranx is warmed up (numba compiled) on a small set first, and ``save_results_in_run=False`` keeps its
Python loop that writes per-query scores back into the Run out of the timing. ranx is timed with
``return_mean=True`` (``return_mean=False`` with a single metric raises KeyError in ranx 0.3.21); its
per-query scores for the agreement check come from a separate untimed call.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from distilrel.metrics import grade_gains, ndcg, score_run


@dataclass(frozen=True)
class Synthetic:
    qrels: dict[str, dict[str, int]]
    run: dict[str, dict[str, float]]
    scores: np.ndarray  # (q, n) padded with -inf
    grades: np.ndarray  # (q, n) padded with 0


def build(n_queries: int, lo: int, hi: int, seed: int) -> Synthetic:
    rng = np.random.default_rng(seed)
    lens = rng.integers(lo, hi + 1, n_queries)  # (q,)
    width = int(lens.max())
    valid = np.arange(width) < lens[:, None]  # (q, n)
    grades = np.where(valid, rng.integers(0, 4, (n_queries, width)), 0)
    scores = np.where(valid, rng.random((n_queries, width)), -np.inf)
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i, n in enumerate(lens.tolist()):
        q, docs = f"q{i}", [f"d{j}" for j in range(n)]
        qrels[q] = dict(zip(docs, grades[i, :n].tolist(), strict=True))
        run[q] = dict(zip(docs, scores[i, :n].tolist(), strict=True))
    return Synthetic(qrels, run, scores, grades)


def array_core(data: Synthetic, k: int) -> np.ndarray:
    order = np.argsort(-data.scores, axis=1, kind="stable")  # (q, n) best first, padding last
    gains = grade_gains(data.grades)  # (q, n) linear gain; padding has grade 0 -> gain 0
    return ndcg(np.take_along_axis(gains, order, axis=1), gains, k=k)


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--min-candidates", type=int, default=20)
    parser.add_argument("--max-candidates", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        from numba.core.errors import NumbaTypeSafetyWarning
        from ranx import Qrels, Run, evaluate
    except ImportError as exc:
        raise SystemExit(f"this benchmark compares against ranx: pip install ranx ({exc})") from None
    warnings.simplefilter("ignore", NumbaTypeSafetyWarning)

    console = Console()
    metric = f"ndcg@{args.k}"
    start = time.perf_counter()
    data = build(args.queries, args.min_candidates, args.max_candidates, args.seed)
    console.print(f"built the synthetic run and qrels in {time.perf_counter() - start:.1f} s")
    n_pairs = sum(map(len, data.run.values()))
    console.print(f"{args.queries:,} queries, {n_pairs:,} (query, doc) pairs, {os.cpu_count()} CPU cores")

    warm = build(200, args.min_candidates, args.max_candidates, args.seed + 1)
    evaluate(Qrels(warm.qrels), Run(warm.run), metric, save_results_in_run=False)

    t_ours, ours = best_time(
        lambda: score_run(data.run, data.qrels, [metric])[metric].to_numpy(), args.repeats
    )
    t_core, core = best_time(lambda: array_core(data, args.k), args.repeats)

    def ranx_end_to_end() -> float:
        return evaluate(Qrels(data.qrels), Run(data.run), metric, save_results_in_run=False)

    t_ranx_e2e, _ = best_time(ranx_end_to_end, args.repeats)
    qrels_obj, run_obj = Qrels(data.qrels), Run(data.run)
    t_ranx, _ = best_time(
        lambda: evaluate(qrels_obj, run_obj, metric, save_results_in_run=False), args.repeats
    )
    per_query = evaluate(qrels_obj, run_obj, [metric, "mrr"], return_mean=False, save_results_in_run=False)
    theirs = per_query[metric]

    # ranx orders queries by id as strings; our table is sorted the same way, the array core is not.
    ids = sorted(data.qrels)
    theirs_arr = np.asarray(theirs)
    core_sorted = np.asarray(core)[[int(q[1:]) for q in ids]]
    diffs = {
        "score_run vs ranx": float(np.abs(np.asarray(ours) - theirs_arr).max()),
        "array core vs ranx": float(np.abs(core_sorted - theirs_arr).max()),
    }

    table = Table(title=f"{metric}, {args.queries:,} queries (best of {args.repeats})")
    for col in ("what", "seconds", "queries/s", "ours / ranx"):
        table.add_column(col, justify="left" if col == "what" else "right")
    q = args.queries
    table.add_row(
        "ours: score_run from dicts", f"{t_ours:.3f}", f"{q / t_ours:,.0f}", f"{t_ranx_e2e / t_ours:.2f}x"
    )
    table.add_row("ranx: Qrels+Run from dicts + evaluate", f"{t_ranx_e2e:.3f}", f"{q / t_ranx_e2e:,.0f}", "")
    table.add_row(
        "ours: array core (sort + ndcg)", f"{t_core:.3f}", f"{q / t_core:,.0f}", f"{t_ranx / t_core:.2f}x"
    )
    table.add_row("ranx: evaluate on built objects", f"{t_ranx:.3f}", f"{q / t_ranx:,.0f}", "")
    console.print(table)
    for name, d in diffs.items():
        console.print(f"max |diff| {name}: {d:.2e}")
    mean = float(np.mean(ours))
    console.print(f"mean {metric}: ours {mean:.6f}, ranx {float(theirs_arr.mean()):.6f}")
    if max(diffs.values()) > 1e-6:
        raise SystemExit("ours and ranx disagree by more than 1e-6")


if __name__ == "__main__":
    main()
