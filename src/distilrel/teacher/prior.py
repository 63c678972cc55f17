"""A zero-shot prior for the teacher: what the pretrained bi-encoder already knows, added to the level logits.

A cross-encoder fine-tuned pointwise on a few thousand pairs from a checkpoint that was never a
cross-encoder forgets the within-query order its backbone had (issue 15: the seed teacher ranked below
the zero-shot MiniLM it started from). The hybrid teacher keeps that order by construction:

    logits = head(cross-encoder(query, doc)) + prior([cosine(q, d), overlap(q, d)])

* ``cosine``: a FROZEN bi-encoder (by default the same zero-shot model the baselines use) encodes the
  query and the document apart, mean- (or cls-) pools and L2-normalises them.
* ``overlap``: the share of the query's word pieces found in the document (a corpus-free lexical signal).
* ``prior``: one ``Linear(2, K)``. :func:`calibrate` fits it on the training pairs before fine-tuning as an
  ordered model of the levels on the cosine alone (weight = ``alpha * (gain - mean gain)``, a free bias per
  level), and the teacher's own head starts at zero: at step 0 the teacher ranks exactly as the zero-shot
  cosine does (expected gain is increasing in the cosine when alpha > 0) and predicts calibrated levels,
  which is the calibrated zero-shot baseline. Training then learns what the pairs add; validation selection
  may keep step 0, and the summary says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distilrel.data.levels import LevelMapping
from distilrel.teacher.collator import PriorInputs

log = logging.getLogger(__name__)

FEATURES = ("cosine", "overlap")


@dataclass(frozen=True)
class PriorSettings:
    """What the saved teacher records about its prior (``distilrel.json`` ``prior``)."""

    backbone: str
    pooling: str = "mean"
    max_query_length: int = 32
    max_doc_length: int = 128
    query_prefix: str = ""
    doc_prefix: str = ""
    features: tuple[str, ...] = FEATURES

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "pooling": self.pooling,
            "max_query_length": self.max_query_length,
            "max_doc_length": self.max_doc_length,
            "query_prefix": self.query_prefix,
            "doc_prefix": self.doc_prefix,
            "features": list(self.features),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PriorSettings:
        features = tuple(raw.get("features", FEATURES))
        if features != FEATURES:
            raise ValueError(f"teacher prior features {list(features)} are not {list(FEATURES)}")
        return cls(
            backbone=str(raw["backbone"]),
            pooling=str(raw.get("pooling", "mean")),
            max_query_length=int(raw.get("max_query_length", 32)),
            max_doc_length=int(raw.get("max_doc_length", 128)),
            query_prefix=str(raw.get("query_prefix", "")),
            doc_prefix=str(raw.get("doc_prefix", "")),
        )


class ZeroShotPrior(nn.Module):
    """frozen bi-encoder cosine + query-term overlap -> ``Linear(2, K)`` level logits."""

    def __init__(
        self, encoder: nn.Module, tokenizer: Any, levels: LevelMapping, settings: PriorSettings
    ) -> None:
        super().__init__()
        if settings.pooling not in ("mean", "cls"):
            raise ValueError(f"ZeroShotPrior: pooling must be mean or cls, got {settings.pooling!r}")
        if tokenizer.pad_token_id is None:
            raise ValueError("ZeroShotPrior: the bi-encoder's tokenizer has no pad token")
        self.encoder = encoder
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()
        self.tokenizer = tokenizer
        self.settings = settings
        self.linear = nn.Linear(len(FEATURES), levels.k)
        gains = torch.tensor(levels.gains, dtype=torch.float32)
        self.register_buffer("centered_gains", gains - gains.mean(), persistent=False)
        with torch.no_grad():  # uncalibrated but ordered: rank by cosine until calibrate() runs
            self.linear.weight.zero_()
            self.linear.weight[:, 0] = 10.0 * self.centered_gains
            self.linear.bias.zero_()

    def train(self, mode: bool = True) -> ZeroShotPrior:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, ever
        return self

    def inputs(self) -> PriorInputs:
        s = self.settings
        return PriorInputs(self.tokenizer, s.max_query_length, s.max_doc_length, s.query_prefix, s.doc_prefix)

    def _embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from distilrel.teacher.model import pool

        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return nn.functional.normalize(pool(hidden, mask, self.settings.pooling).float(), dim=-1)

    def features(
        self,
        prior_q_input_ids: torch.Tensor,
        prior_q_attention_mask: torch.Tensor,
        prior_d_input_ids: torch.Tensor,
        prior_d_attention_mask: torch.Tensor,
        overlap: torch.Tensor,
    ) -> torch.Tensor:
        """(batch, 2): cosine and overlap."""
        with torch.no_grad():
            q = self._embed(prior_q_input_ids, prior_q_attention_mask)
            d = self._embed(prior_d_input_ids, prior_d_attention_mask)
        return torch.stack([(q * d).sum(dim=-1), overlap.float()], dim=-1)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(**inputs).to(self.linear.weight.dtype))  # (batch, K)


#: overlap weights (relative to the cosine's) tried when the calibration fits the overlap too.
OVERLAP_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)


def calibrate(
    prior: ZeroShotPrior, features: torch.Tensor, levels: torch.Tensor, *, overlap: bool = False
) -> dict[str, float]:
    """Fit the prior as an ordered level model (:func:`distilrel.calibration.fit_ordered_logit`: weight =
    alpha * centered gains on the score, a bias per level). The score is the cosine alone (``overlap``
    False: step 0 ranks exactly as the zero-shot bi-encoder), or ``cosine + beta * overlap`` with beta
    the likelihood-best of :data:`OVERLAP_GRID` (a calibrated lexical + semantic fusion, fitted on the
    training pairs). ``features`` (n, 2), ``levels`` (n,) level indices. Returns the fit."""
    from distilrel.calibration import fit_ordered_logit

    if features.size(0) != levels.size(0) or features.size(0) == 0:
        raise ValueError(f"calibrate: {features.size(0)} feature rows but {levels.size(0)} levels")
    gains = (prior.centered_gains + 0.0).tolist()
    cos, ov, y = features[:, 0].numpy(), features[:, 1].numpy(), levels.numpy()
    fits = {
        beta: fit_ordered_logit(cos + beta * ov, y, gains) for beta in (OVERLAP_GRID if overlap else (0.0,))
    }
    beta = min(fits, key=lambda b: (fits[b].cross_entropy, b))
    fit = fits[beta]
    with torch.no_grad():
        g = torch.tensor(fit.centered_gains)
        prior.linear.weight[:, 0] = fit.alpha * g
        prior.linear.weight[:, 1] = fit.alpha * beta * g
        prior.linear.bias.copy_(torch.tensor(fit.bias))
    return {
        "alpha": fit.alpha,
        "overlap_weight": beta,
        "cross_entropy": fit.cross_entropy,
        "pairs": fit.pairs,
    }


# --- building, saving, loading -----------------------------------------------------------------------

PRIOR_DIR = "prior"
PRIOR_HEAD_FILE = "prior.safetensors"


def _folder_pooling(path: Path) -> str:
    """The sentence-transformers folder's pooling (``1_Pooling/config.json``), mean when it says none."""
    cfg = path / "1_Pooling" / "config.json"
    if cfg.is_file():
        raw = json.loads(cfg.read_text(encoding="utf-8"))
        if raw.get("pooling_mode_cls_token") and not raw.get("pooling_mode_mean_tokens"):
            return "cls"
    return "mean"


def build_prior(
    backbone: str,
    levels: LevelMapping,
    *,
    max_query_length: int = 32,
    max_doc_length: int = 128,
    pooling: str = "auto",
) -> ZeroShotPrior:
    """A prior over the zero-shot bi-encoder ``backbone`` (an alias, HF id or folder), with its prefixes."""
    from transformers import AutoModel

    from distilrel.teacher.model import _quiet_transformers, load_tokenizer
    from distilrel.weights import model_prefixes, resolve_model

    path = resolve_model(backbone)
    q_prefix, d_prefix = model_prefixes(path)
    if (q_prefix, d_prefix) == ("", ""):
        q_prefix, d_prefix = model_prefixes(backbone)
    settings = PriorSettings(
        backbone=backbone,
        pooling=_folder_pooling(path) if pooling == "auto" else pooling,
        max_query_length=max_query_length,
        max_doc_length=max_doc_length,
        query_prefix=q_prefix,
        doc_prefix=d_prefix,
    )
    with _quiet_transformers():
        encoder = AutoModel.from_pretrained(str(path), dtype=torch.float32)
    return ZeroShotPrior(encoder, load_tokenizer(path), levels, settings)


def save_prior(prior: ZeroShotPrior, folder: Path) -> None:
    from safetensors.torch import save_file

    prior.encoder.save_pretrained(str(folder / PRIOR_DIR))
    prior.tokenizer.save_pretrained(str(folder / PRIOR_DIR))
    state = {k: v.detach().contiguous().cpu() for k, v in prior.linear.state_dict().items()}
    save_file(state, str(folder / PRIOR_HEAD_FILE))


def load_prior(folder: Path, meta: dict[str, Any], levels: LevelMapping) -> ZeroShotPrior:
    from safetensors.torch import load_file
    from transformers import AutoModel

    from distilrel.teacher.model import _quiet_transformers, load_tokenizer

    settings = PriorSettings.from_dict(meta)
    src = folder / PRIOR_DIR
    if not (src / "config.json").is_file() or not (folder / PRIOR_HEAD_FILE).is_file():
        raise FileNotFoundError(f"{folder}: the teacher has a zero-shot prior but {PRIOR_DIR}/ is incomplete")
    with _quiet_transformers():
        encoder = AutoModel.from_pretrained(str(src), dtype=torch.float32)
    prior = ZeroShotPrior(encoder, load_tokenizer(src), levels, settings)
    prior.linear.load_state_dict(load_file(str(folder / PRIOR_HEAD_FILE)), strict=True)
    return prior


def prior_features(
    prior: ZeroShotPrior, queries: Sequence[str], texts: Sequence[str], batch_size: int = 128
) -> torch.Tensor:
    """(n, 2) features of n pairs, batched, under inference mode."""
    from distilrel.teacher.collator import pad_rows

    inputs = prior.inputs()
    tokenizers = {"prior_q_": prior.tokenizer, "prior_d_": prior.tokenizer}
    device = next(prior.parameters()).device
    out = []
    with torch.inference_mode():
        for lo in range(0, len(queries), batch_size):
            rows = inputs.encode(queries[lo : lo + batch_size], texts[lo : lo + batch_size])
            batch = pad_rows(rows, tokenizers)
            out.append(prior.features(**{k: v.to(device) for k, v in batch.items()}).cpu())
    return torch.cat(out) if out else torch.zeros((0, len(FEATURES)))
