"""Step-0 selection, shared by the teacher's and the student's training: training must earn its place.

Both models start from something that already ranks (the teacher's zero-shot prior, the student's cosine
prior over pretrained towers). :class:`StepZero` evaluates the model before the first step and keeps a
copy of its trainable weights; after training, when the best checkpoint is not better on validation than
step 0, the step-0 weights are put back, and the returned record says which one was kept and both values,
so a run that only made things worse is reported as such, never hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class StepZero:
    metric: float | None = None
    weights: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measure(
        cls, model: nn.Module, evaluator: Any, *, enabled: bool = True, log: Callable[[str], Any] = print
    ) -> StepZero:
        """Evaluate ``model`` as it is now (None metric when ``evaluator`` is None or not ``enabled``)."""
        if evaluator is None or not enabled:
            return cls()
        value = float(evaluator(model)[evaluator.primary_metric])
        log(f"step 0: {evaluator.primary_metric} {value:.4f}")
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        return cls(metric=value, weights=weights)

    def select(
        self, model: nn.Module, best: float | None, log: Callable[[str], Any] = print
    ) -> dict[str, Any]:
        """After training (``model`` holds the best checkpoint, whose metric is ``best``): keep it if it is
        better than step 0, else restore step 0. Returns what was kept and both metrics."""
        out: dict[str, Any] = {"step0_metric": self.metric, "best_checkpoint_metric": best}
        if self.metric is None or best is None:
            return out
        if best > self.metric:
            return out | {"kept": "best checkpoint", "kept_metric": best}
        params = dict(model.named_parameters())
        for name, value in self.weights.items():
            params[name].data.copy_(value)
        log(
            f"no checkpoint beat step 0 on validation ({best:.4f} <= {self.metric:.4f}): "
            "keeping the model as it was before training"
        )
        return out | {"kept": "step 0", "kept_metric": self.metric}
