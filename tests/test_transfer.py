"""Cross-lingual transfer: the xquad_r split option, hard-negative mining for the teacher, the leak check and
the `distilrel transfer` driver end to end, on a tiny XQuAD-R-layout collection written to tmp_path with
tiny random models built in the test (tiny.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from distilrel.config import ConfigError, DatasetSpec
from distilrel.data import load_dataset
from distilrel.pipeline.transfer import (
    PER_LANGUAGE,
    PLOT,
    TABLE,
    LeakError,
    TransferSettings,
    check_no_leak,
    evaluation_spec,
    run_transfer,
    sample_parallel,
)
from distilrel.retrieve.bm25 import BM25Scorer
from distilrel.teacher.config import TeacherConfig, load_config
from distilrel.teacher.negatives import MINED_LABEL, mine_negatives
from distilrel.teacher.train import prepare
from tiny import save_tiny_bert, save_tiny_sentence_transformer, wordpiece_tokenizer

LANGS = ("en", "de")
TOPICS = ["river", "castle", "engine", "forest", "violin", "harbor", "glacier", "desert", "comet", "orchard"]
ROLES = ["bridge", "tower", "wheel"]  # three sentences per paragraph
WORDS = [*TOPICS, *ROLES, "the", "what", "is", "near", "of", "title", "text"]


@pytest.fixture(scope="module")
def xquad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 articles x 1 paragraph x 3 sentences per language; 2 questions per article (answers: sentences
    0 and 1), the same parallel ids and article numbers in both languages, all upstream split 'test'."""
    folder = tmp_path_factory.mktemp("data") / "xquad_r_multilingual"
    folder.mkdir()
    docs, judg = [], []
    for lang in LANGS:
        for a, topic in enumerate(TOPICS):
            for s, role in enumerate(ROLES):
                did = f"{lang}:{a:02d}:00:{s:02d}"
                docs.append(
                    {"doc_id": did, "locale": lang, "title": topic.title(), "text": f"the {role} of {topic}"}
                )
            for s in (0, 1):
                pid = f"p{a}-{s}"
                judg.append(
                    {
                        "query_id": f"{lang}:{pid}",
                        "parallel_id": pid,
                        "query": f"what is the {ROLES[s]} near {topic}",
                        "doc_id": f"{lang}:{a:02d}:00:{s:02d}",
                        "label": 1,
                        "locale": lang,
                        "split": "test",
                    }
                )
    pd.DataFrame(docs).to_parquet(folder / "documents.parquet", index=False)
    pd.DataFrame(judg).to_parquet(folder / "judgments.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = wordpiece_tokenizer(WORDS, bert_template=True)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tok, hidden=32, heads=2, intermediate=64)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"), WORDS)


SPLIT = {"fractions": [0.5, 0.2, 0.3], "split_by": "article", "seed": 0}


def teacher_toml(
    folder: Path, backbone: Path, xquad: Path, out: Path, negatives: str = '{ k = 2, retriever = "bm25" }'
) -> Path:
    options = '{ languages = ["en"], fractions = [0.5, 0.2, 0.3], split_by = "article", seed = 0 }'
    text = textwrap.dedent(
        f"""
        [data]
        datasets = [{{ name = "xquad_r", path = "{xquad}", options = {options}, negatives = {negatives} }}]
        [levels]
        preset = "binary"
        [text]
        fields = ["title", "text"]
        [model]
        backbone = "{backbone}"
        max_length = 32
        [training]
        output_dir = "{out}"
        batch_size = 8
        eval_batch_size = 16
        max_steps = 2
        eval_steps = 2
        logging_steps = 1
        warmup_ratio = 0.0
        """
    )
    path = folder / "teacher.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the loader's split ----------------------------------------------------------------------------------


def test_split_is_the_same_in_every_language_and_english_view(xquad_dir: Path) -> None:
    both = load_dataset("xquad_r", data_dir=xquad_dir, **SPLIT).judgments
    per_q = both.groupby("parallel_id")["split"].nunique()
    assert (per_q == 1).all()  # each question: one split across its translations
    assert {"train", "test"} <= set(both["split"])
    english = load_dataset("xquad_r", data_dir=xquad_dir, languages=["en"], **SPLIT)
    assert set(english.judgments["language"]) == {"en"} and set(english.documents["language"]) == {"en"}
    en_split = english.judgments.set_index("parallel_id")["split"]
    all_split = both[both["language"] == "de"].set_index("parallel_id")["split"]
    assert en_split.sort_index().equals(all_split.loc[en_split.index].sort_index())
    # split_by="article": the two questions of an article never straddle splits
    article = both["doc_id"].str.split(":").str[1]
    assert (both.groupby(article)["split"].nunique() == 1).all()
    # no option: the upstream split (all test) is kept
    assert set(load_dataset("xquad_r", data_dir=xquad_dir).judgments["split"]) == {"test"}


def test_loader_rejects_bad_options(xquad_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown language.*'ja'"):
        load_dataset("xquad_r", data_dir=xquad_dir, languages=["ja"])
    with pytest.raises(ValueError, match="split_by"):
        load_dataset("xquad_r", data_dir=xquad_dir, fractions=[0.5, 0.2, 0.3], split_by="paragraph")
    with pytest.raises(ValueError, match="fractions"):
        load_dataset("xquad_r", data_dir=xquad_dir, fractions=[0.5, 0.5])


# --- leak check ------------------------------------------------------------------------------------------


def test_no_test_question_leaks_into_training(xquad_dir: Path) -> None:
    english = load_dataset("xquad_r", data_dir=xquad_dir, languages=["en"], **SPLIT)
    everything = load_dataset("xquad_r", data_dir=xquad_dir, **SPLIT)
    report = check_no_leak({"teacher": english}, everything, ("train", "validation"))
    trained = set(english.judgments.loc[english.judgments["split"] != "test", "parallel_id"])
    tested = set(everything.judgments.loc[everything.judgments["split"] == "test", "parallel_id"])
    assert trained and tested and not trained & tested
    assert report["teacher"]["trained_languages"] == ["en"]

    # A training view split differently (by question, another seed) shares test questions: refused.
    leaky = load_dataset("xquad_r", data_dir=xquad_dir, languages=["en"], fractions=[0.6, 0.1, 0.3], seed=7)
    with pytest.raises(LeakError, match=r"test parallel_id|test article"):
        check_no_leak({"leaky": leaky}, everything, ("train", "validation"))


def test_sample_parallel_keeps_the_same_questions_in_every_language(xquad_dir: Path) -> None:
    ds = load_dataset("xquad_r", data_dir=xquad_dir, **SPLIT)
    sampled = sample_parallel(ds, 2, seed=0).judgments
    per_lang = sampled.groupby("language")["parallel_id"].apply(frozenset)
    assert len(set(per_lang)) == 1 and len(per_lang.iloc[0]) == 2
    assert set(sampled["split"]) == {"test"}


# --- hard negatives --------------------------------------------------------------------------------------


def test_mined_negatives_have_the_lowest_level_and_stay_in_the_language(xquad_dir: Path) -> None:
    ds = load_dataset("xquad_r", data_dir=xquad_dir, **SPLIT)
    train = ds.split("train").judgments
    texts = dict(zip(ds.documents["doc_id"], ds.documents["title"] + " " + ds.documents["text"], strict=True))
    out = mine_negatives(ds, train, BM25Scorer(), 2, lambda ids: {d: texts[d] for d in ids})
    mined = out[out["label"] == MINED_LABEL]
    assert len(out) == len(train) + len(mined)
    assert (mined.groupby("query_id").size() == 2).all() and mined["query_id"].nunique() == train[
        "query_id"
    ].nunique()
    assert set(mined["level"]) == {ds.levels.k - 1}  # not_relevant
    assert set(out.loc[out["label"] != MINED_LABEL, "level"]) == {0}  # the judged answers stay relevant
    judged = set(zip(ds.judgments["query_id"], ds.judgments["doc_id"], strict=True))
    assert not judged & set(zip(mined["query_id"], mined["doc_id"], strict=True))
    assert (mined["doc_id"].str[:2] == mined["language"]).all()  # the query's own language corpus
    # BM25's best unjudged sentence shares the question's topic: the sibling sentence of the paragraph
    assert (
        mined["doc_id"].str.split(":").str[1]
        == mined["query_id"].map(train.set_index("query_id")["doc_id"].str.split(":").str[1])
    ).mean() >= 0.5


def test_prepare_trains_on_english_with_mined_negatives(
    tmp_path: Path, xquad_dir: Path, bert_dir: Path
) -> None:
    cfg = load_config(teacher_toml(tmp_path, bert_dir, xquad_dir, tmp_path / "t"))
    prep = prepare(cfg)
    stats = prep.stats["xquad_r"]
    assert stats["mined_negatives"] == 2 * stats["train_queries"]
    assert stats["train_pairs"] == 3 * stats["train_queries"]
    assert prep.train_levels.count(1) == stats["mined_negatives"]  # binary: not_relevant is level 1
    assert len(prep.eval_sets[0].doc_ids) == 3 * stats["eval_queries"]  # validation re-ranks candidates too


# --- config errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("negatives", "match"),
    [
        ("{ k = 0 }", "negatives k must be an integer >= 1"),
        ('{ k = 2, retriver = "bm25" }', r"unknown key\(s\) \['retriver'\].*negatives"),
        ("3", "negatives must be a table"),
    ],
)
def test_bad_negatives_config_names_the_problem(
    tmp_path: Path, xquad_dir: Path, negatives: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(teacher_toml(tmp_path, Path("x"), xquad_dir, tmp_path / "t", negatives=negatives))


def test_retriever_that_cannot_search_is_refused(tmp_path: Path, xquad_dir: Path, bert_dir: Path) -> None:
    cfg = load_config(
        teacher_toml(tmp_path, bert_dir, xquad_dir, tmp_path / "t", '{ k = 2, retriever = "random" }')
    )
    with pytest.raises(ConfigError, match=r"'random'.*cannot search a corpus"):
        prepare(cfg)


def test_transfer_settings_and_split_errors(tmp_path: Path, xquad_dir: Path) -> None:
    with pytest.raises(ConfigError, match="rerank_first_stage 'bm25' is not one of the first stages"):
        TransferSettings(teachers=(Path("t.toml"),), first_stages=("e5",), rerank_first_stage="bm25")
    raw = {
        "data": {"datasets": [{"name": "xquad_r", "options": {"languages": ["en"]}}]},
        "levels": {"preset": "binary"},
        "model": {"backbone": "x"},
    }
    with pytest.raises(ConfigError, match=r"needs options\.fractions"):
        evaluation_spec([TeacherConfig.from_dict(raw, source="a.toml")])
    other = {**raw, "data": {"datasets": [{"name": "crowdflower"}]}}
    with pytest.raises(ConfigError, match="exactly one 'xquad_r'"):
        evaluation_spec([TeacherConfig.from_dict(other, source="b.toml")])
    one = {**raw, "data": {"datasets": [{"name": "xquad_r", "options": SPLIT}]}}
    two = {**raw, "data": {"datasets": [{"name": "xquad_r", "options": {**SPLIT, "seed": 3}}]}}
    with pytest.raises(ConfigError, match="split 'xquad_r' differently"):
        evaluation_spec([TeacherConfig.from_dict(one, "c.toml"), TeacherConfig.from_dict(two, "d.toml")])
    assert evaluation_spec([TeacherConfig.from_dict(one, "c.toml")]) == DatasetSpec("xquad_r", options=SPLIT)


# --- the driver end to end -------------------------------------------------------------------------------


def test_transfer_driver_writes_table_and_plot(
    tmp_path: Path, xquad_dir: Path, bert_dir: Path, st_dir: Path
) -> None:
    config = teacher_toml(tmp_path, bert_dir, xquad_dir, tmp_path / "runs" / "teacher-tiny")
    first = str(st_dir)
    settings = TransferSettings(
        teachers=(config,),
        out=tmp_path / "out",
        first_stages=(first, "bm25"),
        rerank_first_stage=first,
        depth=3,
        max_queries=4,
        ja_qa=False,
        metrics=("ndcg@10", "mrr@10", "recall@1", "recall@3"),
    )
    report = run_transfer(settings)

    assert report.leak_check["teacher-tiny"]["shared_questions"] == 0
    assert "teacher-tiny" in report.train_seconds
    info = report.teachers["teacher-tiny"]
    assert info["mined_negatives"] == 2 * info["train_questions"] and info["negatives"] == "2 from bm25"
    table = (tmp_path / "out" / TABLE).read_text(encoding="utf-8")
    assert "## ndcg@10 — xquad_r" in table and "mean (non-en)" in table and "## Teachers" in table
    assert f"teacher-tiny > {first}@3" in table
    assert (tmp_path / "out" / PLOT).stat().st_size > 0
    rows = pd.read_csv(tmp_path / "out" / PER_LANGUAGE)
    assert set(rows["language"]) == set(LANGS)
    assert len(rows) == 3 * len(LANGS)  # 2 first stages + 1 teacher, per language
    assert (rows["queries"] == rows["queries"].iloc[0]).all()  # the same sampled questions per language
    assert rows[["ndcg@10", "mrr@10"]].apply(lambda s: s.between(0, 1)).all().all()
    # the re-ranked list holds exactly the first stage's candidates: recall at the depth is unchanged
    by = rows.set_index(["system", "language"])["recall@3"]
    for lang in LANGS:
        assert by[(f"teacher-tiny > {first}@3", lang)] == pytest.approx(by[(first, lang)])

    # A rerun reuses the teacher and every finished (language, system) evaluation: same table, no rescoring.
    written = {f: f.stat().st_mtime_ns for f in (tmp_path / "out" / "eval").rglob("metrics.json")}
    again = run_transfer(settings)
    assert again.train_seconds == {}  # the teacher was reused, not trained again
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "out" / "eval").rglob("metrics.json")} == written
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / PER_LANGUAGE), rows)
