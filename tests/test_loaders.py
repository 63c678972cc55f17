"""Loaders, splits and input checks, on small real files written to tmp_path (and, marked slow, on the
real datasets in the shared data folder)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from distilrel.data import DATASETS, SPLITS, DataError, Dataset, load_dataset
from distilrel.data.levels import ESCI_KDD, ESCI_REPO, HOMEDEPOT
from distilrel.data.loaders.homedepot import bin_mean
from distilrel.data.schema import JUDGMENT_COLUMNS
from distilrel.data.splits import assign_splits, carve_validation, hash_unit, stable_query_id

# --- helpers ---------------------------------------------------------------------------------------

WriteTable = Callable[..., Path]  # the `write` fixture of conftest.py


def check_canonical(ds: Dataset) -> None:
    """Invariants every loader promises."""
    j, d = ds.judgments, ds.documents
    assert list(j.columns[: len(JUDGMENT_COLUMNS)]) == list(JUDGMENT_COLUMNS)
    assert list(d.columns[:2]) == ["doc_id", "language"]
    assert set(ds.fields) <= set(d.columns)
    assert j["level"].dtype == "int64"
    assert j["level"].between(0, ds.levels.k - 1).all()
    assert set(j["split"]) <= set(SPLITS)
    assert j["doc_id"].isin(d["doc_id"]).all()
    assert d["doc_id"].is_unique
    assert not j.duplicated(["query_id", "doc_id"]).any()
    assert (j.groupby("query_id")["split"].nunique() == 1).all()
    for col in ("query_id", "query", "doc_id", "label", "split", "language"):
        assert all(isinstance(v, str) for v in j[col]), col
    for col in ("doc_id", "language", *ds.fields):
        assert all(isinstance(v, str) for v in d[col]), col
    assert not [c for c in (*j.columns, *d.columns) if c.startswith("__")]  # bookkeeping removed


def error_text(exc: pytest.ExceptionInfo[DataError]) -> str:
    return str(exc.value)


@pytest.fixture
def user_files(tmp_path: Path, write: WriteTable) -> tuple[Path, Path]:
    """A user's judgments (CSV, own column names, no split / query_id) and documents (Parquet)."""
    judgments = write(
        tmp_path / "j.csv",
        [
            {"q": "red shoes", "pid": "001", "grade": 4},
            {"q": "red shoes", "pid": "002", "grade": 2},
            {"q": "desk lamp", "pid": "003", "grade": 3},
            {"q": "desk lamp", "pid": "001", "grade": 0},
        ],
    )
    documents = write(
        tmp_path / "d.parquet",
        [
            {"doc_id": "001", "title": "Red running shoes", "body": "Soft soles."},
            {"doc_id": "002", "title": "Blue shoes", "body": None},
            {"doc_id": "003", "title": "LED desk lamp", "body": "Warm light."},
        ],
    )
    return judgments, documents


USER_COLUMNS = {"query": "q", "doc_id": "pid", "label": "grade"}


def load_user(judgments: Path, documents: Path | None, **options: object) -> Dataset:
    options.setdefault("columns", USER_COLUMNS)
    return load_dataset("table", judgments=judgments, documents=documents, **options)


# --- registry --------------------------------------------------------------------------------------


def test_registry_lists_every_dataset_and_rejects_unknown_names_and_options(tmp_path: Path) -> None:
    assert set(DATASETS) == {
        "crowdflower",
        "homedepot",
        "scifact",
        "esci",
        "esci_es",
        "xquad_r",
        "ja_qa",
        "judgments",
        "table",
    }
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['locale'\]"):
        load_dataset("crowdflower", data_dir=tmp_path, locale="us")


# --- table: a user's own files ---------------------------------------------------------------------


def test_table_maps_columns_levels_and_assigns_hash_splits(user_files: tuple[Path, Path]) -> None:
    ds = load_user(*user_files, levels="default5", fields=("title", "body"))
    check_canonical(ds)
    j = ds.judgments
    assert ds.fields == ("title", "body")
    # default5: "4" is the most relevant level (index 0), "0" the least (index 4).
    assert j.set_index(["query", "doc_id"])["level"].to_dict() == {
        ("red shoes", "001"): 0,
        ("red shoes", "002"): 2,
        ("desk lamp", "003"): 1,
        ("desk lamp", "001"): 4,
    }
    assert j["doc_id"].tolist() == ["001", "002", "003", "001"]  # CSV ids keep their leading zeros
    assert set(j["query_id"]) == {stable_query_id("red shoes"), stable_query_id("desk lamp")}
    # No split column: each query's split is the hash split of its id, the same on every load.
    expected = assign_splits(j["query_id"])
    assert j["split"].tolist() == expected.tolist()
    assert load_user(*user_files, fields=("title", "body")).judgments.equals(j)
    assert j["language"].unique().tolist() == ["und"]
    assert ds.documents.set_index("doc_id")["body"].to_dict() == {
        "001": "Soft soles.",
        "002": "",
        "003": "Warm light.",
    }
    assert any("no split column" in w for w in ds.meta["warnings"])  # type: ignore[union-attr]


def test_table_fields_default_to_document_columns(user_files: tuple[Path, Path]) -> None:
    ds = load_user(*user_files)
    assert ds.fields == ("title", "body")


def test_table_jsonl_with_split_column_language_and_text_in_judgments(
    tmp_path: Path, write: WriteTable
) -> None:
    rows = [
        {
            "qid": 7,
            "query": "lámpara",
            "doc": "d1",
            "rel": "relevant",
            "set": "val",
            "lang": "es",
            "name": "Lámpara",
        },
        {
            "qid": 7,
            "query": "lámpara",
            "doc": "d2",
            "rel": "not_relevant",
            "set": "val",
            "lang": "es",
            "name": "Mesa",
        },
        {
            "qid": 8,
            "query": "lamp",
            "doc": "d1",
            "rel": "relevant",
            "set": "train",
            "lang": "en",
            "name": "Lámpara",
        },
    ]
    path = write(tmp_path / "j.jsonl", rows)
    ds = load_dataset(
        "table",
        judgments=path,
        columns={
            "query_id": "qid",
            "doc_id": "doc",
            "label": "rel",
            "split": "set",
            "language": "lang",
            "title": "name",
        },
        levels="binary",
        fields=("title",),
        task="retrieve",
    )
    check_canonical(ds)
    assert ds.task == "retrieve"
    assert ds.judgments["split"].tolist() == ["validation", "validation", "train"]  # "val" is an alias
    assert ds.judgments["query_id"].tolist() == ["7", "7", "8"]
    assert ds.documents.set_index("doc_id")["title"].to_dict() == {"d1": "Lámpara", "d2": "Mesa"}
    assert ds.documents.set_index("doc_id")["language"].to_dict() == {"d1": "es", "d2": "es"}


def test_table_segments_and_document_language_from_judgments(
    user_files: tuple[Path, Path], write: WriteTable
) -> None:
    j, d = user_files
    write(j, pd.read_csv(j, dtype=str).assign(lang="de", store=["s1", "s1", "s2", "s2"]))
    write(d, pd.concat([pd.read_parquet(d), pd.DataFrame([{"doc_id": "004", "title": "Unjudged"}])]))
    ds = load_user(j, d, columns={**USER_COLUMNS, "language": "lang"}, segments=("store",), task="retrieve")
    check_canonical(ds)
    assert ds.segments == ("language", "store")
    assert ds.judgments["store"].tolist() == ["s1", "s1", "s2", "s2"]
    # The documents file has no language: judged and unjudged docs take the judgments' (only) language.
    assert set(ds.documents["language"]) == {"de"} and len(ds.documents) == 4


def test_table_relative_paths_resolve_against_data_dir(user_files: tuple[Path, Path]) -> None:
    j, d = user_files
    ds = load_dataset("table", data_dir=j.parent, judgments=j.name, documents=d.name, columns=USER_COLUMNS)
    assert len(ds.judgments) == 4
    assert ds.meta["source_files"] == [str(j), str(d)]


# --- bad input: one test per case, each error names the file, the row and the value ---------------


def test_missing_column_names_file_and_columns(user_files: tuple[Path, Path]) -> None:
    j, d = user_files
    with pytest.raises(DataError) as exc:
        load_user(j, d, columns={"query": "q", "doc_id": "pid", "label": "rating"})
    msg = error_text(exc)
    assert str(j) in msg and "missing column(s) ['rating']" in msg and "'grade'" in msg


def error_after_edit(files: tuple[Path, Path], write: WriteTable, row: int, column: str, value: str) -> str:
    """Set one cell (0-based ``row``) of the user's judgments file; the DataError loading it raises."""
    j, d = files
    df = pd.read_csv(j, dtype=str)
    df.loc[row, column] = value
    write(j, df)
    with pytest.raises(DataError) as exc:
        load_user(j, d)
    return error_text(exc)


def test_unknown_label_names_row_and_value(user_files: tuple[Path, Path], write: WriteTable) -> None:
    msg = error_after_edit(user_files, write, 2, "grade", "7")
    assert msg.startswith(f"{user_files[0]}: row 3: unknown label") and "label='7'" in msg


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_empty_query_is_an_error(user_files: tuple[Path, Path], write: WriteTable, blank: str) -> None:
    msg = error_after_edit(user_files, write, 1, "q", blank)
    assert f"{user_files[0]}: row 2: empty or whitespace-only query" in msg


def test_judged_doc_without_document_is_an_error(user_files: tuple[Path, Path], write: WriteTable) -> None:
    msg = error_after_edit(user_files, write, 3, "pid", "999")
    assert msg.startswith(f"{user_files[0]}: row 4: judged document not found") and "doc_id='999'" in msg


def test_conflicting_duplicate_judgments_name_both_rows(
    user_files: tuple[Path, Path], write: WriteTable
) -> None:
    j, d = user_files
    df = pd.read_csv(j, dtype=str)
    df = pd.concat([df, pd.DataFrame([{"q": "red shoes", "pid": "001", "grade": "1"}])])
    write(j, df)
    with pytest.raises(DataError) as exc:
        load_user(j, d)
    msg = error_text(exc)
    assert str(j) in msg and "different values" in msg
    assert "row 1: label='4'" in msg and "row 5: label='1'" in msg


def test_identical_duplicates_are_collapsed_and_reported(
    user_files: tuple[Path, Path], write: WriteTable
) -> None:
    j, d = user_files
    df = pd.read_csv(j, dtype=str)
    write(j, pd.concat([df, df.iloc[[0, 2]]]))
    ds = load_user(j, d)
    assert len(ds.judgments) == 4
    warning = next(w for w in ds.meta["warnings"] if "identical duplicate" in w)  # type: ignore[union-attr]
    assert "collapsed 2" in warning and "[5, 6]" in warning


def test_query_in_two_splits_is_an_error(user_files: tuple[Path, Path], write: WriteTable) -> None:
    j, d = user_files
    df = pd.read_csv(j, dtype=str).assign(split=["train", "test", "test", "test"])
    write(j, df)
    with pytest.raises(DataError, match=re.escape(f"{j}: row 2:") + ".*appears in two splits"):
        load_user(j, d)


def test_unknown_split_value_is_an_error(user_files: tuple[Path, Path], write: WriteTable) -> None:
    j, d = user_files
    write(j, pd.read_csv(j, dtype=str).assign(split=["train", "train", "holdout", "holdout"]))
    with pytest.raises(DataError, match=re.escape(f"{j}: row 3: unknown split") + ".*'holdout'"):
        load_user(j, d)


def test_unreadable_file_and_unknown_extension(user_files: tuple[Path, Path], tmp_path: Path) -> None:
    _, d = user_files
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=re.escape(f"{broken}: cannot read as parquet")):
        load_user(broken, d)
    xlsx = tmp_path / "j.xlsx"
    xlsx.write_bytes(b"PK")
    with pytest.raises(DataError, match=re.escape(f"{xlsx}: unknown file extension '.xlsx'")):
        load_user(xlsx, d)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope.csv'}: file not found")):
        load_user(tmp_path / "nope.csv", d)


def test_conflicting_duplicate_documents_are_an_error(
    user_files: tuple[Path, Path], write: WriteTable
) -> None:
    j, d = user_files
    docs = pd.read_parquet(d)
    write(d, pd.concat([docs, pd.DataFrame([{"doc_id": "003", "title": "Another lamp", "body": "x"}])]))
    with pytest.raises(
        DataError, match=re.escape(f"{d}: document doc_id='003' appears with different values")
    ):
        load_user(j, d)


# --- splits ----------------------------------------------------------------------------------------


def test_hash_splits_are_deterministic_order_free_and_near_the_fractions() -> None:
    ids = [f"query-{i}" for i in range(3000)]
    a = assign_splits(ids)
    b = assign_splits(list(reversed(ids)))
    assert dict(zip(ids, a, strict=True)) == dict(zip(reversed(ids), b, strict=True))
    share = a.value_counts(normalize=True)
    assert abs(share["train"] - 0.67) < 0.03 and abs(share["validation"] - 0.11) < 0.02
    assert abs(share["test"] - 0.22) < 0.03
    assert assign_splits(ids, seed=1).tolist() != a.tolist()  # the seed picks another partition
    assert 0.0 <= hash_unit("x") < 1.0
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(ids, fractions=(0.5, 0.5, 0.5))


def test_carve_validation_moves_only_train_queries() -> None:
    qids = pd.Series([f"q{i}" for i in range(400)] * 2)
    splits = pd.Series(["train"] * 300 + ["test"] * 100 + ["train"] * 300 + ["test"] * 100)
    out = carve_validation(splits, qids, fraction=0.1)
    assert (out[splits == "test"] == "test").all()
    moved = set(qids[out == "validation"])
    assert 10 <= len(moved) <= 60 and moved <= set(qids[splits == "train"])
    assert (pd.DataFrame({"q": qids, "s": out}).groupby("q")["s"].nunique() == 1).all()


# --- ESCI: the official file layout, and the label-only sample -------------------------------------


@pytest.fixture
def esci_dir(tmp_path: Path, write: WriteTable) -> Path:
    """Official column names; us / es / jp rows; one ASIN judged in two locales; 40 extra train queries."""
    rows = [
        (1, "usb cable", "A1", "us", "E", 1, "train"),
        (1, "usb cable", "A2", "us", "I", 1, "train"),
        (1, "usb cable", "SHARED", "us", "S", 1, "train"),
        (2, "phone case", "A3", "us", "E", 1, "test"),
        (2, "phone case", "A4", "us", "C", 0, "test"),  # large version only
        (3, "cable usb", "B1", "es", "E", 1, "train"),
        (3, "cable usb", "SHARED", "es", "C", 1, "train"),
        (4, "ケーブル", "J1", "jp", "E", 1, "test"),
        (4, "ケーブル", "J2", "jp", "S", 1, "test"),
    ]
    rows += [(100 + i, f"extra query {i}", f"P{i}", "us", "E", 1, "train") for i in range(40)]
    examples = pd.DataFrame(
        rows,
        columns=["query_id", "query", "product_id", "product_locale", "esci_label", "small_version", "split"],
    )
    examples.insert(0, "example_id", range(len(examples)))
    examples["large_version"] = 1
    write(tmp_path / "esci" / "shopping_queries_dataset_examples.parquet", examples)
    products = [
        ("A1", "us", "USB-C cable 2m", "Fast charging.", "braided", "Anker", "black"),
        ("A2", "us", "Garden hose", None, None, "Hoz", "green"),
        ("A3", "us", "Phone case", "Slim.", None, None, None),
        ("A4", "us", "Screen protector", "", None, None, None),
        ("SHARED", "us", "Cable (US listing)", "", None, None, None),
        ("SHARED", "es", "Cable (anuncio ES)", "", None, None, None),
        ("B1", "es", "Cable USB rápido", "Carga rápida.", None, None, None),
        ("J1", "jp", "USBケーブル", "急速充電", None, None, None),
        ("J2", "jp", "充電器", None, None, None, None),
        ("UNJUDGED", "us", "Never judged", None, None, None, None),
        *[(f"P{i}", "us", f"Product {i}", None, None, None, None) for i in range(40)],
    ]
    cols = ["product_id", "product_locale", "product_title", "product_description", "product_bullet_point"]
    cols += ["product_brand", "product_color"]
    write(
        tmp_path / "esci" / "shopping_queries_dataset_products.parquet", pd.DataFrame(products, columns=cols)
    )
    return tmp_path / "esci"


def test_esci_official_all_locales(esci_dir: Path) -> None:
    ds = load_dataset("esci", data_dir=esci_dir)
    check_canonical(ds)
    j, d = ds.judgments, ds.documents.set_index("doc_id")
    assert ds.fields == ("title", "description", "bullets", "brand", "color")
    assert ds.levels == ESCI_KDD and ds.levels.gains[ds.levels.index("S")] == 0.1
    assert set(j["language"]) == {"en", "es", "ja"}
    assert "A4" not in set(j["doc_id"])  # small version (Task 1) by default
    # The ASIN judged in us and es has locale-specific text, so its two ids are qualified.
    assert (
        d.loc["us:SHARED", "title"] == "Cable (US listing)"
        and d.loc["es:SHARED", "title"] == "Cable (anuncio ES)"
    )
    assert (
        d.loc["J1", "language"] == "ja"
        and d.loc["A1", "brand"] == "Anker"
        and d.loc["A2", "description"] == ""
    )
    assert "UNJUDGED" not in d.index
    assert j.set_index(["query_id", "doc_id"]).loc[("1", "A2"), "level"] == ESCI_KDD.index("I")
    # ESCI test stays test; validation is carved from train queries only.
    by_query = j.drop_duplicates("query_id").set_index("query_id")["split"]
    assert by_query[["2", "4"]].tolist() == ["test", "test"]
    carved = set(by_query[by_query == "validation"].index)
    assert carved and carved <= {"1", "3", *(str(100 + i) for i in range(40))}
    assert load_dataset("esci", data_dir=esci_dir).judgments.equals(j)
    assert any("several locales" in w for w in ds.meta["warnings"])  # type: ignore[union-attr]


def test_esci_official_options(esci_dir: Path) -> None:
    jp = load_dataset("esci", data_dir=esci_dir, locale="jp", fields=("title",))
    check_canonical(jp)
    assert set(jp.judgments["language"]) == {"ja"} and jp.fields == ("title",)
    assert list(jp.documents.columns) == ["doc_id", "language", "title"]
    assert jp.documents.set_index("doc_id")["title"].to_dict() == {"J1": "USBケーブル", "J2": "充電器"}

    us = load_dataset("esci", data_dir=esci_dir, locale="us", version="large", gains="esci-repo")
    assert "A4" in set(us.judgments["doc_id"]) and "SHARED" in set(
        us.judgments["doc_id"]
    )  # one locale: no prefix
    assert us.levels == ESCI_REPO and us.levels.gains[us.levels.index("C")] == 0.1
    with pytest.raises(ValueError, match="unknown locale 'fr'"):
        load_dataset("esci", data_dir=esci_dir, locale="fr")
    with pytest.raises(ValueError, match="unknown gains preset"):
        load_dataset("esci", data_dir=esci_dir, gains="ndcg")


def test_esci_judged_product_missing_from_products_file(esci_dir: Path, write: WriteTable) -> None:
    products = esci_dir / "shopping_queries_dataset_products.parquet"
    write(products, pd.read_parquet(products).query("product_id != 'B1'"))
    with pytest.raises(DataError) as exc:
        load_dataset("esci", data_dir=esci_dir)
    msg = error_text(exc)
    assert "shopping_queries_dataset_examples.parquet: row 6: judged document not found" in msg
    assert "doc_id='B1'" in msg


def test_esci_sample_without_ids_splits_or_products(tmp_path: Path, write: WriteTable) -> None:
    """The layout of the shared ESCI-US sample: official names, but no query_id/split/products."""
    rows = [
        {
            "query": "t towels",
            "product_id": "B01",
            "product_locale": "us",
            "esci_label": "E",
            "source_rating": 100.0,
        },
        {
            "query": "t towels",
            "product_id": "B02",
            "product_locale": "us",
            "esci_label": "C",
            "source_rating": 1.0,
        },
        {
            "query": "bandsaw",
            "product_id": "B01",
            "product_locale": "us",
            "esci_label": "I",
            "source_rating": 0.0,
        },
    ]
    write(tmp_path / "shopping_queries_dataset_examples.parquet", rows)
    ds = load_dataset("esci", data_dir=tmp_path)
    check_canonical(ds)
    j = ds.judgments
    assert j["query_id"].tolist()[:2] == [stable_query_id("t towels", prefix="us:q")] * 2
    assert set(j["split"]) == {"test"}
    assert (ds.documents[list(ds.fields)] == "").all().all() and len(ds.documents) == 2
    warnings = " ".join(ds.meta["warnings"])  # type: ignore[arg-type]
    assert "EMPTY text" in warnings and "no split column" in warnings and "no query_id column" in warnings
    with pytest.raises(DataError, match="products file not found, but text fields \\['title'\\]"):
        load_dataset("esci", data_dir=tmp_path, fields=("title",))
    with pytest.raises(DataError, match="missing column\\(s\\) \\['small_version'\\]"):
        load_dataset("esci", data_dir=tmp_path, version="small")


# --- the shared-folder loaders on small copies of their layout -------------------------------------


def test_crowdflower_layout_and_bad_label(tmp_path: Path, write: WriteTable) -> None:
    docs = [{"doc_id": "1", "product_title": "Pillow", "product_description": "Soft.", "language": "en"}]
    write(tmp_path / "documents.parquet", docs)
    judg = [
        {"query_id": "q1", "query": "pillow", "doc_id": "1", "label": 4, "split": "train"},
        {"query_id": "q2", "query": "cushion", "doc_id": "1", "label": 1, "split": "test"},
    ]
    path = write(tmp_path / "judgments.parquet", judg)
    ds = load_dataset("crowdflower", data_dir=tmp_path)
    check_canonical(ds)
    assert ds.judgments["level"].tolist() == [0, 3] and ds.documents["description"].tolist() == ["Soft."]
    write(path, [*judg, {"query_id": "q3", "query": "sofa", "doc_id": "1", "label": 5, "split": "test"}])
    with pytest.raises(DataError, match=re.escape(f"{path}: row 3: unknown label") + ".*label='5'"):
        load_dataset("crowdflower", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("mean", "level"),
    [(3.0, "3.0"), (2.9999999, "3.0"), (2.75, "2.5+"), (2.67, "2.5+"), (2.5, "2.5+"), (2.33, "2.0+"),
     (2.0, "2.0+"), (1.75, "1.5+"), (1.5, "1.5+"), (1.33, "<1.5"), (1.0, "<1.5")],
)  # fmt: skip
def test_homedepot_bin_edges(mean: float, level: str) -> None:
    assert bin_mean(mean) == level
    assert HOMEDEPOT.index(level) == ["3.0", "2.5+", "2.0+", "1.5+", "<1.5"].index(level)


def test_homedepot_layout_rejects_means_outside_range(tmp_path: Path, write: WriteTable) -> None:
    write(tmp_path / "documents.parquet", [{"doc_id": "100001", "product_title": "Angle", "language": "en"}])
    judg = [{"query_id": "q1", "query": "angle bracket", "doc_id": "100001", "label": 2.67, "split": "train"}]
    path = write(tmp_path / "judgments.parquet", judg)
    ds = load_dataset("homedepot", data_dir=tmp_path)
    assert ds.judgments[["label", "level"]].values.tolist() == [["2.67", 1]]
    write(path, [*judg, {**judg[0], "query_id": "q2", "query": "l bracket", "label": 3.5}])
    with pytest.raises(DataError, match=re.escape(f"{path}: row 2: rater mean is not a number in [1, 3]")):
        load_dataset("homedepot", data_dir=tmp_path)


def test_scifact_serves_beir_test_as_test_and_carves_validation(tmp_path: Path, write: WriteTable) -> None:
    write(tmp_path / "documents.parquet", [{"doc_id": "d", "title": "T", "abstract": "A.", "language": "en"}])
    judg = [
        {"query_id": str(i), "query": f"claim {i}", "doc_id": "d", "label": "SUPPORT", "split": split}
        for i, split in enumerate(["train"] * 60 + ["validation"] * 10)
    ]
    write(tmp_path / "judgments.parquet", judg)
    ds = load_dataset("scifact", data_dir=tmp_path)
    check_canonical(ds)
    split = ds.judgments.set_index("query_id")["split"]
    assert set(split[[str(i) for i in range(60, 70)]]) == {"test"}
    assert set(split[[str(i) for i in range(60)]]) == {"train", "validation"}
    kept = load_dataset("scifact", data_dir=tmp_path, test_split=None).judgments["split"]
    assert kept.value_counts().to_dict() == {"train": 60, "validation": 10}


# --- the real datasets (slow: they read the shared folder) -----------------------------------------

REAL = {  # name: (judgments, queries, documents), as the data README counts them
    "crowdflower": (9314, 240, 10158),
    "homedepot": (66424, 10582, 54667),
    "scifact": (1258, 1109, 5183),
    "esci": (6678, 150, 6597),
    "esci_es": (600, 576, 600),
    "xquad_r": (13090, 13090, 13014),
    "ja_qa": (12801, 12801, 3735),
}


def _shared_data() -> Path:
    from distilrel.paths import data_dir

    try:
        root = data_dir()
    except FileNotFoundError:
        pytest.skip("shared data folder not found (set DISTILREL_SHARED)")
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} missing")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_dataset_smoke(name: str) -> None:
    _shared_data()
    ds = load_dataset(name)
    check_canonical(ds)
    n_judgments, n_queries, n_docs = REAL[name]
    assert len(ds.judgments) == n_judgments
    assert ds.judgments["query_id"].nunique() == n_queries
    assert len(ds.documents) == n_docs
    assert "test" in set(ds.judgments["split"])
    if name in ("crowdflower", "homedepot", "esci_es"):
        assert set(ds.judgments["split"]) == set(SPLITS)
    if name == "xquad_r":
        assert ds.judgments["language"].nunique() == 11 and ds.task == "retrieve"
    if name == "ja_qa":
        assert ds.judgments["source"].nunique() == 3 and set(ds.judgments["split"]) == {"test"}
    if name != "esci":  # the ESCI sample has no product text; every other set has titles or text
        assert (ds.documents[ds.fields[0]] != "").mean() > 0.9
