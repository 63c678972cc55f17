from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from distilrel.evaluate.scorer import Retriever, Scorer
from distilrel.evaluate.scorers import load_scorer
from distilrel.retrieve import BiEncoderScorer, BM25Scorer, RandomScorer, tokenize
from distilrel.retrieve.bm25 import lucene_idf
from tiny import save_tiny_sentence_transformer

CORPUS = {
    "d1": "red running shoes for men",
    "d2": "blue running jacket",
    "d3": "kitchen knife with steel blade",
    "d4": "red kitchen towel",
}


# --- tokenizer ---------------------------------------------------------------------------------------


def test_tokenizer_lowercases_drops_english_stopwords_and_bigrams_cjk() -> None:
    assert tokenize("The RED Shoes, for a Man!") == ["red", "shoes", "man"]
    assert tokenize("The RED Shoes", stopwords=False) == ["the", "red", "shoes"]
    assert tokenize("赤い靴") == ["赤い", "い靴"]
    assert tokenize("iPhone用ケース") == ["iphone", "用ケ", "ケー", "ース"]
    assert tokenize("靴") == ["靴"]
    # NFKC: full-width Latin folds to ASCII.
    assert tokenize("ＲＥＤ") == ["red"]


def test_tokenizer_keeps_words_with_combining_marks_whole() -> None:
    # Devanagari vowel signs are combining marks; \w alone would cut "हिन्दी" into pieces.
    assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert tokenize("zapatillas rojas") == ["zapatillas", "rojas"]


# --- BM25 --------------------------------------------------------------------------------------------


@pytest.fixture
def bm25() -> BM25Scorer:
    scorer = BM25Scorer()
    scorer.fit_corpus(list(CORPUS), list(CORPUS.values()))
    return scorer


def test_bm25_is_a_scorer_and_a_retriever(bm25: BM25Scorer) -> None:
    assert isinstance(bm25, Scorer) and isinstance(bm25, Retriever)
    assert bm25.name == "bm25"


def test_bm25_exact_term_document_ranks_first(bm25: BM25Scorer) -> None:
    [hits] = bm25.search(["steel knife"], k=4)
    assert [doc_id for doc_id, _ in hits] == ["d3"]  # the only doc sharing a term; others left out
    [hits] = bm25.search(["red shoes"], k=4)
    assert [doc_id for doc_id, _ in hits][:1] == ["d1"]
    assert {doc_id for doc_id, _ in hits} == {"d1", "d4"}
    assert hits[0][1] > hits[1][1] > 0


def test_bm25_pair_score_matches_hand_computed_formula(bm25: BM25Scorer) -> None:
    # "knife" occurs once in d3 and in no other doc (df=1, N=4); "with" is a stopword, so d3 has 4 tokens.
    lengths = [len(tokenize(t)) for t in CORPUS.values()]
    avgdl = sum(lengths) / len(lengths)
    dl = len(tokenize(CORPUS["d3"]))
    assert dl == 4
    k1, b = 1.2, 0.75
    expected = math.log(1 + (4 - 1 + 0.5) / (1 + 0.5)) * 1 / (1 + k1 * (1 - b + b * dl / avgdl))
    [got] = bm25.score(["knife"], [CORPUS["d3"]])
    assert got == pytest.approx(expected)
    assert lucene_idf(np.array([1.0]), 4)[0] == pytest.approx(math.log(1 + 3.5 / 1.5))


def test_bm25_pair_scores_equal_search_scores(bm25: BM25Scorer) -> None:
    queries = ["red running shoes", "kitchen knife", "red"]
    results = bm25.search(queries, k=4)
    for query, hits in zip(queries, results, strict=True):
        pair = bm25.score([query] * len(hits), [CORPUS[doc_id] for doc_id, _ in hits])
        np.testing.assert_allclose(pair, [s for _, s in hits], rtol=1e-5)


def test_bm25_scores_mixed_query_groups_in_input_order(bm25: BM25Scorer) -> None:
    queries = ["red", "knife", "red", "knife"]
    docs = [CORPUS["d1"], CORPUS["d3"], CORPUS["d3"], CORPUS["d1"]]
    scores = bm25.score(queries, docs)
    assert scores.shape == (4,)
    assert scores[0] > 0 and scores[1] > 0
    assert scores[2] == 0 and scores[3] == 0  # no shared term


def test_bm25_scores_a_document_outside_the_corpus_with_corpus_statistics(bm25: BM25Scorer) -> None:
    # Same text as d3 but not in the corpus by identity → same tokens → same score.
    outside = "Kitchen knife, with steel blade"
    np.testing.assert_allclose(bm25.score(["knife"], [outside]), bm25.score(["knife"], [CORPUS["d3"]]))
    # A term the corpus never saw (df=0) still counts, at the highest IDF.
    [unseen] = bm25.score(["sandals"], ["leather sandals"])
    assert unseen > bm25.score(["knife"], [CORPUS["d3"]])[0]


def test_bm25_needs_a_corpus_and_aligned_pairs() -> None:
    scorer = BM25Scorer()
    with pytest.raises(RuntimeError, match="fit_corpus"):
        scorer.score(["a"], ["b"])
    with pytest.raises(ValueError, match="duplicate doc id 'x'"):
        scorer.index(["x", "x"], ["a", "b"])
    scorer.index(["x"], ["red shoes"])
    with pytest.raises(ValueError, match="pairs must align"):
        scorer.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="k1 >= 0"):
        BM25Scorer(k1=-1)


def test_bm25_indexes_japanese_text() -> None:
    scorer = BM25Scorer()
    scorer.index(["a", "b"], ["赤いランニングシューズ", "ステンレス包丁"])
    [hits] = scorer.search(["赤い靴"], k=2)
    assert [doc_id for doc_id, _ in hits] == ["a"]


# --- bi-encoder with a tiny model built here ----------------------------------------------------------

WORDS = [
    "red",
    "running",
    "shoes",
    "shoe",
    "knife",
    "kitchen",
    "steel",
    "blue",
    "jacket",
    "towel",
    "blade",
    "for",
    "men",
    "with",
]


@pytest.fixture(scope="module")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT (hidden 16) + WordPiece tokenizer wrapped as a sentence-transformers folder."""
    return save_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"), WORDS, hidden=16)


def test_bi_encoder_scores_are_cosines_of_normalised_embeddings(tiny_st_model: Path) -> None:
    scorer = BiEncoderScorer(str(tiny_st_model), batch_size=2)
    assert scorer.name == "st" and scorer.dim == 16
    assert (scorer.query_prefix, scorer.doc_prefix) == ("", "")
    queries = ["red shoes", "kitchen knife", "red shoes"]
    docs = [CORPUS["d1"], CORPUS["d3"], CORPUS["d3"]]
    scores = scorer.score(queries, docs)
    assert scores.shape == (3,)
    q, d = scorer.encode_queries(queries), scorer.encode_docs(docs)
    assert q.shape == (3, 16) and d.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scores, (q * d).sum(axis=1), rtol=1e-5)
    assert np.all(np.abs(scores) <= 1.0 + 1e-6)


def test_bi_encoder_encodes_each_document_text_once(tiny_st_model: Path) -> None:
    scorer = BiEncoderScorer(str(tiny_st_model))
    docs = [CORPUS["d1"], CORPUS["d3"], CORPUS["d1"], CORPUS["d1"]]
    first = scorer.score(["red", "red", "knife", "blue"], docs)
    assert scorer.docs_encoded == 2  # d1 and d3, although d1 appears three times
    again = scorer.score(["red", "red", "knife", "blue"], docs)
    assert scorer.docs_encoded == 2  # all from the cache
    np.testing.assert_allclose(first, again)
    # A cached embedding equals a fresh encoding of the same text.
    fresh = BiEncoderScorer(str(tiny_st_model)).encode_docs([CORPUS["d1"]])
    np.testing.assert_allclose(scorer.encode_docs([CORPUS["d1"]]), fresh, rtol=1e-5, atol=1e-6)


def test_bi_encoder_search_returns_the_pair_score_order(tiny_st_model: Path) -> None:
    scorer = BiEncoderScorer(str(tiny_st_model))
    assert isinstance(scorer, Retriever)
    scorer.index(list(CORPUS), list(CORPUS.values()))
    query = "red running shoes"
    [hits] = scorer.search([query], k=3)
    assert len(hits) == 3
    pair = scorer.score([query] * len(CORPUS), list(CORPUS.values()))
    expected = [list(CORPUS)[i] for i in np.argsort(-pair, kind="stable")[:3]]
    assert [doc_id for doc_id, _ in hits] == expected
    np.testing.assert_allclose([s for _, s in hits], np.sort(pair)[::-1][:3], rtol=1e-5)


def test_bi_encoder_applies_prefixes(tiny_st_model: Path) -> None:
    plain = BiEncoderScorer(str(tiny_st_model))
    prefixed = BiEncoderScorer(str(tiny_st_model), query_prefix="red ", doc_prefix="blue ")
    np.testing.assert_allclose(
        prefixed.encode_queries(["shoes"]), plain.encode_queries(["red shoes"]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        prefixed.encode_docs(["knife"]), plain.encode_docs(["blue knife"]), rtol=1e-5, atol=1e-6
    )


# --- random ------------------------------------------------------------------------------------------


def test_random_scorer_is_deterministic_per_pair() -> None:
    a, b = RandomScorer(seed=1), RandomScorer(seed=1)
    queries, docs = ["q1", "q1", "q2"], ["x", "y", "x"]
    first = a.score(queries, docs)
    np.testing.assert_array_equal(first, b.score(queries, docs))
    # Order- and batch-independent: each pair alone gets the same score.
    np.testing.assert_array_equal(first[::-1], a.score(queries[::-1], docs[::-1]))
    assert a.score(["q2"], ["x"])[0] == first[2]
    assert np.all((first >= 0) & (first < 1)) and len(set(first)) == 3
    assert not np.array_equal(first, RandomScorer(seed=2).score(queries, docs))
    # Field boundaries matter: ("ab", "c") is not ("a", "bc").
    assert a.score(["ab"], ["c"])[0] != a.score(["a"], ["bc"])[0]


# --- registry ----------------------------------------------------------------------------------------


def test_registry_builds_baselines_and_encoders(tiny_st_model: Path) -> None:
    assert isinstance(load_scorer("random", seed=3), RandomScorer)
    bm25 = load_scorer("BM25", k1=0.9, b=0.4)
    assert isinstance(bm25, BM25Scorer) and bm25.config.k1 == 0.9
    enc = load_scorer(str(tiny_st_model), batch_size=4)
    assert isinstance(enc, BiEncoderScorer) and enc.batch_size == 4
    with pytest.raises(ValueError, match="decoder LLM"):
        load_scorer("gemma")


def test_registry_checkpoint_dispatch_errors(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "distilrel.json").write_text(json.dumps({"kind": "mystery"}))
    with pytest.raises(ValueError, match="'kind' is 'mystery'"):
        load_scorer(str(ckpt))
    (ckpt / "distilrel.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_scorer(str(ckpt))


# --- real weights ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_ranks_a_shoe_above_a_knife_for_a_shoe_query() -> None:
    scorer = load_scorer("minilm")
    assert scorer.name == "minilm"
    shoe = "Nike Air Zoom Pegasus men's road running shoe, red"
    knife = "Victorinox 8-inch stainless steel chef's knife"
    s_shoe, s_knife = scorer.score(["red running shoes"] * 2, [shoe, knife])
    assert s_shoe > s_knife + 0.2


def _shared_e5_available() -> bool:
    from distilrel import paths

    try:
        return (paths.shared_dir() / "models" / "multilingual-e5-small" / "config.json").is_file()
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _shared_e5_available(), reason="shared/models/multilingual-e5-small is not available")
def test_e5_ranks_across_languages_with_its_prefixes() -> None:
    scorer = load_scorer("e5")
    assert (scorer.query_prefix, scorer.doc_prefix) == ("query: ", "passage: ")
    shoe = "Nike Air Zoom Pegasus men's road running shoe, red"
    knife = "Victorinox 8-inch stainless steel chef's knife"
    for query in ("zapatillas rojas para correr", "赤いランニングシューズ"):
        s_shoe, s_knife = scorer.score([query, query], [shoe, knife])
        assert s_shoe > s_knife
