"""Ray Data plumbing shared by the labelling, caption and embedding jobs.

A job cuts its table into shards (row ranges) and runs :func:`map_shards`: each shard is one row of a Ray
dataset, ``map_batches`` hands it to an actor of a fixed pool (the model is loaded once per actor, in its
constructor), and the actor returns per-row output columns. The table itself travels once through the
object store (``ray.put``), not once per task. The driver regroups what comes back by shard — Ray may
split or merge blocks — and yields a shard as soon as all of its rows are in, so a job can write it
right away and a killed run keeps its finished shards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

#: Per-shard output columns, every array of length rows-in-the-shard along axis 0.
Columns = dict[str, np.ndarray]


@contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """The ``ray`` module connected to ``address`` (``auto``, ``127.0.0.1:6379``, ``ray://...``).

    Connects only when this process is not connected yet, and disconnects again only then (a caller that
    already runs inside Ray keeps its session). Ray Data's own progress bars and INFO logs are turned
    off: the jobs show one progress bar with items/s and a summary.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("--ray-address needs Ray Data: pip install 'ray[data]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield ray
    finally:
        if started_here:
            ray.shutdown()


class ShardActor:
    """Base of the Ray Data actors: fetches the job's table once, then turns one shard per input row into
    output columns with :meth:`process`. Subclasses load their model in ``__init__`` (once per actor)."""

    def __init__(self, frame: list[Any]) -> None:
        import ray

        # ``frame`` is [ObjectRef]: wrapped in a list so Ray hands over the reference, fetched once here.
        self.frame: pd.DataFrame = ray.get(frame[0])

    def process(self, part: pd.DataFrame) -> Columns:
        """Output columns for the rows of ``part`` (one shard of the table), in row order."""
        raise NotImplementedError

    def __call__(self, batch: dict[str, np.ndarray]) -> Columns:
        pieces: list[Columns] = []
        for shard, start, stop in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            n = int(stop) - int(start)
            cols = self.process(self.frame.iloc[int(start) : int(stop)])
            bad = {k: len(v) for k, v in cols.items() if len(v) != n}
            if bad:
                raise ValueError(f"shard {int(shard)}: {n} rows but output columns of lengths {bad}")
            shard_col = np.full(n, int(shard), dtype=np.int64)
            pieces.append({"shard": shard_col, "row": np.arange(n, dtype=np.int64), **cols})
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def map_shards(
    ray: Any,
    frame: pd.DataFrame,
    bounds: Mapping[int, tuple[int, int]],
    actor: type[ShardActor],
    actor_kwargs: Mapping[str, Any],
    *,
    num_actors: int = 1,
    cpus_per_actor: float = 1.0,
    advance: Callable[[int], None] = lambda _n: None,
) -> Iterator[tuple[int, Columns]]:
    """Run ``actor`` over the shards ``{shard: (start, stop)}`` of ``frame`` on a pool of ``num_actors``;
    yield ``(shard, columns)`` with the rows in order, as each shard completes. ``advance(n)`` is called
    as rows arrive (for a progress bar). Raises if Ray returns a shard incomplete or with stray rows.

    ``actor`` must be importable on the workers (a class of this package), ``actor_kwargs`` picklable;
    the actor receives them plus ``frame``.
    """
    if num_actors < 1:
        raise ValueError(f"num_actors must be >= 1, got {num_actors}")
    if not bounds:
        return
    sizes = {s: stop - start for s, (start, stop) in bounds.items()}
    items = [{"shard": s, "start": start, "stop": stop} for s, (start, stop) in bounds.items()]
    frame_ref = ray.put(frame)
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        actor,
        fn_constructor_kwargs={**actor_kwargs, "frame": [frame_ref]},
        batch_size=1,  # one shard per call: a shard is already a batch of many rows
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=cpus_per_actor,
    )
    pieces: dict[int, list[Columns]] = {s: [] for s in sizes}
    got = dict.fromkeys(sizes, 0)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for shard in np.unique(batch["shard"]):
            s = int(shard)
            sel = batch["shard"] == shard
            pieces[s].append({k: v[sel] for k, v in batch.items() if k != "shard"})
            got[s] += int(sel.sum())
            advance(int(sel.sum()))
            if got[s] == sizes[s]:
                yield s, _in_row_order(s, sizes[s], pieces.pop(s))
    unfinished = [s for s in sizes if got[s] != sizes[s]]
    if unfinished:
        raise RuntimeError(f"Ray returned incomplete results for shard(s) {unfinished[:5]}")


def _in_row_order(shard: int, n: int, pieces: list[Columns]) -> Columns:
    rows = np.concatenate([p["row"] for p in pieces])  # (n,)
    order = np.argsort(rows, kind="stable")
    if not np.array_equal(rows[order], np.arange(n)):
        raise RuntimeError(
            f"shard {shard}: Ray returned rows {sorted(set(rows.tolist()))[:5]}... not 0..{n - 1}"
        )
    return {k: np.concatenate([p[k] for p in pieces])[order] for k in pieces[0] if k != "row"}
