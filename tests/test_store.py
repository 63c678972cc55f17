"""Embedding store, incremental embedding and the FAISS index, on real files in tmp_path.

The encoder here is a deterministic text → unit vector function (a seeded random vector per text) that
records what it was asked to encode, so the tests see exactly which documents were embedded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distilrel.data.schema import DataError
from distilrel.index.embed import embed_incremental, plan_update, student_ids
from distilrel.index.faiss_index import IndexConfig, VectorIndex, build_index
from distilrel.index.store import MANIFEST, EmbeddingRows, EmbeddingStore, StoreConfig, StoreError

DIM = 16


class RecordingEncoder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("encoder crashed")
        return np.stack([unit_vector(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)


def unit_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def catalog(n: int) -> tuple[list[str], list[str]]:
    return [f"d{i:04d}" for i in range(n)], [f"title of product {i}" for i in range(n)]


def shard_files(root: Path) -> set[str]:
    return {p.name for p in (root / "shards").glob("*.parquet")}


def test_second_run_embeds_only_new_and_changed_documents(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    ids, texts = catalog(300)
    first = embed_incremental(store, ids, texts, enc := RecordingEncoder(), "model-a")
    assert (first.new, first.embedded, first.generation) == (300, 300, 1) and len(enc.calls) == 1
    files_before = shard_files(store.root)

    texts2 = list(texts)
    texts2[5] = "a new title"
    texts2[250] = "another new title"
    ids2 = [*(i for i in ids if i not in {"d0007", "d0100", "d0299"}), "d9999"]
    texts2 = [t for i, t in zip(ids, texts2, strict=True) if i not in {"d0007", "d0100", "d0299"}] + [
        "brand new"
    ]
    second = embed_incremental(store, ids2, texts2, enc := RecordingEncoder(), "model-a")

    assert (second.new, second.changed, second.deleted, second.unchanged) == (1, 2, 3, 295)
    assert sorted(enc.calls[0]) == sorted(["a new title", "another new title", "brand new"])
    assert second.generation == 2
    # The first shard is kept as it is (5 dead rows listed in the manifest), one small shard is added.
    assert files_before < shard_files(store.root) and len(shard_files(store.root)) == 2
    manifest = store.manifest()
    assert sorted(s.rows for s in manifest.shards) == [3, 300] and manifest.rows == 298

    snap = store.load()
    assert sorted(snap.doc_ids) == sorted(ids2) and snap.generation == 2
    by_id = dict(zip(ids2, texts2, strict=True))
    for doc_id, text, vector, h in zip(
        snap.doc_ids, snap.texts, snap.vectors, snap.content_hashes, strict=True
    ):
        assert text == by_id[doc_id]
        np.testing.assert_array_equal(vector, unit_vector(text))
        assert snap.row_of_hash[h] == snap.row_of[doc_id]


def test_an_unchanged_catalog_does_not_touch_the_store(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    ids, texts = catalog(50)
    embed_incremental(store, ids, texts, RecordingEncoder(), "model-a")
    manifest_bytes = (store.root / MANIFEST).read_bytes()
    again = embed_incremental(
        store, list(reversed(ids)), list(reversed(texts)), enc := RecordingEncoder(), "model-a"
    )
    assert enc.calls == [] and (again.unchanged, again.embedded, again.generation) == (50, 0, 1)
    assert (store.root / MANIFEST).read_bytes() == manifest_bytes


def test_another_model_re_embeds_everything(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    ids, texts = catalog(40)
    embed_incremental(store, ids, texts, RecordingEncoder(), "model-a")
    old_files = shard_files(store.root)
    report = embed_incremental(store, ids, texts, enc := RecordingEncoder(), "model-b")
    assert (report.changed, report.embedded) == (40, 40) and len(enc.calls[0]) == 40
    assert store.manifest().model_id == "model-b" and not old_files & shard_files(store.root)
    assert set(store.keys()["model_id"]) == {"model-b"}


def test_an_interrupted_update_leaves_the_previous_generation(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    ids, texts = catalog(30)
    embed_incremental(store, ids, texts, RecordingEncoder(), "model-a")
    before = (store.root / MANIFEST).read_bytes(), shard_files(store.root)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        embed_incremental(store, ids, ["changed", *texts[1:]], RecordingEncoder(fail=True), "model-a")
    assert ((store.root / MANIFEST).read_bytes(), shard_files(store.root)) == before
    assert not [p for p in store.root.rglob("*") if p.name.endswith(".tmp")]
    assert len(store.load()) == 30


def test_bad_input_is_refused_with_the_rows(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    with pytest.raises(DataError, match=r"doc id 'a' appears twice \(rows 1 and 3\)"):
        embed_incremental(store, ["a", "b", "a"], ["x", "y", "z"], RecordingEncoder(), "m")
    with pytest.raises(StoreError, match="is not an embedding store"):
        store.load()
    rows = EmbeddingRows(["a"], ["h"], ["t"], np.ones((1, 4), np.float32))
    store.update("m", rows)
    with pytest.raises(StoreError, match="vectors of dim 3 for a store of dim 4"):
        store.update("m", EmbeddingRows(["b"], ["h"], ["t"], np.ones((1, 3), np.float32)))
    with pytest.raises(ValueError, match="both upserted and deleted"):
        store.update("m", rows, deletes=["a"])
    (store.root / store.manifest().shards[0].file).unlink()
    with pytest.raises(StoreError, match=r"named in manifest\.json is missing"):
        store.load()


def test_compaction_rewrites_mostly_dead_shards_and_merges_many(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", StoreConfig(compact_dead_fraction=0.25, max_shards=4))
    ids, texts = catalog(20)
    embed_incremental(store, ids, texts, RecordingEncoder(), "m")
    changed = [f"{t} v2" if i < 6 else t for i, t in enumerate(texts)]  # 6 of 20 dead: above 25%
    embed_incremental(store, ids, changed, RecordingEncoder(), "m")
    shards = store.manifest().shards
    assert all(not s.deleted for s in shards) and sorted(s.rows for s in shards) == [6, 14]
    for version in range(3, 7):  # each update adds a one-row shard until max_shards forces a merge
        changed[10] = f"product 10 v{version}"
        embed_incremental(store, ids, changed, RecordingEncoder(), "m")
    manifest = store.manifest()
    assert len(manifest.shards) <= 4 and manifest.rows == 20
    snap = store.load()
    np.testing.assert_array_equal(snap.vectors[snap.row_of["d0010"]], unit_vector("product 10 v6"))
    assert len(shard_files(store.root)) == len(manifest.shards)  # unreferenced shards are deleted


def test_plan_update_compares_hash_and_model() -> None:
    stored = pd.DataFrame(
        {"doc_id": ["a", "b", "c"], "content_hash": ["1", "2", "3"], "model_id": ["m", "m", "old"]}
    )
    plan = plan_update(stored, ["a", "b", "c", "d"], ["1", "changed", "3", "4"], "m")
    assert (plan.new, plan.changed, plan.unchanged, plan.deleted) == (("d",), ("b", "c"), 1, ())


# --- FAISS index ------------------------------------------------------------------------------------------


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at_10(index: VectorIndex, x: np.ndarray, queries: np.ndarray) -> float:
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    got = index.search(queries, 10)
    return float(
        np.mean([len({f"d{j}" for j in t} & {d for d, _ in g}) / 10 for t, g in zip(truth, got, strict=True)])
    )


@pytest.mark.parametrize(
    ("config", "kind", "min_recall"),
    [
        (IndexConfig(), "flat", 1.0),
        (IndexConfig(kind="hnsw", hnsw_m=16), "hnsw", 0.9),
        (IndexConfig(kind="ivfpq", nlist=8, pq_m=16, pq_bits=4, nprobe=8), "ivfpq", 0.45),
        (IndexConfig(exact_max=100), "hnsw", 0.9),
    ],
)
def test_index_kinds_search_by_cosine(
    tmp_path: Path, config: IndexConfig, kind: str, min_recall: float
) -> None:
    x = random_unit(1500, 32)
    ids = [f"d{i}" for i in range(1500)]
    index = VectorIndex.build(x, ids, config, model_id="m", generation=7)
    assert index.kind == kind and len(index) == 1500
    queries = random_unit(50, 32, seed=1)
    assert recall_at_10(index, x, queries) >= min_recall
    loaded = VectorIndex.load(index.save(tmp_path / "index"))
    assert (loaded.kind, loaded.model_id, loaded.generation, loaded.doc_ids) == (kind, "m", 7, ids)
    assert loaded.search(queries, 5) == index.search(queries, 5)
    if kind == "flat":  # exact: scores are the cosines
        best = index.search(x[42:43], 1)[0][0]
        assert best[0] == "d42" and best[1] == pytest.approx(1.0, abs=1e-5)


def test_index_config_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="needs at least 256 vectors to train"):
        VectorIndex.build(random_unit(100, 16), [f"d{i}" for i in range(100)], IndexConfig(kind="ivfpq"))
    with pytest.raises(ValueError, match="pq_m=5 must divide the vector dim 16"):
        IndexConfig(kind="ivfpq", pq_m=5).resolved(1000, 16)
    with pytest.raises(ValueError, match="kind must be one of"):
        IndexConfig(kind="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no vectors to index"):
        VectorIndex.build(np.zeros((0, 4), np.float32), [])


def test_build_index_from_the_store(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    ids, texts = catalog(60)
    embed_incremental(store, ids, texts, RecordingEncoder(), "model-a")
    index = build_index(store.root, tmp_path / "index")
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert meta["store_generation"] == 1 and meta["model_id"] == "model-a" and meta["count"] == 60
    hits = index.search(unit_vector("title of product 17")[None, :], 3)[0]
    assert hits[0][0] == "d0017"


# --- the CLI with a real (tiny) student --------------------------------------------------------------


def test_embed_and_index_build_cli(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from distilrel.cli.serve import embed, index_app
    from tiny import build_tiny_student
    from tiny import catalog as product_catalog

    student = build_tiny_student(tmp_path / "student")
    docs = product_catalog()
    docs.to_parquet(tmp_path / "docs.parquet", index=False)
    root = typer.Typer()
    root.command()(embed)
    root.add_typer(index_app, name="index")
    runner = CliRunner()
    args = ["embed", "--student", str(student), "--documents", str(tmp_path / "docs.parquet"), "--store"]
    args += [str(tmp_path / "store"), "--device", "cpu"]

    first = runner.invoke(root, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    docs.loc[3, "title"] = "warm lamp"
    docs.drop(index=[7]).to_parquet(tmp_path / "docs.parquet", index=False)
    second = runner.invoke(root, args)
    assert second.exit_code == 0, second.output + repr(second.exception)
    report = EmbeddingStore(tmp_path / "store").manifest()
    assert report.generation == 2 and report.rows == 39 and report.model_id == student_ids(student)[1]
    assert sorted(s.rows for s in report.shards) == [1, 40]  # only the changed title was embedded

    built = runner.invoke(
        root, ["index", "build", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "ix")]
    )
    assert built.exit_code == 0, built.output + repr(built.exception)
    assert VectorIndex.load(tmp_path / "ix").generation == 2
