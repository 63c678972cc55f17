"""The labelling job on Ray Data: the same shard plan, manifest and shard files as the in-process run.

Each pending shard is one row of a Ray dataset; ``map_batches`` over an actor pool scores it — every actor
loads the teacher once (a picklable ``factory() -> ScoreFn``, e.g. :class:`~distilrel.label.job.
TeacherLabeller.load`) and scores its shard with the in-process chunking, so the probabilities match
the in-process run. Actors send back only (shard, row, probs); the driver joins them with the pool rows
and writes each shard as soon as all of its rows are in, so a killed run keeps its finished shards and
a rerun (in-process or on Ray) skips them.

The pool's queries and texts travel once through the object store (``ray.put``), not once per task.
Shard files are written by the driver: on a real cluster ``out`` needs to be reachable only from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilrel.label.job import (
    LabelSettings,
    LabelSummary,
    ScoreFn,
    damaged_files,
    make_plan,
    pending_shards,
    progress_bar,
    score_rows,
)
from distilrel.label.shards import open_run, shard_path, shard_table, write_shard


class ShardLabeller:
    """Ray Data actor: loads the scoring function once, then labels one shard per input row."""

    def __init__(self, factory: Callable[[], ScoreFn], frame: list[Any], k: int, chunk_size: int) -> None:
        import ray

        # ``frame`` is [ObjectRef]: wrapped in a list so Ray hands us the reference and we fetch it once.
        self.frame: pd.DataFrame = ray.get(frame[0])  # columns: query, text (the whole pool)
        self.score_fn = factory()
        self.k = k
        self.chunk_size = chunk_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards, rows, probs = [], [], []
        for shard, start, stop in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            part = self.frame.iloc[int(start) : int(stop)]
            p = score_rows(
                part["query"].tolist(), part["text"].tolist(), self.score_fn, self.k, self.chunk_size
            )
            shards.append(np.full(len(p), shard, dtype=np.int64))
            rows.append(np.arange(len(p), dtype=np.int64))
            probs.append(p)
        return {"shard": np.concatenate(shards), "row": np.concatenate(rows), "probs": np.concatenate(probs)}


def run_label_job_ray(
    pool: pd.DataFrame,
    texts: Sequence[str],
    out: str | Path,
    factory: Callable[[], ScoreFn],
    *,
    address: str,
    teacher_id: str,
    k: int,
    gains: Sequence[float] | None = None,
    settings: LabelSettings = LabelSettings(),
    num_actors: int = 1,
    cpus_per_actor: float = 1.0,
) -> LabelSummary:
    """Label ``pool`` on the Ray cluster at ``address`` (``auto``, ``127.0.0.1:6379``, ``ray://...``).

    factory: picklable, called once per actor; it must be importable on the workers (a package function
             or a :class:`~distilrel.label.job.TeacherLabeller`'s ``load``).
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("--ray-address needs Ray Data: pip install 'ray[data]'") from exc
    if num_actors < 1:
        raise ValueError(f"num_actors must be >= 1, got {num_actors}")

    out = Path(out).resolve()
    gains = tuple(gains) if gains is not None else tuple(float(g) for g in range(k - 1, -1, -1))
    plan = make_plan(pool, texts, teacher_id, k, gains, settings.shard_size)
    open_run(out, plan, settings.overwrite)
    todo, reasons = pending_shards(out, plan, pool)
    sizes = {i: plan.bounds(i)[1] - plan.bounds(i)[0] for i in todo}

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    start_time = time.perf_counter()
    labelled = 0
    try:
        if todo:
            # Ray Data logs every execution at INFO on the driver; our progress bar and summary say it all.
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False  # ours shows pairs/s; Ray's would interleave with it
            frame_ref = ray.put(
                pd.DataFrame({"query": pool["query"].astype(str).tolist(), "text": list(texts)})
            )
            items = [{"shard": i, "start": plan.bounds(i)[0], "stop": plan.bounds(i)[1]} for i in todo]
            labelled_ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardLabeller,
                fn_constructor_kwargs={
                    "factory": factory,
                    "frame": [frame_ref],
                    "k": k,
                    "chunk_size": settings.chunk_size,
                },
                batch_size=1,  # one shard per call: a shard is already thousands of pairs
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=num_actors),
                num_cpus=cpus_per_actor,
            )
            done_rows = len(pool) - sum(sizes.values())
            pieces: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {i: [] for i in todo}
            got = dict.fromkeys(todo, 0)
            with progress_bar(len(pool), done_rows, settings.progress) as advance:
                # Ray may split or merge blocks, so collect rows per shard and write a shard when it is whole.
                for batch in labelled_ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for shard in np.unique(batch["shard"]):
                        sel = batch["shard"] == shard
                        s = int(shard)
                        pieces[s].append(
                            (batch["row"][sel], np.asarray(batch["probs"][sel], dtype=np.float32))
                        )
                        got[s] += int(sel.sum())
                        advance(int(sel.sum()))
                        if got[s] == sizes[s]:
                            _write(out, plan.bounds(s), s, pool, pieces.pop(s), gains)
                            labelled += sizes[s]
            unfinished = [i for i in todo if got[i] != sizes[i]]
            if unfinished:
                raise RuntimeError(f"Ray returned incomplete results for shard(s) {unfinished[:5]}")
    finally:
        if started_here:
            ray.shutdown()
    backend = f"ray ({num_actors} actor{'s' if num_actors > 1 else ''})"
    return LabelSummary.of_run(pool, plan, todo, labelled, start_time, damaged_files(out, reasons), backend)


def _write(
    out: Path,
    bounds: tuple[int, int],
    shard: int,
    pool: pd.DataFrame,
    pieces: list[tuple[np.ndarray, np.ndarray]],
    gains: Sequence[float],
) -> None:
    start, stop = bounds
    rows = np.concatenate([r for r, _ in pieces])  # (n,)
    probs = np.concatenate([p for _, p in pieces])  # (n, K)
    order = np.argsort(rows, kind="stable")
    if not np.array_equal(rows[order], np.arange(stop - start)):
        raise RuntimeError(
            f"shard {shard}: Ray returned rows {sorted(set(rows.tolist()))[:5]}... not 0..{stop - start - 1}"
        )
    write_shard(shard_path(out, shard), shard_table(pool.iloc[start:stop], probs[order], gains))
