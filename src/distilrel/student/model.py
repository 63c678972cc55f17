"""The student: two sentence-transformers towers (query, document) and a small K-level head.

Each tower is a plain :class:`~sentence_transformers.SentenceTransformer` (HF ``AutoModel`` + mean pooling +
L2 normalisation), so a saved tower loads with ``SentenceTransformer(path / "query")`` alone and its
embeddings can go straight into an ANN index (cosine = dot product). The head reads the interaction
features ``[q, d, q*d, |q-d|]`` of one query and one document embedding (plus a learned cosine prior, see
:class:`RelevanceHead`) and predicts the K relevance levels; the serving layer caches document embeddings
and calls :meth:`StudentModel.head_logits` on them.

Saved layout (``StudentModel.save`` / :func:`load_student`)::

    model/
      distilrel.json     {"kind": "student", levels, fields, prefixes, max lengths, score_mode, dim, ...}
      head.safetensors   the head's weights
      query/             a full SentenceTransformer folder (modules.json, 1_Pooling, 2_Normalize, prompts)
      doc/               the same for documents. With shared towers it holds the same weights: written
                         twice so that each folder loads alone with its own default prompt and max length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from distilrel.data.levels import LevelMapping
from distilrel.io import write_json
from distilrel.student.config import SCORE_MODES

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

KIND = "student"
FORMAT_VERSION = 1
META_FILE = "distilrel.json"
HEAD_FILE = "head.safetensors"
QUERY_DIR = "query"
DOC_DIR = "doc"
HEAD_FEATURES = ("q", "d", "q*d", "|q-d|")

ScoreMode = Literal["expected_gain", "cosine"]
Features = dict[str, Any]  # a tower's tokenised batch: input_ids, attention_mask, ... (+ ST bookkeeping)


@dataclass(frozen=True)
class StudentSettings:
    """Everything about a student besides its weights; saved in ``distilrel.json``.

    query_prefix / doc_prefix: prepended to each text (E5 wants ``"query: "`` / ``"passage: "``); saved as
                  the towers' sentence-transformers prompts so a plain ``SentenceTransformer`` adds them too.
    score_mode:   what :meth:`StudentModel.score` returns: ``expected_gain`` (head, levels weighted by their
                  gain, as a fraction of the top gain) or ``cosine`` (towers only, ANN-compatible).
    fields:       the document text fields the student was trained on, as text-builder dicts
                  (name, label, max_tokens); saved as ``text.fields`` like the teacher's.
    cosine_prior: a fresh head ranks by the towers' cosine (see :class:`RelevanceHead`).
    """

    backbone: str = "minilm"
    shared: bool = True
    query_prefix: str = ""
    doc_prefix: str = ""
    max_query_length: int = 32
    max_doc_length: int = 256
    head_hidden: int = 256
    head_dropout: float = 0.1
    cosine_prior: bool = True  # the head starts out ranking by cosine (see RelevanceHead)
    score_mode: ScoreMode = "expected_gain"
    fields: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.score_mode not in SCORE_MODES:
            raise ValueError(
                f"StudentSettings.score_mode must be one of {SCORE_MODES}, got {self.score_mode!r}"
            )
        if self.max_query_length < 1 or self.max_doc_length < 1:
            raise ValueError(
                f"StudentSettings max lengths must be positive, got query {self.max_query_length} "
                f"and doc {self.max_doc_length}"
            )
        if self.head_hidden < 1 or not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(
                f"StudentSettings: head_hidden must be >= 1 and head_dropout in [0, 1), "
                f"got {self.head_hidden} and {self.head_dropout}"
            )


class RelevanceHead(nn.Module):
    """MLP over ``[q, d, q*d, |q-d|]`` → K level logits (most relevant level first), plus a cosine prior.

    The product and the absolute difference give the MLP the pairwise interactions a cosine throws away
    (which dimensions agree, which disagree), at the cost of one small matrix product per pair.

    Cosine prior (``level_weights`` given): ``logits += s * cos(q, d) * w`` with ``w`` the levels' gains,
    centred, and ``s`` a learned scale; the MLP's last layer starts at zero. A fresh head then ranks
    exactly by cosine — the pretrained towers' zero-shot ranking — instead of by random logits, and
    training moves it from there; without the prior, the first hundreds of steps only undo a random head.
    """

    def __init__(
        self,
        dim: int,
        k: int,
        hidden: int = 256,
        dropout: float = 0.1,
        level_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.k = dim, k
        self.mlp = nn.Sequential(
            nn.Linear(4 * dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, k),
        )
        prior = level_weights is not None
        w = (
            torch.zeros(k)
            if level_weights is None
            else torch.tensor(list(level_weights), dtype=torch.float32)
        )
        if w.shape != (k,):
            raise ValueError(f"RelevanceHead: {len(w)} level weights for {k} levels")
        self.register_buffer("level_weights", w - w.mean())  # (K,)
        # A cosine gap of 0.1 then moves the top-vs-bottom logit gap by about 1 (unit gain spread).
        self.cos_scale = nn.Parameter(torch.tensor(10.0 if prior else 0.0), requires_grad=prior)
        if prior:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, q: Tensor, d: Tensor) -> Tensor:
        # q, d: (n, dim) → (n, 4*dim) → (n, K)
        logits = self.mlp(torch.cat([q, d, q * d, (q - d).abs()], dim=-1))
        cos = (q * d).sum(dim=-1, keepdim=True)  # (n, 1): the towers give unit vectors
        return logits + self.cos_scale * cos * self.level_weights


def make_head(dim: int, levels: LevelMapping, settings: StudentSettings) -> RelevanceHead:
    """The head for ``levels``; its cosine prior weighs each level by its gain (as a fraction of the top)."""
    gains = np.asarray(levels.gains, dtype=np.float64)
    weights = (gains / gains.max() if gains.max() > 0 else gains).tolist() if settings.cosine_prior else None
    return RelevanceHead(dim, levels.k, settings.head_hidden, settings.head_dropout, weights)


def _build_tower(backbone_dir: Path, settings: StudentSettings, device: str | None) -> SentenceTransformer:
    """AutoModel + mean pooling + normalisation, whatever pooling the backbone folder itself declares."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(backbone_dir))
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    prompts = {"query": settings.query_prefix, "document": settings.doc_prefix}
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device, prompts=prompts)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class StudentModel(nn.Module):
    """Query tower, document tower (or one shared tower) and the K-level head.

    Embedding-level API (what the serving layer uses): :meth:`encode_queries`, :meth:`encode_docs`
    → ``(n, dim)`` float32 arrays, L2-normalised; :meth:`head_logits`, :meth:`predict_levels`,
    :meth:`score` on embeddings. Training uses :meth:`tokenize_queries` / :meth:`tokenize_docs` (in the
    collator) and :meth:`forward` (with gradients).
    """

    def __init__(
        self,
        query_tower: SentenceTransformer,
        doc_tower: SentenceTransformer | None,
        levels: LevelMapping,
        settings: StudentSettings,
        head: RelevanceHead | None = None,
    ) -> None:
        super().__init__()
        if settings.shared != (doc_tower is None):
            raise ValueError(
                f"StudentModel: settings.shared={settings.shared} but a doc tower was "
                f"{'given' if doc_tower is not None else 'not given'}"
            )
        self.query_tower = query_tower
        # With shared weights there is no second module: the state dict then holds each tensor once.
        self._doc_tower = doc_tower
        self.levels = levels
        self.settings = settings
        dim = query_tower.get_embedding_dimension()
        if dim is None:
            raise ValueError("StudentModel: the query tower does not report an embedding dimension")
        if doc_tower is not None and doc_tower.get_embedding_dimension() != dim:
            raise ValueError(
                f"StudentModel: query tower dim {dim} != doc tower dim {doc_tower.get_embedding_dimension()}"
            )
        self.dim = int(dim)
        self.head = head or make_head(self.dim, levels, settings)
        if (self.head.dim, self.head.k) != (self.dim, levels.k):
            raise ValueError(
                f"StudentModel: head expects dim {self.head.dim} and {self.head.k} levels, "
                f"towers give dim {self.dim} and the level mapping has {levels.k}"
            )
        # Gains as a fraction of the top gain: expected gain in [0, 1] whatever the dataset's gain scale.
        gains = torch.tensor(levels.gains, dtype=torch.float32)
        top = float(gains.max()) if float(gains.max()) > 0 else 1.0
        self.register_buffer("gain_weights", gains / top, persistent=False)

    # --- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_backbone(
        cls, backbone: str | Path, levels: LevelMapping, settings: StudentSettings, device: str | None = None
    ) -> StudentModel:
        """A fresh student over pretrained weights (a local folder, a known id or an alias: ``minilm``)."""
        from distilrel.weights import resolve_model

        path = resolve_model(backbone)
        device = device or default_device()
        query = _build_tower(path, settings, device)
        doc = None if settings.shared else _build_tower(path, settings, device)
        return cls(query, doc, levels, settings).to(device)

    @property
    def doc_tower(self) -> SentenceTransformer:
        return self.query_tower if self._doc_tower is None else self._doc_tower

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    @property
    def tokenizer(self) -> Any:
        """The document tower's tokenizer (text builders use it for token budgets)."""
        return self.doc_tower.tokenizer

    # --- tokenisation and embeddings with gradients (training) ---------------------------------------------

    def tokenize_queries(self, texts: Sequence[str]) -> Features:
        return self.query_tower.preprocess(
            list(texts), prompt=self.settings.query_prefix or None, max_length=self.settings.max_query_length
        )

    def tokenize_docs(self, texts: Sequence[str]) -> Features:
        return self.doc_tower.preprocess(
            list(texts), prompt=self.settings.doc_prefix or None, max_length=self.settings.max_doc_length
        )

    def embed_queries(self, features: Features) -> Tensor:
        return self.query_tower(dict(features))["sentence_embedding"]  # (n, dim), unit norm

    def embed_docs(self, features: Features) -> Tensor:
        return self.doc_tower(dict(features))["sentence_embedding"]  # (n, dim), unit norm

    def forward(self, query: Features, doc: Features, query_index: Tensor | None = None) -> dict[str, Tensor]:
        """Embeddings and head logits for a batch of pairs.

        ``query`` holds each distinct query of the batch once; ``query_index[i]`` is the row of pair i's
        query (default: one query per pair), so a query shared by many pairs is encoded once.
        """
        q_unique = self.embed_queries(query)  # (n_queries, dim)
        d = self.embed_docs(doc)  # (n, dim)
        q = q_unique if query_index is None else q_unique[query_index]  # (n, dim)
        logits = self.head_logits(q, d)  # (n, K)
        return {"q": q, "d": d, "logits": logits, "scores": self.score_tensor(q, d, logits)}

    # --- scoring on embeddings (differentiable) -------------------------------------------------------

    def head_logits(self, q: Tensor, d: Tensor) -> Tensor:
        """(n, K) level logits from query and document embeddings; a single query row broadcasts."""
        q, d = _broadcast(q, d)
        return self.head(q, d)

    def score_tensor(self, q: Tensor, d: Tensor, logits: Tensor | None = None) -> Tensor:
        """(n,) scores in ``settings.score_mode``: expected gain / top gain, or cosine."""
        q, d = _broadcast(q, d)
        if self.settings.score_mode == "cosine":
            return (q * d).sum(dim=-1)  # unit vectors: dot product = cosine
        if logits is None:
            logits = self.head(q, d)
        return logits.float().softmax(dim=-1) @ self.gain_weights.to(logits.device)

    def expected_gain(self, probs: Tensor) -> Tensor:
        """(n,) expected gain / top gain of (n, K) level distributions (teacher targets use it too)."""
        return probs.float() @ self.gain_weights.to(probs.device)

    # --- inference on texts and arrays ----------------------------------------------------------------

    @torch.inference_mode()
    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, dim) float32 unit vectors, equal to ``SentenceTransformer(path / "query").encode(texts)``."""
        return self._encode(texts, self.tokenize_queries, self.embed_queries, batch_size)

    @torch.inference_mode()
    def encode_docs(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, dim) float32 unit vectors, equal to ``SentenceTransformer(path / "doc").encode(texts)``."""
        return self._encode(texts, self.tokenize_docs, self.embed_docs, batch_size)

    def _encode(self, texts: Sequence[str], tokenize: Any, embed: Any, batch_size: int) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        was_training = self.training
        self.eval()
        # Longest first: batches of similar length waste little padding, and an out-of-memory shows at once.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                feats = _to_device(tokenize([texts[i] for i in idx]), self.device)
                out[idx] = embed(feats).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    @torch.inference_mode()
    def predict_levels(self, q_emb: np.ndarray | Tensor, d_emb: np.ndarray | Tensor) -> np.ndarray:
        """(n, K) level probabilities (most relevant first) for embedding pairs; one query row broadcasts."""
        was_training = self.training
        self.eval()
        try:
            logits = self.head_logits(self._as_tensor(q_emb), self._as_tensor(d_emb))
        finally:
            self.train(was_training)
        return logits.float().softmax(dim=-1).cpu().numpy()

    @torch.inference_mode()
    def score(self, q_emb: np.ndarray | Tensor, d_emb: np.ndarray | Tensor) -> np.ndarray:
        """(n,) relevance scores in ``settings.score_mode`` for embedding pairs; one query row broadcasts."""
        q, d = self._as_tensor(q_emb), self._as_tensor(d_emb)
        if self.settings.score_mode == "cosine":
            return self.cosine(q, d)
        return (self.predict_levels(q, d) @ self.gain_weights.cpu().numpy()).astype(np.float32)

    @staticmethod
    def cosine(q_emb: np.ndarray | Tensor, d_emb: np.ndarray | Tensor) -> np.ndarray:
        """(n,) cosine of unit vectors (what an inner-product ANN index returns)."""
        q = (
            q_emb.detach().float().cpu().numpy()
            if isinstance(q_emb, Tensor)
            else np.asarray(q_emb, np.float32)
        )
        d = (
            d_emb.detach().float().cpu().numpy()
            if isinstance(d_emb, Tensor)
            else np.asarray(d_emb, np.float32)
        )
        q, d = np.atleast_2d(q), np.atleast_2d(d)
        return (q * d).sum(axis=-1).astype(np.float32)

    def _as_tensor(self, x: np.ndarray | Tensor) -> Tensor:
        t = x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))
        return torch.atleast_2d(t).to(self.device, dtype=next(self.head.parameters()).dtype)

    # --- persistence ---------------------------------------------------------------------------------------

    def metadata(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        s = asdict(self.settings)
        text_fields = [dict(f) for f in s.pop("fields")]
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "levels": self.levels.to_dict(),
            "dim": self.dim,
            "k": self.levels.k,
            "head_features": list(HEAD_FEATURES),
            "towers": {"query": QUERY_DIR, "doc": DOC_DIR},
            "text": {"fields": text_fields},
            **s,
            **(extra or {}),
        }

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the layout of the module docstring; ``distilrel.json`` last (it marks completion)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / META_FILE).unlink(missing_ok=True)
        self._save_tower(self.query_tower, path / QUERY_DIR, "query", self.settings.max_query_length)
        self._save_tower(self.doc_tower, path / DOC_DIR, "document", self.settings.max_doc_length)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(path / HEAD_FILE), metadata={"format": "pt"})
        write_json(path / META_FILE, self.metadata(extra))
        return path

    @staticmethod
    def _save_tower(tower: SentenceTransformer, target: Path, prompt_name: str, max_length: int) -> None:
        # The saved tower must reproduce our encoding alone: its default prompt and max length are set for
        # the side it serves (a shared tower is saved twice, once per side), then restored.
        saved = (tower.default_prompt_name, tower.max_seq_length)
        prompt = tower.prompts.get(prompt_name, "")
        tower.default_prompt_name = prompt_name if prompt else None
        tower.max_seq_length = max_length
        try:
            tower.save(str(target), create_model_card=False)
        finally:
            tower.default_prompt_name, tower.max_seq_length = saved


def _broadcast(q: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    if q.shape[0] == 1 and d.shape[0] != 1:
        q = q.expand(d.shape[0], -1)
    elif d.shape[0] == 1 and q.shape[0] != 1:
        d = d.expand(q.shape[0], -1)
    if q.shape != d.shape:
        raise ValueError(
            f"query embeddings {tuple(q.shape)} and doc embeddings {tuple(d.shape)} do not pair up"
        )
    return q, d


def _to_device(features: Features, device: torch.device) -> Features:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """``distilrel.json`` of a saved model folder; raises if it is missing or not a student."""
    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a saved distilrel model: {META_FILE} is missing")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("kind") != KIND:
        raise ValueError(
            f"{meta_file}: kind is {meta.get('kind')!r}, expected {KIND!r} (a student model folder)"
        )
    return meta


def settings_from_metadata(meta: dict[str, Any]) -> StudentSettings:
    known = {f.name for f in fields(StudentSettings)}
    values = {k: v for k, v in meta.items() if k in known and k != "fields"}
    values["fields"] = tuple(dict(f) for f in meta.get("text", {}).get("fields", ()))
    return StudentSettings(**values)


def load_student(path: str | Path, device: str | None = None) -> StudentModel:
    """Load a student saved by :meth:`StudentModel.save` (towers, head and settings)."""
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    path = Path(path)
    meta = read_metadata(path)
    settings = settings_from_metadata(meta)
    levels = LevelMapping.from_dict(meta["levels"])
    device = device or default_device()
    for sub in (QUERY_DIR,) if settings.shared else (QUERY_DIR, DOC_DIR):
        if not (path / sub / "modules.json").is_file():
            raise FileNotFoundError(f"{path}: tower folder {sub}/ is missing or incomplete (no modules.json)")
    query = SentenceTransformer(str(path / QUERY_DIR), device=device)
    doc = None if settings.shared else SentenceTransformer(str(path / DOC_DIR), device=device)
    # The saved folders carry a per-side default prompt; in memory the prefixes come from the settings.
    query.default_prompt_name = None
    if doc is not None:
        doc.default_prompt_name = None
    head = make_head(int(meta["dim"]), levels, settings)
    head.load_state_dict(load_file(str(path / HEAD_FILE)))
    return StudentModel(query, doc, levels, settings, head).to(device).eval()


def with_settings(model: StudentModel, **changes: Any) -> StudentModel:
    """The same weights under other settings (e.g. ``score_mode="cosine"``); towers and head are shared."""
    return StudentModel(
        model.query_tower, model._doc_tower, model.levels, replace(model.settings, **changes), model.head
    )
