"""Ranking-aware teacher training: the listwise / pairwise losses (hand-computed values on a 2-query toy
list), query-list batches, the zero-shot prior (step 0 ranks as the bi-encoder's cosine) and the step-0
selection. Tiny models built in the test (tiny.py), real files in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from distilrel.config import ConfigError
from distilrel.data.levels import DEFAULT_5, LevelMapping
from distilrel.teacher.collator import ListCollator, TeacherCollator
from distilrel.teacher.config import HeadSpec, ModelConfig, PriorConfig, load_config
from distilrel.teacher.losses import (
    CombinedLoss,
    LambdaLoss,
    LevelCrossEntropyLoss,
    ListNetLoss,
    RankNetLoss,
    build_loss,
)
from distilrel.teacher.model import LAYOUT_SPLIT, TeacherModel, build_teacher, load_teacher
from distilrel.teacher.predict import expected_gain, predict_levels
from distilrel.teacher.prior import build_prior, calibrate, prior_features
from distilrel.teacher.train import SUMMARY, train_teacher
from distilrel.teacher.trainer import ListDataset
from test_teacher import WORDS, write_config
from tiny import (
    COLORS,
    PRODUCTS,
    save_tiny_bert,
    save_tiny_sentence_transformer,
    toy_dataset,
    wordpiece_tokenizer,
)

TWO = LevelMapping(("rel", "irr"))  # gains (1, 0): expected gain = P(rel)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = wordpiece_tokenizer(WORDS, bert_template=True)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tok, hidden=64, heads=4, intermediate=128)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny sentence-transformers bi-encoder: the zero-shot model the prior reads."""
    return save_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"), WORDS, hidden=32)


def teacher(bert_dir: Path, levels: LevelMapping = TWO, **model: Any) -> tuple[TeacherModel, Any]:
    torch.manual_seed(0)
    return build_teacher(ModelConfig(backbone=str(bert_dir), max_length=32, **model), levels)


# --- the losses on a hand-computed toy: two queries, scores 0.75 / 0.5 / 0.25 and 0.5 / 0.5 ---------------

# Logits (K = 2) whose expected gain P(rel) is 0.75, 0.5, 0.25: sigmoid(l0 - l1).
_L3 = math.log(3.0)
TOY_LOGITS = torch.tensor([[_L3, 0.0], [0.0, 0.0], [0.0, _L3], [0.0, 0.0], [0.0, 0.0]])
TOY_LABELS = torch.tensor([0, 1, 1, 1, 0])  # query A: rel, irr, irr; query B: irr, rel
TOY_GROUPS = torch.tensor([0, 0, 0, 1, 1])


def test_listnet_hand_computed(bert_dir: Path) -> None:
    model, _ = teacher(bert_dir)
    # A: target (1, 0, 0) -> -log softmax(0.75, 0.5, 0.25)[0]; B: target (0, 1), scores tie -> log 2.
    a = -(0.75 - math.log(math.exp(0.75) + math.exp(0.5) + math.exp(0.25)))
    b = math.log(2.0)
    got = ListNetLoss(model).from_logits(TOY_LOGITS, TOY_LABELS, TOY_GROUPS)
    assert float(got) == pytest.approx((a + b) / 2, abs=1e-6)
    # A temperature divides the scores.
    a2 = -(1.5 - math.log(math.exp(1.5) + math.exp(1.0) + math.exp(0.5)))
    got = ListNetLoss(model, temperature=0.5).from_logits(TOY_LOGITS, TOY_LABELS, TOY_GROUPS)
    assert float(got) == pytest.approx((a2 + b) / 2, abs=1e-6)


def test_ranknet_hand_computed(bert_dir: Path) -> None:
    model, _ = teacher(bert_dir)
    # pairs (better, worse): A (0,1): 0.25 apart, (0,2): 0.5 apart; B (4,3): tied.
    want = (math.log1p(math.exp(-0.25)) + math.log1p(math.exp(-0.5)) + math.log(2.0)) / 3
    got = RankNetLoss(model).from_logits(TOY_LOGITS, TOY_LABELS, TOY_GROUPS)
    assert float(got) == pytest.approx(want, abs=1e-6)


def test_lambda_loss_hand_computed(bert_dir: Path) -> None:
    model, _ = teacher(bert_dir)
    inv3 = 1.0 / math.log2(3.0)
    # A ranks 0, 1, 2 (IDCG 1): |ΔNDCG| of (0,1) = 1 - 1/log2 3, of (0,2) = 1 - 1/2.
    a = (1 - inv3) * math.log1p(math.exp(-0.25)) + 0.5 * math.log1p(math.exp(-0.5))
    # B ties rank by position: doc 3 first, doc 4 (the relevant one) second: |ΔNDCG| = 1 - 1/log2 3.
    b = (1 - inv3) * math.log(2.0)
    got = LambdaLoss(model).from_logits(TOY_LOGITS, TOY_LABELS, TOY_GROUPS)
    assert float(got) == pytest.approx((a + b) / 2, abs=1e-6)


def test_combined_loss_is_the_weighted_sum_of_its_parts(bert_dir: Path) -> None:
    model, tok = teacher(bert_dir)
    loss = build_loss(model, {"ce": 1.0, "listnet": 0.5, "lambda": 0.0, "ranknet": 2.0})
    assert set(loss.parts) == {"ce", "listnet", "ranknet"}  # a zero weight is left out
    batch = ListCollator(tok, 32)(
        [
            {"query": "red shoe", "texts": ["red shoe", "blue lamp", "red lamp"], "levels": [0, 1, 1]},
            {"query": "blue desk", "texts": ["green hose", "blue desk"], "levels": [1, 0]},
        ]
    )
    labels, groups = batch.pop("labels"), batch.pop("groups")
    model.eval()
    with torch.no_grad():
        total = float(loss(batch, labels, groups))
        logits = model(**batch)
    parts = {
        "ce": LevelCrossEntropyLoss(model).from_logits(logits, labels),
        "listnet": ListNetLoss(model).from_logits(logits, labels, groups),
        "ranknet": RankNetLoss(model).from_logits(logits, labels, groups),
    }
    assert total == pytest.approx(
        float(parts["ce"] + 0.5 * parts["listnet"] + 2.0 * parts["ranknet"]), rel=1e-5
    )
    assert loss.last.keys() == parts.keys()


@pytest.mark.parametrize("cls", [ListNetLoss, LambdaLoss, RankNetLoss])
def test_each_ranking_loss_lowers_on_a_few_steps(bert_dir: Path, cls: type) -> None:
    model, tok = teacher(bert_dir, levels=DEFAULT_5)
    ds = toy_dataset()
    j = ds.judgments
    titles = dict(zip(ds.documents["doc_id"], ds.documents["title"], strict=True))
    lists = ListDataset(
        j["query_id"].tolist(), j["query"].tolist(), [titles[d] for d in j["doc_id"]], j["level"].tolist(), 5
    )
    batch = ListCollator(tok, 32)([lists[i] for i in range(len(lists))])
    labels, groups = batch.pop("labels"), batch.pop("groups")
    loss = cls(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    values = []
    for _ in range(12):
        opt.zero_grad()
        value = loss(batch, labels, groups)
        value.backward()
        opt.step()
        values.append(float(value.detach()))
    assert values[-1] < values[0] * 0.9, values


def test_losses_check_model_and_inputs(bert_dir: Path) -> None:
    model, _ = teacher(bert_dir)
    for cls in (ListNetLoss, LambdaLoss, RankNetLoss):
        with pytest.raises(ValueError, match=cls.__name__):
            cls(torch.nn.Linear(2, 2))
        with pytest.raises(ValueError, match="query-grouped"):
            cls(model).from_logits(TOY_LOGITS, TOY_LABELS, None)
        with pytest.raises(ValueError, match="contiguous"):
            cls(model).from_logits(TOY_LOGITS, TOY_LABELS, torch.tensor([0, 1, 0, 1, 1]))
    with pytest.raises(ValueError, match="temperature"):
        ListNetLoss(model, temperature=0.0)
    with pytest.raises(ValueError, match="unknown teacher loss"):
        build_loss(model, {"listmle": 1.0})
    with pytest.raises(ValueError, match="CombinedLoss"):
        CombinedLoss(model, {"ce": (LevelCrossEntropyLoss(model), 0.0)})
    # A batch with no list to rank gives zero, not NaN.
    same = torch.tensor([1, 1, 1, 1, 1])
    assert float(ListNetLoss(model).from_logits(TOY_LOGITS, same, TOY_GROUPS)) == 0.0
    assert float(LambdaLoss(model).from_logits(TOY_LOGITS, same, TOY_GROUPS)) == 0.0


# --- query lists ------------------------------------------------------------------------------------------


def test_list_dataset_keeps_every_query_together_and_covers_each_pair_once() -> None:
    groups = ["a"] * 10 + ["b"] * 3 + ["c"] * 1 + ["a"] * 2
    n = len(groups)
    queries = [f"query {g}" for g in groups]
    texts = [f"doc {i}" for i in range(n)]
    ds = ListDataset(groups, queries, texts, list(range(n)), list_size=4, seed=3)
    seen = [j for lst in ds.lists for j in lst]
    assert sorted(seen) == list(range(n))  # every pair once
    for lst, g in zip(ds.lists, ds.groups, strict=True):
        assert {groups[j] for j in lst} == {g} and len(lst) <= 4
    # "a" has 12 pairs -> 3 lists of 4; "b" one of 3; "c" one of 1
    assert sorted(len(lst) for lst in ds.lists) == [1, 3, 4, 4, 4]


def test_list_collator_keeps_lists_contiguous(bert_dir: Path) -> None:
    _, tok = teacher(bert_dir)
    items = [
        {"query": "red shoe", "texts": ["red shoe", "blue lamp"], "levels": [0, 1]},
        {"query": "blue desk", "texts": ["a", "blue desk", "red"], "levels": [1, 0, 1]},
    ]
    batch = ListCollator(tok, 32)(items)
    assert batch["groups"].tolist() == [0, 0, 1, 1, 1]
    assert batch["labels"].tolist() == [0, 1, 1, 0, 1]
    pairs = TeacherCollator(tok, 32)(
        [
            {"query": it["query"], "text": t, "level": lv}
            for it in items
            for t, lv in zip(it["texts"], it["levels"], strict=True)
        ]
    )
    assert torch.equal(pairs["input_ids"], batch["input_ids"])
    with pytest.raises(ValueError, match="query lists"):
        ListCollator(tok, 32)([{"query": "q", "text": "t", "level": 0}])


# --- the zero-shot prior ----------------------------------------------------------------------------------


def _cosines(st_dir: Path, queries: list[str], texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(st_dir), device="cpu")
    q = st.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    d = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return (q * d).sum(axis=1)


def some_pairs(n: int = 30) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(1)
    queries = [" ".join(rng.choice(COLORS + PRODUCTS, size=2)) for _ in range(n)]
    texts = [" ".join(rng.choice(COLORS + PRODUCTS, size=rng.integers(1, 6))) for _ in range(n)]
    return queries, texts


def test_prior_features_are_the_bi_encoders_cosine_and_the_query_overlap(st_dir: Path) -> None:
    prior = build_prior(str(st_dir), DEFAULT_5)
    assert prior.settings.pooling == "mean"
    queries, texts = some_pairs()
    feats = prior_features(prior, queries, texts, batch_size=7).numpy()
    np.testing.assert_allclose(feats[:, 0], _cosines(st_dir, queries, texts), atol=1e-5)
    want = [
        sum(w in t.split() for w in q.split()) / len(q.split()) for q, t in zip(queries, texts, strict=True)
    ]
    np.testing.assert_allclose(feats[:, 1], want, atol=1e-6)
    assert not any(p.requires_grad for p in prior.encoder.parameters())


def test_a_teacher_with_a_prior_ranks_as_the_zero_shot_cosine_at_step_0(
    tmp_path: Path, bert_dir: Path, st_dir: Path
) -> None:
    model, tok = teacher(bert_dir, levels=DEFAULT_5, prior=PriorConfig(backbone=str(st_dir)))
    queries, texts = some_pairs()
    levels = torch.tensor(np.random.default_rng(0).integers(0, 5, size=len(queries)))
    fit = calibrate(model.prior, prior_features(model.prior, queries, texts), levels)
    assert fit["alpha"] > 0
    scores = expected_gain(predict_levels(model, tok, queries, texts, 8, 32), DEFAULT_5.gains)
    cos = _cosines(st_dir, queries, texts)
    assert (np.argsort(-scores, kind="stable") == np.argsort(-cos, kind="stable")).all()

    # Saved (backbone + head + prior) and loaded: the same level distributions.
    from distilrel.teacher.model import save_teacher

    folder = save_teacher(model, tok, tmp_path / "t", text_fields=[{"name": "title"}], max_length=32)
    loaded = load_teacher(folder)
    assert loaded.meta["layout"] == LAYOUT_SPLIT and loaded.meta["prior"]["backbone"] == str(st_dir)
    again = predict_levels(loaded.model, loaded.tokenizer, queries, texts, 8, 32)
    np.testing.assert_allclose(again, predict_levels(model, tok, queries, texts, 8, 32), atol=1e-5)
    (folder / "prior.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="prior"):
        load_teacher(folder)


def test_prior_config_is_checked(tmp_path: Path, bert_dir: Path) -> None:
    path = write_config(tmp_path, bert_dir, model='[model.prior]\nbackbone = "minilm"\nmax_doc_length = 2')
    with pytest.raises(ConfigError, match=r"\[model.prior\] max_doc_length"):
        load_config(path)
    path = write_config(tmp_path, bert_dir, model='[model.prior]\nbackbone = "minilm"\ncosine = true')
    with pytest.raises(ConfigError, match=r"\[model.prior\]"):
        load_config(path)
    path = write_config(tmp_path, bert_dir, training="loss = { ce = 1.0, listmle = 1.0 }")
    with pytest.raises(ConfigError, match="listmle"):
        load_config(path)
    path = write_config(tmp_path, bert_dir, training="loss = { listnet = 1.0 }\ndocs_per_query = 16")
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(path)
    path = write_config(tmp_path, bert_dir, training="loss = { ce = 0 }")
    with pytest.raises(ConfigError, match="every weight is 0"):
        load_config(path)


def test_listwise_training_with_a_prior_end_to_end(tmp_path: Path, bert_dir: Path, st_dir: Path) -> None:
    """Train a hybrid teacher with CE + ListNet on query lists; the summary and the saved model say what
    it is made of, and which of step 0 and the best checkpoint was kept."""
    training = "max_steps = 6\neval_steps = 3\nloss = { ce = 1.0, listnet = 1.0 }\ndocs_per_query = 4"
    cfg = load_config(
        write_config(tmp_path, bert_dir, training=training, model=f'[model.prior]\nbackbone = "{st_dir}"')
    )
    assert cfg.training.listwise and cfg.training.list_size == 4
    folder = train_teacher(cfg, datasets=[toy_dataset()])
    summary = json.loads((tmp_path / "run" / SUMMARY).read_text())
    assert summary["objective"]["listnet"]["weight"] == 1.0 and summary["objective"]["ce"]["weight"] == 1.0
    assert summary["prior_calibration"]["alpha"] > 0
    sel = summary["selection"]
    assert sel["kept"] in ("step 0", "best checkpoint") and sel["step0_metric"] is not None
    assert sel["kept_metric"] == max(sel["step0_metric"], sel["best_checkpoint_metric"])
    loaded = load_teacher(folder)
    assert loaded.meta["training"]["kept"] == sel["kept"]
    assert loaded.meta["training"]["objective"] == summary["objective"]
    assert loaded.meta["prior"]["features"] == ["cosine", "overlap"]
    # The kept model is the one saved: its validation NDCG@10 is the kept metric.
    from distilrel.teacher.trainer import EvalSet, TeacherEvaluator

    ds = toy_dataset()
    val = ds.split("validation").judgments
    titles = dict(zip(ds.documents["doc_id"], ds.documents["title"], strict=True))
    descs = dict(zip(ds.documents["doc_id"], ds.documents["description"], strict=True))
    texts = {d: f"title: {titles[d]}\ndescription: {descs[d]}" for d in val["doc_id"]}
    ev = TeacherEvaluator([EvalSet.from_judgments("toy", val, texts, ds.levels)], loaded.tokenizer, 32)
    assert ev(loaded.model)["ndcg@10"] == pytest.approx(sel["kept_metric"], abs=1e-4)


def test_head_of_a_hybrid_teacher_starts_at_zero(bert_dir: Path, st_dir: Path) -> None:
    model, _ = teacher(bert_dir, levels=DEFAULT_5, prior=PriorConfig(backbone=str(st_dir)))
    assert float(model.head.out.weight.abs().sum()) == 0.0
    plain = TeacherModel(
        model.backbone, DEFAULT_5, pooling="cls", head=HeadSpec(), family="encoder", prior=None
    )
    with pytest.raises(ValueError, match="no prior"):
        plain(torch.tensor([[2, 5, 3]]), torch.tensor([[1, 1, 1]]), overlap=torch.tensor([0.5]))


# --- the recipe search ------------------------------------------------------------------------------------


def test_search_keeps_the_best_validation_trial_and_records_it(tmp_path: Path, bert_dir: Path) -> None:
    from distilrel.teacher.search import search_teacher

    training = "eval_steps = 2\nloss = { ce = 1.0 }\ndocs_per_query = 4"
    cfg = load_config(write_config(tmp_path, bert_dir, training=training))
    space = {"learning_rate": (1e-4, 1e-2, "log"), "listnet": (0.0, 1.0, "float"), "max_steps": (2, 4, "int")}
    result = search_teacher(cfg, 3, space=space, datasets=[toy_dataset()], seed=1)
    assert len(result["trials"]) == 3
    values = [t["value"] for t in result["trials"]]
    assert (
        result["value"] == max(values)
        and result["chosen"] == result["trials"][values.index(max(values))]["params"]
    )
    out = tmp_path / "run"
    loaded = load_teacher(out / "model")
    assert loaded.meta["search"]["chosen"] == result["chosen"]
    # Only the best trial's folder is left, without checkpoints.
    left = sorted(p.name for p in out.glob("trial-*"))
    assert left == [f"trial-{result['chosen_trial']}"] and not (out / left[0] / "checkpoints").exists()
    assert json.loads((out / "search.json").read_text())["chosen"] == result["chosen"]


def test_trial_config_sets_training_keys_and_loss_weights(tmp_path: Path, bert_dir: Path) -> None:
    from distilrel.teacher.search import trial_config

    cfg = load_config(write_config(tmp_path, bert_dir, training="loss = { ce = 1.0, listnet = 0.5 }"))
    got = trial_config(cfg, {"learning_rate": 3e-4, "listnet": 0.0, "max_steps": 7}, tmp_path / "t")
    assert got.training.learning_rate == 3e-4 and got.training.max_steps == 7
    assert dict(got.training.loss) == {"ce": 1.0} and not got.training.listwise
    with pytest.raises(ValueError, match="neither"):
        trial_config(cfg, {"warp_speed": 1.0}, tmp_path / "t")


def test_a_pair_cap_keeps_whole_queries_for_a_ranking_objective() -> None:
    from distilrel.teacher.train import _cap_pairs

    j = toy_dataset(n_queries=12).judgments  # 5 pairs a query
    pointwise = _cap_pairs(j, 23, seed=0, whole_queries=False)
    assert len(pointwise) == 23
    lists = _cap_pairs(j, 23, seed=0, whole_queries=True)
    assert len(lists) == 20 and (lists.groupby("query_id").size() == 5).all()  # 4 whole queries
    assert _cap_pairs(j, None, seed=0, whole_queries=True) is j


def test_calibration_can_fit_the_overlap_weight(bert_dir: Path, st_dir: Path) -> None:
    model, _ = teacher(bert_dir, levels=DEFAULT_5, prior=PriorConfig(backbone=str(st_dir)))
    queries, texts = some_pairs(60)
    feats = prior_features(model.prior, queries, texts)
    # Levels driven by the overlap alone: the fit gives it a positive weight, the cosine-only fit cannot.
    levels = torch.tensor((4 - np.round(feats[:, 1].numpy() * 4)).astype(int))
    with_overlap = calibrate(model.prior, feats, levels, overlap=True)
    assert with_overlap["overlap_weight"] > 0
    w = model.prior.linear.weight.detach()
    torch.testing.assert_close(w[:, 1], w[:, 0] * with_overlap["overlap_weight"])
    cos_only = calibrate(model.prior, feats, levels)
    assert cos_only["overlap_weight"] == 0.0 and float(model.prior.linear.weight[:, 1].abs().sum()) == 0.0
    assert with_overlap["cross_entropy"] <= cos_only["cross_entropy"] + 1e-6
