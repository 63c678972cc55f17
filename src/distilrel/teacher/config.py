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
#: the ``[training] loss`` names (distilrel.teacher.losses.LOSSES maps them to modules) and the ranking ones
LOSS_NAMES = ("ce", "listnet", "lambda", "ranknet")
RANKING_LOSS_NAMES = frozenset({"listnet", "lambda", "ranknet"})


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
class PriorConfig:
    """``[model.prior]``: the zero-shot bi-encoder whose cosine (and the query-term overlap) the teacher adds
    to its level logits (see :mod:`distilrel.teacher.prior`). ``backbone``: an alias, HF id or folder of a
    sentence-transformers model (the baselines' ``minilm``, ``e5``, ...). ``calibrate``: fit the prior's
    level model on the training pairs before fine-tuning (on at most ``calibration_pairs`` of them);
    ``calibrate_overlap``: fit the overlap's weight in that calibration too."""

    backbone: str = "minilm"
    pooling: str = "auto"  # auto: the sentence-transformers folder's own (mean for MiniLM / E5)
    max_query_length: int = 32
    max_doc_length: int = 128
    calibrate: bool = True
    calibration_pairs: int = 4096
    # Calibrate on cosine + beta * overlap (beta fitted on train): step 0 is then a calibrated lexical +
    # semantic fusion instead of the bi-encoder's order alone.
    calibrate_overlap: bool = False

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> PriorConfig | None:
        if not raw:
            return None
        check_keys(raw, [*field_names(cls), "enabled"], "model.prior", source)
        if raw.get("enabled", True) is False:
            return None
        p = cls(**{k: v for k, v in raw.items() if k != "enabled"})
        if p.pooling not in ("auto", "mean", "cls"):
            raise ConfigError(f"{source}: [model.prior] pooling must be auto, mean or cls, got {p.pooling!r}")
        for name in ("max_query_length", "max_doc_length", "calibration_pairs"):
            value = getattr(p, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise ConfigError(f"{source}: [model.prior] {name} must be an integer >= 4, got {value!r}")
        if not isinstance(p.backbone, str) or not p.backbone.strip():
            raise ConfigError(f"{source}: [model.prior] backbone must name a bi-encoder, got {p.backbone!r}")
        return p


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
    prior: PriorConfig | None = None  # a zero-shot prior added to the logits ([model.prior])

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
            "prior",
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
            prior=PriorConfig.from_toml(table(raw, "prior", source, section="model.prior"), source),
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
    head_learning_rate: float | None = None  # the level head (and a prior's layer); None: learning_rate
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
    # The objective: loss name -> weight (see distilrel.teacher.losses.LOSSES): "ce" (level cross-entropy),
    # "listnet", "lambda" (LambdaRank-weighted pairwise), "ranknet". A ranking loss makes batches of query
    # lists: each query's judged pairs cut into lists of at most docs_per_query, batch_size // docs_per_query
    # lists a batch (so batch_size still counts pairs).
    loss: Mapping[str, float] = field(default_factory=lambda: {"ce": 1.0})
    docs_per_query: int | None = None  # None: 8 with a ranking loss, pointwise pairs without
    loss_temperature: float = 1.0  # ranking losses read expected gain / temperature
    loss_sigma: float = 1.0  # pairwise losses: log(1 + exp(-sigma (s_i - s_j)))
    # Evaluate the model before the first step too, and keep it when no checkpoint beats it (with a prior,
    # step 0 is the calibrated zero-shot model: training must earn its place). The summary says which won.
    eval_at_start: bool = True

    @property
    def listwise(self) -> bool:
        return any(w > 0 for name, w in self.loss.items() if name in RANKING_LOSS_NAMES)

    @property
    def list_size(self) -> int:
        """Pairs per query list in a batch (ranking losses)."""
        return self.docs_per_query or 8

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> TrainingConfig:
        check_keys(raw, field_names(cls), "training", source)
        raw = dict(raw)
        if "loss" in raw:
            raw["loss"] = _loss_weights(raw["loss"], source)
        t = cls(**{k: v for k, v in raw.items() if v != "auto"})
        if t.docs_per_query is not None and (isinstance(t.docs_per_query, bool) or t.docs_per_query < 2):
            raise ConfigError(f"{source}: [training] docs_per_query must be >= 2, got {t.docs_per_query!r}")
        if t.listwise and t.batch_size < t.list_size:
            raise ConfigError(
                f"{source}: [training] batch_size ({t.batch_size}) counts pairs and must hold at least one "
                f"query list of docs_per_query = {t.list_size}"
            )
        for name in ("loss_temperature", "loss_sigma"):
            _positive(getattr(t, name), name, "training", source)
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


def _loss_weights(raw: Any, source: str) -> dict[str, float]:
    known = LOSS_NAMES
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{source}: [training] loss must be a table of weights like "
            f"{{ ce = 1.0, listnet = 1.0 }}, got {raw!r}"
        )
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{source}: [training] loss: unknown loss(es) {unknown}; known: {list(known)}")
    weights = {}
    for name, w in raw.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
            raise ConfigError(f"{source}: [training] loss {name} weight must be a number >= 0, got {w!r}")
        weights[name] = float(w)
    if not any(weights.values()):
        raise ConfigError(f"{source}: [training] loss: every weight is 0; nothing would be trained")
    return weights


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
