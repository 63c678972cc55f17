"""The promotion gate: a trained model earns its place against the baselines on validation.

Each trained model (teacher, student) is compared with the best zero-shot baseline (highest mean NDCG@10
on the gate split; ``random`` never counts) by a paired bootstrap test over the same queries. A model
significantly worse than that baseline (mean difference < 0 and p < alpha) is HELD: the report never calls
it best and names the baseline to serve instead. Of the models that pass, the one the service uses (the
student) is promoted when it passes; the decision and its figures are written to ``promotion.json`` and
the report.

:func:`decide` is pure (per-query scores in, decision out); the evaluate stage feeds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from distilrel.metrics.significance import paired_test


def decide(
    per_query: Mapping[str, pd.Series],
    baselines: Sequence[str],
    trained: Sequence[str],
    *,
    alpha: float = 0.05,
    serve: str = "student",
) -> dict[str, Any]:
    """``per_query``: model name -> per-query NDCG@10 (index: query id) on the gate split.

    Returns ``{"best_baseline", "models": {name: {mean, diff, p, ci, passed}}, "promoted", "why"}``."""
    zero_shot = [b for b in baselines if b != "random" and b in per_query]
    if not zero_shot:
        raise ValueError("the promotion gate needs at least one zero-shot baseline (random does not count)")
    missing = [m for m in trained if m not in per_query]
    if missing:
        raise ValueError(f"the promotion gate has no scores for {missing}")
    best = max(zero_shot, key=lambda b: float(per_query[b].mean()))
    ref = per_query[best]
    models: dict[str, dict[str, Any]] = {}
    for m in trained:
        scores = per_query[m]
        common = ref.index.intersection(scores.index)
        if len(common) != len(ref) or len(common) != len(scores):
            raise ValueError(f"the promotion gate compares the same queries: {m} and {best} differ")
        t = paired_test(ref.loc[common].to_numpy(), scores.loc[common].to_numpy(), "bootstrap")
        worse = t.diff < 0 and t.p_value < alpha
        models[m] = {
            "mean": t.mean_b,
            "diff": t.diff,
            "p": t.p_value,
            "ci": [t.ci_low, t.ci_high],
            "passed": not worse,
        }
    base_mean = float(ref.mean())
    out: dict[str, Any] = {
        "best_baseline": best,
        "best_baseline_mean": base_mean,
        "queries": len(ref),
        "alpha": alpha,
        "models": models,
    }
    if serve in models and models[serve]["passed"]:
        s = models[serve]
        out["promoted"] = serve
        out["why"] = (
            f"{serve} is not significantly worse than {best} on validation "
            f"({s['mean']:.4f} vs {base_mean:.4f}, diff {s['diff']:+.4f}, p = {s['p']:.3f})"
        )
    else:
        s = models.get(serve)
        detail = f" ({s['mean']:.4f} vs {base_mean:.4f}, p = {s['p']:.3f})" if s else ""
        out["promoted"] = best
        out["why"] = f"{serve} is significantly worse than {best} on validation{detail}: serve {best} instead"
    return out


def held_reason(student_dir: str | Path) -> str | None:
    """Why the promotion gate of the pipeline run that trained ``student_dir`` held this student (None when
    it was promoted, or when the folder is not a pipeline run's student). A run's student lives in
    ``<run>/student/model``; the gate's decision in ``<run>/eval/promotion.json``."""
    import json

    folder = Path(student_dir).resolve()
    gate = folder.parent.parent / "eval" / "promotion.json"
    if folder.name != "model" or folder.parent.name != "student" or not gate.is_file():
        return None
    decisions = json.loads(gate.read_text(encoding="utf-8"))
    held = {ds: d for ds, d in decisions.items() if d.get("promoted") != "student"}
    if not held:
        return None
    return "; ".join(f"{ds}: {d['why']}" for ds, d in held.items()) + f" ({gate})"
