"""Dataset loaders and their registry: ``load_dataset(name, data_dir=None, **options) -> Dataset``.

Each loader module is the only place that knows its dataset's files and columns; all of them return the
canonical tables of :mod:`distilrel.data.schema`, checked by :mod:`distilrel.data.validate`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distilrel.data.loaders import (
    crowdflower,
    esci,
    esci_es,
    homedepot,
    ja_qa,
    judgments,
    scifact,
    table,
    xquad_r,
)
from distilrel.data.loaders._common import resolve_dir
from distilrel.data.schema import Dataset


@dataclass(frozen=True)
class LoaderSpec:
    """load:    ``load(data_dir, **options) -> Dataset``.
    folders: default folder names under ``distilrel.paths.data_dir()``, first existing one wins; empty
             for loaders whose files the user names (``table``)."""

    load: Callable[..., Dataset]
    folders: tuple[str, ...]
    description: str


DATASETS: dict[str, LoaderSpec] = {
    "crowdflower": LoaderSpec(crowdflower.load, (crowdflower.FOLDER,), "CrowdFlower e-commerce, graded 1-4"),
    "homedepot": LoaderSpec(homedepot.load, (homedepot.FOLDER,), "Home Depot products, rater means binned"),
    "scifact": LoaderSpec(scifact.load, (scifact.FOLDER,), "SciFact claims vs abstracts (retrieve)"),
    "esci": LoaderSpec(esci.load, esci.FOLDERS, "Amazon ESCI, official file layout (us/es/jp)"),
    "esci_es": LoaderSpec(esci_es.load, (esci_es.FOLDER,), "Spanish ESCI sample, binary"),
    "xquad_r": LoaderSpec(xquad_r.load, (xquad_r.FOLDER,), "XQuAD-R, 11 languages (retrieve)"),
    "ja_qa": LoaderSpec(ja_qa.load, (ja_qa.FOLDER,), "Japanese question -> paragraph (retrieve)"),
    "table": LoaderSpec(table.load, (), "your own judgments (parquet/csv/jsonl) with a column mapping"),
    "judgments": LoaderSpec(judgments.load, (), "judgments recorded in the explorer (`serve --judgments`)"),
}


def load_dataset(name: str, data_dir: str | Path | None = None, **options: object) -> Dataset:
    """Load a registered dataset. ``data_dir`` None: its folder under ``distilrel.paths.data_dir()``."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; datasets: {sorted(DATASETS)}")
    params = list(inspect.signature(spec.load).parameters)[1:]  # after data_dir
    unknown = [k for k in options if k not in params]
    if unknown:
        raise ValueError(f"dataset {name!r} does not take option(s) {unknown}; its options: {params}")
    if spec.folders:
        data_dir = _default_dir(spec.folders) if data_dir is None else Path(data_dir).expanduser()
    elif data_dir is not None:
        data_dir = Path(data_dir).expanduser()
    return spec.load(data_dir, **options)


def _default_dir(folders: tuple[str, ...]) -> Path:
    candidates = [resolve_dir(None, f) for f in folders]
    return next((c for c in candidates if c.is_dir()), candidates[-1])


__all__ = ["DATASETS", "LoaderSpec", "load_dataset"]
