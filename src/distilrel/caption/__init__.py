"""Image captions as a document field (``distilrel caption``).

images.py       the job's input (doc_id, image path per row) and reading images, errors naming file + row
model.py        any Hugging Face vision-to-text model with generate(), by id or folder; greedy captions
job.py          the in-process, batched, sharded, resumable job → captions.parquet (doc_id → caption)
ray_backend.py  the same job on Ray Data (actor pool, the model loaded once per actor)
join.py         join captions into a dataset's documents; say plainly when a dataset has no images
"""

from __future__ import annotations

from distilrel.caption.images import ImageError, caption_inputs
from distilrel.caption.job import CaptionSettings, CaptionSummary, read_captions, run_caption_job
from distilrel.caption.join import attach_captions, caption_report
from distilrel.caption.model import Captioner, load_caption_model

__all__ = [
    "CaptionSettings",
    "CaptionSummary",
    "Captioner",
    "ImageError",
    "attach_captions",
    "caption_inputs",
    "caption_report",
    "load_caption_model",
    "read_captions",
    "run_caption_job",
]
