"""Tokenisation, done once per batch here (losses and models never tokenize).

Encoders read ``(query, text)`` as a tokenizer sentence pair (``[CLS] q [SEP] t [SEP]``); decoders read
one sequence built from a template (``"Query: {query}\\nDocument: {text}"``) because most LLM
tokenizers have no pair format. Truncation is ``longest_first``, so the (long) document is cut before
the (short) query. :meth:`TeacherCollator.encode` + :meth:`TeacherCollator.pad` are the only way inputs
are built — for training batches and for length-bucketed prediction alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


class TeacherCollator:
    """Examples ``{"query", "text", "level"}`` -> model inputs + ``labels`` (long, level index).

    ``level`` may also be a length-K probability list (soft labels) -> ``labels`` float (batch, K).
    """

    def __init__(self, tokenizer: Any, max_length: int, template: str | None = None) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("TeacherCollator: the tokenizer has no pad token; set tokenizer.pad_token first")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.template = template
        # Only the inputs this tokenizer's model expects (Llama-style tokenizers emit no token_type_ids).
        self.input_names = tuple(tokenizer.model_input_names)

    def encode(self, queries: Sequence[str], texts: Sequence[str]) -> list[dict[str, list[int]]]:
        """Tokenize pairs without padding: one dict of id lists per pair."""
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        if self.template is None:
            enc = self.tokenizer(list(queries), list(texts), truncation=True, max_length=self.max_length)
        else:
            seqs = [self.template.format(query=q, text=t) for q, t in zip(queries, texts, strict=True)]
            enc = self.tokenizer(seqs, truncation=True, max_length=self.max_length)
        keys = [k for k in self.input_names if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(queries))]

    def pad(self, features: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad to the longest sequence of the batch, on the tokenizer's padding side."""
        width = max(len(f["input_ids"]) for f in features)
        left = self.tokenizer.padding_side == "left"
        fill = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0}
        fill["token_type_ids"] = getattr(self.tokenizer, "pad_token_type_id", 0)
        out: dict[str, torch.Tensor] = {}
        for key in features[0]:
            pad_value = fill.get(key, 0)
            rows = []
            for f in features:
                pad = [pad_value] * (width - len(f[key]))
                rows.append(pad + list(f[key]) if left else list(f[key]) + pad)
            out[key] = torch.tensor(rows, dtype=torch.long)  # (batch, width)
        if "attention_mask" not in out:
            raise ValueError("the tokenizer returned no attention_mask; the teacher needs it for pooling")
        return out

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.pad(self.encode([e["query"] for e in examples], [e["text"] for e in examples]))
        if "level" in examples[0]:
            levels = [e["level"] for e in examples]
            if isinstance(levels[0], Sequence):
                batch["labels"] = torch.tensor(levels, dtype=torch.float32)  # (batch, K) soft labels
            else:
                batch["labels"] = torch.tensor(levels, dtype=torch.long)  # (batch,)
        return batch
