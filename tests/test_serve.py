"""The re-ranking service end to end: a tiny student built here, a real store on disk, the real FastAPI app
behind a real uvicorn on 127.0.0.1, driven by ``distilrel.client.Client``.

The tiny student, its catalog, the store and the server runner live in tiny.py (shared with the Redis,
schemathesis, UI, store and Ray embedding tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from distilrel.client import Client, ServiceError
from distilrel.data.levels import DEFAULT_5
from distilrel.index.embed import student_ids
from distilrel.index.faiss_index import VectorIndex
from distilrel.index.store import EmbeddingStore
from distilrel.serve.app import ServeSettings, create_app
from distilrel.serve.cache import LRUCache, normalize_query
from distilrel.serve.engine import (
    Candidate,
    Engine,
    EngineConfig,
    EngineSetupError,
    MicroBatcher,
    load_engine,
    per_job_rows,
)
from tiny import build_tiny_student, catalog, make_store, run_server


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_student(tmp_path_factory.mktemp("serve") / "student")


@pytest.fixture(scope="module")
def store_dir(student_dir: Path) -> Path:
    return make_store(student_dir, student_dir.parent / "store")


@pytest.fixture(scope="module")
def engine(student_dir: Path, store_dir: Path) -> Iterator[Engine]:
    eng = load_engine(student_dir, store_dir, cache=LRUCache(max_items=1000), device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[Client]:
    app = create_app(engine, ServeSettings(max_candidates=50, max_text_chars=200))
    with run_server(app) as url, Client(url) as c:
        yield c


# --- re-ranking ---------------------------------------------------------------------------------------


def test_rerank_scores_ids_and_texts_like_the_model(client: Client, engine: Engine) -> None:
    docs = catalog().set_index("doc_id")["title"]
    ids = ["p000", "p007", "p013", "p021", "p039"]
    res = client.rerank("Red  SHOE soft", doc_ids=ids, texts=["blue lamp warm"], top_n=None)

    assert res.unknown_ids == [] and len(res.results) == 6 and res.level_names == list(DEFAULT_5.names)
    scores = [r.score for r in res.results]
    assert scores == sorted(scores, reverse=True)
    assert {r.index for r in res.results} == set(range(6))
    assert all(r.scorer == "student" and r.score == r.student_score for r in res.results)
    np.testing.assert_allclose([sum(r.levels) for r in res.results], 1.0, atol=1e-5)

    # The same numbers as the model itself on the normalised query and the stored titles.
    model = engine.student
    q = model.encode_queries([normalize_query("Red  SHOE soft")])
    d = model.encode_docs([*(docs[i] for i in ids), "blue lamp warm"])
    expected = model.score(q, d)
    got = {r.index: r.score for r in res.results}
    np.testing.assert_allclose([got[i] for i in range(6)], expected, atol=1e-5)
    levels = model.predict_levels(q, d)
    np.testing.assert_allclose(res.results[0].levels, levels[res.results[0].index], atol=1e-5)


def test_unknown_ids_are_reported_not_scored(client: Client) -> None:
    res = client.rerank("red lamp", doc_ids=["p001", "nope", "p002", "also-missing"], top_n=1)
    assert res.unknown_ids == ["nope", "also-missing"]
    assert len(res.results) == 1 and res.results[0].id in {"p001", "p002"}
    only_unknown = client.rerank("red lamp", doc_ids=["nope"])
    assert only_unknown.results == [] and only_unknown.unknown_ids == ["nope"]


def test_query_cache_key_is_normalised(client: Client) -> None:
    first = client.rerank("blue desk warm", doc_ids=["p010", "p030"])
    again = client.rerank("  BLUE\tdesk   warm ", doc_ids=["p010", "p030"])
    full_width = client.rerank("ＢＬＵＥ desk warm", doc_ids=["p010", "p030"])  # NFKC folds full-width
    assert not first.query_cached and again.query_cached and full_width.query_cached
    assert [r.score for r in again.results] == [r.score for r in first.results]


def test_limits_answer_422_with_a_message(client: Client) -> None:
    http = client.http
    too_many = {"query": "red", "candidates": [{"id": f"p{i:03d}"} for i in range(51)]}
    r = http.post("/v1/rerank", json=too_many)
    assert r.status_code == 422 and "51 candidates; this server takes at most 50" in r.text
    long_text = {"query": "red", "candidates": [{"text": "red " * 60}]}
    r = http.post("/v1/rerank", json=long_text)
    assert r.status_code == 422 and "240 characters" in r.json()["detail"][0]["msg"]
    over_schema = {"query": "red", "candidates": [{"text": "x" * 20_001}]}
    r = http.post("/v1/rerank", json=over_schema)
    assert r.status_code == 422 and "candidates.0.text" in r.json()["message"] and "x" * 100 not in r.text
    r = http.post("/v1/rerank", json={"query": "red", "candidates": [{}]})
    assert r.status_code == 422 and "needs an id, a text, or both" in r.json()["message"]
    r = http.post("/v1/rerank", json={"query": "", "candidates": [{"id": "p001"}]})
    assert r.status_code == 422 and "body.query" in r.json()["message"]
    with pytest.raises(ServiceError, match="HTTP 422"):
        client.rerank("red", doc_ids=["p001"], teacher_top=2)  # this server has no teacher


# --- embed, related, search ---------------------------------------------------------------------------


def test_embed_queries_and_documents(client: Client, engine: Engine) -> None:
    res = client.embed(["Warm  Sole Bright", "light desk running"], kind="query")
    assert res.dim == 32 and res.cached == [False, False]
    expected = engine.student.encode_queries(["warm sole bright", "light desk running"])
    np.testing.assert_allclose(res.vectors, expected, atol=1e-5)
    assert client.embed(["warm sole BRIGHT"], kind="query").cached == [True]

    texts = ["red shoe soft", "a title not in the store"]
    docs = client.embed(texts, kind="document")
    # The first text is stored as is (its vector comes from the store), the second is encoded now.
    np.testing.assert_allclose(docs.vectors, engine.student.encode_docs(texts), atol=1e-5)
    assert docs.cached == [False, False]


def test_related_answers_for_every_document_in_the_index(client: Client, engine: Engine) -> None:
    for doc_id in engine.index.doc_ids:
        res = client.related(doc_id, k=5)
        ids = [n.id for n in res.neighbours]
        assert len(ids) == 5 and doc_id not in ids and len(set(ids)) == 5
        scores = [n.score for n in res.neighbours]
        assert scores == sorted(scores, reverse=True)
    # Exact index: the neighbours are the brute-force nearest by cosine.
    vecs, ids = engine.store.vectors, list(engine.store.doc_ids)
    sims = vecs @ vecs[ids.index("p005")]
    sims[ids.index("p005")] = -np.inf
    res = client.related("p005", k=3)
    np.testing.assert_allclose([n.score for n in res.neighbours], np.sort(sims)[::-1][:3], atol=1e-5)
    with pytest.raises(ServiceError, match="HTTP 404") as err:
        client.related("no/such id", k=3)
    assert "'no/such id' is not in the index" in err.value.message


def test_search_retrieves_then_reranks(client: Client) -> None:
    res = client.search("red lamp bright", k=12, top_n=4)
    assert res.retrieved == 12 and len(res.results) == 4
    retrieved_ids = [r.id for r in client.search("red lamp bright", k=12, top_n=12).results]
    same = client.rerank("red lamp bright", doc_ids=[i for i in retrieved_ids if i], top_n=4)
    assert [r.id for r in res.results] == [r.id for r in same.results]
    np.testing.assert_allclose([r.score for r in res.results], [r.score for r in same.results], atol=1e-6)


def test_health_and_metrics(client: Client) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    health = client.health()
    assert (
        health.status == "ok" and health.documents == 40 and health.index == "flat" and health.cache == "lru"
    )
    client.rerank("warm sole", doc_ids=["p001", "ghost"])
    client.http.post("/v1/rerank", json={"query": "", "candidates": []})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.metrics())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("distilrel_request_seconds_count", route="/v1/rerank", method="POST", status="200") >= 1
    assert value("distilrel_request_seconds_count", route="/v1/rerank", method="POST", status="422") >= 1
    assert value("distilrel_stage_seconds_count", stage="query_encode") >= 1
    assert (
        value("distilrel_cache_misses_total") >= 1
        and ("distilrel_cache_hits_total", (("tier", "local"),)) in samples
    )
    assert value("distilrel_unknown_ids_total") >= 1 and value("distilrel_cache_fallbacks_total") == 0


# --- auth, teacher --------------------------------------------------------------------------------------


def test_api_key(engine: Engine) -> None:
    app = create_app(engine, ServeSettings(api_key="s3cret"))
    with run_server(app) as url:
        body = {"query": "red shoe", "candidates": [{"id": "p001"}]}
        assert httpx.post(f"{url}/v1/rerank", json=body).status_code == 401
        wrong = httpx.post(f"{url}/v1/rerank", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong API key"
        assert httpx.get(f"{url}/v1/related/p001").status_code == 401
        with Client(url, api_key="s3cret") as good:
            assert good.rerank("red shoe", doc_ids=["p001"]).results[0].id == "p001"
        assert httpx.get(f"{url}/healthz").status_code == 200  # probes need no key


def test_teacher_rescores_the_head(student_dir: Path, store_dir: Path) -> None:
    from distilrel.teacher.config import ModelConfig
    from distilrel.teacher.model import build_teacher, save_teacher
    from distilrel.teacher.scorer import load_teacher_scorer

    bert = student_dir.parent / "student-bert"
    model, tok = build_teacher(ModelConfig(backbone=str(bert), max_length=32), DEFAULT_5)
    teacher_dir = save_teacher(
        model, tok, student_dir.parent / "teacher", text_fields=[{"name": "title"}], max_length=32
    )
    eng = load_engine(
        student_dir, store_dir, teacher_dir=teacher_dir, config=EngineConfig(teacher_top=3), device="cpu"
    )
    try:
        ids = ["p000", "p005", "p010", "p015", "p020", "p025"]
        res = eng.rerank("red shoe", [Candidate(id=i) for i in ids])
        head, tail = res.results[:3], res.results[3:]
        assert (
            res.teacher_rescored == 3 and [r.scorer for r in res.results] == ["teacher"] * 3 + ["student"] * 3
        )
        assert [r.score for r in head] == sorted((r.score for r in head), reverse=True)
        # The head is the student's best three, re-ordered by the teacher's own scores.
        student_order = eng.rerank("red shoe", [Candidate(id=i) for i in ids], teacher_top=0).results
        assert {r.index for r in head} == {r.index for r in student_order[:3]} and tail == student_order[3:]
        titles = catalog().set_index("doc_id")["title"]
        scorer = load_teacher_scorer(teacher_dir, device="cpu")
        probs = scorer.predict_levels(["red shoe"] * 3, [titles[r.id] for r in head])
        np.testing.assert_allclose([r.levels for r in head], probs, atol=1e-5)
    finally:
        eng.close()


# --- engine parts -----------------------------------------------------------------------------------------


def test_engine_refuses_mismatched_parts(student_dir: Path, store_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_student(tmp_path / "other", max_doc_length=20)
    assert student_ids(other)[1] != student_ids(student_dir)[1]  # another doc tower, another model id
    with pytest.raises(EngineSetupError, match="run `distilrel embed` with this student"):
        load_engine(other, store_dir, device="cpu")

    stale = VectorIndex.from_store(EmbeddingStore(store_dir).load())
    stale.generation -= 1
    stale.save(tmp_path / "index")
    with pytest.raises(EngineSetupError, match="rebuild it with `distilrel index build`"):
        load_engine(student_dir, store_dir, tmp_path / "index", device="cpu")


def test_micro_batcher_merges_concurrent_calls() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        gate.wait(5)  # the first call blocks until the others have queued up
        return np.array([[float(t)] for t in texts])

    batcher: MicroBatcher[list[str]] = MicroBatcher(per_job_rows(encode), max_batch=64)
    results: dict[int, np.ndarray] = {}

    def submit(i: int) -> None:
        results[i] = batcher([str(i), str(i + 0.5)])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(9)]
    threads[0].start()
    while not calls:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    while batcher._queue.qsize() < 8:
        time.sleep(0.001)
    gate.set()
    for t in threads:
        t.join(5)
    batcher.close()
    assert [len(c) for c in calls] == [2, 16]  # one call alone, then the 8 waiting ones in one batch
    for i in range(9):
        np.testing.assert_array_equal(results[i], [[i], [i + 0.5]])
