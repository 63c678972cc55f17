"""Document text: field lists with labels and token budgets, content hashes, engaged-queries field."""

from __future__ import annotations

from distilrel.text.builder import FieldSpec, TextBuilder, content_hash
from distilrel.text.engaged import add_engaged_queries, engaged_queries

__all__ = ["FieldSpec", "TextBuilder", "add_engaged_queries", "content_hash", "engaged_queries"]
