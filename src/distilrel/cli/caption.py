"""`distilrel caption`: a vision-language model writes a caption per document image into sharded,
resumable Parquet (``--ray-address`` runs it on Ray Data); the result joins into a dataset as the
``caption`` field (``captions = "OUT/captions.parquet"`` in its ``[[data.datasets]]`` entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distilrel.cli.common import console


def caption(
    table: Annotated[
        Path,
        typer.Argument(help="documents table (parquet/csv/jsonl) with a doc id and an image path column"),
    ],
    model: Annotated[str, typer.Option(help="captioning model: a local folder or a Hugging Face id")],
    out: Annotated[Path, typer.Option(help="output folder (shards, manifest, captions.parquet)")] = Path(
        "runs/captions"
    ),
    image_column: Annotated[
        str, typer.Option(help="column of image file paths (absolute, or relative to the table's folder)")
    ] = "image",
    id_column: Annotated[str, typer.Option(help="column of document ids")] = "doc_id",
    shard_size: Annotated[int, typer.Option(help="images per shard file (the unit of resumption)")] = 256,
    batch_size: Annotated[int, typer.Option(help="images per generate() call")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="longest caption, in tokens")] = 30,
    skip_missing: Annotated[
        bool, typer.Option(help="record missing/unreadable images (listed in the summary) instead of failing")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available)")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="run on Ray Data at this address (auto, host:port, ray://...)")
    ] = None,
    num_actors: Annotated[int, typer.Option(help="Ray actors (each loads the model once)")] = 1,
    overwrite: Annotated[bool, typer.Option(help="discard captions of another input/model in OUT")] = False,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Caption every document image (greedy decoding: a rerun gives the same captions) into
    OUT/captions.parquet (doc_id → caption); a rerun skips finished shards."""
    from distilrel.caption.images import caption_inputs
    from distilrel.caption.job import CaptionSettings, run_caption_job
    from distilrel.caption.model import Captioner
    from distilrel.data.validate import drop_bookkeeping, read_table

    docs = drop_bookkeeping(read_table(table))
    inputs = caption_inputs(docs, image_column, table.resolve().parent, id_column)
    captioner = Captioner(model, max_new_tokens=max_new_tokens, device=device)
    with console.status("fingerprinting the captioning model"):
        model_id = captioner.model_id()
    settings = CaptionSettings(
        shard_size=shard_size,
        batch_size=batch_size,
        skip_missing=skip_missing,
        overwrite=overwrite,
        progress=progress,
    )
    if ray_address:
        from distilrel.caption.ray_backend import run_caption_job_ray

        summary = run_caption_job_ray(
            inputs,
            out,
            captioner.load,
            address=ray_address,
            model_id=model_id,
            settings=settings,
            num_actors=num_actors,
        )
    else:
        summary = run_caption_job(
            inputs, out, captioner.load, model_id=model_id, settings=settings, console=console
        )
    for note in summary.damaged:
        console.print(f"[yellow]recomputed a damaged shard[/] {note}")
    for note in summary.skipped:
        console.print(f"[yellow]skipped image[/] {note}")
    t = Table(title=f"captions → {summary.output} ({summary.backend})")
    for col in ("images", "shards", "captioned now", "skipped (done before)", "missing images", "seconds"):
        t.add_column(col, justify="right")
    t.add_column("images/s", justify="right")
    t.add_row(
        str(summary.images),
        str(summary.shards),
        f"{summary.shards_done} ({summary.images_captioned} images)",
        str(summary.shards_skipped),
        str(len(summary.skipped)),
        f"{summary.seconds:.1f}",
        f"{summary.images_per_s:,.2f}",
    )
    console.print(t)
