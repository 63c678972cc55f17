"""Training the teacher with transformers' ``Trainer``: our loss module, our NDCG@10 evaluator.

* :class:`TeacherTrainingArguments` only changes defaults a cross-encoder needs (keep the raw
  ``query``/``text``/``level`` columns for the collator; best model by ``ndcg@10``).
* :class:`TeacherEvaluator` follows the shared evaluator contract ``__call__(model) -> dict`` with
  ``primary_metric = "ndcg@10"``: it re-ranks each validation query's judged documents by expected gain.
* :class:`TeacherTrainer` computes the loss with the loss module and evaluates with the evaluator, so
  ``metric_for_best_model``, ``load_best_model_at_end`` and ``resume_from_checkpoint`` work as usual.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from distilrel.data.levels import LevelMapping
from distilrel.teacher.losses import LevelCrossEntropyLoss
from distilrel.teacher.model import TeacherModel
from distilrel.teacher.predict import expected_gain, predict_levels

PRIMARY_METRIC = "ndcg@10"


@dataclass
class TeacherTrainingArguments(TrainingArguments):
    """TrainingArguments with cross-encoder defaults."""

    # The collator tokenizes the raw columns; Trainer must not drop them for not being forward() args.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "keep query/text/level for the collator"}
    )
    label_names: list[str] | None = field(default_factory=lambda: ["labels"])
    metric_for_best_model: str | None = field(default=PRIMARY_METRIC)
    greater_is_better: bool | None = field(default=True)


class PairDataset(torch.utils.data.Dataset):
    """Training examples ``{"query", "text", "level"}`` held as three columns (cheap for 100k+ pairs)."""

    def __init__(self, queries: Sequence[str], texts: Sequence[str], levels: Sequence[int]) -> None:
        if not len(queries) == len(texts) == len(levels):
            raise ValueError(f"PairDataset: {len(queries)} queries, {len(texts)} texts, {len(levels)} levels")
        self.queries, self.texts, self.levels = list(queries), list(texts), [int(x) for x in levels]

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"query": self.queries[i], "text": self.texts[i], "level": self.levels[i]}

    def char_lengths(self) -> list[int]:
        """A cheap proxy for token length, for grouping pairs of similar length into batches."""
        return [len(q) + len(t) for q, t in zip(self.queries, self.texts, strict=True)]


class ListDataset(torch.utils.data.Dataset):
    """Training examples as query lists ``{"query", "texts", "levels"}`` for the ranking losses.

    Each query's judged pairs (``groups`` names the query: dataset + query id) are shuffled once with
    ``seed`` and cut into lists of at most ``list_size`` (as even as possible: 10 pairs at 8 -> 5 + 5), so
    every pair is seen once an epoch and a list never mixes two queries."""

    def __init__(
        self,
        groups: Sequence[str],
        queries: Sequence[str],
        texts: Sequence[str],
        levels: Sequence[int],
        list_size: int = 8,
        seed: int = 0,
    ) -> None:
        import math

        import numpy as np

        if not len(groups) == len(queries) == len(texts) == len(levels):
            raise ValueError(
                f"ListDataset: {len(groups)} groups, {len(queries)} queries, {len(texts)} texts, "
                f"{len(levels)} levels"
            )
        if list_size < 2:
            raise ValueError(f"ListDataset: list_size must be >= 2, got {list_size}")
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        rng = np.random.default_rng(seed)
        self.lists: list[list[int]] = []
        for g in sorted(by_group):
            members = rng.permutation(by_group[g])
            for chunk in np.array_split(members, math.ceil(len(members) / list_size)):
                self.lists.append([int(i) for i in chunk])
        self.groups = [groups[c[0]] for c in self.lists]
        self.queries, self.texts, self.levels = list(queries), list(texts), [int(x) for x in levels]

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, i: int) -> dict[str, Any]:
        idx = self.lists[i]
        return {
            "query": self.queries[idx[0]],
            "texts": [self.texts[j] for j in idx],
            "levels": [self.levels[j] for j in idx],
        }


@dataclass(frozen=True)
class EvalSet:
    """One dataset's validation queries with their judged documents, scored with the dataset's OWN gains."""

    name: str
    query_ids: tuple[str, ...]
    doc_ids: tuple[str, ...]
    queries: tuple[str, ...]
    texts: tuple[str, ...]
    qrels: Mapping[str, Mapping[str, int]]
    gains: Mapping[int, float]  # grade -> gain
    rel_threshold: int

    @classmethod
    def from_judgments(
        cls, name: str, judgments: pd.DataFrame, texts: Mapping[str, str], levels: LevelMapping
    ) -> EvalSet:
        grades = levels.grades
        qrels: dict[str, dict[str, int]] = {}
        for qid, did, lvl in zip(judgments["query_id"], judgments["doc_id"], judgments["level"], strict=True):
            qrels.setdefault(str(qid), {})[str(did)] = int(grades[int(lvl)])
        return cls(
            name=name,
            query_ids=tuple(str(q) for q in judgments["query_id"]),
            doc_ids=tuple(str(d) for d in judgments["doc_id"]),
            queries=tuple(judgments["query"].astype(str)),
            texts=tuple(texts[str(d)] for d in judgments["doc_id"]),
            qrels=qrels,
            gains={int(g): float(x) for g, x in zip(levels.grades, levels.gains, strict=True)},
            rel_threshold=int(levels.grades[levels.relevant - 1]),
        )


class TeacherEvaluator:
    """NDCG@10 (and any other metric names) of re-ranking each set's judged candidates by expected gain.

    Returns ``{"<set>/<metric>": ...}`` per set plus each metric macro-averaged over the sets under its
    plain name (``"ndcg@10"``), so a small set counts as much as a big one.
    """

    primary_metric = PRIMARY_METRIC

    def __init__(
        self,
        sets: Sequence[EvalSet],
        tokenizer: Any,
        max_length: int,
        batch_size: int = 64,
        metrics: Sequence[str] = (PRIMARY_METRIC,),
    ) -> None:
        if not sets:
            raise ValueError("TeacherEvaluator needs at least one evaluation set")
        if PRIMARY_METRIC not in metrics:
            raise ValueError(f"TeacherEvaluator: metrics must include the primary metric {PRIMARY_METRIC!r}")
        self.sets = list(sets)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.metrics = list(metrics)

    def pairs(self) -> list[dict[str, str]]:
        """Every (query, text) pair the evaluator scores."""
        return [{"query": q, "text": t} for s in self.sets for q, t in zip(s.queries, s.texts, strict=True)]

    def __call__(self, model: TeacherModel) -> dict[str, float]:
        from distilrel.metrics import score_run

        out: dict[str, float] = {}
        for s in self.sets:
            probs = predict_levels(
                model, self.tokenizer, s.queries, s.texts, self.batch_size, self.max_length
            )
            scores = expected_gain(probs, model.levels.gains)  # (n,)
            run: dict[str, dict[str, float]] = {}
            for qid, did, sc in zip(s.query_ids, s.doc_ids, scores, strict=True):
                run.setdefault(qid, {})[did] = float(sc)
            per_query = score_run(run, s.qrels, self.metrics, gains=s.gains, rel_threshold=s.rel_threshold)
            for m in self.metrics:
                out[f"{s.name}/{m}"] = float(per_query[m].mean())
        for m in self.metrics:
            out[m] = sum(out[f"{s.name}/{m}"] for s in self.sets) / len(self.sets)
        return out


class TeacherTrainer(Trainer):
    """``Trainer`` whose loss is a teacher loss module and whose evaluation is a :class:`TeacherEvaluator`."""

    def __init__(
        self,
        model: TeacherModel,
        args: TrainingArguments,
        *,
        loss: nn.Module | None = None,
        evaluator: TeacherEvaluator | None = None,
        head_learning_rate: float | None = None,
        **kwargs: Any,
    ) -> None:
        if args.eval_strategy != "no" and evaluator is None and kwargs.get("eval_dataset") is None:
            raise ValueError("TeacherTrainer: eval_strategy is set but no evaluator was given")
        if evaluator is not None and kwargs.get("eval_dataset") is None:
            # Trainer insists on an eval_dataset when eval_strategy is set; our evaluate() reads the
            # evaluator, so its validation pairs stand in for it.
            kwargs["eval_dataset"] = evaluator.pairs()
        super().__init__(model=model, args=args, **kwargs)
        self.loss = loss if loss is not None else LevelCrossEntropyLoss(model)
        self.evaluator = evaluator
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The level head and the prior's linear layer (both start from zero or from a calibration, not
        from pretraining) learn at ``head_learning_rate``; the backbone at the base rate."""
        if self.optimizer is not None or self.head_learning_rate is None:
            return super().create_optimizer(model) if self.optimizer is None else self.optimizer
        from distilrel.optim import build_optimizer

        model = model or self.model
        self.optimizer = build_optimizer(
            self, model, self.head_learning_rate, is_head=lambda n: n.startswith(("head.", "prior.linear."))
        )
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        # Trainer's group_by_length only reads lengths from HF `datasets` columns or tokenized items;
        # our items are raw text (the collator tokenizes), so character lengths stand in. With short
        # titles and long descriptions in one run this cuts padding (and CPU time) several-fold.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, PairDataset):
            from transformers.trainer_pt_utils import LengthGroupedSampler

            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(batch, lengths=dataset.char_lengths())
        return super()._get_train_sampler(train_dataset)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        labels = inputs.pop("labels")
        groups = inputs.pop("groups", None)
        # Under DDP / torch.compile ``model`` is a wrapper: the loss must run the wrapped forward.
        if self.loss.model is not model:
            self.loss.model = model
        loss = self.loss(inputs, labels, groups)
        return (loss, {}) if return_outputs else loss

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        if self.evaluator is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        start = time.perf_counter()
        raw = self.evaluator(self.model)
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in raw.items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class RichProgressCallback(TrainerCallback):
    """Training progress as a rich bar (steps, running loss) and one console line per evaluation."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]teacher[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task("", total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.progress.update(self.task, description=f"loss {logs['loss']:.4f}")
            if not self.console.is_terminal:  # no live bar in a log file: one line per logging step
                self.console.print(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}")
        shown = {k[5:]: v for k, v in logs.items() if k.startswith("eval_") and k != "eval_runtime"}
        if shown:
            text = ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
            self.progress.console.print(f"step {state.global_step}: {text}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
