"""Amazon Shopping Queries (ESCI), from the OFFICIAL files of amazon-science/esci-data:

- ``shopping_queries_dataset_examples.parquet``: example_id, query, query_id, product_id, product_locale,
  esci_label (E/S/C/I), small_version, large_version, split (train/test);
- ``shopping_queries_dataset_products.parquet``: product_id, product_title, product_description,
  product_bullet_point, product_brand, product_color, product_locale.

Also loads files that follow these names but lack some columns, such as the ESCI-US sample in the shared
data folder (no example_id / query_id / split / version columns, no products file):

- no ``query_id``: synthesised from locale + query text (stable hash, ``us:q1a2b...``);
- no ``split``: every row is ``test`` (warned);
- no ``small_version``: all rows are kept unless ``version`` was asked for (then it is an error);
- no products file: documents carry empty text (warned) — an error only if ``fields`` were asked for.

Splits: ESCI's own train/test; ``validation_fraction`` of the TRAIN queries (hash of query_id, seeded) is
carved out as ``validation``. Doc ids are the product ids (ASINs); when several locales are loaded and the
same ASIN appears in more than one, those ASINs (only) become ``{locale}:{product_id}``, because the
product text differs per locale. Documents are restricted to the judged products.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from distilrel.data.levels import LevelMapping, preset
from distilrel.data.loaders._common import assemble
from distilrel.data.schema import DataError, Dataset
from distilrel.data.splits import SPLIT_SEED, carve_validation, stable_query_id
from distilrel.data.validate import (
    ROW,
    as_text,
    check_documents,
    check_judgments,
    read_table,
    rename_columns,
    require_columns,
    row_error,
)

FOLDERS = ("esci", "esci_us_opensearch_judgments")
EXAMPLES = "shopping_queries_dataset_examples.parquet"
PRODUCTS = "shopping_queries_dataset_products.parquet"

#: ESCI locale -> ISO 639-1 language of its queries and product text.
LOCALE_LANGUAGE = {"us": "en", "es": "es", "jp": "ja"}
#: canonical field -> products file column, in the default field order.
PRODUCT_FIELDS = {
    "title": "product_title",
    "description": "product_description",
    "bullets": "product_bullet_point",
    "brand": "product_brand",
    "color": "product_color",
}
GAIN_PRESETS = ("esci-kdd", "esci", "esci-repo")
VERSIONS = ("small", "large")


def load(
    data_dir: Path,
    locale: str | None = None,
    version: str | None = None,
    gains: str | LevelMapping = "esci-kdd",
    fields: Sequence[str] | None = None,
    validation_fraction: float = 0.1,
    seed: int = SPLIT_SEED,
) -> Dataset:
    """``locale``: "us" / "es" / "jp" or None (all). ``version``: "small" (Task 1, the default when the
    column exists) or "large". ``gains``: "esci-kdd" (KDD Cup 2022: E=1, S=0.1, C=0.01) or "esci-repo"
    (the dataset repository's scorer: E=1, C=0.1, S=0.01), or a LevelMapping."""
    levels = _levels(gains)
    if locale is not None and locale not in LOCALE_LANGUAGE:
        raise ValueError(f"esci: unknown locale {locale!r}; use one of {list(LOCALE_LANGUAGE)} or None")
    if version is not None and version not in VERSIONS:
        raise ValueError(f"esci: unknown version {version!r}; use one of {list(VERSIONS)}")
    if fields is not None:
        unknown = [f for f in fields if f not in PRODUCT_FIELDS]
        if unknown:
            raise ValueError(f"esci: unknown field(s) {unknown}; fields are {list(PRODUCT_FIELDS)}")
    want = tuple(fields) if fields is not None else tuple(PRODUCT_FIELDS)
    epath, ppath = data_dir / EXAMPLES, data_dir / PRODUCTS
    warnings: list[str] = []

    judg = _read_examples(epath, locale, version, warnings)
    judg, check_warnings = check_judgments(judg, levels, epath, extra=("locale", "product_id"))
    warnings += check_warnings
    if judg.empty:
        raise DataError(f"{epath}: no judgments left for locale={locale!r}, version={version!r}")
    if (judg["split"] == "train").any():
        judg["split"] = carve_validation(judg["split"], judg["query_id"], validation_fraction, seed)

    judg["doc_id"], qualified = _qualified_ids(judg["doc_id"], judg["locale"])
    if qualified:
        warnings.append(f"{qualified} product id(s) occur in several locales; they are '{{locale}}:{{id}}'")

    sources = [epath]
    if ppath.is_file():
        docs, doc_warnings = _read_products(ppath, judg, want)
        warnings += doc_warnings
        sources.append(ppath)
    elif fields is not None:
        raise DataError(f"{ppath}: products file not found, but text fields {list(fields)} were asked for")
    else:
        warnings.append(
            f"{ppath.name} not found in {data_dir}: documents have EMPTY text (labels only; "
            "text models cannot learn from this set)"
        )
        docs = judg.drop_duplicates("doc_id")[["doc_id", "language"]].copy()
        for f in want:
            docs[f] = ""
        docs, _ = check_documents(docs.assign(**{ROW: range(1, len(docs) + 1)}), want, epath)

    return assemble(
        "esci",
        judg.drop(columns=["locale", "product_id"]),
        docs,
        levels,
        want,
        epath,
        task="rerank",
        warnings=warnings,
        sources=sources,
        gains_preset=_gains_name(gains),
    )


def _levels(gains: str | LevelMapping) -> LevelMapping:
    if isinstance(gains, LevelMapping):
        return gains
    if gains not in GAIN_PRESETS:
        raise ValueError(f"esci: unknown gains preset {gains!r}; use one of {list(GAIN_PRESETS)}")
    return preset(gains)


def _gains_name(gains: str | LevelMapping) -> str:
    """Name of the gain convention, for reports ("State which one a figure uses")."""
    if isinstance(gains, LevelMapping):
        return next((n for n in GAIN_PRESETS if preset(n) == gains and n != "esci"), "custom")
    return "esci-kdd" if gains == "esci" else gains


def _read_examples(path: Path, locale: str | None, version: str | None, warnings: list[str]) -> pd.DataFrame:
    base = ["query", "product_id", "product_locale", "esci_label"]
    optional = ["query_id", "split", "small_version", "large_version"]
    df = read_table(path, [*base, *optional])
    require_columns(df, base, path)
    if version is not None:
        require_columns(df, [f"{version}_version"], path, what=f"version={version!r}")
    elif "small_version" in df.columns:
        version = "small"  # the official Task-1 (reranking) subset
    else:
        warnings.append(f"{path.name}: no small_version/large_version columns: all rows kept")

    loc = as_text(df["product_locale"])
    bad = ~loc.isin(list(LOCALE_LANGUAGE))
    if bad.any():
        raise row_error(df, bad, "product_locale", path, f"unknown locale (known: {list(LOCALE_LANGUAGE)})")
    keep = pd.Series(True, index=df.index)
    if locale is not None:
        keep &= loc == locale
    if version is not None:
        keep &= pd.to_numeric(df[f"{version}_version"], errors="coerce") == 1
    df = df.loc[keep].copy()
    loc = loc.loc[keep]

    df["locale"] = loc
    df["language"] = loc.map(LOCALE_LANGUAGE)
    if "query_id" not in df.columns:
        # Same text in two locales is two queries (different shoppers, catalogues).
        df["query_id"] = [
            stable_query_id(q, prefix=f"{lc}:q") for q, lc in zip(df["query"], loc, strict=True)
        ]
        warnings.append(f"{path.name}: no query_id column: ids synthesised from locale + query text")
    if "split" not in df.columns:
        df["split"] = "test"
        warnings.append(f"{path.name}: no split column: every judgment is in split 'test'")
    return rename_columns(df, {"doc_id": "product_id", "label": "esci_label"}, path)


def _qualified_ids(product_ids: pd.Series, locales: pd.Series) -> tuple[pd.Series, int]:
    """Product id, or ``{locale}:{product_id}`` for ids present in more than one loaded locale."""
    per_id = pd.DataFrame({"p": product_ids, "l": locales}).drop_duplicates().groupby("p")["l"].nunique()
    shared = set(per_id[per_id > 1].index)
    if not shared:
        return product_ids, 0
    ids = [f"{lc}:{p}" if p in shared else p for p, lc in zip(product_ids, locales, strict=True)]
    return pd.Series(ids, index=product_ids.index, dtype=str), len(shared)


def _read_products(path: Path, judg: pd.DataFrame, fields: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The judged (product, locale) pairs from the products file, with the judgments' doc ids."""
    cols = ["product_id", "product_locale", *(PRODUCT_FIELDS[f] for f in fields)]
    docs = read_table(path, cols, filters=[("product_id", "in", sorted(set(judg["product_id"])))])
    require_columns(docs, cols, path)
    docs["product_id"] = as_text(docs["product_id"])
    docs["locale"] = as_text(docs["product_locale"])
    # (product_id, locale) -> doc id exactly as the judgments use it (qualified or not).
    doc_ids = judg.drop_duplicates(["product_id", "locale"]).set_index(["product_id", "locale"])["doc_id"]
    key = pd.MultiIndex.from_arrays([docs["product_id"], docs["locale"]])
    docs["doc_id"] = doc_ids.reindex(key).to_numpy()
    docs = docs[docs["doc_id"].notna()].copy()  # products of other locales / unjudged: not part of this set
    docs["language"] = docs["locale"].map(LOCALE_LANGUAGE)
    docs = rename_columns(docs, {f: PRODUCT_FIELDS[f] for f in fields}, path)
    return check_documents(docs, fields, path)
