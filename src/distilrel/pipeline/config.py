"""The ``distilrel run`` TOML: one section per stage, read into frozen dataclasses and checked whole before
any stage runs.

::

    [run]        name, out                      -> everything goes to OUT/NAME (default runs/NAME)
    [data]       datasets, data_dir             -> the [data] entries of the teacher/student configs
    [baselines]  scorers                        (optional stage)
    [teacher]    config = "configs/teacher-minilm.toml" and/or inline [teacher.model], [teacher.training], ...
    [logs]       datasets, retrievers, k, max_queries, exclude_from
    [label]      batch_size, shard_size, chunk_size, device
    [student]    config and/or inline tables, pseudo_ratio
    [embed]      dataset (a run or a transfer dataset), batch_size
    [index]      the keys of index.IndexConfig (kind, nprobe, ...)
    [evaluate]   datasets, split, metrics, max_queries, latency_queries, rerank_queries
    [ablation]   fields = [["title"], ["title", "description"], ...], model = "zero-shot:minilm" | "teacher"
    [transfer]   datasets, models, split, max_queries   (optional stage)
    [report]     title

The teacher and student train on the run's ``[data]`` datasets: their own ``[data] datasets`` list is
replaced by the run's, and an entry there with the same name lends its keys (e.g. caps) where the run's entry
does not set them. Their ``[training] output_dir`` is the run's folder and ``resume`` is automatic (the
pipeline decides when outputs are stale). Relative paths are relative to the working directory, as in the
stage configs. This module imports no torch.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilrel.config import (
    ConfigError,
    DatasetSpec,
    check_keys,
    check_sections,
    optional_int,
    parse_datasets,
    read_toml,
    table,
)
from distilrel.index.faiss_index import IndexConfig
from distilrel.student.config import StudentConfig
from distilrel.teacher.config import TeacherConfig

SECTIONS = (
    "run",
    "data",
    "baselines",
    "teacher",
    "logs",
    "label",
    "student",
    "embed",
    "index",
    "evaluate",
    "ablation",
    "transfer",
    "report",
)
REQUIRED = ("run", "data", "teacher", "student")
#: Metrics the report reads; the evaluate stage always computes them.
REPORT_METRICS = ("ndcg@10", "p@8")
ZERO_SHOT = "zero-shot:"


@dataclass(frozen=True)
class DataSection:
    datasets: tuple[DatasetSpec, ...]
    data_dir: str | None = None
    raw_entries: tuple[Mapping[str, Any], ...] = ()  # as written: merged into the stage configs' [data]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.datasets)


@dataclass(frozen=True)
class BaselinesSection:
    scorers: tuple[str, ...] = ("random", "bm25", "minilm")


@dataclass(frozen=True)
class LogsSection:
    datasets: tuple[str, ...] = ()  # empty: every run dataset
    retrievers: tuple[str, ...] = ("bm25",)
    k: int = 100
    max_queries: int | None = None
    exclude_from: tuple[str, ...] | None = None  # None: every registered dataset present (the safe default)


@dataclass(frozen=True)
class LabelSection:
    batch_size: int = 64
    shard_size: int = 4096
    chunk_size: int = 512
    device: str | None = None


@dataclass(frozen=True)
class EmbedSection:
    dataset: str = ""  # empty: the first run dataset
    batch_size: int = 64
    device: str | None = None


# The pipeline's index unless [index] says otherwise: exact search (the index module's own default is auto).
DEFAULT_INDEX = IndexConfig(kind="flat")


@dataclass(frozen=True)
class EvaluateSection:
    datasets: tuple[str, ...] = ()  # empty: every run dataset
    split: str = "test"
    metrics: tuple[str, ...] = ("ndcg@10", "p@8", "ndcg", "mrr@10")
    max_queries: int | None = None
    latency_queries: int = 300  # short queries timed one by one through the student's query tower
    rerank_queries: int = 10  # queries timed re-ranking 100 candidates, teacher vs student
    rerank_depth: int = 100
    # The promotion gate (distilrel.pipeline.promotion): trained models vs the best baseline on this split
    # ("" switches the gate off); significantly worse = p < gate_alpha with a negative mean difference.
    gate_split: str = "validation"
    gate_alpha: float = 0.05


@dataclass(frozen=True)
class AblationSection:
    fields: tuple[tuple[str, ...], ...]
    model: str = "zero-shot:minilm"  # or "teacher": one teacher trained per step (expensive)
    datasets: tuple[str, ...] = ()  # empty: the evaluate datasets

    @property
    def zero_shot_model(self) -> str | None:
        return self.model.removeprefix(ZERO_SHOT) if self.model.startswith(ZERO_SHOT) else None


@dataclass(frozen=True)
class TransferSection:
    datasets: tuple[DatasetSpec, ...]
    models: tuple[str, ...] = ("teacher", "student")
    split: str = "test"
    max_queries: int | None = None


@dataclass(frozen=True)
class ReportSection:
    title: str = ""


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    out: str
    data: DataSection
    teacher: TeacherConfig
    student: StudentConfig
    logs: LogsSection = LogsSection()
    label: LabelSection = LabelSection()
    embed: EmbedSection = EmbedSection()
    index: IndexConfig = DEFAULT_INDEX
    evaluate: EvaluateSection = EvaluateSection()
    baselines: BaselinesSection | None = None
    ablation: AblationSection | None = None
    transfer: TransferSection | None = None
    report: ReportSection = ReportSection()
    source: str = "config"
    stage_files: Mapping[str, str] = field(default_factory=dict)  # teacher/student config files read

    @property
    def root(self) -> Path:
        return Path(self.out).expanduser() / self.name

    @property
    def eval_datasets(self) -> tuple[str, ...]:
        return self.evaluate.datasets or self.data.names

    def uses_field(self, name: str) -> bool:
        """Whether any text recipe of the run names field ``name`` (engaged queries are built only then)."""
        recipes = [f.name for f in (*self.teacher.fields, *self.student.fields)]
        steps = [f for step in self.ablation.fields for f in step] if self.ablation else []
        return name in recipes or name in steps

    def settings(self) -> dict[str, Any]:
        """Every section as plain data (what the stage fingerprints hash)."""
        return dataclasses.asdict(self)


# --- reading -----------------------------------------------------------------------------------------


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and check a pipeline TOML; every error is a ConfigError naming the file, section and key."""
    return parse_pipeline(read_toml(path, "pipeline"), source=str(Path(path)))


def parse_pipeline(raw: Mapping[str, Any], source: str = "config") -> PipelineConfig:
    check_sections(raw, SECTIONS, REQUIRED, source)
    run = table(raw, "run", source)
    check_keys(run, ("name", "out"), "run", source)
    name = str(run.get("name", "")).strip()
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"{source}: [run] name must be a plain folder name, got {run.get('name')!r}")
    data = _data(table(raw, "data", source), source)
    stage_files: dict[str, str] = {}
    teacher = _stage_config(raw, "teacher", data, name, run, source, stage_files)
    student = _stage_config(raw, "student", data, name, run, source, stage_files)
    cfg = PipelineConfig(
        name=name,
        out=str(run.get("out", "runs")),
        data=data,
        teacher=teacher,  # type: ignore[arg-type]
        student=student,  # type: ignore[arg-type]
        logs=_plain(LogsSection, raw, "logs", source),
        label=_plain(LabelSection, raw, "label", source),
        embed=_plain(EmbedSection, raw, "embed", source),
        index=_index(raw, source),
        evaluate=_plain(EvaluateSection, raw, "evaluate", source),
        baselines=_plain(BaselinesSection, raw, "baselines", source) if "baselines" in raw else None,
        ablation=_ablation(table(raw, "ablation", source), source) if "ablation" in raw else None,
        transfer=_transfer(table(raw, "transfer", source), source) if "transfer" in raw else None,
        report=_plain(ReportSection, raw, "report", source),
        source=source,
        stage_files=stage_files,
    )
    _check_names(cfg)
    return cfg


def _data(raw: Mapping[str, Any], source: str) -> DataSection:
    check_keys(raw, ("datasets", "data_dir"), "data", source)
    specs = parse_datasets(raw, source)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: [data] datasets repeat a name: {names}")
    entries = tuple({"name": e} if isinstance(e, str) else dict(e) for e in raw["datasets"])
    return DataSection(specs, raw.get("data_dir") or None, entries)


def _stage_config(
    raw: Mapping[str, Any],
    stage: str,
    data: DataSection,
    run_name: str,
    run: Mapping[str, Any],
    source: str,
    stage_files: dict[str, str],
) -> TeacherConfig | StudentConfig:
    """``[teacher]`` / ``[student]``: the file named by ``config`` (if any), the inline tables on top, the
    run's datasets and output folder imposed."""
    section = dict(table(raw, stage, source))
    extra = ("pseudo_ratio",) if stage == "student" else ()
    cls: type[TeacherConfig] | type[StudentConfig] = TeacherConfig if stage == "teacher" else StudentConfig
    inline_sections = ("data", "levels", "model", "text", "training") + (
        ("loss",) if stage == "student" else ()
    )
    check_keys(section, ("config", *extra, *inline_sections), stage, source)
    base: dict[str, Any] = {}
    if section.get("config"):
        file = Path(str(section.pop("config"))).expanduser()
        try:
            base = read_toml(file, stage)
        except ConfigError as e:
            raise ConfigError(f"{source}: [{stage}] config: {e}") from e
        stage_files[stage] = str(file)
    else:
        section.pop("config", None)
    ratio = section.pop("pseudo_ratio", None)
    merged = _deep_merge(base, section)
    if not merged.get("model") and stage == "teacher":
        raise ConfigError(
            f'{source}: [teacher] needs config = "configs/teacher-....toml" or an inline [teacher.model] '
            "table with a backbone"
        )
    d = dict(merged.get("data", {}))
    d["datasets"] = _merge_entries(data.raw_entries, d.get("datasets", []))
    if data.data_dir and not d.get("data_dir"):
        d["data_dir"] = data.data_dir
    if ratio is not None:
        d["pseudo_ratio"] = ratio
    if stage == "student":
        # The label stage writes here; the student reads texts from the pool beside it.
        d["pseudo_labels"] = str(
            Path(str(run.get("out", "runs"))).expanduser() / run_name / "pool" / "labels"
        )
    merged["data"] = d
    training = dict(merged.get("training", {}))
    training["output_dir"] = str(Path(str(run.get("out", "runs"))).expanduser() / run_name / stage)
    training.pop("resume", None)  # the pipeline resumes an interrupted stage and cleans a stale one
    merged["training"] = training
    where = f"{source} [{stage}]" + (f" (config {stage_files[stage]})" if stage in stage_files else "")
    return cls.from_dict(merged, source=where)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_entries(run_entries: Sequence[Mapping[str, Any]], stage_entries: Sequence[Any]) -> list[Any]:
    """The run's datasets; a stage entry of the same name lends the keys the run's entry leaves unset."""
    by_name = {
        (e if isinstance(e, str) else e.get("name")): ({} if isinstance(e, str) else dict(e))
        for e in stage_entries or []
    }
    return [{**by_name.get(e["name"], {}), **e} for e in run_entries]


def _plain(cls: type, raw: Mapping[str, Any], section: str, source: str) -> Any:
    """A flat section: known keys only, lists read as tuples, 0 / "" caps as None."""
    values = dict(table(raw, section, source))
    names = [f.name for f in dataclasses.fields(cls)]
    check_keys(values, names, section, source)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("max_queries",):
            value = optional_int(value, key, section, source)
        elif isinstance(value, list):
            value = tuple(str(v) for v in value)
        elif key in ("device",) and value == "":
            value = None
        kwargs[key] = value
    obj = cls(**kwargs)
    for f in dataclasses.fields(cls):
        v = getattr(obj, f.name)
        if isinstance(v, int) and not isinstance(v, bool) and f.name != "max_queries" and v < 1:
            raise ConfigError(f"{source}: [{section}] {f.name} must be >= 1, got {v}")
    return obj


def _index(raw: Mapping[str, Any], source: str) -> IndexConfig:
    """``[index]``: the keys of :class:`IndexConfig` (its own checks, reported as ConfigErrors)."""
    values = dict(table(raw, "index", source))
    check_keys(values, [f.name for f in dataclasses.fields(IndexConfig)], "index", source)
    for key in ("nlist", "pq_m"):  # None (0 or "") lets the index size them from the vector count
        if key in values:
            values[key] = optional_int(values[key], key, "index", source)
    try:
        return dataclasses.replace(DEFAULT_INDEX, **values)  # re-runs IndexConfig's checks
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: [index] {e}") from e


def _ablation(raw: Mapping[str, Any], source: str) -> AblationSection:
    check_keys(raw, ("fields", "model", "datasets"), "ablation", source)
    steps = raw.get("fields")
    if not steps or not all(isinstance(s, list) and s and all(isinstance(f, str) for f in s) for s in steps):
        raise ConfigError(
            f'{source}: [ablation] fields must be a list of field-name lists, e.g. [["title"], '
            f'["title", "description"]], got {steps!r}'
        )
    model = str(raw.get("model", "zero-shot:minilm"))
    if model != "teacher" and not (model.startswith(ZERO_SHOT) and len(model) > len(ZERO_SHOT)):
        raise ConfigError(
            f'{source}: [ablation] model must be "teacher" or "zero-shot:NAME" (e.g. "zero-shot:minilm"), '
            f"got {model!r}"
        )
    return AblationSection(
        tuple(tuple(s) for s in steps), model, tuple(str(d) for d in raw.get("datasets", ()))
    )


def _transfer(raw: Mapping[str, Any], source: str) -> TransferSection:
    check_keys(raw, ("datasets", "models", "split", "max_queries"), "transfer", source)
    models = tuple(str(m) for m in raw.get("models", ("teacher", "student")))
    bad = [m for m in models if m not in ("teacher", "student")]
    if bad:
        raise ConfigError(f"{source}: [transfer] models must be 'teacher' and/or 'student', got {bad}")
    return TransferSection(
        parse_datasets(raw, source),
        models,
        str(raw.get("split", "test")),
        optional_int(raw.get("max_queries"), "max_queries", "transfer", source),
    )


def _check_names(cfg: PipelineConfig) -> None:
    """Datasets named by a stage must be run datasets; registered names and retrievers must exist."""
    from distilrel.data import DATASETS

    src = cfg.source
    for spec in (*cfg.data.datasets, *(cfg.transfer.datasets if cfg.transfer else ())):
        if spec.loader_name not in DATASETS:
            what = "loader" if spec.loader else "dataset"
            raise ConfigError(f"{src}: unknown {what} {spec.loader_name!r}; datasets: {sorted(DATASETS)}")
    run = set(cfg.data.names)
    named = {
        "logs": cfg.logs.datasets,
        "evaluate": cfg.evaluate.datasets,
        "ablation": cfg.ablation.datasets if cfg.ablation else (),
    }
    for section, names in named.items():
        unknown = [n for n in names if n not in run]
        if unknown:
            raise ConfigError(
                f"{src}: [{section}] dataset(s) {unknown} are not run datasets "
                f"([data] datasets = {sorted(run)})"
            )
    # The served catalog may be a transfer dataset: train on one domain, serve another (cross-domain).
    unseen = {s.name for s in cfg.transfer.datasets} if cfg.transfer else set()
    if cfg.embed.dataset and cfg.embed.dataset not in run | unseen:
        raise ConfigError(
            f"{src}: [embed] dataset {cfg.embed.dataset!r} is neither a run dataset ([data] datasets = "
            f"{sorted(run)}) nor a [transfer] dataset ({sorted(unseen)})"
        )
    for r in cfg.logs.retrievers:
        if r.split(":", 1)[0] not in ("bm25", "ann"):
            raise ConfigError(
                f"{src}: [logs] retrievers: unknown retriever {r!r}; use bm25, ann or ann:MODEL"
            )
    if cfg.evaluate.split not in ("train", "validation", "test", "all"):
        raise ConfigError(f"{src}: [evaluate] split must be train, validation, test or all")
    if cfg.teacher.level_mapping != cfg.student.level_mapping:
        raise ConfigError(
            f"{src}: the teacher's [levels] and the student's differ; the student learns the teacher's "
            "distributions and needs the same levels"
        )
