"""``train_teacher(config) -> Path``: datasets -> text builder -> examples -> Trainer -> best teacher folder.

Output folder (``[training] output_dir``, under ``runs/`` by convention):

    checkpoints/checkpoint-N/   Trainer checkpoints (weights, optimizer, RNG, trainer_state.json)
    model/                      the best teacher (by validation NDCG@10), see teacher.model.save_teacher
    summary.json                time, pairs/s, best metric, data counts, the resolved config

Everything that can be checked without training is checked first (:func:`prepare`): the backbone
resolves, the text fields exist in the datasets, the splits exist, an earlier run's checkpoints are
either resumed or refused.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from distilrel.config import CHECKPOINTS as CHECKPOINTS  # re-exported: checkpoints/ under output_dir
from distilrel.config import (
    DatasetSpec,
    FieldConfig,
    load_datasets,
    resolve_backbone,
    resolve_fields,
    resume_point,
    training_arguments_kwargs,
)
from distilrel.data.schema import Dataset
from distilrel.selection import StepZero
from distilrel.teacher.config import NegativesConfig, TeacherConfig, remap_levels
from distilrel.teacher.negatives import MINED_LABEL

MODEL = "model"
SUMMARY = "summary.json"


@dataclass
class Prepared:
    """Everything training needs that is not the model."""

    backbone_path: Path
    tokenizer: Any
    fields: tuple[FieldConfig, ...]
    train_groups: list[str] = field(default_factory=list)  # dataset + query id: the query lists
    train_queries: list[str] = field(default_factory=list)
    train_texts: list[str] = field(default_factory=list)
    train_levels: list[int] = field(default_factory=list)
    eval_sets: list[Any] = field(default_factory=list)  # EvalSet
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    resume_from: str | None = None


# --- checks and data -------------------------------------------------------------------------------


def _texts(ds: Dataset, doc_ids: set[str], builder: Any, fields: Sequence[FieldConfig]) -> dict[str, str]:
    docs = ds.documents[ds.documents["doc_id"].isin(doc_ids)]
    # An optional field this dataset lacks reads as empty text (the builder skips empty fields).
    missing = {f.name: "" for f in fields if f.name not in docs.columns}
    docs = docs.assign(**missing) if missing else docs
    return dict(zip(docs["doc_id"].astype(str), builder.build_many(docs), strict=True))


def _cap_pairs(judgments: pd.DataFrame, cap: int | None, seed: int, whole_queries: bool) -> pd.DataFrame:
    """At most ``cap`` training pairs, a seeded sample. A ranking objective needs each query's list, so
    with ``whole_queries`` whole queries are drawn (in a seeded order) until the next would pass the cap."""
    if cap is None or len(judgments) <= cap:
        return judgments
    if not whole_queries:
        return judgments.sample(n=cap, random_state=seed)
    sizes = judgments.groupby("query_id").size()
    order = sizes.sample(frac=1.0, random_state=seed)
    keep = set(order.index[order.cumsum() <= cap])
    return judgments[judgments["query_id"].isin(keep)]


def _sample_queries(judgments: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    qids = judgments["query_id"].drop_duplicates().sort_values()
    if cap is None or len(qids) <= cap:
        return judgments
    keep = set(qids.sample(n=cap, random_state=seed))
    return judgments[judgments["query_id"].isin(keep)]


def _pair_specs(
    config: TeacherConfig, datasets: Sequence[Dataset] | None
) -> list[tuple[DatasetSpec, Dataset]]:
    """Each dataset with its [data] entry: loaded in config order, or given ones matched by name."""
    specs = config.data.datasets
    if datasets is None:
        pairs = list(zip(specs, load_datasets(config), strict=True))
    else:
        by_name = {s.name: s for s in specs}
        unknown = [ds.name for ds in datasets if ds.name not in by_name]
        if unknown:
            raise ValueError(
                f"{config.source}: dataset(s) {unknown} are not listed in [data] datasets {list(by_name)}"
            )
        pairs = [(by_name[ds.name], ds) for ds in datasets]
    names = [ds.name for _, ds in pairs]
    if len(set(names)) != len(names):
        raise ValueError(
            f"{config.source}: two datasets are named alike in {names}; give each table dataset its own "
            "name (options = { name = ... })"
        )
    return pairs


def prepare(config: TeacherConfig, datasets: Sequence[Dataset] | None = None) -> Prepared:
    """All checks and data preparation; raises before any model is built or trained."""
    from distilrel.teacher.model import load_tokenizer
    from distilrel.teacher.trainer import EvalSet
    from distilrel.text.builder import FieldSpec, TextBuilder

    backbone_path = resolve_backbone(config)
    tokenizer = load_tokenizer(backbone_path)
    pairs = _pair_specs(config, datasets)
    loaded = [ds for _, ds in pairs]
    fields = resolve_fields(config, {ds.name: ds for ds in loaded})
    resume_from = resume_point(config)
    builder = TextBuilder([FieldSpec(f.name, f.label, f.max_tokens) for f in fields], tokenizer=tokenizer)
    target = config.level_mapping
    prep = Prepared(backbone_path, tokenizer, fields, resume_from=resume_from)

    for spec, ds in pairs:
        try:
            train_j = ds.split(config.data.train_split).judgments
        except ValueError as e:
            raise ValueError(f"{config.source}: [data] train_split: {e}") from e
        train_j = _cap_pairs(train_j, config.data.train_cap(spec), config.data.seed, config.training.listwise)
        level_map = remap_levels(ds.levels, target)
        eval_j = None
        if spec.evaluate:
            try:
                eval_j = ds.split(config.data.eval_split).judgments
            except ValueError as e:
                raise ValueError(f"{config.source}: [data] eval_split for {ds.name!r}: {e}") from e
            eval_j = _sample_queries(eval_j, config.data.eval_cap(spec), config.data.seed)
        negatives = config.data.negatives.get(spec.name)
        if negatives is not None:
            train_j, eval_j = _with_negatives(config, ds, negatives, builder, fields, train_j, eval_j)
        needed = set(train_j["doc_id"].astype(str)) | (
            set(eval_j["doc_id"].astype(str)) if eval_j is not None else set()
        )
        texts = _texts(ds, needed, builder, fields)

        prep.train_groups += [f"{ds.name}\t{q}" for q in train_j["query_id"].astype(str)]
        prep.train_queries += train_j["query"].astype(str).tolist()
        prep.train_texts += [texts[str(d)] for d in train_j["doc_id"]]
        prep.train_levels += [level_map[int(lv)] for lv in train_j["level"]]
        if eval_j is not None:
            prep.eval_sets.append(EvalSet.from_judgments(ds.name, eval_j, texts, ds.levels))
        prep.stats[ds.name] = {
            "train_pairs": len(train_j),
            "train_queries": int(train_j["query_id"].nunique()),
            "eval_queries": int(eval_j["query_id"].nunique()) if eval_j is not None else 0,
            "eval_pairs": len(eval_j) if eval_j is not None else 0,
            "mined_negatives": int((train_j["label"] == MINED_LABEL).sum()) if negatives else 0,
            "levels": list(ds.levels.names),
            "mapped_to": [target.names[i] for i in level_map],
        }
    if not prep.train_queries:
        raise ValueError(f"{config.source}: no training pairs after sampling")
    return prep


def _with_negatives(
    config: TeacherConfig,
    ds: Dataset,
    negatives: NegativesConfig,
    builder: Any,
    fields: Sequence[FieldConfig],
    train_j: pd.DataFrame,
    eval_j: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Train (after its cap) and eval judgments plus mined hard negatives: the eval set then measures
    re-ranking the first stage's candidates, as the teacher is used."""
    from distilrel.teacher.negatives import load_retriever, mine_negatives

    retriever = load_retriever(negatives.retriever, f"{config.source}: [data] {ds.name!r}")
    cache: dict[str, str] = {}

    def texts_of(ids: Collection[str]) -> dict[str, str]:
        missing = set(ids) - set(cache)
        if missing:
            cache.update(_texts(ds, missing, builder, fields))
        return {d: cache[d] for d in ids}

    train_j = mine_negatives(ds, train_j, retriever, negatives.k, texts_of)
    if eval_j is not None:
        eval_j = mine_negatives(ds, eval_j, retriever, negatives.k, texts_of)
    return train_j, eval_j


# --- training --------------------------------------------------------------------------------------


def training_arguments(config: TeacherConfig, evaluate: bool) -> Any:
    import torch

    from distilrel.teacher.trainer import TeacherTrainingArguments

    t = config.training
    return TeacherTrainingArguments(
        **training_arguments_kwargs(config, evaluate, save_steps=t.eval_steps),
        lr_scheduler_type=t.lr_scheduler,
        # Query lists are shuffled as lists; length grouping applies to single pairs.
        train_sampling_strategy="group_by_length" if t.group_by_length and not t.listwise else "random",
        eval_steps=t.eval_steps,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def train_teacher(
    config: TeacherConfig,
    *,
    datasets: Sequence[Dataset] | None = None,
    callbacks: Sequence[Any] = (),
    console: Console | None = None,
) -> Path:
    """Train, keep the best checkpoint by validation NDCG@10, export it; returns the teacher folder.

    ``datasets``: already loaded datasets instead of loading ``[data] datasets`` (their names must be
    listed there, which still gives their caps). ``callbacks``: extra ``TrainerCallback`` objects.
    """
    from transformers import PrinterCallback, set_seed

    from distilrel.io import write_json
    from distilrel.teacher.model import build_teacher, save_teacher
    from distilrel.teacher.trainer import RichProgressCallback, TeacherEvaluator, TeacherTrainer

    console = console or Console(stderr=True)
    out = Path(config.training.output_dir)
    with console.status("checking config, loading data"):
        prep = prepare(config, datasets)
    _show_data(console, prep)

    set_seed(config.training.seed)  # the head's random init depends on it
    with console.status(f"loading backbone {config.model.backbone}"):
        model, tokenizer = build_teacher(config.model, config.level_mapping, backbone_path=prep.backbone_path)
    evaluator = (
        TeacherEvaluator(prep.eval_sets, tokenizer, config.model.max_length, config.training.eval_batch_size)
        if prep.eval_sets
        else None
    )
    calibration = _calibrate_prior(config, prep, model, console)
    with console.status("evaluating the model before training (step 0)"):
        start = StepZero.measure(model, evaluator, enabled=config.training.eval_at_start, log=console.print)
    loss, dataset, collator = _objective(config, prep, model, tokenizer)
    args = training_arguments(config, evaluate=evaluator is not None)
    if config.training.listwise:  # batch_size counts pairs; a batch item is one query list
        args.per_device_train_batch_size = max(1, config.training.batch_size // config.training.list_size)
    trainer = TeacherTrainer(
        model,
        args,
        loss=loss,
        evaluator=evaluator,
        head_learning_rate=config.training.head_learning_rate,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[RichProgressCallback(console), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    if prep.resume_from:
        console.print(f"resuming from {prep.resume_from}")
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=prep.resume_from)
    seconds = time.perf_counter() - started
    selection = start.select(trainer.model, trainer.state.best_metric, log=console.print)

    state = trainer.state
    final = _best_eval(state.log_history, state.best_global_step)
    # Throughput of this session's optimisation alone: evaluation time is not training time.
    first_step = int(Path(prep.resume_from).name.rsplit("-", 1)[-1]) if prep.resume_from else 0
    eval_seconds = sum(h.get("eval_runtime", 0.0) for h in state.log_history if h.get("step", 0) > first_step)
    t = config.training
    # Full batches assumed: an epoch's last, partial batch makes this a slight over-count.
    pairs_done = (state.global_step - first_step) * t.batch_size * t.gradient_accumulation_steps
    train_only = max(seconds - eval_seconds, 1e-9)
    model_dir = out / MODEL
    text_fields = [f.builder_dict() for f in prep.fields]
    training_info = {
        "best_metric": selection.get("kept_metric", state.best_metric),
        "metric": "ndcg@10" if evaluator is not None else None,
        "global_step": state.global_step,
        "kept": selection.get("kept", "best checkpoint"),
        "datasets": sorted(prep.stats),
        "objective": loss.get_config_dict(),
        "prior_calibration": calibration,
    }
    with console.status(f"saving the teacher to {model_dir}"):
        save_teacher(
            trainer.model,
            tokenizer,
            model_dir,
            text_fields=text_fields,
            max_length=config.model.max_length,
            extra={"training": training_info},
        )
    summary = {
        "model": str(model_dir),
        "backbone": config.model.backbone,
        "resumed_from": prep.resume_from,
        "global_step": state.global_step,
        "epochs": state.epoch,
        "train_pairs": len(prep.train_queries),
        "seconds": round(seconds, 2),  # this session: training + evaluation + checkpoints
        "eval_seconds": round(eval_seconds, 2),
        "train_pairs_per_s": round(pairs_done / train_only, 2),  # this session's steps, evaluation excluded
        # all sessions' steps (max_steps may stop before an epoch): pairs seen, counting repeats
        "pairs_trained": state.global_step * t.batch_size * t.gradient_accumulation_steps,
        "best_metric": {
            "name": training_info["metric"],
            "value": state.best_metric,
            "checkpoint": state.best_model_checkpoint,
        },
        "final_eval": final,
        "selection": selection,  # step 0 vs the best checkpoint: which one was kept
        "objective": training_info["objective"],
        "prior_calibration": calibration,
        "parameters": trainer.model.parameter_counts(),
        "bf16": trainer.args.bf16,
        "datasets": prep.stats,
        "config": config.to_dict(),
    }
    write_json(out / SUMMARY, summary)
    _show_summary(console, summary)
    return model_dir


def _objective(config: TeacherConfig, prep: Prepared, model: Any, tokenizer: Any) -> tuple[Any, Any, Any]:
    """The loss, the training set and its collator: query lists for a ranking objective, pairs otherwise."""
    from distilrel.teacher.collator import ListCollator, TeacherCollator
    from distilrel.teacher.losses import build_loss
    from distilrel.teacher.trainer import ListDataset, PairDataset

    t = config.training
    loss = build_loss(
        model, t.loss, label_smoothing=t.label_smoothing, temperature=t.loss_temperature, sigma=t.loss_sigma
    )
    collator_args = (tokenizer, config.model.max_length)
    collator_kwargs = {"template": model.template, "prior": model.prior_inputs()}
    if t.listwise:
        dataset: Any = ListDataset(
            prep.train_groups,
            prep.train_queries,
            prep.train_texts,
            prep.train_levels,
            t.list_size,
            seed=t.seed,
        )
        return loss, dataset, ListCollator(*collator_args, **collator_kwargs)
    dataset = PairDataset(prep.train_queries, prep.train_texts, prep.train_levels)
    return loss, dataset, TeacherCollator(*collator_args, **collator_kwargs)


def _calibrate_prior(
    config: TeacherConfig, prep: Prepared, model: Any, console: Console
) -> dict[str, Any] | None:
    """Fit the zero-shot prior's level model on (a sample of) the training pairs; None without a prior."""
    import numpy as np
    import torch

    from distilrel.teacher.prior import calibrate, prior_features

    p = config.model.prior
    if model.prior is None or p is None or not p.calibrate:
        return None
    n = len(prep.train_queries)
    rng = np.random.default_rng(config.training.seed)
    idx = np.sort(rng.choice(n, size=min(n, p.calibration_pairs), replace=False))
    with console.status(f"calibrating the zero-shot prior on {len(idx)} training pairs"):
        feats = prior_features(
            model.prior, [prep.train_queries[i] for i in idx], [prep.train_texts[i] for i in idx]
        )
        levels = torch.tensor([prep.train_levels[i] for i in idx])
        fit = calibrate(model.prior, feats, levels, overlap=p.calibrate_overlap)
    console.print(
        f"zero-shot prior {p.backbone}: alpha {fit['alpha']:.2f}, "
        f"overlap weight {fit['overlap_weight']:.2f}, cross-entropy {fit['cross_entropy']:.4f} "
        f"on {fit['pairs']} pairs"
    )
    return fit


def _best_eval(history: Sequence[dict[str, Any]], step: int | None) -> dict[str, float]:
    """The evaluation logged at the best step (all sets and metrics), without evaluating again."""
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    best = [h for h in evals if h.get("step") == step] or evals[-1:]
    return {k: v for k, v in best[-1].items() if k.startswith("eval_")} if best else {}


# --- console output ----------------------------------------------------------------------------------


def _show_data(console: Console, prep: Prepared) -> None:
    from rich.table import Table

    t = Table(title="teacher training data")
    for col in ("dataset", "train pairs", "eval queries", "levels -> target"):
        t.add_column(col)
    for name, s in prep.stats.items():
        mapping = ", ".join(f"{a}->{b}" for a, b in zip(s["levels"], s["mapped_to"], strict=True))
        t.add_row(name, str(s["train_pairs"]), str(s["eval_queries"]), mapping)
    console.print(t)


def _show_summary(console: Console, summary: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="teacher trained")
    t.add_column("")
    t.add_column("value", justify="right")
    best = summary["best_metric"]
    rows = {
        "steps": summary["global_step"],
        "train pairs": summary["train_pairs"],
        "time (s)": f"{summary['seconds']:.0f} (eval {summary['eval_seconds']:.0f})",
        "pairs/s": f"{summary['train_pairs_per_s'] or 0:.1f}",
        f"best {best['name']}": f"{best['value']:.4f}" if best["value"] is not None else "-",
        "model": summary["model"],
    }
    for k, v in rows.items():
        t.add_row(k, str(v))
    console.print(t)
