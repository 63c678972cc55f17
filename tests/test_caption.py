"""The caption job end to end with a tiny real captioning model (ViT encoder + GPT-2 decoder, 2 layers each,
random weights, a word-level tokenizer built here) over solid-colour PNGs written to tmp_path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from distilrel.caption.images import ImageError, caption_inputs, open_image
from distilrel.caption.job import (
    CAPTIONS_FILE,
    CaptionSettings,
    CaptionSummary,
    read_captions,
    run_caption_job,
)
from distilrel.caption.join import attach_captions, caption_report
from distilrel.caption.model import Captioner, CaptionFn, resolve_caption_model
from distilrel.label.shards import MANIFEST, shard_path
from tiny import toy_dataset, wordlevel_tokenizer

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "grey", "cyan", "navy"]
WORDS = ["red", "blue", "green", "shoe", "lamp", "desk", "a", "bright", "soft", "photo", "of", "with"]
SETTINGS = CaptionSettings(shard_size=4, batch_size=3, progress=False)


def build_tiny_captioner(folder: Path) -> Path:
    """A random VisionEncoderDecoderModel (seed 0) + ViT image processor + tokenizer saved to ``folder``.
    Weights are drawn wide (initializer_range 1) so that different images get different captions."""
    import torch
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    tokenizer = wordlevel_tokenizer(WORDS)  # <pad>=0 <unk>=1 <s>=2 </s>=3
    encoder = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, initializer_range=1.0,
    )  # fmt: skip
    decoder = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=32,
        bos_token_id=2, eos_token_id=3, pad_token_id=0, initializer_range=1.0,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 2, 0, 3
    torch.manual_seed(0)
    VisionEncoderDecoderModel(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_captioner(tmp_path_factory.mktemp("tiny-captioner") / "model")


@pytest.fixture(scope="session")
def caption_fn(captioner_dir: Path) -> CaptionFn:
    return Captioner(str(captioner_dir), max_new_tokens=6, device="cpu").load()


def write_images(root: Path, n: int = len(COLOURS)) -> pd.DataFrame:
    """``n`` solid-colour PNGs under ``root/images`` and a documents table (relative paths) at
    ``root/docs.parquet``; returns the table."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    for colour in COLOURS[:n]:
        Image.new("RGB", (40, 30), colour).save(root / "images" / f"{colour}.png")
    docs = pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(n)],
            "title": [f"{c} thing" for c in COLOURS[:n]],
            "image": [f"images/{c}.png" for c in COLOURS[:n]],
        }
    )
    docs.to_parquet(root / "docs.parquet", index=False)
    return docs


def inputs_for(root: Path, docs: pd.DataFrame) -> pd.DataFrame:
    return caption_inputs(docs, "image", root)


def never_loaded() -> CaptionFn:
    raise AssertionError("the model was loaded although nothing needed captioning")


def _run(inputs: pd.DataFrame, out: Path, fn: CaptionFn | None, **kw: Any) -> CaptionSummary:
    return run_caption_job(
        inputs,
        out,
        (lambda: fn) if fn is not None else never_loaded,  # type: ignore[arg-type,return-value]
        model_id=kw.pop("model_id", "tiny"),
        settings=kw.pop("settings", SETTINGS),
    )


def _snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    return {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in sorted(out.glob("shard-*.parquet"))}


def test_captions_every_image_in_order_deterministically(
    tmp_path: Path, captioner_dir: Path, caption_fn: CaptionFn
) -> None:
    docs = write_images(tmp_path)
    inputs = inputs_for(tmp_path, docs)
    assert inputs["image"].tolist() == [str(tmp_path / p) for p in docs["image"]]  # relative to the table
    summary = _run(inputs, tmp_path / "out", caption_fn)

    n_shards = -(-len(docs) // 4)
    assert (summary.images, summary.shards, summary.shards_done, summary.images_captioned) == (
        len(docs), n_shards, n_shards, len(docs)
    )  # fmt: skip
    assert summary.skipped == () and summary.images_per_s > 0
    table = pq.read_table(tmp_path / "out" / CAPTIONS_FILE).to_pandas()
    assert list(table.columns) == ["doc_id", "image", "caption", "error"]
    assert table["doc_id"].tolist() == docs["doc_id"].tolist() and table["error"].isna().all()
    captions = table["caption"].tolist()
    # Greedy decoding: the captions are exactly what the model says for each image, batched or not.
    direct = [caption_fn([open_image(p)])[0] for p in inputs["image"]]
    assert captions == direct
    assert len(set(captions)) >= 3 and all(set(c.split()) <= set(WORDS) for c in captions)
    assert read_captions(tmp_path / "out").equals(table[["doc_id", "caption"]])
    # A second load of the model gives the same captions (nothing random in generation).
    again = Captioner(str(captioner_dir), max_new_tokens=6, device="cpu").load()
    assert again([open_image(p) for p in inputs["image"]]) == direct


def test_rerun_after_an_interruption_equals_an_uninterrupted_run(
    tmp_path: Path, caption_fn: CaptionFn
) -> None:
    docs = write_images(tmp_path)
    inputs = inputs_for(tmp_path, docs)
    ref, out = tmp_path / "ref", tmp_path / "out"
    _run(inputs, ref, caption_fn)
    _run(inputs, out, caption_fn)
    # What a killed run leaves: a finished shard, a shard never written, a temp file mid-write, and no
    # combined table yet; plus a shard damaged afterwards.
    (out / CAPTIONS_FILE).unlink()
    shard_path(out, 1).unlink()
    raw = shard_path(out, 2).read_bytes()
    shard_path(out, 2).write_bytes(raw[: len(raw) // 2])
    stray = out / ".shard-00001.parquet.ab12.parquet"
    stray.write_bytes(b"partial")
    finished = {
        k: v for k, v in _snapshot(out).items() if k not in ("shard-00001.parquet", "shard-00002.parquet")
    }

    summary = _run(inputs, out, caption_fn)
    assert (summary.shards_done, summary.shards_skipped, summary.images_captioned) == (2, 1, 7)
    assert [d.split(":")[0] for d in summary.damaged] == ["shard-00002.parquet"]
    assert not stray.exists()
    assert {k: v for k, v in _snapshot(out).items() if k in finished} == finished  # never rewritten
    assert (out / MANIFEST).read_text() == (ref / MANIFEST).read_text()
    assert pq.read_table(out / CAPTIONS_FILE).equals(pq.read_table(ref / CAPTIONS_FILE))

    before = _snapshot(out)
    done = _run(inputs, out, None)  # all finished: the model is not even loaded
    assert (done.shards_done, done.shards_skipped, done.images_captioned) == (0, 3, 0)
    assert _snapshot(out) == before


def test_a_run_never_mixes_with_another_input_or_model(tmp_path: Path, caption_fn: CaptionFn) -> None:
    docs = write_images(tmp_path, 5)
    inputs = inputs_for(tmp_path, docs)
    out = tmp_path / "out"
    _run(inputs, out, caption_fn)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"captions of another run \(model_id: 'tiny' -> 'other'\)"):
        _run(inputs, out, caption_fn, model_id="other")
    with pytest.raises(ValueError, match="input_hash"):
        _run(inputs.iloc[:-1], out, caption_fn)
    assert _snapshot(out) == before
    wide = CaptionSettings(shard_size=8, batch_size=3, progress=False, overwrite=True)
    assert _run(inputs, out, caption_fn, model_id="other", settings=wide).shards_done == 1
    assert [f.name for f in out.glob("shard-*.parquet")] == ["shard-00000.parquet"]


def test_missing_and_unreadable_images_name_the_file_and_row(tmp_path: Path, caption_fn: CaptionFn) -> None:
    docs = write_images(tmp_path, 6)
    (tmp_path / "images" / "green.png").unlink()  # row 3, doc d2
    (tmp_path / "images" / "black.png").write_bytes(b"this is not a png")  # row 5, doc d4
    inputs = inputs_for(tmp_path, docs)

    # Missing files are found before the model is loaded, with the count of the others.
    with pytest.raises(ImageError, match=r"images/green\.png: file not found, row 3 \(doc_id 'd2'\)"):
        _run(inputs, tmp_path / "strict", None)
    # An unreadable file fails while captioning, naming it too.
    (tmp_path / "images" / "green.png").write_bytes((tmp_path / "images" / "red.png").read_bytes())
    with pytest.raises(ImageError, match=r"images/black\.png: unreadable image .*row 5 \(doc_id 'd4'\)"):
        _run(inputs, tmp_path / "strict", caption_fn)
    (tmp_path / "images" / "green.png").unlink()

    summary = _run(inputs, tmp_path / "skip", caption_fn, settings=replace(SETTINGS, skip_missing=True))
    assert summary.images_captioned == 4
    assert [s.split(":")[0] for s in summary.skipped] == ["row 3 (doc_id 'd2')", "row 5 (doc_id 'd4')"]
    assert "file not found" in summary.skipped[0] and "unreadable image" in summary.skipped[1]
    table = read_captions(tmp_path / "skip")
    assert table["caption"].isna().tolist() == [False, False, True, False, True, False]

    # A strict rerun recomputes the shards holding skipped images, and fails while one is still missing.
    with pytest.raises(ImageError, match=r"green\.png: file not found, row 3"):
        _run(inputs, tmp_path / "skip", caption_fn)
    (tmp_path / "images" / "green.png").write_bytes((tmp_path / "images" / "red.png").read_bytes())
    with pytest.raises(ImageError, match=r"black\.png: unreadable image"):
        _run(inputs, tmp_path / "skip", caption_fn)


def test_bad_tables_and_unavailable_models_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distilrel.data.schema import DataError

    docs = write_images(tmp_path, 3)
    with pytest.raises(DataError, match=r"no 'picture' column"):
        caption_inputs(docs, "picture", tmp_path)
    twice = pd.concat([docs, docs.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataError, match=r"doc_id 'd0' appears twice \(rows 1 and 4\)"):
        caption_inputs(twice, "image", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no PyPI package ships captioning weights"):
        resolve_caption_model("Salesforce/blip-image-captioning-base")


def test_captions_join_into_the_document_text(tmp_path: Path, caption_fn: CaptionFn) -> None:
    from distilrel.config import DatasetSpec, load_datasets
    from distilrel.text.builder import TextBuilder

    docs = write_images(tmp_path, 5)
    _run(inputs_for(tmp_path, docs), tmp_path / "captions", caption_fn)
    captions = dict(read_captions(tmp_path / "captions").itertuples(index=False))
    # The catalog is d0..d3; the captions table also has d4 (captioned, no longer a document).
    judgments = pd.DataFrame(
        {"query": ["red thing"] * 4, "doc_id": docs["doc_id"][:4], "label": [4, 3, 2, 1]}
    )
    judgments.to_csv(tmp_path / "judgments.csv", index=False)
    docs[["doc_id", "title"]].iloc[:4].to_parquet(tmp_path / "documents.parquet", index=False)

    # The dataset config's hook: `captions = ".../captions.parquet"` in a [[data.datasets]] entry.
    options = {"judgments": "judgments.csv", "documents": "documents.parquet", "levels": "default5"}
    raw = {"name": "table", "path": str(tmp_path), "options": options}
    spec = DatasetSpec.from_toml({**raw, "captions": str(tmp_path / "captions" / CAPTIONS_FILE)}, "test.toml")
    config = SimpleNamespace(data=SimpleNamespace(datasets=(spec,), data_dir=None))
    (ds,) = load_datasets(config)  # type: ignore[arg-type]
    assert ds.fields == ("title", "caption")
    assert ds.documents["caption"].tolist() == [captions[f"d{i}"] for i in range(4)]
    texts = TextBuilder.from_config(["title", {"name": "caption", "label": "image"}]).build_many(ds.documents)
    for i, text in enumerate(texts):
        cap = captions[f"d{i}"]
        assert text == f"title: {COLOURS[i]} thing" + (f"\nimage: {cap}" if cap else "")
    filled = sum(bool(captions[f"d{i}"]) for i in range(4))
    assert filled >= 2 and caption_report(ds) == f"table: {filled} of 4 documents have a caption"

    # A captions table of another catalog is refused; a partial one is noted.
    no_captions = SimpleNamespace(
        data=SimpleNamespace(datasets=(DatasetSpec.from_toml(raw, "t"),), data_dir=None)
    )
    (plain,) = load_datasets(no_captions)  # type: ignore[arg-type]
    assert "caption" not in plain.documents.columns
    with pytest.raises(ValueError, match="none of its 1 doc ids"):
        attach_captions(plain, pd.DataFrame({"doc_id": ["x9"], "caption": ["a photo"]}))
    partial = attach_captions(plain, pd.DataFrame({"doc_id": ["d1"], "caption": ["a photo"]}))
    assert partial.documents["caption"].tolist() == ["", "a photo", "", ""]
    assert any("3 of 4 documents have no caption" in w for w in partial.meta["warnings"])  # type: ignore[union-attr]


def test_caption_report_says_plainly_when_there_are_no_images() -> None:
    crowdflower = toy_dataset("crowdflower")
    assert caption_report(crowdflower) == "crowdflower has no images; the caption field is empty"
    with_images = toy_dataset("shop")
    with_images.documents["image"] = "x.png"
    assert caption_report(with_images).startswith("shop has images (column 'image') but no captions")


def test_cli_caption_then_rerun(tmp_path: Path, captioner_dir: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from distilrel.cli.caption import caption

    app = typer.Typer()
    app.command()(caption)
    app.command("noop")(lambda: None)  # two commands: typer then expects the command name
    docs = write_images(tmp_path, 5)
    (tmp_path / "images" / "blue.png").unlink()
    out = tmp_path / "captions"
    args = ["caption", str(tmp_path / "docs.parquet"), "--model", str(captioner_dir), "--out", str(out)]
    args += ["--shard-size", "2", "--max-new-tokens", "6", "--device", "cpu", "--no-progress"]
    runner = CliRunner()
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "blue.png: file not found, row 2 (doc_id 'd1')" in str(res.exception)

    res = runner.invoke(app, [*args, "--skip-missing"])
    assert res.exit_code == 0, res.output
    assert "skipped image" in res.output and "row 2 (doc_id 'd1')" in res.output
    table = read_captions(out)
    assert table["doc_id"].tolist() == docs["doc_id"].tolist() and table["caption"].isna().sum() == 1
    manifest = (out / MANIFEST).read_text()
    assert '"model_id": "model:' in manifest and ":max6" in manifest
    before = _snapshot(out)
    res = runner.invoke(app, [*args, "--skip-missing"])
    assert res.exit_code == 0, res.output
    assert _snapshot(out) == before
