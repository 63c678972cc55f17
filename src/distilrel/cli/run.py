"""`distilrel run CONFIG.toml`: the whole pipeline, data → baselines → teacher → logs → label → student →
embed → index → evaluate → report; up-to-date stages are skipped and an interrupted run resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distilrel.cli.common import console


def run(
    config: Annotated[Path, typer.Argument(help="pipeline TOML, e.g. configs/quickstart.toml")],
    force: Annotated[
        str | None,
        typer.Option(
            help="comma-separated stages to run even when up to date (and the stages that read them)"
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="print what would run, run nothing")] = False,
    progress: Annotated[bool, typer.Option(help="progress bars in the long stages")] = True,
) -> None:
    """Run every stage that is not up to date (stamps in OUT/NAME/stages/) and write OUT/NAME/report.md."""
    from rich.markup import escape

    from distilrel.config import ConfigError
    from distilrel.pipeline.config import load_pipeline_config
    from distilrel.pipeline.context import RunContext
    from distilrel.pipeline.runner import plan, run_pipeline, summary_table

    try:
        cfg = load_pipeline_config(config)
        ctx = RunContext(cfg, console=console, progress=progress)
        if dry_run:
            for stage, fp, action in plan(ctx):
                console.print(f"{stage.name:10s} {action:7s} {fp}")
            return
        outcomes = run_pipeline(ctx, force=[s.strip() for s in (force or "").split(",") if s.strip()])
    except (ConfigError, FileNotFoundError, ImportError) as e:
        console.print(f"[red]error:[/] {escape(str(e))}")  # escaped: "[label]" is not rich markup
        raise typer.Exit(2) from e
    console.print(summary_table(outcomes, f"distilrel run {cfg.name} → {cfg.root}"))
    console.print(f"report: {cfg.root / 'report.md'}")
