"""`distilrel run`: the whole pipeline over a tiny judged table (tests/tiny.py's toy collection written to
tmp_path), with tiny random BERT backbones for the teacher and the student and a tiny sentence-transformers
folder as the zero-shot model, all built in the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tiny
from distilrel.cli.main import app
from distilrel.label.shards import read_labels, shard_path
from distilrel.pipeline.config import SECTIONS, load_pipeline_config
from distilrel.pipeline.context import ENGAGED, RunContext
from distilrel.pipeline.runner import read_stamp, run_pipeline
from distilrel.text.builder import TextBuilder

WORDS = [*tiny.COLORS, *tiny.PRODUCTS, *tiny.FILLER, "a", "item", "title", "description", ":", "|"]
WORDS += ["engaged", "_", "queries"]
ALL_STAGES = [s for s in SECTIONS if s != "run"]  # every stage, in order
HD_MEANS = (3.0, 2.5, 2.0, 1.5, 1.0)  # a Home Depot rater mean per level (its loader bins them back)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy collection as Parquet files, two tiny BERT backbones and a tiny zero-shot encoder."""
    root = tmp_path_factory.mktemp("pipeline-assets")
    ds = tiny.toy_dataset("table", n_queries=24, test_split=True)
    ds.judgments.drop(columns=["level"]).to_parquet(root / "judgments.parquet", index=False)
    ds.documents.to_parquet(root / "documents.parquet", index=False)
    # A small copy of Home Depot's layout (title only): the transfer target, where "description" is missing.
    hd = tiny.toy_dataset("homedepot", n_queries=8, test_split=True)
    (root / "homedepot").mkdir()
    hd.documents[["doc_id", "language", "title"]].rename(columns={"title": "product_title"}).to_parquet(
        root / "homedepot" / "documents.parquet", index=False
    )
    j = hd.judgments.assign(label=[HD_MEANS[lv] for lv in hd.judgments["level"]])
    j[["query_id", "query", "doc_id", "label", "split"]].to_parquet(root / "homedepot" / "judgments.parquet")
    tok = tiny.wordpiece_tokenizer(WORDS, bert_template=True)
    return {
        "root": root,
        "teacher_backbone": tiny.save_tiny_bert(root / "teacher-bert", tok),
        "student_backbone": tiny.save_tiny_bert(root / "student-bert", tok),
        "zero_shot": tiny.save_tiny_sentence_transformer(root / "zero-shot", WORDS),
    }


def tiny_student_model(assets: dict[str, Path]) -> str:
    """The ``[student.model]`` table of every test run: the tiny student backbone, short inputs."""
    return (
        f'[student.model]\nbackbone = "{assets["student_backbone"]}"\nmax_query_length = 12\n'
        "max_doc_length = 24\nhead_hidden = 16\n"
    )


def write_config(
    tmp_path: Path, assets: dict[str, Path], *, name: str = "toy", student_lr: str = "1e-3", extra: str = ""
) -> Path:
    a = {k: str(v) for k, v in assets.items()}
    body = f"""
        [run]
        name = "{name}"
        out = "{tmp_path / "runs"}"

        [[data.datasets]]
        name = "table"
        path = "{a["root"]}"
        options = {{ judgments = "judgments.parquet", documents = "documents.parquet" }}

        [baselines]
        scorers = ["random", "bm25", "{a["zero_shot"]}"]

        [teacher.model]
        backbone = "{a["teacher_backbone"]}"
        max_length = 32

        [teacher.text]
        fields = ["title", "description"]

        [teacher.training]
        max_steps = 6
        eval_steps = 3
        batch_size = 8
        learning_rate = 5e-3
        warmup_ratio = 0.0
        logging_steps = 3

        [logs]
        k = 6
        exclude_from = []

        [label]
        shard_size = 4
        chunk_size = 4
        batch_size = 4

        [student]
        pseudo_ratio = 2

        {tiny_student_model(assets)}

        [student.text]
        fields = ["title", "description"]

        [student.training]
        max_steps = 6
        eval_steps = 3
        batch_size = 8
        learning_rate = {student_lr}
        head_learning_rate = 5e-3
        logging_steps = 3

        [evaluate]
        latency_queries = 20
        rerank_queries = 2
        rerank_depth = 10

        [ablation]
        model = "zero-shot:{a["zero_shot"]}"
        fields = [["title"], ["title", "description"], ["title", "description", "engaged_queries"],
                  ["title", "description", "engaged_queries", "caption"]]

        [transfer]
        max_queries = 3

        [[transfer.datasets]]
        name = "homedepot"
        path = "{a["root"]}/homedepot"
        {extra}
    """
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def run(config: Path) -> dict[str, str]:
    ctx = RunContext(load_pipeline_config(config), progress=False)
    return {o.stage: o.status for o in run_pipeline(ctx)}


# --- 1, 2: a full run writes every section; a second run skips every stage ---------------------------------


def test_full_run_writes_the_report_then_a_second_run_skips_everything(
    tmp_path: Path, assets: dict[str, Path]
) -> None:
    config = write_config(tmp_path, assets)
    ctx = RunContext(load_pipeline_config(config), progress=False)
    first = {o.stage: o.status for o in run_pipeline(ctx)}
    assert list(first) == ALL_STAGES and set(first.values()) == {"ran"}
    root = tmp_path / "runs" / "toy"
    # One zero-shot instance served the baselines and every ablation step: each distinct test document
    # text was encoded once (the baseline's title + description text again in step 1, not twice).
    zero_shot = ctx.scorer(str(assets["zero_shot"]))
    ds = ctx.dataset("table")
    test_docs = ds.documents[ds.documents["doc_id"].isin(set(ds.split("test").judgments["doc_id"]))]
    recipes = [list(ds.fields), ["title"], ["title", "description"], ["title", "description", ENGAGED]]
    texts = {t for r in recipes for t in TextBuilder.from_config(r).build_many(test_docs)}
    # ... and the promotion gate's validation documents once, with the baseline's text.
    val_docs = ds.documents[ds.documents["doc_id"].isin(set(ds.split("validation").judgments["doc_id"]))]
    texts |= set(TextBuilder.from_config(recipes[0]).build_many(val_docs))
    assert zero_shot.docs_encoded == len(texts) < len(recipes) * len(test_docs) + len(val_docs)
    report = (root / "report.md").read_text()
    for section in (
        "## Stages",
        "## Data",
        "## Models (test split)",
        "### table",
        "### Retention",
        "## Promotion gate",
        "## Ablation",
        "## Transfer",
        "## Costs",
    ):
        assert section in report, section
    # Every model on the dataset, with level accuracy for the two that predict levels.
    table = report.split("### table")[1].split("###")[0]
    assert all(f"| {m} |" in table for m in ("random", "bm25", "st", "teacher", "student"))
    evaluate = json.loads((root / "stages" / "evaluate.json").read_text())["summary"]
    assert 0 <= evaluate["results"]["table"]["student"]["classifier"]["level_accuracy"] <= 1
    assert evaluate["costs"]["student_query_encode"]["p50_ms"] > 0
    # The promotion gate ran on validation against the best zero-shot baseline and named what it promoted.
    gate = evaluate["promotion"]["table"]
    assert gate["split"] == "validation" and gate["best_baseline"] in ("bm25", str(assets["zero_shot"]))
    assert set(gate["models"]) == {"teacher", "student"}
    assert gate["promoted"] == ("student" if gate["models"]["student"]["passed"] else gate["best_baseline"])
    assert f"**Promoted: {gate['promoted']}**" in report
    # Teacher and student tested against the best zero-shot baseline on test, one line each in the report.
    tests = evaluate["tests"]["table"]
    assert tests["best_zero_shot"] in ("bm25", str(assets["zero_shot"]))
    assert {"teacher", "student"} <= set(tests)
    assert 0 < tests["student"]["p"] <= 1 and "### What each step bought (table" in report
    assert "(48 pairs trained; " in report  # max_steps 6 x batch 8, not the training set's size
    # Fields a dataset lacks are said plainly: no images here, no description in the transfer target.
    assert "table has no images; the caption field is empty" in report
    assert "| homedepot | teacher |" in report and "| description |" in report
    ablation = json.loads((root / "stages" / "ablation.json").read_text())["summary"]
    assert [s["label"] for s in ablation["steps"]][:2] == ["title", "title + description"]
    assert ablation["steps"][3]["results"]["table"]["same_as_previous"]  # + caption: no caption column
    for png in ("models.png", "ablation.png"):
        assert (root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The stages' outputs: every pool pair labelled, the whole catalog embedded and indexed.
    pool = pd.read_parquet(root / "pool" / "pairs.parquet")
    assert len(read_labels(root / "pool" / "labels")) == len(pool) > 0
    assert json.loads((root / "stages" / "index.json").read_text())["summary"]["documents"] == 120
    assert not list((root / "stages").glob("*.running.json"))

    stamps = {f.name: f.read_bytes() for f in (root / "stages").glob("*.json")}
    report_mtime = (root / "report.md").stat().st_mtime_ns
    second = run(config)
    assert set(second.values()) == {"skipped (up to date)"}
    assert {f.name: f.read_bytes() for f in (root / "stages").glob("*.json")} == stamps
    assert (root / "report.md").stat().st_mtime_ns == report_mtime

    # Through the command: --force re-runs a stage and what reads it, nothing else.
    result = CliRunner().invoke(app, ["run", str(config), "--force", "index", "--no-progress"])
    assert result.exit_code == 0, result.output
    reran = {
        s for s in ALL_STAGES if read_stamp(root, s)["finished"] > json.loads(stamps[f"{s}.json"])["finished"]
    }
    assert reran == {"index", "report"}


# --- 3: a student change re-runs the student and what reads it, nothing upstream --------------------------


def test_changing_the_student_config_reruns_student_and_downstream_only(
    tmp_path: Path, assets: dict[str, Path]
) -> None:
    run(write_config(tmp_path, assets))
    root = tmp_path / "runs" / "toy"
    teacher_files = {f: f.stat().st_mtime_ns for f in (root / "teacher" / "model").iterdir()}
    changed = run(write_config(tmp_path, assets, student_lr="2e-3"))
    reran = {"student", "embed", "index", "evaluate", "transfer", "report"}
    assert {s for s, v in changed.items() if v == "ran"} == reran
    assert all(v == "skipped (up to date)" for s, v in changed.items() if s not in reran)
    assert {f: f.stat().st_mtime_ns for f in (root / "teacher" / "model").iterdir()} == teacher_files
    info = json.loads((root / "student" / "train_info.json").read_text())
    assert info["config"]["training"]["learning_rate"] == 2e-3


# --- 4: killed while labelling, the rerun resumes and ends where an uninterrupted run ends ------------------

KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from distilrel.cli.main import app
    from distilrel.label import job

    load = job.TeacherLabeller.load

    def slow_load(self):  # slow enough that the test can kill the run between two shards
        fn = load(self)

        def slow(queries, docs):
            time.sleep(0.3)
            return fn(queries, docs)

        return slow

    job.TeacherLabeller.load = slow_load
    app(["run", sys.argv[1], "--no-progress"])
    """
)


@pytest.mark.slow
def test_a_run_killed_during_labelling_resumes_to_the_same_outputs(
    tmp_path: Path, assets: dict[str, Path]
) -> None:
    config = write_config(tmp_path, assets)
    root = tmp_path / "runs" / "toy"
    labels = root / "pool" / "labels"
    (tmp_path / "killed_run.py").write_text(KILLED_RUN)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "killed_run.py"), str(config)], stderr=subprocess.PIPE, env=env
    )
    tiny.sigkill_when_exists(proc, shard_path(labels, 0))
    n_shards = -(-len(pd.read_parquet(root / "pool" / "pairs.parquet")) // 4)
    done = sorted(labels.glob("shard-*.parquet"))
    assert 1 <= len(done) < n_shards  # killed mid-stage
    assert read_stamp(root, "label") is None and read_stamp(root, "label", running=True) is not None
    assert read_stamp(root, "teacher") is not None  # finished before the kill: not trained again
    before = {f.name: f.read_bytes() for f in done}

    resumed = run(config)
    assert resumed["teacher"] == resumed["logs"] == "skipped (up to date)"
    assert resumed["label"] == "resumed" and resumed["student"] == "ran"
    assert {f.name: f.read_bytes() for f in done} == before  # finished shards were not rewritten
    assert json.loads((root / "stages" / "label.json").read_text())["summary"]["shards_skipped"] == len(done)

    run(write_config(tmp_path, assets, name="reference"))  # the same config, never interrupted
    ref = tmp_path / "runs" / "reference"
    got, want = read_labels(labels), read_labels(ref / "pool" / "labels")
    assert got[["dataset", "query", "doc_id"]].equals(want[["dataset", "query", "doc_id"]])
    np.testing.assert_allclose(np.stack(got["probs"]), np.stack(want["probs"]), rtol=0, atol=1e-6)
    metrics = [
        json.loads((r / "eval" / "table" / "student" / "metrics.json").read_text()) for r in (root, ref)
    ]
    assert metrics[0]["metrics"] == pytest.approx(metrics[1]["metrics"], abs=1e-6)


# --- 5: a bad config fails before any stage runs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "replace", "message"),
    [
        ("[labels]\nshard_size = 4\n", None, "unknown section(s) ['labels']"),
        ("", ("shard_size = 4", "shard = 4"), "unknown key(s) ['shard'] in [label]"),
        (
            "",
            ("[teacher.model]", '[teacher]\nconfig = "no/such/teacher.toml"\n[teacher.model]'),
            "[teacher] config: teacher config no/such/teacher.toml does not exist",
        ),
        ("", ("[teacher.text]", "[teacher.textx]"), "unknown key(s) ['textx'] in [teacher]"),
        (
            "",
            ("[logs]", '[logs]\ndatasets = ["crowdflower"]'),
            "[logs] dataset(s) ['crowdflower'] are not run",
        ),
        ("", ("student-bert", "no-such-bert"), "[student]: [model] backbone"),
        (
            '[embed]\ndataset = "crowdflower"\n',
            None,
            "[embed] dataset 'crowdflower' is neither a run dataset ([data] datasets = ['table']) nor a "
            "[transfer] dataset (['homedepot'])",
        ),
        ("", ('name = "table"', 'name = "table"\nloader = "nope"'), "unknown loader 'nope'; datasets: ["),
        ('[index]\nkind = "annoy"\n', None, "[index] IndexConfig.kind must be one of"),
        ("[index]\nnprobe = 0\n", None, "[index] IndexConfig.nprobe must be >= 1, got 0"),
        ("[index]\nlists = 4\n", None, "unknown key(s) ['lists'] in [index]"),
    ],
)
def test_a_bad_config_fails_before_any_stage_runs(
    tmp_path: Path, assets: dict[str, Path], extra: str, replace: tuple[str, str] | None, message: str
) -> None:
    config = write_config(tmp_path, assets, extra=extra)
    if replace is not None:
        config.write_text(config.read_text().replace(*replace))
    result = CliRunner().invoke(app, ["run", str(config), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was written


def test_the_served_catalog_may_be_a_transfer_dataset(tmp_path: Path, assets: dict[str, Path]) -> None:
    # Cross-domain: train on one catalog, serve another the models never saw.
    cfg = load_pipeline_config(write_config(tmp_path, assets, extra='[embed]\ndataset = "homedepot"\n'))
    assert cfg.embed.dataset == "homedepot" and "homedepot" not in cfg.data.names


def _esci_official_files(folder: Path) -> None:
    """The toy collection in ESCI's official layout, once per market: the same products and questions in
    us, es and jp (ESCI has train and test only; validation is carved from train by the loader)."""
    from distilrel.data.levels import ESCI_KDD

    ds = tiny.toy_dataset("esci", levels=ESCI_KDD, n_queries=24, test_split=True)
    examples, products = [], []
    for locale in ("us", "es", "jp"):
        j = ds.judgments
        examples.append(
            pd.DataFrame(
                {
                    "query_id": [f"{locale}-{q}" for q in j["query_id"]],
                    "query": j["query"],
                    "product_id": j["doc_id"],
                    "product_locale": locale,
                    "esci_label": j["label"],
                    "small_version": 1,
                    "large_version": 1,
                    "split": j["split"].replace({"validation": "train"}),
                }
            )
        )
        d = ds.documents
        products.append(
            pd.DataFrame(
                {
                    "product_id": d["doc_id"],
                    "product_locale": locale,
                    "product_title": d["title"],
                    "product_description": d["description"],
                    "product_bullet_point": d["description"],
                    "product_brand": None,
                    "product_color": None,
                }
            )
        )
    folder.mkdir(parents=True)
    ex = pd.concat(examples, ignore_index=True)
    ex.insert(0, "example_id", range(len(ex)))
    ex.to_parquet(folder / "shopping_queries_dataset_examples.parquet", index=False)
    pd.concat(products).to_parquet(folder / "shopping_queries_dataset_products.parquet", index=False)


@pytest.mark.slow
def test_the_shipped_esci_config_runs_us_to_es_and_jp(tmp_path: Path, assets: dict[str, Path]) -> None:
    """configs/esci-us-to-es-jp.toml as shipped, but for tiny models and the data's path: trained on the US
    market only, measured on Spain and Japan, serving the Spanish catalog."""
    esci = tmp_path / "esci"
    _esci_official_files(esci)
    text = (Path(__file__).resolve().parents[1] / "configs" / "esci-us-to-es-jp.toml").read_text()
    tiny_models = f"""
        [teacher.training]
        max_steps = 4
        eval_steps = 2
        batch_size = 8
        learning_rate = 5e-3

        {tiny_student_model(assets)}

        [student.training]
        max_steps = 4
        eval_steps = 2
        batch_size = 8
        docs_per_query = 4
    """
    edits = [
        ('out = "runs"', f'out = "{tmp_path / "runs"}"'),
        ('"e5"]', f'"{assets["zero_shot"]}"]'),  # the zero-shot baseline
        ('config = "configs/teacher-e5.toml"', ""),
        ('config = "configs/student-e5.toml"', ""),
        ("num_levels = 4", f'num_levels = 4\nbackbone = "{assets["teacher_backbone"]}"\nmax_length = 32'),
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    text = text.replace("options = { locale", f'path = "{esci}", options = {{ locale')
    config = tmp_path / "esci.toml"
    config.write_text(text + textwrap.dedent(tiny_models), encoding="utf-8")

    statuses = run(config)
    assert set(statuses.values()) == {"ran"}, statuses
    root = tmp_path / "runs" / "esci-us-to-es-jp"
    data = json.loads((root / "stages" / "data.json").read_text())["summary"]
    assert set(data) == {"esci-us", "esci-es", "esci-jp"}
    assert json.loads((root / "stages" / "embed.json").read_text())["summary"]["dataset"] == "esci-es"
    transfer = json.loads((root / "stages" / "transfer.json").read_text())["summary"]
    assert transfer["trained_on"] == ["esci-us"]
    for market, language in (("esci-es", "es"), ("esci-jp", "ja")):
        for model in ("teacher", "student"):
            result = transfer["results"][market][model]
            assert result["queries"] == data[market]["queries"]["test"] == 6
            assert 0 <= result["metrics"]["ndcg@10"] <= 1
        per_query = pd.read_parquet(root / "transfer" / market / "student" / "per_query.parquet")
        assert set(per_query["language"]) == {language}
    assert "| esci-jp | student |" in (root / "report.md").read_text()


def test_a_teacher_ablation_trains_one_teacher_per_field_set(tmp_path: Path, assets: dict[str, Path]) -> None:
    config = write_config(tmp_path, assets)
    text = config.read_text()
    start = text.index("[ablation]")
    fields = '[["title"], ["title", "description"], ["title", "description", "caption"]]'
    ablation = f'[ablation]\nmodel = "teacher"\nfields = {fields}\n'
    config.write_text(text[:start] + ablation + text[text.index("[transfer]") :])
    assert run(config)["ablation"] == "ran"
    root = tmp_path / "runs" / "toy" / "ablation"
    summary = json.loads((tmp_path / "runs" / "toy" / "stages" / "ablation.json").read_text())["summary"]
    steps = summary["steps"]
    effective = [s["results"]["table"]["effective_fields"] for s in steps]
    assert effective == [["title"], ["title", "description"], ["title", "description"]]
    for i in (0, 1):  # each trained its own teacher, on its own fields
        meta = json.loads((root / f"step-{i}" / "teacher" / "model" / "distilrel.json").read_text())
        assert [f["name"] for f in meta["text"]["fields"]] == steps[i]["fields"]
    # No dataset has captions: "+ caption" is the previous step's teacher, not trained again.
    assert not (root / "step-2").exists() and steps[2]["results"]["table"]["same_as_previous"]
    assert steps[2]["results"]["table"]["metrics"] == steps[1]["results"]["table"]["metrics"]
