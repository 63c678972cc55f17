"""Batched, sharded, resumable pseudo-labelling of the pool by the teacher.

The scoring function is injected — any ``(queries, texts) -> (n, K) probabilities`` callable; the CLI
passes the teacher's :meth:`~distilrel.teacher.scorer.TeacherScorer.predict_levels` (length-bucketed
batches). Pairs go to it in chunks of ``chunk_size`` (bigger chunks bucket better; smaller ones update
the progress bar more often). A shard is scored in chunks at fixed offsets, so the same pool and teacher
always see the same batches: a resumed run writes the very bytes an uninterrupted run would.

Resumability: see :mod:`distilrel.label.shards` — a finished shard is never rewritten, an unfinished
one is recomputed whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from distilrel.label.shards import (
    ShardPlan,
    check_shard,
    frame_hash,
    open_run,
    shard_path,
    shard_table,
    texts_hash,
    write_shard,
)
from distilrel.scale.progress import progress_bar

if TYPE_CHECKING:
    from rich.console import Console

#: ``(queries, texts) -> (n, K)`` probabilities over the relevance levels, most relevant first.
ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]

# Row sums of a probability vector may drift from 1 by float32 rounding, never by more than this.
_PROB_SUM_TOL = 1e-3


@dataclass(frozen=True)
class LabelSettings:
    shard_size: int = 4096  # pairs per shard file (the unit of resumption)
    chunk_size: int = 512  # pairs per scoring call
    overwrite: bool = False  # delete the labels of another plan in the output folder and start over
    progress: bool = True  # rich progress bar (pairs/s) on stderr

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.chunk_size < 1:
            raise ValueError(
                f"shard_size and chunk_size must be >= 1, got {self.shard_size}, {self.chunk_size}"
            )


@dataclass(frozen=True)
class LabelSummary:
    pairs: int  # pairs in the pool
    shards: int
    shards_done: int  # labelled by this run
    shards_skipped: int  # already finished by an earlier run
    pairs_labelled: int  # by this run
    seconds: float
    backend: str = "in-process"
    damaged: tuple[str, ...] = ()  # "shard-00002.parquet: <why>" for files found unusable and recomputed

    @property
    def pairs_per_s(self) -> float:
        return self.pairs_labelled / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "pairs_per_s": round(self.pairs_per_s, 2)}

    @classmethod
    def of_run(
        cls,
        pool: pd.DataFrame,
        plan: ShardPlan,
        todo: Sequence[int],
        labelled: int,
        start_time: float,
        damaged: tuple[str, ...],
        backend: str = "in-process",
    ) -> LabelSummary:
        """The summary of one run over ``plan`` that labelled the shards in ``todo`` (either backend)."""
        return cls(
            pairs=len(pool),
            shards=plan.n_shards,
            shards_done=len(todo),
            shards_skipped=plan.n_shards - len(todo),
            pairs_labelled=labelled,
            seconds=time.perf_counter() - start_time,
            backend=backend,
            damaged=damaged,
        )


@dataclass(frozen=True)
class TeacherLabeller:
    """A picklable recipe for the teacher's scoring function: Ray actors call :meth:`load` once each."""

    path: str
    batch_size: int = 64
    device: str | None = None

    def load(self) -> ScoreFn:
        from distilrel.teacher.scorer import load_teacher_scorer

        return load_teacher_scorer(self.path, batch_size=self.batch_size, device=self.device).predict_levels


def folder_fingerprint(folder: str | Path) -> str:
    """SHA-256 over the relative names and bytes of every file under ``folder``: a teacher id that changes
    whenever its weights, tokenizer or config do (a retrained teacher in the same folder is another one)."""
    import hashlib

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher folder {folder} not found")
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\1")
    return h.hexdigest()


def make_plan(
    pool: pd.DataFrame, texts: Sequence[str], teacher_id: str, k: int, gains: Sequence[float], shard_size: int
) -> ShardPlan:
    if "query" not in pool.columns:
        raise ValueError(f"the pool has no 'query' column; it has {list(pool.columns)}")
    if len(texts) != len(pool):
        raise ValueError(f"{len(texts)} document texts for {len(pool)} pool pairs; they must align by row")
    return ShardPlan(
        n_rows=len(pool),
        shard_size=shard_size,
        pool_hash=frame_hash(pool),
        text_hash=texts_hash(texts),
        teacher_id=teacher_id,
        k=k,
        gains=tuple(float(g) for g in gains),
        columns=tuple(str(c) for c in pool.columns),
    )


def pending_shards(out: Path, plan: ShardPlan, pool: pd.DataFrame) -> tuple[list[int], dict[int, str]]:
    """Shards still to label, and why each one is (``missing`` or what is wrong with its file)."""
    todo: list[int] = []
    reasons: dict[int, str] = {}
    for shard in range(plan.n_shards):
        start, stop = plan.bounds(shard)
        why = check_shard(shard_path(out, shard), plan, pool.iloc[start:stop])
        if why is not None:
            todo.append(shard)
            reasons[shard] = why
    return todo, reasons


def score_rows(
    queries: Sequence[str],
    texts: Sequence[str],
    score_fn: ScoreFn,
    k: int,
    chunk_size: int,
    on_chunk: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(n, K) float32 probabilities, scored in chunks at fixed offsets; each chunk is checked."""
    n = len(queries)
    probs = np.empty((n, k), dtype=np.float32)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        p = np.asarray(score_fn(list(queries[lo:hi]), list(texts[lo:hi])), dtype=np.float32)  # (chunk, K)
        _check_probs(p, hi - lo, k, lo)
        probs[lo:hi] = p
        if on_chunk is not None:
            on_chunk(hi - lo)
    return probs


def run_label_job(
    pool: pd.DataFrame,
    texts: Sequence[str],
    out: str | Path,
    score_fn: ScoreFn,
    *,
    teacher_id: str,
    k: int,
    gains: Sequence[float] | None = None,
    settings: LabelSettings = LabelSettings(),
    console: Console | None = None,
) -> LabelSummary:
    """Label ``pool`` (texts[i] is the document text of row i) into shard files under ``out``.

    teacher_id: names the teacher in the manifest (a rerun with another id refuses to mix outputs).
    gains:      per level, for the ``score`` column (default K-1 .. 0, most relevant first).
    """
    out = Path(out)
    gains = tuple(gains) if gains is not None else tuple(float(g) for g in range(k - 1, -1, -1))
    plan = make_plan(pool, texts, teacher_id, k, gains, settings.shard_size)
    open_run(out, plan, settings.overwrite)
    todo, reasons = pending_shards(out, plan, pool)
    done_rows = len(pool) - sum(plan.bounds(i)[1] - plan.bounds(i)[0] for i in todo)
    queries = pool["query"].astype(str).tolist()

    start_time = time.perf_counter()
    labelled = 0
    with progress_bar(len(pool), done_rows, settings.progress, console) as advance:
        for shard in todo:
            start, stop = plan.bounds(shard)
            probs = score_rows(
                queries[start:stop], texts[start:stop], score_fn, k, settings.chunk_size, advance
            )
            write_shard(shard_path(out, shard), shard_table(pool.iloc[start:stop], probs, gains))
            labelled += stop - start
    return LabelSummary.of_run(pool, plan, todo, labelled, start_time, damaged_files(out, reasons))


def label_pool_folder(
    pool_dir: str | Path,
    teacher_dir: str | Path,
    out: str | Path | None = None,
    *,
    settings: LabelSettings = LabelSettings(),
    batch_size: int = 64,
    device: str | None = None,
    fields: Sequence[str | dict[str, object]] | None = None,
    ray_address: str | None = None,
    num_actors: int = 1,
    console: Console | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> LabelSummary:
    """``distilrel label``: score every pair of the pool folder ``pool_dir`` with the teacher folder
    ``teacher_dir`` into shards under ``out`` (default ``POOL_DIR/labels``); a rerun skips finished shards.

    fields: the document text recipe (default: the teacher's own, so labelling reads what training read).
    ray_address: run on Ray Data (``num_actors`` actors, each loading the teacher once) instead of in process.
    """
    from distilrel.label.pool import pool_texts, read_pool
    from distilrel.teacher.model import load_tokenizer, read_meta

    pool_dir, teacher_dir = Path(pool_dir), Path(teacher_dir)
    tables = read_pool(pool_dir)
    meta = read_meta(teacher_dir)
    target = Path(out) if out is not None else pool_dir / "labels"
    labeller = TeacherLabeller(str(teacher_dir.resolve()), batch_size=batch_size, device=device)
    recipe = list(fields or meta.get("text", {}).get("fields", [])) or None
    texts = pool_texts(tables, recipe, load_tokenizer(teacher_dir), log=log)
    levels = meta["levels"]
    common = {
        # The folder's bytes name the teacher: a retrained teacher in the same folder is another one.
        "teacher_id": f"{teacher_dir.resolve().name}:{folder_fingerprint(teacher_dir)[:16]}",
        "k": len(levels["names"]),
        "gains": levels["gains"],
        "settings": settings,
    }
    if ray_address:
        from distilrel.label.ray_backend import run_label_job_ray

        return run_label_job_ray(
            tables.pairs, texts, target, labeller.load, address=ray_address, num_actors=num_actors, **common
        )
    return run_label_job(tables.pairs, texts, target, labeller.load(), console=console, **common)


def damaged_files(out: Path, reasons: dict[int, str]) -> tuple[str, ...]:
    """The shards that had a file which failed the checks (not merely missing), with the reason."""
    return tuple(
        f"{shard_path(out, i).name}: {why}" for i, why in sorted(reasons.items()) if why != "missing"
    )


def _check_probs(p: np.ndarray, n: int, k: int, offset: int) -> None:
    """A scorer bug (wrong shape, NaN, logits instead of probabilities) must not reach a shard file."""
    if p.shape != (n, k):
        raise ValueError(
            f"scoring function returned shape {p.shape} for {n} pairs and K={k} (rows {offset}..)"
        )
    if not np.isfinite(p).all():
        bad = int(np.argwhere(~np.isfinite(p))[0][0])
        raise ValueError(f"scoring function returned a non-finite probability at pool row {offset + bad}")
    sums = p.sum(axis=1, dtype=np.float64)
    if (p < 0).any() or np.abs(sums - 1.0).max() > _PROB_SUM_TOL:
        bad = int(np.argmax(np.abs(sums - 1.0) + (p < 0).any(axis=1)))
        raise ValueError(
            f"scoring function must return probabilities (rows >= 0, summing to 1); pool row {offset + bad} "
            f"has {p[bad].tolist()}"
        )
