"""`distilrel transfer`: fine-tune teachers on English XQuAD-R, measure every language (and ja_qa)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distilrel.cli.common import console


def transfer(
    teachers: Annotated[
        list[Path], typer.Argument(help="teacher TOML configs, e.g. configs/transfer-xquad-minilm.toml")
    ],
    out: Annotated[Path, typer.Option(help="output folder (table.md, transfer.png, ...)")] = Path(
        "runs/transfer"
    ),
    first_stages: Annotated[str, typer.Option(help="zero-shot first stages, comma-separated")] = "e5,minilm",
    rerank_first_stage: Annotated[str, typer.Option(help="the first stage the teachers re-rank")] = "e5",
    depth: Annotated[int, typer.Option(help="candidates the teachers re-rank per question")] = 20,
    max_queries: Annotated[
        int, typer.Option(help="test questions per language (seeded, same in each)")
    ] = 200,
    ja_qa: Annotated[bool, typer.Option("--ja-qa/--no-ja-qa", help="also measure Japanese ja_qa")] = True,
    seed: Annotated[int, typer.Option(help="which test questions are sampled")] = 0,
    retrain: Annotated[bool, typer.Option(help="train teachers again even when their model exists")] = False,
    max_steps: Annotated[int | None, typer.Option(help="cap teacher training steps (smoke runs)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="root holding the datasets' folders")] = None,
) -> None:
    """Train each teacher on English only, check no test question leaks, evaluate per language."""
    from rich.markup import escape

    from distilrel.config import ConfigError
    from distilrel.pipeline.transfer import TransferSettings, run_transfer

    try:
        settings = TransferSettings(
            teachers=tuple(teachers),
            out=out,
            first_stages=tuple(s.strip() for s in first_stages.split(",") if s.strip()),
            rerank_first_stage=rerank_first_stage,
            depth=depth,
            max_queries=max_queries,
            ja_qa=ja_qa,
            seed=seed,
            retrain=retrain,
            max_steps=max_steps,
            data_dir=data_dir,
        )
        report = run_transfer(settings, console=console)
    except (ConfigError, FileNotFoundError) as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2) from e
    console.print(f"table: {report.paths['table']}  plot: {report.paths['plot']}")
