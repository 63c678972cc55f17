"""The ordered level model of one score, and the calibrated zero-shot baseline built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distilrel.calibration import fit_ordered_logit
from distilrel.data.levels import DEFAULT_5
from distilrel.evaluate.calibrated import calibrate_scorer
from distilrel.evaluate.runner import EvalSettings, evaluate, text_builder_for
from distilrel.retrieve.bm25 import BM25Scorer
from tiny import toy_dataset


def test_the_fit_keeps_the_order_and_learns_the_levels() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=2000) * 10 + 3  # an arbitrary score scale: the fit standardises it
    levels = np.clip(4 - np.floor((x - 3) / 2 + rng.normal(0, 0.3, size=x.size)), 0, 4).astype(int)
    fit = fit_ordered_logit(x, levels, DEFAULT_5.gains)
    assert fit.alpha > 0 and fit.pairs == 2000
    p = fit.probs(np.sort(x))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    eg = p @ np.asarray(DEFAULT_5.gains)
    assert (np.diff(eg) >= -1e-12).all()  # expected gain never decreases with the score
    accuracy = (fit.probs(x).argmax(axis=1) == levels).mean()
    majority = np.bincount(levels).max() / levels.size
    assert accuracy > majority + 0.3, (accuracy, majority)
    # A constant score learns the level prior and nothing else.
    flat = fit_ordered_logit(np.ones(10), [0, 0, 0, 1, 1, 2, 3, 4, 4, 4], DEFAULT_5.gains)
    assert np.allclose(flat.probs(np.array([0.0, 5.0]))[0], flat.probs(np.array([0.0, 5.0]))[1], atol=1e-3)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="levels must be in"):
        fit_ordered_logit([0.1, 0.2], [0, 5], DEFAULT_5.gains)
    with pytest.raises(ValueError, match="2 scores but 1 levels"):
        fit_ordered_logit([0.1, 0.2], [0], DEFAULT_5.gains)


def test_the_calibrated_baseline_ranks_as_its_base_and_predicts_levels() -> None:
    ds = toy_dataset(n_queries=24, test_split=True)
    bm25 = BM25Scorer()
    builder = text_builder_for(bm25, ds)
    cal = calibrate_scorer(bm25, ds, builder, "train")
    assert cal.predicts_levels and "calibrated on toy/train" in cal.name
    settings = EvalSettings(split="test", metrics=("ndcg@10",))
    plain = evaluate(ds, BM25Scorer(), builder, settings)
    got = evaluate(ds, cal, builder, settings)
    assert got.summary["ndcg@10"] == pytest.approx(plain.summary["ndcg@10"])  # same ranking
    assert 0 <= got.classifier["level_accuracy"] <= 1 and "level_accuracy" not in plain.classifier


def test_calibration_out_of_fold_fits_each_fold_on_its_own_training_queries(tmp_path: Path) -> None:
    import json

    from distilrel.evaluate.calibrated import calibrate_out_of_fold
    from distilrel.evaluate.crossval import fold_view, query_folds

    ds = toy_dataset(n_queries=24)
    folds = query_folds(ds.judgments["query"], 3)
    (tmp_path / "folds.json").write_text(json.dumps({"k": 3, "seed": 0, "val_fraction": 0.2, "folds": folds}))
    bm25 = BM25Scorer()
    builder = text_builder_for(bm25, ds)
    oof = calibrate_out_of_fold(bm25, ds, builder, tmp_path, "train")
    got = evaluate(ds, oof, builder, EvalSettings(split="all", metrics=("ndcg@10",)))
    assert len(got.per_query) == 24 and 0 <= got.classifier["level_accuracy"] <= 1
    for f in range(3):  # fold f's fit saw only fold f's training queries
        fit = oof.model(f).fit
        view = fold_view(ds, folds, f, 0.2, 0)
        assert fit.pairs == len(view.split("train").judgments)
    with pytest.raises(FileNotFoundError, match=r"folds\.json"):
        calibrate_out_of_fold(bm25, ds, builder, tmp_path / "nowhere", "train")
