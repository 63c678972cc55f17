"""The student's ``transformers.Trainer`` subclass, its query-grouped sampler and its ranking evaluator.

The Trainer runs the loop (optimiser, scheduler, accumulation, mixed precision, checkpoints, resume);
this subclass only says how the loss is computed, how the model is evaluated (NDCG@10 of the validation
split, through the same runner as ``distilrel evaluate``), and how a checkpoint is written and read (the
student's own folder layout, so every checkpoint is also a loadable student).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import Trainer

from distilrel.student.collator import PairDataset
from distilrel.student.losses import CombinedLoss
from distilrel.student.model import StudentModel, load_student

if TYPE_CHECKING:
    from distilrel.data.schema import Dataset
    from distilrel.text.builder import TextBuilder

PRIMARY_METRIC = "ndcg@10"
TRAINING_ARGS_NAME = "training_args.bin"

Evaluator = Callable[[StudentModel], dict[str, float]]


class QueryGroupedSampler(Sampler[int]):
    """Shuffled pairs, with up to ``docs_per_query`` documents of one query kept next to each other.

    MarginMSE compares documents of the same query, so a batch needs several of them; cutting each
    query's pairs into small chunks and shuffling the chunks keeps many queries per batch as well. The
    order depends only on (seed, epoch), so a resumed run skips exactly the batches it already saw.
    """

    def __init__(self, groups: Sequence[str], docs_per_query: int = 4, seed: int = 0) -> None:
        if docs_per_query < 1:
            raise ValueError(f"QueryGroupedSampler: docs_per_query must be >= 1, got {docs_per_query}")
        self.docs_per_query = docs_per_query
        self.seed = seed
        self.epoch = 0
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        self._groups = list(by_group.values())
        self._n = len(groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks: list[np.ndarray] = []
        for members in self._groups:
            shuffled = rng.permutation(members)
            chunks.extend(np.array_split(shuffled, math.ceil(len(shuffled) / self.docs_per_query)))
        for c in rng.permutation(len(chunks)):
            yield from (int(i) for i in chunks[c])


@dataclass(frozen=True)
class EvalTarget:
    """One dataset the evaluator ranks: its judgments, its document text builder, an optional query cap."""

    name: str
    dataset: Dataset
    builder: TextBuilder
    max_queries: int | None = None


class RankingEvaluator:
    """``__call__(model) -> {"ndcg@10": ..., "<dataset>/ndcg@10": ..., ...}`` on one split of each target.

    Each target is ranked with a fresh :class:`~distilrel.student.scorer.StudentScorer` (no stale embedding
    cache) through :func:`distilrel.evaluate.runner.evaluate`, so the numbers match
    ``distilrel evaluate --split validation``. The primary metric is the mean over targets.
    """

    primary_metric = PRIMARY_METRIC

    def __init__(
        self, targets: Sequence[EvalTarget], split: str = "validation", batch_size: int = 128, seed: int = 0
    ) -> None:
        if not targets:
            raise ValueError("RankingEvaluator needs at least one dataset to evaluate on")
        for t in targets:
            t.dataset.split(split)  # fails now, with the dataset's name, if the split is empty
        self.targets = list(targets)
        self.split = split
        self.batch_size = batch_size
        self.seed = seed

    def __call__(self, model: StudentModel) -> dict[str, float]:
        from distilrel.evaluate.runner import EvalSettings, evaluate
        from distilrel.student.scorer import StudentScorer

        out: dict[str, float] = {}
        primary: list[float] = []
        for t in self.targets:
            settings = EvalSettings(split=self.split, max_queries=t.max_queries, seed=self.seed)
            result = evaluate(
                t.dataset, StudentScorer(model, batch_size=self.batch_size), t.builder, settings
            )
            if self.primary_metric not in result.summary:
                raise ValueError(f"RankingEvaluator: {t.name}: the runner returned no {self.primary_metric}")
            primary.append(result.summary[self.primary_metric])
            out.update(
                {f"{t.name}/{k}": float(v) for k, v in {**result.summary, **result.classifier}.items()}
            )
        out[self.primary_metric] = float(np.mean(primary))
        return out


class StudentTrainer(Trainer):
    """``Trainer`` over a :class:`StudentModel` with a :class:`CombinedLoss` and a ranking evaluator.

    Extra arguments: ``loss`` (the weighted losses), ``evaluator`` (``model -> metrics``; None turns
    evaluation off), ``head_learning_rate`` (the randomly initialised head learns faster than the
    pretrained towers), ``docs_per_query`` (the sampler's chunk size).
    """

    # compute_loss returns a per-batch mean; the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        loss: CombinedLoss,
        evaluator: Evaluator | None = None,
        head_learning_rate: float | None = None,
        docs_per_query: int = 4,
        **kwargs: Any,
    ) -> None:
        if evaluator is not None:
            # The Trainer refuses an eval strategy without an eval_dataset; ours is the evaluator itself,
            # which the overridden evaluate() calls (the Trainer never iterates it).
            kwargs.setdefault("eval_dataset", evaluator)
        super().__init__(*args, **kwargs)
        if not isinstance(self.model, StudentModel):
            raise ValueError(f"StudentTrainer needs a StudentModel, got {type(self.model).__name__}")
        self.loss_fn = loss
        self.evaluator = evaluator
        self.head_learning_rate = head_learning_rate
        self.docs_per_query = docs_per_query
        self._part_sums: dict[str, float] = {}
        self._part_count = 0

    # --- loss -----------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        outputs = model(inputs["query"], inputs["doc"], inputs["query_index"])
        loss, parts = self.loss_fn(outputs, inputs)
        if model.training:
            for name, value in parts.items():
                self._part_sums[name] = self._part_sums.get(name, 0.0) + value
            self._part_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Each loss part, averaged over the micro-batches since the last log line, beside the total.
        if "loss" in logs and self._part_count:
            logs = {**logs, **{f"loss_{k}": v / self._part_count for k, v in self._part_sums.items()}}
            self._part_sums, self._part_count = {}, 0
        super().log(logs, start_time)

    # --- optimiser and sampler ---------------------------------------------------------------------------

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        model = model or self.model
        from distilrel.optim import build_optimizer

        self.optimizer = build_optimizer(
            self, model, self.head_learning_rate, is_head=lambda n: n.startswith("head.")
        )
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int] | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not isinstance(dataset, PairDataset):
            return super()._get_train_sampler(train_dataset)
        return QueryGroupedSampler(dataset.groups, self.docs_per_query, seed=self.args.seed)

    # --- evaluation -------------------------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        if self.evaluator is None:
            raise ValueError("StudentTrainer.evaluate: no evaluator was given (evaluation is off)")
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        try:
            raw = self.evaluator(model)
        finally:
            model.train(was_training)
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in raw.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # --- checkpoints: the student's own layout -----------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        model.save(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: torch.nn.Module | None = None
    ) -> None:
        target = self.accelerator.unwrap_model(model or self.model)
        _copy_weights(resume_from_checkpoint, target)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best is None:
            raise ValueError("StudentTrainer: no best checkpoint was recorded")
        _copy_weights(best, self.accelerator.unwrap_model(self.model))


def _copy_weights(folder: str, target: StudentModel) -> None:
    """Load the student saved in ``folder`` into ``target`` in place (the optimiser keeps its parameters)."""
    saved = load_student(folder, device="cpu")
    missing, unexpected = target.load_state_dict(saved.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {folder} does not match the model being trained: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (was it trained with another backbone or shared setting?)"
        )
