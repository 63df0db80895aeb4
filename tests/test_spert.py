"""SpERT: spans, pooling, context, sampling, evaluation, save/load, overfitting a tiny encoder.

Models are tiny random BERTs (hidden 32, 2 layers) over the real MiniLM vocabulary,
so every test runs in well under a second or two on a CPU.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import torch
from tiny_models import EXAMPLES, TYPES, tiny_encoder

from re_pipeline.config import SpertTrainConfig
from re_pipeline.documents import Annotations, Document, Entity, Mention, Relation
from re_pipeline.encoder import encode, tokenize_words
from re_pipeline.inference import SmoothedLinear
from re_pipeline.spert.data import (
    Example,
    PredictedEntity,
    PredictedRelation,
    SentencePrediction,
    Types,
    apply_predictions,
    docred_to_examples,
    document_examples,
    load_examples,
    write_examples,
)
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.spert.model import RangePool, SpertConfig, SpertModel, candidate_spans
from re_pipeline.spert.predict import SpertPredictor
from re_pipeline.spert.sampling import collate, enumerate_spans, sample
from re_pipeline.spert.train import train
from re_pipeline.text import from_tokens
from re_pipeline.training import adamw

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(tokenizer, **options) -> SpertModel:
    config = SpertConfig(TYPES.entities, TYPES.relations, **options)
    return SpertModel(config, tiny_encoder(tokenizer)).eval()


# --- spans and pooling ---------------------------------------------------------------------------


def test_enumerate_spans_respects_width_and_sentence_length():
    spans = enumerate_spans(5, 3)
    assert len(spans) == 5 + 4 + 3
    assert all(1 <= e - s <= 3 and s >= 0 and e <= 5 for s, e in spans)
    assert len(set(spans)) == len(spans)
    assert len(enumerate_spans(25, 10)) == sum(min(10, 25 - i) for i in range(25))


def test_candidate_spans_stay_inside_each_sentence_of_a_batch():
    sent, start, end = candidate_spans(torch.tensor([2, 12, 0]), 10)
    lengths = [2, 12, 0]
    assert (sent == 2).sum() == 0
    assert (sent == 0).sum() == 3  # (0,1) (1,2) (0,2)
    assert (sent == 1).sum() == sum(min(10, 12 - i) for i in range(12))
    assert all(
        e <= lengths[s] and 1 <= e - a <= 10
        for s, a, e in zip(sent.tolist(), start.tolist(), end.tolist(), strict=True)
    )


def test_range_pool_matches_brute_force_over_subwords(tokenizer):
    words = ["Kowalczykowski", "visited", "Reykjavik", "and", "Tegucigalpa", "."]
    batch = tokenize_words(tokenizer, [words, ["short", "one"]])
    assert (batch.word_end[0] - batch.word_start[0]).max() > 2  # some words span several subwords
    hidden = torch.randn(2, batch.input_ids.shape[1], 8)
    pool = RangePool(hidden, batch)
    for s, e in enumerate_spans(len(words), 6):
        a, b = int(batch.word_start[0, s]), int(batch.word_end[0, e - 1])
        idx = (torch.tensor([0]), torch.tensor([s]), torch.tensor([e]))
        assert torch.allclose(pool.max(*idx)[0], hidden[0, a:b].max(0).values)
        assert torch.allclose(pool.sum(*idx)[0], hidden[0, a:b].sum(0), atol=1e-5)
        assert torch.allclose(pool.mean(*idx)[0], hidden[0, a:b].mean(0), atol=1e-5)
    assert torch.equal(pool.max(torch.tensor([0, 1]), torch.tensor([3, 2]), torch.tensor([3, 1])), torch.zeros(2, 8))


def test_localized_context_is_zero_between_adjacent_spans_and_the_max_between_otherwise(tokenizer):
    model = tiny_model(tokenizer)
    words = ["Kowalczykowski", "visited", "beautiful", "Reykjavik", "today"]
    batch = tokenize_words(tokenizer, [words])
    hidden = torch.randn(1, batch.input_ids.shape[1], 32)
    pool, cls = RangePool(hidden, batch), hidden[:, 0]
    sent = torch.zeros(3, dtype=torch.long)
    start, end = torch.tensor([0, 1, 3]), torch.tensor([1, 3, 4])  # [Kowalczykowski] [visited beautiful] [Reykjavik]
    head, tail = torch.tensor([0, 1, 0, 2]), torch.tensor([1, 0, 2, 0])
    ctx = model.context(pool, cls, sent, start, end, head, tail)
    assert torch.equal(ctx[0], torch.zeros(32)) and torch.equal(ctx[1], torch.zeros(32))  # adjacent
    between = hidden[0, int(batch.word_start[0, 1]) : int(batch.word_end[0, 2])].max(0).values
    assert torch.allclose(ctx[2], between) and torch.allclose(ctx[3], between)  # both directions
    model.config.context = "cls"
    assert torch.equal(model.context(pool, cls, sent, start, end, head, tail)[0], cls[0])


@pytest.mark.parametrize("fusion", ["max", "sum", "mean"])
def test_dense_entity_detection_equals_scoring_every_candidate_span(tokenizer, fusion):
    torch.manual_seed(0)
    model = tiny_model(tokenizer, fusion=fusion, max_span_width=4, width_embeddings=3)  # widths 2+ share a row
    with torch.no_grad():  # well-separated logits, so rounding cannot flip an argmax
        model.entity_classifier.weight.normal_(std=1.0)
        model.width_embedding.weight.normal_(std=1.0)
    sentences = [["Kowalczykowski", "visited", "Reykjavik", "and", "Tegucigalpa", "."], ["short", "one"], ["x"]]
    words = tokenize_words(tokenizer, sentences)
    with torch.inference_mode():
        pool, cls = model.encode(words)
        sent, start, end = candidate_spans(pool.lengths, 4)
        probs = model.entity_logits(cls, model.spans(pool, sent, start, end), sent).softmax(-1)
        score, label = probs.max(-1)
        keep = label > 0
        dense = model.detect_entities(pool, cls)
    assert 0 < int(keep.sum()) < len(keep)  # the case is not trivial: some spans kept, some dropped
    for expected, got in zip((sent, start, end, label), dense[:4], strict=True):
        assert torch.equal(expected[keep], got)
    assert torch.allclose(score[keep], dense[4], atol=1e-5)


# --- sampling --------------------------------------------------------------------------------------


def test_sampling_counts_and_strong_negatives():
    ex = EXAMPLES[0]  # 9 words, 3 entities, 2 relations
    smp = sample(ex, TYPES, random.Random(0), neg_entities=100, neg_relations=100, max_span_width=10)
    n_spans = len(enumerate_spans(9, 10))
    assert len(smp.entities) == n_spans  # all 3 gold + every other span (fewer than 100 exist)
    assert [e[2] for e in smp.entities[:3]] == [3, 2, 1]  # Peop, Org, Loc (0 is none)
    assert all(lab == 0 for *_, lab in smp.entities[3:])
    assert len(smp.relations) == 2 + (3 * 2 - 2)
    positives = {(h, t) for h, t, hot in smp.relations if any(hot)}
    assert positives == {(0, 1), (1, 2)}
    for h, t, hot in smp.relations:
        assert h < 3 and t < 3 and h != t  # strong negatives: pairs of gold entities only
        assert any(hot) == ((h, t) in positives)

    small = sample(ex, TYPES, random.Random(0), neg_entities=5, neg_relations=1, max_span_width=2)
    negatives = [(s, e) for s, e, lab in small.entities if lab == 0]
    assert len(negatives) == 5 and len(small.relations) == 3
    assert all(e - s <= 2 and (s, e) not in {(0, 2), (4, 6), (7, 8)} for s, e in negatives)


def test_collate_flattens_samples_with_row_offsets(tokenizer):
    rng = random.Random(1)
    samples = [sample(ex, TYPES, rng, 4, 4) for ex in EXAMPLES[:2]]
    batch = collate(EXAMPLES[:2], samples, tokenizer, len(TYPES.relations))
    n0 = len(samples[0].entities)
    assert batch.entity_sent.tolist() == [0] * n0 + [1] * len(samples[1].entities)
    second = [i for i, h in enumerate(batch.rel_head.tolist()) if h >= n0]
    assert second and all(batch.entity_sent[batch.rel_tail[i]] == 1 for i in second)
    assert batch.rel_labels.shape == (len(samples[0].relations) + len(samples[1].relations), 3)


# --- evaluation ------------------------------------------------------------------------------------


def test_wrong_entity_type_counts_against_relations_with_nec_only():
    gold = [Example(["a", "b", "c", "d"], [(0, 1, "Peop"), (3, 4, "Loc")], [(0, 1, "Live_In")])]
    pred = [
        SentencePrediction(
            [PredictedEntity(0, 1, "Org", 0.9), PredictedEntity(3, 4, "Loc", 0.9)],
            [PredictedRelation(0, 1, "Live_In", 0.8)],
        )
    ]
    result = evaluate(gold, pred, TYPES)
    assert result.entities.micro.precision == 0.5 and result.entities.micro.recall == 0.5
    assert result.entities.per_type["Loc"].f1 == 1.0 and result.entities.per_type["Peop"].recall == 0.0
    assert result.entities.per_type["Org"].precision == 0.0
    assert result.relations.micro.f1 == 1.0
    assert result.relations_nec.micro.f1 == 0.0
    # Macro averages run over the types seen (SpERT): Peop, Org, Loc for entities.
    assert result.entities.macro.f1 == pytest.approx((0 + 0 + 1) / 3)
    assert result.relations.macro.f1 == 1.0 and result.relations.per_type["Work_For"].support == 0


def test_evaluator_counts_relation_direction_and_symmetric_types():
    gold = [Example(["a", "b", "c"], [(0, 1, "Peop"), (2, 3, "Peop")], [(0, 1, "Kill"), (0, 1, "Meet")])]
    types = Types(["Peop"], ["Kill", "Meet"], symmetric=["Meet"])
    ents = [PredictedEntity(0, 1, "Peop", 1.0), PredictedEntity(2, 3, "Peop", 1.0)]
    reversed_pred = [
        SentencePrediction(ents, [PredictedRelation(1, 0, "Kill", 1.0), PredictedRelation(1, 0, "Meet", 1)])
    ]
    result = evaluate(gold, reversed_pred, types)
    assert result.relations_nec.per_type["Kill"].f1 == 0.0  # direction matters
    assert result.relations_nec.per_type["Meet"].f1 == 1.0  # except for symmetric types


# --- data ------------------------------------------------------------------------------------------


def docred_doc() -> dict:
    return {
        "title": "T",
        "sents": [["Ann", "lives", "in", "Oslo", "."], ["Oslo", "is", "where", "Ann", "works", "."]],
        "vertexSet": [
            [
                {"name": "Ann", "sent_id": 0, "pos": [0, 1], "type": "PER"},
                {"name": "Ann", "sent_id": 1, "pos": [3, 4], "type": "PER"},
            ],
            [
                {"name": "Oslo", "sent_id": 0, "pos": [3, 4], "type": "LOC"},
                {"name": "Oslo", "sent_id": 1, "pos": [0, 1], "type": "LOC"},
            ],
        ],
        "labels": [{"h": 0, "t": 1, "r": "P551", "evidence": [0]}],
    }


def test_docred_conversion_keeps_relations_of_evidence_sentences_only(tmp_path):
    examples = docred_to_examples([docred_doc()])
    assert [ex.entities for ex in examples] == [[(0, 1, "PER"), (3, 4, "LOC")], [(3, 4, "PER"), (0, 1, "LOC")]]
    assert examples[0].relations == [(0, 1, "P551")]
    assert examples[1].relations == []  # both mentions there, but the sentence is not evidence
    path = tmp_path / "docred.json"
    path.write_text(json.dumps([docred_doc(), docred_doc()]))
    assert len(load_examples(path, "1:")) == 2


def test_document_bridge_round_trip():
    text, sentences = from_tokens(docred_doc()["sents"])
    ann = Entity([Mention(0, 0, 1, "Ann", "PER"), Mention(1, 3, 4, "Ann", "PER")])
    oslo = Entity([Mention(0, 3, 4, "Oslo", "LOC"), Mention(1, 0, 1, "Oslo", "LOC")])
    doc = Document(
        "t:1", "t", "1", text, sentences, gold=Annotations([ann, oslo], [Relation(0, 1, "P551", evidence=[0])])
    )
    from_document = document_examples(doc, gold=True)
    assert [(ex.tokens, ex.entities, ex.relations) for ex in from_document] == [
        (ex.tokens, ex.entities, ex.relations) for ex in docred_to_examples([docred_doc()])
    ]
    preds = [
        SentencePrediction(
            [PredictedEntity(0, 1, "PER", 0.9), PredictedEntity(3, 4, "LOC", 0.8)],
            [PredictedRelation(0, 1, "P551", 0.7)],
        ),
        SentencePrediction([PredictedEntity(0, 1, "LOC", 0.6)]),
    ]
    apply_predictions(doc, preds)
    assert [e.name for e in doc.predicted.entities] == ["Ann", "Oslo", "Oslo"]
    rel = doc.predicted.relations[0]
    assert (rel.head, rel.tail, rel.evidence, rel.source) == (0, 1, [0], "spert")
    assert doc.char_span(doc.predicted.entities[2].mentions[0]) == (text.index("Oslo is"), text.index("Oslo is") + 4)


# --- model -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion,context", [("max", "localized"), ("sum", "full"), ("mean", "cls")])
def test_loss_is_finite_and_reaches_every_trainable_part(tokenizer, fusion, context):
    model = tiny_model(tokenizer, fusion=fusion, context=context).train()
    samples = [sample(ex, TYPES, random.Random(0), 10, 10) for ex in EXAMPLES]
    loss = model.loss(collate(EXAMPLES, samples, tokenizer, len(TYPES.relations)))
    loss.backward()
    assert torch.isfinite(loss)
    for part in (model.entity_classifier, model.relation_classifier, model.width_embedding):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0


def test_long_sentences_are_windowed_not_truncated(tokenizer):
    torch.manual_seed(0)
    model = SpertModel(SpertConfig(TYPES.entities, TYPES.relations), tiny_encoder(tokenizer, max_positions=16)).eval()
    with torch.no_grad():  # every span is an entity: the last words must still get predictions
        model.entity_classifier.bias.copy_(torch.tensor([-100.0, 100.0, 0.0, 0.0]))
    words = [f"w{i}" for i in range(30)]  # ~60 subwords, windows of 14
    pred = SpertPredictor(model, tokenizer, "cpu").predict_tokens([words])[0]
    assert len(pred.entities) == len(enumerate_spans(30, 10))
    assert max(e.end for e in pred.entities) == 30


@pytest.mark.parametrize("max_tokens", [None, 1])
def test_predictions_keep_input_order_and_skip_empty_sentences(tokenizer, max_tokens):
    predictor = SpertPredictor(tiny_model(tokenizer), tokenizer, "cpu", batch_size=2, max_tokens=max_tokens)
    sentences = [ex.tokens for ex in EXAMPLES] + [[]]
    batched = predictor.predict_tokens(sentences)
    single = [predictor.predict_tokens([s])[0] for s in sentences]
    assert [[(e.start, e.end, e.type) for e in p.entities] for p in batched] == [
        [(e.start, e.end, e.type) for e in p.entities] for p in single
    ]
    assert batched[-1] == SentencePrediction()


def test_tiny_encoder_overfits_to_f1_one_and_save_load_predicts_identically(tokenizer, tmp_path, capsys):
    args = SpertTrainConfig(
        epochs=40,
        lr=1e-2,
        warmup=0.0,
        dropout=0.0,
        batch_size=3,
        seed=1,
        device="cpu",
        neg_entities=20,
        neg_relations=20,
    )
    model, history = train(EXAMPLES, EXAMPLES, TYPES, tiny_encoder(tokenizer), tmp_path / "m", args, tokenizer)
    best = max(h.metrics["rel_nec_micro_f1"] for h in history)
    assert best == 100.0
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["dev"]["ent_micro_f1"] == 100.0
    assert (tmp_path / "m" / "training_curve.png").stat().st_size > 0

    loaded = SpertPredictor.load(tmp_path / "m", device="cpu")
    original = SpertPredictor(model, tokenizer, "cpu")
    sentences = [ex.tokens for ex in EXAMPLES]
    assert loaded.predict_tokens(sentences) == original.predict_tokens(sentences)
    result = evaluate(EXAMPLES, loaded.predict_tokens(sentences), TYPES)
    assert result.entities.micro.f1 == 1.0 and result.relations_nec.micro.f1 == 1.0
    text = loaded.predict_text("Mary lives in Paris.")
    assert {(e["text"], e["type"]) for e in text["entities"]} == {("Mary", "Peop"), ("Paris", "Loc")}
    assert text["relations"][0]["type"] == "Live_In"

    quantized = SpertPredictor.load(tmp_path / "m", device="cpu", int8=True)
    modules = list(quantized.model.encoder.modules())
    linears = [m for m in modules if "Linear" in type(m).__name__ and not isinstance(m, SmoothedLinear)]
    assert linears and all(type(m).__module__.startswith("torch.ao.nn.quantized") for m in linears)
    assert any(isinstance(m, SmoothedLinear) for m in modules)  # feed-forward inputs smoothed before quantizing
    result = evaluate(EXAMPLES, quantized.predict_tokens(sentences), TYPES)
    assert result.entities.micro.f1 >= 0.9 and result.relations_nec.micro.f1 >= 0.8  # int8 keeps what was learned
    on_caller = SpertPredictor(model, tokenizer, "cpu", int8=True)
    caller_linears = [m for m in model.encoder.modules() if "Linear" in type(m).__name__]
    assert on_caller.model is not model and all(type(m) is torch.nn.Linear for m in caller_linears)
    assert on_caller.predict_tokens(sentences) == quantized.predict_tokens(sentences)

    # ONNX Runtime: the same predictions in fp32 (scores to float tolerance); int8 keeps what was learned.
    on_onnx = SpertPredictor.load(tmp_path / "m", device="cpu", runtime="onnx").predict_tokens(sentences)
    reference = loaded.predict_tokens(sentences)
    assert _labels(on_onnx) == _labels(reference)
    assert _scores(on_onnx) == pytest.approx(_scores(reference), abs=1e-4)
    onnx_int8 = SpertPredictor(model, tokenizer, "cpu", int8=True, runtime="onnx")
    assert all(type(m) is torch.nn.Linear for m in caller_linears)
    result = evaluate(EXAMPLES, onnx_int8.predict_tokens(sentences), TYPES)
    assert result.entities.micro.f1 >= 0.9 and result.relations_nec.micro.f1 >= 0.8

    # The CLI: int8 on ONNX Runtime, smoothing calibrated on a SpERT JSON file's sentences.
    import argparse

    from re_pipeline.spert.cli import register

    write_examples(tmp_path / "data.json", EXAMPLES)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    data = str(tmp_path / "data.json")
    model_args = ["evaluate", "--model", str(tmp_path / "m"), "--data", data, "--calibration", data, "--device", "cpu"]
    args = parser.parse_args(["spert", *model_args, "--int8", "--runtime", "onnx", "--json"])
    capsys.readouterr()  # what training printed
    args.func(args)
    scores = json.loads(capsys.readouterr().out)
    assert scores["entities"]["micro"]["f1"] >= 90 and scores["relations_nec"]["micro"]["f1"] >= 80
    args = parser.parse_args(["spert", *model_args])
    with pytest.raises(SystemExit, match="needs --int8"):
        args.func(args)


def _labels(preds: list[SentencePrediction]) -> list[Any]:
    return [
        ([(e.start, e.end, e.type) for e in p.entities], [(r.head, r.tail, r.type) for r in p.relations]) for p in preds
    ]


def _scores(preds: list[SentencePrediction]) -> list[float]:
    return [x.score for p in preds for x in (*p.entities, *p.relations)]


def test_training_is_reproducible(tokenizer):
    args = SpertTrainConfig(epochs=2, lr=1e-3, seed=3, device="cpu", neg_entities=5, neg_relations=5)
    runs = [train(EXAMPLES, [], TYPES, tiny_encoder(tokenizer), None, args, tokenizer)[1] for _ in range(2)]
    assert [h.loss for h in runs[0]] == [h.loss for h in runs[1]]


def _uncorrected_adam(net: torch.nn.Module, lr: float, wd: float, eps: float, moments: dict) -> None:
    """Adam without bias correction, written out (SpERT's reference optimizer; decoupled decay first, as torch)."""
    beta1, beta2 = 0.9, 0.999
    with torch.no_grad():
        for name, p in net.named_parameters():
            m, v = moments.setdefault(name, (torch.zeros_like(p), torch.zeros_like(p)))
            m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.mul_(1 - lr * (0.0 if name.endswith("bias") else wd))
            p.sub_(lr * m / (v.sqrt() + eps))


@pytest.mark.parametrize("bias_correction", [False, True])
def test_uncorrected_adamw_takes_the_spert_reference_codes_adam_step(bias_correction):
    torch.manual_seed(0)
    model, written_out = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    written_out.load_state_dict(model.state_dict())
    args = SpertTrainConfig()
    optimizer = adamw(model, 1e-2, 0.1, eps=args.adam_eps, bias_correction=bias_correction)
    moments: dict = {}
    for step in range(1, 6):
        lr = 1e-2 * step / 5  # changed between steps, as the scheduler does
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = torch.randn(8, 4)
        for net in (model, written_out):
            net.zero_grad()
            net(x).square().sum().backward()
        optimizer.step()
        _uncorrected_adam(written_out, lr, 0.1, args.adam_eps, moments)
        assert optimizer.param_groups[0]["lr"] == lr  # the per-step rescaling is undone
    same = all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), written_out.parameters(), strict=True)
    )
    assert same is not bias_correction  # torch's corrected AdamW takes another path: the check can tell


@pytest.mark.integration
def test_minilm_encodes_words_and_predicts_from_text(tokenizer):
    from re_pipeline.config import default_encoder
    from re_pipeline.encoder import load_encoder

    model = SpertModel(SpertConfig(TYPES.entities, TYPES.relations), load_encoder(default_encoder())).eval()
    out = SpertPredictor(model, tokenizer, "cpu").predict_text("Mary lives in Paris. John Smith works for Acme.")
    for e in out["entities"]:
        assert 0 <= e["char_start"] < e["char_end"]
    words = tokenize_words(tokenizer, [EXAMPLES[2].tokens])
    assert encode(model.encoder, words.input_ids, words.attention_mask).shape[-1] == 384
