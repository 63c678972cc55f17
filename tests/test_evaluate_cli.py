"""`distilrel evaluate` / `compare` end to end on real data, with ranx as the reference implementation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distilrel.cli.main import app
from distilrel.paths import data_dir

pytestmark = pytest.mark.skipif(
    not (data_dir() / "crowdflower_search_relevance").is_dir(), reason="shared CrowdFlower data not present"
)
runner = CliRunner()


def _evaluate(out: Path, scorer: str, *extra: str) -> None:
    args = [
        "evaluate",
        "--dataset",
        "crowdflower",
        "--scorer",
        scorer,
        "--split",
        "test",
        "--out",
        str(out),
        *extra,
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)


def test_evaluate_bm25_matches_ranx(tmp_path: Path) -> None:
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    out = tmp_path / "bm25"
    _evaluate(out, "bm25")
    for name in ("run.trec", "qrels.trec", "metrics.json", "report.md", "metrics.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    info = json.loads((out / "metrics.json").read_text())
    assert info["dataset"] == "crowdflower" and info["split"] == "test"
    # 22% of CrowdFlower's queries are in test; every one must have been ranked.
    assert info["queries"] == len({ln.split()[0] for ln in (out / "qrels.trec").read_text().splitlines()})

    qrels = Qrels.from_file(str(out / "qrels.trec"), kind="trec")
    run = Run.from_file(str(out / "run.trec"), kind="trec")
    assert info["metrics"]["ndcg@10"] == pytest.approx(ranx_evaluate(qrels, run, "ndcg@10"), abs=1e-6)
    # P@8 counts CrowdFlower's top two levels (grades 3 and 2) as relevant; ranx counts any grade > 0,
    # so give it the binarised qrels.
    binary = Qrels({q: {d: int(g >= 2) for d, g in docs.items()} for q, docs in qrels.to_dict().items()})
    assert info["metrics"]["p@8"] == pytest.approx(ranx_evaluate(binary, run, "precision@8"), abs=1e-6)
    # BM25 is a real signal on CrowdFlower: pairs it scores higher are more often relevant (0.73 measured).
    assert 0.6 < info["classifier"]["pair_auc"] < 0.9
    assert "## By query_length" in (out / "report.md").read_text()


def test_compare_bm25_vs_random(tmp_path: Path) -> None:
    _evaluate(tmp_path / "random", "random")
    _evaluate(tmp_path / "bm25", "bm25")
    res = runner.invoke(
        app, ["compare", str(tmp_path / "random"), str(tmp_path / "bm25"), "--out", str(tmp_path / "cmp")]
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    ndcg = {row["run"].split(" ")[0]: row["ndcg@10"] for row in cmp["table"]}
    assert ndcg["bm25"] > ndcg["random"]
    test = next(t for t in cmp["tests"] if t["metric"] == "ndcg@10")
    # The difference is the run minus the reference (random): positive, and equal to the gap of the means.
    assert test["diff"] == pytest.approx(ndcg["bm25"] - ndcg["random"], abs=1e-9)
    assert test["ci_low"] > 0
    assert test["p_value"] < 0.05  # BM25 beats random on CrowdFlower test with significance
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0


def test_compare_names_same_named_runs_by_as_much_of_their_folder_as_differs(tmp_path: Path) -> None:
    import shutil

    # The same model evaluated in two pipeline runs: both folders are called "teacher".
    _evaluate(tmp_path / "hd-only" / "transfer" / "teacher", "random")
    shutil.copytree(tmp_path / "hd-only" / "transfer" / "teacher", tmp_path / "both" / "eval" / "teacher")
    res = runner.invoke(
        app,
        [
            "compare",
            str(tmp_path / "both/eval/teacher"),
            str(tmp_path / "hd-only/transfer/teacher"),
            "--out",
            str(tmp_path / "cmp"),
        ],
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [row["run"] for row in cmp["table"]] == ["random (eval/teacher)", "random (transfer/teacher)"]
    assert {(t["run"], t["vs"], t["diff"]) for t in cmp["tests"]} == {
        ("random (transfer/teacher)", "random (eval/teacher)", 0.0)
    }


def test_compare_refuses_different_datasets(tmp_path: Path) -> None:
    _evaluate(tmp_path / "a", "random")
    info = json.loads((tmp_path / "a" / "metrics.json").read_text())
    (tmp_path / "b").mkdir()
    info["dataset"] = "homedepot"
    (tmp_path / "b" / "metrics.json").write_text(json.dumps(info))
    (tmp_path / "b" / "per_query.parquet").write_bytes((tmp_path / "a" / "per_query.parquet").read_bytes())
    res = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code != 0
    assert "different datasets" in str(res.exception)


def test_evaluate_builds_the_engaged_queries_field(tmp_path: Path) -> None:
    """`--fields ...,engaged_queries` builds the field from train judgments (no dataset file has it). On the
    train split a document's engaged queries include the very query that judged it, so BM25 must gain."""

    def train_ndcg(out: Path, fields: str) -> dict:
        args = ["evaluate", "--dataset", "crowdflower", "--scorer", "bm25", "--split", "train"]
        res = runner.invoke(app, [*args, "--fields", fields, "--out", str(out)])
        assert res.exit_code == 0, res.output + repr(res.exception)
        return json.loads((out / "metrics.json").read_text())

    plain = train_ndcg(tmp_path / "title", "title")
    engaged = train_ndcg(tmp_path / "engaged", "title,engaged_queries")
    assert engaged["fields"] == ["title", "engaged_queries"]
    assert engaged["metrics"]["ndcg@10"] > plain["metrics"]["ndcg@10"] + 0.01
