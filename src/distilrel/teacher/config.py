"""Teacher training configuration: frozen dataclasses read from TOML (tomllib), checked before training.

Checks that need no I/O run when the config is built (unknown keys, bad values, K mismatch between
``[model] num_levels`` and the level mapping); checks that need files (backbone resolvable, text fields
present in the datasets' documents) run in :func:`distilrel.teacher.train.prepare` before any model is
built. Every message names the file, the section and the key.

Several datasets with different level scales train ONE head. The policy (see :func:`remap_levels`):
the config names one target :class:`LevelMapping` with K levels (``[levels]``, default the 5-level
guideline); each dataset's level is moved onto the target level whose *relative grade*
``(grade - min) / (max - min)`` is nearest, ties going to the more relevant level. A dataset already on
the target scale (same grades) maps onto itself. Evaluation always scores a dataset with its OWN
gains, ranking by the expected gain under the target mapping.

This module imports no torch: the CLI reads configs at start-up.
"""

from __future__ import annotations

import dataclasses
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
    optional_int,
    parse_datasets,
    parse_fields,
    read_toml,
    table,
)
from distilrel.data.levels import LevelMapping, preset, remap_levels  # noqa: F401 — re-exported

POOLINGS = ("auto", "cls", "mean", "last")
ACTIVATIONS = ("tanh", "gelu", "relu", "identity")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DEFAULT_DECODER_TEMPLATE = "Query: {query}\nDocument: {text}"


def _positive(value: float, name: str, section: str, source: str, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigError(
            f"{source}: [{section}] {name} must be a {'non-negative' if allow_zero else 'positive'} "
            f"number, got {value!r}"
        )


# --- [data] ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NegativesConfig:
    """Hard negatives mined for a dataset whose judgments hold (almost) only positives, as retrieval sets
    do: per query of the train and eval splits, the ``k`` best documents of the first-stage ``retriever``
    (a scorer name that can search a corpus: ``bm25``, ``minilm``, ``e5``, a model folder) that the query
    has no judgment for, labelled with the LOWEST level. Unjudged is not proven irrelevant, so a few of
    them are false negatives (the BEIR convention evaluation uses too)."""

    k: int = 7
    retriever: str = "bm25"

    @classmethod
    def from_toml(cls, raw: Any, section: str, source: str) -> NegativesConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{source}: [{section}] negatives must be a table like "
                f'{{ k = 7, retriever = "bm25" }}, got {raw!r}'
            )
        check_keys(raw, field_names(cls), f"{section} negatives", source)
        k = optional_int(raw.get("k", 7), "negatives k", section, source)
        retriever = raw.get("retriever", "bm25")
        if k is None:
            raise ConfigError(
                f"{source}: [{section}] negatives k must be an integer >= 1, got {raw.get('k')!r}"
            )
        if not isinstance(retriever, str) or not retriever.strip():
            raise ConfigError(
                f"{source}: [{section}] negatives retriever must be a scorer name, got {retriever!r}"
            )
        return cls(k=k, retriever=retriever.strip())


def _split_negatives(
    raw: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, NegativesConfig]]:
    """``[data]`` without the dataset entries' ``negatives`` tables, and those tables by dataset name.

    ``negatives`` is teacher-only (the student learns from the teacher's labels, not from judged pairs), so
    it is read here rather than by the shared :class:`~distilrel.config.DatasetSpec`."""
    entries = raw.get("datasets")
    if not isinstance(entries, list):
        return dict(raw), {}
    kept: list[Any] = []
    negatives: dict[str, NegativesConfig] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and "negatives" in entry:
            name = str(entry.get("name", ""))
            section = f"data.datasets {name!r}"
            negatives[name] = NegativesConfig.from_toml(entry["negatives"], section, source)
            entry = {k: v for k, v in entry.items() if k != "negatives"}
        kept.append(entry)
    return {**raw, "datasets": kept}, negatives


@dataclass(frozen=True)
class DataConfig(DatasetCaps):
    datasets: tuple[DatasetSpec, ...]
    data_dir: str | None = None  # root holding the datasets' default folders (default: shared data)
    train_split: str = "train"
    eval_split: str = "validation"
    max_train_pairs: int | None = None  # default cap per dataset (a dataset's own cap wins)
    max_eval_queries: int | None = None  # default cap per dataset
    seed: int = 13  # which pairs / queries the caps keep
    # dataset name -> hard-negative mining; written as a ``negatives`` table in that dataset's entry
    negatives: Mapping[str, NegativesConfig] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> DataConfig:
        check_keys(raw, field_names(cls, skip=("negatives",)), "data", source)
        raw, negatives = _split_negatives(raw, source)
        return cls(
            negatives=negatives,
            datasets=parse_datasets(raw, source),
            data_dir=raw.get("data_dir") or None,
            train_split=str(raw.get("train_split", "train")),
            eval_split=str(raw.get("eval_split", "validation")),
            max_train_pairs=optional_int(raw.get("max_train_pairs"), "max_train_pairs", "data", source),
            max_eval_queries=optional_int(raw.get("max_eval_queries"), "max_eval_queries", "data", source),
            seed=int(raw.get("seed", 13)),
        )


# --- [text] ---------------------------------------------------------------------------------------


def _field_entry(entry: Mapping[str, Any], source: str) -> FieldConfig:
    """A ``[[text.fields]]`` table; ``max_tokens`` 0 means no cap."""
    check_keys(entry, field_names(FieldConfig), "text.fields", source)
    if "name" not in entry:
        raise ConfigError(f"{source}: a [[text.fields]] entry has no name: {dict(entry)}")
    return FieldConfig(
        name=str(entry["name"]),
        label=entry.get("label"),
        max_tokens=optional_int(
            entry.get("max_tokens"), "max_tokens", f"text.fields {entry['name']!r}", source
        ),
        required=bool(entry.get("required", True)),
    )


# --- [model] --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraSettings:
    """LoRA via peft. ``enabled`` None = on for decoder LLMs, off for encoders. ``target_modules`` empty =
    the family default (see ``distilrel.teacher.model.default_lora_targets``)."""

    enabled: bool | None = None
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> LoraSettings:
        check_keys(raw, field_names(cls), "model.lora", source)
        enabled = raw.get("enabled")
        if enabled == "auto":
            enabled = None
        if enabled is not None and not isinstance(enabled, bool):
            raise ConfigError(
                f'{source}: [model.lora] enabled must be true, false or "auto", got {enabled!r}'
            )
        s = cls(
            enabled=enabled,
            r=int(raw.get("r", 16)),
            alpha=int(raw.get("alpha", 32)),
            dropout=float(raw.get("dropout", 0.05)),
            target_modules=tuple(str(m) for m in raw.get("target_modules", ())),
        )
        _positive(s.r, "r", "model.lora", source)
        _positive(s.alpha, "alpha", "model.lora", source)
        return s


@dataclass(frozen=True)
class HeadSpec:
    """The MLP head: dropout -> Linear(hidden) -> activation -> dropout -> Linear(K).

    hidden None = the backbone's hidden size (encoders) or 0 (decoders); 0 = one Linear(K) layer.
    bias None = True for encoders, False for decoders. These defaults match the heads of
    ``AutoModelForSequenceClassification`` (BERT pooler + classifier; a decoder's bias-free ``score``)
    so the teacher can be exported in that layout."""

    hidden: int | None = None
    activation: str = "tanh"
    dropout: float = 0.1
    bias: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str  # HF id, alias or local folder (resolved by distilrel.weights.resolve_model)
    pooling: str = "auto"  # auto: cls (first token) for encoders, last non-padding token for decoders
    num_levels: int | None = None  # optional check: must equal the level mapping's K
    max_length: int = 256
    head: HeadSpec = HeadSpec()
    template: str | None = (
        None  # decoders: one sequence from this template (default DEFAULT_DECODER_TEMPLATE)
    )
    gradient_checkpointing: bool = False
    lora: LoraSettings = LoraSettings()

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> ModelConfig:
        head_keys = {"head_hidden", "head_activation", "head_bias", "dropout"}
        known = {
            "backbone",
            "pooling",
            "num_levels",
            "max_length",
            "template",
            "gradient_checkpointing",
            "lora",
        }
        check_keys(raw, sorted(known | head_keys), "model", source)
        if not raw.get("backbone"):
            raise ConfigError(f"{source}: [model] backbone is required (an HF id, alias or model folder)")
        head = HeadSpec(
            hidden=raw.get("head_hidden"),
            activation=str(raw.get("head_activation", "tanh")),
            dropout=float(raw.get("dropout", 0.1)),
            bias=raw.get("head_bias"),
        )
        m = cls(
            backbone=str(raw["backbone"]),
            pooling=str(raw.get("pooling", "auto")),
            num_levels=optional_int(raw.get("num_levels"), "num_levels", "model", source, minimum=2),
            max_length=int(raw.get("max_length", 256)),
            head=head,
            template=raw.get("template") or None,
            gradient_checkpointing=bool(raw.get("gradient_checkpointing", False)),
            lora=LoraSettings.from_toml(table(raw, "lora", source, section="model.lora"), source),
        )
        m.check(source)
        return m

    def check(self, source: str = "config") -> None:
        if self.pooling not in POOLINGS:
            raise ConfigError(
                f"{source}: [model] pooling must be one of {list(POOLINGS)}, got {self.pooling!r}"
            )
        if self.head.activation not in ACTIVATIONS:
            raise ConfigError(
                f"{source}: [model] head_activation must be one of {list(ACTIVATIONS)}, "
                f"got {self.head.activation!r}"
            )
        if self.head.hidden is not None and (isinstance(self.head.hidden, bool) or self.head.hidden < 0):
            raise ConfigError(
                f"{source}: [model] head_hidden must be >= 0 (0 = one linear layer), got {self.head.hidden}"
            )
        if not 0.0 <= self.head.dropout < 1.0:
            raise ConfigError(f"{source}: [model] dropout must be in [0, 1), got {self.head.dropout}")
        if self.max_length < 8:
            raise ConfigError(f"{source}: [model] max_length must be >= 8, got {self.max_length}")
        if self.template is not None:
            check_template(self.template, source)


def check_template(template: str, source: str = "config") -> None:
    """A template holds {query} and ends with {text}, so truncation only ever shortens the document."""
    if "{query}" not in template or not template.endswith("{text}"):
        raise ConfigError(
            f"{source}: [model] template must contain {{query}} and end with {{text}} "
            "(truncation cuts the end), "
            f"got {template!r}"
        )


# --- [training] -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    output_dir: str = "runs/teacher"  # checkpoints/, model/ (the exported best teacher), summary.json
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"  # linear | cosine | constant | constant_with_warmup
    label_smoothing: float = 0.0
    group_by_length: bool = True  # batches of similar length (less padding); False: plain random order
    eval_steps: int = 200  # also the checkpoint interval (load_best_model_at_end needs them aligned)
    save_total_limit: int = 2
    logging_steps: int = 20
    seed: int = 42
    bf16: bool | None = None  # None: bf16 mixed precision where the GPU supports it; never on CPU
    resume: bool | None = None  # None: resume from the last checkpoint in output_dir if there is one
    dataloader_num_workers: int = 0

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> TrainingConfig:
        check_keys(raw, field_names(cls), "training", source)
        t = cls(**{k: v for k, v in raw.items() if v != "auto"})
        for name in (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "gradient_accumulation_steps",
            "learning_rate",
            "eval_steps",
            "logging_steps",
        ):
            _positive(getattr(t, name), name, "training", source)
        for name in ("weight_decay", "warmup_ratio", "label_smoothing"):
            _positive(getattr(t, name), name, "training", source, allow_zero=True)
        if t.lr_scheduler not in SCHEDULERS:
            raise ConfigError(
                f"{source}: [training] lr_scheduler must be one of {list(SCHEDULERS)}, got {t.lr_scheduler!r}"
            )
        if t.warmup_ratio >= 1 or t.label_smoothing >= 1:
            raise ConfigError(f"{source}: [training] warmup_ratio and label_smoothing must be < 1")
        return t


# --- the whole config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherConfig(RunConfig):
    data: DataConfig
    model: ModelConfig
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    fields: tuple[FieldConfig, ...] = ()  # empty: every field of the datasets (optional where some lack it)
    training: TrainingConfig = TrainingConfig()
    source: str = "config"  # where it was read from (for messages)

    def __post_init__(self) -> None:
        try:
            k = self.levels.mapping().k
        except ValueError as e:
            raise ConfigError(f"{self.source}: [levels] {e}") from e
        if self.model.num_levels is not None and self.model.num_levels != k:
            desc = (
                f"preset {self.levels.preset!r}" if self.levels.preset else f"names {list(self.levels.names)}"
            )
            raise ConfigError(
                f"{self.source}: K mismatch: [model] num_levels = {self.model.num_levels} "
                "but the level mapping "
                f"([levels] {desc}) has {k} levels; the head predicts one probability per level"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> TeacherConfig:
        check_sections(raw, ("data", "levels", "model", "text", "training"), ("data", "model"), source)
        return cls(
            data=DataConfig.from_toml(table(raw, "data", source), source),
            model=ModelConfig.from_toml(table(raw, "model", source), source),
            levels=LevelsConfig.from_toml(table(raw, "levels", source), source),
            fields=parse_fields(table(raw, "text", source), source, _field_entry),
            training=TrainingConfig.from_toml(table(raw, "training", source), source),
            source=source,
        )


def load_config(path: str | Path) -> TeacherConfig:
    """Read and check a teacher TOML config."""
    return TeacherConfig.from_dict(read_toml(path, "teacher"), source=str(Path(path)))
