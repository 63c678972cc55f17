"""`distilrel embed --ray-address`: a tiny student's document tower on a Ray actor pool against a real
local Ray head on 127.0.0.1 gives the store the in-process run gives, incremental updates included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data")

from distilrel.index.embed import embed_catalog
from distilrel.index.store import EmbeddingStore, StoreSnapshot

# The tiny student and catalog are shared with the serving tests; the Ray head with the label ones.
from test_label_ray import ray_head  # noqa: F401 — a module-scoped fixture
from tiny import build_tiny_student, catalog

pytestmark = pytest.mark.slow  # a Ray head and actors that import torch: ~30 s in all


def _assert_same_store(got: StoreSnapshot, want: StoreSnapshot) -> None:
    assert (got.model_id, got.dim, got.generation) == (want.model_id, want.dim, want.generation)
    assert sorted(got.doc_ids) == sorted(want.doc_ids)
    for doc_id in want.doc_ids:
        i, j = got.row_of[doc_id], want.row_of[doc_id]
        assert (got.content_hashes[i], got.texts[i]) == (want.content_hashes[j], want.texts[j])
        # Chunks differ from the in-process batches (other padding), so equal up to float rounding only.
        np.testing.assert_allclose(got.vectors[i], want.vectors[j], atol=1e-5, rtol=0)


def test_ray_embedding_equals_in_process_and_stays_incremental(ray_head: str, tmp_path: Path) -> None:  # noqa: F811
    student = build_tiny_student(tmp_path / "student")
    docs = catalog()
    local, remote = tmp_path / "local", tmp_path / "ray"
    embed_catalog(student, docs, local, device="cpu")
    report = embed_catalog(
        student, docs, remote, device="cpu", ray_address=ray_head, num_actors=2, chunk_size=7
    )
    assert (report.total, report.new, report.embedded) == (len(docs), len(docs), len(docs))
    _assert_same_store(EmbeddingStore(remote).load(), EmbeddingStore(local).load())
    vectors = EmbeddingStore(remote).load().vectors
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - vectors[0]).max() > 1e-3  # the documents did not all get one vector

    # Two titles change and one document goes: Ray embeds only the two, as the in-process run does.
    changed = docs.copy()
    changed.loc[[3, 11], "title"] = ["bright red lamp", "soft blue desk"]
    changed = changed.drop(index=20).reset_index(drop=True)
    embed_catalog(student, changed, local, device="cpu")
    again = embed_catalog(student, changed, remote, device="cpu", ray_address=ray_head, chunk_size=7)
    assert (again.changed, again.deleted, again.embedded, again.unchanged) == (2, 1, 2, len(docs) - 3)
    _assert_same_store(EmbeddingStore(remote).load(), EmbeddingStore(local).load())
