"""Serving load test: `/v1/rerank` with 100 candidate doc ids, over loopback, at concurrency 1, 8 and 32,
with a cold and a warm query cache — the student alone, then the same requests re-ranked by the teacher.

    python benchmarks/serve_load.py                       # fresh MiniLM student + MiniLM teacher, CPU
    python benchmarks/serve_load.py --student runs/student-minilm/model --teacher runs/teacher-minilm/model

* catalog: the first ``--docs`` Home Depot products, embedded into a store (``distilrel embed``);
* requests: one real Home Depot query each (distinct across all passes, so "cold" is cold) with 100
  candidate doc ids drawn from the store (seeded); "warm" re-sends the same requests, whose query
  embeddings are then in the cache;
* student: ``teacher_top = 0``; teacher: ``teacher_top = 100`` — the teacher (a cross-encoder) re-scores
  all 100 candidates of the same requests. Each scorer gets a fresh server process (an empty cache);
* the load is bounded: ``--requests`` per pass for the student, ``--teacher-requests`` (at least 2x the
  concurrency) for the teacher; each worker thread has its own HTTP connection.

Weights do not change the cost, so untrained heads are fine: without ``--student`` / ``--teacher`` the
benchmark uses ``runs/student-minilm/model`` if present, else a fresh MiniLM student, and a fresh MiniLM
teacher with a random head. The server and the load generator share the machine: numbers depend on its
cores and on what else runs there (printed below the table).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from distilrel.data import load_dataset
from distilrel.data.levels import DEFAULT_5
from distilrel.index.embed import embed_catalog
from embed_incremental import student_folder

CONCURRENCY = (1, 8, 32)


@dataclass(frozen=True)
class Pass:
    requests: int
    seconds: float
    latencies_ms: np.ndarray  # (requests,)
    cached: float  # fraction of answers whose query embedding came from the cache

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def serve_process(student: str, store: str, teacher: str, port: int) -> None:
    """Target of the server process: the real engine and app under uvicorn."""
    import uvicorn

    from distilrel.serve.app import create_app
    from distilrel.serve.cache import LRUCache
    from distilrel.serve.engine import load_engine

    engine = load_engine(student, store, cache=LRUCache(100_000), teacher_dir=teacher, device="cpu")
    uvicorn.run(create_app(engine), host="127.0.0.1", port=port, log_level="warning")


class Server:
    def __init__(self, student: Path, store: Path, teacher: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        ctx = mp.get_context("spawn")
        self.process = ctx.Process(target=serve_process, args=(str(student), str(store), str(teacher), port))

    def __enter__(self) -> Server:
        self.process.start()
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not self.process.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(timeout=30)


def run_pass(url: str, bodies: list[bytes], concurrency: int) -> Pass:
    """Send every body once with ``concurrency`` worker threads; latency per request in ms."""
    latencies = np.zeros(len(bodies))
    cached = np.zeros(len(bodies), dtype=bool)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=600, headers={"Content-Type": "application/json"}) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                start = time.perf_counter()
                r = http.post("/v1/rerank", content=bodies[i])
                latencies[i] = (time.perf_counter() - start) * 1e3
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                    return
                cached[i] = r.json()["query_cached"]

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return Pass(len(bodies), seconds, latencies, float(cached.mean()))


def fresh_teacher(work: Path) -> Path:
    from distilrel.teacher.config import ModelConfig
    from distilrel.teacher.model import build_teacher, save_teacher

    folder = work / "teacher"
    if not (folder / "distilrel.json").is_file():
        model, tok = build_teacher(ModelConfig(backbone="minilm", max_length=128), DEFAULT_5)
        save_teacher(model, tok, folder, text_fields=[{"name": "title"}], max_length=128)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--student", type=Path, help="saved student folder (default: see above)")
    parser.add_argument("--teacher", type=Path, help="saved teacher folder (default: fresh MiniLM teacher)")
    parser.add_argument("--docs", type=int, default=2000, help="Home Depot products in the store")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200, help="student requests per pass")
    parser.add_argument(
        "--teacher-requests", type=int, default=16, help="teacher requests per pass (min 2x c)"
    )
    parser.add_argument("--scorers", default="student,teacher", help="which passes to run")
    parser.add_argument("--port", type=int, default=18_765)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for student/teacher/store (default: temp)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    console = Console(width=150)

    work = args.work or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    student, student_what = student_folder(args.student, work)
    teacher = args.teacher or fresh_teacher(work)
    ds = load_dataset("homedepot")
    docs = ds.documents.head(args.docs)
    report = embed_catalog(student, docs, work / "store", default_fields=ds.fields, device="cpu")
    console.print(f"store: {report.total:,} documents ({report.embedded:,} embedded now)")

    rng = np.random.default_rng(args.seed)
    queries = list(dict.fromkeys(ds.judgments["query"]))
    rng.shuffle(queries)
    doc_ids = docs["doc_id"].astype(str).to_numpy()
    student_n = {c: args.requests for c in CONCURRENCY}
    teacher_n = {c: max(args.teacher_requests, 2 * c) for c in CONCURRENCY}
    bodies: dict[int, list[bytes]] = {}
    offset = 0
    for c in CONCURRENCY:
        batch = queries[offset : offset + student_n[c]]
        offset += student_n[c]
        bodies[c] = [
            json.dumps(
                {
                    "query": q,
                    "candidates": [{"id": d} for d in rng.choice(doc_ids, args.candidates, replace=False)],
                }
            ).encode()
            for q in batch
        ]
    warmup = [json.dumps({"query": q, "candidates": [{"id": doc_ids[0]}]}).encode() for q in queries[-8:]]

    results: dict[tuple[str, int, str], Pass] = {}
    scorers = [s for s in (("student", 0), ("teacher", args.candidates)) if s[0] in args.scorers.split(",")]
    for scorer, teacher_top in scorers:
        with Server(student, work / "store", teacher, args.port) as server:
            run_pass(server.url, warmup, 1)  # first-call costs (allocations, lazy init) out of the figures
            for c in CONCURRENCY:
                n = student_n[c] if scorer == "student" else teacher_n[c]
                chosen = [_with_teacher(b, teacher_top) for b in bodies[c][:n]]
                for cache in ("cold", "warm"):
                    results[(scorer, c, cache)] = p = run_pass(server.url, chosen, c)
                    console.print(
                        f"{scorer:7s} c={c:<2d} {cache}: {p.requests} requests, {p.rps:7.1f} req/s, "
                        f"p50 {p.pct(50):8.1f} ms, p99 {p.pct(99):8.1f} ms, query cached {p.cached:.0%}"
                    )

    table = Table(title=f"/v1/rerank, {args.candidates} candidates, loopback ({os.cpu_count()} CPUs)")
    for col in (
        "c",
        "cache",
        "student req/s",
        "p50 ms",
        "p99 ms",
        "teacher req/s",
        "p50 ms",
        "p99 ms",
        "req/s ratio",
        "p50 ratio",
        "p99 ratio",
    ):
        table.add_column(col, justify="right")
    rows = []
    if len(scorers) < 2:
        return
    for c in CONCURRENCY:
        for cache in ("cold", "warm"):
            s, t = results[("student", c, cache)], results[("teacher", c, cache)]
            row = {
                "concurrency": c,
                "cache": cache,
                "student": {
                    "rps": s.rps,
                    "p50_ms": s.pct(50),
                    "p99_ms": s.pct(99),
                    "requests": s.requests,
                    "cached": s.cached,
                },
                "teacher": {
                    "rps": t.rps,
                    "p50_ms": t.pct(50),
                    "p99_ms": t.pct(99),
                    "requests": t.requests,
                    "cached": t.cached,
                },
                "rps_student_over_teacher": s.rps / t.rps,
                "p50_teacher_over_student": t.pct(50) / s.pct(50),
                "p99_teacher_over_student": t.pct(99) / s.pct(99),
            }
            rows.append(row)
            table.add_row(
                str(c),
                cache,
                f"{s.rps:.1f}",
                f"{s.pct(50):.1f}",
                f"{s.pct(99):.1f}",
                f"{t.rps:.2f}",
                f"{t.pct(50):.0f}",
                f"{t.pct(99):.0f}",
                f"{row['rps_student_over_teacher']:.0f}x",
                f"{row['p50_teacher_over_student']:.0f}x",
                f"{row['p99_teacher_over_student']:.0f}x",
            )
    console.print(table)
    console.print(
        "ratios: req/s student / teacher; p50, p99 teacher / student. "
        f"student: {student_what}; teacher: {teacher}; load average {os.getloadavg()[0]:.1f}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"student": student_what, "teacher": str(teacher), "rows": rows}, indent=2)
        )


def _with_teacher(body: bytes, teacher_top: int) -> bytes:
    if not teacher_top:
        return body
    return json.dumps({**json.loads(body), "teacher_top": teacher_top}).encode()


if __name__ == "__main__":
    main()
