"""Tiny models and data built in memory for the tests: no download, no real weights.

Tokenizers over a handful of words, random 2-layer BERT / Llama backbones saved as Hugging Face folders
(seeded, so a test file gets the same weights on every run), a tiny sentence-transformers folder, and a
toy judged collection whose levels are easy to learn, and the serving kit (a tiny student over a 40-product
catalog, an embedding store, a real uvicorn on 127.0.0.1). Each test file picks its own sizes and words.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from distilrel.data.levels import DEFAULT_5, LevelMapping
from distilrel.data.schema import Dataset

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")

# --- tokenizers --------------------------------------------------------------------------------------


def wordpiece_tokenizer(words: Sequence[str], *, bert_template: bool = False) -> Any:
    """A BERT-style WordPiece tokenizer over ``[PAD] [UNK] [CLS] [SEP] *words``.

    ``bert_template``: wrap texts in ``[CLS] ... [SEP]`` and pairs in ``[CLS] a [SEP] b [SEP]`` with token
    type ids, as a real BERT tokenizer does; without it texts are only split into word pieces (and the
    tokenizer returns no token type ids).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([*BERT_SPECIALS, *words])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    extra: dict[str, Any] = {}
    if bert_template:
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        extra["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        **extra,
    )


def wordlevel_tokenizer(words: Sequence[str]) -> Any:
    """A decoder-style word-level tokenizer over ``<pad> <unk> <s> </s> *words`` that prepends ``<s>``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    backend = Tokenizer(
        models.WordLevel({t: i for i, t in enumerate([*specials, *words])}, unk_token="<unk>")
    )
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        model_input_names=["input_ids", "attention_mask"],
    )


# --- backbones ---------------------------------------------------------------------------------------


def save_tiny_bert(
    folder: Path, tokenizer: Any, *, hidden: int = 32, heads: int = 2, intermediate: int = 64
) -> Path:
    """A random 2-layer BERT (seed 0) and ``tokenizer`` saved to ``folder``; returns ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_llama(folder: Path, tokenizer: Any) -> Path:
    """A random 2-layer Llama (hidden 64, grouped-query attention; seed 0) and ``tokenizer`` (a
    :func:`wordlevel_tokenizer`) saved to ``folder``; returns ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=2,
        eos_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_sentence_transformer(root: Path, words: Sequence[str], hidden: int = 16) -> Path:
    """A random 2-layer BERT with a (slow) BertTokenizer, mean-pooled, saved as a sentence-transformers
    folder ``root / "st"`` (the plain Hugging Face folder is ``root / "hf"``); returns the st folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate([*BERT_SPECIALS, "[MASK]", *words])})
    hf_dir = save_tiny_bert(root / "hf", tokenizer, hidden=hidden, heads=2, intermediate=2 * hidden)
    st = SentenceTransformer(modules=[Transformer(str(hf_dir)), Pooling(hidden, "mean")], device="cpu")
    st.save(str(root / "st"))
    return root / "st"


# --- a toy judged collection -------------------------------------------------------------------------

COLORS = ["red", "blue", "green", "black", "white", "grey"]
PRODUCTS = ["shoe", "lamp", "desk", "chair", "knife", "hose"]
FILLER = ["soft", "bright", "steel", "cotton", "large", "small"]


def toy_dataset(
    name: str = "toy", levels: LevelMapping = DEFAULT_5, n_queries: int = 12, test_split: bool = False
) -> Dataset:
    """Query "color product"; a document's level is how much of the query its title repeats.

    Every fourth query is a validation query; with ``test_split`` the one before it is a test query.
    """
    docs, judg = [], []
    for q in range(n_queries):
        color, product = COLORS[q % 6], PRODUCTS[(q // 2) % 6]
        split = "validation" if q % 4 == 3 else "test" if test_split and q % 4 == 2 else "train"
        for lv in range(levels.k):
            other_c, other_p = COLORS[(q + lv) % 6], PRODUCTS[(q // 2 + lv) % 6]
            words = (
                [color, product]
                if lv == 0
                else [color, other_p]
                if lv < levels.k // 2
                else [other_c, other_p]
            )
            did = f"{name}-{q}-{lv}"
            docs.append(
                {
                    "doc_id": did,
                    "language": "en",
                    "title": " ".join([*words, FILLER[lv % 6]]),
                    "description": f"a {FILLER[q % 6]} item",
                }
            )
            judg.append(
                {
                    "query_id": f"q{q}",
                    "query": f"{color} {product}",
                    "doc_id": did,
                    "level": lv,
                    "label": levels.names[lv],
                    "split": split,
                    "language": "en",
                }
            )
    return Dataset(name, pd.DataFrame(docs), pd.DataFrame(judg), levels, ("title", "description"))


def sigkill_when_exists(proc: subprocess.Popen[bytes], path: Path, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``path`` exists (e.g. its first finished shard); fail if it exits first."""
    import pytest

    try:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                pytest.fail(f"the subprocess exited before {path.name} appeared: {stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"{path.name} did not appear within {timeout:.0f} s")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


# --- the serving catalog: a tiny student, its 40 products, a store and a real uvicorn ---------------------

SERVE_COLORS = ["red", "blue"]
SERVE_PRODUCTS = ["shoe", "lamp", "desk", "sole"]
SERVE_ADJECTIVES = ["soft", "bright", "warm", "running", "light"]


def bert_tokenizer() -> Any:
    """A WordPiece tokenizer over the serving catalog's words that adds [CLS] ... [SEP] like every BERT
    tokenizer (so even an empty text has tokens to pool)."""
    words = [*SERVE_COLORS, *SERVE_PRODUCTS, *SERVE_ADJECTIVES, "led", "the", "a", "##s"]
    return wordpiece_tokenizer(words, bert_template=True)


def build_tiny_student(folder: Path, tokenizer: Any | None = None, **settings: Any) -> Path:
    """A 2-layer random BERT (hidden 32) as both towers, default 5-level head; saved to ``folder``."""
    from distilrel.student.model import StudentModel, StudentSettings

    bert = save_tiny_bert(folder.parent / f"{folder.name}-bert", tokenizer or bert_tokenizer())
    base = {"backbone": str(bert), "max_query_length": 16, "max_doc_length": 24, "head_hidden": 16}
    base["fields"] = ({"name": "title", "label": "", "max_tokens": None},)
    student = StudentModel.from_backbone(
        bert, DEFAULT_5, StudentSettings(**{**base, **settings}), device="cpu"
    )
    return student.save(folder)


def catalog() -> pd.DataFrame:
    """40 products with distinct titles over the tiny tokenizer's words."""
    titles = [" ".join(t) for t in itertools.product(SERVE_COLORS, SERVE_PRODUCTS, SERVE_ADJECTIVES)]
    return pd.DataFrame({"doc_id": [f"p{i:03d}" for i in range(len(titles))], "title": titles})


def make_store(student_dir: Path, store_dir: Path) -> Path:
    from distilrel.index.embed import embed_catalog

    embed_catalog(student_dir, catalog(), store_dir, device="cpu")
    return store_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_server(app: Any) -> Iterator[str]:
    """The app under a real uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
