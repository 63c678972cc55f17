"""Teacher losses. Each is a small ``nn.Module`` that checks its model when built (and raises a
ValueError naming itself) and is called with already tokenized features — tokenisation happens once,
in :class:`distilrel.teacher.collator.TeacherCollator`.

Calling convention, shared by every loss here: ``loss(features, labels, groups=None)`` runs the model
once and hands its (batch, K) logits to ``loss.from_logits(logits, labels, groups)``, which is where the
arithmetic lives; :class:`CombinedLoss` runs the model once and adds several losses' ``from_logits``.

* :class:`LevelCrossEntropyLoss`: pointwise, over the K levels (the seed's objective).
* :class:`ListNetLoss`: listwise, softmax cross-entropy of each query's list against its gains.
* :class:`LambdaLoss`: pairwise logistic weighted by the |ΔNDCG| of swapping the pair (LambdaRank).
* :class:`RankNetLoss`: plain pairwise logistic over every pair of a list with different gains.

The ranking losses read the ranking score the teacher is used with, the expected gain
``softmax(logits) @ gains`` (divided by a ``temperature``), and ``groups`` (batch,): which query list
each pair belongs to, contiguous and non-decreasing as :class:`~distilrel.teacher.collator.ListCollator`
builds them. Labels are level indices (gain = the level's gain) or (batch, K) soft labels (gain =
expected gain of the label distribution).
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def forward(
        self, features: dict[str, torch.Tensor], labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.from_logits(self.model(**features), labels, groups)

    def from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
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


def _check_teacher(model: Any, name: str) -> None:
    if not isinstance(model, TeacherModel):
        raise ValueError(f"{name} needs a TeacherModel (backbone + K-level head), got {type(model).__name__}")


def label_gains(labels: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """(batch,) level indices or (batch, K) soft labels -> (batch,) gains."""
    if labels.dim() == 1:
        return gains[labels.long()]
    return labels.float() @ gains.float()


def as_lists(
    values: torch.Tensor, groups: torch.Tensor, name: str, fill: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch,) values + (batch,) contiguous group ids -> (lists, longest) padded values and a bool mask."""
    if groups is None:
        raise ValueError(f"{name} is a ranking loss: it needs query-grouped batches (groups), got none")
    if groups.shape != values.shape[:1]:
        raise ValueError(
            f"{name}: groups must be (batch,) = {tuple(values.shape[:1])}, got {tuple(groups.shape)}"
        )
    if groups.numel() > 1 and bool((groups[1:] < groups[:-1]).any()):
        raise ValueError(
            f"{name}: each query's pairs must be contiguous in the batch (groups non-decreasing)"
        )
    _, counts = torch.unique_consecutive(groups, return_counts=True)
    parts = torch.split(values, counts.tolist())
    padded = nn.utils.rnn.pad_sequence(parts, batch_first=True, padding_value=fill)  # (lists, longest)
    width = padded.size(1)
    mask = torch.arange(width, device=values.device)[None, :] < counts.to(values.device)[:, None]
    return padded, mask


class _RankingLoss(nn.Module):
    """Shared plumbing: the model check, expected-gain scores and gains laid out as padded lists."""

    def __init__(self, model: TeacherModel, temperature: float = 1.0) -> None:
        super().__init__()
        name = type(self).__name__
        _check_teacher(model, name)
        if not temperature > 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature}")
        self.model = model
        self.temperature = float(temperature)
        # from_logits reads the gains, never the model: the trainer may swap in a DDP / compiled wrapper.
        self.register_buffer("gains", model.gains.detach().clone().float(), persistent=False)

    def forward(
        self, features: dict[str, torch.Tensor], labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.from_logits(self.model(**features), labels, groups)

    def lists(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lists, longest) scores, gains and mask."""
        gains = self.gains.to(logits.device)
        scores = (logits.float().softmax(dim=-1) @ gains) / self.temperature  # (batch,)
        name = type(self).__name__
        s, mask = as_lists(scores, groups, name)
        g, _ = as_lists(label_gains(labels.to(logits.device), gains), groups, name)
        return s, g, mask

    def from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}


class ListNetLoss(_RankingLoss):
    """ListNet (top-one): per list, ``-sum_i (g_i / sum g) * log softmax(s)_i``; mean over the lists that
    have a positive gain and at least two pairs (the others carry no order to learn)."""

    def from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        s, g, mask = self.lists(logits, labels, groups)
        total = (g * mask).sum(dim=1)  # (lists,)
        keep = (total > 0) & (mask.sum(dim=1) >= 2)
        if not bool(keep.any()):
            return logits.sum() * 0.0  # no list to rank: a zero that keeps the graph
        log_p = s.masked_fill(~mask, float("-inf")).log_softmax(dim=1)
        target = (g * mask) / total.clamp(min=1e-12)[:, None]
        per_list = -(target * log_p.masked_fill(~mask, 0.0)).sum(dim=1)
        return per_list[keep].mean()


def _pair_terms(
    s: torch.Tensor, g: torch.Tensor, mask: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, ...]:
    """(lists, n, n) logistic pair losses ``log(1 + exp(-sigma (s_i - s_j)))`` and the mask of pairs with
    ``g_i > g_j`` inside one list."""
    diff = s[:, :, None] - s[:, None, :]
    valid = (g[:, :, None] > g[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    return F.softplus(-sigma * diff), valid


class _PairwiseLoss(_RankingLoss):
    """A ranking loss over (better, worse) pairs with logistic slope ``sigma``."""

    def __init__(self, model: TeacherModel, sigma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__(model, temperature)
        if not sigma > 0:
            raise ValueError(f"{type(self).__name__}: sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def pairs(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...] | None:
        """(scores, gains, mask, pair terms, valid pairs) of the batch's lists; None without a valid pair."""
        s, g, mask = self.lists(logits, labels, groups)
        terms, valid = _pair_terms(s, g, mask, self.sigma)
        return (s, g, mask, terms, valid) if bool(valid.any()) else None

    def get_config_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "temperature": self.temperature}


class RankNetLoss(_PairwiseLoss):
    """RankNet: mean logistic loss over every (better, worse) pair of every list."""

    def from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        got = self.pairs(logits, labels, groups)
        if got is None:
            return logits.sum() * 0.0
        _, _, _, terms, valid = got
        return terms[valid].mean()


class LambdaLoss(_PairwiseLoss):
    """LambdaRank-weighted pairwise loss (the "lambdaRank" scheme of LambdaLoss, Wang et al. 2018): each
    (better, worse) pair's logistic loss weighted by ``|g_i - g_j| * |1/log2(1+r_i) - 1/log2(1+r_j)| / IDCG``,
    the NDCG change of swapping them at their current ranks r (scores detached, ties by position). Summed
    per list, mean over the lists that have such a pair."""

    def from_logits(
        self, logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        got = self.pairs(logits, labels, groups)
        if got is None:
            return logits.sum() * 0.0
        s, g, mask, terms, valid = got
        width = s.size(1)
        order = s.detach().masked_fill(~mask, float("-inf")).argsort(dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(width, device=s.device).expand_as(order))  # 0-based
        inv_discount = 1.0 / torch.log2(ranks.float() + 2.0)  # (lists, n)
        ideal = g.masked_fill(~mask, 0.0).sort(dim=1, descending=True).values
        idcg = (ideal * (1.0 / torch.log2(torch.arange(width, device=s.device).float() + 2.0))).sum(dim=1)
        delta = (g[:, :, None] - g[:, None, :]).abs() * (
            inv_discount[:, :, None] - inv_discount[:, None, :]
        ).abs()
        weights = delta / idcg.clamp(min=1e-12)[:, None, None]
        per_list = (weights * terms * valid).sum(dim=(1, 2))
        return per_list[valid.any(dim=2).any(dim=1)].mean()


class CombinedLoss(nn.Module):
    """A weighted sum of teacher losses over ONE forward pass: ``sum_w w * loss.from_logits(...)``.

    ``parts``: name -> (loss, weight). The last batch's unweighted parts are kept in :attr:`last` (floats)
    for logging. Only ``self.model`` runs forward (the parts' ``from_logits`` never call theirs), so a trainer
    that wraps the model needs to swap this one attribute."""

    def __init__(self, model: TeacherModel, parts: Mapping[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        _check_teacher(model, "CombinedLoss")
        if not parts:
            raise ValueError("CombinedLoss needs at least one loss")
        for name, (loss, weight) in parts.items():
            if not weight > 0:
                raise ValueError(f"CombinedLoss: weight of {name!r} must be > 0, got {weight}")
            if getattr(loss, "model", None) is not model:
                raise ValueError(f"CombinedLoss: loss {name!r} was built for another model")
        self.model = model
        self.parts = nn.ModuleDict({name: loss for name, (loss, _) in parts.items()})
        self.weights = {name: float(w) for name, (_, w) in parts.items()}
        self.last: dict[str, float] = {}

    @property
    def needs_groups(self) -> bool:
        return any(isinstance(loss, _RankingLoss) for loss in self.parts.values())

    def forward(
        self, features: dict[str, torch.Tensor], labels: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = self.model(**features)
        total = logits.sum() * 0.0
        self.last = {}
        for name, loss in self.parts.items():
            value = loss.from_logits(logits, labels, groups)
            self.last[name] = float(value.detach())
            total = total + self.weights[name] * value
        return total

    def get_config_dict(self) -> dict[str, Any]:
        return {
            name: {"weight": self.weights[name], **loss.get_config_dict()}
            for name, loss in self.parts.items()
        }


#: config name -> loss class, for ``[training] loss = { ce = 1.0, listnet = 1.0, ... }``.
LOSSES: dict[str, type[nn.Module]] = {
    "ce": LevelCrossEntropyLoss,
    "listnet": ListNetLoss,
    "lambda": LambdaLoss,
    "ranknet": RankNetLoss,
}


def build_loss(
    model: TeacherModel,
    weights: Mapping[str, float],
    *,
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    sigma: float = 1.0,
) -> CombinedLoss:
    """The training objective from the config's loss weights (zero weights are left out)."""
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise ValueError(f"unknown teacher loss(es) {unknown}; known: {sorted(LOSSES)}")
    parts: dict[str, tuple[nn.Module, float]] = {}
    for name, w in weights.items():
        if w == 0:
            continue
        if name == "ce":
            loss: nn.Module = LevelCrossEntropyLoss(model, label_smoothing=label_smoothing)
        elif name == "listnet":
            loss = ListNetLoss(model, temperature=temperature)
        else:
            loss = LOSSES[name](model, sigma=sigma, temperature=temperature)
        parts[name] = (loss, float(w))
    return CombinedLoss(model, parts)
