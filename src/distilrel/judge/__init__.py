"""Human judging: the append-only judgments table the relevance explorer writes, and agreement between
people and models (where to spend the next judging budget)."""

from __future__ import annotations

from distilrel.judge.agreement import Disagreement, confusion, most_disagreeing, rank_disagreement
from distilrel.judge.store import Judgment, JudgmentStore, conflicts

__all__ = [
    "Disagreement",
    "Judgment",
    "JudgmentStore",
    "conflicts",
    "confusion",
    "most_disagreeing",
    "rank_disagreement",
]
