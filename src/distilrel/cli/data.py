"""`distilrel data info|export`: look at a dataset in its canonical form."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distilrel.cli.common import console, load

app = typer.Typer(help="Inspect and export datasets as canonical Parquet tables.", no_args_is_help=True)


@app.command()
def info(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the dataset's files")] = None,
) -> None:
    """Counts per split, levels and fields."""
    ds = load(dataset, data_dir)
    j = ds.judgments
    t = Table(title=f"{ds.name} ({ds.task}); fields {list(ds.fields)}")
    for col in ("split", "queries", "judgments", *ds.levels.names):
        t.add_column(col, justify="right")
    for split, g in j.groupby("split", sort=False):
        counts = g["level"].value_counts()
        t.add_row(
            str(split),
            str(g["query_id"].nunique()),
            str(len(g)),
            *[str(int(counts.get(i, 0))) for i in range(ds.levels.k)],
        )
    console.print(t)
    console.print(
        f"{len(ds.documents)} documents; gains {dict(zip(ds.levels.names, ds.levels.gains, strict=True))}"
    )
    for w in ds.meta.get("warnings", []):  # type: ignore[union-attr]
        console.print(f"[yellow]warning:[/] {w}")


@app.command()
def export(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    out: Annotated[Path, typer.Option(help="output folder")],
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the dataset's files")] = None,
) -> None:
    """Write documents.parquet, judgments.parquet and queries.parquet in the canonical schema."""
    from distilrel.io import write_json, write_parquet

    ds = load(dataset, data_dir)
    for name, df in (("documents", ds.documents), ("judgments", ds.judgments), ("queries", ds.queries)):
        write_parquet(out / f"{name}.parquet", df)
    write_json(out / "levels.json", ds.levels.to_dict())
    console.print(f"wrote {out}/{{documents,judgments,queries}}.parquet and levels.json")
