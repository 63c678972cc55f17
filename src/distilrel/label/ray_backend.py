"""The labelling job on Ray Data: the same shard plan, manifest and shard files as the in-process run.

Each pending shard is one row of a Ray dataset; ``map_batches`` over an actor pool scores it
(:func:`distilrel.scale.ray.map_shards`) — every actor loads the teacher once (a picklable
``factory() -> ScoreFn``, e.g. :class:`~distilrel.label.job.TeacherLabeller.load`) and scores its shard
with the in-process chunking, so the probabilities match the in-process run. Actors send back only
(shard, row, probs); the driver joins them with the pool rows and writes each shard as soon as all of its
rows are in, so a killed run keeps its finished shards and a rerun (in-process or on Ray) skips them.

The pool's queries and texts travel once through the object store (``ray.put``), not once per task.
Shard files are written by the driver: on a real cluster ``out`` needs to be reachable only from it.
"""

from __future__ import annotations

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
    score_rows,
)
from distilrel.label.shards import open_run, shard_path, shard_table, write_shard
from distilrel.scale.progress import progress_bar
from distilrel.scale.ray import Columns, ShardActor, map_shards, ray_session


class ShardLabeller(ShardActor):
    """Ray Data actor: loads the scoring function once, then labels one shard per input row."""

    def __init__(self, factory: Callable[[], ScoreFn], frame: list[Any], k: int, chunk_size: int) -> None:
        super().__init__(frame)  # columns: query, text (the whole pool)
        self.score_fn = factory()
        self.k = k
        self.chunk_size = chunk_size

    def process(self, part: pd.DataFrame) -> Columns:
        probs = score_rows(
            part["query"].tolist(), part["text"].tolist(), self.score_fn, self.k, self.chunk_size
        )
        return {"probs": probs}


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
    if num_actors < 1:
        raise ValueError(f"num_actors must be >= 1, got {num_actors}")
    out = Path(out).resolve()
    gains = tuple(gains) if gains is not None else tuple(float(g) for g in range(k - 1, -1, -1))
    plan = make_plan(pool, texts, teacher_id, k, gains, settings.shard_size)
    open_run(out, plan, settings.overwrite)
    todo, reasons = pending_shards(out, plan, pool)
    bounds = {i: plan.bounds(i) for i in todo}
    done_rows = len(pool) - sum(stop - start for start, stop in bounds.values())

    start_time = time.perf_counter()
    labelled = 0
    if todo:
        with ray_session(address) as ray, progress_bar(len(pool), done_rows, settings.progress) as advance:
            frame = pd.DataFrame({"query": pool["query"].astype(str).tolist(), "text": list(texts)})
            kwargs = {"factory": factory, "k": k, "chunk_size": settings.chunk_size}
            for shard, cols in map_shards(
                ray,
                frame,
                bounds,
                ShardLabeller,
                kwargs,
                num_actors=num_actors,
                cpus_per_actor=cpus_per_actor,
                advance=advance,
            ):
                start, stop = bounds[shard]
                probs = np.asarray(cols["probs"], dtype=np.float32)  # (n, K)
                write_shard(shard_path(out, shard), shard_table(pool.iloc[start:stop], probs, gains))
                labelled += stop - start
    backend = f"ray ({num_actors} actor{'s' if num_actors > 1 else ''})"
    return LabelSummary.of_run(pool, plan, todo, labelled, start_time, damaged_files(out, reasons), backend)
