"""Student training config: frozen dataclasses read from TOML, checked before anything heavy runs.

The ``[data]`` dataset entries, ``[levels]`` and ``[text]`` are the teacher's (:mod:`distilrel.config`
holds what the two configs share), so a student is configured on the teacher's level scale and text::

    [data]
    datasets = ["crowdflower"]          # or [[data.datasets]] tables (name, path, options, caps, ...)
    pseudo_labels = "runs/labels/crowdflower/labels.parquet"   # optional, from `distilrel label`
    pseudo_ratio = 10                   # at most this many pseudo-labelled pairs per human pair (0 = none)

    [levels]
    preset = "default5"                 # the teacher's level mapping: pseudo-label probs have K entries

    [text]
    fields = ["title", "description"]   # or tables: name, label, max_tokens, required

    [model]
    backbone = "minilm"                 # alias, HF id or local folder (distilrel.weights.resolve_model)
    shared = true                       # one tower for queries and documents
    max_query_length = 32
    max_doc_length = 256
    score_mode = "expected_gain"        # or "cosine"

    [loss]
    kl = 1.0                            # KL(teacher || student), pairs with teacher distributions
    ce = 0.5                            # cross-entropy on human levels
    margin_mse = 0.0                    # teacher score margins between documents of one query
    temperature = 1.0

    [training]
    output_dir = "runs/student-minilm"  # model/ (final student), checkpoints/, train_info.json
    epochs = 2

Relative paths are relative to the working directory (the repository root for
``distilrel student train --config configs/student-minilm.toml``). This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilrel.config import (
    ConfigError,
    DatasetCaps,
    DatasetSpec,
    FieldConfig,
    LevelsConfig,
    RunConfig,
    check_keys,
    check_sections,
    field_names,
    parse_datasets,
    parse_fields,
    read_toml,
    table,
)

SCORE_MODES = ("expected_gain", "cosine")


@dataclass(frozen=True)
class DataConfig(DatasetCaps):
    datasets: tuple[DatasetSpec, ...] = ()
    data_dir: str | None = None  # root holding the datasets' default folders (default: the shared data)
    pseudo_labels: str | None = None  # Parquet: dataset, query, doc_id and/or text, probs (K floats)
    pseudo_ratio: float = 10.0  # cap: pseudo pairs <= ratio x human train pairs (0: the table is not read)
    train_split: str = "train"
    eval_split: str = "validation"
    max_train_pairs: int | None = None  # human pairs per dataset (a dataset's own cap wins)
    max_eval_queries: int | None = None  # evaluation queries per dataset (a dataset's own cap wins)
    seed: int = 13  # which pairs / queries the caps keep


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "minilm"
    shared: bool = True
    query_prefix: str | None = None  # None: the backbone's own (E5: "query: "), see weights.model_prefixes
    doc_prefix: str | None = None
    max_query_length: int = 32
    max_doc_length: int = 256
    head_hidden: int = 256
    head_dropout: float = 0.1
    cosine_prior: bool = True  # a fresh head ranks by the towers' cosine, training refines it
    score_mode: str = "expected_gain"


@dataclass(frozen=True)
class LossConfig:
    kl: float = 1.0
    ce: float = 0.5
    margin_mse: float = 0.0
    temperature: float = 1.0
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class TrainingConfig:
    output_dir: str = "runs/student"
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float = 3e-5
    head_learning_rate: float = 1e-3  # the head starts from random weights: it needs a larger step
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    gradient_accumulation_steps: int = 1
    docs_per_query: int = 4  # documents of one query kept together in a batch (MarginMSE compares them)
    eval_steps: int = 200  # also the checkpoint interval; 0: no evaluation (the last weights are kept)
    logging_steps: int = 20
    save_total_limit: int = 2
    seed: int = 42
    bf16: bool | None = None  # None: bf16 mixed precision where the GPU supports it; never on CPU
    resume: bool | None = None  # None: resume from the last checkpoint in output_dir if there is one
    dataloader_num_workers: int = 0
    # Evaluate before the first step too and keep the start (the cosine prior over the pretrained towers)
    # when no checkpoint beats it on validation; the training info says which was kept.
    eval_at_start: bool = True


@dataclass(frozen=True)
class StudentConfig(RunConfig):
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    fields: tuple[FieldConfig, ...] = ()  # empty: each dataset's own default fields
    loss: LossConfig = field(default_factory=LossConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    source: str = "config"  # the TOML file it came from, for messages

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> StudentConfig:
        check_sections(raw, ("data", "model", "levels", "text", "loss", "training"), ("data",), source)
        try:
            levels = LevelsConfig.from_toml(table(raw, "levels", source), source)
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from e
        return cls(
            data=_data(table(raw, "data", source), source),
            model=_plain_section(ModelConfig, table(raw, "model", source), "model", source),
            levels=levels,
            fields=parse_fields(table(raw, "text", source), source, _field_entry),
            loss=_plain_section(LossConfig, table(raw, "loss", source), "loss", source),
            training=_plain_section(TrainingConfig, table(raw, "training", source), "training", source),
            source=source,
        )

    def check(self) -> None:
        """Checks that need no data and no weights (those run in :func:`distilrel.student.train.prepare`)."""
        d, m, lo, t = self.data, self.model, self.loss, self.training
        err = self._error
        if not d.datasets:
            raise err(
                "data", "datasets", "is empty; name at least one judgment dataset, e.g. ['crowdflower']"
            )
        names = [s.name for s in d.datasets]
        if len(set(names)) != len(names):
            raise err("data", "datasets", f"repeat a name: {names}")
        if not (
            isinstance(d.pseudo_ratio, int | float) and d.pseudo_ratio >= 0 and math.isfinite(d.pseudo_ratio)
        ):
            raise err(
                "data",
                "pseudo_ratio",
                f"must be a finite number >= 0 (e.g. 0, 1, 10, 100), got {d.pseudo_ratio!r}",
            )
        try:
            k = self.level_mapping.k
        except ValueError as e:
            raise ConfigError(f"{self.source}: [levels] {e}") from e
        if not m.backbone.strip():
            raise err("model", "backbone", "is empty; use an alias (minilm, e5), a HF id or a model folder")
        if m.score_mode not in SCORE_MODES:
            raise err("model", "score_mode", f"must be one of {list(SCORE_MODES)}, got {m.score_mode!r}")
        for key in ("max_query_length", "max_doc_length", "head_hidden"):
            if getattr(m, key) < 1:
                raise err("model", key, f"must be >= 1, got {getattr(m, key)}")
        if not 0.0 <= m.head_dropout < 1.0:
            raise err("model", "head_dropout", f"must be in [0, 1), got {m.head_dropout}")
        for key in ("kl", "ce", "margin_mse"):
            if getattr(lo, key) < 0:
                raise err("loss", key, f"must be >= 0, got {getattr(lo, key)}")
        if lo.kl == lo.ce == lo.margin_mse == 0:
            raise err("loss", "kl, ce, margin_mse", "are all 0; turn at least one loss on")
        teacher_off = not d.pseudo_labels or d.pseudo_ratio == 0
        if teacher_off and lo.ce == 0:
            raise err(
                "data",
                "pseudo_labels",
                "is not used (unset or pseudo_ratio = 0), but the only losses on (kl, margin_mse) need "
                "teacher distributions: run `distilrel label` and point pseudo_labels at its table, "
                "or turn [loss] ce on",
            )
        if k < 2:
            raise err("levels", "names", "need at least 2 levels")
        if not lo.temperature > 0:
            raise err("loss", "temperature", f"must be > 0, got {lo.temperature}")
        if not 0.0 <= lo.label_smoothing < 1.0:
            raise err("loss", "label_smoothing", f"must be in [0, 1), got {lo.label_smoothing}")
        for key in (
            "batch_size",
            "eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
            "docs_per_query",
        ):
            if getattr(t, key) < 1:
                raise err("training", key, f"must be >= 1, got {getattr(t, key)}")
        if t.epochs <= 0 and t.max_steps <= 0:
            raise err("training", "epochs", "must be > 0 (or set max_steps > 0)")
        if t.eval_steps < 0:
            raise err("training", "eval_steps", f"must be >= 0 (0 = no evaluation), got {t.eval_steps}")
        if t.learning_rate <= 0 or t.head_learning_rate <= 0:
            raise err("training", "learning_rate / head_learning_rate", "must be > 0")
        if not 0.0 <= t.warmup_ratio < 1.0:
            raise err("training", "warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
        if not t.output_dir:
            raise err("training", "output_dir", "is empty")

    def _error(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{section}] {key} {problem}")


def load_config(path: str | Path) -> StudentConfig:
    """Read and check a student TOML config."""
    return StudentConfig.from_dict(read_toml(path, "student"), source=str(Path(path)))


# --- section readers: values are type-checked against the dataclass fields ----------------------------


def _data(raw: Mapping[str, Any], source: str) -> DataConfig:
    try:
        specs = parse_datasets(raw, source)
    except ValueError as e:  # also a loader's options that are not a table
        raise ConfigError(str(e)) from e
    rest = {k: v for k, v in raw.items() if k != "datasets"}
    plain: DataConfig = _plain_section(DataConfig, rest, "data", source, skip=("datasets",))
    return dataclasses.replace(plain, datasets=specs)


def _field_entry(entry: Mapping[str, Any], source: str) -> FieldConfig:
    if "name" not in entry:
        raise ConfigError(f"{source}: [text] fields entries are names or tables with a name, got {entry!r}")
    return FieldConfig(**_check_values(FieldConfig, entry, "text.fields", source))


def _plain_section(
    cls: type, raw: Mapping[str, Any], section: str, source: str, skip: tuple[str, ...] = ()
) -> Any:
    return cls(**_check_values(cls, raw, section, source, skip))


def _check_values(
    cls: type, raw: Mapping[str, Any], section: str, source: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Unknown keys and values of the wrong type are errors; ints are accepted where floats are expected."""
    check_keys(raw, sorted(field_names(cls, skip)), section, source)
    known = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        expected = str(known[key].type)
        where = f"{source}: [{section}] {key}"
        if "float" in expected and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = (
            (value is None and "None" in expected)
            or (isinstance(value, bool) and "bool" in expected)
            or (isinstance(value, float) and "float" in expected)
            or (isinstance(value, int) and not isinstance(value, bool) and "int" in expected)
            or (isinstance(value, str) and "str" in expected)
        )
        if not ok:
            raise ConfigError(f"{where} must be of type {expected}, got {value!r}")
        out[key] = value
    return out
