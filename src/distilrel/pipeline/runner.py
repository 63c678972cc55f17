"""The stage graph of ``distilrel run``, up-to-date checks and resumption.

Every stage has a fingerprint: a hash of its resolved settings, the fingerprints of the stages it reads
from, what it reads from outside the run (dataset contents, backbone folders) and the distilrel version.
A finished stage writes ``stages/<stage>.json`` (atomically, after its outputs) holding that fingerprint;
a stage whose stamp matches and whose outputs exist is skipped. A changed setting changes the stage's
fingerprint and so, through the inputs, every stage downstream.

Interruptions: before a stage runs, ``stages/<stage>.running.json`` records the fingerprint it runs under.
A rerun under the same fingerprint keeps the outputs, so internally resumable stages continue (label
shards, Trainer checkpoints, the embedding store, finished ablation steps, finished baseline runs); under
another fingerprint the stale outputs are removed first (except the embedding store, whose rows are keyed
by content hash and model and stay valid).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from distilrel import __version__
from distilrel.config import ConfigError, resolve_backbone
from distilrel.io import write_json
from distilrel.pipeline import report, stages
from distilrel.pipeline.context import RunContext, dataset_hash, folder_stamp

STAMPS = "stages"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], dict[str, Any]]
    inputs: tuple[str, ...]  # upstream stages whose outputs it reads
    outputs: tuple[str, ...]  # paths under the run folder: must exist for a skip, removed when stale
    settings: Callable[[Any], Any]  # PipelineConfig -> the part of the config this stage reads
    keep_stale: bool = False  # outputs stay valid under a new fingerprint (the embedding store)


def _eval_split(c: Any) -> tuple[str, int | None]:
    """What the baselines and the ablation share with [evaluate]: the queries they are scored on."""
    return c.evaluate.split, c.evaluate.max_queries


def _ablation_teacher(c: Any) -> Any:
    """A teacher ablation trains with the teacher's config; a zero-shot one reads no teacher."""
    return c.teacher if c.ablation is not None and c.ablation.zero_shot_model is None else None


def _stage_table() -> dict[str, Stage]:
    S = Stage
    return {
        s.name: s
        for s in (
            S("data", stages.run_data, (), ("data",), lambda c: c.data),
            S(
                "baselines",
                stages.run_baselines,
                ("data",),
                ("baselines",),
                lambda c: (c.baselines, _eval_split(c)),
            ),
            S("teacher", stages.run_teacher, ("data",), ("teacher",), lambda c: c.teacher),
            S(
                "logs",
                stages.run_logs,
                ("data",),
                ("pool/pairs.parquet", "pool/documents.parquet", "pool/pool.json"),
                lambda c: c.logs,
            ),
            S("label", stages.run_label, ("logs", "teacher"), ("pool/labels",), lambda c: c.label),
            S("student", stages.run_student, ("data", "label"), ("student",), lambda c: c.student),
            S("embed", stages.run_embed, ("data", "student"), ("store",), lambda c: c.embed, keep_stale=True),
            S("index", stages.run_index, ("embed",), ("index",), lambda c: c.index),
            S(
                "evaluate",
                stages.run_evaluate,
                ("data", "teacher", "student"),
                ("eval",),
                lambda c: c.evaluate,
            ),
            S(
                "ablation",
                stages.run_ablation,
                ("data", "teacher"),
                ("ablation",),
                lambda c: (c.ablation, _eval_split(c), _ablation_teacher(c)),
            ),
            S(
                "transfer",
                stages.run_transfer,
                ("data", "teacher", "student"),
                ("transfer",),
                lambda c: (c.transfer, c.evaluate.metrics),
            ),
            S("report", report.run_report, (), ("report.md",), lambda c: c.report),
        )
    }


STAGES = _stage_table()


def active_stages(ctx: RunContext) -> list[Stage]:
    """The stages this config runs, in order; the report reads every other one."""
    cfg = ctx.config
    skip = {
        "baselines": cfg.baselines is None,
        "ablation": cfg.ablation is None,
        "transfer": cfg.transfer is None,
    }
    # A zero-shot ablation reads no teacher: it must not re-run when the teacher changes.
    table = dict(STAGES)
    if cfg.ablation is not None and cfg.ablation.zero_shot_model is not None:
        table["ablation"] = _replace_inputs(STAGES["ablation"], ("data",))
    chosen = [s for name, s in table.items() if not skip.get(name, False)]
    upstream = tuple(s.name for s in chosen if s.name != "report")
    return [_replace_inputs(s, upstream) if s.name == "report" else s for s in chosen]


def _replace_inputs(stage: Stage, inputs: tuple[str, ...]) -> Stage:
    return dataclasses.replace(stage, inputs=inputs)


# --- fingerprints ----------------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """Config objects as plain data. ``source`` (where a config was read from) is left out: running the
    same file by another path must not re-run anything."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "source"}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(_plain(obj), sort_keys=True, default=str).encode()).hexdigest()[:20]


def external_inputs(ctx: RunContext, stage: Stage) -> dict[str, Any]:
    """What a stage reads from outside the run folder. Checked here, before any stage runs: a dataset that
    does not load or a backbone that does not resolve fails the run at once."""
    cfg = ctx.config
    if stage.name == "data":
        return {s.name: dataset_hash(ctx.dataset(s.name)) for s in ctx.specs()}
    if stage.name in ("teacher", "student"):
        return {"backbone": folder_stamp(resolve_backbone(getattr(cfg, stage.name)))}
    if stage.name == "ablation" and cfg.ablation is not None and cfg.ablation.zero_shot_model is None:
        return {"backbone": folder_stamp(resolve_backbone(cfg.teacher))}
    return {}


def fingerprints(ctx: RunContext, chosen: Sequence[Stage]) -> dict[str, str]:
    out: dict[str, str] = {}
    for stage in chosen:
        out[stage.name] = _digest(
            {
                "stage": stage.name,
                "version": __version__,
                "settings": stage.settings(ctx.config),
                "inputs": {name: out[name] for name in stage.inputs},
                "external": external_inputs(ctx, stage),
            }
        )
    return out


# --- running ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    stage: str
    status: str  # ran | resumed | skipped (up to date)
    seconds: float


def stamp_path(root: Path, stage: str, running: bool = False) -> Path:
    return root / STAMPS / f"{stage}{'.running' if running else ''}.json"


def read_stamp(root: Path, stage: str, running: bool = False) -> dict[str, Any] | None:
    path = stamp_path(root, stage, running)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:  # never half-written (atomic), but a hand-edited file must not crash
        return None


def plan(ctx: RunContext) -> list[tuple[Stage, str, str]]:
    """(stage, fingerprint, what would happen: skip | resume | run) for every active stage."""
    chosen = active_stages(ctx)
    fps = fingerprints(ctx, chosen)
    out = []
    for stage in chosen:
        stamp = read_stamp(ctx.root, stage.name)
        done = stamp is not None and stamp.get("fingerprint") == fps[stage.name]
        if done and all(ctx.path(p).exists() for p in stage.outputs):
            out.append((stage, fps[stage.name], "skip"))
            continue
        running = read_stamp(ctx.root, stage.name, running=True)
        same = running is not None and running.get("fingerprint") == fps[stage.name]
        out.append((stage, fps[stage.name], "resume" if same else "run"))
    return out


def run_pipeline(ctx: RunContext, force: Sequence[str] = ()) -> list[Outcome]:
    """Run every stage that is not up to date, in order; returns what happened to each."""
    unknown = [f for f in force if f not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages: {list(STAGES)}")
    steps = plan(ctx)  # every fingerprint first: config, data and backbone errors surface before any work
    outcomes: list[Outcome] = []
    forced = set(force)
    for stage, fp, action in steps:
        if forced & set(stage.inputs):  # a forced stage may write other outputs: what reads them re-runs too
            forced.add(stage.name)
        if action == "skip" and stage.name not in forced:
            ctx.console.print(f"[dim]{stage.name}: skipped (up to date)[/]")
            outcomes.append(Outcome(stage.name, "skipped (up to date)", 0.0))
            continue
        if action != "resume" and not stage.keep_stale:
            for p in stage.outputs:
                _remove(ctx.path(p))
        write_json(
            stamp_path(ctx.root, stage.name, running=True), {"fingerprint": fp, "started": time.time()}
        )
        ctx.console.rule(f"{stage.name}{' (resuming)' if action == 'resume' else ''}")
        start, cpu_start = time.perf_counter(), time.process_time()
        summary = stage.run(ctx)
        seconds = time.perf_counter() - start
        # CPU seconds of all this process's threads: on a shared machine, wall time alone misleads.
        cpu = time.process_time() - cpu_start
        stamp = {
            "stage": stage.name,
            "fingerprint": fp,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "finished": time.time(),
        }
        write_json(
            stamp_path(ctx.root, stage.name), {**stamp, "resumed": action == "resume", "summary": summary}
        )
        stamp_path(ctx.root, stage.name, running=True).unlink(missing_ok=True)
        outcomes.append(Outcome(stage.name, "resumed" if action == "resume" else "ran", seconds))
    return outcomes


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def summary_table(outcomes: Sequence[Outcome], title: str) -> Table:
    t = Table(title=title)
    t.add_column("stage")
    t.add_column("status")
    t.add_column("seconds", justify="right")
    for o in outcomes:
        t.add_row(o.stage, o.status, f"{o.seconds:.1f}" if o.status != "skipped (up to date)" else "-")
    t.add_row("total", "", f"{sum(o.seconds for o in outcomes):.1f}")
    return t
