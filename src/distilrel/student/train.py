"""``distilrel student train``: build the training pairs, check everything, run the StudentTrainer, save.

Training pairs:

* human pairs: the train split of each ``[data]`` dataset, its levels moved onto the ``[levels]`` scale
  (:func:`distilrel.data.levels.remap_levels`, the teacher's policy);
* pseudo-labelled pairs: rows of the ``pseudo_labels`` table (``dataset``, ``query``, ``doc_id`` and/or
  ``text``, ``probs`` = K floats), at most ``pseudo_ratio`` x the number of human pairs, whole queries
  sampled with the data seed. A row that repeats a human pair gives that pair its teacher distribution
  instead of a second copy. Rows whose query is an evaluation query of a training dataset are excluded
  (and counted): the student is selected and reported on those queries.

Output folder (``[training] output_dir``): ``model/`` (the best student, loadable by :func:`load_student`
and by ``distilrel evaluate --scorer``), ``checkpoints/`` (Trainer checkpoints, each a loadable student),
``train_info.json`` (counts, metrics, log history).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from distilrel.config import (
    CHECKPOINTS,
    ConfigError,
    load_datasets,
    resolve_backbone,
    resolve_fields,
    resume_point,
    training_arguments_kwargs,
)
from distilrel.data.levels import LevelMapping, remap_levels
from distilrel.data.schema import DataError, Dataset
from distilrel.io import atomic_dir, write_json
from distilrel.selection import StepZero
from distilrel.student.collator import NO_LEVEL, PairDataset, PairExample
from distilrel.student.config import StudentConfig

if TYPE_CHECKING:
    from distilrel.student.model import StudentModel, StudentSettings
    from distilrel.student.trainer import RankingEvaluator
    from distilrel.text.builder import TextBuilder

PSEUDO_REQUIRED = ("dataset", "query", "probs")
MODEL_DIR, CHECKPOINT_DIR, INFO_FILE = "model", CHECKPOINTS, "train_info.json"
#: Teacher distributions may be stored in float16 / rounded: sums within this of 1 are renormalised.
PROB_SUM_TOLERANCE = 1e-2

Log = Callable[[str], None]


@dataclass
class Prepared:
    """Everything training needs besides the model: checked inputs, pairs and the evaluator."""

    config: StudentConfig
    levels: LevelMapping
    backbone_dir: Path
    prefixes: tuple[str, str]
    datasets: dict[str, Dataset]
    builders: dict[str, TextBuilder]
    train: PairDataset
    evaluator: RankingEvaluator | None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def text_fields(self) -> tuple[dict[str, Any], ...]:
        first = next(iter(self.builders.values()))
        return tuple(first.to_config())


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]
    counts: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)  # step 0 vs the best checkpoint (StepZero)


# --- checks and inputs ---------------------------------------------------------------------------------


def human_examples(
    config: StudentConfig,
    datasets: Mapping[str, Dataset],
    builders: Mapping[str, TextBuilder],
    levels: LevelMapping,
) -> tuple[list[PairExample], dict[tuple[str, str, str], int], dict[str, int]]:
    """Train-split pairs of every dataset; also ``(dataset, query, doc_id) -> index`` for merging."""
    examples: list[PairExample] = []
    index: dict[tuple[str, str, str], int] = {}
    counts: dict[str, int] = {}
    for spec in config.data.datasets:
        before = len(examples)
        ds = datasets[spec.name]
        try:
            judged = ds.split(config.data.train_split).judgments
        except ValueError as e:
            raise DataError(f"dataset {spec.name!r}: {e}") from e
        cap = config.data.train_cap(spec)
        if cap is not None and len(judged) > cap:
            judged = judged.sample(n=cap, random_state=config.data.seed).sort_index()
        to_target = remap_levels(ds.levels, levels)
        docs = ds.documents[ds.documents["doc_id"].isin(set(judged["doc_id"]))]
        texts = dict(zip(docs["doc_id"], builders[spec.name].build_many(docs), strict=True))
        for query, doc_id, level in zip(judged["query"], judged["doc_id"], judged["level"], strict=True):
            key = (spec.name, str(query), str(doc_id))
            if key in index:  # the same pair judged twice (loaders collapse identical rows): keep the first
                continue
            index[key] = len(examples)
            examples.append(
                PairExample(str(query), texts[doc_id], f"{spec.name}\x1f{query}", level=to_target[int(level)])
            )
        counts[spec.name] = len(examples) - before
    return examples, index, counts


def read_pseudo_labels(
    path: str | Path,
    k: int,
    level_names: Sequence[str] = (),
    fields: Sequence[Mapping[str, Any]] | None = None,
    tokenizer: object | None = None,
) -> pd.DataFrame:
    """The pseudo-label table with ``probs`` checked (K finite non-negative values summing to 1) and
    renormalised. Raises DataError naming the file and the 1-based row.

    ``path`` is a Parquet file, or the labels folder ``distilrel label`` writes (sharded, read with
    :func:`distilrel.label.shards.read_labels`). When that folder sits in its pool folder, document texts
    are built from the pool's documents with ``fields`` (None: each catalog's own), so pairs from catalogs
    the student does not train on (search logs) keep their text.
    """
    path = Path(path)
    if path.is_dir():
        df = _read_label_folder(path, fields, tokenizer)
    elif path.is_file():
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"{path}: cannot read as Parquet: {e}") from e
    else:
        raise DataError(f"pseudo-label table {path} does not exist; produce it with `distilrel label`")
    missing = [c for c in PSEUDO_REQUIRED if c not in df.columns]
    if missing or not ({"doc_id", "text"} & set(df.columns)):
        need = [*missing, *([] if {"doc_id", "text"} & set(df.columns) else ["doc_id or text"])]
        raise DataError(f"{path}: missing column(s) {need}; columns are {list(df.columns)}")
    lengths = df["probs"].map(lambda p: -1 if p is None else len(p)).to_numpy()
    bad = np.flatnonzero(lengths != k)
    if len(bad):
        row = int(bad[0])
        names = f" {list(level_names)}" if level_names else ""
        raise DataError(
            f"{path}: row {row + 1}: probs has {lengths[row]} values but the level mapping{names} has {k} "
            f"(K mismatch in {len(bad)} row(s)); label with a teacher on the same [levels] as the student"
        )
    probs = np.stack(df["probs"].to_numpy()).astype(np.float64) if len(df) else np.zeros((0, k))
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(
        ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (abs(sums - 1) > PROB_SUM_TOLERANCE)
    )
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{path}: row {row + 1}: probs {probs[row].tolist()} is not a probability distribution "
            f"({len(bad)} bad row(s))"
        )
    df = df.copy()
    df["probs"] = list(probs / sums[:, None])
    for col in ("dataset", "query"):
        empty = np.flatnonzero(df[col].isna().to_numpy() | (df[col].astype(str).str.strip() == "").to_numpy())
        if len(empty):
            raise DataError(f"{path}: row {int(empty[0]) + 1}: empty {col!r} ({len(empty)} row(s))")
    return df.reset_index(drop=True)


def _read_label_folder(
    folder: Path, fields: Sequence[Mapping[str, Any]] | None, tokenizer: object | None
) -> pd.DataFrame:
    from distilrel.label.pool import DOCUMENTS_FILE, INFO_FILE, pool_texts, read_pool
    from distilrel.label.shards import read_labels

    try:
        df = read_labels(folder)
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"pseudo labels {folder}: {e}") from e
    pool_dir = folder.parent
    if (
        "text" in df.columns
        or not (pool_dir / INFO_FILE).is_file()
        or not (pool_dir / DOCUMENTS_FILE).is_file()
    ):
        return df
    pool = read_pool(pool_dir)
    keys = ["dataset", "query", "doc_id"]
    if len(pool.pairs) != len(df) or not pool.pairs[keys].reset_index(drop=True).equals(df[keys]):
        raise DataError(f"pseudo labels {folder}: its rows are not those of the pool in {pool_dir}")
    recipe = [dict(f) for f in fields] if fields else None
    return df.assign(text=pool_texts(pool, recipe, tokenizer))


def pseudo_examples(
    config: StudentConfig,
    table: pd.DataFrame,
    datasets: Mapping[str, Dataset],
    builders: Mapping[str, TextBuilder],
    human: list[PairExample],
    human_index: Mapping[tuple[str, str, str], int],
    log: Log,
) -> tuple[list[PairExample], dict[str, int]]:
    """Pseudo pairs under the ratio cap; teacher distributions of human pairs are attached in ``human``."""
    from distilrel.label.pool import normalize_query

    path = config.data.pseudo_labels
    counts = {"rows": len(table), "eval_query_rows": 0, "merged_into_human": 0}
    # The student is selected on validation and reported on test queries: their text must not be trained on.
    held_out = {
        normalize_query(q)
        for ds in datasets.values()
        for q in ds.judgments.loc[ds.judgments["split"] != config.data.train_split, "query"]
    }
    is_held_out = table["query"].map(lambda q: normalize_query(q) in held_out).to_numpy()
    counts["eval_query_rows"] = int(is_held_out.sum())
    if counts["eval_query_rows"]:
        log(f"pseudo labels: {counts['eval_query_rows']} row(s) whose query is an evaluation query: excluded")
    table = table[~is_held_out]

    # Rows that repeat a human pair give it a teacher distribution; the others are new pairs.
    new_rows: list[int] = []
    has_id = "doc_id" in table.columns
    for i, (dataset, query, doc_id) in enumerate(
        zip(table["dataset"], table["query"], table["doc_id"] if has_id else [None] * len(table), strict=True)
    ):
        hit = human_index.get((str(dataset), str(query), str(doc_id))) if doc_id is not None else None
        if hit is None:
            new_rows.append(i)
            continue
        probs = tuple(float(p) for p in table["probs"].iloc[i])
        h = human[hit]
        human[hit] = PairExample(h.query, h.doc, h.group, probs, h.level, h.source)
        counts["merged_into_human"] += 1
    table = table.iloc[new_rows]

    cap = math.floor(config.data.pseudo_ratio * len(human))
    table = _cap_by_query(table, cap, config.data.seed)
    texts = _pseudo_texts(table, datasets, builders, Path(str(path)))
    examples = [
        PairExample(str(q), t, f"{d}\x1f{q}", tuple(float(x) for x in p), NO_LEVEL, "pseudo")
        for d, q, t, p in zip(table["dataset"], table["query"], texts, table["probs"], strict=True)
    ]
    counts["used"] = len(examples)
    counts["cap"] = cap
    return examples, counts


def _cap_by_query(table: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """At most ``cap`` rows, whole queries in a seeded random order (a query's documents stay together)."""
    if len(table) <= cap:
        return table
    keys = table["dataset"].astype(str) + "\x1f" + table["query"].astype(str)
    order = pd.Series(keys.unique()).sample(frac=1.0, random_state=seed)
    sizes = keys.value_counts()
    kept, total = [], 0
    for key in order:
        if total + sizes[key] > cap:
            continue  # a smaller query later may still fit
        kept.append(key)
        total += int(sizes[key])
    return table[keys.isin(set(kept)).to_numpy()]


def _pseudo_texts(
    table: pd.DataFrame, datasets: Mapping[str, Dataset], builders: Mapping[str, TextBuilder], path: Path
) -> list[str]:
    """Document text per row: the ``text`` column where given, else the doc built from its dataset."""
    texts: list[str | None] = [None] * len(table)
    if "text" in table.columns:
        texts = [t if isinstance(t, str) and t.strip() else None for t in table["text"]]
    need = [i for i, t in enumerate(texts) if t is None]
    if not need:
        return [str(t) for t in texts]
    if "doc_id" not in table.columns:
        raise DataError(f"{path}: row {need[0] + 1}: no text and no doc_id column to look the document up")
    by_dataset: dict[str, list[int]] = {}
    for i in need:
        by_dataset.setdefault(str(table["dataset"].iloc[i]), []).append(i)
    for name, rows in by_dataset.items():
        if name not in datasets:
            raise DataError(
                f"{path}: row {rows[0] + 1}: dataset {name!r} is not among the student's [data] datasets "
                f"{sorted(datasets)}, so its documents cannot be looked up; add it, or give a text column"
            )
        docs = datasets[name].doc_table()
        ids = [str(table["doc_id"].iloc[i]) for i in rows]
        unknown = [(r, d) for r, d in zip(rows, ids, strict=True) if d not in docs.index]
        if unknown:
            r, d = unknown[0]
            raise DataError(f"{path}: row {r + 1}: doc_id {d!r} is not a document of dataset {name!r}")
        wanted = docs.loc[list(dict.fromkeys(ids))]
        built = dict(zip(wanted["doc_id"], builders[name].build_many(wanted), strict=True))
        for r, d in zip(rows, ids, strict=True):
            texts[r] = built[d]
    return [str(t) for t in texts]


def make_evaluator(
    config: StudentConfig, datasets: Mapping[str, Dataset], builders: Mapping[str, TextBuilder]
) -> RankingEvaluator | None:
    from distilrel.student.trainer import EvalTarget, RankingEvaluator

    if config.training.eval_steps == 0:
        return None
    targets = [
        EvalTarget(s.name, datasets[s.name], builders[s.name], config.data.eval_cap(s))
        for s in config.data.datasets
        if s.evaluate
    ]
    if not targets:
        raise ConfigError(
            f"{config.source}: no dataset takes part in evaluation (every entry has evaluate = false); "
            "set [training] eval_steps = 0 to train without evaluation"
        )
    try:
        return RankingEvaluator(
            targets,
            split=config.data.eval_split,
            batch_size=config.training.eval_batch_size,
            seed=config.data.seed,
        )
    except ValueError as e:
        raise DataError(
            f"{config.source}: {e}; evaluation during training needs that split "
            "(or set [training] eval_steps = 0)"
        ) from e


def prepare(config: StudentConfig, datasets: Sequence[Dataset] | None = None, log: Log = print) -> Prepared:
    """Every check that needs data or weights, and the training pairs; builds no model.

    ``datasets``: already loaded datasets instead of loading ``[data] datasets`` (matched by name; each
    configured name must be there, which still gives their caps and options).
    """
    from transformers import AutoTokenizer

    from distilrel.text.builder import TextBuilder
    from distilrel.weights import model_prefixes

    levels = config.level_mapping
    backbone_dir = resolve_backbone(config)
    resume_point(config)  # refuse a contradictory resume setting before any work
    tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir))
    if datasets is None:  # keyed by the [data] name (a loader's options may name its Dataset otherwise)
        names = [s.name for s in config.data.datasets]
        loaded = dict(zip(names, load_datasets(config), strict=True))
    else:
        loaded = {ds.name: ds for ds in datasets}
    absent = [s.name for s in config.data.datasets if s.name not in loaded]
    if absent:
        raise ConfigError(
            f"{config.source}: [data] dataset(s) {absent} were not among the datasets given {sorted(loaded)}"
        )
    fields = resolve_fields(config, loaded)
    builder = TextBuilder.from_config([f.builder_dict() for f in fields], tokenizer=tokenizer)
    builders = dict.fromkeys(loaded, builder)  # one recipe: the saved student records it
    human, index, per_dataset = human_examples(config, loaded, builders, levels)
    counts: dict[str, Any] = {"human": per_dataset}
    pseudo: list[PairExample] = []
    if config.data.pseudo_labels and config.data.pseudo_ratio > 0:
        recipe = [f.builder_dict() for f in fields]
        table = read_pseudo_labels(config.data.pseudo_labels, levels.k, levels.names, recipe, tokenizer)
        pseudo, counts["pseudo"] = pseudo_examples(config, table, loaded, builders, human, index, log)
    examples = human + pseudo
    if not examples:
        raise DataError(f"{config.source}: no training pairs (empty train splits and no pseudo labels)")
    if not any(e.teacher_probs is not None for e in examples) and (
        config.loss.kl > 0 or config.loss.margin_mse > 0
    ):
        log("warning: no pair carries a teacher distribution; the kl / margin_mse losses stay 0")
    q_prefix, d_prefix = model_prefixes(config.model.backbone)
    prefixes = (
        q_prefix if config.model.query_prefix is None else config.model.query_prefix,
        d_prefix if config.model.doc_prefix is None else config.model.doc_prefix,
    )
    counts["pairs"] = len(examples)
    counts["with_teacher"] = sum(e.teacher_probs is not None for e in examples)
    counts["with_level"] = sum(e.level != NO_LEVEL for e in examples)
    evaluator = make_evaluator(config, loaded, builders)
    return Prepared(
        config, levels, backbone_dir, prefixes, loaded, builders, PairDataset(examples), evaluator, counts
    )


# --- training -----------------------------------------------------------------------------------------


def student_settings(prepared: Prepared) -> StudentSettings:
    from distilrel.student.model import StudentSettings

    m = prepared.config.model
    return StudentSettings(
        backbone=m.backbone,
        shared=m.shared,
        query_prefix=prepared.prefixes[0],
        doc_prefix=prepared.prefixes[1],
        max_query_length=m.max_query_length,
        max_doc_length=m.max_doc_length,
        head_hidden=m.head_hidden,
        head_dropout=m.head_dropout,
        cosine_prior=m.cosine_prior,
        score_mode=m.score_mode,  # type: ignore[arg-type]  # checked by the config
        fields=prepared.text_fields,
    )


def training_arguments(config: StudentConfig, evaluate: bool) -> Any:
    """Checkpoints go to ``output_dir / CHECKPOINT_DIR``, where :func:`resume_point` looks for them."""
    import torch
    from transformers import TrainingArguments

    t = config.training
    steps = t.eval_steps if evaluate else max(t.logging_steps, 200)
    return TrainingArguments(
        **training_arguments_kwargs(config, evaluate, save_steps=steps),
        lr_scheduler_type="linear",
        eval_steps=steps if evaluate else None,
        metric_for_best_model="ndcg@10" if evaluate else None,
        greater_is_better=True,
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,  # the collator's batch is not the model's keyword arguments
    )


def train_student(
    config: StudentConfig, datasets: Sequence[Dataset] | None = None, log: Log = print
) -> TrainResult:
    """Prepare, train with :class:`StudentTrainer`, save the best student to ``output_dir/model``."""
    from transformers import set_seed

    from distilrel.student.collator import StudentCollator
    from distilrel.student.losses import build_loss
    from distilrel.student.model import StudentModel
    from distilrel.student.trainer import StudentTrainer

    prepared = prepare(config, datasets, log)
    counts = prepared.counts
    log(
        f"training pairs: {counts['pairs']} ({counts['with_level']} with a human level, "
        f"{counts['with_teacher']} with a teacher distribution)"
    )
    out = Path(config.training.output_dir)
    set_seed(config.training.seed)  # the head's random initialisation depends on it
    model = StudentModel.from_backbone(prepared.backbone_dir, prepared.levels, student_settings(prepared))
    loss = build_loss(model, config.loss)
    trainer = StudentTrainer(
        model=model,
        args=training_arguments(config, prepared.evaluator is not None),
        train_dataset=prepared.train,
        data_collator=StudentCollator(model),
        loss=loss,
        evaluator=prepared.evaluator,
        head_learning_rate=config.training.head_learning_rate,
        docs_per_query=config.training.docs_per_query,
    )
    resume = resume_point(config)
    start = StepZero.measure(model, prepared.evaluator, enabled=config.training.eval_at_start, log=log)
    if resume:
        log(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    selection = start.select(model, trainer.state.best_metric, log=log)

    metrics = best_eval_metrics(trainer.state)
    if selection.get("kept") == "step 0":
        metrics = {"ndcg@10": selection["step0_metric"]}
    info = {
        "counts": counts,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": selection.get("kept_metric", trainer.state.best_metric),
        "selection": selection,
        "global_step": trainer.state.global_step,
        "metrics": metrics,
        "pseudo_labels": config.data.pseudo_labels,
        "datasets": [s.name for s in config.data.datasets],
        "config": config.to_dict(),
    }
    model_dir = save_model_atomically(model, out / MODEL_DIR, {"training": info})
    write_json(out / INFO_FILE, {**info, "log_history": trainer.state.log_history})
    log(f"student saved to {model_dir}")
    return TrainResult(model_dir, metrics, counts, selection)


def best_eval_metrics(state: Any) -> dict[str, float]:
    """The evaluation logged at the best checkpoint's step (the weights the saved model has); {} without
    evaluation."""
    step = state.best_global_step
    for entry in state.log_history:
        if entry.get("step") == step and "eval_ndcg@10" in entry:
            return {k.removeprefix("eval_"): float(v) for k, v in entry.items() if k.startswith("eval_")}
    return {}


def save_model_atomically(model: StudentModel, target: Path, extra: dict[str, Any]) -> Path:
    """Save into a temp folder beside ``target`` and swap it in: a reader never sees half a model."""
    with atomic_dir(target) as tmp:
        model.save(tmp, extra)
    return target
