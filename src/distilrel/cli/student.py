"""`distilrel student train`: distil the teacher's level distributions into a bi-encoder student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distilrel.cli.common import console, summary_table
from distilrel.cli.teacher import MaxStepsOption, OutputDirOption, ResumeOption, with_run_flags

app = typer.Typer(no_args_is_help=True, help="Train the distilled bi-encoder student.")


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="student TOML config, e.g. configs/student-minilm.toml")],
    max_steps: MaxStepsOption = None,
    output_dir: OutputDirOption = None,
    resume: ResumeOption = None,
) -> None:
    """Train from human judgments (+ pseudo labels), keep the best checkpoint by validation NDCG@10, and save
    OUTPUT_DIR/model (loadable by `distilrel evaluate --scorer OUTPUT_DIR/model` and, tower by tower, by
    sentence-transformers)."""
    from distilrel.student.config import load_config
    from distilrel.student.train import train_student

    cfg = with_run_flags(load_config(config), max_steps, output_dir, resume)
    result = train_student(cfg, log=console.print)
    if result.metrics:
        console.print(
            summary_table(f"student validation (best checkpoint) — {result.model_dir}", result.metrics)
        )
    console.print(f"model: {result.model_dir}")
