"""The caption job on Ray Data against a real local Ray head on 127.0.0.1: the same shards and captions as
the in-process run, missing images recorded the same way, and a resumed Ray run recomputing only what is
missing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray.data")

from distilrel.caption.job import CAPTIONS_FILE, run_caption_job
from distilrel.caption.model import Captioner
from distilrel.caption.ray_backend import run_caption_job_ray
from distilrel.label.shards import MANIFEST, shard_path

# The tiny captioner and the images are shared with the in-process tests; the Ray head with the label ones.
from test_caption import SETTINGS, build_tiny_captioner, inputs_for, write_images
from test_label_ray import ray_head  # noqa: F401 — a module-scoped fixture

pytestmark = pytest.mark.slow  # a Ray head and actors that import torch: ~30 s in all


def test_ray_captions_equal_in_process_and_resume(ray_head: str, tmp_path: Path) -> None:  # noqa: F811
    model = build_tiny_captioner(tmp_path / "model")
    docs = write_images(tmp_path)
    (tmp_path / "images" / "yellow.png").unlink()  # row 4: recorded, not captioned, by both backends
    inputs = inputs_for(tmp_path, docs)
    settings = replace(SETTINGS, skip_missing=True)
    captioner = Captioner(str(model), max_new_tokens=6, device="cpu")

    local = run_caption_job(inputs, tmp_path / "local", captioner.load, model_id="tiny", settings=settings)
    remote = tmp_path / "ray"
    summary = run_caption_job_ray(
        inputs, remote, captioner.load, address=ray_head, model_id="tiny", settings=settings, num_actors=2
    )
    assert (summary.shards_done, summary.images_captioned, summary.backend) == (3, 10, "ray (2 actors)")
    assert summary.skipped == local.skipped and len(summary.skipped) == 1
    assert "row 4 (doc_id 'd3')" in summary.skipped[0]
    assert (remote / MANIFEST).read_text() == (tmp_path / "local" / MANIFEST).read_text()
    want = pq.read_table(tmp_path / "local" / CAPTIONS_FILE)
    assert pq.read_table(remote / CAPTIONS_FILE).equals(want)  # exact: same captions, same nulls
    assert want["caption"].null_count == 1 and len(set(want["caption"].to_pylist())) >= 3

    # Resume on Ray: shard 1 (rows 5-8) lost, the combined table gone; only that shard is captioned again.
    shard_path(remote, 1).unlink()
    (remote / CAPTIONS_FILE).unlink()
    kept = {i: shard_path(remote, i).read_bytes() for i in (0, 2)}
    again = run_caption_job_ray(
        inputs, remote, captioner.load, address=ray_head, model_id="tiny", settings=settings
    )
    assert (again.shards_done, again.shards_skipped, again.images_captioned) == (1, 2, 4)
    assert {i: shard_path(remote, i).read_bytes() for i in (0, 2)} == kept
    assert pq.read_table(remote / CAPTIONS_FILE).equals(want)
