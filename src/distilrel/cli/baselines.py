"""`distilrel baselines`: every baseline scorer on every dataset, one results table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distilrel.cli.common import console


def baselines(
    datasets: Annotated[
        str, typer.Option(help="comma-separated dataset names")
    ] = "crowdflower,homedepot,scifact",
    scorers: Annotated[str, typer.Option(help="comma-separated scorer names")] = "random,bm25,minilm,e5",
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/baselines"),
    split: Annotated[str, typer.Option(help="split to evaluate")] = "test",
    max_queries: Annotated[int | None, typer.Option(help="seeded sample of queries per dataset")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the datasets")] = None,
) -> None:
    """Evaluate baseline scorers on datasets; finished (dataset, scorer) runs are reused."""
    from distilrel.evaluate.suite import run_suite

    table = run_suite(
        [d.strip() for d in datasets.split(",") if d.strip()],
        [s.strip() for s in scorers.split(",") if s.strip()],
        out,
        split=split,
        max_queries=max_queries,
        data_dir=data_dir,
        log=console.print,
    )
    console.print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    console.print(f"report: {out / 'results.md'}")
