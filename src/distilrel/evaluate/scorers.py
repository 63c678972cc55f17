"""Scorer registry: one name or path on the command line → a :class:`Scorer`.

* ``random``, ``bm25``: the lexical and chance baselines;
* ``fusion:bm25+minilm`` (any ``+``-joined names): the zero-shot fusion baseline, per-query z-scored
  scores of each part summed (:class:`~distilrel.retrieve.fusion.FusionScorer`);
* a folder with ``distilrel.json``: a distilrel teacher or student checkpoint, by its ``kind`` field;
* anything else (``minilm``, ``mpnet``, ``e5``, a Hugging Face id, a sentence-transformers folder):
  a zero-shot :class:`~distilrel.retrieve.dense.BiEncoderScorer`.

Keyword arguments go to the scorer's constructor (``seed`` for random, ``k1``/``b`` for BM25,
``device``/``batch_size``/prefixes for encoders, whatever the checkpoint loaders accept).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distilrel.evaluate.scorer import Scorer

CHECKPOINT_FILE = "distilrel.json"
BASELINES = ("random", "bm25")
FUSION = "fusion:"
# kind in distilrel.json -> (module, loader function)
_CHECKPOINT_LOADERS: dict[str, tuple[str, str]] = {
    "teacher": ("distilrel.teacher.scorer", "load_teacher_scorer"),
    "student": ("distilrel.student.scorer", "load_student_scorer"),
}


def load_scorer(name_or_path: str | Path, progress: bool = False, **kw: Any) -> Scorer:
    """Build the scorer that ``name_or_path`` names (see the module doc). ``progress``: show progress bars
    while a model scores many pairs (the CLI turns it on)."""
    name = str(name_or_path).strip()
    if name.lower() == "random":
        from distilrel.retrieve.random import RandomScorer

        return RandomScorer(**kw)
    if name.lower() == "bm25":
        from distilrel.retrieve.bm25 import BM25Scorer

        return BM25Scorer(**kw)
    if name.lower().startswith(FUSION):
        from distilrel.retrieve.fusion import FusionScorer

        parts = [p.strip() for p in name[len(FUSION) :].split("+")]
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"{name!r}: a fusion names two or more scorers, e.g. fusion:bm25+minilm")
        return FusionScorer([load_scorer(p, progress=progress) for p in parts], name=name)
    folder = Path(name).expanduser()
    if (folder / CHECKPOINT_FILE).is_file():
        return _load_checkpoint(folder, progress=progress, **kw)
    _reject_decoder(name)
    from distilrel.retrieve.dense import BiEncoderScorer

    return BiEncoderScorer(name, progress=progress, **kw)


def _load_checkpoint(folder: Path, progress: bool = False, **kw: Any) -> Scorer:
    meta_file = folder / CHECKPOINT_FILE
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_file}: not valid JSON ({e})") from e
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in _CHECKPOINT_LOADERS:
        raise ValueError(
            f"{meta_file}: field 'kind' is {kind!r}; expected one of {sorted(_CHECKPOINT_LOADERS)}"
        )
    module_name, func_name = _CHECKPOINT_LOADERS[kind]
    loader = _import_loader(module_name, func_name, kind)
    if progress and "progress" in inspect.signature(loader).parameters:
        kw["progress"] = True
    scorer = loader(folder, **kw)
    if not isinstance(scorer, Scorer):
        raise TypeError(f"{module_name}.{func_name} returned {type(scorer).__name__}, not a Scorer")
    return scorer


def _import_loader(module_name: str, func_name: str, kind: str) -> Callable[..., Any]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:  # the module exists but one of its own imports failed: keep that error
            raise
        raise ImportError(
            f"cannot load a {kind} checkpoint: module {module_name} is not available in this "
            f"distilrel installation"
        ) from e
    loader = getattr(module, func_name, None)
    if loader is None:
        raise ImportError(f"cannot load a {kind} checkpoint: {module_name} has no {func_name}()")
    return loader


def _reject_decoder(name: str) -> None:
    """Decoder LLMs (gemma, smollm2) are teacher backbones; mean-pooled they are no zero-shot encoder."""
    from distilrel.weights import KNOWN_MODELS, canonical_id

    hf_id = canonical_id(name)
    if hf_id is not None and KNOWN_MODELS[hf_id].kind != "encoder":
        raise ValueError(
            f"{name!r} ({hf_id}) is a decoder LLM, usable as a teacher backbone, not as a zero-shot "
            f"bi-encoder scorer; train a teacher with it and pass the checkpoint folder instead"
        )
