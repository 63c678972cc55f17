"""The teacher as a :class:`~distilrel.evaluate.scorer.Scorer`: score = expected gain over its levels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distilrel.data.levels import LevelMapping
from distilrel.evaluate.scorer import Scorer
from distilrel.teacher.model import LoadedTeacher, load_teacher
from distilrel.teacher.predict import expected_gain, predict_levels


class TeacherScorer(Scorer):
    """Wraps a loaded teacher. ``text_fields`` is the document text recipe it was trained with: build
    document texts with :meth:`text_builder` so they match training."""

    def __init__(
        self, teacher: LoadedTeacher, batch_size: int = 64, progress: bool = False, name: str = "teacher"
    ):
        self.teacher = teacher
        self.batch_size = batch_size
        self.progress = progress
        self.name = name

    @property
    def tokenizer(self) -> Any:
        return self.teacher.tokenizer

    @property
    def text_fields(self) -> tuple[dict[str, Any], ...]:
        return self.teacher.text_fields

    @property
    def levels(self) -> LevelMapping:
        return self.teacher.levels

    @property
    def gains(self) -> tuple[float, ...]:
        return self.teacher.levels.gains

    def text_builder(self) -> Any:
        """The TextBuilder of training (same fields, labels and token budgets, same tokenizer)."""
        from distilrel.text.builder import FieldSpec, TextBuilder

        return TextBuilder([FieldSpec(**f) for f in self.text_fields], tokenizer=self.tokenizer)

    @property
    def predicts_levels(self) -> bool:
        return True

    def predict_levels(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return predict_levels(
            self.teacher.model,
            self.teacher.tokenizer,
            queries,
            docs,
            self.batch_size,
            self.teacher.max_length,
            progress=self.progress,
        )

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return expected_gain(self.predict_levels(queries, docs), self.gains)


def load_teacher_scorer(
    path: str | Path, batch_size: int = 64, device: str | None = None, progress: bool = False
) -> TeacherScorer:
    """A scorer over the teacher folder at ``path`` (``distilrel.json`` with kind ``teacher``)."""
    teacher = load_teacher(path, device=device)
    return TeacherScorer(
        teacher, batch_size=batch_size, progress=progress, name=f"teacher:{_run_name(Path(path))}"
    )


def _run_name(path: Path) -> str:
    """``runs/teacher-minilm/model`` → ``teacher-minilm``: the run folder names a model better."""
    path = path.resolve()
    return path.parent.name if path.name == "model" else path.name
