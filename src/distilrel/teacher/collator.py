"""Tokenisation, done once per batch here (losses and models never tokenize).

Encoders read ``(query, text)`` as a tokenizer sentence pair (``[CLS] q [SEP] t [SEP]``); decoders read
one sequence built from a template (``"Query: {query}\\nDocument: {text}"``) because most LLM
tokenizers have no pair format. Truncation is ``longest_first``, so the (long) document is cut before
the (short) query. :meth:`TeacherCollator.encode` + :meth:`TeacherCollator.pad` are the only way inputs
are built — for training batches and for length-bucketed prediction alike.

A teacher with a zero-shot prior (:class:`~distilrel.teacher.prior.ZeroShotPrior`) also reads the query and
the document through the prior's own tokenizer, each on its own (``prior_q_*``, ``prior_d_*``), plus the
query-term ``overlap`` feature; :class:`PriorInputs` builds those here, beside the pair.

:class:`ListCollator` takes query lists (``{"query", "texts", "levels"}``) and flattens them into one batch
of pairs with ``groups`` (batch,): the list each pair came from, contiguous, for the ranking losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def pad_rows(features: Sequence[Mapping[str, Any]], tokenizers: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rows of id lists -> (batch, width) long tensors, each sequence kind (key prefix, e.g. ``""`` for the
    pair, ``"prior_q_"``) padded to its own longest with its tokenizer's pad id and side; other keys are
    float features, stacked."""
    out: dict[str, torch.Tensor] = {}
    for key in features[0]:
        prefix = next((key[: -len(t)] for t in _TOKEN_KEYS if key.endswith(t)), None)
        if prefix is None:  # a float feature
            out[key] = torch.tensor([float(f[key]) for f in features], dtype=torch.float32)
            continue
        tok = tokenizers[prefix]
        fill = {"input_ids": tok.pad_token_id, "attention_mask": 0}
        fill["token_type_ids"] = getattr(tok, "pad_token_type_id", 0)
        pad_value = fill[key[len(prefix) :]]
        left = tok.padding_side == "left"
        width = max(len(f[prefix + "input_ids"]) for f in features)
        rows = []
        for f in features:
            pad = [pad_value] * (width - len(f[key]))
            rows.append(pad + list(f[key]) if left else list(f[key]) + pad)
        out[key] = torch.tensor(rows, dtype=torch.long)  # (batch, width)
    return out


@dataclass
class PriorInputs:
    """The zero-shot bi-encoder's inputs: query and document tokenized apart, with the model's prefixes,
    and the share of the query's word pieces that occur in the document (``overlap``, in [0, 1])."""

    tokenizer: Any
    max_query_length: int = 32
    max_doc_length: int = 128
    query_prefix: str = ""
    doc_prefix: str = ""
    _special: frozenset[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._special = frozenset(int(i) for i in self.tokenizer.all_special_ids)

    def encode(self, queries: Sequence[str], texts: Sequence[str]) -> list[dict[str, Any]]:
        q = self.tokenizer(
            [self.query_prefix + x for x in queries], truncation=True, max_length=self.max_query_length
        )
        d = self.tokenizer(
            [self.doc_prefix + x for x in texts], truncation=True, max_length=self.max_doc_length
        )
        # Overlap is read on the text without prefixes, so "query: " does not count as a match.
        q_plain = self.tokenizer(list(queries), truncation=True, max_length=self.max_query_length)[
            "input_ids"
        ]
        d_plain = self.tokenizer(list(texts), truncation=True, max_length=self.max_doc_length)["input_ids"]
        out = []
        for i in range(len(queries)):
            row: dict[str, Any] = {f"prior_q_{k}": q[k][i] for k in ("input_ids", "attention_mask")}
            row |= {f"prior_d_{k}": d[k][i] for k in ("input_ids", "attention_mask")}
            row["overlap"] = self.overlap(q_plain[i], d_plain[i])
            out.append(row)
        return out

    def overlap(self, query_ids: Sequence[int], doc_ids: Sequence[int]) -> float:
        terms = [t for t in query_ids if t not in self._special]
        if not terms:
            return 0.0
        doc = set(doc_ids)
        return sum(t in doc for t in terms) / len(terms)


class TeacherCollator:
    """Examples ``{"query", "text", "level"}`` -> model inputs + ``labels`` (long, level index).

    ``level`` may also be a length-K probability list (soft labels) -> ``labels`` float (batch, K).
    """

    def __init__(
        self,
        tokenizer: Any,
        max_length: int,
        template: str | None = None,
        prior: PriorInputs | None = None,
    ) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("TeacherCollator: the tokenizer has no pad token; set tokenizer.pad_token first")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.template = template
        self.prior = prior
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
        rows = [{k: enc[k][i] for k in keys} for i in range(len(queries))]
        if self.prior is not None:
            for row, extra in zip(rows, self.prior.encode(queries, texts), strict=True):
                row.update(extra)
        return rows

    def pad(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad each sequence to the longest of its kind in the batch (the pair on the tokenizer's padding
        side, the prior's query and document on the prior tokenizer's); float features are stacked."""
        tokenizers = {"": self.tokenizer}
        if self.prior is not None:
            tokenizers |= {"prior_q_": self.prior.tokenizer, "prior_d_": self.prior.tokenizer}
        out = pad_rows(features, tokenizers)
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


class ListCollator(TeacherCollator):
    """Query lists ``{"query", "texts", "levels"}`` -> one batch of pairs, each list's pairs kept together,
    plus ``groups`` (batch,) long: the index of the list in the batch (0, 0, 0, 1, 1, ...)."""

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples or "texts" not in examples[0]:
            raise ValueError("ListCollator takes query lists {'query', 'texts', 'levels'}, got pairs")
        pairs: list[dict[str, Any]] = []
        groups: list[int] = []
        for g, e in enumerate(examples):
            if len(e["texts"]) != len(e["levels"]):
                raise ValueError(f"ListCollator: {len(e['texts'])} texts but {len(e['levels'])} levels")
            for text, level in zip(e["texts"], e["levels"], strict=True):
                pairs.append({"query": e["query"], "text": text, "level": level})
                groups.append(g)
        batch = super().__call__(pairs)
        batch["groups"] = torch.tensor(groups, dtype=torch.long)
        return batch
