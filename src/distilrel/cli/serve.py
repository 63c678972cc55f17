"""`distilrel embed`, `distilrel index build`, `distilrel serve` and `distilrel cache replay`.

Drivers only: the work is in :mod:`distilrel.index` and :mod:`distilrel.serve`. Heavy imports (torch,
faiss, FastAPI) happen inside the commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distilrel.cli.common import console, parse_fields

index_app = typer.Typer(no_args_is_help=True, help="Build the FAISS index over the embedding store.")
cache_app = typer.Typer(no_args_is_help=True, help="Query-cache tools.")

StudentOpt = Annotated[Path, typer.Option(help="saved student folder (distilrel.json kind 'student')")]
StoreOpt = Annotated[Path, typer.Option(help="embedding store folder")]


def embed(
    student: StudentOpt,
    store: StoreOpt = Path("runs/store"),
    dataset: Annotated[
        str | None, typer.Option(help="catalog: a dataset's documents, e.g. homedepot")
    ] = None,
    documents: Annotated[
        Path | None, typer.Option(help="catalog: a table (parquet/csv/jsonl) with doc_id + text fields")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder of --dataset (default: shared data)")] = None,
    fields: Annotated[
        str | None, typer.Option(help="text fields, comma-separated (default: the student's own)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="documents per forward pass")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if available)")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="embed on Ray Data at this address (auto, host:port, ray://...)")
    ] = None,
    num_actors: Annotated[int, typer.Option(help="Ray actors (each loads the document tower once)")] = 1,
    chunk_size: Annotated[int, typer.Option(help="Ray: documents per task")] = 1024,
) -> None:
    """Embed the catalog's new and changed documents into the store and drop deleted ones; unchanged
    documents (same content hash, same document tower) are not re-embedded. Writes atomically."""
    from distilrel.index.embed import embed_catalog

    if (dataset is None) == (documents is None):
        raise typer.BadParameter("give the catalog as --dataset NAME or --documents FILE (one of them)")
    default_fields: tuple[str, ...] = ()
    if dataset is not None:
        from distilrel.cli.common import load

        ds = load(dataset, data_dir)
        docs, default_fields = ds.documents, ds.fields
    else:
        from distilrel.data.validate import drop_bookkeeping, read_table

        assert documents is not None
        docs = drop_bookkeeping(read_table(documents))
    report = embed_catalog(
        student,
        docs,
        store,
        fields=parse_fields(fields),
        default_fields=default_fields,
        device=device,
        batch_size=batch_size,
        log=console.print,
        ray_address=ray_address,
        num_actors=num_actors,
        chunk_size=chunk_size,
    )
    table = Table(title=f"embedding store {store} (generation {report.generation})")
    for name in ("total", "new", "changed", "unchanged", "deleted", "embedded"):
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(
        *(f"{getattr(report, n):,}" for n in ("total", "new", "changed", "unchanged", "deleted", "embedded")),
        f"{report.seconds:.2f}",
    )
    console.print(table)
    console.print(f"model: {report.model_id}")


@index_app.command()
def build(
    store: StoreOpt = Path("runs/store"),
    out: Annotated[Path, typer.Option(help="index folder (replaced whole)")] = Path("runs/index"),
    kind: Annotated[str, typer.Option(help="auto (exact up to --exact-max), flat, hnsw or ivfpq")] = "auto",
    exact_max: Annotated[int, typer.Option(help="auto: exact search up to this many documents")] = 100_000,
    hnsw_m: Annotated[int, typer.Option(help="HNSW graph degree")] = 32,
    ef_search: Annotated[int, typer.Option(help="HNSW search beam")] = 128,
    nlist: Annotated[int | None, typer.Option(help="IVF lists (default ~4*sqrt(n))")] = None,
    pq_m: Annotated[int | None, typer.Option(help="PQ sub-vectors (default dim/8)")] = None,
    nprobe: Annotated[int, typer.Option(help="IVF lists searched per query")] = 16,
) -> None:
    """Index the store's current generation (the serving engine checks that they match)."""
    from distilrel.index.faiss_index import IndexConfig, build_index

    config = IndexConfig(
        kind=kind,  # type: ignore[arg-type]
        exact_max=exact_max,
        hnsw_m=hnsw_m,
        ef_search=ef_search,
        nlist=nlist,
        pq_m=pq_m,
        nprobe=nprobe,
    )
    index = build_index(store, out, config)
    console.print(
        f"{index.kind} index of {len(index):,} documents (store generation {index.generation}) → {out}"
    )


def serve(
    student: StudentOpt,
    store: StoreOpt = Path("runs/store"),
    index: Annotated[
        Path | None,
        typer.Option(help="index folder from `distilrel index build` (default: exact, in memory)"),
    ] = None,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis for the query cache, e.g. redis://127.0.0.1:6379/0")
    ] = None,
    cache_size: Annotated[int, typer.Option(help="in-process query cache entries")] = 100_000,
    cache_ttl: Annotated[
        float | None, typer.Option(help="query cache TTL in seconds (default: none)")
    ] = None,
    teacher: Annotated[Path | None, typer.Option(help="teacher folder for re-scoring the head")] = None,
    teacher_top: Annotated[int, typer.Option(help="results the teacher re-scores by default")] = 0,
    max_candidates: Annotated[int, typer.Option(help="candidates per request")] = 1000,
    max_text_chars: Annotated[int, typer.Option(help="characters per inline document text")] = 20_000,
    api_key_env: Annotated[
        str, typer.Option(help="environment variable holding the API key (unset: no authentication)")
    ] = "DISTILREL_API_KEY",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="explorer (/ui): catalog dataset whose judged queries, labels and titles it shows"),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder of --dataset (default: shared data)")] = None,
    judgments: Annotated[
        Path | None, typer.Option(help="explorer: judgments folder to append to (default: judging off)")
    ] = None,
    annotator: Annotated[
        str, typer.Option(help="explorer: default name recorded with each judgment")
    ] = os.environ.get("USER", "anonymous"),
    allow_held: Annotated[
        bool,
        typer.Option(
            help="serve a student that its pipeline run's promotion gate held (worse than a baseline)"
        ),
    ] = False,
) -> None:
    """Serve /v1/rerank, /v1/search, /v1/embed, /v1/related/{doc_id}, /healthz, /metrics and the relevance
    explorer and judging page at /ui."""
    import uvicorn

    from distilrel.pipeline.promotion import held_reason

    held = held_reason(student)
    if held and not allow_held:
        raise typer.BadParameter(
            f"the promotion gate held this student: {held}; --allow-held serves it anyway"
        )

    from distilrel.serve.app import ServeSettings, create_app
    from distilrel.serve.cache import make_cache
    from distilrel.serve.engine import EngineConfig, load_engine

    if teacher_top and teacher is None:
        raise typer.BadParameter("--teacher-top needs --teacher")
    settings = ServeSettings(
        api_key=os.environ.get(api_key_env) or None,
        max_candidates=max_candidates,
        max_text_chars=max_text_chars,
    )
    engine = load_engine(
        student,
        store,
        index,
        cache=make_cache(cache_size, cache_ttl, redis_url),
        teacher_dir=teacher,
        config=EngineConfig(teacher_top=teacher_top),
        device=device,
    )
    console.print(json.dumps(engine.health()))
    if settings.api_key is None:
        console.print(f"[yellow]no API key[/] (set {api_key_env} to require one)")
    from distilrel.judge.store import JudgmentStore
    from distilrel.serve.ui.explorer import Explorer

    catalog = None
    if dataset is not None:
        from distilrel.cli.common import load

        catalog = load(dataset, data_dir)
    store = JudgmentStore(judgments, engine.student.levels) if judgments is not None else None
    explorer = Explorer(engine, catalog, store, annotator=annotator)
    console.print(f"explorer: http://{host}:{port}/ui" + ("" if store else " (judging off: no --judgments)"))
    app = create_app(engine, settings, explorer)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        engine.close()


@cache_app.command()
def replay(
    out: Annotated[Path, typer.Option(help="folder for hit_rate.csv, hit_rate.png, replay.json")] = Path(
        "runs/cache-replay"
    ),
    log: Annotated[Path | None, typer.Option(help="query log (.txt, or a table with a query column)")] = None,
    query_column: Annotated[str, typer.Option(help="the log's query column")] = "query",
    time_column: Annotated[str | None, typer.Option(help="the log's timestamp column (for --ttl)")] = None,
    dataset: Annotated[
        str, typer.Option(help="without --log: simulate traffic over this dataset's distinct queries")
    ] = "homedepot",
    data_dir: Annotated[Path | None, typer.Option(help="folder of --dataset")] = None,
    requests: Annotated[int, typer.Option(help="simulation: queries drawn")] = 200_000,
    zipf: Annotated[float, typer.Option(help="simulation: Zipf exponent s of query popularity")] = 1.0,
    seed: Annotated[int, typer.Option(help="simulation: seed of the ranking and the draws")] = 0,
    sizes: Annotated[str, typer.Option(help="cache sizes, comma-separated")] = "10,100,1000,3000,10000",
    ttl: Annotated[float | None, typer.Option(help="TTL in seconds (needs --time-column)")] = None,
) -> None:
    """Replay a query stream through the LRU at several sizes and plot hit rate against size."""
    from distilrel.io import write_json, write_text
    from distilrel.serve.replay import plot_hit_rate, read_query_log, zipf_stream
    from distilrel.serve.replay import replay as run_replay

    if log is not None:
        stream = read_query_log(log, query_column, time_column)
    else:
        from distilrel.cli.common import load

        ds = load(dataset, data_dir)
        stream = zipf_stream(
            ds.judgments["query"].tolist(), requests, zipf, seed, source=f"{dataset} queries"
        )
    try:
        cache_sizes = [int(s) for s in parse_fields(sizes) or []]
    except ValueError:
        raise typer.BadParameter(f"--sizes must be integers, got {sizes!r}") from None
    table = run_replay(stream, cache_sizes, ttl_s=ttl)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "hit_rate.csv", table.to_csv(index=False))
    plot_hit_rate(table, out / "hit_rate.png", stream.description)
    write_json(
        out / "replay.json", {"stream": stream.description, "ttl_s": ttl, "rows": table.to_dict("records")}
    )
    shown = Table(title=stream.description)
    for col in ("size", "requests", "distinct", "hits", "evictions", "hit_rate"):
        shown.add_column(col, justify="right")
    for row in table.itertuples():
        size = "unbounded" if row.size == -1 else f"{row.size:,}"
        shown.add_row(
            size,
            f"{row.requests:,}",
            f"{row.distinct:,}",
            f"{row.hits:,}",
            f"{row.evictions:,}",
            f"{row.hit_rate:.3f}",
        )
    console.print(shown)
    console.print(f"plot: {out / 'hit_rate.png'}")
