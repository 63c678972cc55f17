"""Evaluate several scorers on several datasets and gather one results table (Markdown + PNG).

Each (dataset, scorer) evaluation is its own run folder; a folder whose metrics.json was written for the
same settings is reused, so an interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from distilrel.data.schema import Dataset
from distilrel.evaluate.report import markdown_table, write_outputs
from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for
from distilrel.evaluate.scorer import Scorer
from distilrel.io import atomic_path, write_text

TABLE_METRICS = ("ndcg@10", "p@8", "ndcg", "mrr@10", "recall@100")


def _up_to_date(folder: Path, settings_key: dict[str, object]) -> dict[str, object] | None:
    f = folder / "metrics.json"
    if not f.is_file():
        return None
    info = json.loads(f.read_text())
    return info if info.get("settings") == settings_key else None


def run_suite(
    datasets: Sequence[str | Dataset],
    scorers: Sequence[str],
    out: Path,
    split: str = "test",
    max_queries: int | None = None,
    data_dir: Path | None = None,
    log: Callable[[str], None] = print,
    make_scorer: Callable[[str], Scorer] | None = None,
) -> pd.DataFrame:
    """``make_scorer``: name -> scorer (default :func:`load_scorer` with progress bars, once per name);
    the pipeline passes its own, so one model instance and its embedding cache serve the whole run."""
    from distilrel.data import load_dataset
    from distilrel.evaluate.scorers import load_scorer

    rows = []
    make_scorer = make_scorer or functools.cache(lambda name: load_scorer(name, progress=True))
    for item in datasets:
        ds = item if isinstance(item, Dataset) else load_dataset(item, data_dir=data_dir)
        ds_name = ds.name
        for sc_name in scorers:
            folder = out / ds_name / sc_name.replace("/", "_")
            key = {
                "dataset": ds_name,
                "scorer": sc_name,
                "split": split,
                "max_queries": max_queries,
                "fields": list(ds.fields),
            }
            info = _up_to_date(folder, key)
            if info is None:
                scorer = make_scorer(sc_name)
                builder = text_builder_for(scorer, ds)
                res = evaluate(ds, scorer, builder, EvalSettings(split=split, max_queries=max_queries))
                gains = dict(zip(ds.levels.names, ds.levels.gains, strict=True))
                write_outputs(res, folder, {"settings": key, "gains": gains})
                info = json.loads((folder / "metrics.json").read_text())
                log(
                    f"{ds_name:12s} {sc_name:10s} ndcg@10={res.summary.get('ndcg@10', float('nan')):.4f} "
                    f"({res.seconds:.0f} s)"
                )
            else:
                log(f"{ds_name:12s} {sc_name:10s} up to date, skipped")
            rows.append(
                {
                    "dataset": ds_name,
                    "scorer": info["scorer"],
                    "queries": info["queries"],
                    **{m: info["metrics"].get(m) for m in TABLE_METRICS},
                    "seconds": info["seconds"],
                }
            )
    table = pd.DataFrame(rows)
    write_results(table, out)
    return table


def write_results(table: pd.DataFrame, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [m for m in TABLE_METRICS if table[m].notna().any()]
    md = ["# Results\n"]
    for ds_name, g in table.groupby("dataset", sort=False):
        md += [f"\n## {ds_name}\n", markdown_table(g.set_index("scorer")[["queries", *cols, "seconds"]])]
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.8), squeeze=False)
    for ax, ds_name in zip(axes[0], datasets, strict=True):
        g = table[table["dataset"] == ds_name].set_index("scorer")
        g[[c for c in ("ndcg@10", "p@8") if c in cols]].plot.bar(ax=ax, rot=20)
        ax.set_title(ds_name)
        ax.set_ylim(0, 1)
        ax.set_xlabel("")
    fig.tight_layout()
    with atomic_path(out / "results.png", suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    md.append("\n![results](results.png)\n")
    return write_text(out / "results.md", "\n".join(md))
