"""BM25 over the ``bm25s`` library: corpus search and (query, document) pair scoring from one set of
corpus statistics.

Tokenizer (the same for every language, so one index can hold a multilingual corpus):

* NFKC + casefold, so full-width Latin, ligatures and case variants meet;
* words are runs of letters, digits and combining marks (Python's ``\\w`` alone would cut Hindi or Thai
  words at every vowel sign, which are marks, not letters);
* scripts written without spaces between words (Han, Hiragana, Katakana, Hangul, Thai, Lao, Khmer,
  Myanmar) become overlapping character bigrams, as Lucene's CJK analyzer does: no dictionary needed,
  and a 2-character window matches most Chinese/Japanese words; a lone character stays a unigram;
* the short Lucene English stopword list (33 words) is dropped; no stemming (it would need PyStemmer
  and per-language choices, and an English stemmer mangles other languages).

Scores use Lucene's BM25 (``idf = log(1 + (N - df + 0.5) / (df + 0.5))``), as ``bm25s`` does, so a pair
score equals the search score of the same document. Repeated query terms count once per occurrence.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from distilrel.evaluate.scorer import Scorer

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

# Scripts written without spaces between words; these get character bigrams.
_BIGRAM_SCRIPT_RANGES = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # Hangul
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # Han
)
_BIGRAM_RUN = re.compile(f"[{_BIGRAM_SCRIPT_RANGES}]+")


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    """Runs of ``\\w`` plus combining marks (categories Mn/Mc/Me), built once from the Unicode tables."""
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)).startswith("M"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    marks = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[\\w{marks}]+")


@functools.cache
def _english_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str, stopwords: bool = True) -> list[str]:
    """Lowercased word tokens, with character bigrams for scripts that have no spaces (see module doc)."""
    stop = _english_stopwords() if stopwords else frozenset()
    tokens: list[str] = []
    for word in _word_pattern().findall(unicodedata.normalize("NFKC", text).casefold()):
        if _BIGRAM_RUN.search(word) is None:
            if word not in stop:
                tokens.append(word)
            continue
        # Mixed words ("iphone用ケース") split into their Latin parts and their bigram-script runs.
        pos = 0
        for run in _BIGRAM_RUN.finditer(word):
            if run.start() > pos and word[pos : run.start()] not in stop:
                tokens.append(word[pos : run.start()])
            chars = run.group()
            tokens.extend([chars] if len(chars) == 1 else [chars[i : i + 2] for i in range(len(chars) - 1)])
            pos = run.end()
        if pos < len(word) and word[pos:] not in stop:
            tokens.append(word[pos:])
    return tokens


@dataclass(frozen=True)
class BM25Config:
    """k1 and b as in Lucene/Elasticsearch defaults; ``stopwords`` drops the English stopword list."""

    k1: float = 1.2
    b: float = 0.75
    stopwords: bool = True

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0.0 <= self.b <= 1.0:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")


class BM25Scorer(Scorer):
    """BM25 scorer and retriever. ``fit_corpus``/``index`` first; then ``score`` pairs or ``search``.

    Pair scoring takes IDF and average length from the indexed corpus; a document that is not in the
    corpus is scored from its own text with those statistics (a term the corpus never saw gets df=0).
    """

    name = "bm25"

    def __init__(self, k1: float = 1.2, b: float = 0.75, stopwords: bool = True) -> None:
        self.config = BM25Config(k1=k1, b=b, stopwords=stopwords)
        self._retriever: Any = None  # bm25s.BM25
        self._doc_ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._tf: csr_matrix | None = None  # (n_docs, n_vocab) term counts
        self._doc_len = np.zeros(0)  # (n_docs,) tokens per document
        self._df = np.zeros(0)  # (n_vocab,) documents containing each term
        self._row_of_text: dict[str, int] = {}

    # --- indexing -----------------------------------------------------------------------------------

    def fit_corpus(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.index(doc_ids, texts)

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        import bm25s
        from scipy.sparse import csr_matrix

        if len(doc_ids) != len(texts):
            raise ValueError(f"index: {len(doc_ids)} doc ids but {len(texts)} texts")
        if not doc_ids:
            raise ValueError("index: the corpus is empty")
        seen: set[str] = set()
        for i, doc_id in enumerate(doc_ids):
            if doc_id in seen:
                raise ValueError(f"index: duplicate doc id {doc_id!r} (row {i})")
            seen.add(doc_id)

        vocab: dict[str, int] = {}
        corpus_ids = [[vocab.setdefault(t, len(vocab)) for t in self._tokenize(text)] for text in texts]
        if not vocab:
            raise ValueError("index: no document has an indexable token (all empty or stopwords)")
        rows = np.repeat(np.arange(len(corpus_ids)), [len(ids) for ids in corpus_ids])
        cols = np.fromiter((t for ids in corpus_ids for t in ids), dtype=np.int64, count=len(rows))
        # Duplicate (row, col) entries are summed into term counts by the constructor.
        tf = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(corpus_ids), len(vocab)))
        tf.sum_duplicates()

        retriever = bm25s.BM25(k1=self.config.k1, b=self.config.b, method="lucene")
        retriever.index((corpus_ids, dict(vocab)), show_progress=False)

        self._retriever = retriever
        self._doc_ids = list(doc_ids)
        self._vocab = vocab
        self._tf = tf
        self._doc_len = np.asarray(tf.sum(axis=1)).ravel()
        self._df = np.bincount(tf.indices, minlength=len(vocab)).astype(np.float64)
        # Several ids may share one text; any of them gives the same statistics.
        self._row_of_text = {text: i for i, text in enumerate(texts)}

    # --- scoring ------------------------------------------------------------------------------------

    def score(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if len(queries) != len(docs):
            raise ValueError(f"score: {len(queries)} queries but {len(docs)} docs; pairs must align")
        self._require_index("score")
        out = np.zeros(len(queries), dtype=np.float64)
        # Group pairs by query: one tokenization and one IDF lookup per query, vectorised over its docs.
        by_query: dict[str, list[int]] = defaultdict(list)
        for i, query in enumerate(queries):
            by_query[query].append(i)
        for query, rows in by_query.items():
            out[rows] = self._score_docs(self._tokenize(query), [docs[i] for i in rows])
        return out

    def _score_docs(self, q_terms: list[str], docs: list[str]) -> np.ndarray:
        if not q_terms:
            return np.zeros(len(docs))
        n_docs = len(self._doc_ids)
        q_cols = np.array([self._vocab.get(t, -1) for t in q_terms])  # -1: term absent from the corpus
        df = np.where(q_cols >= 0, self._df[np.maximum(q_cols, 0)], 0.0)  # (n_terms,)
        idf = lucene_idf(df, n_docs)  # (n_terms,)

        tf = np.zeros((len(docs), len(q_terms)))  # (n_docs_in_group, n_terms)
        dl = np.zeros(len(docs))  # (n_docs_in_group,)
        in_corpus = [(i, self._row_of_text.get(doc)) for i, doc in enumerate(docs)]
        hit = [(i, r) for i, r in in_corpus if r is not None]
        if hit:
            at, corpus_rows = (np.array(x) for x in zip(*hit, strict=True))
            known = q_cols >= 0
            assert self._tf is not None
            tf[np.ix_(at, np.flatnonzero(known))] = self._tf[corpus_rows][:, q_cols[known]].toarray()
            dl[at] = self._doc_len[corpus_rows]
        for i, r in in_corpus:
            if r is None:  # not in the corpus: count its terms from its own text
                tokens = self._tokenize(docs[i])
                counts = Counter(tokens)
                tf[i] = [counts.get(t, 0) for t in q_terms]
                dl[i] = len(tokens)

        avgdl = float(self._doc_len.mean()) or 1.0
        k1, b = self.config.k1, self.config.b
        norm = k1 * (1.0 - b + b * dl / avgdl)  # (n_docs_in_group,)
        return (idf * tf / (tf + norm[:, None])).sum(axis=1)

    # --- search -------------------------------------------------------------------------------------

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Per query, up to k (doc_id, score) best first; documents sharing no term are left out."""
        if k < 1:
            raise ValueError(f"search: k must be >= 1, got {k}")
        retriever = self._require_index("search")
        k = min(k, len(self._doc_ids))
        results: list[list[tuple[str, float]]] = []
        for query in queries:
            q_ids = retriever.get_tokens_ids(self._tokenize(query))
            if not q_ids:
                results.append([])
                continue
            scores = retriever.get_scores(q_ids)  # (n_docs,)
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.lexsort((top, -scores[top]))]  # best first; ties by corpus order
            results.append([(self._doc_ids[i], float(scores[i])) for i in top if scores[i] > 0])
        return results

    # --- helpers ------------------------------------------------------------------------------------

    def _tokenize(self, text: str) -> list[str]:
        return tokenize(text, stopwords=self.config.stopwords)

    def _require_index(self, what: str) -> Any:
        if self._retriever is None:
            raise RuntimeError(f"BM25Scorer.{what}: call fit_corpus()/index() with the corpus first")
        return self._retriever


def lucene_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Lucene's BM25 IDF (never negative, unlike Robertson's), elementwise over document frequencies."""
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))
