"""Teacher inference throughput: our length-bucketed ``predict_levels`` vs sentence-transformers'
``CrossEncoder.predict`` on the same saved model and the same pairs.

    python benchmarks/teacher_infer.py              # a fresh MiniLM teacher, 1,000 CrowdFlower test pairs
    python benchmarks/teacher_infer.py --model runs/teacher-minilm/model --pairs 1722 --batch-size 64

Model: ``--model`` (a saved teacher in the AutoModelForSequenceClassification layout), else a teacher on the
real all-MiniLM-L6-v2 backbone with a random 5-level head, exported in that layout (the speed is that of a
trained one). Pairs: CrowdFlower test judgments, document text built with the teacher's own text fields.

Both sides get the same pairs, batch size, max_length, thread count and one warm-up batch. CrossEncoder
pads every batch of the input order to its longest pair; ours sorts by token length first. The script also
checks that both return the same logits (max |diff|), and prints pairs/s and the ratio ours / CrossEncoder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

console = Console()
FIELDS = [
    {"name": "title", "label": None, "max_tokens": 40},
    {"name": "description", "label": None, "max_tokens": 72},
]


def fresh_teacher(folder: Path, max_length: int) -> Path:
    from distilrel.data.levels import DEFAULT_5
    from distilrel.teacher.config import ModelConfig
    from distilrel.teacher.model import build_teacher, save_teacher

    torch.manual_seed(0)
    model, tokenizer = build_teacher(ModelConfig(backbone="minilm", max_length=max_length), DEFAULT_5)
    return save_teacher(model, tokenizer, folder / "teacher", text_fields=FIELDS, max_length=max_length)


def crowdflower_pairs(n: int, builder: object) -> tuple[list[str], list[str]]:
    from distilrel.data import load_dataset

    ds = load_dataset("crowdflower").split("test")
    judged = ds.judgments.head(n)
    docs = ds.documents[ds.documents["doc_id"].isin(set(judged["doc_id"]))]
    texts = dict(zip(docs["doc_id"], builder.build_many(docs), strict=True))  # type: ignore[attr-defined]
    return judged["query"].tolist(), [texts[d] for d in judged["doc_id"]]


def timed(fn: object) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn()  # type: ignore[operator]
    return np.asarray(out), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="saved teacher folder (default: a fresh MiniLM teacher)")
    ap.add_argument("--pairs", type=int, default=1000, help="CrowdFlower test pairs to score (1,722 in all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128, help="for the fresh teacher")
    args = ap.parse_args()

    from sentence_transformers import CrossEncoder

    from distilrel.teacher.model import load_teacher
    from distilrel.teacher.predict import predict_logits
    from distilrel.text.builder import TextBuilder

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or fresh_teacher(Path(tmp), args.max_length)
        teacher = load_teacher(folder, device="cpu", dtype=torch.float32)
        if teacher.meta["layout"] != "hf-sequence-classification":
            raise SystemExit(
                f"{folder} is saved as backbone + head; CrossEncoder can only load the HF layout"
            )
        max_length = teacher.max_length
        builder = TextBuilder.from_config(list(teacher.text_fields), tokenizer=teacher.tokenizer)
        queries, texts = crowdflower_pairs(args.pairs, builder)
        cross = CrossEncoder(str(folder), device="cpu", max_length=max_length)
        pairs = list(zip(queries, texts, strict=True))
        bs = args.batch_size

        def ours(bucket: bool) -> np.ndarray:
            return predict_logits(
                teacher.model, teacher.tokenizer, queries, texts, bs, max_length, bucket=bucket
            )

        def theirs() -> np.ndarray:
            return cross.predict(
                pairs, batch_size=bs, show_progress_bar=False, activation_fn=torch.nn.Identity()
            )

        # Warm-up: first calls pay for lazy initialisation (thread pools, kernels).
        predict_logits(teacher.model, teacher.tokenizer, queries[:bs], texts[:bs], bs, max_length)
        cross.predict(pairs[:bs], batch_size=bs, show_progress_bar=False)

        ce_logits, ce_s = timed(theirs)
        plain_logits, plain_s = timed(lambda: ours(False))
        our_logits, our_s = timed(lambda: ours(True))

    n = len(queries)
    table = Table(
        title=f"teacher inference, {n} CrowdFlower test pairs, batch {bs}, max_length {max_length}, "
        f"{torch.get_num_threads()} threads"
    )
    for col in ("method", "seconds", "pairs/s"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, s in (
        ("CrossEncoder.predict", ce_s),
        ("ours, input order", plain_s),
        ("ours, length-bucketed", our_s),
    ):
        table.add_row(name, f"{s:.2f}", f"{n / s:.1f}")
    console.print(table)
    console.print(f"ratio ours (bucketed) / CrossEncoder: [bold]{ce_s / our_s:.2f}x[/]")
    console.print(f"ratio ours (input order) / CrossEncoder: {ce_s / plain_s:.2f}x")
    diff = max(float(np.abs(o - ce_logits).max()) for o in (our_logits, plain_logits))
    console.print(f"max |logit difference| ours vs CrossEncoder: {diff:.2e} (same model, same inputs)")


if __name__ == "__main__":
    main()
