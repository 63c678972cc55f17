"""`distilrel teacher train` and `distilrel teacher predict`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from distilrel.cli.common import console

if TYPE_CHECKING:
    import pandas as pd

    from distilrel.config import RunConfig

    Config = TypeVar("Config", bound=RunConfig)

app = typer.Typer(no_args_is_help=True, help="Train a K-level cross-encoder teacher and predict with it.")

# The run flags `teacher train` and `student train` share: each overrides a [training] key.
MaxStepsOption = Annotated[int | None, typer.Option(help="stop after this many optimiser steps (smoke runs)")]
OutputDirOption = Annotated[Path | None, typer.Option(help="override [training] output_dir")]
ResumeOption = Annotated[
    bool | None,
    typer.Option(
        "--resume/--no-resume", help="continue from the last checkpoint (default: config, else auto)"
    ),
]


def with_run_flags(
    config: Config, max_steps: int | None, output_dir: Path | None, resume: bool | None
) -> Config:
    """``config`` with the run flags that were given applied to ``[training]``."""
    return config.with_overrides(
        max_steps=max_steps, output_dir=str(output_dir) if output_dir else None, resume=resume
    )


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="teacher TOML config, e.g. configs/teacher-minilm.toml")],
    max_steps: MaxStepsOption = None,
    output_dir: OutputDirOption = None,
    resume: ResumeOption = None,
    folds: Annotated[
        int | None,
        typer.Option(
            help="query-grouped k-fold cross-validation over ALL the datasets' queries: a teacher per fold, "
            "the pooled out-of-fold run in OUTPUT_DIR/oof/<dataset>"
        ),
    ] = None,
    cv_seed: Annotated[int, typer.Option(help="which queries go to which fold")] = 0,
    trials: Annotated[
        int | None,
        typer.Option(
            help="search the recipe (learning rates, ListNet weight, steps) with Optuna on the validation "
            "split: OUTPUT_DIR/trial-*, the best as OUTPUT_DIR/model; with --folds, the folds use the choice"
        ),
    ] = None,
    budget_minutes: Annotated[float | None, typer.Option(help="stop the search after this long")] = None,
) -> None:
    """Train on the configured judgments, keep the best checkpoint by validation NDCG@10 and save
    OUTPUT_DIR/model (loadable by `distilrel evaluate --scorer OUTPUT_DIR/model`)."""
    from distilrel.teacher.config import load_config
    from distilrel.teacher.train import train_teacher

    cfg = with_run_flags(load_config(config), max_steps, output_dir, resume)
    if budget_minutes is not None and trials is None:
        raise typer.BadParameter("--budget-minutes bounds a search: give --trials too")
    if trials is not None:
        from distilrel.teacher.search import search_teacher, trial_config

        result = search_teacher(cfg, trials, budget_minutes, console=console)
        if folds is None:
            return
        cfg = trial_config(cfg, result["chosen"], Path(cfg.training.output_dir) / "cv")
    if folds is not None:
        from distilrel.teacher.crossval import cross_validate_teacher

        summary = cross_validate_teacher(cfg, folds, seed=cv_seed, console=console)
        console.print(f"out-of-fold runs: {summary['out_of_fold']}")
        return
    model_dir = train_teacher(cfg, console=console)
    console.print(f"model: {model_dir}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="teacher folder (OUTPUT_DIR/model of `teacher train`)")],
    pairs: Annotated[
        Path,
        typer.Option(
            help="pairs table (.parquet/.csv/.jsonl): a query column plus the teacher's text fields, or text"
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="output table (.parquet or .csv): input id columns + score + p_<level>")
    ],
    batch_size: Annotated[int, typer.Option(help="pairs per forward pass")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
) -> None:
    """Score (query, document) pairs: level probabilities and the expected-gain score per pair."""
    from distilrel.io import write_parquet, write_text
    from distilrel.teacher.model import load_teacher
    from distilrel.teacher.predict import expected_gain, predict_levels
    from distilrel.text.builder import TextBuilder

    if out.suffix not in (".parquet", ".csv"):
        raise typer.BadParameter(f"--out must end in .parquet or .csv, got {out.name}")
    table = _read_pairs(pairs)
    if "query" not in table.columns:
        raise typer.BadParameter(f"{pairs} has no 'query' column; columns: {list(table.columns)}")
    teacher = load_teacher(model, device=device)
    fields = [f["name"] for f in teacher.text_fields]
    missing = [f for f in fields if f not in table.columns]
    # The teacher's own text recipe wins; a ready-made `text` column is used only when no field is there.
    if len(missing) < len(fields):
        if missing:  # as in training, a field a source lacks reads as empty text
            console.print(f"[yellow]{pairs} lacks the field(s) {missing}: read as empty text[/]")
        table = table.assign(**dict.fromkeys(missing, ""))
        builder = TextBuilder.from_config(list(teacher.text_fields), tokenizer=teacher.tokenizer)
        texts = builder.build_many(table)
    elif "text" in table.columns:
        texts = table["text"].fillna("").astype(str).tolist()
    else:
        raise typer.BadParameter(
            f"{pairs} needs the teacher's text field columns {fields} or a 'text' column"
        )

    start = time.perf_counter()
    probs = predict_levels(
        teacher.model,
        teacher.tokenizer,
        table["query"].astype(str).tolist(),
        texts,
        batch_size,
        teacher.max_length,
        progress=True,
    )
    seconds = time.perf_counter() - start
    keep = [c for c in ("query_id", "doc_id", "query") if c in table.columns]
    result = table[keep].reset_index(drop=True)
    result["score"] = expected_gain(probs, teacher.levels.gains)
    for i, name in enumerate(teacher.levels.names):
        result[f"p_{name}"] = probs[:, i]
    if out.suffix == ".csv":
        write_text(out, result.to_csv(index=False))
    else:
        write_parquet(out, result)
    console.print(
        f"{len(result)} pairs in {seconds:.1f} s ({len(result) / max(seconds, 1e-9):.1f} pairs/s) -> {out}"
    )


def _read_pairs(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise typer.BadParameter(f"pairs file {path} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    raise typer.BadParameter(f"pairs file must be .parquet, .csv, .tsv or .jsonl, got {path.name}")
