"""The combined report of a run: ``report.md`` plus ``models.png`` and ``ablation.png`` in the run folder.

Everything is read from the stage stamps (``stages/<stage>.json`` hold each stage's summary), so the
report can be rebuilt without loading a model. Sections: stages, data, models per dataset (baselines,
teacher, student: NDCG@10, P@8, level accuracy), retention, ablation, transfer, costs.

Retention = (student - best zero-shot) / (teacher - best zero-shot) on NDCG@10, where the zero-shot
models are the baselines other than ``random`` (BM25 and pretrained bi-encoders): the share of the
teacher's gain over what needs no training that the student kept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from distilrel.evaluate.report import markdown_table
from distilrel.io import atomic_path, write_text
from distilrel.pipeline.config import SECTIONS

if TYPE_CHECKING:
    from distilrel.pipeline.context import RunContext

NAN = float("nan")


def _stamp(ctx: RunContext, stage: str) -> dict[str, Any] | None:
    f = ctx.path("stages", f"{stage}.json")
    return json.loads(f.read_text()) if f.is_file() else None


def _summary(ctx: RunContext, stage: str) -> dict[str, Any]:
    s = _stamp(ctx, stage)
    return s["summary"] if s else {}


def model_table(ctx: RunContext) -> pd.DataFrame:
    """One row per (dataset, model): baselines, teacher, student."""
    rows = []
    for r in _summary(ctx, "baselines").get("results", []):
        rows.append(
            {
                "dataset": r["dataset"],
                "model": r["scorer"],
                "kind": "baseline",
                "ndcg@10": r["ndcg@10"],
                "p@8": r["p@8"],
                "level_accuracy": NAN,
                "queries": r["queries"],
            }
        )
    for ds, models in _summary(ctx, "evaluate").get("results", {}).items():
        for m, res in models.items():
            rows.append(
                {
                    "dataset": ds,
                    "model": m,
                    "kind": m,
                    "ndcg@10": res["metrics"]["ndcg@10"],
                    "p@8": res["metrics"]["p@8"],
                    "level_accuracy": res["classifier"].get("level_accuracy", NAN),
                    "queries": res["queries"],
                }
            )
    return pd.DataFrame(
        rows, columns=["dataset", "model", "kind", "ndcg@10", "p@8", "level_accuracy", "queries"]
    )


def retention(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: best zero-shot, teacher, student NDCG@10 and the student's retention."""
    rows = []
    for ds, g in table.groupby("dataset", sort=False):
        zs = g[(g["kind"] == "baseline") & (g["model"] != "random")]
        by = g.set_index("kind")["ndcg@10"]
        if zs.empty or "teacher" not in by or "student" not in by:
            continue
        best = zs.loc[zs["ndcg@10"].idxmax()]
        gap = by["teacher"] - best["ndcg@10"]
        value = f"{(by['student'] - best['ndcg@10']) / gap:.1%}" if gap > 0 else "n/a"
        rows.append(
            {
                "dataset": ds,
                "best zero-shot": f"{best['model']} ({best['ndcg@10']:.4f})",
                "teacher": by["teacher"],
                "student": by["student"],
                "retention": value,
            }
        )
    return pd.DataFrame(rows).set_index("dataset") if rows else pd.DataFrame()


def _bar_png(path: Path, data: pd.DataFrame, title: str, ylabel: str) -> None:
    """Grouped bars: one group per index value, one bar per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(data) * max(1, len(data.columns)) ** 0.5 + 2), 4))
    data.plot.bar(ax=ax, rot=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _count(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _section_stages(ctx: RunContext) -> list[str]:
    rows = []
    for name in (s for s in SECTIONS if s not in ("run", "report")):  # stage order
        s = _stamp(ctx, name)
        if s is not None:
            rows.append(
                {
                    "stage": name,
                    "seconds": s["seconds"],
                    "cpu seconds": s.get("cpu_seconds", float("nan")),
                    "resumed": "yes" if s.get("resumed") else "",
                }
            )
    df = pd.DataFrame(rows).set_index("stage") if rows else pd.DataFrame()
    return [
        "## Stages\n",
        "Wall time and CPU time (all threads) of the run that finished each stage; a skipped stage keeps "
        "its time.\n",
        markdown_table(df, ".1f") if rows else "(none)\n",
    ]


def _section_data(ctx: RunContext) -> list[str]:
    out = ["## Data\n"]
    for name, d in _summary(ctx, "data").items():
        q = ", ".join(f"{k} {v}" for k, v in d["queries"].items())
        out.append(
            f"- **{name}**: {d['documents']:,} documents; queries {q}; fields {d['columns']}. "
            f"{d['captions']}."
        )
    return [*out, ""]


def _section_models(ctx: RunContext, table: pd.DataFrame) -> list[str]:
    ev = ctx.config.evaluate
    out = [
        f"## Models ({ev.split} split)\n",
        "NDCG@10 with each dataset's own gains; P@8 counts its relevant levels; level accuracy where the "
        "model predicts levels (on the teacher's level scale).\n",
    ]
    for ds, g in table.groupby("dataset", sort=False):
        shown = g.set_index("model")[["ndcg@10", "p@8", "level_accuracy", "queries"]]
        out += [f"### {ds}\n", markdown_table(shown)]
    if not table.empty:
        pivot = table.pivot_table(index="dataset", columns="model", values="ndcg@10", sort=False)
        _bar_png(ctx.path("models.png"), pivot, "NDCG@10 per dataset", "NDCG@10")
        out.append("![NDCG@10 per model](models.png)\n")
    out += _bought(ctx)
    ret = retention(table)
    out.append("### Retention\n")
    out.append(
        "(student − best zero-shot) / (teacher − best zero-shot) on NDCG@10; zero-shot = the baselines "
        "other than random. n/a where the teacher does not beat the best zero-shot model.\n"
    )
    out.append(
        markdown_table(ret) if not ret.empty else "Needs the baselines, the teacher and the student.\n"
    )
    return out


def _bought(ctx: RunContext) -> list[str]:
    """What each step bought, one line per trained stage, from the paired tests of the evaluate stage and
    the teacher's and student's step-0 selection."""
    tests = _summary(ctx, "evaluate").get("tests") or {}
    teacher, student = _summary(ctx, "teacher"), _summary(ctx, "student")
    out: list[str] = []
    for ds, t in tests.items():
        base = f"{t['best_zero_shot']} ({t['best_zero_shot_ndcg@10']:.4f})"
        lines = [f"### What each step bought ({ds}, vs the best zero-shot model {base})\n"]
        for m, summary in (("teacher", teacher), ("student", student)):
            if m not in t:
                continue
            r = t[m]
            sel = summary.get("selection") or {}
            kept = f"; validation kept {sel['kept']}" if sel.get("kept") else ""
            lines.append(
                f"- **{m}**: NDCG@10 {r['diff']:+.4f} ({r['rel_diff']:+.1%}), 95% CI "
                f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}], p = {r['p']:.3f}{kept}"
            )
        out += [*lines, ""]
    return out


def _section_promotion(ctx: RunContext) -> list[str]:
    gate = _summary(ctx, "evaluate").get("promotion") or {}
    if not gate:
        return []
    out = [
        "## Promotion gate\n",
        "Each trained model against the best zero-shot baseline on the gate split (paired bootstrap over "
        "the same queries, NDCG@10); a model significantly worse than it is held and never called best.\n",
    ]
    for ds, g in gate.items():
        rows = {
            m: {
                "validation ndcg@10": r["mean"],
                f"diff vs {g['best_baseline']}": r["diff"],
                "95% CI": f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]",
                "p": r["p"],
                "passed": "yes" if r["passed"] else "HELD",
            }
            for m, r in g["models"].items()
        }
        out += [
            f"### {ds} ({g['split']}, {g['queries']} queries; "
            f"{g['best_baseline']} {g['best_baseline_mean']:.4f})\n",
            markdown_table(pd.DataFrame(rows).T),
            f"**Promoted: {g['promoted']}**: {g['why']}.\n",
        ]
    return out


def _section_ablation(ctx: RunContext) -> list[str]:
    ab = _summary(ctx, "ablation")
    if not ab:
        return []
    out = [
        "## Ablation (document fields)\n",
        f"Model: `{ab['model']}`. Each step adds fields; NDCG@10 on the {ctx.config.evaluate.split} split.\n",
    ]
    out += [f"- {n}" for n in ab["notes"]]
    rows, marks = [], []
    for step in ab["steps"]:
        row = {"step": step["label"]}
        for ds in ab["datasets"]:
            res = step["results"][ds]
            row[ds] = res["metrics"]["ndcg@10"]
            if res.get("same_as_previous"):
                marks.append(f"{step['label']} on {ds}: the dataset has none of the added fields (same text)")
        rows.append(row)
    df = pd.DataFrame(rows).set_index("step")
    out += ["", markdown_table(df)]
    out += [f"- {m}" for m in marks]
    _bar_png(
        ctx.path("ablation.png"), df.T, f"NDCG@10 per field set ({ab['model'].rsplit('/', 1)[-1]})", "NDCG@10"
    )
    return [*out, "", "![ablation](ablation.png)\n"]


def _section_transfer(ctx: RunContext) -> list[str]:
    tr = _summary(ctx, "transfer")
    if not tr:
        return []
    rows = [
        {
            "evaluated on": ds,
            "model": m,
            "ndcg@10": r["metrics"]["ndcg@10"],
            "p@8": r["metrics"]["p@8"],
            "missing fields": ", ".join(r["missing_fields"]) or "-",
        }
        for ds, models in tr["results"].items()
        for m, r in models.items()
    ]
    df = pd.DataFrame(rows).set_index("evaluated on")
    return [
        "## Transfer\n",
        f"Trained on {', '.join(tr['trained_on'])}; evaluated unchanged on other datasets "
        "(a field a dataset lacks reads as empty).\n",
        markdown_table(df),
    ]


def _section_costs(ctx: RunContext) -> list[str]:
    t, lb, st = _summary(ctx, "teacher"), _summary(ctx, "label"), _summary(ctx, "student")
    em, ix, costs = _summary(ctx, "embed"), _summary(ctx, "index"), _summary(ctx, "evaluate").get("costs", {})
    rows = [
        (
            "teacher training",
            f"{_fmt(t.get('seconds'), '.0f')} s, {_fmt(t.get('train_pairs_per_s'), '.1f')} pairs/s "
            f"({_count(t.get('pairs_trained'))} pairs trained; "
            f"{_count(t.get('train_pairs'))} in the training set)",
        ),
        (
            "labelling",
            f"{lb.get('pairs', '-')} pairs, {_fmt(lb.get('pairs_per_s'), '.1f')} pairs/s"
            + (" (this session only: the run was resumed)" if lb.get("shards_skipped") else ""),
        ),
        ("student training", f"{_fmt(st.get('seconds'), '.0f')} s"),
        (
            "embedding",
            f"{em.get('embedded', '-')} of {em.get('total', '-')} documents in "
            f"{_fmt(em.get('seconds'), '.1f')} s",
        ),
        ("index", f"{ix.get('kind', '-')} over {ix.get('documents', '-')} documents"),
    ]
    if costs:
        depth = costs["rerank_depth"]
        rows += [
            (
                "student query encoding p50",
                f"{costs['student_query_encode']['p50_ms']:.1f} ms "
                f"({costs['queries_timed']} queries, one at a time)",
            ),
            (f"re-rank {depth}: teacher p50", f"{costs['teacher_rerank']['p50_ms']:.1f} ms"),
            (
                f"re-rank {depth}: student p50",
                f"{costs['student_rerank']['p50_ms']:.1f} ms "
                f"(document vectors precomputed; {costs['rerank_speedup_p50']}x faster)",
            ),
        ]
    df = pd.DataFrame(rows, columns=["cost", "value"]).set_index("cost")
    return ["## Costs (this machine)\n", markdown_table(df)]


def build_report(ctx: RunContext) -> str:
    table = model_table(ctx)
    title = ctx.config.report.title or f"distilrel run: {ctx.config.name}"
    parts = [f"# {title}\n", f"Config: `{ctx.config.source}`.\n"]
    for section in (
        _section_stages(ctx),
        _section_data(ctx),
        _section_models(ctx, table),
        _section_promotion(ctx),
        _section_ablation(ctx),
        _section_transfer(ctx),
        _section_costs(ctx),
    ):
        parts += section
    return "\n".join(parts) + "\n"


def run_report(ctx: RunContext) -> dict[str, Any]:
    path = write_text(ctx.path("report.md"), build_report(ctx))
    ctx.log(f"report: {path}")
    return {"report": str(path)}
