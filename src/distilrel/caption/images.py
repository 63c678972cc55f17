"""The caption job's input: one (doc_id, image file) per row of a user's table, and reading the images.

Image cells are local file paths, absolute or relative to the table's folder. Every error names the
file, the table row (1-based, header excluded, as :class:`~distilrel.data.schema.DataError` does) and
the doc id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from distilrel.data.schema import DataError

if TYPE_CHECKING:
    from PIL.Image import Image

#: Columns of the job's input table (:func:`caption_inputs`).
INPUT_COLUMNS = ("doc_id", "image")


class ImageError(DataError):
    """A missing or unreadable image; the message names the file, the row and the doc id."""


def caption_inputs(
    table: pd.DataFrame, image_column: str, base_dir: str | Path, id_column: str = "doc_id"
) -> pd.DataFrame:
    """``doc_id`` and ``image`` (an absolute path, ``""`` for an empty cell) per row of ``table``, in row
    order; ``base_dir`` is the folder relative paths are resolved against (the table's folder)."""
    for col in (id_column, image_column):
        if col not in table.columns:
            raise DataError(f"the table has no {col!r} column; its columns are {list(table.columns)}")
    doc_ids = table[id_column].astype(str).str.strip()
    dup = doc_ids.duplicated(keep=False)
    if dup.any():
        rows = [int(i) + 1 for i in dup.to_numpy().nonzero()[0][:2]]
        raise DataError(f"doc_id {doc_ids[dup].iloc[0]!r} appears twice (rows {rows[0]} and {rows[1]})")
    if (doc_ids == "").any():
        raise DataError(f"empty doc_id in row {int((doc_ids == '').to_numpy().argmax()) + 1}")
    base = Path(base_dir).expanduser().resolve()
    images = [_absolute(cell, base) for cell in table[image_column].tolist()]
    return pd.DataFrame({"doc_id": doc_ids.tolist(), "image": images})


def _absolute(cell: object, base: Path) -> str:
    if cell is None or (isinstance(cell, float) and pd.isna(cell)) or not str(cell).strip():
        return ""
    p = Path(str(cell).strip()).expanduser()
    return str(p if p.is_absolute() else base / p)


def where(row: int, doc_id: str) -> str:
    """``row 3 (doc_id 'd2')`` for a 0-based position in the input table."""
    return f"row {row + 1} (doc_id {doc_id!r})"


def missing_image(path: str) -> str | None:
    """Why ``path`` cannot be an image file (``empty image path``, ``file not found``), else None."""
    if not path:
        return "empty image path"
    if not Path(path).is_file():
        return "file not found"
    return None


def check_images_exist(inputs: pd.DataFrame, rows: Sequence[int]) -> None:
    """Raise an :class:`ImageError` for the first of ``rows`` whose image is missing (cheap: a stat per
    row), counting the others, before any model is loaded."""
    bad = [(r, why) for r in rows if (why := missing_image(inputs["image"].iat[r]))]
    if bad:
        r, why = bad[0]
        more = f" ({len(bad) - 1} more rows lack their image too)" if len(bad) > 1 else ""
        raise ImageError(
            f"{inputs['image'].iat[r] or '<empty>'}: {why}, {where(r, inputs['doc_id'].iat[r])}{more}; "
            "fix the paths, or pass --skip-missing to caption the rest and list these in the summary"
        )


def open_image(path: str) -> Image:
    """The image at ``path`` as RGB, fully decoded (so a truncated file fails here, not in the model)."""
    from PIL import Image as PILImage

    with PILImage.open(path) as img:
        img.load()
        return img.convert("RGB")


def image_problem(path: str) -> tuple[Image | None, str | None]:
    """``(image, None)``, or ``(None, why)`` for a missing or unreadable file."""
    from PIL import UnidentifiedImageError

    why = missing_image(path)
    if why is not None:
        return None, why
    try:
        return open_image(path), None
    except (OSError, UnidentifiedImageError, ValueError) as exc:  # truncated, not an image, bad mode
        return None, f"unreadable image ({type(exc).__name__}: {exc})"
