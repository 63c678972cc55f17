"""Document text builder and the engaged-queries field."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from distilrel.data import load_dataset
from distilrel.data.levels import DEFAULT_5
from distilrel.text import FieldSpec, TextBuilder, add_engaged_queries, content_hash, engaged_queries

DOCS = pd.DataFrame(
    {
        "doc_id": ["a", "b", "c"],
        "title": ["Red  running\nshoes", "Desk lamp", ""],
        "description": ["Soft soles for long runs on the road", None, "Warm   light"],
        "brand": ["Acme", "", float("nan")],
    }
)


# --- TextBuilder -----------------------------------------------------------------------------------


def test_build_renders_labels_in_order_and_skips_empty_fields() -> None:
    tb = TextBuilder([FieldSpec("title", "Title"), FieldSpec("brand", ""), FieldSpec("description")])
    assert tb.build(DOCS.iloc[0].to_dict()) == (
        "Title: Red running shoes\nAcme\ndescription: Soft soles for long runs on the road"
    )
    assert tb.build(DOCS.iloc[1].to_dict()) == "Title: Desk lamp"  # None and "" fields vanish
    assert tb.build(DOCS.iloc[2].to_dict()) == "description: Warm light"  # NaN too
    assert TextBuilder([FieldSpec("title")], separator=" | ").build({"title": " a\t b "}) == "title: a b"


def test_whitespace_budget_without_tokenizer() -> None:
    tb = TextBuilder([FieldSpec("title", max_tokens=2), FieldSpec("description", "d", max_tokens=3)])
    assert tb.build(DOCS.iloc[0].to_dict()) == "title: Red running\nd: Soft soles for"
    assert tb.build({"title": "one", "description": ""}) == "title: one"


def test_token_budget_with_a_hugging_face_tokenizer(tiny_tokenizer: object) -> None:
    tb = TextBuilder(
        [FieldSpec("title", max_tokens=3), FieldSpec("description", max_tokens=50)], tiny_tokenizer
    )
    # Cut values are the decoded first tokens (this tokenizer lower-cases); "shoes" is one token.
    assert (
        tb.build({"title": "Red running shoes with soft soles", "description": ""})
        == "title: red running shoes"
    )
    # A value within budget is kept exactly as written (no lower-casing round trip).
    assert (
        tb.build({"title": "Red Shoes", "description": "Soft SOLES"})
        == "title: Red Shoes\ndescription: Soft SOLES"
    )
    # Word pieces count: "desk lamps bright" is 3 words but 4 tokens (lamp + ##s), so a budget of 3 cuts it.
    assert tb.build({"title": "desk lamps bright", "description": None}) == "title: desk lamps"
    assert (
        TextBuilder(tb.fields).build({"title": "desk lamps bright", "description": None}).endswith("bright")
    )


def test_a_value_longer_than_the_model_limit_is_cut_without_a_length_warning(
    tiny_tokenizer: object, caplog: pytest.LogCaptureFixture
) -> None:
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.model_max_length = 8  # type: ignore[attr-defined]
    long = " ".join(["red shoes for running"] * 10)  # 40 tokens, 5x the model's limit
    tb = TextBuilder([FieldSpec("title", max_tokens=6)], tok)
    with caplog.at_level("WARNING"):
        assert tb.build({"title": long}) == "title: red shoes for running red shoes"
    assert "sequence length" not in caplog.text


def test_build_many_matches_build_row_by_row(tiny_tokenizer: object) -> None:
    specs = [
        FieldSpec("title", max_tokens=2),
        FieldSpec("description", "about", max_tokens=4),
        FieldSpec("brand"),
    ]
    for tok in (None, tiny_tokenizer):
        tb = TextBuilder(specs, tok)
        texts = tb.build_many(DOCS)
        assert texts == [tb.build(r) for r in DOCS.to_dict("records")]
        assert texts == tb.build_many(DOCS)  # deterministic
        assert len(set(texts)) == 3


def test_content_hash_is_short_stable_and_tracks_the_field_list() -> None:
    h = content_hash("title: Desk lamp")
    assert re.fullmatch(r"[0-9a-f]{16}", h) and h == content_hash("title: Desk lamp")
    assert h != content_hash("title: Desk lamp ")
    a = TextBuilder.from_config(["title"]).hashes(DOCS)
    b = TextBuilder.from_config(["title", "description"]).hashes(DOCS)
    assert a[1] == b[1]  # doc b has no description: its text, hence its cached embedding, is unchanged
    assert a[0] != b[0]


def test_from_config_and_back() -> None:
    tb = TextBuilder.from_config(["title", {"name": "description", "label": "desc", "max_tokens": 4}])
    assert tb.fields == (FieldSpec("title"), FieldSpec("description", "desc", 4))
    assert TextBuilder.from_config(tb.to_config()).fields == tb.fields
    with pytest.raises(ValueError, match="allowed keys"):
        TextBuilder.from_config([{"name": "title", "budget": 3}])
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        FieldSpec("title", max_tokens=0)
    with pytest.raises(ValueError, match="must be unique"):
        TextBuilder.from_config(["title", "title"])


def test_missing_field_names_the_field_and_the_columns() -> None:
    tb = TextBuilder.from_config(["title", "caption"])
    with pytest.raises(
        ValueError, match=r"\['caption'\] not found in the documents; available columns: \['doc_id'"
    ):
        tb.build_many(DOCS)
    with pytest.raises(ValueError, match=r"\['caption'\] not found in the record"):
        tb.build({"title": "x"})


# --- engaged queries -------------------------------------------------------------------------------


def judgments(rows: list[tuple[str, str, str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["query_id", "query", "doc_id", "level", "split"])


def test_engaged_queries_come_from_train_only() -> None:
    j = judgments(
        [
            ("q1", "red shoes", "a", 0, "train"),
            ("q2", "running shoes", "a", 0, "train"),
            ("q3", "shoes", "a", 2, "train"),  # not a top level
            ("q4", "secret test query", "b", 0, "test"),  # b is top ONLY for a test query
            ("q5", "valid query", "c", 0, "validation"),
            ("q6", "Desk  Lamp", "c", 0, "train"),  # same text as the test query q7 (another id)
            ("q7", "desk lamp", "a", 3, "test"),
        ]
    )
    eq = engaged_queries(j, DEFAULT_5)
    assert eq.to_dict() == {"a": "red shoes | running shoes"}
    assert eq.name == "engaged_queries"
    for text in eq:  # no held-out query text, under any id or spelling
        assert not any(q in text.lower() for q in ("secret", "valid", "desk lamp"))
    assert engaged_queries(j, DEFAULT_5, top_levels=3)["a"] == "red shoes | running shoes | shoes"
    assert engaged_queries(j, DEFAULT_5, max_queries=1)["a"] == "red shoes"
    with pytest.raises(ValueError, match=r"top_levels must be in 1\.\.5"):
        engaged_queries(j, DEFAULT_5, top_levels=6)


def test_add_engaged_queries_column_feeds_the_text_builder(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "query": ["red shoes", "red shoes", "lamp", "blue shoes"],
            "doc_id": ["a", "b", "c", "b"],
            "label": [4, 1, 4, 4],
            "split": ["train", "train", "test", "validation"],
        }
    ).to_csv(tmp_path / "j.csv", index=False)
    DOCS.to_parquet(tmp_path / "d.parquet", index=False)
    ds = load_dataset("table", judgments=tmp_path / "j.csv", documents=tmp_path / "d.parquet")
    out = add_engaged_queries(ds)
    assert "engaged_queries" not in ds.documents.columns  # the input dataset is untouched
    assert out.documents.set_index("doc_id")["engaged_queries"].to_dict() == {
        "a": "red shoes",
        "b": "",
        "c": "",
    }
    tb = TextBuilder.from_config(["title", {"name": "engaged_queries", "label": "queries"}])
    assert tb.build_many(out.documents)[0] == "title: Red running shoes\nqueries: red shoes"
    assert tb.build_many(out.documents)[2] == ""  # doc c: empty title, and "lamp" is a test query
