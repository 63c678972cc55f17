"""The unlabelled pool: (query, document) pairs for the teacher to label.

Queries come from a stream — a query log first (when given), then the *training* queries of each dataset
in the order given (Home Depot first by default: it has the most queries). Candidates per query are the
first-stage retrievers' top k over the query's catalog (all documents of its dataset, or the documents a
log carries), plus the logged pairs themselves.

Leakage guard: a query whose normalised text (NFKC, casefold, whitespace collapsed) is the text of any
validation/test query of ANY dataset — not just the pooled ones — never enters the pool, because the
student trained on these labels is evaluated on those queries. Matching by text, not id, catches the
same query under another id, in another dataset, or typed in a log.

Each (dataset, query, doc) appears once; when several sources found it the first of ``log``, the
retrievers in the order given wins (its rank and score are kept). Row order is deterministic: stream
order of queries, then source, then rank — the labelling job shards by row order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from distilrel.data.schema import DataError, Dataset
from distilrel.data.splits import stable_query_id
from distilrel.evaluate.scorer import Retriever
from distilrel.label.logs import QueryLog

POOL_COLUMNS = ("dataset", "query_id", "query", "doc_id", "source", "rank", "first_stage_score")
EVAL_SPLITS = ("validation", "test")

#: Query stream order when no datasets are named: Home Depot's ~10k queries first.
DEFAULT_DATASETS = ("homedepot", "crowdflower", "scifact", "esci_es", "ja_qa", "xquad_r")

#: Zero-shot embedding model for the ``ann`` retriever (``ann:NAME`` picks another).
DEFAULT_ANN_MODEL = "minilm"

PAIRS_FILE, DOCUMENTS_FILE, INFO_FILE = "pairs.parquet", "documents.parquet", "pool.json"


def normalize_query(text: str) -> str:
    """Query text as compared for leakage: NFKC (full-width → ASCII), casefold, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


@dataclass(frozen=True)
class Catalog:
    """The documents one part of the pool is retrieved from, and the text fields they render with."""

    name: str
    documents: pd.DataFrame  # doc_id, language, one column per field
    fields: tuple[str, ...]
    corpus_by: tuple[str, ...] = ()  # columns partitioning the corpus: a query searches its own partition


@dataclass
class Pool:
    """pairs: POOL_COLUMNS; documents: ``dataset`` + each catalog's document columns, for the docs in
    pairs; info: provenance (datasets, fields, retrievers, k, exclusion counts) written as pool.json."""

    pairs: pd.DataFrame
    documents: pd.DataFrame
    info: dict[str, object] = field(default_factory=dict)

    def fields(self, dataset: str) -> tuple[str, ...]:
        catalogs: dict[str, dict[str, object]] = self.info["catalogs"]  # type: ignore[assignment]
        if dataset not in catalogs:
            raise KeyError(f"pool has no catalog {dataset!r}; it has {sorted(catalogs)}")
        return tuple(catalogs[dataset]["fields"])  # type: ignore[arg-type]


# --- public API ------------------------------------------------------------------------------------


def build_pool(
    datasets: Sequence[str | Dataset] = DEFAULT_DATASETS,
    retrievers: Sequence[str] = ("bm25",),
    k: int = 20,
    max_queries: int | None = None,
    query_log: QueryLog | None = None,
    exclude_from: Sequence[str | Dataset] | None = None,
    make_retriever: Callable[[str], Retriever] | None = None,
    log: Callable[[str], None] = lambda _: None,
    log_pairs: bool = True,
) -> pd.DataFrame:
    """The pairs table (:data:`POOL_COLUMNS`). See :func:`build_pool_tables` for the arguments."""
    return build_pool_tables(
        datasets, retrievers, k, max_queries, query_log, exclude_from, make_retriever, log, log_pairs
    ).pairs


def build_pool_tables(
    datasets: Sequence[str | Dataset] = DEFAULT_DATASETS,
    retrievers: Sequence[str] = ("bm25",),
    k: int = 20,
    max_queries: int | None = None,
    query_log: QueryLog | None = None,
    exclude_from: Sequence[str | Dataset] | None = None,
    make_retriever: Callable[[str], Retriever] | None = None,
    log: Callable[[str], None] = lambda _: None,
    log_pairs: bool = True,
) -> Pool:
    """Build the pool and the documents it refers to.

    datasets:       names (loaded from their default folders) or loaded Datasets; their train queries
                    form the stream, in this order.
    retrievers:     ``bm25`` and/or ``ann`` / ``ann:MODEL``; each contributes its top ``k`` per query.
    max_queries:    cap on the stream (log queries first, then datasets in order).
    query_log:      logged pairs; its queries lead the stream and its pairs enter with source ``log``.
    exclude_from:   datasets whose validation/test query texts are banned, IN ADDITION to the pooled ones;
                    None: every registered dataset whose files are present (the safe default).
    make_retriever: retriever spec → Retriever (default :func:`make_default_retriever`).
    log_pairs:      False: use the log as a query stream only (its doc ids need not be in the catalog).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not retrievers and (query_log is None or not log_pairs):
        raise ValueError("nothing to pool: give at least one retriever, or a query log with its pairs")
    sources = [_source_of(r) for r in retrievers]
    if len(set(sources)) != len(sources):
        raise ValueError(f"retrievers {list(retrievers)} repeat a source; use each of bm25/ann once")
    loaded = [d if isinstance(d, Dataset) else _load(d) for d in datasets]
    names = [ds.name for ds in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"datasets {names} name one dataset twice")

    banned, checked, unavailable = _eval_texts(loaded, exclude_from, log)
    catalogs: dict[str, Catalog] = {}
    streams: list[tuple[Catalog, pd.DataFrame]] = []  # (catalog, queries: query_id, query, corpus cols)
    if query_log is not None:
        cat = _log_catalog(query_log, loaded)
        catalogs[cat.name] = cat
        queries = pd.DataFrame({"query": query_log.pairs["query"].drop_duplicates().tolist()})
        queries.insert(0, "query_id", [stable_query_id(q, prefix="log-") for q in queries["query"]])
        streams.append((cat, queries))
    for ds in loaded:
        cat = Catalog(ds.name, ds.documents, ds.fields, _corpus_by(ds))
        catalogs.setdefault(ds.name, cat)
        train = ds.judgments[ds.judgments["split"] == "train"]
        if train.empty:
            log(f"{ds.name}: no train queries (splits {sorted(ds.judgments['split'].unique())}); none pooled")
        cols = ["query_id", "query", *[c for c in cat.corpus_by if c in train.columns]]
        streams.append((cat, train[cols].drop_duplicates("query_id").reset_index(drop=True)))

    kept, excluded = _filter_streams(streams, banned, max_queries)
    factory = make_retriever or make_default_retriever
    instances: dict[str, Retriever] = {}  # one per spec: a bi-encoder loads its weights once
    parts: list[pd.DataFrame] = []
    for stream_no, (cat, queries) in enumerate(kept):
        if queries.empty:
            continue
        if query_log is not None and log_pairs and stream_no == 0:
            parts.append(_log_rows(cat, queries, query_log))
        for spec in retrievers:
            if spec not in instances:
                instances[spec] = factory(spec)
            parts.append(_retrieve_rows(cat, queries, spec, instances[spec], k, log))
        log(f"{cat.name}: {len(queries)} queries pooled")
    for name, n in excluded.items():
        log(f"{name}: {n} query text(s) excluded as validation/test queries")

    pairs = _order(parts, ["log", *sources], kept)
    documents = _pool_documents(pairs, catalogs)
    n_stream = sum(len(q) for _, q in kept)
    n_queries = int(pairs[["dataset", "query_id"]].drop_duplicates().shape[0])
    if n_queries < n_stream:
        # e.g. a query made only of stopwords, or of terms no document contains: BM25 finds nothing.
        log(f"{n_stream - n_queries} of {n_stream} queries got no candidate from any source")
    info: dict[str, object] = {
        "pairs": len(pairs),
        "queries": n_queries,
        "queries_without_candidates": n_stream - n_queries,
        "retrievers": list(retrievers),
        "k": k,
        "max_queries": max_queries,
        "catalogs": {
            name: {"fields": list(cat.fields), "pairs": int((pairs["dataset"] == name).sum())}
            for name, cat in catalogs.items()
        },
        "excluded_eval_queries": excluded,
        "eval_texts_from": checked,
        "eval_texts_unavailable": unavailable,
        "log_notes": list(query_log.notes) if query_log is not None else [],
    }
    return Pool(pairs, documents, info)


def write_pool(pool: Pool, out: str | Path) -> Path:
    """pairs.parquet, documents.parquet and pool.json in ``out`` (each written atomically)."""
    from distilrel.io import write_json, write_parquet

    out = Path(out)
    write_parquet(out / PAIRS_FILE, pool.pairs)
    write_parquet(out / DOCUMENTS_FILE, pool.documents)
    write_json(out / INFO_FILE, pool.info)
    return out


def read_pool(folder: str | Path) -> Pool:
    """A pool written by :func:`write_pool`."""
    import json

    folder = Path(folder)
    missing = [f for f in (PAIRS_FILE, DOCUMENTS_FILE, INFO_FILE) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: not a pool folder, missing {missing} (build it with `distilrel logs build`)"
        )
    pairs = pd.read_parquet(folder / PAIRS_FILE)
    absent = [c for c in POOL_COLUMNS if c not in pairs.columns]
    if absent:
        raise DataError(f"{folder / PAIRS_FILE}: missing pool column(s) {absent}")
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    return Pool(pairs, pd.read_parquet(folder / DOCUMENTS_FILE), info)


def pool_texts(
    pool: Pool,
    fields: Sequence[str | Mapping[str, object]] | None = None,
    tokenizer: object | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Document text of every pair, in pair order.

    fields: one recipe for all catalogs (the teacher's, so labelling reads what training read); a field a
            catalog lacks reads as empty text for it. None: each catalog's own default fields.
    """
    from distilrel.text.builder import TextBuilder

    docs = pool.documents
    text_of: dict[tuple[str, str], str] = {}
    for name, group in docs.groupby("dataset", sort=False):
        recipe = list(fields) if fields is not None else list(pool.fields(str(name)))
        builder = TextBuilder.from_config(recipe, tokenizer=tokenizer)  # type: ignore[arg-type]
        group = group.copy()
        for col in builder.names:
            if col not in group.columns:
                log(f"{name}: documents have no field {col!r}; it reads as empty text")
                group[col] = ""
        text_of.update(
            zip(zip(group["dataset"], group["doc_id"], strict=True), builder.build_many(group), strict=True)
        )
    keys = list(zip(pool.pairs["dataset"], pool.pairs["doc_id"], strict=True))
    missing = [i for i, key in enumerate(keys) if key not in text_of]
    if missing:
        raise DataError(
            f"pool pair row {missing[0] + 1} ({keys[missing[0]]}) has no document in the pool's "
            f"documents table ({len(missing)} such pairs)"
        )
    return [text_of[key] for key in keys]


def eval_query_texts(datasets: Sequence[Dataset]) -> set[str]:
    """Normalised texts of every validation/test query of ``datasets``."""
    out: set[str] = set()
    for ds in datasets:
        j = ds.judgments
        out.update(j.loc[j["split"].isin(EVAL_SPLITS), "query"].map(normalize_query))
    return out


def make_default_retriever(spec: str) -> Retriever:
    """``bm25`` → BM25; ``ann`` / ``ann:MODEL`` → a zero-shot bi-encoder searching its embeddings."""
    source = _source_of(spec)
    if source == "bm25":
        from distilrel.retrieve.bm25 import BM25Scorer

        return BM25Scorer()
    from distilrel.retrieve.dense import BiEncoderScorer

    _, _, model = spec.partition(":")
    return BiEncoderScorer(model or DEFAULT_ANN_MODEL)


# --- helpers ---------------------------------------------------------------------------------------


def _source_of(spec: str) -> str:
    name = spec.split(":", 1)[0]
    if name not in ("bm25", "ann"):
        raise ValueError(f"unknown retriever {spec!r}; use 'bm25', 'ann' or 'ann:MODEL'")
    return name


def _load(name: str) -> Dataset:
    from distilrel.data.loaders import load_dataset

    return load_dataset(name)


def _corpus_by(ds: Dataset) -> tuple[str, ...]:
    cols = tuple(ds.meta.get("corpus_by", ("language",)))  # type: ignore[arg-type]
    return tuple(c for c in cols if c in ds.documents.columns and c in ds.judgments.columns)


def _eval_texts(
    loaded: Sequence[Dataset], exclude_from: Sequence[str | Dataset] | None, log: Callable[[str], None]
) -> tuple[set[str], list[str], dict[str, str]]:
    """Banned query texts, the datasets they came from, and registered datasets that could not be read."""
    sources: dict[str, Dataset] = {ds.name: ds for ds in loaded}
    unavailable: dict[str, str] = {}
    if exclude_from is None:
        from distilrel.data.loaders import DATASETS

        names = [n for n, spec in DATASETS.items() if spec.folders and n not in sources]
        for name in names:
            try:
                sources[name] = _load(name)
            except (FileNotFoundError, DataError) as exc:  # e.g. the official ESCI files are not here
                unavailable[name] = str(exc).splitlines()[0][:200]
                log(f"eval-query exclusion: {name} not available ({unavailable[name]})")
    else:
        for d in exclude_from:
            ds = d if isinstance(d, Dataset) else _load(d)
            sources.setdefault(ds.name, ds)
    return eval_query_texts(list(sources.values())), sorted(sources), unavailable


def _filter_streams(
    streams: list[tuple[Catalog, pd.DataFrame]], banned: set[str], max_queries: int | None
) -> tuple[list[tuple[Catalog, pd.DataFrame]], dict[str, int]]:
    """Drop eval-query texts, keep the first of repeated texts per catalog, then apply the cap — in
    stream order. Returns the kept queries per stream and the excluded distinct texts per catalog."""
    seen: set[tuple[str, str]] = set()
    kept: list[tuple[Catalog, pd.DataFrame]] = []
    excluded: dict[str, int] = {}
    budget = max_queries
    for cat, queries in streams:
        norm = queries["query"].map(normalize_query)
        is_eval = norm.isin(banned)
        excluded[cat.name] = excluded.get(cat.name, 0) + int(norm[is_eval].nunique())
        keys = pd.Series([(cat.name, n) for n in norm], index=queries.index)
        fresh = ~keys.isin(seen) & ~keys.duplicated()
        take = queries[fresh & ~is_eval]
        if budget is not None:
            take = take.head(budget)
            budget -= len(take)
        seen.update(keys[take.index])
        kept.append((cat, take.reset_index(drop=True)))
    return kept, excluded


def _log_catalog(query_log: QueryLog, loaded: Sequence[Dataset]) -> Catalog:
    if query_log.catalog is None:
        assert query_log.documents is not None  # QueryLog guarantees one of the two
        return Catalog(query_log.name, query_log.documents, ("title",), ())
    ds = next((d for d in loaded if d.name == query_log.catalog), None) or _load(query_log.catalog)
    # Log queries carry no language, so they search the whole catalog (no corpus partition).
    return Catalog(ds.name, ds.documents, ds.fields, ())


def _log_rows(cat: Catalog, queries: pd.DataFrame, query_log: QueryLog) -> pd.DataFrame:
    """Logged pairs of the kept log queries, ranked by engagement within each query (ties: log order)."""
    ids = dict(zip(queries["query"], queries["query_id"], strict=True))
    rows = query_log.pairs[query_log.pairs["query"].isin(ids)].copy()
    unknown = ~rows["doc_id"].isin(cat.documents["doc_id"])
    if unknown.any():
        first = rows[unknown].iloc[0]
        raise DataError(
            f"query log {query_log.name!r}: {int(unknown.sum())} logged pair(s) name a doc id missing from "
            f"catalog {cat.name!r}, e.g. query={first['query']!r} doc_id={first['doc_id']!r}; use a catalog "
            "that holds them, or the log as a query stream only (log_pairs=False)"
        )
    rows["query_id"] = rows["query"].map(ids)
    rows = rows.sort_values("engagement", ascending=False, kind="stable")
    rows["rank"] = rows.groupby("query_id", sort=False).cumcount() + 1
    return pd.DataFrame(
        {
            "dataset": cat.name,
            "query_id": rows["query_id"],
            "query": rows["query"],
            "doc_id": rows["doc_id"],
            "source": "log",
            "rank": rows["rank"],
            # For log pairs the "first-stage score" is the logged engagement (the log is the first stage).
            "first_stage_score": rows["engagement"],
        }
    )


def _retrieve_rows(
    cat: Catalog,
    queries: pd.DataFrame,
    spec: str,
    retriever: Retriever,
    k: int,
    log: Callable[[str], None],
) -> pd.DataFrame:
    """Top-k of one retriever for every query, searching the query's corpus partition."""
    from distilrel.text.builder import TextBuilder

    builder = TextBuilder.from_config(list(cat.fields))
    by = [c for c in cat.corpus_by if c in queries.columns]
    groups = queries.groupby(by, sort=False) if by else [((), queries)]
    rows: list[tuple[str, str, str, int, float]] = []
    for key, group in groups:
        docs = cat.documents
        if by:
            keys = key if isinstance(key, tuple) else (key,)
            mask = pd.Series(True, index=docs.index)
            for col, value in zip(by, keys, strict=True):
                mask &= docs[col] == value
            if mask.any():
                docs = docs[mask]
            else:
                log(
                    f"{cat.name}: no documents with {dict(zip(by, keys, strict=True))}; searching all of them"
                )
        retriever.index(docs["doc_id"].tolist(), builder.build_many(docs))
        hits = retriever.search(group["query"].tolist(), k)
        for qid, query, found in zip(group["query_id"], group["query"], hits, strict=True):
            rows.extend(
                (qid, query, doc_id, rank, float(score)) for rank, (doc_id, score) in enumerate(found, 1)
            )
    out = pd.DataFrame(rows, columns=["query_id", "query", "doc_id", "rank", "first_stage_score"])
    out.insert(0, "dataset", cat.name)
    out.insert(4, "source", _source_of(spec))
    return out


def _order(
    parts: list[pd.DataFrame], sources: list[str], kept: list[tuple[Catalog, pd.DataFrame]]
) -> pd.DataFrame:
    """Concatenate, keep the first source of each (dataset, query, doc), and sort: stream order of the
    queries, then source, then rank."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty_pairs()
    pairs = pd.concat(parts, ignore_index=True)
    position: dict[tuple[str, str], int] = {}
    for cat, queries in kept:
        for qid in queries["query_id"]:
            position.setdefault((cat.name, qid), len(position))
    pairs["_q"] = [position[(d, q)] for d, q in zip(pairs["dataset"], pairs["query_id"], strict=True)]
    pairs["_s"] = pairs["source"].map({s: i for i, s in enumerate(sources)})
    pairs = pairs.sort_values(["_q", "_s", "rank"], kind="stable")
    pairs = pairs.drop_duplicates(["dataset", "query_id", "doc_id"], keep="first")
    pairs = pairs.drop(columns=["_q", "_s"]).reset_index(drop=True)
    return pairs.astype(
        {
            "dataset": str,
            "query_id": str,
            "query": str,
            "doc_id": str,
            "source": str,
            "rank": "int64",
            "first_stage_score": "float64",
        }
    )[list(POOL_COLUMNS)]


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype="int64" if c == "rank" else "float64" if c == "first_stage_score" else str)
            for c in POOL_COLUMNS
        }
    )


def _pool_documents(pairs: pd.DataFrame, catalogs: dict[str, Catalog]) -> pd.DataFrame:
    """The catalog rows of the pooled docs, tagged with their dataset (columns: union, ``""`` filled)."""
    frames = []
    for name, cat in catalogs.items():
        used = set(pairs.loc[pairs["dataset"] == name, "doc_id"])
        docs = cat.documents[cat.documents["doc_id"].isin(used)]
        cols = ["doc_id", *[c for c in ("language", *cat.fields) if c in docs.columns and c != "doc_id"]]
        frames.append(docs[cols].assign(dataset=name)[["dataset", *cols]])
    if not frames:
        return pd.DataFrame({"dataset": pd.Series(dtype=str), "doc_id": pd.Series(dtype=str)})
    out = pd.concat(frames, ignore_index=True)
    return out.fillna("").astype(str)
