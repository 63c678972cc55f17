"""`distilrel evaluate` and `distilrel compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distilrel.cli.common import console, load, parse_fields, summary_table


def evaluate(
    dataset: Annotated[
        str, typer.Option(help="dataset name (crowdflower, homedepot, scifact, esci, table, ...)")
    ],
    scorer: Annotated[str, typer.Option(help="random, bm25, minilm, mpnet, e5, an HF id, or a model folder")],
    out: Annotated[Path, typer.Option(help="output folder, e.g. runs/bm25")],
    split: Annotated[str, typer.Option(help="train, validation, test or all")] = "test",
    max_queries: Annotated[int | None, typer.Option(help="evaluate a seeded sample of queries")] = None,
    fields: Annotated[
        str | None,
        typer.Option(
            help="document fields name[:label[:max_tokens]], comma-separated; engaged_queries is built "
            "from the dataset's train-split judgments"
        ),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="comma-separated metric names, e.g. ndcg@10,p@8")
    ] = None,
    depth: Annotated[int, typer.Option(help="candidates per query on retrieval datasets")] = 100,
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the dataset's files")] = None,
    calibrate_on: Annotated[
        str | None,
        typer.Option(
            help="map the scorer's score onto the dataset's levels by an ordered logit fitted on this split "
            "(e.g. train): the calibrated zero-shot baseline, with level accuracy and RMSE"
        ),
    ] = None,
    folds_from: Annotated[
        Path | None,
        typer.Option(
            help="a `teacher train --folds` folder: with --calibrate-on train, fit the calibration per fold "
            "on that fold's training queries and score each query out of fold (use with --split all)"
        ),
    ] = None,
) -> None:
    """Re-rank each query's judged candidates (or retrieve over the corpus) and write run.trec, qrels.trec,
    metrics.json, report.md and metrics.png."""
    from distilrel.evaluate.report import write_outputs
    from distilrel.evaluate.runner import EvalSettings, text_builder_for
    from distilrel.evaluate.runner import evaluate as run_eval
    from distilrel.evaluate.scorers import load_scorer
    from distilrel.text.engaged import COLUMN as ENGAGED
    from distilrel.text.engaged import add_engaged_queries

    ds = load(dataset, data_dir)
    field_specs = parse_fields(fields)
    # The engaged-queries field is not in any dataset file: it is built here, as the pipeline builds it.
    if field_specs and any(f.split(":", 1)[0] == ENGAGED for f in field_specs):
        ds = add_engaged_queries(ds)
    sc = load_scorer(scorer, progress=True)
    builder = text_builder_for(sc, ds, field_specs)
    if folds_from is not None:
        if calibrate_on is None:
            raise typer.BadParameter("--folds-from fits a calibration per fold: give --calibrate-on train")
        from distilrel.evaluate.calibrated import calibrate_out_of_fold

        sc = calibrate_out_of_fold(sc, ds, builder, folds_from, calibrate_on)
    elif calibrate_on is not None:
        from distilrel.evaluate.calibrated import calibrate_scorer

        if calibrate_on == split or split == "all":
            raise typer.BadParameter(f"--calibrate-on {calibrate_on} would fit on the evaluated queries")
        sc = calibrate_scorer(sc, ds, builder, calibrate_on)
    settings = EvalSettings(
        split=split, max_queries=max_queries, depth=depth, metrics=tuple(parse_fields(metrics) or ())
    )
    result = run_eval(ds, sc, builder, settings)
    info = {
        "scorer_spec": scorer,
        "fields": [f.name for f in builder.fields],
        "gains": dict(zip(ds.levels.names, ds.levels.gains, strict=True)),
        "max_queries": max_queries,
    }
    paths = write_outputs(result, out, info)
    console.print(
        summary_table(
            f"{sc.name} on {dataset}/{split} ({len(result.per_query)} queries)",
            {**result.summary, **result.classifier},
        )
    )
    console.print(f"report: {paths['report']}")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="evaluation run folders; the first is the reference")],
    out: Annotated[
        Path | None, typer.Option(help="where to write compare.md/png (default: beside the first run)")
    ] = None,
    metrics: Annotated[str, typer.Option(help="comma-separated metric names")] = "ndcg@10,p@8",
    method: Annotated[str, typer.Option(help="bootstrap, ttest or randomization")] = "bootstrap",
) -> None:
    """Put runs side by side with a paired significance test over queries."""
    from distilrel.evaluate.compare import compare_runs, write_comparison
    from distilrel.evaluate.report import markdown_table

    table, tests = compare_runs(runs, parse_fields(metrics) or [], method=method)
    target = out or runs[0].parent / f"compare-{'-'.join(r.name for r in runs)}"
    paths = write_comparison(table, tests, target, f"compare on {runs[0].name}…")
    typer.echo(markdown_table(table))
    typer.echo(markdown_table(tests))
    console.print(f"report: {paths['report']}")
