"""Optimiser parameter groups shared by the teacher's and the student's trainers: a freshly initialised
head learns at its own (higher) rate while the pretrained backbone keeps the base rate; weight decay as the
Trainer decides it (no decay on biases and norms)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from torch import nn


def head_param_groups(
    model: nn.Module,
    *,
    decay: Collection[str],
    learning_rate: float,
    head_learning_rate: float | None,
    weight_decay: float,
    is_head: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """Up to four groups (backbone/head x decay/no decay) of the trainable parameters of ``model``."""
    head_lr = head_learning_rate or learning_rate
    groups: list[dict[str, Any]] = []
    for head in (False, True):
        for use_decay in (True, False):
            params = [
                p
                for n, p in model.named_parameters()
                if p.requires_grad and is_head(n) == head and (n in decay) == use_decay
            ]
            if params:
                groups.append(
                    {
                        "params": params,
                        "weight_decay": weight_decay if use_decay else 0.0,
                        "lr": head_lr if head else learning_rate,
                    }
                )
    return groups


def build_optimizer(
    trainer: Any, model: nn.Module, head_learning_rate: float | None, is_head: Callable[[str], bool]
) -> Any:
    """The Trainer's own optimizer class and arguments over :func:`head_param_groups` of ``model``."""
    groups = head_param_groups(
        model,
        decay=set(trainer.get_decay_parameter_names(model)),
        learning_rate=trainer.args.learning_rate,
        head_learning_rate=head_learning_rate,
        weight_decay=trainer.args.weight_decay,
        is_head=is_head,
    )
    optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    return optimizer_cls(groups, **optimizer_kwargs)
