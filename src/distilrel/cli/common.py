"""Small pieces the CLI commands share: console, dataset + text builder construction, summaries."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def parse_fields(spec: str | None) -> list[str] | None:
    """``title,description:Description:256`` → field specs ``name[:label[:max_tokens]]`` for TextBuilder."""
    if not spec:
        return None
    return [s.strip() for s in spec.split(",") if s.strip()]


def load(dataset: str, data_dir: Path | None):
    from distilrel.data import load_dataset

    with console.status(f"loading {dataset}"):
        return load_dataset(dataset, data_dir=data_dir)


def summary_table(title: str, rows: dict[str, float]) -> Table:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in rows.items():
        t.add_row(k, f"{v:.4f}")
    return t
