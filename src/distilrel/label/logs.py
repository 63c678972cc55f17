"""Search logs → (query, doc_id, engagement) tables for the unlabelled pool.

Two readers:

* :func:`read_log_table` — a user's own log (Parquet / CSV / JSON lines) with one row per event or per
  aggregated pair; columns ``query``, ``doc_id``, ``engagement`` (renamed through a column mapping).
* :func:`read_ubi_events` — UBI (User Behavior Insights) ``events.parquet`` + ``queries.parquet`` as in
  ``shared/data/esci_ubi_logs``: impressions, clicks and add-to-carts of the chosen ``source_kind`` s.

Both return a :class:`QueryLog` whose ``pairs`` hold one row per distinct (query, doc_id) with the summed
engagement and the number of events behind it. A malformed row raises :class:`DataError` naming the file
and the 1-based data row; nothing is dropped without being counted in ``QueryLog.notes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from distilrel.data.schema import DataError
from distilrel.data.validate import ROW, as_text, read_table, rename_columns, require_columns, row_error

LOG_COLUMNS = ("query", "doc_id", "engagement")

#: UBI action → engagement weight. An impression is worth 0: the pair was shown (a real candidate) but
#: nothing says the user liked it; a purchase intent (add to cart) says more than a click.
UBI_WEIGHTS: Mapping[str, float] = {"impression": 0.0, "click": 1.0, "add_to_cart": 2.0}

#: The UBI source kinds of esci_ubi_logs that carry relevance signal; ``synthetic_faker`` is faker noise.
UBI_DEFAULT_KINDS = ("chorus_demo_session",)


@dataclass(frozen=True)
class QueryLog:
    """Logged (query, doc) pairs and, where the log carries it, document text.

    name:      how the log is named in the pool's ``dataset`` column when it brings its own catalog.
    pairs:     query (str), doc_id (str), engagement (float, summed), events (int).
    documents: doc_id, language, title — text seen in the log itself (UBI ``object_description``);
               None when the doc ids refer to a dataset's catalog.
    catalog:   name of the dataset whose documents the doc ids refer to (None: use ``documents``).
    notes:     what was not used and why (counts + example rows), for the pool's provenance file.
    """

    name: str
    pairs: pd.DataFrame
    documents: pd.DataFrame | None = None
    catalog: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.documents is None and self.catalog is None:
            raise ValueError(
                f"query log {self.name!r}: give a catalog dataset for its doc ids (it has no text)"
            )


def parse_column_map(spec: str | None) -> dict[str, str]:
    """``"query=q,doc_id=pid,engagement=clicks"`` → ``{"query": "q", ...}`` (canonical = source)."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        canon, sep, src = part.partition("=")
        canon, src = canon.strip(), src.strip()
        if not sep or not canon or not src:
            raise ValueError(f"bad column mapping {part!r}: use canonical=source, e.g. 'query=search_term'")
        if canon not in LOG_COLUMNS:
            raise ValueError(f"bad column mapping {part!r}: {canon!r} is not one of {list(LOG_COLUMNS)}")
        out[canon] = src
    return out


def read_log_table(
    path: str | Path,
    catalog: str,
    columns: Mapping[str, str] | None = None,
    default_engagement: float | None = None,
) -> QueryLog:
    """Read a user's log table; doc ids refer to the documents of dataset ``catalog``.

    columns:            ``{canonical: source column}`` for the columns named differently in the file.
    default_engagement: engagement of every row when the file has no engagement column (e.g. a plain
                        (query, doc_id) impression list); None: the column is required.
    """
    path = Path(path)
    df = read_table(path)
    df = rename_columns(df, dict(columns or {}), path)
    if "engagement" not in df.columns and default_engagement is not None:
        df["engagement"] = default_engagement
    require_columns(df, LOG_COLUMNS, path, "query log")
    df["query"] = as_text(df["query"])
    df["doc_id"] = as_text(df["doc_id"])
    if (bad := df["query"].str.strip() == "").any():
        raise row_error(df, bad, "query", path, "empty query")
    if (bad := df["doc_id"].str.strip() == "").any():
        raise row_error(df, bad, "doc_id", path, "empty doc id")
    raw = df["engagement"]
    eng = pd.to_numeric(raw, errors="coerce")
    # An empty cell (CSV reads "") is as malformed as "abc": engagement is what ranks the log pairs.
    bad = eng.isna() | (eng < 0) | ~eng.abs().lt(float("inf"))
    if bad.any():
        raise row_error(df, bad, "engagement", path, "engagement is not a finite number >= 0")
    df["engagement"] = eng.astype("float64")
    pairs = _aggregate(df)
    return QueryLog(name=catalog, pairs=pairs, catalog=catalog)


def read_ubi_events(
    folder: str | Path,
    source_kinds: Sequence[str] = UBI_DEFAULT_KINDS,
    weights: Mapping[str, float] = UBI_WEIGHTS,
    name: str = "ubi",
    catalog: str | None = None,
    strict: bool = False,
) -> QueryLog:
    """UBI ``events.parquet`` (+ ``queries.parquet`` when present) → engagement per (query, doc).

    Events of the actions in ``weights`` and of the chosen ``source_kinds`` count. An event's query text is
    its ``user_query``, else the ``user_query`` of its ``query_id`` in ``queries.parquet``; an event with
    neither cannot be attributed to a query: ``strict`` makes that a DataError, otherwise it is counted in
    ``notes`` (the shipped Chorus sessions have such events). A missing object id is always a DataError.
    ``catalog`` None: the documents are the titles the impressions carry (``object_description``).
    """
    folder = Path(folder)
    epath, qpath = folder / "events.parquet", folder / "queries.parquet"
    ev = read_table(epath)
    require_columns(
        ev, ["source_kind", "action_name", "query_id", "user_query", "object_id"], epath, "UBI events"
    )
    for col in ("source_kind", "action_name", "query_id", "user_query", "object_id"):
        ev[col] = as_text(ev[col])
    known = sorted(ev["source_kind"].unique())
    unknown = [k for k in source_kinds if k not in known]
    if unknown:
        raise DataError(f"{epath}: source_kind(s) {unknown} not in the file; it has {known}")
    ev = ev[ev["source_kind"].isin(list(source_kinds)) & ev["action_name"].isin(list(weights))].copy()
    if ev.empty:
        raise DataError(f"{epath}: no {sorted(weights)} events of source_kind {list(source_kinds)}")
    if (bad := ev["object_id"].str.strip() == "").any():
        raise row_error(
            ev, bad, "object_id", epath, f"{ev.loc[bad, 'action_name'].iloc[0]} event without object id"
        )

    notes: list[str] = []
    missing = ev["user_query"].str.strip() == ""
    if missing.any() and qpath.is_file():
        queries = read_table(qpath, ["query_id", "user_query"])
        text_of = dict(zip(as_text(queries["query_id"]), as_text(queries["user_query"]), strict=True))
        ev.loc[missing, "user_query"] = ev.loc[missing, "query_id"].map(text_of).fillna("")
        missing = ev["user_query"].str.strip() == ""
    if missing.any():
        if strict:
            raise row_error(ev, missing, "query_id", epath, "event has no query text and no query record")
        rows = ev.loc[missing, ROW].head(5).tolist()
        notes.append(
            f"{epath}: {int(missing.sum())} event(s) with no query text (no user_query and no record "
            f"in {qpath.name}) not used, e.g. rows {rows}"
        )
        ev = ev[~missing]

    df = pd.DataFrame(
        {
            "query": ev["user_query"].str.strip(),
            "doc_id": ev["object_id"].str.strip(),
            "engagement": ev["action_name"].map(weights).astype("float64"),
        }
    )
    pairs = _aggregate(df)
    documents = None if catalog is not None else _ubi_documents(ev, epath)
    if documents is not None:
        no_text = ~pairs["doc_id"].isin(documents["doc_id"])
        if no_text.any():
            raise DataError(
                f"{epath}: {int(no_text.sum())} logged doc id(s) have no object_description "
                f"(e.g. {pairs.loc[no_text, 'doc_id'].iloc[0]!r}); pass a catalog dataset instead"
            )
    return QueryLog(name=name, pairs=pairs, documents=documents, catalog=catalog, notes=tuple(notes))


def _aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (query, doc_id), in order of first appearance: summed engagement, event count."""
    out = (
        df.groupby(["query", "doc_id"], sort=False)
        .agg(engagement=("engagement", "sum"), events=("engagement", "size"))
        .reset_index()
    )
    out["events"] = out["events"].astype("int64")
    return out


def _ubi_documents(ev: pd.DataFrame, path: Path) -> pd.DataFrame:
    """doc_id → title from the impressions' ``object_description`` (first non-empty one per doc)."""
    if "object_description" not in ev.columns:
        raise DataError(
            f"{path}: no object_description column, so the log has no document text; "
            "pass a catalog dataset for its doc ids"
        )
    desc = as_text(ev["object_description"]).str.strip()
    has = desc != ""
    docs = pd.DataFrame({"doc_id": ev.loc[has, "object_id"].str.strip(), "title": desc[has]})
    docs = docs.drop_duplicates("doc_id", keep="first").reset_index(drop=True)
    docs.insert(1, "language", "")
    return docs
