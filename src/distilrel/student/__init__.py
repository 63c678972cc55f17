"""The distilled bi-encoder student: towers + K-level head, distillation losses, Trainer subclass, scorer.

Names are resolved lazily (``from distilrel.student import load_student`` imports torch only then), because
the CLI imports this package at start-up for the config.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "StudentConfig": "distilrel.student.config",
    "load_config": "distilrel.student.config",
    "StudentModel": "distilrel.student.model",
    "StudentSettings": "distilrel.student.model",
    "RelevanceHead": "distilrel.student.model",
    "load_student": "distilrel.student.model",
    "DistillKLLoss": "distilrel.student.losses",
    "LevelCrossEntropyLoss": "distilrel.student.losses",
    "MarginMSELoss": "distilrel.student.losses",
    "StudentTrainer": "distilrel.student.trainer",
    "RankingEvaluator": "distilrel.student.trainer",
    "StudentScorer": "distilrel.student.scorer",
    "load_student_scorer": "distilrel.student.scorer",
    "train_student": "distilrel.student.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distilrel.student' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
