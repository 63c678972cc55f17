"""An ordered level model of one score: ``logits_k = alpha * (gain_k - mean gain) * x + b_k``.

With ``alpha > 0`` the expected gain increases with ``x``, so the model keeps the score's ranking and only
maps it onto the K levels. Fitted by maximum likelihood (L-BFGS) on judged pairs; used by the teacher's
zero-shot prior (step 0 = a calibrated zero-shot model) and by the calibrated zero-shot baseline
(:class:`distilrel.evaluate.calibrated.CalibratedScorer`), so "calibrated" means the same thing in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class OrderedLogit:
    alpha: float
    bias: tuple[float, ...]
    centered_gains: tuple[float, ...]
    cross_entropy: float
    pairs: int

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(n,) scores -> (n, K) level logits."""
        g = np.asarray(self.centered_gains, dtype=np.float64)
        return (
            np.asarray(x, dtype=np.float64)[:, None] * self.alpha * g[None, :]
            + np.asarray(self.bias)[None, :]
        )

    def probs(self, x: np.ndarray) -> np.ndarray:
        z = self.logits(x)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def fit_ordered_logit(
    x: Sequence[float] | np.ndarray | torch.Tensor,
    levels: Sequence[int] | np.ndarray | torch.Tensor,
    gains: Sequence[float],
    steps: int = 200,
) -> OrderedLogit:
    """Fit alpha and the K biases on scores ``x`` (n,) and level indices ``levels`` (n,) (0 = most relevant).
    alpha is clamped to stay positive: the fit never reverses the score's order."""
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float32).flatten()
    ys = torch.as_tensor(np.asarray(levels, dtype=np.int64)).flatten()
    k = len(gains)
    if xs.numel() != ys.numel() or xs.numel() == 0:
        raise ValueError(f"fit_ordered_logit: {xs.numel()} scores but {ys.numel()} levels")
    if int(ys.min()) < 0 or int(ys.max()) >= k:
        raise ValueError(f"fit_ordered_logit: levels must be in 0..{k - 1}, got {sorted(set(ys.tolist()))}")
    g = torch.tensor(gains, dtype=torch.float32)
    g = g - g.mean()
    # Standardise x for a well-conditioned fit, then fold the scale back into alpha and the biases.
    mu, sd = float(xs.mean()), float(xs.std()) if xs.numel() > 1 else 0.0
    constant = not sd > 0  # the score says nothing: only the level prior is learned
    sd = 1.0 if constant else sd
    z = (xs - mu) / sd
    counts = torch.bincount(ys, minlength=k).float() + 1.0
    a = torch.tensor(1.0, requires_grad=True)
    b = (counts / counts.sum()).log().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z[:, None] * a * g[None, :] + b[None, :], ys)
        loss.backward()
        return loss

    opt.step(closure)
    a_z = 1e-6 if constant else max(float(a.detach()), 1e-6)
    alpha = a_z / sd
    bias = b.detach() - alpha * mu * g  # a_z * (x - mu) / sd * g + b  ==  alpha * x * g + bias
    with torch.no_grad():
        ce = float(nn.functional.cross_entropy(xs[:, None] * alpha * g[None, :] + bias[None, :], ys))
    return OrderedLogit(alpha, tuple(float(v) for v in bias), tuple(float(v) for v in g), ce, int(xs.numel()))
