"""``distilrel teacher train --folds K``: one teacher per fold, and the pooled out-of-fold evaluation.

Output folder::

    folds.json              k, seed, validation share, and the fold of every query (by text)
    fold-0/ ... fold-K-1/   ordinary teacher runs (checkpoints/, model/, summary.json) on the fold's view
    oof/<dataset>/          the pooled out-of-fold evaluation of each evaluated dataset over ALL its queries
                            (run.trec, per_query.parquet, metrics.json, report.md): what `distilrel
                            compare` pairs with zero-shot runs made with `distilrel evaluate --split all`
    summary.json            per-fold validation metric and what each fold kept, the pooled metrics

A rerun skips every fold whose model is saved under the same folds (interrupted folds resume from their
checkpoints), so the whole command resumes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from distilrel.data.schema import Dataset
from distilrel.teacher.config import TeacherConfig

FOLDS_FILE = "folds.json"


def cross_validate_teacher(
    config: TeacherConfig,
    k: int,
    *,
    out: Path | None = None,
    val_fraction: float = 0.125,
    seed: int = 0,
    datasets: Sequence[Dataset] | None = None,
    metrics: Sequence[str] = ("ndcg@10", "p@8"),
    console: Console | None = None,
) -> dict[str, Any]:
    """Train ``k`` teachers (fold f held out, a ``val_fraction`` of the rest for selection) and evaluate
    the pooled out-of-fold run on every dataset with ``evaluate = true``; returns the summary."""
    from distilrel.config import load_datasets
    from distilrel.evaluate.crossval import OutOfFoldScorer, fold_view, query_folds
    from distilrel.evaluate.report import write_outputs
    from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for
    from distilrel.io import write_json
    from distilrel.teacher.scorer import load_teacher_scorer
    from distilrel.teacher.train import MODEL, SUMMARY, train_teacher

    console = console or Console(stderr=True)
    out = Path(out or config.training.output_dir)
    loaded = list(datasets) if datasets is not None else load_datasets(config)
    queries = [q for ds in loaded for q in ds.judgments["query"].astype(str)]
    folds = query_folds(queries, k, seed)
    plan = {"k": k, "seed": seed, "val_fraction": val_fraction, "folds": folds}
    _check_plan(out, plan)
    write_json(out / FOLDS_FILE, plan)

    per_fold: list[dict[str, Any]] = []
    for f in range(k):
        fold_dir = out / f"fold-{f}"
        views = [fold_view(ds, folds, f, val_fraction, seed) for ds in loaded]
        if (fold_dir / MODEL / "distilrel.json").is_file() and (fold_dir / SUMMARY).is_file():
            console.print(f"fold {f + 1}/{k}: done earlier, kept")
        else:
            console.rule(f"fold {f + 1}/{k}")
            cfg = dataclasses.replace(
                config,
                data=dataclasses.replace(config.data, train_split="train", eval_split="validation"),
                training=dataclasses.replace(config.training, output_dir=str(fold_dir)),
            )
            train_teacher(cfg, datasets=views, console=console)
        s = json.loads((fold_dir / SUMMARY).read_text(encoding="utf-8"))
        per_fold.append(
            {
                "fold": f,
                "test_queries": sum(v == f for v in folds.values()),
                "validation": (s.get("selection") or {}).get("kept_metric", s["best_metric"]["value"]),
                "kept": (s.get("selection") or {}).get("kept", "best checkpoint"),
                "seconds": s["seconds"],
            }
        )

    scorer = OutOfFoldScorer(
        {f: (lambda f=f: load_teacher_scorer(out / f"fold-{f}" / MODEL)) for f in range(k)},
        folds,
        name=f"teacher-cv{k}:{out.name}",
    )
    pooled: dict[str, Any] = {}
    for ds in loaded:
        spec = next((s for s in config.data.datasets if s.name == ds.name), None)
        if spec is not None and not spec.evaluate:
            continue
        with console.status(f"scoring {ds.name} out of fold"):
            result = evaluate(
                ds, scorer, text_builder_for(scorer, ds), EvalSettings(split="all", metrics=tuple(metrics))
            )
        write_outputs(result, out / "oof" / ds.name, {"folds": k, "seed": seed, "out_of_fold": True})
        pooled[ds.name] = {"queries": len(result.per_query), **result.summary, **result.classifier}
        console.print(
            f"{ds.name}: out-of-fold over {len(result.per_query)} queries: "
            + ", ".join(f"{m} {result.summary[m]:.4f}" for m in metrics)
        )
    summary = {"k": k, "seed": seed, "folds": per_fold, "pooled": pooled, "out_of_fold": str(out / "oof")}
    write_json(out / "summary.json", summary)
    return summary


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    """A folder trained under other folds must not be mixed with this run's (it would leak queries)."""
    f = out / FOLDS_FILE
    if not f.is_file():
        return
    old = json.loads(f.read_text(encoding="utf-8"))
    if old != json.loads(json.dumps(plan)):
        raise ValueError(
            f"{out} holds fold models trained under other folds ({FOLDS_FILE}: k={old.get('k')}, "
            f"seed={old.get('seed')}); choose another output folder or delete it"
        )
