"""The relevance explorer at /ui end to end: a tiny student and teacher built here, a tiny catalog with judged
queries on disk, the real app under a real uvicorn on 127.0.0.1, driven over HTTP and in real headless
Chromium (Debian's chromium + chromium-driver; skipped only when /usr/bin/chromium is absent: nothing may
download a browser).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from distilrel.data import load_dataset
from distilrel.data.levels import DEFAULT_5
from distilrel.data.schema import Dataset
from distilrel.index.embed import embed_catalog
from distilrel.judge.store import JudgmentStore
from distilrel.metrics import score_run
from distilrel.serve.app import ServeSettings, create_app
from distilrel.serve.cache import LRUCache
from distilrel.serve.engine import Engine, load_engine
from distilrel.serve.ui import Explorer
from tiny import build_tiny_student, catalog, run_server

PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
EVIL_ID = "x666"
REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

# The catalog's human judgments (level names of DEFAULT_5). catalog(): p000 "red shoe soft", p005 "red lamp
# soft", p020 "blue shoe soft", p025 "blue lamp soft" ... (colour x product x adjective).
JUDGED = {
    "red shoe": {"p000": "excellent", "p001": "good", "p020": "fair", "p005": "bad", "p010": "irrelevant"},
    "blue lamp": {"p025": "excellent", "p026": "good", "p005": "fair", "p030": "irrelevant"},
    "red lamp": {"p005": "excellent", EVIL_ID: "bad", "p025": "fair", "p039": "irrelevant"},
}


def documents() -> pd.DataFrame:
    evil = pd.DataFrame({"doc_id": [EVIL_ID], "title": [PAYLOAD]})
    return pd.concat([catalog(), evil], ignore_index=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="module")
def dataset(root: Path) -> Dataset:
    rows = [{"query": q, "doc_id": d, "label": lbl} for q, docs in JUDGED.items() for d, lbl in docs.items()]
    pd.DataFrame(rows).to_csv(root / "judgments.csv", index=False)
    documents().to_parquet(root / "documents.parquet", index=False)
    return load_dataset(
        "table",
        judgments=root / "judgments.csv",
        documents=root / "documents.parquet",
        fields=("title",),
    )


@pytest.fixture(scope="module")
def parts(root: Path) -> dict[str, Path]:
    from distilrel.teacher.config import ModelConfig
    from distilrel.teacher.model import build_teacher, save_teacher

    student = build_tiny_student(root / "student")
    embed_catalog(student, documents(), root / "store", device="cpu")
    model, tok = build_teacher(ModelConfig(backbone=str(root / "student-bert"), max_length=32), DEFAULT_5)
    teacher = save_teacher(model, tok, root / "teacher", text_fields=[{"name": "title"}], max_length=32)
    return {"student": student, "store": root / "store", "teacher": teacher}


@pytest.fixture(scope="module")
def engine(parts: dict[str, Path]) -> Iterator[Engine]:
    eng = load_engine(
        parts["student"], parts["store"], cache=LRUCache(1000), teacher_dir=parts["teacher"], device="cpu"
    )
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def store(root: Path) -> JudgmentStore:
    return JudgmentStore(root / "judgments", DEFAULT_5)


@pytest.fixture(scope="module")
def explorer(engine: Engine, dataset: Dataset, store: JudgmentStore) -> Explorer:
    return Explorer(engine, dataset, store, annotator="tester", pool=6, related_k=40)


@pytest.fixture(scope="module")
def url(engine: Engine, explorer: Explorer) -> Iterator[str]:
    with run_server(create_app(engine, ServeSettings(), explorer)) as base:
        yield base


# --- the explorer's numbers -----------------------------------------------------------------------------


def test_three_columns_rank_the_judged_candidates_with_ndcg_from_the_metrics(
    explorer: Explorer, engine: Engine, dataset: Dataset
) -> None:
    result = explorer.explore("  red shoe ")
    assert result.query == "red shoe" and result.judged and result.not_indexed == []
    assert [c.key for c in result.columns] == ["bm25", "student", "teacher"]
    qrels = {"q": {d: DEFAULT_5.index(lbl) for d, lbl in JUDGED["red shoe"].items()}}
    gains = {DEFAULT_5.index(n): g for n, g in zip(DEFAULT_5.names, DEFAULT_5.gains, strict=True)}
    for col in result.columns:
        assert sorted(r.doc_id for r in col.rows) == sorted(JUDGED["red shoe"]), col.key
        scores = [r.score for r in col.rows]
        assert scores == sorted(scores, reverse=True) and [r.rank for r in col.rows] == [1, 2, 3, 4, 5]
        assert {r.doc_id: r.human for r in col.rows} == JUDGED["red shoe"]
    # Gains of DEFAULT_5 are its grades 4..0, i.e. grade = 4 - level index.
    # The evaluation path (score_run, ranx semantics) on the same rankings gives the same NDCG@10.
    for col in result.columns:
        run = {"q": {r.doc_id: float(len(col.rows) - r.rank) for r in col.rows}}
        grades = {"q": {d: 4 - lvl for d, lvl in qrels["q"].items()}}
        expected = score_run(run, grades, ["ndcg@10"], gains={4 - k: v for k, v in gains.items()})
        assert col.ndcg == pytest.approx(float(expected["ndcg@10"].iloc[0]), abs=1e-9), col.key
    student, teacher = result.columns[1], result.columns[2]
    assert student.level_names == list(DEFAULT_5.names) and result.columns[0].level_names is None
    np.testing.assert_allclose([sum(r.levels or ()) for r in student.rows + teacher.rows], 1.0, atol=1e-5)
    # The teacher column is the teacher's own distribution over every candidate.
    probs = engine.teacher.predict_levels(
        ["red shoe"] * 5, [explorer.doc(r.doc_id).title for r in teacher.rows]
    )
    np.testing.assert_allclose([r.levels for r in teacher.rows], probs, atol=1e-5)


def test_unjudged_query_pools_bm25_and_ann_and_has_no_ndcg(explorer: Explorer, engine: Engine) -> None:
    result = explorer.explore("warm desk")
    assert not result.judged and "not judged" in result.candidates_from
    ids = {r.doc_id for r in result.columns[1].rows}
    _, ann = engine.search("warm desk", k=6, top_n=6)
    assert set(ann) <= ids and len(ids) <= 12
    assert {r.doc_id for r in result.columns[0].rows} == ids == {r.doc_id for r in result.columns[2].rows}
    assert all(c.ndcg is None for c in result.columns)
    assert all(r.human is None for c in result.columns for r in c.rows)


def test_without_a_teacher_the_column_says_so(parts: dict[str, Path], dataset: Dataset) -> None:
    eng = load_engine(parts["student"], parts["store"], cache=LRUCache(100), device="cpu")
    try:
        explorer = Explorer(eng, dataset)
        teacher = explorer.explore("red shoe").columns[2]
        assert (
            teacher.rows == []
            and teacher.unavailable == "this server has no teacher (start it with --teacher)"
        )
        with run_server(create_app(eng, ServeSettings(), explorer)) as base:
            page = httpx.get(f"{base}/ui", params={"q": "red shoe"}).text
            assert "this server has no teacher" in page and "Judging is off" in page
            r = httpx.post(
                f"{base}/ui/api/judgments", json={"query": "red shoe", "doc_id": "p000", "label": "good"}
            )
            assert r.status_code == 409 and "--judgments" in r.json()["detail"]
            report = httpx.get(f"{base}/ui/agreement").text
            assert "student (this server has no teacher)" in report and "needs a teacher" in report
    finally:
        eng.close()


# --- HTTP: page, judging, related, agreement -------------------------------------------------------------


def test_page_lists_judged_queries_and_renders_columns(url: str) -> None:
    r = httpx.get(f"{url}/ui")
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    for q in JUDGED:
        assert f'<option value="{q}">' in r.text
    page = httpx.get(f"{url}/ui", params={"q": "blue lamp"}).text
    assert page.count('class="column"') == 3 and page.count("NDCG@10") == 3
    assert page.count('<li class="result" data-doc="p025"') == 3
    js = httpx.get(f"{url}/ui/static/ui.js")
    assert (
        js.status_code == 200
        and "textContent" in js.text
        and "innerHTML" not in js.text.replace("never innerHTML", "")
    )
    assert httpx.get(f"{url}/ui/static/secret.py").status_code == 404
    assert "/ui" not in httpx.get(f"{url}/openapi.json").text  # the page is not part of the API


def test_judging_appends_and_keeps_conflicts(url: str, store: JudgmentStore) -> None:
    before = len(store.read())
    body = {"query": "blue lamp", "doc_id": "p026", "label": "good", "annotator": "ann"}
    first = httpx.post(f"{url}/ui/api/judgments", json=body).json()
    assert first["conflict"] is False and [j["label"] for j in first["judgments"]] == ["good"]
    second = httpx.post(f"{url}/ui/api/judgments", json={**body, "label": "bad", "annotator": "bob"}).json()
    assert second["conflict"] is True and [(j["label"], j["annotator"]) for j in second["judgments"]] == [
        ("good", "ann"),
        ("bad", "bob"),
    ]
    table = store.read()
    assert len(table) == before + 2
    page = httpx.get(f"{url}/ui", params={"q": "blue lamp"}).text
    assert "judged: good (ann), bad (bob) — conflict" in page

    bad = httpx.post(f"{url}/ui/api/judgments", json={**body, "label": "superb"})
    assert bad.status_code == 422 and "not a level name" in bad.json()["detail"]
    ghost = httpx.post(f"{url}/ui/api/judgments", json={**body, "doc_id": "nope"})
    assert ghost.status_code == 422 and "'nope' is not in the catalog" in ghost.json()["detail"]
    assert len(store.read()) == before + 2


def test_related_is_the_engines(url: str, engine: Engine, explorer: Explorer) -> None:
    got = httpx.get(f"{url}/ui/api/related/p005", params={"k": 4}).json()
    assert [(n["id"], pytest.approx(n["score"])) for n in got["neighbours"]] == engine.related("p005", 4)
    assert got["neighbours"][0]["title"] == explorer.doc(got["neighbours"][0]["id"]).title
    assert httpx.get(f"{url}/ui/api/related/ghost").status_code == 404


def test_agreement_page_counts_every_judgment(url: str, explorer: Explorer, store: JudgmentStore) -> None:
    httpx.post(f"{url}/ui/api/judgments", json={"query": "red shoe", "doc_id": "p001", "label": "fair"})
    report = explorer.agreement()
    mine, cat = report.matrices
    assert report.model == "teacher"
    assert mine.counts.sum() == len(store.read()) and mine.counts.shape == (5, 5)
    assert cat.counts.sum() == sum(len(d) for d in JUDGED.values())
    assert cat.accuracy == pytest.approx(np.trace(cat.counts) / cat.counts.sum())
    rhos = [d.spearman for _, d in report.disagreement]
    assert {q for q, _ in report.disagreement} >= set(JUDGED) and rhos == sorted(rhos)
    page = httpx.get(f"{url}/ui/agreement").text
    assert "Where to spend the next judging budget" in page and page.count("<table") == 3


# --- escaping ----------------------------------------------------------------------------------------------


def test_document_text_is_escaped_in_html_and_plain_in_json(url: str) -> None:
    page = httpx.get(f"{url}/ui", params={"q": "red lamp"}).text
    assert PAYLOAD not in page and "<script>window" not in page and "<img src=x" not in page
    # Escaped as text (markupsafe writes " as &#34;, html.escape as &quot;: the same text either way).
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=" in page
    assert html.unescape(page).count(PAYLOAD) == 3  # the title in each of the three columns
    related = httpx.get(f"{url}/ui/api/related/p005", params={"k": 40})
    assert related.headers["content-type"] == "application/json"
    titles = {n["id"]: n["title"] for n in related.json()["neighbours"]}
    assert titles[EVIL_ID] == PAYLOAD  # JSON carries the text as data; the page writes it with textContent


# --- the real browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1600,1100")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def test_browser_search_rank_judge_by_key(url: str, browser: Any, store: JudgmentStore) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 10)
    browser.get(f"{url}/ui")
    box = browser.find_element(By.ID, "q")
    box.send_keys("red lamp", Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.column li.result")))
    columns = browser.find_elements(By.CSS_SELECTOR, "section.column")
    assert [c.find_element(By.TAG_NAME, "h2").text.split()[0] for c in columns] == [
        "BM25",
        "student",
        "teacher",
    ]
    assert all(len(c.find_elements(By.CSS_SELECTOR, "li.result")) == 4 for c in columns)

    # The student's best result starts selected; "2" judges it with the second level.
    selected = browser.find_element(By.CSS_SELECTOR, 'section[data-key="student"] li.result.selected')
    doc_id = selected.get_attribute("data-doc")
    annotator = browser.find_element(By.ID, "annotator")
    annotator.clear()
    annotator.send_keys("<b>eve</b>")
    selected.click()
    browser.find_element(By.TAG_NAME, "body").send_keys("2")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "saved"))
    rows = store.read()
    mine = rows[(rows["query"] == "red lamp") & (rows["doc_id"] == doc_id)]
    assert mine[["label", "annotator"]].values.tolist()[-1] == [DEFAULT_5.names[1], "<b>eve</b>"]
    judged = selected.find_element(By.CSS_SELECTOR, ".judged")
    assert "good (<b>eve</b>)" in judged.text and judged.find_elements(By.TAG_NAME, "b") == []

    # Move down with j and judge with 5, then show related documents with r.
    browser.find_element(By.TAG_NAME, "body").send_keys("j5")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), f"is {DEFAULT_5.names[4]}"))
    assert len(store.read()) == len(rows) + 1
    browser.find_element(By.TAG_NAME, "body").send_keys("r")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.result.selected ul.related li"))

    # The payload title shows as literal text and nothing of it ran.
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, f'li[data-doc="{EVIL_ID}"] .title')]
    assert titles == [PAYLOAD] * 3
    assert browser.execute_script("return window.__pwned === undefined") is True
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []

    shot = REPO / "runs" / "ui" / "screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0


def test_browser_related_list_writes_titles_as_text(url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/ui?q=red+lamp")
    row = browser.find_element(By.CSS_SELECTOR, 'section[data-key="bm25"] li.result[data-doc="p005"]')
    row.find_element(By.CSS_SELECTOR, "button.related-btn").click()
    WebDriverWait(browser, 10).until(lambda d: row.find_elements(By.CSS_SELECTOR, "ul.related li"))
    # related_k = 40 of 41 documents: every other document is listed, the payload's title among them.
    texts = [e.text for e in row.find_elements(By.CSS_SELECTOR, "ul.related .rel-title")]
    assert len(texts) == 40 and PAYLOAD in texts
    assert browser.execute_script("return window.__pwned === undefined") is True


def test_with_an_api_key_the_explorer_asks_for_it(engine: Engine, explorer: Explorer) -> None:
    with run_server(create_app(engine, ServeSettings(api_key="s3cret"), explorer)) as base:
        login = httpx.get(f"{base}/ui", params={"q": "red shoe"})
        assert (
            login.status_code == 401 and 'id="api-key"' in login.text and 'class="result"' not in login.text
        )
        ok = httpx.get(f"{base}/ui", params={"q": "red shoe"}, cookies={"distilrel_api_key": "s3cret"})
        assert ok.status_code == 200 and ok.text.count('class="column"') == 3
        body = {"query": "red shoe", "doc_id": "p000", "label": "good"}
        assert httpx.post(f"{base}/ui/api/judgments", json=body).status_code == 401
        wrong = httpx.post(f"{base}/ui/api/judgments", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        assert httpx.get(f"{base}/ui/api/related/p000", headers={"X-API-Key": "s3cret"}).status_code == 200
