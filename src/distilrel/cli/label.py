"""`distilrel logs build` (search logs / training queries → unlabelled pool) and `distilrel label`
(the teacher scores the pool into sharded, resumable soft labels; ``--ray-address`` runs it on Ray Data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distilrel.cli.common import console, parse_fields

logs_app = typer.Typer(
    help="Turn search logs and training queries into an unlabelled pair pool.", no_args_is_help=True
)

_DEFAULT_DATASETS = "homedepot,crowdflower,scifact,esci_es,ja_qa,xquad_r"  # = label.pool.DEFAULT_DATASETS


def _names(spec: str | None) -> list[str]:
    return [s.strip() for s in (spec or "").split(",") if s.strip()]


@logs_app.command()
def build(
    out: Annotated[
        Path, typer.Option(help="pool folder: pairs.parquet, documents.parquet, pool.json")
    ] = Path("runs/pool"),
    datasets: Annotated[
        str, typer.Option(help="datasets whose TRAIN queries form the stream, in order ('' for none)")
    ] = _DEFAULT_DATASETS,
    retrievers: Annotated[
        str, typer.Option(help="first stage: bm25, ann or ann:MODEL, comma-separated")
    ] = "bm25",
    k: Annotated[int, typer.Option(help="candidates per query and retriever")] = 20,
    max_queries: Annotated[
        int | None, typer.Option(help="cap on queries (log first, then datasets in order)")
    ] = None,
    log: Annotated[
        Path | None, typer.Option(help="your log table (parquet/csv/jsonl): query, doc_id, engagement")
    ] = None,
    log_catalog: Annotated[
        str | None, typer.Option(help="dataset whose documents the log's doc ids name")
    ] = None,
    log_columns: Annotated[
        str | None, typer.Option(help="column mapping, e.g. query=search_term,doc_id=sku,engagement=clicks")
    ] = None,
    ubi: Annotated[
        Path | None, typer.Option(help="UBI folder with events.parquet (+ queries.parquet)")
    ] = None,
    source_kind: Annotated[str, typer.Option(help="UBI source_kind(s) to keep, comma-separated")] = (
        "chorus_demo_session"
    ),
    queries_only: Annotated[
        bool, typer.Option(help="use the log's queries only, not its (query, doc) pairs")
    ] = False,
) -> None:
    """Pool (query, doc) pairs: first-stage top-k per query (+ logged pairs); validation/test query texts
    of every dataset are excluded."""
    from distilrel.label.logs import parse_column_map, read_log_table, read_ubi_events
    from distilrel.label.pool import build_pool_tables, write_pool

    if log is not None and ubi is not None:
        raise typer.BadParameter("give --log or --ubi, not both")
    query_log = None
    if log is not None:
        if log_catalog is None:
            raise typer.BadParameter("--log needs --log-catalog (the dataset its doc ids refer to)")
        query_log = read_log_table(log, log_catalog, parse_column_map(log_columns))
    elif ubi is not None:
        query_log = read_ubi_events(ubi, source_kinds=_names(source_kind), catalog=log_catalog)
    for note in query_log.notes if query_log is not None else ():
        console.print(f"[yellow]note:[/] {note}")

    pool = build_pool_tables(
        _names(datasets),
        retrievers=_names(retrievers),
        k=k,
        max_queries=max_queries,
        query_log=query_log,
        log=lambda msg: console.print(msg),
        log_pairs=not queries_only,
    )
    write_pool(pool, out)
    sources = [str(x) for x in pool.pairs["source"].unique()]
    t = Table(title=f"pool → {out}")
    for col in ("dataset", "queries", *sources):
        t.add_column(col, justify="right")
    for name, g in pool.pairs.groupby("dataset", sort=False):
        counts = g["source"].value_counts()
        t.add_row(str(name), str(g["query_id"].nunique()), *[str(int(counts.get(s, 0))) for s in sources])
    console.print(t)
    console.print(f"{len(pool.pairs)} pairs; eval-query texts excluded: {pool.info['excluded_eval_queries']}")


def label(
    pool: Annotated[Path, typer.Argument(help="pool folder written by `distilrel logs build`")],
    teacher: Annotated[Path, typer.Option(help="teacher folder (distilrel.json)")],
    out: Annotated[Path | None, typer.Option(help="labels folder (default: POOL/labels)")] = None,
    shard_size: Annotated[int, typer.Option(help="pairs per shard file (the unit of resumption)")] = 4096,
    batch_size: Annotated[int, typer.Option(help="pairs per forward pass (length-bucketed)")] = 64,
    chunk_size: Annotated[int, typer.Option(help="pairs per scoring call (bucketing window)")] = 512,
    fields: Annotated[
        str | None, typer.Option(help="document fields name[:label[:max_tokens]] (default: the teacher's)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available)")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="run on Ray Data at this address (auto, host:port, ray://...)")
    ] = None,
    num_actors: Annotated[int, typer.Option(help="Ray actors (each loads the teacher once)")] = 1,
    overwrite: Annotated[bool, typer.Option(help="discard labels of another pool/teacher in OUT")] = False,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Score every pool pair with the teacher into K-level probabilities (sharded Parquet; a rerun skips
    finished shards)."""
    from distilrel.label.job import LabelSettings, label_pool_folder

    settings = LabelSettings(
        shard_size=shard_size, chunk_size=chunk_size, overwrite=overwrite, progress=progress
    )
    target = out or pool / "labels"
    # No console.status around this: the job shows its own progress bar (rich allows one live display).
    summary = label_pool_folder(
        pool,
        teacher,
        target,
        settings=settings,
        batch_size=batch_size,
        device=device,
        fields=_field_recipe(fields),
        ray_address=ray_address,
        num_actors=num_actors,
        console=console,
        log=lambda m: console.print(f"[yellow]{m}[/]"),
    )
    for note in summary.damaged:
        console.print(f"[yellow]recomputed a damaged shard[/] {note}")
    t = Table(title=f"labels → {target} ({summary.backend})")
    for col in ("pairs", "shards", "labelled now", "skipped (done before)", "seconds", "pairs/s"):
        t.add_column(col, justify="right")
    t.add_row(
        str(summary.pairs),
        str(summary.shards),
        f"{summary.shards_done} ({summary.pairs_labelled} pairs)",
        str(summary.shards_skipped),
        f"{summary.seconds:.1f}",
        f"{summary.pairs_per_s:,.1f}",
    )
    console.print(t)


def _field_recipe(spec: str | None) -> list[dict[str, object]] | None:
    """``title,description:Description:256`` → TextBuilder field dicts."""
    items = parse_fields(spec)
    if not items:
        return None
    out: list[dict[str, object]] = []
    for item in items:
        name, *rest = item.split(":")
        entry: dict[str, object] = {"name": name}
        if rest:
            entry["label"] = rest[0]
        if len(rest) > 1 and rest[1]:
            entry["max_tokens"] = int(rest[1])
        out.append(entry)
    return out
