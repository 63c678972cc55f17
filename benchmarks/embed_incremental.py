"""Incremental embedding: `distilrel embed` twice, with 1% of the documents changed in between.

    python benchmarks/embed_incremental.py                          # Home Depot, 54,667 products
    python benchmarks/embed_incremental.py --student runs/student-minilm/model --limit 20000

Run 1 embeds the whole catalog into an empty store; then ``--changed`` of the documents get a new title
(seeded choice); run 2 must embed exactly those, and its time is compared with run 1's. A third run over
the unchanged catalog embeds nothing (and never loads the model).

Times are of :func:`distilrel.index.embed.embed_catalog` in this process: text building + hashing +
store diff + model load (lazy, only when something changed) + encoding + the atomic write. Python
start-up and imports are outside both (a fixed cost of a few seconds per CLI call, the same for both).

The student: ``--student``, else ``runs/student-minilm/model`` if it exists, else a fresh MiniLM student
(untrained head — the head does not take part in document embedding, only the tower does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from distilrel.data import load_dataset
from distilrel.data.levels import DEFAULT_5
from distilrel.index.embed import EmbedReport, embed_catalog

TRAINED = Path("runs/student-minilm/model")


def student_folder(arg: Path | None, work: Path) -> tuple[Path, str]:
    if arg is not None:
        return arg, f"given student {arg}"
    if (TRAINED / "distilrel.json").is_file():
        return TRAINED, f"trained student {TRAINED}"
    from distilrel.student.model import StudentModel, StudentSettings

    settings = StudentSettings(backbone="minilm", max_query_length=32, max_doc_length=64)
    fresh = StudentModel.from_backbone("minilm", DEFAULT_5, settings, device="cpu")
    return fresh.save(work / "student"), "fresh MiniLM-L6 student (untrained head; towers = all-MiniLM-L6-v2)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--student", type=Path, help="saved student folder (default: see above)")
    parser.add_argument("--dataset", default="homedepot", help="catalog: this dataset's documents")
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of documents edited")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for the store (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    console = Console()

    work = args.work or Path(tempfile.mkdtemp(prefix="embed-bench-"))
    student, what = student_folder(args.student, work)
    ds = load_dataset(args.dataset)
    docs = ds.documents if args.limit is None else ds.documents.head(args.limit)
    docs = docs.reset_index(drop=True)
    store = work / "store"

    def run(label: str, catalog: object) -> EmbedReport:
        start = time.perf_counter()
        report = embed_catalog(
            student, catalog, store, default_fields=ds.fields, device=args.device, batch_size=args.batch_size
        )
        console.print(f"{label}: {report.embedded:,} embedded in {time.perf_counter() - start:.2f} s")
        return report

    first = run("run 1 (empty store)", docs)
    rng = np.random.default_rng(args.seed)
    n_changed = max(1, round(args.changed * len(docs)))
    rows = rng.choice(len(docs), size=n_changed, replace=False)
    edited = docs.copy()
    title = ds.fields[0]
    edited.loc[rows, title] = edited.loc[rows, title].astype(str) + " (new edition)"
    second = run(f"run 2 ({n_changed:,} edited)", edited)
    third = run("run 3 (no change)", edited)
    if second.embedded != n_changed or third.embedded != 0:
        raise SystemExit(f"run 2 embedded {second.embedded} (expected {n_changed}), run 3 {third.embedded}")

    ratio = second.seconds / first.seconds
    table = Table(
        title=f"incremental embedding, {args.dataset}: {len(docs):,} documents on {args.device} "
        f"({torch.get_num_threads()} threads)"
    )
    for col in ("run", "embedded", "unchanged", "seconds", "embedded/s (incl. model load)"):
        table.add_column(col, justify="right")
    for name, r in (("1: full", first), ("2: 1% edited", second), ("3: unchanged", third)):
        rate = f"{r.embedded / r.seconds:,.0f}" if r.embedded else "-"
        table.add_row(name, f"{r.embedded:,}", f"{r.unchanged:,}", f"{r.seconds:.2f}", rate)
    console.print(table)
    console.print(f"student: {what}")
    console.print(f"ratio run 2 / run 1 = {ratio:.4f} ({100 * ratio:.2f}% of the first run; target <= 3%)")
    console.print(f"ratio run 3 / run 1 = {third.seconds / first.seconds:.4f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "documents": len(docs),
                    "student": what,
                    "device": args.device,
                    "threads": torch.get_num_threads(),
                    "runs": [first.to_dict(), second.to_dict(), third.to_dict()],
                    "ratio_second_over_first": ratio,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
