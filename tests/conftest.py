"""Shared fixtures: writing small real tables to disk, and a tiny Hugging Face tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pytest

WriteTable = Callable[[Path, pd.DataFrame | Sequence[dict[str, object]]], Path]


def write_table(path: Path, rows: pd.DataFrame | Sequence[dict[str, object]]) -> Path:
    """Write rows as Parquet, CSV or JSON lines, chosen by the file extension."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        raise ValueError(f"test helper cannot write {path.suffix}")
    return path


@pytest.fixture
def write() -> WriteTable:
    return write_table


@pytest.fixture(scope="session")
def tiny_tokenizer() -> object:
    """A BERT-style WordPiece tokenizer over a 25-token vocabulary, built in memory (no download)."""
    from tiny import wordpiece_tokenizer

    words = ["red", "blue", "shoe", "shoes", "for", "running", "with", "soft", "sole", "soles", "a", "the"]
    words += ["lamp", "desk", "led", "bright", "light", "warm"]
    return wordpiece_tokenizer([*words, "##s", "##ing", "run"])
