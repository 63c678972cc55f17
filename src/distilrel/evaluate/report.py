"""Evaluation outputs: run.trec, qrels.trec, per_query.parquet, metrics.json, report.md and a PNG chart.

Every file is written to a temp file and renamed, so an interrupted evaluation leaves the old outputs intact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from distilrel.evaluate.runner import EvalResult
from distilrel.io import atomic_path, write_json, write_parquet, write_text


def format_trec_run(run: Mapping[str, Mapping[str, float]], tag: str) -> str:
    """Standard TREC run lines ``qid Q0 docid rank score tag``, best first (ties: doc id ascending)."""
    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        lines += [f"{qid} Q0 {did} {r} {s!r} {tag}" for r, (did, s) in enumerate(ranked, start=1)]
    return "\n".join(lines) + "\n"


def format_trec_qrels(qrels: Mapping[str, Mapping[str, int]]) -> str:
    lines = [f"{qid} 0 {did} {g}" for qid in sorted(qrels) for did, g in sorted(qrels[qid].items())]
    return "\n".join(lines) + "\n"


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = True) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency); integer columns stay integers."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else format(v, floatfmt)
        return str(v)

    cols = ([str(df.index.name or "")] if index else []) + [str(c) for c in df.columns]
    columns = [df[c].tolist() for c in df.columns]  # per column, so int columns are not upcast row-wise
    rows = [
        ([str(idx)] if index else []) + [cell(col[i]) for col in columns] for i, idx in enumerate(df.index)
    ]
    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows)


def _bar_chart(path: Path, tables: Mapping[str, pd.DataFrame], metrics: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        table[list(metrics)].plot.bar(ax=ax, rot=0)
        ax.set_title(name)
        ax.set_ylim(0, 1)
        ax.set_xlabel("")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_outputs(result: EvalResult, out: Path, info: Mapping[str, object]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    tag = result.scorer.replace(" ", "_")
    paths = {
        "run": write_text(out / "run.trec", format_trec_run(result.run, tag)),
        "qrels": write_text(out / "qrels.trec", format_trec_qrels(result.qrels)),
        "per_query": write_parquet(out / "per_query.parquet", result.per_query.reset_index()),
    }
    segments = result.by_segment()
    paths["metrics"] = write_json(
        out / "metrics.json",
        {
            "dataset": result.dataset,
            "scorer": result.scorer,
            "split": result.split,
            "task": result.task,
            "queries": len(result.per_query),
            "pairs_scored": result.pairs_scored,
            "seconds": round(result.seconds, 2),
            "metrics": result.summary,
            "classifier": result.classifier,
            "segments": {k: v.reset_index().to_dict(orient="records") for k, v in segments.items()},
            **info,
        },
    )
    overall = pd.DataFrame([result.summary], index=pd.Index(["all"]))
    overall["queries"] = len(result.per_query)
    md = [
        f"# {result.scorer} on {result.dataset} ({result.split})\n",
        f"{len(result.per_query)} queries, {result.pairs_scored} pairs scored in {result.seconds:.1f} s. "
        f"Task: {result.task}. Gains: {info.get('gains', 'see metrics.json')}.\n",
        "## Overall\n",
        markdown_table(overall),
    ]
    if result.classifier:
        md += [
            "\n## Pointwise (all judged pairs: level prediction, pair AUC, AUROC per level cut, RMSE)\n",
            markdown_table(pd.DataFrame([result.classifier], index=["all"])),
        ]
    for name, table in segments.items():
        md += [f"\n## By {name}\n", markdown_table(table)]
    md.append("\n![metrics](metrics.png)\n")
    paths["report"] = write_text(out / "report.md", "\n".join(md))
    charts = {"overall": overall, **segments}
    _bar_chart(
        out / "metrics.png", charts, result.metrics[:4], f"{result.scorer} — {result.dataset} {result.split}"
    )
    paths["plot"] = out / "metrics.png"
    return paths
