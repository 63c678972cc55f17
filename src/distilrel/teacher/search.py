"""``distilrel teacher train --trials N --budget-minutes M``: a search over the recipe within a budget.

At this data size the learning rates, the loss weights and the training length matter as much as the
backbone. Optuna (TPE, seeded) samples them; each trial is an ordinary teacher run in ``trial-<i>/`` scored
by its VALIDATION metric (the config's ``eval_split``; test is never read), the model it kept (step 0
included, so a trial that only made things worse scores as the start). The best trial's model is the
result: ``model/`` is a copy of it whose ``distilrel.json`` carries ``search`` (the chosen settings, every
trial's settings and value, the budget). Other trials' checkpoints and models are deleted as the search
goes, so the disk holds one trial at a time plus the best.

The space (each bound overridable in code, see :data:`DEFAULT_SPACE`): ``learning_rate`` and
``head_learning_rate`` (log-uniform), the ranking-loss weight (``listnet``; 0 = pointwise CE only) and
``max_steps``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from distilrel.data.schema import Dataset
from distilrel.teacher.config import LOSS_NAMES, TeacherConfig

#: name -> (low, high, kind); kind "log" (float, log-uniform), "float" or "int".
DEFAULT_SPACE: Mapping[str, tuple[float, float, str]] = {
    "learning_rate": (2e-5, 3e-4, "log"),
    "head_learning_rate": (1e-4, 3e-3, "log"),
    "listnet": (0.0, 2.0, "float"),
    "max_steps": (30, 120, "int"),
}
RESULT = "search.json"


def _sample(trial: Any, space: Mapping[str, tuple[float, float, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (lo, hi, kind) in space.items():
        if kind == "int":
            out[name] = trial.suggest_int(name, int(lo), int(hi))
        else:
            out[name] = trial.suggest_float(name, lo, hi, log=kind == "log")
    return out


def trial_config(config: TeacherConfig, params: Mapping[str, Any], output_dir: Path) -> TeacherConfig:
    """``config`` with a trial's settings: [training] keys by name, loss weights by loss name."""
    t = config.training
    loss = dict(t.loss)
    changes: dict[str, Any] = {"output_dir": str(output_dir), "resume": None}
    for name, value in params.items():
        if name in LOSS_NAMES:
            loss[name] = float(value)
        elif name in {f.name for f in dataclasses.fields(t)}:
            changes[name] = value
        else:
            raise ValueError(f"search space key {name!r} is neither a [training] key nor a loss name")
    loss = {k: v for k, v in loss.items() if v > 0} or {"ce": 1.0}
    return dataclasses.replace(config, training=dataclasses.replace(t, loss=loss, **changes))


def search_teacher(
    config: TeacherConfig,
    trials: int,
    budget_minutes: float | None = None,
    *,
    space: Mapping[str, tuple[float, float, str]] = DEFAULT_SPACE,
    datasets: Sequence[Dataset] | None = None,
    seed: int = 0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run up to ``trials`` trials (fewer when ``budget_minutes`` runs out first); returns the result."""
    import optuna

    from distilrel.config import load_datasets
    from distilrel.io import atomic_dir, write_json
    from distilrel.teacher.train import MODEL, SUMMARY, train_teacher

    if trials < 1:
        raise ValueError(f"a search needs at least 1 trial, got {trials}")
    if not any(s.evaluate for s in config.data.datasets):
        raise ValueError(f"{config.source}: a search needs a validation set ([data] evaluate = true)")
    console = console or Console(stderr=True)
    out = Path(config.training.output_dir)
    loaded = list(datasets) if datasets is not None else load_datasets(config)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        params = _sample(trial, space)
        folder = out / f"trial-{trial.number}"
        console.rule(
            f"trial {trial.number + 1}/{trials}: " + ", ".join(f"{k}={v:.3g}" for k, v in params.items())
        )
        shutil.rmtree(folder, ignore_errors=True)  # a trial interrupted earlier starts over
        train_teacher(trial_config(config, params, folder), datasets=loaded, console=console)
        summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        sel = summary.get("selection") or {}
        value = float(sel.get("kept_metric", summary["best_metric"]["value"]))
        history.append({"trial": trial.number, "params": params, "value": value, "kept": sel.get("kept")})
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        if not best or value > best["value"]:
            if best:
                shutil.rmtree(best["folder"], ignore_errors=True)
            best.update(value=value, folder=folder, params=params, trial=trial.number)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return value

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(
        objective, n_trials=trials, timeout=budget_minutes * 60 if budget_minutes else None, catch=()
    )
    result = {
        "metric": "validation ndcg@10",
        "chosen": best["params"],
        "chosen_trial": best["trial"],
        "value": best["value"],
        "trials": history,
        "budget_minutes": budget_minutes,
        "seconds": round(time.perf_counter() - started, 1),
        "space": {k: list(v) for k, v in space.items()},
        "seed": seed,
    }
    with atomic_dir(out / MODEL) as tmp:
        shutil.copytree(best["folder"] / MODEL, tmp, dirs_exist_ok=True)
        meta_file = tmp / "distilrel.json"
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        meta["search"] = result
        meta_file.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_json(out / RESULT, result)
    console.print(
        f"search: {len(history)} trials in {result['seconds']:.0f} s; best validation ndcg@10 "
        f"{best['value']:.4f} (trial {best['trial']}: "
        + ", ".join(f"{k}={v:.3g}" for k, v in best["params"].items())
        + f") -> {out / MODEL}"
    )
    return result
