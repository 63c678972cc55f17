"""Student: a tiny random 2-layer BERT and its tokenizer built in the test (tiny.py), real files in
tmp_path."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import tiny
from distilrel.data.levels import CROWDFLOWER, DEFAULT_5, LevelMapping
from distilrel.data.schema import DataError, Dataset
from distilrel.student.collator import PairDataset, PairExample, StudentCollator
from distilrel.student.config import ConfigError, LossConfig, load_config
from distilrel.student.losses import (
    DistillKLLoss,
    LevelCrossEntropyLoss,
    MarginMSELoss,
    build_loss,
)
from distilrel.student.model import StudentModel, StudentSettings, load_student
from distilrel.student.scorer import StudentScorer
from distilrel.student.train import CHECKPOINT_DIR, INFO_FILE, MODEL_DIR, prepare, train_student
from distilrel.student.trainer import QueryGroupedSampler, StudentTrainer
from tiny import COLORS, FILLER, PRODUCTS, save_tiny_bert, wordpiece_tokenizer

WORDS = [*COLORS, *PRODUCTS, *FILLER, "a", "item", "query", "passage", ":", "title", "description"]


# --- fixtures: a tiny backbone (the toy judged collection is tiny.toy_dataset, with a test split) ----------


def toy_dataset(name: str = "toy", levels: LevelMapping = DEFAULT_5) -> Dataset:
    """With test queries besides validation ones: pseudo labels of either must be kept out of training."""
    return tiny.toy_dataset(name, levels, test_split=True)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(
        tmp_path_factory.mktemp("tiny-bert"), wordpiece_tokenizer(WORDS, bert_template=True)
    )


def tiny_student(bert_dir: Path, levels: LevelMapping = DEFAULT_5, **settings: Any) -> StudentModel:
    torch.manual_seed(0)
    base = {"backbone": str(bert_dir), "max_query_length": 12, "max_doc_length": 24, "head_hidden": 16}
    return StudentModel.from_backbone(bert_dir, levels, StudentSettings(**{**base, **settings}), device="cpu")


def write_config(
    tmp_path: Path,
    backbone: Path,
    *,
    data: str = "",
    model: str = "",
    loss: str = "",
    training: str = "",
    text: str = 'fields = ["title", "description"]',
) -> Path:
    body = f"""
        [data]
        datasets = ["toy"]
        {data}

        [levels]
        preset = "default5"

        [text]
        {text}

        [model]
        backbone = "{backbone}"
        max_query_length = 12
        max_doc_length = 24
        head_hidden = 16
        {model}

        [loss]
        {loss}

        [training]
        output_dir = "{tmp_path / "run"}"
        batch_size = 8
        logging_steps = 2
        eval_steps = 4
        max_steps = 8
        learning_rate = 1e-3
        head_learning_rate = 5e-3
        {training}
    """
    path = tmp_path / "student.toml"
    path.write_text(textwrap.dedent(body))
    return path


def teacher_like_probs(level: int, k: int = 5) -> list[float]:
    """A peaked distribution around the true level (what a decent teacher would say)."""
    p = np.full(k, 0.05)
    p[min(level, k - 1)] = 1.0 - 0.05 * (k - 1)
    return p.tolist()


def write_pseudo_labels(path: Path, ds: Dataset, k: int = 5, extra_rows: int = 0) -> Path:
    """Teacher distributions for every train pair, plus unjudged pairs (other queries x the same docs)."""
    train = ds.judgments[ds.judgments["split"] == "train"]
    rows = [
        {"dataset": ds.name, "query": q, "doc_id": d, "probs": teacher_like_probs(int(lv), k)}
        for q, d, lv in zip(train["query"], train["doc_id"], train["level"], strict=True)
    ]
    for i in range(extra_rows):  # a query never judged, with documents of the catalog
        doc = ds.documents.iloc[i % len(ds.documents)]
        rows.append(
            {
                "dataset": ds.name,
                "query": f"{COLORS[i % 6]} item",
                "doc_id": doc["doc_id"],
                "probs": teacher_like_probs(i % k, k),
            }
        )
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


# --- the acceptance check: towers load with sentence-transformers alone ------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_saved_towers_load_with_sentence_transformers_alone(
    bert_dir: Path, tmp_path: Path, shared: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    model = tiny_student(bert_dir, shared=shared, query_prefix="query: ", doc_prefix="passage: ")
    model.save(tmp_path / "model")
    queries = ["red shoe", "a soft grey knife item", "blue", "green desk chair lamp hose knife shoe " * 3]
    docs = ["title: red shoe soft\ndescription: a steel item", "blue lamp", "cotton " * 40]

    st_query = SentenceTransformer(str(tmp_path / "model" / "query"), device="cpu")
    st_doc = SentenceTransformer(str(tmp_path / "model" / "doc"), device="cpu")
    np.testing.assert_allclose(st_query.encode(queries), model.encode_queries(queries), atol=1e-6)
    np.testing.assert_allclose(st_doc.encode(docs), model.encode_docs(docs), atol=1e-6)
    # The prefixes really are applied (otherwise "query: red shoe" would not encode like "red shoe").
    no_prefix = SentenceTransformer(str(tmp_path / "model" / "query"), device="cpu").encode(
        queries, prompt=""
    )
    assert np.abs(no_prefix - model.encode_queries(queries)).max() > 1e-3
    # The max lengths travel with the folders: the 4x repeated query is cut at 12 tokens on both sides.
    assert st_query.max_seq_length == 12 and st_doc.max_seq_length == 24
    emb = model.encode_queries(queries)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_load_student_gives_identical_head_outputs(bert_dir: Path, tmp_path: Path) -> None:
    model = tiny_student(bert_dir, shared=False, score_mode="expected_gain")
    model.save(tmp_path / "model", extra={"note": "kept"})
    loaded = load_student(tmp_path / "model", device="cpu")
    assert loaded.settings == model.settings and loaded.levels == model.levels

    q = model.encode_queries(["red shoe", "blue lamp"])
    d = model.encode_docs(["red shoe soft", "blue lamp bright"])
    np.testing.assert_array_equal(loaded.encode_queries(["red shoe", "blue lamp"]), q)
    with torch.no_grad():
        a = model.eval().head_logits(torch.from_numpy(q), torch.from_numpy(d))
        b = loaded.head_logits(torch.from_numpy(q), torch.from_numpy(d))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.predict_levels(q, d), model.predict_levels(q, d))
    meta = json.loads((tmp_path / "model" / "distilrel.json").read_text())
    assert meta["kind"] == "student" and meta["k"] == 5 and meta["dim"] == 32 and meta["note"] == "kept"
    assert meta["levels"]["names"] == list(DEFAULT_5.names)


def test_embedding_level_api_broadcasts_one_query(bert_dir: Path) -> None:
    model = tiny_student(bert_dir)
    q = model.encode_queries(["red shoe"])  # (1, dim): one query against cached documents
    d = model.encode_docs(["red shoe soft", "blue lamp", "grey hose"])
    probs = model.predict_levels(q, d)
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    expected = probs @ (np.asarray(DEFAULT_5.gains) / max(DEFAULT_5.gains))
    np.testing.assert_allclose(model.score(q, d), expected, atol=1e-5)
    cosine = model.cosine(np.repeat(q, 3, axis=0), d)
    np.testing.assert_allclose(cosine, d @ q[0], atol=1e-5)
    with pytest.raises(ValueError, match="do not pair up"):
        model.predict_levels(np.repeat(q, 2, axis=0), d)


def test_a_fresh_head_ranks_by_cosine(bert_dir: Path) -> None:
    """The cosine prior: before any training the expected-gain ranking is the towers' zero-shot ranking."""
    model = tiny_student(bert_dir, levels=CROWDFLOWER)
    q = model.encode_queries(["red shoe soft"])
    d = model.encode_docs(["red shoe soft", "red shoe", "blue lamp", "grey hose steel", "red", "a soft item"])
    cos = model.cosine(np.repeat(q, len(d), axis=0), d)
    assert np.array_equal(np.argsort(-model.score(q, d)), np.argsort(-cos))
    plain = tiny_student(bert_dir, levels=CROWDFLOWER, cosine_prior=False)
    assert plain.head.cos_scale.item() == 0.0 and not plain.head.cos_scale.requires_grad


# --- losses -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_cls", [DistillKLLoss, LevelCrossEntropyLoss, MarginMSELoss])
def test_losses_refuse_a_model_that_is_not_a_student(loss_cls: type) -> None:
    with pytest.raises(ValueError, match=loss_cls.__name__):
        loss_cls(nn.Linear(4, 5))


def test_loss_arguments_are_checked(bert_dir: Path) -> None:
    model = tiny_student(bert_dir)
    with pytest.raises(ValueError, match="DistillKLLoss: temperature"):
        DistillKLLoss(model, temperature=0.0)
    with pytest.raises(ValueError, match="LevelCrossEntropyLoss: label_smoothing"):
        LevelCrossEntropyLoss(model, label_smoothing=1.0)
    flat = LevelMapping(names=("a", "b"), gains=(0.0, 0.0))
    with pytest.raises(ValueError, match="MarginMSELoss"):
        MarginMSELoss(tiny_student(bert_dir, levels=flat))
    with pytest.raises(ValueError, match="every loss weight is 0"):
        build_loss(model, LossConfig(kl=0, ce=0, margin_mse=0))


def test_loss_values_on_hand_made_outputs(bert_dir: Path) -> None:
    model = tiny_student(bert_dir, levels=CROWDFLOWER)  # 4 levels, gains 3, 2, 1, 0
    logits = torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]]))
    teacher = torch.tensor([[0.7, 0.1, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    batch = {
        "teacher_probs": teacher,
        "has_teacher": torch.tensor([True, True, False]),
        "levels": torch.tensor([0, -1, 3]),
        "query_index": torch.tensor([0, 0, 1]),
    }
    scores = torch.tensor([0.9, 0.2, 0.5])
    outputs = {"logits": logits, "scores": scores}
    # KL: row 0 equals the teacher (0), row 1 is KL(one-hot || uniform) = log 4, row 2 has no teacher.
    kl = DistillKLLoss(model)(outputs, batch)
    assert kl.item() == pytest.approx(np.log(4) / 2, abs=1e-6)
    # CE over rows with a human level (0 and 2): -(log 0.7 + log 0.4) / 2.
    ce = LevelCrossEntropyLoss(model)(outputs, batch)
    assert ce.item() == pytest.approx(-(np.log(0.7) + np.log(0.4)) / 2, abs=1e-6)
    # MarginMSE: one pair (0, 1) of query 0 with teachers on both; teacher gains
    # 0.7*1 + 0.1*(2/3) + 0.1*(1/3) = 0.8 and 1.0, so the teacher margin is -0.2, the student's 0.7.
    mm = MarginMSELoss(model)(outputs, batch)
    assert mm.item() == pytest.approx((0.7 - (-0.2)) ** 2, abs=1e-6)
    # No usable targets at all: a zero that still back-propagates.
    none = {**batch, "has_teacher": torch.zeros(3, dtype=torch.bool)}
    leaf = logits.clone().requires_grad_(True)
    zero = DistillKLLoss(model)({"logits": leaf, "scores": scores}, none)
    zero.backward()
    assert zero.item() == 0.0 and leaf.grad is not None


# --- collator, sampler, trainer ------------------------------------------------------------------------


def test_collator_tokenises_each_distinct_query_once(bert_dir: Path) -> None:
    model = tiny_student(bert_dir)
    examples = [
        PairExample("red shoe", "red shoe soft", "g1", teacher_like_probs(0), 0),
        PairExample("red shoe", "blue lamp", "g1", None, 4),
        PairExample("blue lamp", "blue lamp bright", "g2", teacher_like_probs(1), -1),
    ]
    batch = StudentCollator(model)(examples)
    assert batch["query"]["input_ids"].shape[0] == 2 and batch["doc"]["input_ids"].shape[0] == 3
    assert batch["query_index"].tolist() == [0, 0, 1]
    assert batch["has_teacher"].tolist() == [True, False, True] and batch["levels"].tolist() == [0, 4, -1]
    assert batch["teacher_probs"][1].abs().sum() == 0
    bad = [PairExample("red", "red", "g", (0.5, 0.5), -1)]
    with pytest.raises(ValueError, match="2 teacher probabilities, the model has 5 levels"):
        StudentCollator(model)(bad)


def test_query_grouped_sampler_keeps_queries_together_and_is_deterministic() -> None:
    groups = ["a"] * 7 + ["b"] * 3 + ["c"] * 5
    sampler = QueryGroupedSampler(groups, docs_per_query=3, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(len(groups)))
    # Runs of one group are at most 3 long except where two chunks of a group happen to be adjacent,
    # and every chunk is contiguous: the group changes at most (number of chunks - 1) times.
    changes = sum(groups[a] != groups[b] for a, b in itertools.pairwise(order))
    assert changes <= (3 + 1 + 2) - 1
    assert list(sampler) == order  # same epoch, same order (a resumed run skips the same batches)
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_kl_training_lowers_the_loss(bert_dir: Path, tmp_path: Path) -> None:
    from transformers import TrainingArguments

    model = tiny_student(bert_dir, head_dropout=0.0)
    ds = toy_dataset()
    texts = dict(zip(ds.documents["doc_id"], ds.documents["title"], strict=True))
    train = ds.judgments[ds.judgments["split"] == "train"]
    examples = [
        PairExample(q, texts[d], q, teacher_like_probs(int(lv)))
        for q, d, lv in zip(train["query"], train["doc_id"], train["level"], strict=True)
    ]
    collator = StudentCollator(model)
    loss = build_loss(model, LossConfig(kl=1.0, ce=0.0))
    full = collator(examples)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss(model(full["query"], full["doc"], full["query_index"]), full)[0])

    before = eval_loss()
    args = TrainingArguments(
        output_dir=str(tmp_path / "ckpt"),
        max_steps=30,
        per_device_train_batch_size=10,
        learning_rate=1e-3,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    trainer = StudentTrainer(
        model=model,
        args=args,
        train_dataset=PairDataset(examples),
        data_collator=collator,
        loss=loss,
        head_learning_rate=1e-2,
    )
    trainer.train()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all("loss_kl" in h for h in logged)


# --- config checks --------------------------------------------------------------------------------------


def test_config_reads_and_rejects_bad_values(bert_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, bert_dir, loss="kl = 0.0\nce = 1.0"))
    assert cfg.data.datasets[0].name == "toy" and cfg.level_mapping.k == 5
    assert cfg.fields[1].name == "description" and cfg.training.max_steps == 8

    cases = {
        "unknown key": ({"model": "colour = 1"}, r"unknown key\(s\) \['colour'\] in \[model\]"),
        "bad type": ({"model": 'shared = "yes"'}, r"\[model\] shared must be of type bool"),
        "score mode": ({"model": 'score_mode = "dot"'}, r"\[model\] score_mode must be one of"),
        "no losses": ({"loss": "kl = 0\nce = 0"}, r"\[loss\] kl, ce, margin_mse are all 0"),
        "kl without labels": ({"loss": "ce = 0"}, r"\[data\] pseudo_labels is not used"),
        "negative ratio": ({"data": "pseudo_ratio = -1"}, r"\[data\] pseudo_ratio must be a finite number"),
    }
    for name, (parts, pattern) in cases.items():
        with pytest.raises(ConfigError, match=pattern):
            load_config(write_config(tmp_path, bert_dir, **parts))
        assert name


def test_prepare_rejects_unknown_backbone_missing_fields_and_k_mismatch(
    bert_dir: Path, tmp_path: Path
) -> None:
    ds = toy_dataset()
    cfg = load_config(write_config(tmp_path, Path("no-such-backbone-xyz"), loss="kl = 0\nce = 1"))
    with pytest.raises(ConfigError, match=r"\[model\] backbone 'no-such-backbone-xyz' cannot be loaded"):
        prepare(cfg, [ds])

    cfg = load_config(
        write_config(tmp_path, bert_dir, loss="kl = 0\nce = 1", text='fields = ["title", "brand"]')
    )
    with pytest.raises(
        ConfigError, match=r"field 'brand' is missing from the documents of dataset\(s\) \['toy'\]"
    ):
        prepare(cfg, [ds])

    labels = write_pseudo_labels(tmp_path / "labels4.parquet", ds, k=4)
    cfg = load_config(write_config(tmp_path, bert_dir, data=f'pseudo_labels = "{labels}"'))
    with pytest.raises(DataError, match=r"row 1: probs has 4 values but the level mapping .* has 5"):
        prepare(cfg, [ds])

    broken = pd.read_parquet(write_pseudo_labels(tmp_path / "bad.parquet", ds)).drop(columns=["doc_id"])
    broken.to_parquet(tmp_path / "bad.parquet")
    cfg = load_config(write_config(tmp_path, bert_dir, data=f'pseudo_labels = "{tmp_path / "bad.parquet"}"'))
    with pytest.raises(DataError, match=r"missing column\(s\) \['doc_id or text'\]"):
        prepare(cfg, [ds])


def test_prepare_merges_caps_and_guards_eval_queries(bert_dir: Path, tmp_path: Path) -> None:
    ds = toy_dataset()
    labels = write_pseudo_labels(tmp_path / "labels.parquet", ds, extra_rows=40)
    table = pd.read_parquet(labels)
    leak = ds.judgments[ds.judgments["split"] == "test"].iloc[0]
    leaked = {
        "dataset": "toy",
        "query": leak["query"].upper(),
        "doc_id": leak["doc_id"],
        "probs": teacher_like_probs(0),
    }
    pd.concat([table, pd.DataFrame([leaked])]).to_parquet(labels, index=False)
    cfg = load_config(write_config(tmp_path, bert_dir, data=f'pseudo_labels = "{labels}"\npseudo_ratio = 1'))
    prep = prepare(cfg, [ds], log=lambda _: None)

    n_human = prep.counts["human"]["toy"]
    assert n_human == 6 * 5  # 6 train queries x 5 levels
    pseudo = prep.counts["pseudo"]
    assert pseudo["merged_into_human"] == n_human  # every train pair got its teacher distribution
    assert pseudo["eval_query_rows"] == 1  # the test query (in another case) never becomes training data
    assert pseudo["used"] <= n_human  # ratio 1
    human = [e for e in prep.train.examples if e.source == "human"]
    assert all(e.teacher_probs is not None and e.level >= 0 for e in human)
    assert all(e.level == -1 for e in prep.train.examples if e.source == "pseudo")
    assert leak["query"] not in {e.query for e in prep.train.examples}


def test_an_optional_field_reads_empty_where_a_dataset_lacks_it(bert_dir: Path, tmp_path: Path) -> None:
    a = toy_dataset("a")
    b = toy_dataset("b")
    b = Dataset("b", b.documents.drop(columns=["description"]), b.judgments, b.levels, ("title",))
    text = 'fields = ["title", { name = "description", required = false }]'
    path = write_config(tmp_path, bert_dir, loss="kl = 0\nce = 1", text=text)
    path.write_text(path.read_text().replace('datasets = ["toy"]', 'datasets = ["a", "b"]'))
    prep = prepare(load_config(path), [a, b], log=lambda _: None)

    texts = {name: [e.doc for e in prep.train.examples if e.group.startswith(f"{name}\x1f")] for name in "ab"}
    assert texts["b"] and not any("description" in t for t in texts["b"])
    assert all("description: a " in t for t in texts["a"])
    assert prep.text_fields[1]["name"] == "description" and prep.text_fields[1]["required"] is False
    assert prep.evaluator is not None and len(prep.evaluator.targets) == 2
    strict = write_config(tmp_path, bert_dir, loss="kl = 0\nce = 1")  # description required by default
    strict.write_text(strict.read_text().replace('datasets = ["toy"]', 'datasets = ["a", "b"]'))
    with pytest.raises(
        ConfigError, match=r"field 'description' is missing from the documents of dataset\(s\) \['b'\]"
    ):
        prepare(load_config(strict), [a, b])


# --- end to end: train, checkpoints, resume, the saved model as a Scorer ----------------------------------


def test_train_save_resume_and_score(bert_dir: Path, tmp_path: Path) -> None:
    from distilrel.evaluate.runner import EvalSettings, evaluate
    from distilrel.evaluate.scorers import load_scorer
    from distilrel.text.builder import TextBuilder

    ds = toy_dataset()
    labels = write_pseudo_labels(tmp_path / "labels.parquet", ds, extra_rows=20)
    path = write_config(tmp_path, bert_dir, data=f'pseudo_labels = "{labels}"', loss="margin_mse = 0.5")
    result = train_student(load_config(path), [ds], log=lambda _: None)

    run = tmp_path / "run"
    assert result.model_dir == run / MODEL_DIR and (run / CHECKPOINT_DIR / "checkpoint-8").is_dir()
    info = json.loads((run / INFO_FILE).read_text())
    assert info["global_step"] == 8 and info["best_checkpoint"] is not None
    assert "ndcg@10" in result.metrics and 0.0 <= result.metrics["ndcg@10"] <= 1.0
    assert any("loss_margin_mse" in h for h in info["log_history"])
    # Step 0 (the cosine prior over the pretrained towers) was evaluated; the better of it and the best
    # checkpoint was kept, and the saved model scores what the record says.
    sel = info["selection"]
    assert sel["kept"] in ("step 0", "best checkpoint")
    assert sel["kept_metric"] == max(sel["step0_metric"], sel["best_checkpoint_metric"])
    assert sel["kept_metric"] == info["best_metric"]
    assert result.metrics["ndcg@10"] == pytest.approx(sel["kept_metric"])
    meta = json.loads((run / MODEL_DIR / "distilrel.json").read_text())
    assert meta["kind"] == "student" and meta["text"]["fields"][0]["name"] == "title"

    # A checkpoint is itself a loadable student, and resuming continues from the last one.
    load_student(run / CHECKPOINT_DIR / "checkpoint-8", device="cpu")
    more = load_config(path).with_overrides(max_steps=12, resume=True)
    resumed = train_student(more, [ds], log=lambda _: None)
    assert json.loads((run / INFO_FILE).read_text())["global_step"] == 12 and resumed.model_dir.is_dir()
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train_student(load_config(path).with_overrides(resume=False), [ds], log=lambda _: None)

    # `distilrel evaluate --scorer run/model` goes through the registry to a StudentScorer.
    scorer = load_scorer(run / MODEL_DIR, device="cpu")
    assert isinstance(scorer, StudentScorer) and scorer.predicts_levels
    builder = TextBuilder.from_config(["title", "description"], tokenizer=scorer.tokenizer)
    res = evaluate(ds, scorer, builder, EvalSettings(split="test"))
    assert 0.0 <= res.summary["ndcg@10"] <= 1.0 and res.classifier  # 5 levels: level accuracy is reported
    assert len(scorer.doc_cache) == len(ds.judgments[ds.judgments["split"] == "test"])


def test_scorer_caches_documents_and_matches_the_model(bert_dir: Path) -> None:
    model = tiny_student(bert_dir, shared=False)
    scorer = StudentScorer(model, batch_size=2)
    queries = ["red shoe", "red shoe", "blue lamp", "blue lamp"]
    docs = ["red shoe soft", "blue lamp", "red shoe soft", "blue lamp"]
    first = scorer.score(queries, docs)
    assert len(scorer.doc_cache) == 2
    probs = scorer.predict_levels(queries, docs)
    assert len(scorer.doc_cache) == 2 and probs.shape == (4, 5)
    expected = model.score(model.encode_queries(queries), model.encode_docs(docs))
    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_allclose(scorer.score(queries, docs), first, atol=0)
    assert scorer.score([], []).shape == (0,)


def test_reads_the_labels_folder_of_distilrel_label(bert_dir: Path, tmp_path: Path) -> None:
    """pool → label → student with the real pool builder and labelling job (a word-overlap teacher)."""
    from distilrel.label.job import LabelSettings, run_label_job
    from distilrel.label.pool import build_pool_tables, pool_texts, write_pool

    ds = toy_dataset()
    pool = build_pool_tables([ds], retrievers=["bm25"], k=3, exclude_from=[ds])
    write_pool(pool, tmp_path / "pool")

    def overlap_teacher(queries: list[str], texts: list[str]) -> np.ndarray:
        hits = [len(set(q.split()) & set(t.split())) for q, t in zip(queries, texts, strict=True)]
        return np.asarray([teacher_like_probs(max(0, 2 - h)) for h in hits], dtype=np.float32)

    texts = pool_texts(pool, ["title", "description"])
    run_label_job(
        pool.pairs,
        texts,
        tmp_path / "pool" / "labels",
        overlap_teacher,
        teacher_id="overlap",
        k=5,
        settings=LabelSettings(shard_size=7, progress=False),
    )
    labels = tmp_path / "pool" / "labels"
    cfg = load_config(write_config(tmp_path, bert_dir, data=f'pseudo_labels = "{labels}"\npseudo_ratio = 10'))
    prep = prepare(cfg, [ds], log=lambda _: None)

    pseudo = prep.counts["pseudo"]
    assert pseudo["rows"] == len(pool.pairs) and pseudo["eval_query_rows"] == 0  # the pool already guards
    assert pseudo["merged_into_human"] + pseudo["used"] == len(pool.pairs)
    by_pair = {(e.query, e.doc): e for e in prep.train.examples}
    for q, d, t in zip(pool.pairs["query"], pool.pairs["doc_id"], texts, strict=True):
        example = by_pair[(q, t)]  # the text the student reads is the one the teacher read
        assert example.teacher_probs is not None and d


@pytest.mark.parametrize("name", ["student-minilm", "student-e5"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml")
    assert cfg.level_mapping.k == 5 and cfg.data.pseudo_labels and cfg.loss.kl > 0
    assert cfg.training.output_dir == f"runs/{name}"


def test_cli_trains_from_table_files(bert_dir: Path, tmp_path: Path) -> None:
    """`distilrel student train --config` end to end, on judgment files read by the `table` loader."""
    import typer
    from typer.testing import CliRunner

    from distilrel.cli.student import app as student_app

    ds = toy_dataset()
    judgments = ds.judgments.assign(label=[str(4 - lv) for lv in ds.judgments["level"]]).drop(
        columns=["level"]
    )
    judgments.to_parquet(tmp_path / "judgments.parquet", index=False)
    ds.documents.to_parquet(tmp_path / "documents.parquet", index=False)
    options = '{ judgments = "judgments.parquet", documents = "documents.parquet", levels = "default5" }'
    data = f'datasets = [{{ name = "table", path = "{tmp_path}", options = {options} }}]'  # TOML: one line
    path = write_config(tmp_path, bert_dir, loss="kl = 0\nce = 1")
    path.write_text(path.read_text().replace('datasets = ["toy"]', data))

    root = typer.Typer()
    root.add_typer(student_app, name="student")  # as the lead registers it under `distilrel`
    root.command()(lambda: None)  # a second command keeps `student` a sub-command group
    res = CliRunner().invoke(root, ["student", "train", "--config", str(path), "--max-steps", "4"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    info = json.loads((tmp_path / "run" / INFO_FILE).read_text())
    assert info["global_step"] == 4 and info["counts"]["human"]["table"] == 30 and info["best_checkpoint"]
    assert load_student(tmp_path / "run" / MODEL_DIR, device="cpu").levels == DEFAULT_5
