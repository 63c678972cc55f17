"""Per-segment breakdowns of per-query scores (locale, query length, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

QUERY_COUNT = "queries"
ALL = "all"


def query_length_bucket(query: str) -> str:
    """``"1"``, ``"2"``, ``"3"`` or ``"4+"`` whitespace-separated words.

    Scripts written without spaces (Japanese, Chinese, Thai) count as one word per unbroken run.
    """
    n = len(query.split())
    if n == 0:
        raise ValueError(f"query {query!r} has no words; cannot bucket an empty query")
    return str(n) if n < 4 else "4+"


def breakdown(per_query: pd.DataFrame, segments: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean of every metric column and the query count per value of each segment column.

    per_query: index query_id, one column per metric (as from ``score_run``).
    segments:  index query_id, one column per segment (e.g. ``locale``, ``length``); may hold more
               queries than ``per_query``, but every scored query must have a value for each ``by``.
    Returns a frame indexed by (segment, value): first the ``("all", "all")`` row, then each segment
    in ``by`` order with its values sorted; columns are the metrics plus ``queries``.
    """
    if isinstance(by, str):
        raise ValueError(f"by must be a sequence of segment names, got the string {by!r}; use [{by!r}]")
    if per_query.empty:
        raise ValueError("no per-query scores to break down (empty table)")
    if QUERY_COUNT in per_query.columns:
        raise ValueError(f"per_query has a column named {QUERY_COUNT!r}, which the breakdown uses for counts")
    missing_cols = [b for b in by if b not in segments.columns]
    if missing_cols:
        raise ValueError(
            f"segment columns {missing_cols} not in segments (columns: {list(segments.columns)})"
        )
    if not segments.index.is_unique:
        dup = segments.index[segments.index.duplicated()][:5].tolist()
        raise ValueError(f"segments has repeated query ids, e.g. {dup}")
    missing_q = per_query.index.difference(segments.index)
    if len(missing_q):
        raise ValueError(
            f"{len(missing_q)} scored queries have no segment row, e.g. {missing_q[:5].tolist()}"
        )

    seg = segments.loc[per_query.index, list(by)]
    for b in by:
        na = seg.index[seg[b].isna()]
        if len(na):
            raise ValueError(f"segment {b!r} is missing for {len(na)} queries, e.g. {na[:5].tolist()}")

    metrics = list(per_query.columns)
    rows = [per_query.mean().to_frame().T.assign(**{QUERY_COUNT: len(per_query)}).set_axis([(ALL, ALL)])]
    for b in by:
        grouped = per_query.groupby(seg[b], sort=True)
        stats = grouped.mean().assign(**{QUERY_COUNT: grouped.size()})
        stats.index = [(b, v) for v in stats.index]
        rows.append(stats)
    out = pd.concat(rows)
    out.index = pd.MultiIndex.from_tuples(out.index, names=["segment", "value"])
    out[QUERY_COUNT] = out[QUERY_COUNT].astype(int)
    return out[[*metrics, QUERY_COUNT]]
