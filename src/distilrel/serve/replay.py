"""Query-cache replay: run a query stream through the real :class:`~distilrel.serve.cache.LRUCache` at
several sizes and report the hit rate of each.

Streams:

* a user's log — a file with one query per row (``.txt``: one per line; Parquet / CSV / JSON lines: a
  ``query`` column, or ``--query-column``), optionally timestamps (``--time-column``) so that a TTL
  expires entries on the log's own clock;
* a **simulation** — distinct real queries (e.g. Home Depot's) drawn with a seeded Zipf popularity:
  the query of popularity rank r is drawn with probability proportional to 1 / r^s. Which query gets
  which rank is a seeded shuffle. The real popularity of these queries is unknown: the curve shows what
  an LRU of each size would do *if* traffic followed that law, not what a real log would give.

Every key goes through the service's own normalisation (:func:`~distilrel.serve.cache.cache_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distilrel.data.schema import DataError
from distilrel.io import atomic_path
from distilrel.serve.cache import LRUCache, cache_key

_PLACEHOLDER = np.zeros(0, dtype=np.float32)  # the replay counts hits; no vector is needed


@dataclass(frozen=True)
class QueryStream:
    queries: list[str]
    times: np.ndarray | None  # (n,) seconds, non-decreasing; None: no clock (a TTL cannot apply)
    description: str  # what the stream is, for reports (says "simulation" when it is one)


class _LogClock:
    """The cache's clock during a replay: the timestamp of the query being replayed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def zipf_stream(
    distinct: Sequence[str], n: int, s: float = 1.0, seed: int = 0, source: str = "queries"
) -> QueryStream:
    """``n`` draws from ``distinct`` queries with Zipf(s) popularity over a seeded random ranking."""
    distinct = list(dict.fromkeys(distinct))
    if not distinct:
        raise ValueError("zipf_stream: no queries to draw from")
    if n < 1 or s < 0:
        raise ValueError(f"zipf_stream: need n >= 1 and s >= 0, got n={n}, s={s}")
    rng = np.random.default_rng(seed)
    ranked = [distinct[i] for i in rng.permutation(len(distinct))]  # rank 1 = ranked[0]
    weights = 1.0 / np.arange(1, len(ranked) + 1, dtype=np.float64) ** s
    draws = rng.choice(len(ranked), size=n, p=weights / weights.sum())
    return QueryStream(
        [ranked[i] for i in draws],
        None,
        f"simulation: {n:,} draws (seed {seed}) from {len(ranked):,} distinct {source}, Zipf popularity "
        f"s={s:g} over a random ranking",
    )


def read_query_log(
    path: str | Path, query_column: str = "query", time_column: str | None = None
) -> QueryStream:
    """A logged query stream, in file order (sorted by time when ``time_column`` is given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"query log {path} does not exist")
    if path.suffix == ".txt":
        if time_column:
            raise DataError(f"{path}: a .txt log has no columns, so no time column {time_column!r}")
        queries = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
        return QueryStream(
            [q for q in queries if q.strip()], None, f"log {path.name}: {len(queries):,} queries"
        )
    readers = {
        ".parquet": pd.read_parquet,
        ".csv": pd.read_csv,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }
    if path.suffix not in readers:
        raise DataError(f"{path}: unknown log format {path.suffix!r}; use .txt, .parquet, .csv or .jsonl")
    table = readers[path.suffix](path)
    for col in (query_column, time_column):
        if col and col not in table.columns:
            raise DataError(f"{path}: no column {col!r}; columns are {list(table.columns)}")
    table = table[table[query_column].notna()]
    times = None
    if time_column:
        stamps = pd.to_datetime(table[time_column], utc=True, errors="coerce")
        if stamps.isna().any():
            row = int(np.flatnonzero(stamps.isna().to_numpy())[0]) + 1
            raise DataError(f"{path}: row {row}: {time_column!r} is not a timestamp")
        table = table.assign(_t=stamps).sort_values("_t", kind="stable")
        times = (table["_t"] - table["_t"].iloc[0]).dt.total_seconds().to_numpy()
    queries = table[query_column].astype(str).tolist()
    return QueryStream(queries, times, f"log {path.name}: {len(queries):,} queries")


def replay(
    stream: QueryStream, sizes: Sequence[int], ttl_s: float | None = None, model_id: str = "replay"
) -> pd.DataFrame:
    """Hit rate per cache size: size, requests, distinct, hits, misses, hit_rate, evictions, expirations.

    A final row ``size = -1`` is the ceiling of an unbounded cache without TTL (every repeat a hit)."""
    if ttl_s is not None and stream.times is None:
        raise ValueError("a TTL needs timestamps: give the log's time column (a simulation has no clock)")
    keys = [cache_key(q, model_id) for q in stream.queries]
    rows = []
    for size in sorted(set(sizes)):
        clock = _LogClock()
        cache = LRUCache(max_items=size, ttl_s=ttl_s, clock=clock)
        for i, key in enumerate(keys):
            if stream.times is not None:
                clock.now = float(stream.times[i])
            if cache.get(key) is None:
                cache.put(key, _PLACEHOLDER)
        s = cache.stats()
        rows.append(
            {
                "size": size,
                "hits": s.hits,
                "misses": s.misses,
                "evictions": s.evictions,
                "expirations": s.expirations,
            }
        )
    distinct = len(set(keys))
    rows.append(
        {"size": -1, "hits": len(keys) - distinct, "misses": distinct, "evictions": 0, "expirations": 0}
    )
    out = pd.DataFrame(rows)
    out.insert(1, "requests", len(keys))
    out.insert(2, "distinct", distinct)
    out["hit_rate"] = out["hits"] / out["requests"].clip(lower=1)
    return out


def plot_hit_rate(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Hit rate against cache size (log x), with the unbounded ceiling as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounded = table[table["size"] > 0]
    ceiling = float(table.loc[table["size"] == -1, "hit_rate"].iloc[0])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(bounded["size"], bounded["hit_rate"], marker="o", label="LRU")
    ax.axhline(ceiling, linestyle="--", color="grey", label=f"unbounded ({ceiling:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel("cache size (entries)")
    ax.set_ylabel("hit rate")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(path)
