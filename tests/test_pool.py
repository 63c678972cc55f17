"""The unlabelled pool and the log readers, on small real tables (in memory and in tmp_path) and, marked
slow, on the shared data (every dataset's eval queries, the UBI events)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from distilrel.data.levels import BINARY
from distilrel.data.schema import DataError, Dataset
from distilrel.label.logs import QueryLog, parse_column_map, read_log_table, read_ubi_events
from distilrel.label.pool import (
    POOL_COLUMNS,
    build_pool,
    build_pool_tables,
    normalize_query,
    pool_texts,
    read_pool,
    write_pool,
)
from distilrel.paths import data_dir

DOCS = {
    "d1": "red running shoes with soft sole",
    "d2": "blue running shoes",
    "d3": "led desk lamp bright light",
    "d4": "warm light desk lamp",
    "d5": "white canvas shoe",
    "d6": "soft sole slippers",
    "d7": "red desk lamp",
}


def make_dataset(name: str, queries: list[tuple[str, str, str]], docs: dict[str, str] = DOCS) -> Dataset:
    """A judged dataset: ``queries`` are (query_id, text, split); each query judges doc d1."""
    documents = pd.DataFrame({"doc_id": list(docs), "language": "en", "title": list(docs.values())})
    judgments = pd.DataFrame(
        [
            {
                "query_id": qid,
                "query": q,
                "doc_id": "d1",
                "level": 0,
                "label": "1",
                "split": split,
                "language": "en",
            }
            for qid, q, split in queries
        ]
    )
    return Dataset(name, documents, judgments, BINARY, ("title",))


@pytest.fixture
def shop() -> Dataset:
    return make_dataset(
        "shop",
        [
            ("s1", "Red Shoes", "train"),  # its text is a validation query of `other`
            ("s2", "blue running shoes", "train"),
            (
                "s3",
                "ＬＥＤ  Desk   lamp",
                "train",
            ),  # full-width + spaces: `other`'s test query "led desk lamp"
            ("s4", "warm light", "train"),
            ("s5", "bright lamp", "validation"),
            ("s6", "soft sole", "test"),
            ("s7", "WARM light ", "train"),  # the same text as s4 once normalised: pooled once
        ],
    )


@pytest.fixture
def other() -> Dataset:
    return make_dataset("other", [("o1", "led desk lamp", "test"), ("o2", "red shoes ", "validation")])


def test_normalize_query_folds_width_case_and_space() -> None:
    assert normalize_query("  ＬＥＤ\tDesk  LAMP ") == "led desk lamp"
    assert normalize_query("Straße") == normalize_query("STRASSE")


def test_no_eval_query_text_reaches_the_pool(shop: Dataset, other: Dataset, tmp_path: Path) -> None:
    log_file = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "q": ["Soft  Sole", "white shoe", "BRIGHT LAMP", "white shoe"],  # shop's test / new / shop's val
            "pid": ["d6", "d5", "d3", "d2"],
            "clicks": [3, 2, 5, 1],
        }
    ).to_csv(log_file, index=False)
    log = read_log_table(log_file, "shop", {"query": "q", "doc_id": "pid", "engagement": "clicks"})

    pool = build_pool_tables([shop], k=3, query_log=log, exclude_from=[other])

    banned = {normalize_query(q) for q in ["soft sole", "bright lamp", "led desk lamp", "red shoes"]}
    pooled = set(pool.pairs["query"].map(normalize_query))
    assert pooled.isdisjoint(banned)
    assert pooled == {"blue running shoes", "warm light", "white shoe"}
    assert pool.info["excluded_eval_queries"] == {
        "shop": 4
    }  # soft sole + bright lamp (log), red shoes + led lamp
    assert pool.info["eval_texts_from"] == ["other", "shop"]
    # The eval rows of the log are gone, its other pairs are there with source "log".
    log_rows = pool.pairs[pool.pairs["source"] == "log"]
    assert sorted(log_rows["doc_id"]) == ["d2", "d5"]


def test_pool_columns_sources_dedup_and_order(shop: Dataset) -> None:
    log = QueryLog(
        name="shop",
        pairs=pd.DataFrame(
            {
                "query": ["warm light", "warm light"],
                "doc_id": ["d7", "d4"],
                "engagement": [1.0, 4.0],
                "events": [1, 2],
            }
        ),
        catalog="shop",
    )
    pairs = build_pool([shop], k=2, query_log=log, exclude_from=[])

    assert tuple(pairs.columns) == POOL_COLUMNS
    assert pairs["rank"].dtype == "int64" and pairs["first_stage_score"].dtype == "float64"
    assert not pairs.duplicated(["dataset", "query_id", "doc_id"]).any()
    warm = pairs[pairs["query"] == "warm light"]
    # Log pairs first, by engagement; BM25's top-2 are d4 (already logged: the log row wins) and d3,
    # which keeps its own BM25 rank.
    rows = warm[["doc_id", "source", "rank"]].values.tolist()
    assert rows == [["d4", "log", 1], ["d7", "log", 2], ["d3", "bm25", 2]]
    assert warm["first_stage_score"].iloc[:2].tolist() == [4.0, 1.0]  # the engagement
    # The log query leads the stream; the dataset's copy of the same text is not pooled a second time.
    assert pairs["query"].iloc[0] == "warm light"
    assert warm["query_id"].nunique() == 1 and warm["query_id"].iloc[0].startswith("log-")
    bm25 = pairs[(pairs["source"] == "bm25") & (pairs["query"] != "warm light")]
    for _, g in bm25.groupby("query_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert g["first_stage_score"].is_monotonic_decreasing
    pd.testing.assert_frame_equal(pairs, build_pool([shop], k=2, query_log=log, exclude_from=[]))


def test_max_queries_takes_the_stream_in_order(shop: Dataset, other: Dataset) -> None:
    second = make_dataset("second", [("x1", "white canvas shoe", "train"), ("x2", "red desk lamp", "train")])
    pairs = build_pool([shop, second], k=1, max_queries=3, exclude_from=[other])
    # shop has 2 distinct train texts that are not eval texts; the cap leaves room for 1 of `second`.
    assert pairs.drop_duplicates("query_id")[["dataset", "query"]].values.tolist() == [
        ["shop", "blue running shoes"],
        ["shop", "warm light"],
        ["second", "white canvas shoe"],
    ]


def test_queries_search_their_own_language(shop: Dataset) -> None:
    docs = pd.DataFrame(
        {
            "doc_id": ["en1", "en2", "de1", "de2"],
            "language": ["en", "en", "de", "de"],
            "title": ["desk lamp", "lamp shade", "Lampe für den Schreibtisch", "lamp Lampe"],
        }
    )
    judgments = pd.DataFrame(
        {
            "query_id": ["q1", "q2"],
            "query": ["lamp", "Lampe"],
            "doc_id": ["en1", "de1"],
            "level": [0, 0],
            "label": ["1", "1"],
            "split": ["train", "train"],
            "language": ["en", "de"],
        }
    )
    ds = Dataset("multi", docs, judgments, BINARY, ("title",), meta={"corpus_by": ("language",)})
    pairs = build_pool([ds], k=5, exclude_from=[])
    by_query = pairs.groupby("query")["doc_id"].apply(set).to_dict()
    assert by_query == {"lamp": {"en1", "en2"}, "Lampe": {"de1", "de2"}}


def test_write_read_pool_and_texts(shop: Dataset, tmp_path: Path) -> None:
    pool = build_pool_tables([shop], k=2, exclude_from=[])
    write_pool(pool, tmp_path / "pool")
    back = read_pool(tmp_path / "pool")
    pd.testing.assert_frame_equal(back.pairs, pool.pairs)
    assert json.loads((tmp_path / "pool" / "pool.json").read_text())["catalogs"]["shop"]["fields"] == [
        "title"
    ]
    texts = pool_texts(back)
    assert texts == [f"title: {DOCS[d]}" for d in pool.pairs["doc_id"]]
    assert pool_texts(back, fields=[{"name": "title", "label": ""}])[0] == DOCS[pool.pairs["doc_id"].iloc[0]]
    with pytest.raises(FileNotFoundError, match="not a pool folder"):
        read_pool(tmp_path)


def test_log_pairs_must_exist_in_the_catalog(shop: Dataset) -> None:
    pairs = pd.DataFrame({"query": ["hat"], "doc_id": ["nope"], "engagement": [1.0], "events": [1]})
    log = QueryLog("shop", pairs, catalog="shop")
    with pytest.raises(DataError, match=r"doc id missing from catalog 'shop'.*doc_id='nope'"):
        build_pool([shop], query_log=log, exclude_from=[])
    # As a query stream only, the log's queries are retrieved against the catalog instead.
    found = build_pool([shop], query_log=log, exclude_from=[], log_pairs=False, k=2)
    assert "log" not in set(found["source"]) and not found.empty
    assert "hat" not in set(found["query"])  # it shares no term with the catalog: BM25 finds nothing


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown retriever"):
        build_pool([], retrievers=("tfidf",), exclude_from=[])
    with pytest.raises(ValueError, match="k must be"):
        build_pool([], k=0, exclude_from=[])


# --- logs ----------------------------------------------------------------------------------------


def test_read_log_table_formats_mapping_and_aggregation(tmp_path: Path) -> None:
    rows = pd.DataFrame({"search": ["lamp", "lamp", "shoe"], "sku": ["007", "007", "1"], "eng": [1, 2.5, 0]})
    rows.to_json(tmp_path / "log.jsonl", orient="records", lines=True)
    rows.to_parquet(tmp_path / "log.parquet")
    mapping = parse_column_map("query=search, doc_id=sku,engagement=eng")
    for f in ("log.jsonl", "log.parquet"):
        log = read_log_table(tmp_path / f, "shop", mapping)
        assert log.pairs.values.tolist() == [["lamp", "007", 3.5, 2], ["shoe", "1", 0.0, 1]]
    plain = read_log_table(
        tmp_path / "log.parquet", "shop", {"query": "search", "doc_id": "sku"}, default_engagement=1
    )
    assert plain.pairs["engagement"].tolist() == [2.0, 1.0]


@pytest.mark.parametrize(
    ("cells", "match"),
    [
        (
            {"engagement": ["1", "lots"]},
            r"log.csv: row 2: engagement is not a finite number >= 0: engagement='lots'",
        ),
        ({"engagement": ["1", "-1"]}, r"row 2: engagement is not a finite number"),
        ({"engagement": ["1", ""]}, r"row 2: engagement"),
        ({"query": ["lamp", " "]}, r"log.csv: row 2: empty query"),
        ({"doc_id": ["", "d1"]}, r"log.csv: row 1: empty doc id"),
    ],
)
def test_malformed_log_rows_name_file_and_row(
    tmp_path: Path, cells: dict[str, list[str]], match: str
) -> None:
    table = {"query": ["lamp", "shoe"], "doc_id": ["d1", "d2"], "engagement": ["1", "2"]} | cells
    pd.DataFrame(table).to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataError, match=match):
        read_log_table(tmp_path / "log.csv", "shop")


def test_log_missing_column_and_bad_mapping(tmp_path: Path) -> None:
    pd.DataFrame({"query": ["a"], "doc_id": ["d"]}).to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['engagement'\]"):
        read_log_table(tmp_path / "log.csv", "shop")
    with pytest.raises(ValueError, match="not one of"):
        parse_column_map("clicks=c")


def _ubi_folder(tmp_path: Path) -> Path:
    """A small UBI export: a real session kind, a faker kind, events with and without query text."""
    ev = [
        ("chorus", "impression", "qa", "lamp", "B1", "LED desk lamp"),
        ("chorus", "click", "qa", "lamp", "B1", "LED desk lamp"),
        ("chorus", "add_to_cart", "qa", "lamp", "B1", "LED desk lamp"),
        ("chorus", "impression", "qa", "lamp", "B2", "warm lamp"),
        ("chorus", "impression", "qb", "", "B3", "red shoe"),  # query text only in queries.parquet
        ("chorus", "click", "qz", "", "B3", "red shoe"),  # no query text anywhere
        ("chorus", "search", "qa", "lamp", "", ""),  # not an engagement action: ignored
        ("faker", "click", "qf", "fake", "E1", "x"),
    ]
    cols = ["source_kind", "action_name", "query_id", "user_query", "object_id", "object_description"]
    folder = tmp_path / "ubi"
    folder.mkdir()
    pd.DataFrame(ev, columns=cols).to_parquet(folder / "events.parquet")
    pd.DataFrame({"query_id": ["qa", "qb"], "user_query": ["lamp", "shoe"]}).to_parquet(
        folder / "queries.parquet"
    )
    return folder


def test_read_ubi_events(tmp_path: Path) -> None:
    folder = _ubi_folder(tmp_path)
    log = read_ubi_events(folder, source_kinds=["chorus"])
    assert log.pairs.values.tolist() == [
        ["lamp", "B1", 3.0, 3],
        ["lamp", "B2", 0.0, 1],
        ["shoe", "B3", 0.0, 1],
    ]
    assert log.documents is not None
    titles = dict(zip(log.documents["doc_id"], log.documents["title"], strict=True))
    assert titles == {"B1": "LED desk lamp", "B2": "warm lamp", "B3": "red shoe"}
    assert (
        len(log.notes) == 1 and "1 event(s) with no query text" in log.notes[0] and "rows [6]" in log.notes[0]
    )
    with pytest.raises(DataError, match=r"events.parquet: row 6: event has no query text"):
        read_ubi_events(folder, source_kinds=["chorus"], strict=True)
    with pytest.raises(DataError, match=r"source_kind\(s\) \['chorus_demo_session'\] not in the file"):
        read_ubi_events(folder)

    pool = build_pool([], k=2, query_log=log, exclude_from=[])
    assert set(pool["dataset"]) == {"ubi"}
    assert pool[pool["source"] == "log"]["doc_id"].tolist() == ["B1", "B2", "B3"]


def test_ubi_event_without_object_id_is_an_error(tmp_path: Path) -> None:
    folder = _ubi_folder(tmp_path)
    ev = pd.read_parquet(folder / "events.parquet")
    ev.loc[1, "object_id"] = None
    ev.to_parquet(folder / "events.parquet")
    with pytest.raises(DataError, match=r"events.parquet: row 2: click event without object id"):
        read_ubi_events(folder, source_kinds=["chorus"])


# --- shared data (slow: loads every registered dataset) ------------------------------------------


def _shared(folder: str) -> Path:
    try:
        path = data_dir() / folder
    except FileNotFoundError:
        pytest.skip("shared data folder not found (set DISTILREL_SHARED)")
    if not path.is_dir():
        pytest.skip(f"{path} missing")
    return path


@pytest.mark.slow
def test_real_eval_queries_of_every_dataset_stay_out(shop: Dataset, tmp_path: Path) -> None:
    """Eval queries of the shared datasets, typed into a log with other spelling, never reach the pool."""
    from distilrel.data import load_dataset

    _shared("homedepot_search_relevance")
    eval_texts = []
    for name in ("homedepot", "crowdflower", "scifact"):
        j = load_dataset(name).judgments
        eval_texts += (
            j.loc[j["split"].isin(["validation", "test"]), "query"].drop_duplicates().head(20).tolist()
        )
    typed = [f"  {q.upper()} " for q in eval_texts] + ["blue running shoes"]
    pd.DataFrame({"query": typed, "doc_id": "d1", "engagement": 1}).to_parquet(tmp_path / "log.parquet")
    log = read_log_table(tmp_path / "log.parquet", "shop")

    pool = build_pool_tables([shop], k=3, query_log=log)  # exclude_from=None: every registered dataset
    pooled = set(pool.pairs["query"].map(normalize_query))
    assert pooled.isdisjoint({normalize_query(q) for q in eval_texts})
    assert "blue running shoes" in pooled
    assert {"homedepot", "crowdflower", "scifact", "xquad_r"} <= set(pool.info["eval_texts_from"])


@pytest.mark.slow
def test_real_ubi_logs_make_a_pool() -> None:
    log = read_ubi_events(_shared("esci_ubi_logs"))
    assert log.documents is not None and len(log.pairs) > 400
    assert any("no query text" in n for n in log.notes)  # the Chorus export has unattributable events
    pairs = build_pool([], k=3, query_log=log, exclude_from=[])
    assert {"log", "bm25"} == set(pairs["source"])
    assert pairs["doc_id"].isin(log.documents["doc_id"]).all()
