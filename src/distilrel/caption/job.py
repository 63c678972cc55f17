"""Batched, sharded, resumable image captioning: ``doc_id -> caption`` as Parquet.

Output folder::

    out/
      manifest.json        the plan: input hash (doc ids + image paths), captioner id, shard size
      shard-00000.parquet  doc_id, image, caption, error   (one per ``shard_size`` input rows)
      captions.parquet     every shard in input order, written once all shards are done

A shard file only ever appears by an atomic rename and a rerun checks each one before trusting it, so a
killed run keeps its finished shards, a rerun computes only the rest (with the very batches an
uninterrupted run would use: the same captions), and a finished shard is never rewritten. The image
files themselves are not hashed: replacing an image under the same path needs ``overwrite``.

Missing or unreadable images stop the run with an error naming the file, the row and the doc id —
missing files are found by a stat of every pending row before the model is loaded. With
``skip_missing`` they are recorded instead: ``caption`` null and ``error`` saying why, and listed in the
summary. A run without ``skip_missing`` recomputes shards that hold such rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pandas as pd

from distilrel.caption.images import INPUT_COLUMNS, ImageError, check_images_exist, image_problem, where
from distilrel.caption.model import CaptionFn
from distilrel.io import atomic_path
from distilrel.label.shards import frame_hash, open_run, shard_path, write_shard
from distilrel.scale.progress import progress_bar

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

CAPTIONS_FILE = "captions.parquet"
SHARD_COLUMNS = ("doc_id", "image", "caption", "error")
PLAN_VERSION = 1


@dataclass(frozen=True)
class CaptionSettings:
    shard_size: int = 256  # images per shard file (the unit of resumption)
    batch_size: int = 8  # images per generate() call
    skip_missing: bool = False  # record missing/unreadable images instead of stopping
    overwrite: bool = False  # delete the captions of another plan in the output folder and start over
    progress: bool = True  # rich progress bar (images/s) on stderr

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError(
                f"shard_size and batch_size must be >= 1, got {self.shard_size}, {self.batch_size}"
            )


@dataclass(frozen=True)
class CaptionPlan:
    """What a caption run computes; two runs may share an output folder only if their plans match."""

    kind: ClassVar[str] = "captions"

    n_rows: int
    shard_size: int
    input_hash: str  # doc ids and image paths, in order
    model_id: str  # the captioner (weights fingerprint + generation settings)
    version: int = PLAN_VERSION

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.n_rows)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "n_shards": self.n_shards}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> CaptionPlan:
        return cls(**{k: v for k, v in d.items() if k != "n_shards"})  # type: ignore[arg-type]

    def differences(self, other: CaptionPlan) -> list[str]:
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


@dataclass(frozen=True)
class CaptionSummary:
    images: int  # rows of the input table
    shards: int
    shards_done: int  # captioned by this run
    shards_skipped: int  # already finished by an earlier run
    images_captioned: int  # by this run (skipped images excluded)
    seconds: float
    output: str  # the captions table
    backend: str = "in-process"
    skipped: tuple[str, ...] = ()  # every missing/unreadable image of the output: "row 3 (doc_id 'd2'): ..."
    damaged: tuple[str, ...] = ()  # "shard-00002.parquet: <why>" for files found unusable and recomputed

    @property
    def images_per_s(self) -> float:
        return self.images_captioned / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 2)}


# --- one shard ------------------------------------------------------------------------------------


def caption_rows(
    inputs: pd.DataFrame,
    caption_fn: CaptionFn,
    batch_size: int,
    skip_missing: bool,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[str | None], list[str | None]]:
    """(captions, errors) for the rows of ``inputs`` (doc_id, image), captioned in batches at fixed offsets
    from the first row, so the same rows always go through the model in the same batches. Images are
    read one batch at a time (bounded memory). A bad image raises :class:`ImageError` (naming file, row
    and doc id) unless ``skip_missing``: then its caption is None and its error says why."""
    captions: list[str | None] = []
    errors: list[str | None] = []
    for lo in range(0, len(inputs), batch_size):
        part = inputs.iloc[lo : lo + batch_size]
        images, idx = [], []
        for j, (doc_id, path) in enumerate(zip(part["doc_id"], part["image"], strict=True)):
            image, why = image_problem(path)
            if why is not None and not skip_missing:
                row = int(part.index[j])
                raise ImageError(f"{path or '<empty>'}: {why}, {where(row, doc_id)}; or pass --skip-missing")
            errors.append(why)
            captions.append(None)
            if image is not None:
                images.append(image)
                idx.append(lo + j)
        got = caption_fn(images) if images else []
        if len(got) != len(images):
            raise ValueError(f"caption function returned {len(got)} captions for {len(images)} images")
        for i, text in zip(idx, got, strict=True):
            captions[i] = str(text)
        if on_batch is not None:
            on_batch(len(part))
    return captions, errors


def shard_frame(
    inputs: pd.DataFrame, captions: Sequence[str | None], errors: Sequence[str | None]
) -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "doc_id": pa.array(inputs["doc_id"].tolist(), pa.string()),
            "image": pa.array(inputs["image"].tolist(), pa.string()),
            "caption": pa.array(list(captions), pa.string()),
            "error": pa.array(list(errors), pa.string()),
        }
    )


def check_shard(path: Path, rows: pd.DataFrame, skip_missing: bool) -> str | None:
    """None if ``path`` is the finished shard for ``rows``; else why it must be (re)computed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return "missing"
    try:
        f = pq.ParquetFile(path)
        if f.schema_arrow.names != list(SHARD_COLUMNS):
            return f"columns {f.schema_arrow.names}"
        if f.metadata.num_rows != len(rows):
            return f"{f.metadata.num_rows} rows, expected {len(rows)}"
        table = f.read(columns=["doc_id", "image", "error"])
    except (OSError, pa.ArrowException) as exc:  # truncated or overwritten by something else
        return f"unreadable ({type(exc).__name__}: {exc})"
    for col in ("doc_id", "image"):
        if table[col].to_pylist() != rows[col].tolist():
            return f"column {col} does not match the input"
    skipped = table.num_rows - table["error"].null_count
    if skipped and not skip_missing:
        return f"{skipped} image(s) skipped by a --skip-missing run"
    return None


# --- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionRun:
    """An opened output folder: the plan and the shards still to caption (either backend)."""

    out: Path
    plan: CaptionPlan
    todo: tuple[int, ...]
    reasons: dict[int, str]  # why each shard in todo is pending
    start_time: float

    @property
    def done_rows(self) -> int:
        return self.plan.n_rows - sum(self.plan.bounds(i)[1] - self.plan.bounds(i)[0] for i in self.todo)


def open_caption_run(
    inputs: pd.DataFrame, out: str | Path, model_id: str, settings: CaptionSettings
) -> CaptionRun:
    """Claim ``out`` for this input and captioner, find the pending shards, and — unless skip_missing —
    fail on the first missing image file among them before any model is loaded."""
    if list(inputs.columns) != list(INPUT_COLUMNS):
        raise ValueError(
            f"caption inputs need columns {list(INPUT_COLUMNS)} (see caption_inputs), "
            f"got {list(inputs.columns)}"
        )
    inputs = inputs.reset_index(drop=True)
    out = Path(out).resolve()
    plan = CaptionPlan(len(inputs), settings.shard_size, frame_hash(inputs), model_id)
    open_run(out, plan, settings.overwrite)
    todo: list[int] = []
    reasons: dict[int, str] = {}
    for shard in range(plan.n_shards):
        start, stop = plan.bounds(shard)
        why = check_shard(shard_path(out, shard), inputs.iloc[start:stop], settings.skip_missing)
        if why is not None:
            todo.append(shard)
            reasons[shard] = why
    if not settings.skip_missing:
        check_images_exist(inputs, [r for s in todo for r in range(*plan.bounds(s))])
    return CaptionRun(out, plan, tuple(todo), reasons, time.perf_counter())


def finish_caption_run(
    run: CaptionRun, inputs: pd.DataFrame, captioned: int, backend: str = "in-process"
) -> CaptionSummary:
    """Write ``captions.parquet`` (every shard, in input order) and summarise the run."""
    table = _combine(run)
    if run.todo or not (run.out / CAPTIONS_FILE).is_file():
        import pyarrow.parquet as pq

        with atomic_path(run.out / CAPTIONS_FILE, suffix=".parquet") as tmp:
            pq.write_table(table, tmp)
    errors = table["error"].to_pylist()
    skipped = tuple(
        f"{where(i, inputs['doc_id'].iat[i])}: {inputs['image'].iat[i] or '<empty>'}: {why}"
        for i, why in enumerate(errors)
        if why is not None
    )
    return CaptionSummary(
        images=run.plan.n_rows,
        shards=run.plan.n_shards,
        shards_done=len(run.todo),
        shards_skipped=run.plan.n_shards - len(run.todo),
        images_captioned=captioned,
        seconds=time.perf_counter() - run.start_time,
        output=str(run.out / CAPTIONS_FILE),
        backend=backend,
        skipped=skipped,
        damaged=tuple(
            f"{shard_path(run.out, i).name}: {why}"
            for i, why in sorted(run.reasons.items())
            if why != "missing"
        ),
    )


def _combine(run: CaptionRun) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(shard_path(run.out, i)) for i in range(run.plan.n_shards)]
    if not tables:
        return shard_frame(pd.DataFrame({"doc_id": [], "image": []}), [], [])
    return pa.concat_tables(tables)


def run_caption_job(
    inputs: pd.DataFrame,
    out: str | Path,
    load: Callable[[], CaptionFn],
    *,
    model_id: str,
    settings: CaptionSettings = CaptionSettings(),
    console: Console | None = None,
) -> CaptionSummary:
    """Caption ``inputs`` (:func:`~distilrel.caption.images.caption_inputs`: doc_id, image) into ``out``.

    load:     returns the caption function; called only if some shard needs captioning.
    model_id: names the captioner in the manifest (a rerun with another id refuses to mix outputs).
    """
    inputs = inputs.reset_index(drop=True)
    run = open_caption_run(inputs, out, model_id, settings)
    captioned = 0
    if run.todo:
        caption_fn = load()
        with progress_bar(
            run.plan.n_rows, run.done_rows, settings.progress, console, what="captioning", unit="images"
        ) as advance:
            for shard in run.todo:
                start, stop = run.plan.bounds(shard)
                rows = inputs.iloc[start:stop]
                captions, errors = caption_rows(
                    rows, caption_fn, settings.batch_size, settings.skip_missing, advance
                )
                write_shard(shard_path(run.out, shard), shard_frame(rows, captions, errors))
                captioned += sum(e is None for e in errors)
    return finish_caption_run(run, inputs, captioned)


def read_captions(path: str | Path) -> pd.DataFrame:
    """``doc_id, caption`` from a caption output folder or its ``captions.parquet`` (or any Parquet file
    with those columns); skipped images have a null caption."""
    import pyarrow.parquet as pq

    path = Path(path)
    file = path / CAPTIONS_FILE if path.is_dir() else path
    if not file.is_file():
        hint = " (the caption run is unfinished or never ran: `distilrel caption`)" if path.is_dir() else ""
        raise FileNotFoundError(f"captions table {file} not found{hint}")
    names = pq.read_schema(file).names
    missing = [c for c in ("doc_id", "caption") if c not in names]
    if missing:
        raise ValueError(f"{file}: not a captions table, no column(s) {missing}; it has {names}")
    return pq.read_table(file, columns=["doc_id", "caption"]).to_pandas()
