"""The judgments table (append, read, conflicts, bad rows, a writer killed mid-append), the agreement
computations on hand-computed inputs, and the ``judgments`` dataset loader that lets ``distilrel teacher
train`` learn from the explorer's judgments."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distilrel.data import DataError, load_dataset
from distilrel.data.levels import DEFAULT_5
from distilrel.judge import (
    Disagreement,
    Judgment,
    JudgmentStore,
    conflicts,
    confusion,
    most_disagreeing,
    rank_disagreement,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- the store ------------------------------------------------------------------------------------------


def test_append_writes_one_part_per_batch_and_reads_back_in_time_order(tmp_path: Path) -> None:
    store = JudgmentStore(tmp_path / "j", DEFAULT_5)
    assert store.read().empty and list(store.read().columns) == [
        "query",
        "doc_id",
        "label",
        "annotator",
        "judged_at",
    ]
    later = store.append([Judgment("red shoe", "p1", "good", "ann", at(5))])
    earlier = store.append(
        [Judgment("red shoe", "p2", "bad", "ann", at(1)), Judgment("lamp", "p9", "fair", "bob", at(2))]
    )
    assert store.parts() == sorted([earlier, later]) and earlier.name < later.name  # named by time
    df = store.read()
    assert df[["doc_id", "label", "annotator"]].values.tolist() == [
        ["p2", "bad", "ann"],
        ["p9", "fair", "bob"],
        ["p1", "good", "ann"],
    ]
    assert str(df["judged_at"].dt.tz) == "UTC" and df["judged_at"].iloc[0] == pd.Timestamp(at(1))
    # Time zones are converted to UTC; a naive time is refused (it would be ambiguous on disk).
    cet = datetime(2025, 3, 1, 14, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert Judgment("q", "d", "good", "a", cet).judged_at.tzinfo is UTC
    with pytest.raises(ValueError, match="time zone"):
        Judgment("q", "d", "good", "a", datetime(2025, 1, 1))


def test_conflicting_judgments_are_all_kept_and_listed(tmp_path: Path) -> None:
    store = JudgmentStore(tmp_path / "j", DEFAULT_5)
    store.append([Judgment("red shoe", "p1", "good", "ann", at(1))])
    store.append([Judgment("red shoe", "p1", "bad", "bob", at(2))])
    store.append([Judgment("red shoe", "p1", "good", "cy", at(3))])
    store.append(
        [Judgment("red shoe", "p2", "fair", "ann", at(4)), Judgment("red shoe", "p2", "fair", "bob", at(5))]
    )
    df = store.read()
    assert len(df) == 5  # nothing collapsed, not even the agreeing repeat
    c = conflicts(df)
    assert c.to_dict("records") == [
        {
            "query": "red shoe",
            "doc_id": "p1",
            "labels": ["good", "bad", "good"],
            "annotators": ["ann", "bob", "cy"],
            "n": 3,
        }
    ]
    assert conflicts(df.iloc[0:0]).empty


def test_bad_rows_are_named_with_file_and_row(tmp_path: Path) -> None:
    store = JudgmentStore(tmp_path / "j", DEFAULT_5)
    with pytest.raises(DataError, match=r"judgment batch: row 2: not a level name .*label='superb'"):
        store.append([Judgment("q", "d1", "good", "ann"), Judgment("q", "d2", "superb", "ann")])
    with pytest.raises(DataError, match=r"row 1: annotator must be a non-blank string"):
        store.append([Judgment("q", "d1", "good", "  ")])
    assert store.parts() == []  # a refused batch writes nothing
    store.append([Judgment("q", "d1", "good", "ann", at(0))])

    schema = pa.schema([(c, pa.string()) for c in ("query", "doc_id", "label", "annotator")])
    times = pa.array([at(1), at(2), at(3)], pa.timestamp("us", tz="UTC"))
    hand = tmp_path / "j" / "part-20250301T130000000000Z-hand.parquet"
    cols = [["q", "q", "q"], ["d1", "d2", " "], ["good", "bad", "fair"], ["ann", "ann", "ann"]]
    pq.write_table(
        pa.Table.from_arrays(
            [*map(pa.array, cols), times], schema=schema.append(pa.field("judged_at", times.type))
        ),
        hand,
    )
    with pytest.raises(DataError, match=rf"{hand}: row 3: doc_id must be a non-blank string"):
        store.read()
    hand.unlink()

    cols[2][1] = "meh"
    cols[1][2] = "d3"
    table = pa.Table.from_arrays(
        [*map(pa.array, cols), times], names=["query", "doc_id", "label", "annotator", "judged_at"]
    )
    pq.write_table(table, hand)
    with pytest.raises(DataError, match=rf"{hand}: row 2: not a level name"):
        store.read()
    hand.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=rf"{hand}: unreadable judgments part"):
        store.read()
    pq.write_table(table.drop(["annotator"]), hand)
    with pytest.raises(DataError, match=rf"{hand}: judgments part lacks column\(s\) \['annotator'\]"):
        store.read()
    hand.unlink()
    (tmp_path / "j" / ".part-x.parquet.tmp").write_bytes(b"half a file")  # a killed writer's leftover
    assert len(store.read()) == 1


WRITER = textwrap.dedent(
    """
    import sys
    from distilrel.data.levels import DEFAULT_5
    from distilrel.judge.store import Judgment, JudgmentStore

    store = JudgmentStore(sys.argv[1], DEFAULT_5)
    i = 0
    while True:
        store.append([Judgment("q%d" % (i % 7), "d%d" % i, DEFAULT_5.names[i % 5], "writer")])
        print("ack", i, flush=True)  # acknowledged only once append() has returned
        i += 1
    """
)


def test_a_writer_killed_mid_append_loses_at_most_the_judgment_in_flight(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = 0
    try:
        for line in proc.stdout:
            assert line.startswith("ack ")
            acked += 1
            if acked == 40:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # acks printed between our last read and the kill
        proc.wait(10)
    acked += rest.count("ack ")
    assert proc.returncode == -signal.SIGKILL

    store = JudgmentStore(folder, DEFAULT_5)
    df = store.read()  # every part readable: a part is whole or absent
    assert acked <= len(df) <= acked + 1
    assert len(store.parts()) == len(df)
    assert df["doc_id"].tolist() == [f"d{i}" for i in range(len(df))]  # no acknowledged judgment lost


# --- agreement -----------------------------------------------------------------------------------------


def test_confusion_counts_by_hand() -> None:
    # human levels (rows) vs model levels (columns); the scales may differ (3 human levels, 2 model levels).
    got = confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 1, 1, 0], k_human=3, k_model=2)
    assert got.tolist() == [[1, 1], [0, 1], [1, 2]]
    assert confusion([], [], 2, 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match=r"model levels must lie in 0..1"):
        confusion([0], [2], 2, 2)


def test_rank_disagreement_by_hand() -> None:
    d = rank_disagreement([0.9, 0.5, 0.1], [0.1, 0.5, 0.9])
    assert d.spearman == pytest.approx(-1.0) and d.mean_abs_diff == pytest.approx(1.6 / 3) and d.n == 3
    # With a tie: ranks of a = 1, 2.5, 2.5, 4 and of b = 1, 3, 2, 4; Pearson of the ranks:
    # mean 2.5, deviations a (-1.5, 0, 0, 1.5), b (-1.5, .5, -.5, 1.5): cov 4.5, var_a 4.5, var_b 5.
    tied = rank_disagreement([0.1, 0.5, 0.5, 0.9], [0.2, 0.6, 0.4, 0.8])
    assert tied.spearman == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
    assert tied.mean_abs_diff == pytest.approx(0.1)
    flat = rank_disagreement([0.3, 0.3], [0.1, 0.2])
    assert math.isnan(flat.spearman) and flat.mean_abs_diff == pytest.approx(0.15)
    assert rank_disagreement([], []).n == 0


def test_most_disagreeing_orders_low_correlation_first() -> None:
    by_query = {
        "agree": Disagreement(0.9, 0.1, 5),
        "reversed": Disagreement(-0.8, 0.4, 5),
        "flat": Disagreement(math.nan, 0.5, 2),
        "tie-small-gap": Disagreement(0.2, 0.1, 5),
        "tie-big-gap": Disagreement(0.2, 0.3, 5),
    }
    order = [q for q, _ in most_disagreeing(by_query)]
    assert order == ["reversed", "tie-big-gap", "tie-small-gap", "agree", "flat"]
    assert [q for q, _ in most_disagreeing(by_query, top=2)] == ["reversed", "tie-big-gap"]


# --- the judgments dataset (the teacher's hook) ----------------------------------------------------------


@pytest.fixture
def catalog_files(tmp_path: Path) -> dict[str, str]:
    judged = pd.DataFrame(
        {
            "query": ["red shoe", "red shoe", "blue lamp"],
            "doc_id": ["p1", "p2", "p3"],
            "label": ["good", "bad", "fair"],
        }
    )
    docs = pd.DataFrame(
        {"doc_id": ["p1", "p2", "p3", "p4"], "title": ["red shoe", "red sole", "blue lamp", "desk"]}
    )
    judged.to_csv(tmp_path / "cat.csv", index=False)
    docs.to_parquet(tmp_path / "docs.parquet", index=False)
    return {"judgments": str(tmp_path / "cat.csv"), "documents": str(tmp_path / "docs.parquet")}


def _fill(folder: Path) -> JudgmentStore:
    store = JudgmentStore(folder, DEFAULT_5)
    store.append([Judgment("red shoe", "p1", "good", "ann", at(1))])
    store.append([Judgment("red shoe", "p1", "bad", "bob", at(2))])
    store.append(
        [Judgment("red shoe", "p1", "good", "cy", at(3)), Judgment("red shoe", "p1", "fair", "ann", at(4))]
    )
    store.append([Judgment("desk lamp", "p4", "excellent", "ann", at(5))])
    return store


def test_judgments_load_as_a_dataset_with_the_catalogs_texts_and_splits(
    tmp_path: Path, catalog_files: dict[str, str]
) -> None:
    _fill(tmp_path / "j")
    cat = load_dataset("table", **catalog_files)
    ds = load_dataset("judgments", tmp_path / "j", catalog="table", catalog_options=catalog_files)
    assert ds.name == "judgments" and ds.levels == DEFAULT_5 and ds.fields == ("title",)
    j = ds.judgments.set_index("query")
    assert j.loc["red shoe", "label"] == "fair" and j.loc["red shoe", "level"] == 2  # latest wins
    # A query the catalog judges keeps the catalog's id and split (no test query leaks into train).
    known = cat.queries.set_index("query")
    assert j.loc["red shoe", "query_id"] == known.loc["red shoe", "query_id"]
    assert j.loc["red shoe", "split"] == known.loc["red shoe", "split"]
    assert j.loc["desk lamp", "split"] in ("train", "validation", "test")
    assert (
        sorted(ds.documents["doc_id"]) == ["p1", "p4"]
        and "1 pair(s) had conflicting" in ds.meta["warnings"][0]
    )
    majority = load_dataset(
        "judgments", tmp_path / "j", catalog="table", catalog_options=catalog_files, conflicts="majority"
    )
    assert majority.judgments.set_index("query").loc["red shoe", "label"] == "good"  # 2 votes of 4
    with pytest.raises(DataError, match="the pair has conflicting judgments"):
        load_dataset(
            "judgments", tmp_path / "j", catalog="table", catalog_options=catalog_files, conflicts="error"
        )


def test_a_judged_document_missing_from_the_catalog_names_its_part_and_row(
    tmp_path: Path, catalog_files: dict[str, str]
) -> None:
    store = _fill(tmp_path / "j")
    part = store.append(
        [
            Judgment("desk lamp", "p4", "good", "ann", at(6)),
            Judgment("desk lamp", "p99", "good", "ann", at(7)),
        ]
    )
    with pytest.raises(DataError, match=rf"{part}: row 2: judged document not found in catalog 'table'.*p99"):
        load_dataset("judgments", tmp_path / "j", catalog="table", catalog_options=catalog_files)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no judgments yet"):
        load_dataset("judgments", tmp_path / "empty", catalog="table", catalog_options=catalog_files)


def test_teacher_config_takes_the_judgments_folder_as_a_dataset(
    tmp_path: Path, catalog_files: dict[str, str]
) -> None:
    from distilrel.config import load_datasets
    from distilrel.teacher.config import load_config

    _fill(tmp_path / "j")
    config = tmp_path / "teacher.toml"
    # The catalog's own options as a sub-table: the TOML a user writes for their judgments folder.
    config.write_text(
        textwrap.dedent(
            f"""
            [[data.datasets]]
            name = "judgments"
            path = "{tmp_path / "j"}"
            options.catalog = "table"
            options.catalog_options.judgments = "{catalog_files["judgments"]}"
            options.catalog_options.documents = "{catalog_files["documents"]}"

            [levels]
            preset = "default5"

            [model]
            backbone = "{tmp_path / "no-model"}"
            """
        )
    )
    (ds,) = load_datasets(load_config(config))
    assert ds.name == "judgments" and sorted(ds.judgments["query"]) == ["desk lamp", "red shoe"]
