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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilrel.data.levels import LevelMapping, preset, remap_levels  # noqa: F401 — re-exported

POOLINGS = ("auto", "cls", "mean", "last")
ACTIVATIONS = ("tanh", "gelu", "relu", "identity")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
DEFAULT_DECODER_TEMPLATE = "Query: {query}\nDocument: {text}"


def _check_keys(table: Mapping[str, Any], cls: type, section: str, source: str) -> None:
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in table if k not in known]
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} in [{section}]; known keys: {known}")


def _table(raw: Mapping[str, Any], key: str, section: str, source: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: [{section}] must be a table, got {type(value).__name__}")
    return value


def _opt_int(value: Any, name: str, section: str, source: str, minimum: int = 1) -> int | None:
    """Optional positive int; 0 / "" / None in TOML mean "no cap"."""
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{source}: [{section}] {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive(value: float, name: str, section: str, source: str, allow_zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ValueError(
            f"{source}: [{section}] {name} must be a {'non-negative' if allow_zero else 'positive'} "
            f"number, got {value!r}"
        )


# --- [data] ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """One training dataset. ``path``: its folder (default: its folder under ``[data] data_dir`` or the
    shared data); ``options``: loader options (e.g. files and columns for ``table``)."""

    name: str
    path: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    max_train_pairs: int | None = None  # sampled (seeded) from the train split; None = all
    max_eval_queries: int | None = None  # whole queries sampled from the eval split; None = all
    evaluate: bool = True  # take part in the NDCG@10 evaluator

    @classmethod
    def from_toml(cls, raw: Any, source: str) -> DatasetSpec:
        if isinstance(raw, str):
            return cls(name=raw)
        if not isinstance(raw, Mapping):
            raise ValueError(f"{source}: [[data.datasets]] entries are names or tables, got {raw!r}")
        _check_keys(raw, cls, "data.datasets", source)
        if "name" not in raw:
            raise ValueError(f"{source}: a [[data.datasets]] entry has no name: {dict(raw)}")
        sec = f"data.datasets {raw['name']!r}"
        return cls(
            name=str(raw["name"]),
            path=raw.get("path") or None,
            options=dict(raw.get("options", {})),
            max_train_pairs=_opt_int(raw.get("max_train_pairs"), "max_train_pairs", sec, source),
            max_eval_queries=_opt_int(raw.get("max_eval_queries"), "max_eval_queries", sec, source),
            evaluate=bool(raw.get("evaluate", True)),
        )


@dataclass(frozen=True)
class DataConfig:
    datasets: tuple[DatasetSpec, ...]
    data_dir: str | None = None  # root holding the datasets' default folders (default: shared data)
    train_split: str = "train"
    eval_split: str = "validation"
    max_train_pairs: int | None = None  # default cap per dataset (a dataset's own cap wins)
    max_eval_queries: int | None = None  # default cap per dataset
    seed: int = 13  # which pairs / queries the caps keep

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> DataConfig:
        _check_keys(raw, cls, "data", source)
        entries = raw.get("datasets")
        if not entries or not isinstance(entries, list):
            raise ValueError(f"{source}: [data] datasets must name at least one dataset")
        specs = tuple(DatasetSpec.from_toml(e, source) for e in entries)
        return cls(
            datasets=specs,
            data_dir=raw.get("data_dir") or None,
            train_split=str(raw.get("train_split", "train")),
            eval_split=str(raw.get("eval_split", "validation")),
            max_train_pairs=_opt_int(raw.get("max_train_pairs"), "max_train_pairs", "data", source),
            max_eval_queries=_opt_int(raw.get("max_eval_queries"), "max_eval_queries", "data", source),
            seed=int(raw.get("seed", 13)),
        )

    def train_cap(self, spec: DatasetSpec) -> int | None:
        return spec.max_train_pairs if spec.max_train_pairs is not None else self.max_train_pairs

    def eval_cap(self, spec: DatasetSpec) -> int | None:
        return spec.max_eval_queries if spec.max_eval_queries is not None else self.max_eval_queries


# --- [levels] -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelsConfig:
    """The target level mapping: a preset name, or explicit names (+ grades / gains / relevant)."""

    preset: str | None = "default5"
    names: tuple[str, ...] = ()
    grades: tuple[int, ...] = ()
    gains: tuple[float, ...] = ()
    relevant: int = 1

    @classmethod
    def from_toml(cls, raw: Mapping[str, Any], source: str) -> LevelsConfig:
        _check_keys(raw, cls, "levels", source)
        if raw.get("preset") and raw.get("names"):
            raise ValueError(f"{source}: [levels] give either preset or names, not both")
        if raw.get("names"):
            return cls(
                preset=None,
                names=tuple(str(n) for n in raw["names"]),
                grades=tuple(int(g) for g in raw.get("grades", ())),
                gains=tuple(float(g) for g in raw.get("gains", ())),
                relevant=int(raw.get("relevant", 1)),
            )
        return cls(preset=str(raw.get("preset", "default5")))

    def mapping(self) -> LevelMapping:
        if self.preset:
            return preset(self.preset)
        return LevelMapping(self.names, self.grades, self.gains, self.relevant)


# --- [text] ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldConfig:
    """A document text field. ``required``: every dataset must have it; an optional field missing from a
    dataset is read as empty text for that dataset (and must exist in at least one dataset)."""

    name: str
    label: str | None = None
    max_tokens: int | None = None
    required: bool = True

    def builder_dict(self) -> dict[str, Any]:
        """The text builder's part (what ``distilrel.json`` stores)."""
        return {"name": self.name, "label": self.label, "max_tokens": self.max_tokens, "required": self.required}


def _fields_from_toml(raw: Mapping[str, Any], source: str) -> tuple[FieldConfig, ...]:
    if set(raw) - {"fields"}:
        raise ValueError(
            f"{source}: unknown key(s) {sorted(set(raw) - {'fields'})} in [text]; known keys: ['fields']"
        )
    out = []
    for entry in raw.get("fields", []):
        if isinstance(entry, str):
            out.append(FieldConfig(name=entry))
            continue
        _check_keys(entry, FieldConfig, "text.fields", source)
        if "name" not in entry:
            raise ValueError(f"{source}: a [[text.fields]] entry has no name: {dict(entry)}")
        out.append(
            FieldConfig(
                name=str(entry["name"]),
                label=entry.get("label"),
                max_tokens=_opt_int(
                    entry.get("max_tokens"), "max_tokens", f"text.fields {entry['name']!r}", source
                ),
                required=bool(entry.get("required", True)),
            )
        )
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: [text] fields repeat a name: {names}")
    return tuple(out)


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
        _check_keys(raw, cls, "model.lora", source)
        enabled = raw.get("enabled")
        if enabled == "auto":
            enabled = None
        if enabled is not None and not isinstance(enabled, bool):
            raise ValueError(f'{source}: [model.lora] enabled must be true, false or "auto", got {enabled!r}')
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
        unknown = sorted(set(raw) - known - head_keys)
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {unknown} in [model]; known keys: {sorted(known | head_keys)}"
            )
        if not raw.get("backbone"):
            raise ValueError(f"{source}: [model] backbone is required (an HF id, alias or model folder)")
        head = HeadSpec(
            hidden=raw.get("head_hidden"),
            activation=str(raw.get("head_activation", "tanh")),
            dropout=float(raw.get("dropout", 0.1)),
            bias=raw.get("head_bias"),
        )
        m = cls(
            backbone=str(raw["backbone"]),
            pooling=str(raw.get("pooling", "auto")),
            num_levels=_opt_int(raw.get("num_levels"), "num_levels", "model", source, minimum=2),
            max_length=int(raw.get("max_length", 256)),
            head=head,
            template=raw.get("template") or None,
            gradient_checkpointing=bool(raw.get("gradient_checkpointing", False)),
            lora=LoraSettings.from_toml(_table(raw, "lora", "model.lora", source), source),
        )
        m.check(source)
        return m

    def check(self, source: str = "config") -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"{source}: [model] pooling must be one of {list(POOLINGS)}, got {self.pooling!r}"
            )
        if self.head.activation not in ACTIVATIONS:
            raise ValueError(
                f"{source}: [model] head_activation must be one of {list(ACTIVATIONS)}, "
                f"got {self.head.activation!r}"
            )
        if self.head.hidden is not None and (isinstance(self.head.hidden, bool) or self.head.hidden < 0):
            raise ValueError(
                f"{source}: [model] head_hidden must be >= 0 (0 = one linear layer), got {self.head.hidden}"
            )
        if not 0.0 <= self.head.dropout < 1.0:
            raise ValueError(f"{source}: [model] dropout must be in [0, 1), got {self.head.dropout}")
        if self.max_length < 8:
            raise ValueError(f"{source}: [model] max_length must be >= 8, got {self.max_length}")
        if self.template is not None:
            check_template(self.template, source)


def check_template(template: str, source: str = "config") -> None:
    """A template holds {query} and ends with {text}, so truncation only ever shortens the document."""
    if "{query}" not in template or not template.endswith("{text}"):
        raise ValueError(
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
        _check_keys(raw, cls, "training", source)
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
            raise ValueError(
                f"{source}: [training] lr_scheduler must be one of {list(SCHEDULERS)}, got {t.lr_scheduler!r}"
            )
        if t.warmup_ratio >= 1 or t.label_smoothing >= 1:
            raise ValueError(f"{source}: [training] warmup_ratio and label_smoothing must be < 1")
        return t


# --- the whole config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherConfig:
    data: DataConfig
    model: ModelConfig
    levels: LevelsConfig = LevelsConfig()
    fields: tuple[FieldConfig, ...] = ()  # empty: every field of the datasets (optional where some lack it)
    training: TrainingConfig = TrainingConfig()
    source: str = "config"  # where it was read from (for messages)

    def __post_init__(self) -> None:
        try:
            k = self.levels.mapping().k
        except ValueError as e:
            raise ValueError(f"{self.source}: [levels] {e}") from e
        if self.model.num_levels is not None and self.model.num_levels != k:
            desc = (
                f"preset {self.levels.preset!r}" if self.levels.preset else f"names {list(self.levels.names)}"
            )
            raise ValueError(
                f"{self.source}: K mismatch: [model] num_levels = {self.model.num_levels} "
                "but the level mapping "
                f"([levels] {desc}) has {k} levels; the head predicts one probability per level"
            )

    @property
    def level_mapping(self) -> LevelMapping:
        return self.levels.mapping()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> TeacherConfig:
        sections = {"data", "model", "levels", "text", "training"}
        unknown = sorted(set(raw) - sections)
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {unknown}; known sections: {sorted(sections)}")
        for sec in ("data", "model"):
            if sec not in raw:
                raise ValueError(f"{source}: missing section [{sec}]")
        return cls(
            data=DataConfig.from_toml(_table(raw, "data", "data", source), source),
            model=ModelConfig.from_toml(_table(raw, "model", "model", source), source),
            levels=LevelsConfig.from_toml(_table(raw, "levels", "levels", source), source),
            fields=_fields_from_toml(_table(raw, "text", "text", source), source),
            training=TrainingConfig.from_toml(_table(raw, "training", "training", source), source),
            source=source,
        )

    def with_overrides(self, **training: Any) -> TeacherConfig:
        """A copy with ``[training]`` values replaced (CLI flags such as --max-steps); None is ignored."""
        changes = {k: v for k, v in training.items() if v is not None}
        bad = [k for k in changes if k not in {f.name for f in dataclasses.fields(TrainingConfig)}]
        if bad:
            raise ValueError(f"unknown [training] override(s) {bad}")
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path) -> TeacherConfig:
    """Read and check a teacher TOML config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher config {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from e
    return TeacherConfig.from_dict(raw, source=str(path))
