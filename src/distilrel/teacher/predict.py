"""Batched teacher inference with length bucketing.

All pairs are tokenized once (no padding), sorted by token length (longest first, so a batch that does
not fit in memory fails at once), cut into batches that each pad only to their own longest pair, run under
``torch.inference_mode`` and put back into input order. On real data this removes most padding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from distilrel.teacher.collator import TeacherCollator
from distilrel.teacher.model import TeacherModel

log = logging.getLogger(__name__)


def predict_logits(
    model: TeacherModel,
    tokenizer: Any,
    queries: Sequence[str],
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 256,
    *,
    bucket: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """(n, K) float32 logits for the n pairs, in input order."""
    n = len(queries)
    if n != len(texts):
        raise ValueError(f"predict: {n} queries but {len(texts)} texts")
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
    out = np.zeros((n, model.num_levels), dtype=np.float32)
    if n == 0:
        return out
    collator = TeacherCollator(tokenizer, max_length, template=model.template, prior=model.prior_inputs())
    start = time.perf_counter()
    features = collator.encode(queries, texts)
    # Stable sort, longest first: equal lengths keep input order (deterministic batches).
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable") if bucket else np.arange(n)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bar = _progress(n, progress)
    try:
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                idx = order[lo : lo + batch_size]
                batch = {k: v.to(device) for k, v in collator.pad([features[i] for i in idx]).items()}
                out[idx] = model(**batch).float().cpu().numpy()  # (batch, K)
                if bar is not None:
                    bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    log.info("teacher predicted %d pairs in %.1f s (%.1f pairs/s)", n, seconds, n / max(seconds, 1e-9))
    return out


def predict_levels(
    model: TeacherModel,
    tokenizer: Any,
    queries: Sequence[str],
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 256,
    *,
    bucket: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """(n, K) probabilities over the relevance levels (most relevant first), in input order."""
    logits = predict_logits(
        model, tokenizer, queries, texts, batch_size, max_length, bucket=bucket, progress=progress
    )
    return softmax(logits)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def expected_gain(probs: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    """(n, K) probabilities -> (n,) ranking scores."""
    return (probs.astype(np.float64) @ np.asarray(gains, dtype=np.float64)).astype(np.float64)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="teacher", unit="pair", smoothing=0.1)
