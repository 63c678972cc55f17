"""Pseudo-labelling throughput: pairs/s of ``distilrel label`` in-process vs on Ray Data, same machine.

    python benchmarks/label_throughput.py --pairs 2000
    python benchmarks/label_throughput.py --teacher runs/teacher --pairs 20000 --actors 2
    python benchmarks/label_throughput.py --ray-address 127.0.0.1:6379   # an existing cluster

Teacher: the saved teacher at ``--teacher``, else a MiniLM-sized one built from the real
all-MiniLM-L6-v2 backbone (6 layers, 384 wide, random 5-level head: the speed is that of a trained one).
Pool: BM25 top-10 over the Home Depot catalog for its training queries (real titles and queries), cut
to ``--pairs``. Both runs use the same shard plan and chunking and write real shard files to a temp folder.

Ray gives each actor ``cores / actors`` CPUs, and Ray sets OMP_NUM_THREADS (so torch's threads) to that;
``--threads`` sets torch's threads in-process. Compare like with like: on some machines fewer torch
threads per process is faster (on the 2-core dev box, MiniLM ran ~3x faster with 1 thread than with 2).

Timings: in-process counts labelling only (the teacher is loaded before); Ray counts from submission to
the last shard written, so it includes starting the actors and loading the teacher in each. The ratio
is Ray / in-process pairs/s. On a small machine Ray mostly adds overhead (actor start, object store,
one process per actor sharing the same cores); its point is scaling past one machine.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from distilrel.label.job import LabelSettings, LabelSummary, TeacherLabeller, run_label_job
from distilrel.label.pool import build_pool_tables, pool_texts
from distilrel.label.shards import read_labels

console = Console()


def minilm_teacher(folder: Path) -> Path:
    """A teacher on the real MiniLM backbone with a random head, saved like a trained one."""
    from distilrel.data.levels import DEFAULT_5
    from distilrel.teacher.config import ModelConfig
    from distilrel.teacher.model import build_teacher, save_teacher

    model, tokenizer = build_teacher(ModelConfig(backbone="minilm", max_length=128), DEFAULT_5)
    return save_teacher(model, tokenizer, folder / "teacher", text_fields=[{"name": "title"}], max_length=128)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, help="saved teacher folder (default: a MiniLM-sized one)")
    ap.add_argument("--pairs", type=int, default=2000, help="pairs to label")
    ap.add_argument("--shard-size", type=int, default=512)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--actors", type=int, default=0, help="Ray actors (default: one per 2 cores, at least 1)")
    ap.add_argument("--ray-address", help="existing Ray cluster (default: start a local one)")
    ap.add_argument("--device", default=None)
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads in-process (default: torch's choice)"
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cores = os.cpu_count() or 1
    actors = args.actors or max(1, cores // 2)
    with tempfile.TemporaryDirectory(prefix="label-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        with console.status("building the teacher"):
            teacher = args.teacher or minilm_teacher(tmp)
        with console.status("pooling Home Depot pairs"):
            pool = build_pool_tables(["homedepot"], k=10, max_queries=args.pairs // 5 + 10, exclude_from=[])
            pool.pairs = pool.pairs.head(args.pairs).reset_index(drop=True)
            from distilrel.teacher.model import load_tokenizer, read_meta

            fields = read_meta(teacher)["text"]["fields"]
            texts = pool_texts(pool, fields, load_tokenizer(teacher))
        n = len(pool.pairs)
        labeller = TeacherLabeller(
            str(Path(teacher).resolve()), batch_size=args.batch_size, device=args.device
        )
        settings = LabelSettings(shard_size=args.shard_size, chunk_size=args.chunk_size, progress=True)
        common = {"teacher_id": "bench", "k": 5, "settings": settings}

        t0 = time.perf_counter()
        score_fn = labeller.load()
        load_s = time.perf_counter() - t0
        local = run_label_job(pool.pairs, texts, tmp / "local", score_fn, **common)  # type: ignore[arg-type]

        if not args.ray_address and "RAY_AUTH_MODE" not in os.environ:
            # A throwaway local cluster: token auth with a token that lives in this process only (ray.init
            # would otherwise write one to ~/.ray/auth_token). Set before importing ray, which reads it then.
            os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
        import ray

        from distilrel.label.ray_backend import run_label_job_ray

        if args.ray_address:
            ray.init(address=args.ray_address, log_to_driver=False, logging_level="WARNING")
        else:
            ray.init(
                address="local",
                num_cpus=cores,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
            )
        try:
            remote = run_label_job_ray(
                pool.pairs,
                texts,
                tmp / "ray",
                labeller.load,
                address=args.ray_address or "auto",
                num_actors=actors,
                cpus_per_actor=max(1.0, cores / actors) if not args.ray_address else 1.0,
                **common,  # type: ignore[arg-type]
            )
        finally:
            ray.shutdown()

        a, b = read_labels(tmp / "local"), read_labels(tmp / "ray")
        diff = float(np.abs(np.stack(a["probs"].to_list()) - np.stack(b["probs"].to_list())).max())
        local = replace(local, backend=f"in-process ({threads} torch thread{'s' if threads > 1 else ''})")
        report(n, teacher, cores, load_s, local, remote, diff)


def report(n: int, teacher: Path, cores: int, load_s: float, local: LabelSummary, remote: LabelSummary,
           diff: float) -> None:  # fmt: skip
    t = Table(title=f"labelling {n} pairs, teacher {Path(teacher).name}, {cores} cores")
    for col in ("backend", "pairs", "seconds", "pairs/s", "vs in-process"):
        t.add_column(col, justify="right")
    t.add_row(
        local.backend, str(local.pairs_labelled), f"{local.seconds:.1f}", f"{local.pairs_per_s:,.1f}", "1.00x"
    )
    ratio = remote.pairs_per_s / local.pairs_per_s if local.pairs_per_s else float("nan")
    t.add_row(
        remote.backend, str(remote.pairs_labelled), f"{remote.seconds:.1f}", f"{remote.pairs_per_s:,.1f}",
        f"{ratio:.2f}x",
    )  # fmt: skip
    console.print(t)
    console.print(f"teacher load (in-process, not timed above): {load_s:.1f} s; "
                  f"max |probs in-process - probs Ray| = {diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
