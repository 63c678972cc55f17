"""The teacher: a K-level relevance cross-encoder over any Hugging Face backbone.

    config.py    TOML config (frozen dataclasses), checks, the multi-dataset level policy
    model.py     TeacherModel (backbone + pooling + MLP head), build / save / load
    collator.py  TeacherCollator / ListCollator: the one place pairs (and query lists) are tokenized
    prior.py     ZeroShotPrior: a frozen bi-encoder's cosine + query overlap added to the level logits
    losses.py    LevelCrossEntropyLoss, ListNetLoss, LambdaLoss, RankNetLoss, CombinedLoss
    trainer.py   TeacherTrainer (transformers Trainer), TeacherEvaluator (NDCG@10), Pair/ListDataset
    predict.py   length-bucketed predict_levels
    scorer.py    TeacherScorer for ``distilrel evaluate``
    train.py     train_teacher(config) -> teacher folder (step 0 kept when training does not beat it)
    crossval.py  cross_validate_teacher: one teacher per query fold, the pooled out-of-fold run
    search.py    search_teacher: Optuna over the recipe on the validation split, within a budget

Names are imported lazily so that ``import distilrel.teacher.config`` (CLI start-up) loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TeacherConfig": "config",
    "load_config": "config",
    "remap_levels": "config",
    "TeacherModel": "model",
    "build_teacher": "model",
    "save_teacher": "model",
    "load_teacher": "model",
    "LoadedTeacher": "model",
    "TeacherCollator": "collator",
    "ListCollator": "collator",
    "ZeroShotPrior": "prior",
    "LevelCrossEntropyLoss": "losses",
    "ListNetLoss": "losses",
    "LambdaLoss": "losses",
    "RankNetLoss": "losses",
    "CombinedLoss": "losses",
    "cross_validate_teacher": "crossval",
    "search_teacher": "search",
    "TeacherTrainer": "trainer",
    "TeacherTrainingArguments": "trainer",
    "TeacherEvaluator": "trainer",
    "predict_levels": "predict",
    "TeacherScorer": "scorer",
    "load_teacher_scorer": "scorer",
    "train_teacher": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'distilrel.teacher' has no attribute {name!r}")
    return getattr(importlib.import_module(f"distilrel.teacher.{module}"), name)
