"""Training pairs and the collator that tokenises a batch once per side.

A pair carries what is known about it: the teacher's K-level distribution (pseudo-labelled pairs, and human
pairs the teacher also labelled) and/or a human level (-1 when there is none). The collator tokenises each
distinct query of the batch once (the query-grouped sampler puts several documents of one query together),
every document once, and stacks the targets; losses mask out the targets a pair lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from distilrel.student.model import StudentModel

NO_LEVEL = -1


@dataclass(frozen=True)
class PairExample:
    """One (query, document text) pair. ``group`` identifies the query (dataset + query) for sampling."""

    query: str
    doc: str
    group: str
    teacher_probs: tuple[float, ...] | None = None
    level: int = NO_LEVEL
    source: str = "human"  # human | pseudo (for counts in the training report)


class PairDataset(Dataset[PairExample]):
    """A list of pairs with the per-pair query group the trainer's sampler needs."""

    def __init__(self, examples: Sequence[PairExample]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> PairExample:
        return self.examples[i]

    @property
    def groups(self) -> list[str]:
        return [e.group for e in self.examples]


class StudentCollator:
    """list[PairExample] → the batch :meth:`StudentModel.forward` and the losses read.

    Batch keys: ``query`` / ``doc`` (tokenised features), ``query_index`` (n,) row of each pair's query in
    ``query``, ``teacher_probs`` (n, K) (zeros where absent), ``has_teacher`` (n,), ``levels`` (n,).
    """

    def __init__(self, model: StudentModel) -> None:
        self.model = model
        self.k = model.levels.k

    def __call__(self, examples: Sequence[PairExample]) -> dict[str, Any]:
        if not examples:
            raise ValueError("StudentCollator: empty batch")
        distinct: dict[str, int] = {}
        for e in examples:
            distinct.setdefault(e.query, len(distinct))
        probs = torch.zeros(len(examples), self.k)
        for i, e in enumerate(examples):
            if e.teacher_probs is not None:
                if len(e.teacher_probs) != self.k:
                    raise ValueError(
                        f"StudentCollator: pair ({e.query!r}, group {e.group!r}) has {len(e.teacher_probs)} "
                        f"teacher probabilities, the model has {self.k} levels"
                    )
                probs[i] = torch.tensor(e.teacher_probs)
        return {
            "query": self.model.tokenize_queries(list(distinct)),
            "doc": self.model.tokenize_docs([e.doc for e in examples]),
            "query_index": torch.tensor([distinct[e.query] for e in examples], dtype=torch.long),
            "teacher_probs": probs,
            "has_teacher": torch.tensor([e.teacher_probs is not None for e in examples], dtype=torch.bool),
            "levels": torch.tensor([e.level for e in examples], dtype=torch.long),
        }
