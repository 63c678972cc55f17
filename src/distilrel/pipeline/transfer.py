"""Cross-lingual transfer: fine-tune teachers on ENGLISH XQuAD-R questions only, measure every language.

    run_transfer(TransferSettings(teachers=(Path("configs/transfer-xquad-minilm.toml"), ...)))

1. each teacher config trains a cross-encoder on the English train split of XQuAD-R (positives: the
   answer sentence; negatives: mined from a first stage, see ``[data] negatives``);
2. the test split, in all 11 languages, is checked to share no question (``parallel_id``) and no article
   with anything the teachers trained or selected checkpoints on (:func:`check_no_leak`);
3. on a seeded sample of the SAME questions in every language, zero-shot first stages (``e5``,
   ``minilm``) rank each language's sentences, and each teacher re-ranks one first stage's top ``depth``;
   the Japanese question -> paragraph set (``ja_qa``, never trained on) is measured the same way;
4. ``OUT/table.md`` (per-language tables, caps, wall times), ``OUT/results.json``, ``OUT/per_language.csv``
   and ``OUT/transfer.png`` (per-language NDCG@10 / MRR@10 bars) are written; each evaluation's own
   outputs (run.trec, per_query.parquet, ...) go to ``OUT/eval/<dataset>/<system>/``.

The split of XQuAD-R comes from the teacher configs' xquad_r loader options (``fractions``, ``split_by``,
``seed``), read without ``languages``, so evaluation sees exactly the split training saw.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from distilrel.config import ConfigError, DatasetSpec
from distilrel.data.schema import Dataset
from distilrel.evaluate.scorer import Retriever, Scorer

XQUAD = "xquad_r"
JA_QA = "ja_qa"
METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@20")
PLOT_METRICS = ("ndcg@10", "mrr@10")
TABLE, RESULTS, PER_LANGUAGE, PLOT = "table.md", "results.json", "per_language.csv", "transfer.png"


class LeakError(ValueError):
    """A test question (or its article) was used to train or select a teacher."""


@dataclass(frozen=True)
class TransferSettings:
    teachers: tuple[Path, ...]  # teacher TOML configs that train on xquad_r (English)
    out: Path = Path("runs/transfer")
    first_stages: tuple[str, ...] = ("e5", "minilm")  # zero-shot retrievers (scorer names)
    rerank_first_stage: str = "e5"  # whose top ``depth`` the teachers re-rank (one of first_stages)
    depth: int = 20
    max_queries: int = 200  # per language: a seeded sample of questions, the same in every language
    ja_qa: bool = True
    ja_source: str | None = "jsquad-v1.3/test"  # rank this part's paragraphs (README protocol); None: all
    seed: int = 0
    retrain: bool = False  # False: a teacher whose model/ folder exists is reused
    max_steps: int | None = None  # passed to teacher training (smoke runs)
    data_dir: Path | None = None  # root holding the datasets' folders (default: the shared data)
    batch_size: int = 64  # teacher pairs per forward pass at evaluation
    metrics: tuple[str, ...] = METRICS

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ConfigError("transfer: name at least one teacher config")
        if self.rerank_first_stage not in self.first_stages:
            raise ConfigError(
                f"transfer: rerank_first_stage {self.rerank_first_stage!r} is not one of the first stages "
                f"{list(self.first_stages)}"
            )
        if self.depth < 1 or self.max_queries < 1:
            raise ConfigError(
                f"transfer: depth and max_queries must be >= 1, got {self.depth}, {self.max_queries}"
            )


@dataclass
class SystemResult:
    dataset: str
    system: str
    per_language: pd.DataFrame  # index language; metric columns + queries
    seconds: float
    pairs_scored: int


@dataclass
class TransferReport:
    results: list[SystemResult] = field(default_factory=list)
    train_seconds: dict[str, float] = field(default_factory=dict)  # teachers trained in this run
    teachers: dict[str, dict[str, Any]] = field(default_factory=dict)  # from each teacher's summary.json
    leak_check: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


# --- two-stage ranking ------------------------------------------------------------------------------


class Reranked(Scorer):
    """A first-stage retriever's top ``depth`` re-scored by a (cross-encoder) scorer, as a Retriever, so
    the evaluator ranks with it like with any retriever. Documents are read with the second stage's text
    recipe when it has one (a teacher's training text)."""

    def __init__(self, first: Retriever, second: Scorer, depth: int, name: str | None = None) -> None:
        if depth < 1:
            raise ValueError(f"Reranked: depth must be >= 1, got {depth}")
        self.first, self.second, self.depth = first, second, depth
        self.name = name or f"{second.name} > {getattr(first, 'name', 'first')}@{depth}"
        self._texts: dict[str, str] = {}

    def __getattr__(self, attr: str) -> Any:
        # tokenizer / text_builder: the evaluator builds the text the second stage was trained on.
        if attr in ("tokenizer", "text_builder"):
            return getattr(self.second, attr)
        raise AttributeError(attr)

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return self.second.score(queries, docs)

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.first.index(doc_ids, texts)
        self.second.fit_corpus(doc_ids, texts)
        self._texts = dict(zip(doc_ids, texts, strict=True))

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        hits = self.first.search(queries, self.depth)
        pairs_q = [q for q, h in zip(queries, hits, strict=True) for _ in h]
        pairs_d = [self._texts[d] for h in hits for d, _ in h]
        scores = np.asarray(self.second.score(pairs_q, pairs_d), dtype=np.float64)  # (n_pairs,)
        out, i = [], 0
        for h in hits:
            rescored = [(d, float(s)) for (d, _), s in zip(h, scores[i : i + len(h)], strict=True)]
            i += len(h)
            out.append(sorted(rescored, key=lambda ds: (-ds[1], ds[0]))[:k])
        return out


# --- data ---------------------------------------------------------------------------------------------


def _xquad_spec(config: Any) -> DatasetSpec:
    specs = [s for s in config.data.datasets if s.name == XQUAD]
    if len(specs) != 1:
        raise ConfigError(
            f"{config.source}: a transfer teacher must train on exactly one {XQUAD!r} dataset entry; "
            f"[data] datasets are {[s.name for s in config.data.datasets]}"
        )
    return specs[0]


def evaluation_spec(configs: Sequence[Any]) -> DatasetSpec:
    """The xquad_r entry evaluation loads: the teachers' split options, every language."""
    views = {}
    for cfg in configs:
        spec = _xquad_spec(cfg)
        options = {k: v for k, v in spec.options.items() if k != "languages"}
        if "fractions" not in options:
            raise ConfigError(
                f"{cfg.source}: the {XQUAD!r} entry needs options.fractions (train, validation, test): "
                "upstream every question is test, so there would be nothing to train on"
            )
        views[cfg.source] = (spec.path, tuple(sorted((k, repr(v)) for k, v in options.items())), options)
    distinct = {v[:2] for v in views.values()}
    if len(distinct) > 1:
        raise ConfigError(
            f"transfer: the teacher configs split {XQUAD!r} differently "
            f"({ {k: v[2] for k, v in views.items()} }); give them the same "
            "path and options, so they are tested on the same questions"
        )
    path, _, options = next(iter(views.values()))
    return DatasetSpec(name=XQUAD, path=path, options=options)


def _question_keys(judgments: pd.DataFrame) -> pd.DataFrame:
    """Per row: the cross-language question id and the article (from doc_id ``lang:article:...``)."""
    return pd.DataFrame(
        {
            "parallel_id": judgments["parallel_id"].astype(str),
            "article": judgments["doc_id"].astype(str).str.split(":").str[1],
        }
    )


def check_no_leak(trained_on: Mapping[str, Dataset], test: Dataset, splits: Sequence[str]) -> dict[str, Any]:
    """Raise :class:`LeakError` when a test question or article of ``test`` (any language) appears in
    the ``splits`` (train, validation) of a teacher's training view; returns the counts checked."""
    test_keys = _question_keys(test.split("test").judgments)
    report: dict[str, Any] = {"test_questions": int(test_keys["parallel_id"].nunique())}
    for name, ds in trained_on.items():
        used = ds.judgments[ds.judgments["split"].isin(list(splits))]
        keys = _question_keys(used)
        for col in ("parallel_id", "article"):
            shared = sorted(set(keys[col]) & set(test_keys[col]))
            if shared:
                raise LeakError(
                    f"{name}: {len(shared)} test {col}(s) of {test.name} are in its {list(splits)} split(s), "
                    f"e.g. {shared[:3]}; the split must be the same in every language"
                )
        report[name] = {
            "trained_questions": int(keys["parallel_id"].nunique()),
            "trained_languages": sorted(used["language"].astype(str).unique()),
            "shared_questions": 0,
            "shared_articles": 0,
        }
    return report


def sample_parallel(ds: Dataset, n: int, seed: int) -> Dataset:
    """Test judgments of ``n`` seeded questions present in every language (the same ones everywhere)."""
    test = ds.split("test").judgments
    langs = test["language"].nunique()
    counts = test.groupby("parallel_id")["language"].nunique()
    everywhere = counts[counts == langs].index.to_series().sort_values()
    keep = set(everywhere.sample(n=min(n, len(everywhere)), random_state=seed))
    j = test[test["parallel_id"].isin(keep)].reset_index(drop=True)
    return dataclasses.replace(ds, judgments=j)


def ja_view(ds: Dataset, source: str | None) -> Dataset:
    """ja_qa restricted to one upstream part (its questions and its paragraphs), as its README ranks."""
    if source is None:
        return ds
    have = sorted(ds.judgments["source"].astype(str).unique())
    if source not in have:
        raise ConfigError(f"transfer: ja_source {source!r} is not a part of {ds.name}; parts: {have}")
    docs = ds.documents[ds.documents["source"].astype(str) == source].reset_index(drop=True)
    j = ds.judgments[ds.judgments["source"].astype(str) == source].reset_index(drop=True)
    return dataclasses.replace(ds, documents=docs, judgments=j)


# --- the experiment -------------------------------------------------------------------------------------


def run_transfer(settings: TransferSettings, console: Console | None = None) -> TransferReport:
    from distilrel.config import load_dataset_spec, load_datasets
    from distilrel.data import load_dataset
    from distilrel.teacher.config import load_config

    console = console or Console(stderr=True)
    configs = [load_config(p) for p in settings.teachers]
    if settings.max_steps is not None:
        configs = [c.with_overrides(max_steps=settings.max_steps) for c in configs]
    names = [_teacher_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"transfer: two teacher configs share an output folder name: {names}")

    xquad = load_dataset_spec(evaluation_spec(configs), settings.data_dir)
    report = TransferReport()
    views = {  # what each teacher trains and selects checkpoints on
        name: ds
        for name, c in zip(names, configs, strict=True)
        for ds in load_datasets(c)
        if ds.name == XQUAD
    }
    report.leak_check = check_no_leak(views, xquad, ("train", "validation"))
    console.print(f"leak check passed: {report.leak_check}")

    teachers: dict[str, Path] = {}
    for name, cfg in zip(names, configs, strict=True):
        teachers[name] = _train(cfg, name, settings, report, console)
        report.teachers[name] = _teacher_info(cfg)

    sets = {XQUAD: sample_parallel(xquad, settings.max_queries, settings.seed)}
    if settings.ja_qa:
        ja_dir = Path(settings.data_dir) / "ja_qa_paragraph_retrieval" if settings.data_dir else None
        sets[JA_QA] = ja_view(load_dataset(JA_QA, data_dir=ja_dir), settings.ja_source)
    _evaluate_all(sets, teachers, settings, report, console)
    report.paths = write_report(report, settings)
    console.print(f"table: {report.paths['table']}")
    return report


def _teacher_name(config: Any) -> str:
    return Path(config.training.output_dir).name


def _train(
    config: Any, name: str, settings: TransferSettings, report: TransferReport, console: Console
) -> Path:
    from distilrel.teacher.train import MODEL, train_teacher

    model = Path(config.training.output_dir) / MODEL
    if model.is_dir() and not settings.retrain:
        console.print(f"reusing {model} (retrain to train again)")
        return model
    started = time.perf_counter()
    model = train_teacher(config, console=console)
    report.train_seconds[name] = round(time.perf_counter() - started, 1)
    return model


def _teacher_info(config: Any) -> dict[str, Any]:
    """What a teacher trained on, from the summary.json training wrote (also for a reused teacher)."""
    import json

    from distilrel.teacher.train import SUMMARY

    path = Path(config.training.output_dir) / SUMMARY
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    stats = summary.get("datasets", {}).get(XQUAD, {})
    negatives = config.data.negatives.get(XQUAD)
    return {
        "backbone": config.model.backbone,
        "train_questions": stats.get("train_queries"),
        "train_pairs": stats.get("train_pairs"),
        "mined_negatives": stats.get("mined_negatives"),
        "negatives": f"{negatives.k} from {negatives.retriever}" if negatives else "none",
        "steps": summary.get("global_step"),
        "epochs": summary.get("epochs"),
        "train_seconds": summary.get("seconds"),
        "train_pairs_per_s": summary.get("train_pairs_per_s"),
        "validation_ndcg@10": (summary.get("best_metric") or {}).get("value"),
    }


def _evaluate_all(
    sets: Mapping[str, Dataset],
    teachers: Mapping[str, Path],
    settings: TransferSettings,
    report: TransferReport,
    console: Console,
) -> None:
    """Every system on one language at a time (English first, then ja_qa, then the other languages), the
    table rewritten after each: an interrupted run still leaves complete, comparable rows."""
    from distilrel.evaluate.scorers import load_scorer

    first = {name: load_scorer(name, progress=True) for name in settings.first_stages}
    systems: dict[str, Scorer] = dict(first)
    # A view's finished evaluation is reused on a rerun when its stamp is unchanged (the settings that pick
    # questions and candidates, and for a teacher its saved model), so an interrupted run resumes at the
    # language it was in instead of scoring every language again.
    stamps = {name: _stamp(settings, system=name) for name in first}
    for name, folder in teachers.items():
        teacher = load_scorer(folder, batch_size=settings.batch_size)
        rerank = Reranked(first[settings.rerank_first_stage], teacher, settings.depth)  # type: ignore[arg-type]
        sys_name = f"{name} > {settings.rerank_first_stage}@{settings.depth}"
        systems[sys_name] = rerank
        saved = (Path(folder) / "distilrel.json").stat().st_mtime_ns  # a retrained teacher is a new model
        stamps[sys_name] = _stamp(settings, system=name, model=str(folder), saved=saved)
    for view in _language_views(sets):
        lang = str(view.judgments["language"].iloc[0])
        for sys_name, scorer in systems.items():
            kept = _finished(view.name, sys_name, settings, lang, stamps[sys_name])
            if kept is not None:
                console.print(f"{sys_name} on {view.name} [{lang}]: evaluated before, kept")
                report.results.append(kept)
                continue
            console.print(f"evaluating {sys_name} on {view.name} [{lang}]")
            report.results.append(_evaluate(view, sys_name, scorer, settings, lang, stamps[sys_name]))
        report.paths = write_report(report, settings)


def _language_views(sets: Mapping[str, Dataset]) -> list[Dataset]:
    """One dataset per (dataset, language): its queries and that language's corpus."""
    views: list[Dataset] = []
    for ds in sets.values():
        for lang in sorted(ds.judgments["language"].astype(str).unique()):
            j = ds.judgments[ds.judgments["language"].astype(str) == lang].reset_index(drop=True)
            docs = ds.documents[ds.documents["language"].astype(str) == lang].reset_index(drop=True)
            views.append(dataclasses.replace(ds, documents=docs, judgments=j))
    rank = {XQUAD: 0, JA_QA: 1}
    # English first (the language trained on), then Japanese (never trained on), then the rest.
    return sorted(
        views,
        key=lambda v: (str(v.judgments["language"].iloc[0]) != "en", rank.get(v.name, 2) != 1, v.name),
    )


def _stamp(settings: TransferSettings, **parts: Any) -> str:
    """What one (view, system) evaluation depends on, compared as a string on a rerun."""
    keys = ("max_queries", "depth", "seed", "ja_source", "metrics", "rerank_first_stage")
    return json.dumps({**{k: getattr(settings, k) for k in keys}, **parts}, sort_keys=True, default=str)


def _eval_dir(dataset: str, system: str, settings: TransferSettings, lang: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in system)
    return Path(settings.out) / "eval" / dataset / lang / safe


def _per_language(per_q: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    table = per_q.groupby("language")[list(metrics)].mean()
    table["queries"] = per_q.groupby("language").size()
    return table


def _finished(
    dataset: str, system: str, settings: TransferSettings, lang: str, stamp: str
) -> SystemResult | None:
    """The result an earlier run wrote for this (view, system) with the same stamp, else None."""
    folder = _eval_dir(dataset, system, settings, lang)
    meta, per_query = folder / "metrics.json", folder / "per_query.parquet"
    if not (meta.is_file() and per_query.is_file()):
        return None
    info = json.loads(meta.read_text(encoding="utf-8"))
    if info.get("stamp") != stamp:
        return None
    per_q = pd.read_parquet(per_query)
    per_q["language"] = per_q["language"].astype(str)
    table = _per_language(per_q, settings.metrics)
    return SystemResult(dataset, system, table, float(info["seconds"]), int(info["pairs_scored"]))


def _evaluate(
    ds: Dataset, system: str, scorer: Scorer, settings: TransferSettings, lang: str, stamp: str
) -> SystemResult:
    from distilrel.evaluate.report import write_outputs
    from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for

    # xquad_r arrives already sampled (same questions in every language); ja_qa is sampled here.
    cap = None if ds.name == XQUAD else settings.max_queries
    eval_settings = EvalSettings(
        split="test", max_queries=cap, metrics=settings.metrics, depth=settings.depth, seed=settings.seed
    )
    result = evaluate(ds, scorer, text_builder_for(scorer, ds), eval_settings)
    folder = _eval_dir(ds.name, system, settings, lang)
    write_outputs(result, folder, {"system": system, "stamp": stamp})
    table = _per_language(result.per_query, settings.metrics)
    return SystemResult(ds.name, system, table, round(result.seconds, 1), result.pairs_scored)


# --- outputs ------------------------------------------------------------------------------------------


def long_table(results: Sequence[SystemResult]) -> pd.DataFrame:
    """One row per (dataset, system, language): metrics and query counts."""
    frames = []
    for r in results:
        t = r.per_language.reset_index()
        t.insert(0, "system", r.system)
        t.insert(0, "dataset", r.dataset)
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


def write_report(report: TransferReport, settings: TransferSettings) -> dict[str, Path]:
    from distilrel.evaluate.report import markdown_table
    from distilrel.io import write_json, write_text

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    long = long_table(report.results)
    write_text(out / PER_LANGUAGE, long.to_csv(index=False))
    md = [
        "# Cross-lingual transfer: teachers fine-tuned on English XQuAD-R only\n",
        f"Caps: {settings.max_queries} test questions per language (seed {settings.seed}, the same questions "
        f"in every language; ja_qa: {settings.max_queries} questions of "
        f"{settings.ja_source or 'all parts'}); teachers re-rank the top {settings.depth} of "
        f"`{settings.rerank_first_stage}`; recall@20 of a re-ranked list equals its first stage's.\n",
        f"Leak check (test questions and articles vs teacher train + validation, all languages): "
        f"{report.leak_check}\n",
    ]
    for metric in settings.metrics:
        for ds_name, part in long.groupby("dataset", sort=False):
            wide = part.pivot(index="language", columns="system", values=metric)
            wide = wide[list(dict.fromkeys(part["system"]))]
            if len(wide) > 1:
                wide.loc["mean"] = wide.mean()
                wide.loc["mean (non-en)"] = wide.drop(index=["en", "mean"], errors="ignore").mean()
            md += [f"\n## {metric} — {ds_name}\n", markdown_table(wide)]
    timing = pd.DataFrame(
        [
            {
                "dataset": r.dataset,
                "language": ",".join(map(str, r.per_language.index)),
                "system": r.system,
                "seconds": r.seconds,
                "candidates ranked": r.pairs_scored,
            }
            for r in report.results
        ]
    ).set_index("dataset")
    md += ["\n## Wall times (evaluation)\n", markdown_table(timing, floatfmt=".1f")]
    if report.teachers:
        teachers = pd.DataFrame.from_dict(report.teachers, orient="index").rename_axis("teacher")
        md += [
            "\n## Teachers (English XQuAD-R train split only; wall times of training)\n",
            markdown_table(teachers.astype(object).where(teachers.notna(), "-"), floatfmt=".4g"),
        ]
    md.append(f"\n![per-language NDCG@10 and MRR@10]({PLOT})\n")
    paths = {
        "table": write_text(out / TABLE, "\n".join(md)),
        "results": write_json(
            out / RESULTS,
            {
                "settings": {
                    k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(settings).items()
                }
                | {"teachers": [str(t) for t in settings.teachers]},
                "train_seconds": report.train_seconds,
                "teachers": report.teachers,
                "leak_check": report.leak_check,
                "rows": long.to_dict(orient="records"),
            },
        ),
        "per_language": out / PER_LANGUAGE,
    }
    paths["plot"] = plot(long, out / PLOT, [m for m in PLOT_METRICS if m in settings.metrics])
    return paths


def plot(long: pd.DataFrame, path: Path, metrics: Sequence[str]) -> Path:
    """Bars per language (x) and system (colour), one panel per metric, XQuAD-R languages then ja."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distilrel.io import atomic_path

    langs = list(dict.fromkeys(long["language"]))
    systems = list(dict.fromkeys(long["system"]))
    fig, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(max(8, 0.9 * len(langs) * len(systems) / 2), 3.6 * len(metrics)),
        squeeze=False,
    )
    width = 0.8 / len(systems)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for i, system in enumerate(systems):
            part = long[long["system"] == system].set_index("language")[metric]
            values = [float(part.get(lang, np.nan)) for lang in langs]
            ax.bar(np.arange(len(langs)) + i * width - 0.4 + width / 2, values, width, label=system)
        ax.set_xticks(np.arange(len(langs)), langs)
        ax.set_ylim(0, 1)
        ax.set_ylabel(metric)
        ax.legend(fontsize=7, ncol=min(len(systems), 4))
    axes[0, 0].set_title("zero-shot first stage vs teachers fine-tuned on English (re-ranking)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
