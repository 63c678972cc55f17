"""Deterministic, hash-based split assignment by query.

A query's split depends only on (seed, query id), never on row order, file order or the other
queries present, so adding judgments never moves an existing query between splits, and every
machine assigns the same split. All rows of one query always land in the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd

from distilrel.data.schema import SPLITS

#: Default seed for every hash split in the package (change it to draw another partition).
SPLIT_SEED = 0

#: train / validation / test fractions used when a dataset has no split column.
DEFAULT_FRACTIONS = (0.67, 0.11, 0.22)


def hash_unit(key: str, seed: int = SPLIT_SEED) -> float:
    """A uniform number in [0, 1) derived from ``key`` and ``seed`` (sha256, first 8 bytes)."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stable_query_id(query: str, prefix: str = "q") -> str:
    """A query id derived from the query text (whitespace-collapsed), stable across runs and machines."""
    norm = " ".join(str(query).split())
    return f"{prefix}{hashlib.sha256(norm.encode()).hexdigest()[:12]}"


def assign_splits(
    query_ids: pd.Series | Sequence[str],
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = SPLIT_SEED,
) -> pd.Series:
    """Split name per entry of ``query_ids`` (same index when a Series is given), by hashing the id."""
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    ids = query_ids if isinstance(query_ids, pd.Series) else pd.Series(list(query_ids))
    edges = (fractions[0], fractions[0] + fractions[1])
    # Hash each distinct id once: judgments repeat a query id once per judged document.
    lookup = {qid: _bucket(hash_unit(qid, seed), edges) for qid in ids.astype(str).unique()}
    return ids.astype(str).map(lookup).astype(str)


def carve_validation(
    splits: pd.Series, query_ids: pd.Series, fraction: float = 0.1, seed: int = SPLIT_SEED
) -> pd.Series:
    """Move ``fraction`` of the *train* queries (by hash of the query id) to ``validation``.

    Used where a dataset ships only train/test: model selection then never touches test.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    ids = query_ids.astype(str)
    picked = ids.map({qid: hash_unit(qid, seed) < fraction for qid in ids.unique()}).astype(bool)
    out = splits.astype(str).copy()
    out[(out == "train") & picked] = "validation"
    return out


def _bucket(u: float, edges: tuple[float, float]) -> str:
    if u < edges[0]:
        return SPLITS[0]
    if u < edges[1]:
        return SPLITS[1]
    return SPLITS[2]
