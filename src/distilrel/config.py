"""What the teacher's and the student's TOML configs share: section readers, the ``[data]`` dataset
entries, ``[levels]``, ``[text]`` fields, and resolving a config against files and the machine.

Both configs are frozen dataclasses (:mod:`distilrel.teacher.config`, :mod:`distilrel.student.config`)
that mix in :class:`RunConfig`; the helpers at the end take either. Every error is a :class:`ConfigError`
(a ``ValueError``) whose message names the file, the section and the key.

This module imports no torch: the CLI reads configs at start-up. The resolving helpers (backbone,
datasets, fields, checkpoints, bf16) import what they need when ``prepare`` calls them.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from distilrel.data.levels import LevelMapping, preset

if TYPE_CHECKING:
    from distilrel.data.schema import Dataset

#: ``[training] output_dir / CHECKPOINTS`` holds the Trainer checkpoints of a run.
CHECKPOINTS = "checkpoints"


class ConfigError(ValueError):
    """A bad config. The message names the file, the section and the key."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """The config file does not exist (both a ConfigError and a FileNotFoundError)."""


# --- reading TOML sections -------------------------------------------------------------------------


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The parsed TOML file; ``what`` ("teacher", "student") names the config in the errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileNotFoundError(f"{what} config {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e


def check_sections(
    raw: Mapping[str, Any], known: Sequence[str], required: Sequence[str], source: str
) -> None:
    """Unknown top-level sections are errors (a typo would silently fall back to defaults)."""
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known sections: {list(known)}")
    for sec in required:
        if sec not in raw:
            raise ConfigError(f"{source}: missing section [{sec}]")


def table(raw: Mapping[str, Any], key: str, source: str, section: str | None = None) -> Mapping[str, Any]:
    """``raw[key]`` (default: empty), which must be a table; ``section`` (default: key) names it."""
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [{section or key}] must be a table, got {type(value).__name__}")
    return value


def field_names(cls: type, skip: Collection[str] = ()) -> list[str]:
    """The keys a config dataclass reads from its TOML section."""
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in skip]


def check_keys(raw: Mapping[str, Any], known: Sequence[str], section: str, source: str) -> None:
    """Unknown keys are errors: a misspelt key would otherwise be ignored. ``known`` is listed as given."""
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} in [{section}]; known keys: {list(known)}")


def optional_int(value: Any, name: str, section: str, source: str, minimum: int = 1) -> int | None:
    """Optional int >= ``minimum``; 0 / "" / None in TOML mean "no cap"."""
    if value is None or value == 0 or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{source}: [{section}] {name} must be an integer >= {minimum}, got {value!r}")
    return value


# --- [data] ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """One training dataset. ``path``: its folder (default: its folder under ``[data] data_dir`` or the
    shared data); ``options``: loader options (e.g. files and columns for ``table``); ``captions``: a
    captions table (``distilrel caption`` output) joined on doc_id as the ``caption`` document field.
    ``loader``: the registered loader when ``name`` is not one, so that one loader can serve two entries
    (``{ name = "esci-es", loader = "esci", options = { locale = "es" } }``); the dataset takes ``name``."""

    name: str
    path: str | None = None
    loader: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    max_train_pairs: int | None = None  # sampled (seeded) from the train split; None = all
    max_eval_queries: int | None = None  # whole queries sampled from the eval split; None = all
    evaluate: bool = True  # take part in the NDCG@10 evaluator
    captions: str | None = None  # captions.parquet or a caption output folder

    @property
    def loader_name(self) -> str:
        """The registered loader that reads this entry."""
        return self.loader or self.name

    @classmethod
    def from_toml(cls, raw: Any, source: str) -> DatasetSpec:
        if isinstance(raw, str):
            return cls(name=raw)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: [[data.datasets]] entries are names or tables, got {raw!r}")
        check_keys(raw, field_names(cls), "data.datasets", source)
        if "name" not in raw:
            raise ConfigError(f"{source}: a [[data.datasets]] entry has no name: {dict(raw)}")
        sec = f"data.datasets {raw['name']!r}"
        return cls(
            name=str(raw["name"]),
            path=raw.get("path") or None,
            loader=str(raw["loader"]) if raw.get("loader") else None,
            options=dict(raw.get("options", {})),
            max_train_pairs=optional_int(raw.get("max_train_pairs"), "max_train_pairs", sec, source),
            max_eval_queries=optional_int(raw.get("max_eval_queries"), "max_eval_queries", sec, source),
            evaluate=bool(raw.get("evaluate", True)),
            captions=str(raw["captions"]) if raw.get("captions") else None,
        )


def parse_datasets(raw: Mapping[str, Any], source: str) -> tuple[DatasetSpec, ...]:
    """``[data] datasets``: names or tables, at least one."""
    entries = raw.get("datasets")
    if not entries or not isinstance(entries, list):
        raise ConfigError(f"{source}: [data] datasets must name at least one dataset, e.g. ['crowdflower']")
    return tuple(DatasetSpec.from_toml(e, source) for e in entries)


class DatasetCaps:
    """Per-dataset caps: a dataset's own cap wins over the ``[data]`` default. Mixed into DataConfig."""

    max_train_pairs: int | None
    max_eval_queries: int | None

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
        check_keys(raw, field_names(cls), "levels", source)
        if raw.get("preset") and raw.get("names"):
            raise ConfigError(f"{source}: [levels] give either preset or names, not both")
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
        return {
            "name": self.name,
            "label": self.label,
            "max_tokens": self.max_tokens,
            "required": self.required,
        }


def parse_fields(
    raw: Mapping[str, Any], source: str, read_entry: Callable[[Mapping[str, Any], str], FieldConfig]
) -> tuple[FieldConfig, ...]:
    """``[text] fields``: names, or tables read by ``read_entry`` (the teacher and the student check the
    values of a table entry each their own way); names must not repeat."""
    check_keys(raw, ("fields",), "text", source)
    out: list[FieldConfig] = []
    for entry in raw.get("fields", []):
        if isinstance(entry, str):
            out.append(FieldConfig(name=entry))
        elif isinstance(entry, Mapping):
            out.append(read_entry(entry, source))
        else:
            raise ConfigError(
                f"{source}: [text] fields entries are names or tables with a name, got {entry!r}"
            )
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: [text] fields repeat a name: {names}")
    return tuple(out)


# --- the shared part of a whole config --------------------------------------------------------------


class RunConfig:
    """Mixed into the teacher's and the student's frozen config dataclasses, which declare these fields
    (their ``data``, ``model`` and ``training`` sections differ, the keys used here do not)."""

    data: Any  # .datasets, .data_dir
    model: Any  # .backbone
    levels: LevelsConfig
    fields: tuple[FieldConfig, ...]
    training: Any  # .output_dir, .resume, .bf16 and the other TrainingArguments keys
    source: str  # where it was read from (for messages)

    @property
    def level_mapping(self) -> LevelMapping:
        return self.levels.mapping()

    def with_overrides(self, **training: Any) -> Self:
        """A copy with ``[training]`` values replaced (CLI flags such as --max-steps); None is ignored."""
        changes = {k: v for k, v in training.items() if v is not None}
        bad = [k for k in changes if k not in field_names(type(self.training))]
        if bad:
            raise ConfigError(f"unknown [training] override(s) {bad}")
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **changes))  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


# --- resolving a config against files and the machine (before any model is built) -------------------


def resolve_backbone(config: RunConfig) -> Path:
    """The local folder of ``[model] backbone`` (an alias, HF id or folder)."""
    from distilrel.weights import resolve_model

    try:
        return resolve_model(config.model.backbone)
    except (FileNotFoundError, ImportError, ValueError) as e:
        raise ConfigError(
            f"{config.source}: [model] backbone {config.model.backbone!r} cannot be loaded "
            f"(it cannot be resolved to a model folder): {e}"
        ) from e


def load_datasets(config: RunConfig) -> list[Dataset]:
    """The ``[data]`` datasets in config order, each from its ``path``, its folder under ``data_dir``, or
    its default place."""
    return [load_dataset_spec(spec, config.data.data_dir) for spec in config.data.datasets]


def load_dataset_spec(spec: DatasetSpec, data_dir: str | Path | None = None) -> Dataset:
    """One ``[data]`` entry: from its ``path``, its folder under ``data_dir``, or its default place; its
    captions table joined when it names one."""
    from distilrel.data import DATASETS, load_dataset

    path: Path | None = Path(spec.path).expanduser() if spec.path else None
    loader = spec.loader_name
    if path is None and data_dir and loader in DATASETS and DATASETS[loader].folders:
        root = Path(data_dir).expanduser()
        folders = DATASETS[loader].folders
        path = next((root / f for f in folders if (root / f).is_dir()), root / folders[0])
    ds = load_dataset(loader, data_dir=path, **dict(spec.options))
    if spec.loader and ds.name != spec.name:
        ds = dataclasses.replace(ds, name=spec.name)  # stages match datasets by the entry's name
    if spec.captions:
        from distilrel.caption.join import attach_captions

        ds = attach_captions(ds, Path(spec.captions).expanduser())
    return ds


def resolve_fields(config: RunConfig, datasets: Mapping[str, Dataset]) -> tuple[FieldConfig, ...]:
    """One text recipe for every dataset: the configured fields, each required one present in every
    dataset's documents and each optional one in at least one; by default the union of the datasets'
    fields, required where every dataset has it."""
    if not config.fields:
        names = list(dict.fromkeys(f for ds in datasets.values() for f in ds.fields))
        return tuple(
            FieldConfig(name=n, required=all(n in ds.documents.columns for ds in datasets.values()))
            for n in names
        )
    for f in config.fields:
        lacking = [name for name, ds in datasets.items() if f.name not in ds.documents.columns]
        if f.required and lacking:
            have = [c for c in datasets[lacking[0]].documents.columns if c not in ("doc_id", "language")]
            raise ConfigError(
                f"{config.source}: [text] field {f.name!r} is missing from the documents of dataset(s) "
                f"{lacking} (columns of {lacking[0]!r}: {have}); fix the name or set required = false to "
                "read it as empty there"
            )
        if len(lacking) == len(datasets):
            raise ConfigError(
                f"{config.source}: [text] field {f.name!r} exists in none of the datasets "
                f"({ {name: list(ds.fields) for name, ds in datasets.items()} })"
            )
    return config.fields


def resume_point(config: RunConfig) -> str | None:
    """The checkpoint to resume from: ``[training] resume`` None resumes when there is one, False refuses
    to overwrite one, True requires one."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(config.training.output_dir) / CHECKPOINTS
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if config.training.resume is False and last is not None:
        raise ConfigError(
            f"{config.source}: {folder} already holds checkpoints (last: {Path(last).name}); resume it "
            "([training] resume = true or --resume) or choose another output_dir"
        )
    if config.training.resume is True and last is None:
        raise ConfigError(f"{config.source}: resume requested but {folder} holds no checkpoint")
    return last


def use_bf16(config: RunConfig) -> bool:
    """``[training] bf16``: None means bf16 mixed precision where the GPU supports it (never on CPU)."""
    import torch

    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if config.training.bf16 and not supported:
        raise ConfigError(f"{config.source}: [training] bf16 = true but there is no bf16-capable GPU here")
    return supported if config.training.bf16 is None else bool(config.training.bf16)


def training_arguments_kwargs(config: RunConfig, evaluate: bool, save_steps: int) -> dict[str, Any]:
    """``TrainingArguments`` keywords for the ``[training]`` keys the teacher and the student share.

    ``save_steps``: the checkpoint interval; with ``evaluate`` it must be the evaluation interval too
    (``load_best_model_at_end`` needs them aligned).
    """
    t = config.training
    return {
        "output_dir": str(Path(t.output_dir) / CHECKPOINTS),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.eval_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "warmup_steps": t.warmup_ratio,  # a float below 1 is a fraction of the total steps
        "logging_steps": t.logging_steps,
        "eval_strategy": "steps" if evaluate else "no",
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": evaluate,
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": use_bf16(config),
        "dataloader_num_workers": t.dataloader_num_workers,
        "report_to": "none",
        "disable_tqdm": True,  # progress goes to the console through callbacks / the log function
    }
