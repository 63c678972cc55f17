"""Document text builder: the text a model reads, built from an ordered list of named fields.

Each field renders as ``"{label}: {value}"`` (label defaults to the field name; label ``""`` drops the
prefix), with whitespace collapsed and the value cut to the field's token budget. Empty fields are
skipped, so a document with no description reads exactly like one whose description was never a field.
The rendering is a pure function of (field specs, tokenizer, record): an ablation is a change of field
list, and :func:`content_hash` of the built text tells which cached embeddings are still valid.

Token budgets use the given Hugging Face tokenizer (the first ``max_tokens`` tokens of the value, encoded
without special tokens, decoded back); without a tokenizer, whitespace-separated words are counted
instead. Scripts written without spaces (Chinese, Japanese, Thai) are one "word" per run of text in that
fallback, so give a tokenizer when budgets must bind on such text.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

#: Values per tokenizer call in :meth:`TextBuilder.build_many` (bounds peak memory on big corpora).
_ENCODE_BATCH = 1024


@dataclass(frozen=True)
class FieldSpec:
    """One document field. ``label`` None: the field name; ``""``: no prefix. ``max_tokens`` None: no cut.
    ``required`` False: a collection without this column reads it as empty (one recipe can serve a dataset
    with descriptions and one without, as a teacher trained on both needs)."""

    name: str
    label: str | None = None
    max_tokens: int | None = None
    required: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("FieldSpec.name must be a non-empty column name")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(
                f"FieldSpec {self.name!r}: max_tokens must be >= 1 or None, got {self.max_tokens}"
            )

    @property
    def prefix(self) -> str:
        label = self.name if self.label is None else self.label
        return f"{label}: " if label else ""


def content_hash(text: str) -> str:
    """First 16 hex digits (64 bits) of the SHA-256 of the UTF-8 text: enough to tell changed documents
    apart in an embedding store (collision odds ~n²/2⁶⁵), short enough to store per row."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def collapse_whitespace(value: object) -> str:
    """Text of a cell with runs of whitespace (incl. newlines) turned into one space; missing → ``""``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).split())


class TextBuilder:
    """Renders document records into model text. See the module docstring for the rules."""

    def __init__(self, fields: Sequence[FieldSpec], tokenizer: object | None = None, separator: str = "\n"):
        fields = tuple(fields)
        if not fields:
            raise ValueError("TextBuilder needs at least one field")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"TextBuilder fields must be unique, got {names}")
        self.fields: tuple[FieldSpec, ...] = fields
        self.tokenizer = tokenizer
        self.separator = separator

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: Iterable[str | Mapping[str, Any] | FieldSpec],
        tokenizer: object | None = None,
        separator: str = "\n",
    ) -> TextBuilder:
        """From a list like ``["title", {"name": "description", "label": "desc", "max_tokens": 64}]``."""
        allowed = {"name", "label", "max_tokens", "required"}
        specs: list[FieldSpec] = []
        for item in config:
            if isinstance(item, FieldSpec):
                specs.append(item)
            elif isinstance(item, str):
                specs.append(FieldSpec(item))
            elif isinstance(item, Mapping):
                unknown = sorted(set(item) - allowed)
                if unknown or "name" not in item:
                    raise ValueError(
                        f"field config {dict(item)!r}: needs 'name'; allowed keys {sorted(allowed)}"
                    )
                specs.append(FieldSpec(**dict(item)))
            else:
                raise ValueError(f"field config entries must be str or dict, got {type(item).__name__}")
        return cls(specs, tokenizer=tokenizer, separator=separator)

    def to_config(self) -> list[dict[str, Any]]:
        """The field list as plain dicts (what :meth:`from_config` reads back)."""
        return [asdict(f) for f in self.fields]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    # --- rendering --------------------------------------------------------------------------------

    def build(self, record: Mapping[str, object]) -> str:
        """Text of one document record (a mapping from field name to value)."""
        self._check_fields(list(record.keys()), "record")
        parts = []
        for spec in self.fields:
            value = self._truncate([collapse_whitespace(record.get(spec.name, ""))], spec.max_tokens)[0]
            if value:
                parts.append(spec.prefix + value)
        return self.separator.join(parts)

    def build_many(self, documents: pd.DataFrame) -> list[str]:
        """Text of every row of ``documents``, in row order (identical to :meth:`build` per row;
        the tokenizer is called in batches per field)."""
        self._check_fields(list(documents.columns), "documents")
        columns = [
            self._truncate([collapse_whitespace(v) for v in documents[spec.name].tolist()], spec.max_tokens)
            if spec.name in documents.columns
            else [""] * len(documents)
            for spec in self.fields
        ]
        texts = []
        for values in zip(*columns, strict=True):
            parts = [spec.prefix + v for spec, v in zip(self.fields, values, strict=True) if v]
            texts.append(self.separator.join(parts))
        return texts

    def hashes(self, documents: pd.DataFrame) -> list[str]:
        """:func:`content_hash` of each built text."""
        return [content_hash(t) for t in self.build_many(documents)]

    def _check_fields(self, available: list[object], what: str) -> None:
        missing = [f.name for f in self.fields if f.required and f.name not in available]
        if missing:
            raise ValueError(
                f"text field(s) {missing} not found in the {what}; available columns: {available}"
            )

    def _truncate(self, values: list[str], max_tokens: int | None) -> list[str]:
        if max_tokens is None:
            return values
        if self.tokenizer is None:
            return [" ".join(v.split(" ")[:max_tokens]) if v else v for v in values]
        out = list(values)
        todo = [i for i, v in enumerate(values) if v]
        for start in range(0, len(todo), _ENCODE_BATCH):
            idx = todo[start : start + _ENCODE_BATCH]
            # One token past the budget is enough to know a value is cut (and keeps long values under the
            # model's max length, which the tokenizer would otherwise warn about).
            enc = self.tokenizer(  # type: ignore[operator]
                [values[i] for i in idx], add_special_tokens=False, truncation=True, max_length=max_tokens + 1
            )
            for i, ids in zip(idx, enc["input_ids"], strict=True):
                if len(ids) > max_tokens:
                    # Decode only what is cut: an untouched value keeps its exact original spelling.
                    cut = self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)  # type: ignore[attr-defined]
                    out[i] = collapse_whitespace(cut)
        return out

    def __repr__(self) -> str:
        tok = type(self.tokenizer).__name__ if self.tokenizer is not None else "whitespace"
        return f"TextBuilder(fields={self.to_config()}, tokenizer={tok}, separator={self.separator!r})"
