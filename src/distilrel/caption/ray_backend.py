"""The caption job on Ray Data: the same plan, manifest, shard files and ``captions.parquet`` as the
in-process run (:mod:`distilrel.caption.job`).

Each pending shard goes to an actor of a fixed pool (:func:`distilrel.scale.ray.map_shards`) that loads
the captioning model once and captions the shard with the in-process batching, so the captions match
the in-process run. The actors read the image files themselves — on a real cluster the paths must be
reachable from every worker (shared storage) — and send back only captions and errors; the driver
writes each shard as soon as it is whole.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilrel.caption.job import (
    CaptionSettings,
    CaptionSummary,
    caption_rows,
    finish_caption_run,
    open_caption_run,
    shard_frame,
)
from distilrel.caption.model import CaptionFn
from distilrel.label.shards import shard_path, write_shard
from distilrel.scale.progress import progress_bar
from distilrel.scale.ray import Columns, ShardActor, map_shards, ray_session


class ShardCaptioner(ShardActor):
    """Ray Data actor: loads the captioning model once, then captions one shard per input row."""

    def __init__(
        self, factory: Callable[[], CaptionFn], frame: list[Any], batch_size: int, skip_missing: bool
    ) -> None:
        super().__init__(frame)  # columns: doc_id, image (the whole input)
        self.caption_fn = factory()
        self.batch_size = batch_size
        self.skip_missing = skip_missing

    def process(self, part: pd.DataFrame) -> Columns:
        captions, errors = caption_rows(part, self.caption_fn, self.batch_size, self.skip_missing)
        # Arrow needs one type per column: "" stands in for None, and the error column tells them apart.
        return {
            "caption": np.array([c or "" for c in captions], dtype=object),
            "error": np.array([e or "" for e in errors], dtype=object),
        }


def run_caption_job_ray(
    inputs: pd.DataFrame,
    out: str | Path,
    factory: Callable[[], CaptionFn],
    *,
    address: str,
    model_id: str,
    settings: CaptionSettings = CaptionSettings(),
    num_actors: int = 1,
    cpus_per_actor: float = 1.0,
) -> CaptionSummary:
    """Caption ``inputs`` on the Ray cluster at ``address``; ``factory`` is picklable and importable on the
    workers (e.g. :class:`~distilrel.caption.model.Captioner`'s ``load``), called once per actor."""
    inputs = inputs.reset_index(drop=True)
    run = open_caption_run(inputs, out, model_id, settings)
    bounds = {i: run.plan.bounds(i) for i in run.todo}
    captioned = 0
    if run.todo:
        bar = progress_bar(
            run.plan.n_rows, run.done_rows, settings.progress, what="captioning", unit="images"
        )
        with ray_session(address) as ray, bar as advance:
            kwargs = {
                "factory": factory,
                "batch_size": settings.batch_size,
                "skip_missing": settings.skip_missing,
            }
            for shard, cols in map_shards(
                ray,
                inputs,
                bounds,
                ShardCaptioner,
                kwargs,
                num_actors=num_actors,
                cpus_per_actor=cpus_per_actor,
                advance=advance,
            ):
                start, stop = bounds[shard]
                errors = [str(e) or None for e in cols["error"]]
                captions = [None if e else str(c) for c, e in zip(cols["caption"], errors, strict=True)]
                write_shard(
                    shard_path(run.out, shard), shard_frame(inputs.iloc[start:stop], captions, errors)
                )
                captioned += sum(e is None for e in errors)
    backend = f"ray ({num_actors} actor{'s' if num_actors > 1 else ''})"
    return finish_caption_run(run, inputs, captioned, backend)
