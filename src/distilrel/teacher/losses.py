"""Teacher losses. Each is a small ``nn.Module`` that checks its model when built (and raises a
ValueError naming itself) and is called with already tokenized features — tokenisation happens once,
in :class:`distilrel.teacher.collator.TeacherCollator`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distilrel.teacher.model import TeacherModel


class LevelCrossEntropyLoss(nn.Module):
    """Cross-entropy over the K relevance levels.

    labels: (batch,) level indices (0 = most relevant), or (batch, K) probabilities (soft labels, e.g.
    a rater distribution or another teacher's predictions). ``label_smoothing`` as in ``F.cross_entropy``.
    """

    def __init__(self, model: TeacherModel, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not isinstance(model, TeacherModel):
            raise ValueError(
                "LevelCrossEntropyLoss needs a TeacherModel (backbone + K-level head), "
                f"got {type(model).__name__}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"LevelCrossEntropyLoss: label_smoothing must be in [0, 1), got {label_smoothing}"
            )
        self.model = model
        self.label_smoothing = label_smoothing

    def forward(self, features: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        logits = self.model(**features)  # (batch, K)
        k = logits.size(-1)
        if labels.dim() == 1:
            # F.cross_entropy's own out-of-range error is opaque (and a device assert on CUDA).
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
                raise ValueError(
                    f"LevelCrossEntropyLoss: level labels must be in 0..{k - 1}, "
                    f"got {labels.unique().tolist()}"
                )
        elif labels.shape != logits.shape:
            raise ValueError(
                f"LevelCrossEntropyLoss: soft labels must be (batch, {k}), got {tuple(labels.shape)}"
            )
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def get_config_dict(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}
