"""The captioning model: any Hugging Face vision-to-text model with ``generate()`` (BLIP, GIT, a ViT-GPT2
``VisionEncoderDecoderModel``, ...), named by Hugging Face id or local folder.

No captioning weights ship on PyPI (see ``shared/MODELS.md`` (e)), so :func:`resolve_caption_model`
goes through :func:`distilrel.weights.resolve_model` — a local folder always works, a hub id only with
hub access — and says so plainly when neither is there. Captions are greedy (``do_sample=False``,
one beam): the same image and model always give the same caption, which resumable shards rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

#: RGB images -> one caption each, in order.
CaptionFn = Callable[[Sequence["Image"]], list[str]]


def resolve_caption_model(name_or_path: str | Path) -> Path:
    """The local folder of a captioning model; a FileNotFoundError that says what to do when the weights
    are not available offline."""
    from distilrel.weights import resolve_model

    try:
        folder = resolve_model(name_or_path)
    except (FileNotFoundError, ImportError) as exc:
        raise FileNotFoundError(
            f"captioning model {str(name_or_path)!r} is not available: no PyPI package ships captioning "
            "weights, so give a local folder with a saved captioning model (config.json, weights, "
            "preprocessor_config.json and a tokenizer, e.g. Salesforce/blip-image-captioning-base or "
            "nlpconnect/vit-gpt2-image-captioning saved with save_pretrained), or a hub id on a machine "
            f"that reaches the Hugging Face hub.\n{exc}"
        ) from exc
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"captioning model folder {folder} has no config.json")
    return folder


def captioner_id(folder: str | Path, max_new_tokens: int) -> str:
    """``<folder name>:<16 hex digits of the weights' fingerprint>:max<N>``: what the captions depend on."""
    from distilrel.label.job import folder_fingerprint

    folder = Path(folder)
    return f"{folder.name}:{folder_fingerprint(folder)[:16]}:max{max_new_tokens}"


class CaptionModel:
    """A loaded captioning model: ``model(images) -> captions`` in one ``generate()`` call."""

    def __init__(
        self, model: Any, image_processor: Any, tokenizer: Any, device: str, max_new_tokens: int
    ) -> None:
        self.model = model.eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.max_new_tokens = max_new_tokens

    def __call__(self, images: Sequence[Image]) -> list[str]:
        import torch

        if not images:
            return []
        pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, dtype=self.model.dtype)  # (batch, 3, height, width)
        with torch.inference_mode():
            ids = self.model.generate(
                pixel_values=pixels, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1
            )  # (batch, generated length)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]


def load_caption_model(
    name_or_path: str | Path, device: str | None = None, max_new_tokens: int = 30
) -> CaptionModel:
    """Image processor + tokenizer + vision-to-text model from one folder (or hub id)."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    folder = resolve_caption_model(name_or_path)
    config = AutoConfig.from_pretrained(folder)
    try:
        image_processor = AutoImageProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"{folder}: no image processor (preprocessor_config.json); is it a captioning model?"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"{folder}: no tokenizer to decode captions with") from exc
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    except ValueError as exc:  # an architecture without a vision-to-text head
        raise ValueError(
            f"{folder}: model type {config.model_type!r} is not an image-to-text model transformers can "
            f"generate captions with: {exc}"
        ) from exc
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return CaptionModel(model.to(device), image_processor, tokenizer, device, max_new_tokens)


@dataclass(frozen=True)
class Captioner:
    """A picklable recipe for the caption function: Ray actors call :meth:`load` once each."""

    model: str  # Hugging Face id or local folder
    max_new_tokens: int = 30
    device: str | None = None

    def load(self) -> CaptionFn:
        return load_caption_model(self.model, device=self.device, max_new_tokens=self.max_new_tokens)

    def model_id(self) -> str:
        """What the captions depend on (see :func:`captioner_id`); resolves the model folder."""
        return captioner_id(resolve_caption_model(self.model), self.max_new_tokens)
