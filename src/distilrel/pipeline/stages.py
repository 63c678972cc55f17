"""One function per stage: each calls the stage's own module and returns a JSON-able summary of what it did
(kept in the stage's stamp and read by the report). Outputs go under the run folder::

    data/summary.json           baselines/               teacher/model, teacher/summary.json
    pool/ (+ pool/labels/)      student/model            store/   index/
    eval/<dataset>/<model>/     eval/costs.json          ablation/step-N.json   transfer/<dataset>/<model>/
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from distilrel.data.schema import Dataset
from distilrel.io import write_json
from distilrel.pipeline.context import ENGAGED, RunContext, dataset_hash, with_fields

MODELS = ("teacher", "student")


def model_dir(ctx: RunContext, model: str) -> Any:
    return ctx.path(model, "model")


# --- data -------------------------------------------------------------------------------------------------


def run_data(ctx: RunContext) -> dict[str, Any]:
    """Load and check every dataset; record counts, fields, loader warnings and the caption situation."""
    from distilrel.caption.join import caption_report

    info: dict[str, Any] = {}
    for spec in ctx.specs():
        ds = ctx.dataset(spec.name)
        j = ds.judgments
        info[spec.name] = {
            "documents": len(ds.documents),
            "judgments": {str(k): int(v) for k, v in j["split"].value_counts().sort_index().items()},
            "queries": {str(k): int(v) for k, v in j.groupby("split")["query_id"].nunique().items()},
            "fields": list(ds.fields),
            "columns": [c for c in ds.documents.columns if c not in ("doc_id", "language")],
            "levels": list(ds.levels.names),
            "task": ds.task,
            "captions": caption_report(ds),
            "warnings": list(ds.meta.get("warnings", [])),  # type: ignore[call-overload]
            "hash": dataset_hash(ds),
        }
        ctx.log(f"{spec.name}: {len(ds.documents):,} documents, {len(j):,} judgments")
    write_json(ctx.path("data", "summary.json"), info)
    return info


# --- baselines --------------------------------------------------------------------------------------------


def run_baselines(ctx: RunContext) -> dict[str, Any]:
    from distilrel.evaluate.suite import run_suite

    assert ctx.config.baselines is not None
    ev = ctx.config.evaluate
    table = run_suite(
        ctx.datasets(ctx.config.eval_datasets),
        ctx.config.baselines.scorers,
        ctx.path("baselines"),
        split=ev.split,
        max_queries=ev.max_queries,
        log=ctx.log,
        make_scorer=ctx.scorer,
    )
    return {"results": json.loads(table.to_json(orient="records"))}


# --- teacher ----------------------------------------------------------------------------------------------


def run_teacher(ctx: RunContext) -> dict[str, Any]:
    from distilrel.teacher.train import SUMMARY, train_teacher

    cfg = ctx.config.teacher
    model = train_teacher(
        cfg, datasets=ctx.datasets([s.name for s in cfg.data.datasets]), console=ctx.console
    )
    summary = json.loads((model.parent / SUMMARY).read_text())
    keep = (
        "seconds",
        "eval_seconds",
        "train_pairs",
        "pairs_trained",
        "train_pairs_per_s",
        "global_step",
        "best_metric",
        "selection",
    )
    return {"model": str(model), **{k: summary[k] for k in keep if k in summary}}


# --- logs (the unlabelled pool) and label -----------------------------------------------------------------


def run_logs(ctx: RunContext) -> dict[str, Any]:
    from distilrel.label.pool import build_pool_tables, write_pool

    lg = ctx.config.logs
    exclude = None if lg.exclude_from is None else [_any_dataset(ctx, n) for n in lg.exclude_from]
    pool = build_pool_tables(
        ctx.datasets(lg.datasets or ctx.config.data.names),
        retrievers=lg.retrievers,
        k=lg.k,
        max_queries=lg.max_queries,
        exclude_from=exclude,
        log=ctx.log,
    )
    write_pool(pool, ctx.path("pool"))
    keep = ("pairs", "queries", "queries_without_candidates", "excluded_eval_queries", "eval_texts_from")
    return {k: pool.info[k] for k in keep}


def _any_dataset(ctx: RunContext, name: str) -> Dataset | str:
    """A run dataset as loaded, any other registered one by name (the pool loads it)."""
    return ctx.dataset(name) if name in {s.name for s in ctx.specs()} else name


def run_label(ctx: RunContext) -> dict[str, Any]:
    from distilrel.label.job import LabelSettings, label_pool_folder

    lb = ctx.config.label
    settings = LabelSettings(shard_size=lb.shard_size, chunk_size=lb.chunk_size, progress=ctx.progress)
    summary = label_pool_folder(
        ctx.path("pool"),
        model_dir(ctx, "teacher"),
        ctx.path("pool", "labels"),
        settings=settings,
        batch_size=lb.batch_size,
        device=lb.device,
        console=ctx.console,
        log=ctx.log,
    )
    return summary.as_dict()


# --- student, embed, index --------------------------------------------------------------------------------


def run_student(ctx: RunContext) -> dict[str, Any]:
    from distilrel.student.train import train_student

    cfg = ctx.config.student
    start = time.perf_counter()
    result = train_student(cfg, datasets=ctx.datasets([s.name for s in cfg.data.datasets]), log=ctx.log)
    seconds = time.perf_counter() - start  # data preparation + training + checkpoints, as a user waits
    return {
        "model": str(result.model_dir),
        "seconds": round(seconds, 2),
        "metrics": result.metrics,
        "counts": json.loads(json.dumps(result.counts, default=str)),
        "selection": result.selection,
    }


def run_embed(ctx: RunContext) -> dict[str, Any]:
    from distilrel.index.embed import embed_catalog

    em = ctx.config.embed
    name = em.dataset or ctx.config.data.names[0]
    ds = ctx.dataset(name)
    report = embed_catalog(
        model_dir(ctx, "student"),
        ds.documents,
        ctx.path("store"),
        default_fields=ds.fields,
        device=em.device,
        batch_size=em.batch_size,
        log=ctx.log,
    )
    return {"dataset": name, **report.to_dict()}


def run_index(ctx: RunContext) -> dict[str, Any]:
    from distilrel.index.faiss_index import build_index

    index = build_index(ctx.path("store"), ctx.path("index"), ctx.config.index)
    return {"kind": index.kind, "documents": len(index), "generation": index.generation}


# --- evaluate, transfer -----------------------------------------------------------------------------------


def evaluate_model(
    ctx: RunContext, ds: Dataset, scorer: Any, folder: str, split: str, max_queries: int | None
) -> dict[str, Any]:
    """Evaluate one scorer on one dataset with the text recipe it was trained with; fields the dataset
    lacks read as empty (and are named in the result)."""
    from distilrel.evaluate.report import write_outputs
    from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for

    metrics = tuple(dict.fromkeys(("ndcg@10", "p@8", *ctx.config.evaluate.metrics)))
    fields = [f["name"] for f in getattr(scorer, "text_fields", ())]
    ds, missing = with_fields(ds, fields)
    builder = text_builder_for(scorer, ds)
    result = evaluate(
        ds, scorer, builder, EvalSettings(split=split, max_queries=max_queries, metrics=metrics)
    )
    info = {
        "fields": [f.name for f in builder.fields],
        "missing_fields": missing,
        "gains": dict(zip(ds.levels.names, ds.levels.gains, strict=True)),
        "max_queries": max_queries,
    }
    write_outputs(result, ctx.path(folder), info)
    ctx.log(f"{ds.name:12s} {scorer.name:24s} ndcg@10={result.summary['ndcg@10']:.4f}")
    return {
        "queries": len(result.per_query),
        "metrics": result.summary,
        "classifier": result.classifier,
        "missing_fields": missing,
        "seconds": round(result.seconds, 2),
    }


def run_evaluate(ctx: RunContext) -> dict[str, Any]:
    from distilrel.evaluate.scorers import load_scorer
    from distilrel.pipeline.costs import measure_latency

    ev = ctx.config.evaluate
    scorers = {m: load_scorer(model_dir(ctx, m), progress=ctx.progress) for m in MODELS}
    results: dict[str, dict[str, Any]] = {}
    for name in ctx.config.eval_datasets:
        ds = ctx.dataset(name)
        results[name] = {
            m: evaluate_model(ctx, ds, sc, f"eval/{name}/{m}", ev.split, ev.max_queries)
            for m, sc in scorers.items()
        }
    first = ctx.dataset(ctx.config.eval_datasets[0])
    costs = measure_latency(scorers["teacher"], scorers["student"], first, ev)
    write_json(ctx.path("eval", "costs.json"), costs)
    promotion = {name: _gate(ctx, ctx.dataset(name), scorers) for name in ctx.config.eval_datasets}
    promotion = {k: v for k, v in promotion.items() if v is not None}
    if promotion:
        write_json(ctx.path("eval", "promotion.json"), promotion)
    tests = {name: _paired_tests(ctx, name) for name in ctx.config.eval_datasets}
    return {
        "results": results,
        "costs": costs,
        "promotion": promotion,
        "tests": {k: v for k, v in tests.items() if v},
    }


def _zero_shot_baselines(ctx: RunContext) -> list[str]:
    """The run's baselines that count as zero-shot models (random never does)."""
    return [b for b in (ctx.config.baselines.scorers if ctx.config.baselines else ()) if b != "random"]


def _paired_tests(ctx: RunContext, ds_name: str) -> dict[str, Any]:
    """Teacher and student vs the best zero-shot baseline on the evaluated split: paired bootstrap over the
    same queries (NDCG@10), from the per-query files the baselines and evaluate stages wrote."""
    import pandas as pd

    from distilrel.metrics.significance import paired_test

    def per_query(folder: Any) -> pd.Series | None:
        f = folder / "per_query.parquet"
        return pd.read_parquet(f).set_index("query_id")["ndcg@10"] if f.is_file() else None

    names = _zero_shot_baselines(ctx)
    base = {b: per_query(ctx.path("baselines", ds_name, b.replace("/", "_"))) for b in names}
    base = {b: v for b, v in base.items() if v is not None}
    if not base:
        return {}
    best = max(base, key=lambda b: float(base[b].mean()))
    out: dict[str, Any] = {"best_zero_shot": best, "best_zero_shot_ndcg@10": float(base[best].mean())}
    for m in MODELS:
        scores = per_query(ctx.path("eval", ds_name, m))
        if scores is None or set(scores.index) != set(base[best].index):
            continue
        t = paired_test(base[best].to_numpy(), scores.loc[base[best].index].to_numpy(), "bootstrap")
        out[m] = {"diff": t.diff, "rel_diff": t.rel_diff, "p": t.p_value, "ci": [t.ci_low, t.ci_high]}
    return out


def _gate(ctx: RunContext, ds: Dataset, scorers: dict[str, Any]) -> dict[str, Any] | None:
    """The promotion gate on the gate split of one dataset (None when off, or without that split or
    baselines)."""
    from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for
    from distilrel.pipeline.promotion import decide

    ev = ctx.config.evaluate
    baselines = _zero_shot_baselines(ctx)
    if not ev.gate_split or not baselines or ev.gate_split not in set(ds.judgments["split"]):
        return None
    per_query = {}
    settings = EvalSettings(split=ev.gate_split, max_queries=ev.max_queries, metrics=("ndcg@10",))
    for name in baselines:
        scorer = ctx.scorer(name)
        per_query[name] = evaluate(ds, scorer, text_builder_for(scorer, ds), settings).per_query["ndcg@10"]
    for name, scorer in scorers.items():
        view, _ = with_fields(ds, [f["name"] for f in getattr(scorer, "text_fields", ())])
        per_query[name] = evaluate(view, scorer, text_builder_for(scorer, view), settings).per_query[
            "ndcg@10"
        ]
    decision = decide(per_query, baselines, list(scorers), alpha=ev.gate_alpha)
    ctx.log(f"{ds.name:12s} promotion gate ({ev.gate_split}): {decision['why']}")
    return {"split": ev.gate_split, **decision}


def run_transfer(ctx: RunContext) -> dict[str, Any]:
    from distilrel.evaluate.scorers import load_scorer

    tr = ctx.config.transfer
    assert tr is not None
    results: dict[str, dict[str, Any]] = {}
    for m in tr.models:
        scorer = load_scorer(model_dir(ctx, m), progress=ctx.progress)
        for spec in tr.datasets:
            ds = ctx.dataset(spec.name)
            results.setdefault(spec.name, {})[m] = evaluate_model(
                ctx, ds, scorer, f"transfer/{spec.name}/{m}", tr.split, tr.max_queries
            )
    return {"trained_on": list(ctx.config.data.names), "results": results}


# --- ablation ---------------------------------------------------------------------------------------------


def run_ablation(ctx: RunContext) -> dict[str, Any]:
    """Sequential field additions; each step is only a change of the text fields. A finished step (its
    step-N.json) is kept, so an interrupted ablation resumes at the next step."""
    from distilrel.caption.join import CAPTION_FIELD, caption_report

    ab = ctx.config.ablation
    assert ab is not None
    names = ab.datasets or ctx.config.eval_datasets
    notes: list[str] = []
    wanted = {f for step in ab.fields for f in step}
    for name in names:
        ds = ctx.dataset(name)
        notes += [f"{name} has no {f}" for f in sorted(wanted - set(ds.documents.columns) - {CAPTION_FIELD})]
        notes.append(caption_report(ds))  # images and captions are stated either way
        notes += _empty_fields(ds, sorted(wanted & set(ds.documents.columns)), ctx.config.evaluate.split)
    steps = []
    previous: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}  # dataset -> (effective fields, result)
    for i, fields in enumerate(ab.fields):
        target = ctx.path("ablation", f"step-{i}.json")
        if target.is_file():
            step = json.loads(target.read_text())
            ctx.log(f"ablation step {i} ({'+'.join(fields)}): done before, kept")
        else:
            step = _ablation_step(ctx, i, fields, names, previous)
            write_json(target, step)
        for name, res in step["results"].items():
            previous[name] = (tuple(res["effective_fields"]), res)
        steps.append(step)
    return {"model": ab.model, "datasets": list(names), "notes": notes, "steps": steps}


def _empty_fields(ds: Dataset, fields: list[str], split: str) -> list[str]:
    """A field that exists but is empty for the documents being ranked changes nothing: say so."""
    from distilrel.text.builder import collapse_whitespace

    judged = ds.split(split).judgments["doc_id"] if split != "all" else ds.documents["doc_id"]
    docs = ds.documents[ds.documents["doc_id"].isin(set(judged))]
    out = []
    for f in fields:
        empty = int(sum(not collapse_whitespace(v) for v in docs[f].tolist()))
        if empty:
            why = " (built from train-split judgments only)" if f == ENGAGED else ""
            out.append(
                f"{ds.name}: {f} is empty for {empty:,} of {len(docs):,} documents judged in {split}{why}"
            )
    return out


def _ablation_step(
    ctx: RunContext,
    i: int,
    fields: tuple[str, ...],
    names: tuple[str, ...],
    previous: dict[str, tuple[tuple[str, ...], dict[str, Any]]],
) -> dict[str, Any]:
    ab = ctx.config.ablation
    assert ab is not None
    label = " + ".join(fields)
    ctx.log(f"ablation step {i}: {label} ({ab.model})")
    if ab.zero_shot_model is not None:  # the same model: only the dataset's own text can change
        effective = {n: tuple(f for f in fields if f in ctx.dataset(n).documents.columns) for n in names}
    else:  # another teacher per step: its training datasets decide whether the model changes
        train = ctx.datasets([s.name for s in ctx.config.teacher.data.datasets])
        used = tuple(f for f in fields if any(f in ds.documents.columns for ds in train))
        effective = dict.fromkeys(names, used)
    results: dict[str, Any] = {}
    todo = []
    for name in names:
        prev = previous.get(name)
        if prev is not None and prev[0] == effective[name]:  # the dataset lacks every field added here
            results[name] = {**prev[1], "same_as_previous": True}
        else:
            todo.append(name)
    if todo:
        scorer = _ablation_scorer(ctx, i, fields, names)
        for name in todo:
            ds, _ = with_fields(ctx.dataset(name), fields)
            res = _evaluate_fields(ctx, ds, scorer, effective[name], f"ablation/step-{i}/{name}")
            results[name] = {**res, "effective_fields": list(effective[name]), "same_as_previous": False}
    return {"step": i, "fields": list(fields), "label": label, "results": results}


def _ablation_scorer(ctx: RunContext, i: int, fields: tuple[str, ...], names: tuple[str, ...]) -> Any:
    """zero-shot:NAME: that bi-encoder; teacher: a teacher trained with the teacher stage's config on these
    fields (those no training dataset has are left out)."""
    from distilrel.config import FieldConfig
    from distilrel.evaluate.scorers import load_scorer

    ab = ctx.config.ablation
    assert ab is not None
    if ab.zero_shot_model is not None:
        return ctx.scorer(ab.zero_shot_model)
    from distilrel.teacher.train import train_teacher

    cfg = ctx.config.teacher
    train = ctx.datasets([s.name for s in cfg.data.datasets])
    own = {f.name: f for f in cfg.fields}
    chosen = []
    for f in fields:
        have = [f in ds.documents.columns for ds in train]
        if any(have):
            base = own.get(f, FieldConfig(name=f))
            chosen.append(dataclasses.replace(base, required=all(have)))
    out = ctx.path("ablation", f"step-{i}", "teacher")
    step_cfg = dataclasses.replace(
        cfg, fields=tuple(chosen), training=dataclasses.replace(cfg.training, output_dir=str(out))
    )
    return load_scorer(train_teacher(step_cfg, datasets=train, console=ctx.console), progress=ctx.progress)


def _evaluate_fields(
    ctx: RunContext, ds: Dataset, scorer: Any, fields: tuple[str, ...], folder: str
) -> dict[str, Any]:
    from distilrel.evaluate.report import write_outputs
    from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for

    ev = ctx.config.evaluate
    # A zero-shot model reads exactly these fields; a trained teacher reads its own recipe (= these fields).
    builder = text_builder_for(scorer, ds, list(fields) if not hasattr(scorer, "text_fields") else None)
    settings = EvalSettings(split=ev.split, max_queries=ev.max_queries, metrics=("ndcg@10", "p@8"))
    result = evaluate(ds, scorer, builder, settings)
    write_outputs(result, ctx.path(folder), {"fields": list(fields)})
    ctx.log(f"  {ds.name:12s} ndcg@10={result.summary['ndcg@10']:.4f}")
    return {"metrics": result.summary, "queries": len(result.per_query)}
