"""The teacher: any Hugging Face backbone + pooling + an MLP head over K relevance levels.

The head outputs one logit per level (most relevant first); the ranking score is the expected gain
under the predicted distribution, ``softmax(logits) @ gains`` with gains from the LevelMapping.

Backbones: encoders (BERT, XLM-R, E5, MiniLM, ...) pool the first token (``cls``) or the mean;
decoder LLMs (Llama, Qwen, Gemma, ...) pool the last non-padding token (left or right padding) and are
fine-tuned with LoRA (peft) by default.

Saved folder (:func:`save_teacher`), always with the tokenizer and ``distilrel.json`` (levels, text
fields, max_length, template, pooling, ...):

* ``hf-sequence-classification`` layout where the architecture allows it: BERT / RoBERTa / XLM-R /
  DistilBERT with ``cls`` pooling and a one-hidden-layer head of the backbone's width and the class's
  activation, or a decoder with ``last`` pooling and a single bias-free linear head. Then
  ``AutoModelForSequenceClassification.from_pretrained(folder)`` (and sentence-transformers'
  ``CrossEncoder``) load it with the same logits. LoRA adapters are merged before export.
* ``backbone+head`` otherwise: ``backbone/`` (a plain ``AutoModel`` folder) + ``head.safetensors``; the
  folder root then deliberately has no ``config.json``, so nothing loads it with a random head.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distilrel.data.levels import LevelMapping
from distilrel.io import atomic_dir
from distilrel.teacher.collator import PriorInputs
from distilrel.teacher.config import (
    DEFAULT_DECODER_TEMPLATE,
    HeadSpec,
    LoraSettings,
    ModelConfig,
    check_template,
)
from distilrel.teacher.prior import ZeroShotPrior

log = logging.getLogger(__name__)

META_FILE = "distilrel.json"
HEAD_FILE = "head.safetensors"
LAYOUT_HF = "hf-sequence-classification"
LAYOUT_SPLIT = "backbone+head"
FORMAT_VERSION = 1

# Encoders whose AutoModel takes ``add_pooling_layer``: the teacher's head replaces their pooler.
_NO_POOLER_KWARG = frozenset({"bert", "roberta", "xlm-roberta", "camembert"})

# model_type -> (hidden layer, output layer, activation) in XForSequenceClassification's state dict.
# BERT's pooler (dense + tanh over [CLS]) IS our head's hidden layer; RoBERTa-style heads are
# dense + tanh + out_proj over <s>; DistilBERT is pre_classifier + ReLU + classifier.
_ENCODER_HF_HEADS: dict[str, tuple[str, str, str]] = {
    "bert": ("bert.pooler.dense", "classifier", "tanh"),
    "roberta": ("classifier.dense", "classifier.out_proj", "tanh"),
    "xlm-roberta": ("classifier.dense", "classifier.out_proj", "tanh"),
    "camembert": ("classifier.dense", "classifier.out_proj", "tanh"),
    "distilbert": ("pre_classifier", "classifier", "relu"),
}

# LoRA targets per family when the config names none.
_ENCODER_LORA = ["query", "key", "value"]
_DISTILBERT_LORA = ["q_lin", "k_lin", "v_lin"]
_DECODER_LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}


# --- families and defaults ------------------------------------------------------------------------


def backbone_family(config: Any) -> str:
    """``encoder`` (bidirectional, masked-LM style) or ``decoder`` (causal LLM)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = config.model_type
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:  # BERT is in both maps: MLM wins
        return "encoder"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_decoder", False):
        return "decoder"
    return "encoder"


def default_lora_targets(config: Any) -> list[str] | str:
    """Attention projections for BERT-style encoders; every projection of a Llama-style decoder;
    peft's ``all-linear`` for anything else."""
    if config.model_type == "distilbert":
        return _DISTILBERT_LORA
    if config.model_type in _NO_POOLER_KWARG or config.model_type == "electra":
        return _ENCODER_LORA
    return _DECODER_LORA if _generic_cls(config.model_type) is not None else "all-linear"


def _generic_cls(model_type: str) -> type | None:
    import transformers
    from transformers.modeling_layers import GenericForSequenceClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    name = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(model_type)
    cls = getattr(transformers, name, None) if name else None
    return cls if isinstance(cls, type) and issubclass(cls, GenericForSequenceClassification) else None


def resolve_head(spec: HeadSpec, family: str, hidden_size: int) -> HeadSpec:
    """Fill the ``None`` defaults: encoders get hidden = backbone width + bias (BERT pooler + classifier),
    decoders a single bias-free linear layer (the ``score`` layer of XForSequenceClassification)."""
    hidden = spec.hidden if spec.hidden is not None else (hidden_size if family == "encoder" else 0)
    bias = spec.bias if spec.bias is not None else family == "encoder"
    return HeadSpec(hidden=hidden, activation=spec.activation, dropout=spec.dropout, bias=bias)


def _hidden_size(config: Any) -> int:
    return int(config.get_text_config().hidden_size)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading a backbone from a checkpoint with a head (or without a pooler) lists 'unused weights':
    expected here, so those warnings are silenced while we load."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


# --- modules --------------------------------------------------------------------------------------


class LevelHead(nn.Module):
    """dropout -> [Linear(hidden) -> activation -> dropout] -> Linear(K): (batch, dim) -> (batch, K)."""

    def __init__(self, in_dim: int, num_levels: int, spec: HeadSpec) -> None:
        super().__init__()
        assert spec.hidden is not None and spec.bias is not None, "resolve_head() first"
        self.dropout = nn.Dropout(spec.dropout)
        self.dense = nn.Linear(in_dim, spec.hidden) if spec.hidden else None
        self.activation = _ACTIVATIONS[spec.activation]()
        self.out = nn.Linear(spec.hidden or in_dim, num_levels, bias=spec.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = pooled
        if self.dense is not None:
            x = self.dropout(self.activation(self.dense(self.dropout(x))))  # (batch, hidden)
        else:
            x = self.dropout(x)
        return self.out(x)  # (batch, K)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, seq, dim) + (batch, seq) mask -> (batch, dim). Works with left and right padding."""
    batch = torch.arange(hidden.size(0), device=hidden.device)
    mask = mask.to(hidden.device)
    if pooling == "cls":  # first non-padding token
        return hidden[batch, mask.int().argmax(dim=1)]
    if pooling == "last":  # last non-padding token: the first 1 seen from the right
        last = hidden.size(1) - 1 - mask.int().flip(dims=[1]).argmax(dim=1)
        return hidden[batch, last]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}; use cls, mean or last")


class TeacherModel(nn.Module):
    """backbone (AutoModel, maybe with LoRA) -> pooling -> LevelHead; ``forward`` gives (batch, K) logits."""

    def __init__(
        self,
        backbone: nn.Module,
        levels: LevelMapping,
        *,
        pooling: str,
        head: HeadSpec,
        family: str,
        template: str | None = None,
        backbone_name: str = "",
        lora: LoraSettings | None = None,
        prior: ZeroShotPrior | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(
                f"TeacherModel: pooling must be cls, mean or last (resolve 'auto' first), got {pooling!r}"
            )
        if template is not None:
            check_template(template, "TeacherModel")
        self.backbone = backbone
        self.levels = levels
        self.pooling = pooling
        self.family = family
        self.template = template
        self.backbone_name = backbone_name
        self.lora = lora
        self.head_spec = resolve_head(head, family, _hidden_size(self.backbone_config))
        self.head = LevelHead(_hidden_size(self.backbone_config), levels.k, self.head_spec)
        self.register_buffer("gains", torch.tensor(levels.gains, dtype=torch.float32), persistent=False)
        self.prior = prior
        if prior is not None:
            if prior.linear.out_features != levels.k:
                raise ValueError(
                    f"TeacherModel: the prior predicts {prior.linear.out_features} levels, "
                    f"the head {levels.k}"
                )
            # The cross-encoder's part starts at zero: step 0 ranks exactly as the prior does.
            nn.init.zeros_(self.head.out.weight)
            if self.head.out.bias is not None:
                nn.init.zeros_(self.head.out.bias)

    @property
    def num_levels(self) -> int:
        return self.levels.k

    @property
    def backbone_config(self) -> Any:
        return self.base_backbone.config

    @property
    def base_backbone(self) -> nn.Module:
        """The transformers model under any peft wrapper."""
        get_base = getattr(self.backbone, "get_base_model", None)
        return get_base() if callable(get_base) else self.backbone

    @property
    def is_peft(self) -> bool:
        return callable(getattr(self.backbone, "merge_and_unload", None))

    def prior_inputs(self) -> PriorInputs | None:
        """What the collator must build for the prior (None without one)."""
        return self.prior.inputs() if self.prior is not None else None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **prior_inputs: torch.Tensor,
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.family == "decoder":
            kwargs["use_cache"] = False  # no generation: a KV cache would only cost memory
        hidden = self.backbone(**kwargs).last_hidden_state  # (batch, seq, dim)
        pooled = pool(hidden, attention_mask, self.pooling)  # (batch, dim)
        logits = self.head(pooled.to(self.head.out.weight.dtype))  # (batch, K)
        if self.prior is None:
            if prior_inputs:
                raise ValueError(f"TeacherModel has no prior but got prior inputs {sorted(prior_inputs)}")
            return logits
        return logits + self.prior(**prior_inputs).to(logits.dtype)

    def expected_gain(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, K) logits -> (batch,) ranking scores."""
        return logits.float().softmax(dim=-1) @ self.gains.float()

    def merged_backbone(self) -> nn.Module:
        """The backbone with LoRA merged in (a copy: this model keeps its adapter), else the backbone."""
        if not self.is_peft:
            return self.backbone
        return copy.deepcopy(self.backbone).merge_and_unload()

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable}


# --- building from a pretrained backbone ----------------------------------------------------------


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:
        # LLM tokenizers often lack a pad token; EOS stands in (pooling reads the mask, not the id).
        if tok.eos_token is None:
            raise ValueError(f"tokenizer at {path} has neither a pad nor an eos token; cannot batch")
        tok.pad_token = tok.eos_token
    return tok


def build_teacher(
    model_cfg: ModelConfig, levels: LevelMapping, *, backbone_path: str | Path | None = None
) -> tuple[TeacherModel, Any]:
    """A fresh teacher (pretrained backbone, random head) and its tokenizer, from a ``[model]`` config.

    ``backbone_path``: an already resolved folder (default: ``resolve_model(model_cfg.backbone)``).
    Weights are float32 (training keeps fp32 master weights; bf16 comes from autocast on a GPU).
    """
    from transformers import AutoConfig, AutoModel

    from distilrel.weights import resolve_model

    path = Path(backbone_path) if backbone_path is not None else resolve_model(model_cfg.backbone)
    config = AutoConfig.from_pretrained(str(path))
    family = backbone_family(config)
    kwargs: dict[str, Any] = {"add_pooling_layer": False} if config.model_type in _NO_POOLER_KWARG else {}
    with _quiet_transformers():
        backbone = AutoModel.from_pretrained(str(path), dtype=torch.float32, **kwargs)
    tokenizer = load_tokenizer(path)

    if model_cfg.gradient_checkpointing:
        _enable_checkpointing(backbone)
    use_lora = model_cfg.lora.enabled if model_cfg.lora.enabled is not None else family == "decoder"
    lora = None
    if use_lora:
        # Record what was applied (distilrel.json shows it), not the config's "auto" / empty defaults.
        targets = model_cfg.lora.target_modules or _as_tuple(default_lora_targets(config))
        lora = dataclasses.replace(model_cfg.lora, enabled=True, target_modules=targets)
        backbone = _apply_lora(backbone, lora)

    pooling = model_cfg.pooling if model_cfg.pooling != "auto" else ("cls" if family == "encoder" else "last")
    template = model_cfg.template or (DEFAULT_DECODER_TEMPLATE if family == "decoder" else None)
    prior = None
    if model_cfg.prior is not None:
        from distilrel.teacher.prior import build_prior

        p = model_cfg.prior
        prior = build_prior(
            p.backbone,
            levels,
            max_query_length=p.max_query_length,
            max_doc_length=p.max_doc_length,
            pooling=p.pooling,
        )
    model = TeacherModel(
        backbone,
        levels,
        pooling=pooling,
        head=model_cfg.head,
        family=family,
        template=template,
        backbone_name=model_cfg.backbone,
        lora=lora,
        prior=prior,
    )
    return model, tokenizer


def _as_tuple(targets: list[str] | str) -> tuple[str, ...]:
    return (targets,) if isinstance(targets, str) else tuple(targets)


def _enable_checkpointing(backbone: nn.Module) -> None:
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(backbone).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen (LoRA) inputs, no input-grad hack
    enable = getattr(backbone, "activation_checkpointing_enable", None)
    if callable(enable):
        enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5.x
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _apply_lora(backbone: nn.Module, lora: LoraSettings) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:
        raise ImportError("LoRA needs the peft package: pip install peft") from e
    # peft reads the string "all-linear" as a mode, a list as module names.
    targets = "all-linear" if lora.target_modules == ("all-linear",) else list(lora.target_modules)
    cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="FEATURE_EXTRACTION",
    )
    try:
        return get_peft_model(backbone, cfg)
    except ValueError as e:  # peft names the modules it could not find
        raise ValueError(
            f"[model.lora] target_modules {targets} do not fit {type(backbone).__name__}: {e}"
        ) from e


# --- saving and loading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HFLayout:
    """Where the teacher's head lives in ``cls_name``'s state dict."""

    cls_name: str
    prefix: str  # base_model_prefix: the backbone's keys live under it
    dense: str | None  # the head's hidden layer
    out: str  # the head's output layer

    def head_keys(self) -> dict[str, str]:
        """teacher head state-dict key -> HF key."""
        keys = {"out.weight": f"{self.out}.weight"}
        if self.dense is not None:
            keys |= {
                "dense.weight": f"{self.dense}.weight",
                "dense.bias": f"{self.dense}.bias",
                "out.bias": f"{self.out}.bias",
            }
        return keys


def hf_layout(model: TeacherModel, tokenizer: Any) -> tuple[HFLayout | None, str]:
    """The AutoModelForSequenceClassification layout this teacher maps onto exactly, or (None, why not)."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    config = model.backbone_config
    mt = config.model_type
    head = model.head_spec
    if model.prior is not None:
        return None, "the teacher adds a zero-shot prior (a second encoder) to its logits"
    if mt in _ENCODER_HF_HEADS:
        dense, out, act = _ENCODER_HF_HEADS[mt]
        cls_name = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES[mt]
        prefix = getattr(transformers, cls_name).base_model_prefix
        if model.pooling != "cls":
            return None, f"{cls_name} pools the first token; this teacher pools {model.pooling!r}"
        if head.hidden != _hidden_size(config) or head.activation != act or not head.bias:
            return None, f"{cls_name}'s head is Linear({_hidden_size(config)}) + {act} + biased Linear(K)"
        if model.template is not None:
            return None, f"{cls_name} reads sentence pairs; this teacher uses a template"
        return HFLayout(cls_name, prefix, dense, out), ""
    cls = _generic_cls(mt)
    if cls is not None:
        if model.pooling != "last":
            return None, f"{cls.__name__} pools the last token; this teacher pools {model.pooling!r}"
        if head.hidden != 0 or head.bias:
            return None, f"{cls.__name__}'s head is one bias-free Linear(K)"
        # The HF class finds the last token as the rightmost one that is not the pad id: a tokenizer that
        # ends sequences with that id (pad = eos, eos appended) would make it pool another token.
        ids = tokenizer("relevance")["input_ids"]
        if ids and ids[-1] == tokenizer.pad_token_id:
            return None, "the tokenizer ends sequences with the pad token, which the HF class skips"
        return HFLayout(cls.__name__, cls.base_model_prefix, None, "score"), ""
    return None, f"no known AutoModelForSequenceClassification layout for model_type {mt!r}"


def save_teacher(
    model: TeacherModel,
    tokenizer: Any,
    path: str | Path,
    *,
    text_fields: Sequence[Mapping[str, Any]],
    max_length: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the teacher folder atomically (see the module docstring); returns ``path``."""
    path = Path(path)
    layout, why = hf_layout(model, tokenizer)
    with atomic_dir(path) as tmp:
        if layout is not None:
            _save_hf(model, tokenizer, tmp, layout)
        else:
            log.info("saving teacher as backbone + head: %s", why)
            _save_split(model, tmp)
        tokenizer.save_pretrained(str(tmp))
        meta = teacher_meta(model, text_fields=text_fields, max_length=max_length, layout=layout, extra=extra)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def teacher_meta(
    model: TeacherModel,
    *,
    text_fields: Sequence[Mapping[str, Any]],
    max_length: int,
    layout: HFLayout | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    from distilrel import __version__

    lora = None
    if model.lora is not None:
        lora = {**dataclasses.asdict(model.lora), "merged": True}
    return {
        "kind": "teacher",
        "format": FORMAT_VERSION,
        "layout": LAYOUT_HF if layout is not None else LAYOUT_SPLIT,
        "hf_class": layout.cls_name if layout is not None else None,
        # where the head's weights live in the HF checkpoint (teacher head key -> HF key)
        "hf_head_keys": layout.head_keys() if layout is not None else None,
        "backbone": model.backbone_name,
        "model_type": model.backbone_config.model_type,
        "family": model.family,
        "pooling": model.pooling,
        "head": model.head_spec.to_dict(),
        "num_levels": model.num_levels,
        "levels": model.levels.to_dict(),
        "template": model.template,
        "max_length": max_length,
        "text": {"fields": [dict(f) for f in text_fields]},
        "lora": lora,
        "prior": model.prior.settings.to_dict() if model.prior is not None else None,
        "distilrel_version": __version__,
        **(dict(extra) if extra else {}),
    }


def _save_hf(model: TeacherModel, tokenizer: Any, folder: Path, layout: HFLayout) -> None:
    import transformers

    backbone = model.merged_backbone()
    config = copy.deepcopy(backbone.config)
    config.architectures = [layout.cls_name]
    config.num_labels = model.num_levels
    config.id2label = dict(enumerate(model.levels.names))
    config.label2id = {n: i for i, n in enumerate(model.levels.names)}
    config.problem_type = "single_label_classification"
    if model.family == "decoder":
        config.pad_token_id = tokenizer.pad_token_id
    state = {f"{layout.prefix}.{k}": v for k, v in backbone.state_dict().items()}
    head = model.head.state_dict()
    state |= {hf_key: head[ours] for ours, hf_key in layout.head_keys().items()}
    cls = getattr(transformers, layout.cls_name)
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten below; random init would only cost time
        hf_model = cls(config)
    # strict: a key we failed to map (or one the HF class has and we lack) is a bug, not a warning.
    hf_model.load_state_dict(state, strict=True)
    hf_model.to(next(model.parameters()).dtype)
    hf_model.save_pretrained(str(folder))


def _save_split(model: TeacherModel, folder: Path) -> None:
    from safetensors.torch import save_file

    from distilrel.teacher.prior import save_prior

    model.merged_backbone().save_pretrained(str(folder / "backbone"))
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()},
        str(folder / HEAD_FILE),
    )
    if model.prior is not None:
        save_prior(model.prior, folder)


@dataclass
class LoadedTeacher:
    """A teacher restored from its folder, with everything needed to build the same inputs as in training."""

    model: TeacherModel
    tokenizer: Any
    max_length: int
    text_fields: tuple[dict[str, Any], ...]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def levels(self) -> LevelMapping:
        return self.model.levels


def read_meta(path: str | Path) -> dict[str, Any]:
    f = Path(path) / META_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{path} is not a teacher folder: {META_FILE} is missing")
    meta = json.loads(f.read_text(encoding="utf-8"))
    if meta.get("kind") != "teacher":
        raise ValueError(f"{f}: kind is {meta.get('kind')!r}, not 'teacher'")
    if meta.get("format", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{f}: format {meta['format']} is newer than this distilrel reads ({FORMAT_VERSION})"
        )
    return meta


def load_teacher(
    path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> LoadedTeacher:
    """Restore a saved teacher exactly (same logits). ``dtype`` None: float32 on CPU, bfloat16 on a GPU
    that supports it. The model is returned in eval mode."""
    from transformers import AutoModel

    from distilrel.teacher.prior import load_prior

    path = Path(path)
    meta = read_meta(path)
    device = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    levels = LevelMapping.from_dict(meta["levels"])
    kwargs: dict[str, Any] = {"add_pooling_layer": False} if meta["model_type"] in _NO_POOLER_KWARG else {}
    with _quiet_transformers():
        if meta["layout"] == LAYOUT_HF:
            # AutoModel strips the XForSequenceClassification prefix and ignores the head weights.
            backbone = AutoModel.from_pretrained(str(path), dtype=torch.float32, **kwargs)
        else:
            backbone = AutoModel.from_pretrained(str(path / "backbone"), dtype=torch.float32, **kwargs)
    model = TeacherModel(
        backbone,
        levels,
        pooling=meta["pooling"],
        head=HeadSpec(**meta["head"]),
        family=meta["family"],
        template=meta.get("template"),
        backbone_name=meta.get("backbone", ""),
        lora=None,  # merged at save time
        prior=load_prior(path, meta["prior"], levels) if meta.get("prior") else None,
    )
    model.head.load_state_dict(_read_head(path, meta), strict=True)
    model.to(device=device, dtype=dtype).eval()
    return LoadedTeacher(
        model=model,
        tokenizer=load_tokenizer(path),
        max_length=int(meta["max_length"]),
        text_fields=tuple(meta["text"]["fields"]),
        meta=meta,
        path=path,
    )


def _read_head(path: Path, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    if meta["layout"] != LAYOUT_HF:
        with safe_open(str(path / HEAD_FILE), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 — safe_open has no __iter__
    keys: dict[str, str] = meta["hf_head_keys"]
    files = _weight_files(path, set(keys.values()))
    head: dict[str, torch.Tensor] = {}
    for ours, hf_key in keys.items():
        with safe_open(str(files[hf_key]), framework="pt") as f:
            head[ours] = f.get_tensor(hf_key)
    return head


def _weight_files(path: Path, keys: set[str]) -> dict[str, Path]:
    """Which safetensors file holds each key (one file, or shards listed in the index)."""
    single = path / "model.safetensors"
    if single.is_file():
        return dict.fromkeys(keys, single)
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{path}: neither model.safetensors nor model.safetensors.index.json")
    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    missing = sorted(keys - set(weight_map))
    if missing:
        raise ValueError(f"{index}: head weights {missing} are missing")
    return {k: path / weight_map[k] for k in keys}
