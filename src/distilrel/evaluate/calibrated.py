"""The calibrated zero-shot baseline: any scorer's score mapped onto the dataset's levels.

A zero-shot bi-encoder ranks but predicts no relevance level. To compare level accuracy (and the rating
RMSE) fairly with a trained model, :func:`calibrate_scorer` fits an ordered level model of its score
(:func:`distilrel.calibration.fit_ordered_logit`) on the judged pairs of a split that is not evaluated
(``train``); the result keeps the base scorer's ranking exactly and adds ``predict_levels``.
``distilrel evaluate --calibrate-on train`` wraps the scorer this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from distilrel.calibration import OrderedLogit, fit_ordered_logit
from distilrel.data.levels import LevelMapping
from distilrel.data.schema import Dataset
from distilrel.evaluate.scorer import Scorer


class CalibratedScorer(Scorer):
    """``base``'s scores for ranking; level probabilities from an ordered logit of those scores."""

    def __init__(self, base: Scorer, levels: LevelMapping, fit: OrderedLogit, fitted_on: str) -> None:
        if len(fit.bias) != levels.k:
            raise ValueError(f"CalibratedScorer: the fit has {len(fit.bias)} levels, {levels.k} expected")
        self.base = base
        self.levels = levels
        self.fit = fit
        self.fitted_on = fitted_on
        self.name = f"{base.name} (calibrated on {fitted_on})"

    def fit_corpus(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.base.fit_corpus(doc_ids, texts)

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return np.asarray(self.base.score(queries, docs), dtype=np.float64)

    @property
    def predicts_levels(self) -> bool:
        return True

    def predict_levels(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return self.fit.probs(self.score(queries, docs))

    def __getattr__(self, name: str) -> Any:  # tokenizer, text_builder, text_fields of the base
        if name.startswith("_") or name in ("base", "levels", "fit", "fitted_on", "name"):
            raise AttributeError(name)
        return getattr(self.base, name)


def calibrate_scorer(
    scorer: Scorer, dataset: Dataset, builder: Any, split: str = "train"
) -> CalibratedScorer:
    """Fit ``scorer``'s score -> levels on the judged pairs of ``split`` (texts from ``builder``)."""
    judged = dataset.split(split).judgments
    docs = dataset.documents[dataset.documents["doc_id"].isin(set(judged["doc_id"]))]
    texts = dict(zip(docs["doc_id"].astype(str), builder.build_many(docs), strict=True))
    scorer.fit_corpus(list(texts), list(texts.values()))  # as evaluate does for the split it ranks
    scores = scorer.score(judged["query"].astype(str).tolist(), [texts[str(d)] for d in judged["doc_id"]])
    fit = fit_ordered_logit(scores, judged["level"].to_numpy(), dataset.levels.gains)
    return CalibratedScorer(scorer, dataset.levels, fit, f"{dataset.name}/{split}")


def calibrate_out_of_fold(
    scorer: Scorer, dataset: Dataset, builder: Any, folds_dir: Any, split: str = "train"
) -> Scorer:
    """The calibrated baseline under the folds of a ``teacher train --folds`` run (its ``folds.json``):
    one calibration per fold, fitted on that fold's ``split`` queries, each query scored by the fit that
    never saw it, so its level accuracy compares with the pooled out-of-fold teacher on the same terms."""
    import json
    from pathlib import Path

    from distilrel.evaluate.crossval import OutOfFoldScorer, fold_view

    f = Path(folds_dir) / "folds.json"
    if not f.is_file():
        raise FileNotFoundError(f"{folds_dir} is not a cross-validation folder: {f.name} is missing")
    plan = json.loads(f.read_text(encoding="utf-8"))
    folds = {str(q): int(v) for q, v in plan["folds"].items()}
    models = {
        k: calibrate_scorer(
            scorer, fold_view(dataset, folds, k, plan["val_fraction"], plan["seed"]), builder, split
        )
        for k in range(int(plan["k"]))
    }
    return OutOfFoldScorer(models, folds, name=f"{scorer.name} (calibrated per fold on {split})")
