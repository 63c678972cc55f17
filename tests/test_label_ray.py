"""The labelling job on Ray Data against a real local Ray head on 127.0.0.1: same shards as in-process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray.data")

from distilrel.label.job import LabelSettings, TeacherLabeller, run_label_job
from distilrel.label.ray_backend import run_label_job_ray
from distilrel.label.shards import MANIFEST, shard_path

# The tiny teacher and the small pool are shared with the in-process tests.
from test_label import GAINS, K, build_tiny_teacher, small_pool

pytestmark = pytest.mark.slow  # a Ray head and actors that import torch: ~30 s in all


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """``ray start --head --block`` in its own process group; stopped by signalling that group (not
    ``ray stop``, which would stop every Ray cluster of this user on the machine).

    The driver connects to 127.0.0.1:PORT. Ray itself rewrites ``--node-ip-address=127.0.0.1`` to the
    machine's routable address (``services.resolve_ip_for_localhost``), so its processes register that one.
    """
    port = _free_port()
    # A short temp dir: Ray puts Unix sockets under it, and socket paths are limited to ~107 bytes.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [
        str(ray_cli), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", "--block",
    ]  # fmt: skip
    # RAY_AUTH_MODE=disabled pins Ray's default: `ray start` would switch to token auth if the user has a
    # ~/.ray/auth_token, while this driver (its Ray config read at import) stays without a token. No
    # drain on SIGTERM: nothing is serving, and draining would hold the teardown for up to 30 s.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    log = open(Path(temp) / "head.log", "wb")  # noqa: SIM115 — closed in the teardown below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                tail = (Path(temp) / "head.log").read_text()[-2000:]
                pytest.fail(f"ray start exited with {proc.returncode}: {tail}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("the Ray head did not open its port within 60 s")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_labels_equal_in_process_and_resume(ray_head: str, tmp_path: Path) -> None:
    teacher = build_tiny_teacher(tmp_path / "teacher")
    pairs, texts = small_pool(tmp_path)
    settings = LabelSettings(shard_size=8, chunk_size=4, progress=False)
    common = {"teacher_id": "tiny", "k": K, "gains": GAINS, "settings": settings}
    labeller = TeacherLabeller(str(teacher))

    local = tmp_path / "local"
    run_label_job(pairs, texts, local, labeller.load(), **common)  # type: ignore[arg-type]
    remote = tmp_path / "ray"
    summary = run_label_job_ray(pairs, texts, remote, labeller.load, address=ray_head, num_actors=2, **common)  # type: ignore[arg-type]

    n_shards = -(-len(pairs) // 8)
    assert (summary.shards_done, summary.pairs_labelled, summary.backend) == (
        n_shards,
        len(pairs),
        "ray (2 actors)",
    )
    assert (remote / MANIFEST).read_text() == (local / MANIFEST).read_text()
    for i in range(n_shards):
        got, want = pq.read_table(shard_path(remote, i)), pq.read_table(shard_path(local, i))
        assert got.schema == want.schema
        assert got.drop(["probs", "score"]).equals(want.drop(["probs", "score"]))
        np.testing.assert_allclose(
            np.stack(got["probs"].to_pylist()), np.stack(want["probs"].to_pylist()), atol=1e-6, rtol=0
        )
        np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), atol=1e-5, rtol=0)

    # Resume on Ray: two shards lost, one damaged; only those three are scored again.
    shard_path(remote, 0).unlink()
    shard_path(remote, n_shards - 1).unlink()
    raw = shard_path(remote, 2).read_bytes()
    shard_path(remote, 2).write_bytes(raw[:100])
    kept = {i: shard_path(remote, i).read_bytes() for i in range(n_shards) if i not in (0, 2, n_shards - 1)}
    again = run_label_job_ray(pairs, texts, remote, labeller.load, address=ray_head, num_actors=1, **common)  # type: ignore[arg-type]
    assert (again.shards_done, again.shards_skipped) == (3, n_shards - 3)
    assert {i: shard_path(remote, i).read_bytes() for i in kept} == kept
    for i in (0, 2, n_shards - 1):
        np.testing.assert_allclose(
            np.stack(pq.read_table(shard_path(remote, i))["probs"].to_pylist()),
            np.stack(pq.read_table(shard_path(local, i))["probs"].to_pylist()),
            atol=1e-6,
            rtol=0,
        )
