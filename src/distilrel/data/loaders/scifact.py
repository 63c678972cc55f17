"""SciFact (BEIR): scientific claims vs abstracts, retrieval over the whole 5,183-abstract corpus.

The folder keeps SciFact's own train / validation split; its ``validation`` rows are BEIR's ``test``
set (the 300 claims every BEIR number is reported on). By default (``test_split="validation"``) those
rows are served as split ``test`` — so ``evaluate --split test`` gives the BEIR figure — and a fresh
``validation`` split is carved from the train claims (10%, hash of the query id), so model selection
never sees the test claims. ``test_split=None`` keeps the stored train / validation as they are.
"""

from __future__ import annotations

from pathlib import Path

from distilrel.data.levels import SCIFACT
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import Dataset
from distilrel.data.splits import SPLIT_SEED, carve_validation
from distilrel.data.validate import check_documents, check_judgments, read_table, rename_columns

FOLDER = "scifact"
FIELDS = {"title": "title", "description": "abstract"}


def load(
    data_dir: Path,
    test_split: str | None = "validation",
    validation_fraction: float = 0.1,
    seed: int = SPLIT_SEED,
) -> Dataset:
    if test_split not in ("validation", None):
        raise ValueError(f"scifact: test_split must be 'validation' or None, got {test_split!r}")
    jpath, dpath = data_dir / "judgments.parquet", data_dir / "documents.parquet"

    docs = read_table(dpath, ["doc_id", "language", *FIELDS.values()])
    docs, doc_warnings = check_documents(rename_columns(docs, FIELDS, dpath), tuple(FIELDS), dpath)

    judg = read_table(jpath, ["query_id", "query", "doc_id", "label", "split"])
    judg["language"] = "en"
    judg, warnings = check_judgments(judg, SCIFACT, jpath)

    note = "stored train/validation (validation = BEIR test)"
    if test_split is not None:
        judg["split"] = judg["split"].replace({"validation": "test"})
        judg["split"] = carve_validation(judg["split"], judg["query_id"], validation_fraction, seed)
        note = (
            f"test = SciFact validation (= BEIR test); validation = {validation_fraction:.0%} of train "
            f"claims (hash of query_id, seed {seed})"
        )

    return assemble(
        "scifact",
        judg,
        docs,
        SCIFACT,
        tuple(FIELDS),
        jpath,
        task="retrieve",
        warnings=[*doc_warnings, *warnings],
        sources=[jpath, dpath],
        split_note=note,
    )
