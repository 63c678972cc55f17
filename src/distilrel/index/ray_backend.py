"""Embedding on Ray Data: the texts an incremental update must embed, encoded by an actor pool.

:func:`ray_encoder` returns an ``Encode`` that :func:`~distilrel.index.embed.embed_incremental` calls
like the in-process one: the texts are cut into chunks of ``chunk_size`` (one per Ray task), each actor
loads the document tower once and encodes its chunks, and the vectors come back in text order. The store
is still written by the driver, in one atomic update, so a failed run leaves the previous generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from distilrel.index.embed import Encode
from distilrel.scale.progress import progress_bar
from distilrel.scale.ray import Columns, ShardActor, map_shards, ray_session


class ChunkEmbedder(ShardActor):
    """Ray Data actor: loads the encoder once, then embeds one chunk of texts per input row."""

    def __init__(self, factory: Callable[[], Encode], frame: list[Any]) -> None:
        super().__init__(frame)  # column: text (every text to embed)
        self.encode = factory()

    def process(self, part: pd.DataFrame) -> Columns:
        return {"vector": np.asarray(self.encode(part["text"].tolist()), dtype=np.float32)}  # (n, dim)


def ray_encoder(
    factory: Callable[[], Encode],
    address: str,
    *,
    chunk_size: int = 1024,
    num_actors: int = 1,
    cpus_per_actor: float = 1.0,
    progress: bool = True,
) -> Encode:
    """An ``Encode`` that runs ``factory()``'s encoder on the Ray cluster at ``address``."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    def encode(texts: list[str]) -> np.ndarray:
        n = len(texts)
        bounds = {i: (lo, min(lo + chunk_size, n)) for i, lo in enumerate(range(0, n, chunk_size))}
        parts: dict[int, np.ndarray] = {}
        with (
            ray_session(address) as ray,
            progress_bar(n, 0, progress, what="embedding", unit="docs") as advance,
        ):
            frame = pd.DataFrame({"text": list(texts)})
            for chunk, cols in map_shards(
                ray,
                frame,
                bounds,
                ChunkEmbedder,
                {"factory": factory},
                num_actors=num_actors,
                cpus_per_actor=cpus_per_actor,
                advance=advance,
            ):
                parts[chunk] = np.asarray(cols["vector"], dtype=np.float32)  # (chunk rows, dim)
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate([parts[i] for i in range(len(bounds))])  # (n, dim)

    return encode
