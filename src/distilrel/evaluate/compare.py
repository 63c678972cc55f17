"""Put evaluation runs side by side, with a paired significance test over queries against the first run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from distilrel.evaluate.report import markdown_table
from distilrel.io import atomic_path, write_json, write_text
from distilrel.metrics import paired_test


@dataclass(frozen=True)
class RunDir:
    path: Path
    info: dict[str, object]
    per_query: pd.DataFrame  # index query_id

    def label(self, depth: int = 1) -> str:
        """The scorer and the last ``depth`` parts of the folder."""
        return f"{self.info['scorer']} ({'/'.join(self.path.parts[-depth:])})"

    @classmethod
    def load(cls, path: str | Path) -> RunDir:
        p = Path(path)
        for name in ("metrics.json", "per_query.parquet"):
            if not (p / name).is_file():
                raise FileNotFoundError(
                    f"{p} is not an evaluation run: {name} is missing (run `distilrel evaluate`)"
                )
        info = json.loads((p / "metrics.json").read_text())
        return cls(p, info, pd.read_parquet(p / "per_query.parquet").set_index("query_id"))


def run_labels(runs: Sequence[RunDir]) -> list[str]:
    """One label per run, each naming as much of its folder as tells the runs apart: runs of the same
    model in two pipeline runs (``a/eval/crowdflower/teacher``, ``b/transfer/crowdflower/teacher``) must
    not share a row name."""
    deepest = max(len(r.path.parts) for r in runs)  # a label this deep is the whole path as given
    for depth in range(1, deepest + 1):
        labels = [r.label(depth) for r in runs]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError(f"compare: the same run is given twice: {[str(r.path) for r in runs]}")


def compare_runs(
    paths: Sequence[str | Path], metrics: Sequence[str] = ("ndcg@10", "p@8"), method: str = "bootstrap"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table of mean metrics per run, paired tests of each run vs the first on common queries)."""
    runs = [RunDir.load(p) for p in paths]
    if len(runs) < 2:
        raise ValueError("compare needs at least two runs")
    keys = {(r.info["dataset"], r.info["split"]) for r in runs}
    if len(keys) > 1:
        raise ValueError(f"runs are on different datasets/splits and cannot be paired: {sorted(keys)}")
    for r in runs:
        missing = [m for m in metrics if m not in r.per_query.columns]
        if missing:
            raise ValueError(f"run {r.path} has no per-query {missing}; it has {list(r.per_query.columns)}")
    common = runs[0].per_query.index
    for r in runs[1:]:
        common = common.intersection(r.per_query.index)
    if len(common) == 0:
        raise ValueError("the runs share no query ids")
    labels = run_labels(runs)
    table = pd.DataFrame(
        {m: [r.per_query.loc[common, m].mean() for r in runs] for m in metrics},
        index=pd.Index(labels, name="run"),
    )
    table["queries"] = len(common)
    tests = []
    base = runs[0]
    for r, label in zip(runs[1:], labels[1:], strict=True):
        for m in metrics:
            # paired_test reports b − a: the run minus the reference, positive when the run is better.
            t = paired_test(
                base.per_query.loc[common, m].to_numpy(), r.per_query.loc[common, m].to_numpy(), method=method
            )
            tests.append(
                {
                    "run": label,
                    "vs": labels[0],
                    "metric": m,
                    "diff": t.diff,
                    "rel_diff": t.rel_diff,
                    "ci_low": t.ci_low,
                    "ci_high": t.ci_high,
                    "p_value": t.p_value,
                    "method": t.method,
                }
            )
    return table, pd.DataFrame(tests).set_index("run")


def write_comparison(table: pd.DataFrame, tests: pd.DataFrame, out: Path, title: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    metric_cols = [c for c in table.columns if c != "queries"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(table)), 4))
    table[metric_cols].plot.bar(ax=ax, rot=15)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.set_xlabel("")
    fig.tight_layout()
    with atomic_path(out / "compare.png", suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    md = (
        f"# {title}\n\n{markdown_table(table)}\n## Paired tests vs the first run (over queries)\n\n"
        f"{markdown_table(tests)}\n![compare](compare.png)\n"
    )
    return {
        "report": write_text(out / "compare.md", md),
        "json": write_json(
            out / "compare.json",
            {
                "table": table.reset_index().to_dict("records"),
                "tests": tests.reset_index().to_dict("records"),
            },
        ),
        "plot": out / "compare.png",
    }
