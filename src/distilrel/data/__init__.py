"""Canonical judgment/document tables, relevance levels, loaders, splits and input checks."""

from __future__ import annotations

from distilrel.data.levels import LevelMapping, preset
from distilrel.data.loaders import DATASETS, load_dataset
from distilrel.data.schema import SPLITS, DataError, Dataset

__all__ = ["DATASETS", "SPLITS", "DataError", "Dataset", "LevelMapping", "load_dataset", "preset"]
