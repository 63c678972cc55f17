"""distilrel: LLM relevance teacher → distilled bi-encoder student → cached re-ranking service."""

from __future__ import annotations

__version__ = "0.1.0"
