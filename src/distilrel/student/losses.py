"""Distillation losses as small modules over one shared forward pass.

Every loss takes the model outputs (``logits`` (n, K), ``scores`` (n,), ...) and the collated batch
(``teacher_probs`` (n, K), ``has_teacher`` (n,), ``levels`` (n,), ``query_index`` (n,)), so the towers run
once per batch however many losses are on. Each loss checks in ``__init__`` that the model can feed it and
raises a ValueError naming itself when it cannot. Pairs without the target a loss needs (no teacher
distribution, no human level) are masked out; a batch with none gives a zero that still back-propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from distilrel.student.config import LossConfig
    from distilrel.student.model import StudentModel

Batch = Mapping[str, Tensor]
Outputs = Mapping[str, Tensor]


def _check_student(loss_name: str, model: object) -> StudentModel:
    from distilrel.student.model import StudentModel

    if not isinstance(model, StudentModel):
        raise ValueError(f"{loss_name} needs a StudentModel, got {type(model).__name__}")
    return model


def _zero(like: Tensor) -> Tensor:
    # Keeps the graph connected, so backward() works on a batch where this loss has nothing to learn from.
    return like.sum() * 0.0


class DistillKLLoss(nn.Module):
    """KL(teacher || student) over the K levels, for pairs that carry a teacher distribution.

    With temperature T both distributions are softened (teacher: ``p^(1/T)`` renormalised, student:
    ``softmax(z / T)``) and the loss is scaled by T², which keeps gradient sizes comparable across T
    (Hinton et al., 2015).
    """

    def __init__(self, model: StudentModel, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = _check_student("DistillKLLoss", model)
        if model.head.k != model.levels.k:
            raise ValueError(
                f"DistillKLLoss: the head predicts {model.head.k} levels, the mapping has {model.levels.k}"
            )
        if not temperature > 0:
            raise ValueError(f"DistillKLLoss: temperature must be > 0, got {temperature}")
        self.k = model.levels.k
        self.temperature = float(temperature)

    def forward(self, outputs: Outputs, batch: Batch) -> Tensor:
        logits = outputs["logits"].float()  # (n, K)
        if logits.shape[-1] != self.k or batch["teacher_probs"].shape[-1] != self.k:
            raise ValueError(
                f"DistillKLLoss: expected {self.k} levels, got student logits {tuple(logits.shape)} "
                f"and teacher probs {tuple(batch['teacher_probs'].shape)}"
            )
        mask = batch["has_teacher"].bool()  # (n,)
        if not mask.any():
            return _zero(logits)
        t = self.temperature
        student_log = F.log_softmax(logits[mask] / t, dim=-1)  # (m, K)
        teacher = batch["teacher_probs"][mask].float()  # (m, K)
        if t != 1.0:
            teacher = F.softmax(teacher.clamp_min(1e-12).log() / t, dim=-1)
        # kl_div(log q, p) = sum p (log p - log q), with 0 log 0 = 0 for levels the teacher rules out.
        kl = F.kl_div(student_log, teacher, reduction="none").sum(dim=-1)  # (m,)
        return kl.mean() * (t * t)


class LevelCrossEntropyLoss(nn.Module):
    """Cross-entropy of the head's K-level logits against human levels; level -1 means "no human label"."""

    def __init__(self, model: StudentModel, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = _check_student("LevelCrossEntropyLoss", model)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"LevelCrossEntropyLoss: label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.k = model.levels.k
        self.label_smoothing = float(label_smoothing)

    def forward(self, outputs: Outputs, batch: Batch) -> Tensor:
        logits = outputs["logits"].float()  # (n, K)
        levels = batch["levels"].long()  # (n,)
        mask = levels >= 0
        if not mask.any():
            return _zero(logits)
        if int(levels[mask].max()) >= self.k:
            raise ValueError(
                f"LevelCrossEntropyLoss: human level {int(levels[mask].max())} is out of range "
                f"for {self.k} levels"
            )
        return F.cross_entropy(logits[mask], levels[mask], label_smoothing=self.label_smoothing)


class MarginMSELoss(nn.Module):
    """MSE between the student's and the teacher's score margins over document pairs of the same query.

    For every two pairs (i, j) of a batch that share a query and both carry a teacher distribution:
    ``((s_i - s_j) - (t_i - t_j))²`` where s is the model's score (``score_mode``) and t the teacher's
    expected gain as a fraction of the top gain — the same scale the student's expected-gain score has.
    It teaches the ranking inside a query rather than the absolute level (Hofstätter et al., 2020); the
    trainer's query-grouped sampler puts several documents of one query into each batch.
    """

    def __init__(self, model: StudentModel) -> None:
        super().__init__()
        self.model = _check_student("MarginMSELoss", model)
        if model.levels.k < 2 or float(max(model.levels.gains)) <= 0.0:
            raise ValueError(
                f"MarginMSELoss: the level mapping's gains {list(model.levels.gains)} give every level "
                "the same score, so there is no margin to learn"
            )

    def forward(self, outputs: Outputs, batch: Batch) -> Tensor:
        scores = outputs["scores"].float()  # (n,)
        group = batch["query_index"].long()  # (n,)
        has_teacher = batch["has_teacher"].bool()  # (n,)
        teacher = self.model.expected_gain(batch["teacher_probs"])  # (n,)
        same_query = group[:, None] == group[None, :]  # (n, n)
        both = has_teacher[:, None] & has_teacher[None, :]
        upper = torch.ones_like(same_query).triu(diagonal=1)  # each unordered pair once
        pairs = same_query & both & upper
        if not pairs.any():
            return _zero(scores)
        student_margin = scores[:, None] - scores[None, :]  # (n, n)
        teacher_margin = teacher[:, None] - teacher[None, :]
        return F.mse_loss(student_margin[pairs], teacher_margin[pairs])


class CombinedLoss(nn.Module):
    """Weighted sum of the configured losses; returns the total and each part (for logging)."""

    def __init__(self, parts: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        active = {name: (w, m) for name, (w, m) in parts.items() if w > 0}
        if not active:
            raise ValueError(f"CombinedLoss: every loss weight is 0 ({sorted(parts)}); turn at least one on")
        self.weights = {name: float(w) for name, (w, _) in active.items()}
        self.parts = nn.ModuleDict({name: m for name, (_, m) in active.items()})

    def forward(self, outputs: Outputs, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        values = {name: module(outputs, batch) for name, module in self.parts.items()}
        total = torch.stack([self.weights[name] * v for name, v in values.items()]).sum()
        return total, {name: float(v.detach()) for name, v in values.items()}


def build_loss(model: StudentModel, config: LossConfig) -> CombinedLoss:
    """The losses a config turns on (weight > 0), each built (and checked) against ``model``."""
    parts: dict[str, tuple[float, nn.Module]] = {}
    if config.kl > 0:
        parts["kl"] = (config.kl, DistillKLLoss(model, temperature=config.temperature))
    if config.ce > 0:
        parts["ce"] = (config.ce, LevelCrossEntropyLoss(model, label_smoothing=config.label_smoothing))
    if config.margin_mse > 0:
        parts["margin_mse"] = (config.margin_mse, MarginMSELoss(model))
    return CombinedLoss(parts)
