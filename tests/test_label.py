"""The sharded, resumable labelling job, with a tiny real teacher (2-layer BERT + WordPiece tokenizer built
here, saved and loaded through the teacher module) over a pool built from a small dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from distilrel.data.levels import BINARY
from distilrel.data.schema import Dataset
from distilrel.label.job import (
    LabelSettings,
    LabelSummary,
    ScoreFn,
    TeacherLabeller,
    folder_fingerprint,
    run_label_job,
)
from distilrel.label.pool import build_pool_tables, pool_texts
from distilrel.label.shards import MANIFEST, read_labels, shard_path
from tiny import save_tiny_bert, sigkill_when_exists, wordpiece_tokenizer

WORDS = [
    "red", "blue", "white", "black", "warm", "bright", "soft", "led", "desk", "lamp",
    "light", "shade", "shoe", "shoes", "running", "canvas", "sole", "slippers", "wood", "steel",
    "deck", "paint", "angle", "bracket", "for", "with", "the", "a",
]  # fmt: skip
K = 5  # the teacher's levels: the 5-level guideline
GAINS = (4.0, 3.0, 2.0, 1.0, 0.0)


def build_tiny_teacher(folder: Path) -> Path:
    """A real teacher folder (distilrel.json + weights + tokenizer) around a random 2-layer BERT."""
    from distilrel.data.levels import DEFAULT_5
    from distilrel.teacher.config import ModelConfig
    from distilrel.teacher.model import build_teacher, save_teacher

    backbone = save_tiny_bert(folder / "backbone", wordpiece_tokenizer(WORDS))
    model, tokenizer = build_teacher(
        ModelConfig(backbone=str(backbone), max_length=32), DEFAULT_5, backbone_path=backbone
    )
    return save_teacher(model, tokenizer, folder / "teacher", text_fields=[{"name": "title"}], max_length=32)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher"))


@pytest.fixture(scope="session")
def score_fn(teacher_dir: Path) -> ScoreFn:
    return TeacherLabeller(str(teacher_dir)).load()


def small_pool(tmp_path: Path) -> tuple[pd.DataFrame, list[str]]:
    """~50 pairs from BM25 over a small catalog, written to and read back from Parquet (as the CLI does)."""
    rng = np.random.default_rng(0)
    titles = [" ".join(rng.choice(WORDS[:-4], size=rng.integers(2, 9))) for _ in range(30)]
    docs = pd.DataFrame({"doc_id": [f"d{i}" for i in range(30)], "language": "en", "title": titles})
    queries = [" ".join(rng.choice(WORDS[:-4], size=2)) for _ in range(14)]
    judgments = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(14)],
            "query": queries,
            "doc_id": "d0",
            "level": 0,
            "label": "1",
            "split": "train",
            "language": "en",
        }
    )
    pool = build_pool_tables([Dataset("toy", docs, judgments, BINARY, ("title",))], k=4, exclude_from=[])
    pool.pairs.to_parquet(tmp_path / "pairs.parquet")
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    texts = pool_texts(pool)
    assert 40 <= len(pairs) <= 56
    return pairs, texts


SETTINGS = LabelSettings(shard_size=8, chunk_size=4, progress=False)


def _label(pairs: pd.DataFrame, texts: list[str], out: Path, score_fn: ScoreFn, **kw: object) -> LabelSummary:
    settings = kw.pop("settings", SETTINGS)
    return run_label_job(
        pairs,
        texts,
        out,
        score_fn,
        teacher_id=kw.pop("teacher_id", "tiny"),
        k=K,
        gains=GAINS,
        settings=settings,
    )


def _snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    return {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in sorted(out.glob("shard-*.parquet"))}


def test_labels_are_the_teachers_level_probabilities(
    tmp_path: Path, teacher_dir: Path, score_fn: ScoreFn
) -> None:
    pairs, texts = small_pool(tmp_path)
    summary = _label(pairs, texts, tmp_path / "labels", score_fn)

    n_shards = -(-len(pairs) // 8)
    assert (summary.pairs, summary.shards, summary.shards_done, summary.shards_skipped) == (
        len(pairs), n_shards, n_shards, 0
    )  # fmt: skip
    assert summary.pairs_labelled == len(pairs) and summary.pairs_per_s > 0
    labels = read_labels(tmp_path / "labels")
    assert list(labels.columns) == [*pairs.columns, "probs", "score"]
    pd.testing.assert_frame_equal(labels[list(pairs.columns)], pairs)
    schema = pq.read_schema(shard_path(tmp_path / "labels", 0))
    assert str(schema.field("probs").type) == "list<element: float>"  # float32 elements
    probs = np.stack(labels["probs"].to_list())  # (n, K)
    assert probs.shape == (len(pairs), K) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(labels["score"], probs.astype(np.float64) @ np.array(GAINS), rtol=1e-12)
    # The same numbers as scoring every pair at once (batches differ, so only up to float rounding).
    direct = score_fn(pairs["query"].tolist(), texts)
    np.testing.assert_allclose(probs, direct, atol=1e-5)
    assert probs.std(axis=0).max() > 1e-4  # the pairs did not all get one distribution
    manifest = json.loads((tmp_path / "labels" / MANIFEST).read_text())
    assert manifest["n_shards"] == n_shards and manifest["k"] == K and manifest["teacher_id"] == "tiny"
    assert len(folder_fingerprint(teacher_dir)) == 64


def test_rerun_skips_finished_shards_and_leaves_them_untouched(tmp_path: Path, score_fn: ScoreFn) -> None:
    pairs, texts = small_pool(tmp_path)
    _label(pairs, texts, tmp_path / "labels", score_fn)
    before = _snapshot(tmp_path / "labels")

    def must_not_run(queries: object, docs: object) -> np.ndarray:
        raise AssertionError("a finished shard was scored again")

    again = _label(pairs, texts, tmp_path / "labels", must_not_run)
    assert (again.shards_done, again.shards_skipped, again.pairs_labelled) == (0, len(before), 0)
    assert _snapshot(tmp_path / "labels") == before


def test_damaged_shards_and_temp_files_are_recomputed(tmp_path: Path, score_fn: ScoreFn) -> None:
    pairs, texts = small_pool(tmp_path)
    ref, out = tmp_path / "ref", tmp_path / "labels"
    _label(pairs, texts, ref, score_fn)
    _label(pairs, texts, out, score_fn)
    raw = shard_path(out, 1).read_bytes()
    shard_path(out, 1).write_bytes(raw[: len(raw) // 2])  # truncated
    shard_path(out, 2).write_bytes(shard_path(out, 3).read_bytes())  # a complete file, but the wrong rows
    stray = out / ".shard-00004.parquet.x1y2.parquet"  # what a SIGKILL during a write leaves
    stray.write_bytes(b"partial")
    untouched = {
        k: v for k, v in _snapshot(out).items() if k not in ("shard-00001.parquet", "shard-00002.parquet")
    }

    summary = _label(pairs, texts, out, score_fn)
    assert (summary.shards_done, summary.pairs_labelled) == (2, 16)
    assert [d.split(":")[0] for d in summary.damaged] == ["shard-00001.parquet", "shard-00002.parquet"]
    assert "unreadable" in summary.damaged[0] and "does not match the pool" in summary.damaged[1]
    assert not stray.exists()
    assert {k: v for k, v in _snapshot(out).items() if k in untouched} == untouched
    for i in range(summary.shards):
        assert pq.read_table(shard_path(out, i)).equals(pq.read_table(shard_path(ref, i)))


def test_a_run_never_mixes_with_another_pool_or_teacher(tmp_path: Path, score_fn: ScoreFn) -> None:
    pairs, texts = small_pool(tmp_path)
    out = tmp_path / "labels"
    _label(pairs, texts, out, score_fn)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"labels of another run \(teacher_id: 'tiny' -> 'other'\)"):
        _label(pairs, texts, out, score_fn, teacher_id="other")
    with pytest.raises(ValueError, match="pool_hash"):
        _label(pairs.iloc[:-1], texts[:-1], out, score_fn)
    with pytest.raises(ValueError, match="text_hash"):
        _label(pairs, [t + " red" for t in texts], out, score_fn)
    assert _snapshot(out) == before  # refusing touched nothing

    wide = LabelSettings(shard_size=16, chunk_size=4, progress=False, overwrite=True)
    summary = _label(pairs, texts, out, score_fn, settings=wide)
    assert summary.shards_done == summary.shards == -(-len(pairs) // 16)
    assert sorted(f.name for f in out.glob("shard-*.parquet")) == [
        shard_path(out, i).name for i in range(summary.shards)
    ]  # the 8-row shards of the old plan are gone
    assert len(read_labels(out)) == len(pairs)


def test_scoring_output_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    pairs, texts = small_pool(tmp_path)

    def logits(queries: list[str], docs: list[str]) -> np.ndarray:
        return np.tile(np.arange(K, dtype=np.float32), (len(queries), 1))  # (n, K), not probabilities

    with pytest.raises(ValueError, match="must return probabilities"):
        _label(pairs, texts, tmp_path / "labels", logits)
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        _label(pairs, texts, tmp_path / "labels2", lambda q, d: np.full((len(q), 3), 1 / 3))
    assert not list((tmp_path / "labels").glob("*shard*"))
    with pytest.raises(ValueError, match="must align by row"):
        _label(pairs, texts[:-1], tmp_path / "labels3", logits)


KILLED_RUN = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import pandas as pd
    from distilrel.label.job import LabelSettings, TeacherLabeller, run_label_job

    pairs_file, texts_file, teacher, out = sys.argv[1:5]
    pairs = pd.read_parquet(pairs_file)
    texts = json.loads(Path(texts_file).read_text())
    fn = TeacherLabeller(teacher).load()

    def slow(queries, docs):  # slow enough that the test can kill the run between shards
        time.sleep(0.25)
        return fn(queries, docs)

    run_label_job(pairs, texts, out, slow, teacher_id="tiny", k=5, gains=(4.0, 3.0, 2.0, 1.0, 0.0),
                  settings=LabelSettings(shard_size=8, chunk_size=4, progress=False))
    """
)


def test_kill_mid_run_then_rerun_equals_an_uninterrupted_run(
    tmp_path: Path, teacher_dir: Path, score_fn: ScoreFn
) -> None:
    pairs, texts = small_pool(tmp_path)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "run.py").write_text(KILLED_RUN)
    out = tmp_path / "killed"
    args = [str(tmp_path / f) for f in ("pairs.parquet", "texts.json")] + [str(teacher_dir), str(out)]
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), *args], stderr=subprocess.PIPE)
    sigkill_when_exists(proc, shard_path(out, 0))
    n_shards = -(-len(pairs) // 8)
    finished = _snapshot(out)
    assert 1 <= len(finished) < n_shards  # killed mid-run, with at least one shard done

    summary = _label(pairs, texts, out, score_fn)  # the rerun
    assert summary.shards_skipped == len(finished) and summary.shards_done == n_shards - len(finished)
    assert {k: v for k, v in _snapshot(out).items() if k in finished} == finished  # never rewritten

    ref = tmp_path / "uninterrupted"
    _label(pairs, texts, ref, score_fn)
    assert (out / MANIFEST).read_text() == (ref / MANIFEST).read_text()
    for i in range(n_shards):
        got, want = pq.read_table(shard_path(out, i)), pq.read_table(shard_path(ref, i))
        assert got.equals(want), f"shard {i} differs"  # exact: same rows, same probabilities, bit for bit
    assert not list(out.glob(".shard-*"))


def test_cli_logs_build_then_label(tmp_path: Path, teacher_dir: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from distilrel.cli.label import label, logs_app

    app = typer.Typer()
    app.add_typer(logs_app, name="logs")
    app.command()(label)

    ubi = tmp_path / "ubi"
    ubi.mkdir()
    events = [
        ("chorus", "impression", "lamp", "B1", "led desk lamp"),
        ("chorus", "click", "lamp", "B1", "led desk lamp"),
        ("chorus", "impression", "lamp", "B2", "warm lamp shade"),
        ("chorus", "impression", "red shoes", "B3", "red running shoes"),
        ("chorus", "add_to_cart", "red shoes", "B4", "red canvas shoe"),
    ]
    pd.DataFrame(
        [{"source_kind": s, "action_name": a, "query_id": q, "user_query": q, "object_id": o,
          "object_description": d} for s, a, q, o, d in events]
    ).to_parquet(ubi / "events.parquet")  # fmt: skip
    runner = CliRunner()
    pool = tmp_path / "pool"
    res = runner.invoke(
        app,
        ["logs", "build", "--out", str(pool), "--datasets", "", "--ubi", str(ubi), "--source-kind", "chorus"],
    )
    assert res.exit_code == 0, res.output
    assert {"pairs.parquet", "documents.parquet", "pool.json"} <= {f.name for f in pool.iterdir()}
    pairs = pd.read_parquet(pool / "pairs.parquet")
    assert set(pairs["source"]) >= {"log"} and len(pairs) >= 4

    args = ["label", str(pool), "--teacher", str(teacher_dir), "--shard-size", "3", "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    labels = read_labels(pool / "labels")
    assert len(labels) == len(pairs) and len(labels["probs"].iloc[0]) == K
    manifest = json.loads((pool / "labels" / MANIFEST).read_text())
    assert manifest["teacher_id"].startswith("teacher:") and manifest["gains"] == list(GAINS)
    before = _snapshot(pool / "labels")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert _snapshot(pool / "labels") == before
