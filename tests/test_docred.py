"""DocRED two-step model: windows, pooling, sampler, metrics, save/load, overfitting.

Models here are tiny random BERTs (hidden 32, 2 layers) over the real MiniLM
vocabulary, so everything runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from tiny_models import tiny_encoder

from re_pipeline.config import DocRETrainConfig, default_encoder
from re_pipeline.docred.data import (
    DocFeatures,
    build_features,
    collate,
    document_to_docred,
    num_labels,
)
from re_pipeline.docred.evaluate import evaluate, tune
from re_pipeline.docred.metrics import best_threshold, official_scores, step2_accuracy, train_facts
from re_pipeline.docred.model import DocREConfig, DocREModel
from re_pipeline.docred.predict import MODES, DocREPredictor, decode_twostep
from re_pipeline.docred.sampling import sample_pairs
from re_pipeline.docred.train import make_optimizer, train, train_epoch
from re_pipeline.documents import Annotations
from re_pipeline.encoder import encode
from re_pipeline.ingest import docred_document, parse_slice

RELATIONS = ["P17", "P131", "P27", "P569"]


def record(title: str, sents: list[list[str]], vertex: list[list[tuple]], labels: list[tuple]) -> dict:
    """A DocRED record; mentions are (name, sent, start, end, type), labels (h, t, r)."""
    return {
        "title": title,
        "sents": sents,
        "vertexSet": [
            [{"name": n, "sent_id": s, "pos": [a, b], "type": ty} for n, s, a, b, ty in ent] for ent in vertex
        ],
        "labels": [{"h": h, "t": t, "r": r, "evidence": [0]} for h, t, r in labels],
    }


RECORDS = [
    record(
        "Lyon",
        [["Lyon", "is", "a", "city", "in", "France", "."], ["Lyon", "lies", "in", "Rhône", ",", "France", "."]],
        [
            [("Lyon", 0, 0, 1, "LOC"), ("Lyon", 1, 0, 1, "LOC")],
            [("France", 0, 5, 6, "LOC"), ("France", 1, 5, 6, "LOC")],
            [("Rhône", 1, 3, 4, "LOC")],
        ],
        [(0, 1, "P17"), (0, 2, "P131"), (2, 1, "P17")],
    ),
    record(
        "Ada",
        [["Ada", "Lovelace", "was", "born", "in", "1815", "in", "London", ",", "England", "."]],
        [
            [("Ada Lovelace", 0, 0, 2, "PER")],
            [("1815", 0, 5, 6, "TIME")],
            [("London", 0, 7, 8, "LOC")],
            [("England", 0, 9, 10, "LOC")],
        ],
        [(0, 1, "P569"), (0, 3, "P27"), (2, 3, "P17"), (2, 3, "P131")],
    ),
    record(
        "Kyoto",
        [["Kyoto", "is", "in", "Japan", "."], ["It", "was", "the", "capital", "of", "Japan", "."]],
        [[("Kyoto", 0, 0, 1, "LOC")], [("Japan", 0, 3, 4, "LOC"), ("Japan", 1, 5, 6, "LOC")]],
        [(0, 1, "P17")],
    ),
]


def tiny_predictor(
    tokenizer, mode: str = "twostep", pooling: str = "mean", types: list[str] | None = None, context: str = "none"
) -> DocREPredictor:
    """Random tiny models; ``types`` also gives them entity type embeddings and step 2 a softmax."""
    tasks = ("step1", "step2") if mode == "twostep" else (mode,)

    def config(task: str) -> DocREConfig:
        output = "softmax" if types and task == "step2" else "sigmoid"
        return DocREConfig(num_labels(task, len(RELATIONS)), task, pooling, output, types or [], context=context)

    models = {t: DocREModel(config(t), tiny_encoder(tokenizer)).eval() for t in tasks}
    thresholds = {"onestep": 0.5} if mode == "onestep" else {"step1": 0.5, "step2": 0.5}
    return DocREPredictor(mode, models, tokenizer, RELATIONS, thresholds)


# --------------------------------------------------------------------------- data


def test_docred_round_trip_and_features(tokenizer):
    docs = [docred_document(r) for r in RECORDS]
    assert [document_to_docred(d) for d in docs] == RECORDS
    assert docs[0].gold.entities[0].type == "LOC" and docs[0].text.startswith("Lyon is a city in France .")
    feats = build_features(tokenizer, docs, RELATIONS)
    ada = feats[1]
    start, end = ada.mention_spans[0]
    assert tokenizer.decode(ada.input_ids[start:end]) == "ada lovelace"
    assert ada.labels == {(0, 1): {3}, (0, 3): {2}, (2, 3): {0, 1}}
    assert parse_slice("-100:") == slice(-100, None) and parse_slice("0:400") == slice(0, 400)


def test_collate_pads_everything_with_false_masks(tokenizer):
    feats = build_features(tokenizer, [docred_document(r) for r in RECORDS], RELATIONS)
    pairs = [f.all_pairs() for f in feats]
    batch = collate(feats, pairs, "onestep", len(RELATIONS))
    assert batch.pairs.shape == (3, 12, 2) and batch.labels.shape == (3, 12, 5)
    assert batch.pair_mask.sum(1).tolist() == [6, 12, 2]
    assert batch.entity_mention_mask.sum((1, 2)).tolist() == [5, 4, 3]
    # one-step: every real pair has exactly N/A or some relation; padding has nothing
    lab = batch.labels
    assert ((lab[..., 0] == 1) == (lab[..., 1:].sum(-1) == 0))[batch.pair_mask].all()
    assert lab[~batch.pair_mask].sum() == 0
    shared = collate(feats, pairs, "shared", len(RELATIONS)).labels  # column 0: related; then the types
    assert torch.equal(shared[..., 0], (1 - lab[..., 0]) * batch.pair_mask) and torch.equal(
        shared[..., 1:], lab[..., 1:]
    )


# --------------------------------------------------------------------------- encoder windows


def test_windows_equal_single_pass_on_short_document(tokenizer):
    model = tiny_encoder(tokenizer)
    feats = build_features(tokenizer, [docred_document(r) for r in RECORDS], RELATIONS)
    batch = collate(feats, [[] for _ in feats])
    with torch.inference_mode():
        single = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        through = encode(model, batch.input_ids, batch.attention_mask)
    torch.testing.assert_close(through, single)


def test_windows_cover_every_token_of_a_long_document(tokenizer):
    """A 100-token document in 32-position windows: every token's output is the
    mean of exactly the windows that contain it (reference computed window by window)."""
    model = tiny_encoder(tokenizer)
    torch.manual_seed(1)
    content = torch.randint(1000, 5000, (100,))
    ids = torch.cat([torch.tensor([101]), content, torch.tensor([102])])[None]
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        out = encode(model, ids, mask, max_length=32)
        width, step = 30, 15
        starts = [*range(0, 100 - width + 1, step)]
        starts += [100 - width] if starts[-1] + width < 100 else []
        total, count = torch.zeros(102, 32), torch.zeros(102, 1)
        for s in starts:
            win = torch.cat([ids[0, :1], content[s : s + width], ids[0, -1:]])[None]
            h = model(input_ids=win, attention_mask=torch.ones_like(win)).last_hidden_state[0]
            total[0] += h[0]
            total[1 + s : 1 + s + width] += h[1:-1]
            total[-1] += h[-1]
            count[0] += 1
            count[1 + s : 1 + s + width] += 1
            count[-1] += 1
    assert (count > 0).all()
    torch.testing.assert_close(out[0], total / count)


# --------------------------------------------------------------------------- pooling and scoring


@pytest.mark.parametrize("pooling", ["mean", "logsumexp"])
def test_pooling_masks_padded_mentions_and_entities(tokenizer, pooling):
    model = DocREModel(DocREConfig(3, "step2", pooling), tiny_encoder(tokenizer)).eval()
    hidden = torch.randn(2, 10, 32)
    spans = torch.tensor([[[1, 3], [4, 5], [6, 9]], [[2, 4], [0, 0], [0, 0]]])  # doc 2: one mention + padding
    mentions = model.mention_embeddings(hidden, spans)
    assert mentions.shape == (2, 3, 32)
    torch.testing.assert_close(mentions[0, 2], hidden[0, 6:9].mean(0))
    assert mentions[1, 1:].abs().sum() == 0
    index = torch.tensor([[[0, 2], [1, 0]], [[0, 1], [1, 1]]])  # padded slots point at junk on purpose
    mask = torch.tensor([[[True, True], [True, False]], [[True, False], [False, False]]])
    ents = model.entity_embeddings(mentions, index, mask)
    assert ents.shape == (2, 2, 32)
    pair = torch.stack([mentions[0, 0], mentions[0, 2]])
    expected = pair.mean(0) if pooling == "mean" else pair.logsumexp(0)
    torch.testing.assert_close(ents[0, 0], expected)
    torch.testing.assert_close(ents[0, 1], mentions[0, 1])
    torch.testing.assert_close(ents[1, 0], mentions[1, 0])
    assert ents[1, 1].abs().sum() == 0  # a padded entity is zeros, not -inf or nan


def test_pair_scores_match_a_per_pair_bilinear(tokenizer):
    model = DocREModel(DocREConfig(5, "onestep"), tiny_encoder(tokenizer)).eval()
    ents = torch.randn(2, 4, 32)
    pairs = torch.tensor([[[0, 1], [1, 0], [3, 2]], [[2, 0], [0, 0], [0, 0]]])
    logits = model.pair_logits(ents, pairs)
    bil = torch.nn.Bilinear(128, 128, 5)
    bil.weight.data, bil.bias.data = model.bilinear.data, model.bias.data
    x = model.proj(ents)
    for b in range(2):
        for p in range(3):
            h, t = pairs[b, p]
            torch.testing.assert_close(logits[b, p], bil(x[b, h][None], x[b, t][None])[0])


def test_softmax_step2_learns_against_all_gold_types(tokenizer):
    model = DocREModel(DocREConfig(3, "step2", output="softmax"), tiny_encoder(tokenizer))
    logits = torch.tensor([[[2.0, 0.5, -1.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # pair 2 has no type: not a target
    mask = torch.tensor([[True, True, False]])  # pair 3 is padding
    log_p = logits[0, 0].log_softmax(-1)
    expected = -(log_p[0] + log_p[2]) / 2
    torch.testing.assert_close(model.loss(logits, labels, mask), expected)
    torch.testing.assert_close(model.probabilities(logits).sum(-1), torch.ones(1, 3))
    with pytest.raises(ValueError, match="softmax"):
        DocREModel(DocREConfig(1, "step1", output="softmax"), tiny_encoder(tokenizer))


def test_entity_type_embeddings_reach_the_scores(tokenizer):
    model = DocREModel(DocREConfig(3, "step2", entity_types=["LOC", "PER"]), tiny_encoder(tokenizer)).eval()
    feats = build_features(tokenizer, [docred_document(r) for r in RECORDS[1:2]], RELATIONS)
    assert feats[0].entity_types == ["PER", "TIME", "LOC", "LOC"]
    pairs = [feats[0].all_pairs()]
    batch = collate(feats, pairs, type_ids=model.type_ids)
    assert batch.entity_types.tolist() == [[2, 0, 1, 1]]  # TIME is not in the vocabulary: 0
    with torch.no_grad():
        scores = model(batch)
        feats[0].entity_types[0] = "LOC"  # the same text, another type: other scores
        changed = model(collate(feats, pairs, type_ids=model.type_ids))
    assert not torch.allclose(scores, changed)
    with pytest.raises(ValueError, match="type_ids"):
        model(collate(feats, pairs))


def test_pair_context_weighs_only_real_tokens_and_reaches_the_scores(tokenizer):
    """The context is an attention-weighted average of the document's tokens: padding
    never contributes, a document of identical tokens gives that token back, and the
    context moves the pair's scores."""
    torch.manual_seed(0)
    model = DocREModel(DocREConfig(3, "step2", context="attention"), tiny_encoder(tokenizer)).eval()
    hidden, entities = torch.randn(2, 6, 32), torch.randn(2, 3, 32)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    pairs = torch.tensor([[[0, 1], [1, 0], [2, 1]], [[0, 2], [1, 2], [0, 0]]])
    context = model.pair_context(hidden, mask, entities, pairs)
    assert context.shape == (2, 3, 32)
    noisy = hidden.clone()
    noisy[0, 4:] = 1e3  # padding of document 0
    torch.testing.assert_close(model.pair_context(noisy, mask, entities, pairs)[0], context[0])
    torch.testing.assert_close(context[0, 0], context[0, 1])  # both entities must attend: symmetric
    same = torch.randn(32).expand(2, 6, 32)
    torch.testing.assert_close(model.pair_context(same, mask, entities, pairs), same[:, :3])
    feats = build_features(tokenizer, [docred_document(RECORDS[0])], RELATIONS)
    batch = collate(feats, [feats[0].all_pairs()])
    with torch.no_grad():
        with_context = model(batch)
        model.context_out.weight.zero_()
        model.context_out.bias.zero_()
        without = model(batch)
    assert not torch.allclose(with_context, without)
    with pytest.raises(ValueError, match="context"):
        DocREModel(DocREConfig(3, "step2", context="everything"), tiny_encoder(tokenizer))


def test_entity_types_the_model_never_saw_are_reported(tokenizer, caplog):
    predictor = tiny_predictor(tokenizer, types=["LOC", "PER", "TIME"])
    docs = [docred_document(r) for r in RECORDS]
    predictor.features(docs, "gold")
    assert not caplog.records
    for d in docs:
        for e in d.gold.entities:
            e.type = {"LOC": "Loc", "PER": "Peop"}.get(e.type, e.type)  # CoNLL04's names for the same types
    predictor.features(docs, "gold")
    assert "never saw (Loc, Peop" in caplog.text


def test_models_saved_before_the_new_options_load_as_they_were(tokenizer, tmp_path):
    model = DocREModel(DocREConfig(3, "step2", "mean"), tiny_encoder(tokenizer)).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for new in ("output", "entity_types", "type_dim", "context", "context_heads", "context_dim"):
        del config[new]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = DocREModel.from_pretrained(tmp_path)
    assert loaded.config.output == "sigmoid" and loaded.type_embedding is None and loaded.type_ids is None
    assert loaded.config.context == "none" and not hasattr(loaded, "context_out")
    ents, pairs = torch.randn(1, 3, 32), torch.tensor([[[0, 1], [2, 0]]])
    torch.testing.assert_close(loaded.pair_logits(ents, pairs), model.pair_logits(ents, pairs))


# --------------------------------------------------------------------------- sampler


def test_sampler_keeps_every_related_pair_at_three_to_one():
    pairs = [(h, t) for h in range(12) for t in range(12) if h != t]
    labels = {p: {0} for p in pairs[:10]}
    feat = DocFeatures("d", [101, 102], [], [[0]] * 12, labels)
    rng = random.Random(0)
    seen_na = set()
    for _ in range(20):
        sample = sample_pairs(feat, rng)
        assert set(labels) <= set(sample)  # never drops a related pair
        assert len(sample) == len(set(sample)) == 40  # 10 related + 30 N/A
        na = set(sample) - set(labels)
        assert len(na) == 3 * len(labels) and not na & set(labels)
        seen_na |= na
    assert len(seen_na) > 30  # redrawn each time
    few = DocFeatures("d", [101, 102], [], [[0]] * 3, {p: {0} for p in [(0, 1), (1, 0), (0, 2), (2, 0)]})
    assert sorted(sample_pairs(few, rng)) == sorted(few.all_pairs())  # fewer N/A than 3:1: all of them


# --------------------------------------------------------------------------- metrics


def test_official_f1_and_ign_f1_by_hand():
    gold_docs = [docred_document(r) for r in RECORDS[:2]]
    # training set: "Lyon" -> "France" P17 is known; Kyoto facts are not in the gold set
    in_train = train_facts([docred_document(RECORDS[0])])
    assert ("Lyon", "France", "P17") in in_train and ("Rhône", "France", "P17") in in_train
    in_train = {("Lyon", "France", "P17")}
    preds = [
        {"title": "Lyon", "h_idx": 0, "t_idx": 1, "r": "P17"},  # correct, in train
        {"title": "Lyon", "h_idx": 0, "t_idx": 1, "r": "P17"},  # duplicate: counted once
        {"title": "Lyon", "h_idx": 0, "t_idx": 2, "r": "P131"},  # correct
        {"title": "Lyon", "h_idx": 1, "t_idx": 0, "r": "P17"},  # wrong direction
        {"title": "Ada", "h_idx": 2, "t_idx": 3, "r": "P17"},  # correct
        {"title": "Ada", "h_idx": 0, "t_idx": 2, "r": "P27"},  # wrong
        {"title": "Unknown", "h_idx": 0, "t_idx": 1, "r": "P17"},  # title not in gold: a wrong prediction
    ]
    s = official_scores(preds, gold_docs, in_train)
    assert (s["correct"], s["predicted"], s["gold"], s["correct_in_train"]) == (3, 6, 7, 1)
    p, r = 3 / 6, 3 / 7
    assert s["f1"] == pytest.approx(2 * p * r / (p + r))
    ign_p = (3 - 1) / (6 - 1 + 1e-5)
    assert s["ign_f1"] == pytest.approx(2 * ign_p * r / (ign_p + r))
    assert s["per_relation"]["P17"] == pytest.approx(
        {"gold": 3, "predicted": 4, "correct": 2, "precision": 2 / 4, "recall": 2 / 3, "f1": 4 / 7}
    )
    # a fact is "in train" through any mention-name pair of its two entities
    s2 = official_scores(preds[:1], gold_docs, {("Lyon", "France", "P17")})
    assert s2["correct_in_train"] == 1 and s2["ign_f1"] == pytest.approx(0.0, abs=1e-6)


def test_best_threshold_and_step2_accuracy():
    scores = torch.tensor([0.9, 0.8, 0.3, 0.1])
    correct = torch.tensor([1, 1, 0, 0])
    t, f1 = best_threshold(scores, correct, torch.ones(4), n_gold=3)
    assert f1 == pytest.approx(0.8) and 0.3 < t < 0.8  # keep the top two: P 1, R 2/3
    tied = torch.tensor([0.9, 0.5, 0.5, 0.1])  # a cut between the two 0.5s cannot be decoded
    t, f1 = best_threshold(tied, torch.tensor([1, 1, 0, 0]), torch.ones(4), n_gold=2)
    assert (t, f1) == (pytest.approx(0.3), pytest.approx(2 * 2 / (3 + 2)))  # keeps both 0.5s: P 2/3, R 1
    probs = [torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.7]])]
    assert step2_accuracy(probs, [[{1}, {2}]]) == 0.5


def test_decode_twostep_gives_a_set_of_types():
    p1 = torch.tensor([0.9, 0.2])
    p2 = torch.tensor([[0.6, 0.1, 0.55], [0.9, 0.9, 0.9]])
    facts = decode_twostep([(0, 1), (1, 0)], p1, p2, 0.5, 0.5)
    assert [(h, t, r) for h, t, r, _ in facts] == [(0, 1, 0), (0, 1, 2)]
    assert facts[0][3] == pytest.approx(0.9 * 0.6)
    only_top = decode_twostep([(0, 1), (1, 0)], p1, p2, 0.5, 1.01)
    assert [(h, t, r) for h, t, r, _ in only_top] == [(0, 1, 0)]


# --------------------------------------------------------------------------- prediction


@pytest.mark.parametrize(
    "mode, types, context",
    [
        ("twostep", None, "none"),
        ("twostep", ["LOC", "PER"], "none"),
        ("twostep", ["LOC", "PER"], "attention"),
        ("onestep", None, "none"),
        ("shared", None, "attention"),
    ],
)
def test_save_load_gives_identical_predictions(tokenizer, tmp_path, mode, types, context):
    predictor = tiny_predictor(tokenizer, mode, "logsumexp", types, context)
    docs = [docred_document(r) for r in RECORDS]
    for d in docs:
        d.predicted = Annotations(d.gold.entities, [])
    tune(predictor, predictor.features(docs, "gold"), predictor.probabilities(predictor.features(docs, "gold")))
    before = [[(r.head, r.tail, r.type, r.confidence) for r in d.predicted.relations] for d in predictor.predict(docs)]
    predictor.save(tmp_path / "m")
    loaded = DocREPredictor.load(tmp_path / "m", "cpu")
    assert loaded.thresholds == predictor.thresholds and loaded.relations == RELATIONS
    after = [[(r.head, r.tail, r.type, r.confidence) for r in d.predicted.relations] for d in loaded.predict(docs)]
    assert after == before and any(after)
    assert all(r.source == mode for d in docs for r in d.predicted.relations)


def test_fast_two_step_path_equals_scoring_every_pair(tokenizer):
    predictor = tiny_predictor(tokenizer)
    feats = predictor.features([docred_document(r) for r in RECORDS], "gold")
    probs = predictor.probabilities(feats)
    p1 = torch.cat(probs["step1"]).flatten().sort().values
    middle = len(p1) // 2  # a cut midway between two scores, so batching noise cannot flip a pair
    predictor.thresholds = {"step1": float(p1[middle - 1] + p1[middle]) / 2, "step2": 0.5}
    full = predictor.decode(feats, probs)
    fast = predictor.facts(feats, batch_size=2)
    assert [[f[:3] for f in d] for d in fast] == [[f[:3] for f in d] for d in full] and any(fast)
    for d_fast, d_full in zip(fast, full, strict=True):
        assert [f[3] for f in d_fast] == pytest.approx([f[3] for f in d_full], abs=1e-5)


# --------------------------------------------------------------------------- training


def test_step2_updates_at_its_own_batch_size(tokenizer):
    """Step 2 takes ``step2_batch_size`` documents per update, step 1 ``batch_size``."""
    features = build_features(tokenizer, [docred_document(r) for r in RECORDS], RELATIONS)
    related = [f for f in features if f.labels]
    config = DocRETrainConfig(batch_size=3, step2_batch_size=1, device="cpu")
    for task, feats, updates in (("step1", features, 1), ("step2", related, len(related))):
        model = DocREModel(DocREConfig(num_labels(task, len(RELATIONS)), task), tiny_encoder(tokenizer))
        optimizer, scheduler = make_optimizer(model, config, total_steps=100)
        train_epoch(model, task, feats, optimizer, scheduler, random.Random(0), config, len(RELATIONS), 0)
        assert scheduler.last_epoch == updates


def test_step2_may_train_more_rounds_than_step1(tmp_path, tokenizer, monkeypatch):
    """Rounds past step 1's last train step 2 alone; each round is evaluated."""
    import re_pipeline.docred.model as model_module

    monkeypatch.setattr(model_module, "load_encoder", lambda _: tiny_encoder(tokenizer))
    docs = [docred_document(r) for r in RECORDS]
    config = DocRETrainConfig(epochs=1, step2_extra_epochs=2, batch_size=3, device="cpu")
    history = train(config, default_encoder(), docs, docs, tmp_path / "m", relations=RELATIONS)["history"]
    assert [sorted(k for k in h["metrics"] if k.startswith("loss_")) for h in history] == [
        ["loss_step1", "loss_step2"],
        ["loss_step2"],
        ["loss_step2"],
    ]


@pytest.mark.parametrize(
    "mode, variant", [("twostep", "defaults"), ("twostep", "paper"), ("twostep", "context"), ("shared", "defaults")]
)
def test_tiny_encoder_overfits_a_few_documents(tmp_path, tokenizer, monkeypatch, mode, variant):
    """Train a tiny random encoder on three documents, evaluate on the same three: the
    model directory must come back with high F1 and load for prediction. Variants: the
    trainer's defaults, the paper's plain model (sigmoid step 2, no entity types), and the
    defaults with the pair-localized context."""
    import re_pipeline.docred.model as model_module

    monkeypatch.setattr(model_module, "load_encoder", lambda _: tiny_encoder(tokenizer))
    docs = [docred_document(r) for r in RECORDS]
    config = DocRETrainConfig(mode, epochs=40, batch_size=3, lr=2e-3, head_lr=5e-3, warmup=0.0, device="cpu", seed=1)
    if variant == "paper":
        config.step2_output, config.type_dim = "sigmoid", 0
    if variant == "context":
        config.context = "attention"
    metrics = train(config, default_encoder(), docs, docs, tmp_path / "m", relations=RELATIONS)
    assert metrics["best"]["f1"] >= 0.9
    assert metrics["best"]["step2_accuracy"] >= 0.9
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    rounds = max(config.epochs_of(task) for task in MODES[mode])  # step 2's extra epochs included
    assert len(saved["history"]) == rounds and (tmp_path / "m" / "curves.png").exists()
    scores, _ = evaluate(DocREPredictor.load(tmp_path / "m", "cpu"), docs, set())
    assert scores["f1"] == pytest.approx(metrics["best"]["f1"])


@pytest.mark.integration
def test_minilm_end_to_end_on_one_document(tmp_path):
    """The real MiniLM: one training epoch on a document, save, load, predict."""
    docs = [docred_document(RECORDS[0])]
    config = DocRETrainConfig(epochs=1, step2_extra_epochs=0, device="cpu")
    train(config, default_encoder(), docs, docs, tmp_path / "m", relations=RELATIONS)
    predictor = DocREPredictor.load(tmp_path / "m", "cpu")
    docs[0].predicted = Annotations(docs[0].gold.entities, [])
    predictor.predict(docs)
    assert all(0 <= r.confidence <= 1 and r.type in RELATIONS for r in docs[0].predicted.relations)


def test_cli_evaluate_and_predict(tokenizer, tmp_path, capsys):
    import argparse

    from re_pipeline.docred.cli import register

    tiny_predictor(tokenizer).save(tmp_path / "m")
    data = tmp_path / "docs.json"
    data.write_text(json.dumps(RECORDS))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "docred",
            "evaluate",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(data),
            "--train",
            str(data),
            "--slice",
            "0:2",
            "--predictions",
            str(tmp_path / "pred.json"),
            "--threads",
            "1",
        ]
    )
    assert args.func(args) == 0
    assert "Ign F1" in capsys.readouterr().out
    predictions = json.loads((tmp_path / "pred.json").read_text())
    assert {p["title"] for p in predictions} <= {"Lyon", "Ada"}
    gold_only = [{"title": "Lyon", "h_idx": 0, "t_idx": 1, "r": "P17"}]
    (tmp_path / "gold.json").write_text(json.dumps(gold_only))
    args = parser.parse_args(["docred", "evaluate", "--data", str(data), "--results", str(tmp_path / "gold.json")])
    assert args.func(args) == 0
    assert "P 100.00  R 12.50" in capsys.readouterr().out  # 1 of the 8 gold facts, no model needed
    args = parser.parse_args(
        [
            "docred",
            "predict",
            "--model",
            str(tmp_path / "m"),
            "--input",
            str(data),
            "--output",
            str(tmp_path / "o.json"),
        ]
    )
    assert args.func(args) == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert out and set(out[0]) == {"title", "h_idx", "t_idx", "r", "score"}

    # The encoders on ONNX Runtime: the same facts, scores to float tolerance; tuning (which saves) refused.
    onnx_out = tmp_path / "onnx.json"
    model_args = ["--model", str(tmp_path / "m"), "--device", "cpu", "--runtime", "onnx"]
    args = parser.parse_args(["docred", "predict", *model_args, "--input", str(data), "--output", str(onnx_out)])
    assert args.func(args) == 0
    on_onnx = json.loads(onnx_out.read_text())
    assert [(p["title"], p["h_idx"], p["t_idx"], p["r"]) for p in on_onnx] == [
        (p["title"], p["h_idx"], p["t_idx"], p["r"]) for p in out
    ]
    assert [p["score"] for p in on_onnx] == pytest.approx([p["score"] for p in out], abs=1e-4)
    args = parser.parse_args(["docred", "evaluate", *model_args, "--data", str(data), "--tune"])
    with pytest.raises(SystemExit, match="torch runtime"):
        args.func(args)


def test_a_saved_setting_this_version_does_not_know_is_a_clear_error(tokenizer, tmp_path):
    tiny_predictor(tokenizer).save(tmp_path / "m")
    path = tmp_path / "m" / "step1" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "markers": True}))
    with pytest.raises(ValueError, match="unknown to this version of re_pipeline: markers"):
        DocREPredictor.load(tmp_path / "m", "cpu")
