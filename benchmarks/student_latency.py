"""Student latency: query encoding (p50/p99) and the cost of re-ranking 100 candidates, student vs teacher.

    python benchmarks/student_latency.py                       # MiniLM student (untrained head) on CPU
    python benchmarks/student_latency.py --student runs/student-minilm/model --device cuda

* query encoding: one short query at a time (what the serving path does on a query-cache miss), after
  ``--warmup`` calls; p50 / p99 / mean in milliseconds over ``--queries`` queries;
* re-ranking one query's ``--candidates`` documents:
  - student: encode the query + the head over the CACHED document embeddings (documents are embedded
    offline, so their encoding is not part of a request),
  - teacher: a cross-encoder over the same (query, document) pairs, same backbone size (distilrel's
    teacher over MiniLM with a random head; a plain ``AutoModelForSequenceClassification`` if the teacher
    package is unavailable). Weights do not change the cost, so neither needs training.
  The ratio teacher / student is the speed-up the distillation buys per request.

Queries and documents are CrowdFlower's (real lengths) when the shared data is present, else synthetic.
Latency depends on the machine and ``torch.get_num_threads()``: both are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from distilrel.data.levels import DEFAULT_5

WORDS = ["red", "blue", "running", "shoes", "leather", "sofa", "usb", "cable", "kitchen", "knife", "set"]
WORDS += ["garden", "hose", "lamp", "desk", "chair"]


def texts(n_queries: int, n_docs: int, seed: int) -> tuple[list[str], list[str], str]:
    """(queries, documents, source): CrowdFlower's when available, else random word strings."""
    rng = np.random.default_rng(seed)
    try:
        from distilrel.data import load_dataset
        from distilrel.text.builder import TextBuilder

        ds = load_dataset("crowdflower")
        queries = ds.judgments["query"].drop_duplicates().tolist()
        docs = TextBuilder.from_config(["title", {"name": "description", "max_tokens": 128}]).build_many(
            ds.documents.sample(n=n_docs, random_state=seed)
        )
        picked = [queries[i] for i in rng.integers(0, len(queries), n_queries)]
        return picked, docs, "crowdflower"
    except (FileNotFoundError, ValueError, ImportError):
        queries = [" ".join(rng.choice(WORDS, rng.integers(1, 5))) for _ in range(n_queries)]
        docs = [" ".join(rng.choice(WORDS, rng.integers(20, 120))) for _ in range(n_docs)]
        return queries, docs, "synthetic"


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> np.ndarray:
    """Seconds per call, ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out[i] = time.perf_counter() - start
    return out


def build_teacher_fn(device: str, max_length: int) -> tuple[Callable[[str, Sequence[str]], np.ndarray], str]:
    """A function scoring (query, candidates) with a MiniLM-sized cross-encoder, and what it is."""
    try:
        from distilrel.teacher.config import ModelConfig
        from distilrel.teacher.model import build_teacher
        from distilrel.teacher.predict import predict_levels

        model, tokenizer = build_teacher(ModelConfig(backbone="minilm", max_length=max_length), DEFAULT_5)
        model = model.to(device).eval()

        def score(query: str, docs: Sequence[str]) -> np.ndarray:
            return predict_levels(model, tokenizer, [query] * len(docs), docs, len(docs), max_length)

        return score, "distilrel teacher (MiniLM-L6 cross-encoder)"
    except ImportError:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from distilrel.weights import resolve_model

        path = resolve_model("minilm")
        tok = AutoTokenizer.from_pretrained(str(path))
        clf = (
            AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=DEFAULT_5.k)
            .to(device)
            .eval()
        )

        @torch.inference_mode()
        def score_plain(query: str, docs: Sequence[str]) -> np.ndarray:
            enc = tok(
                [query] * len(docs),
                list(docs),
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            return clf(**enc).logits.softmax(-1).float().cpu().numpy()

        return score_plain, "AutoModelForSequenceClassification (MiniLM-L6)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--student", type=Path, help="a saved student folder (default: a fresh MiniLM student)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--queries", type=int, default=200, help="queries timed for encoding latency")
    parser.add_argument("--candidates", type=int, default=100, help="documents re-ranked per query")
    parser.add_argument("--rerank-queries", type=int, default=10, help="queries timed for re-ranking")
    parser.add_argument("--max-doc-length", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()

    from distilrel.student.model import StudentModel, StudentSettings, load_student

    if args.student:
        student = load_student(args.student, device=args.device)
        max_doc = student.settings.max_doc_length
    else:
        settings = StudentSettings(backbone="minilm", max_query_length=32, max_doc_length=args.max_doc_length)
        student = StudentModel.from_backbone("minilm", DEFAULT_5, settings, device=args.device).eval()
        max_doc = args.max_doc_length
    queries, docs, source = texts(args.queries, args.candidates, args.seed)

    # 1. Query encoding, one query per call (a query-cache miss).
    it = iter(queries * 2)
    enc = timed(lambda: student.encode_queries([next(it)]), repeats=args.queries, warmup=args.warmup) * 1e3

    # 2. Re-ranking 100 candidates of one query: student on cached doc embeddings vs teacher on pairs.
    doc_emb = student.encode_docs(docs)  # offline, cached: not part of the request
    rq = iter(queries * 4)
    student_rr = timed(
        lambda: student.score(student.encode_queries([next(rq)]), doc_emb),
        repeats=args.rerank_queries,
        warmup=2,
    )
    teacher_fn, teacher_name = build_teacher_fn(args.device, max_doc)
    tq = iter(queries * 4)
    teacher_rr = timed(lambda: teacher_fn(next(tq), docs), repeats=args.rerank_queries, warmup=1)
    offline = timed(lambda: student.encode_docs(docs), repeats=1, warmup=0)[0]

    results = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "source": source,
        "query_encode_ms": {
            "p50": float(np.percentile(enc, 50)),
            "p99": float(np.percentile(enc, 99)),
            "mean": float(enc.mean()),
        },
        "rerank_ms": {
            "student": float(np.median(student_rr) * 1e3),
            "teacher": float(np.median(teacher_rr) * 1e3),
        },
        "teacher_over_student": float(np.median(teacher_rr) / np.median(student_rr)),
        "doc_encode_per_s": args.candidates / offline,
        "teacher": teacher_name,
        "candidates": args.candidates,
    }
    t = Table(title=f"student latency on {args.device} ({results['threads']} threads, {source} texts)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    q = results["query_encode_ms"]
    t.add_row("query encode p50 (ms)", f"{q['p50']:.2f}")
    t.add_row("query encode p99 (ms)", f"{q['p99']:.2f}")
    t.add_row(
        f"re-rank {args.candidates}: student, cached docs (ms)", f"{results['rerank_ms']['student']:.2f}"
    )
    t.add_row(
        f"re-rank {args.candidates}: teacher cross-encoder (ms)", f"{results['rerank_ms']['teacher']:.1f}"
    )
    t.add_row("cost ratio teacher / student", f"{results['teacher_over_student']:.1f}x")
    t.add_row("offline doc encoding (docs/s)", f"{results['doc_encode_per_s']:.0f}")
    console.print(t)
    console.print(f"teacher: {teacher_name}; doc max length {max_doc} tokens")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
