"""Pipeline baselines: BIO chunking and scoring, entity markers, tiny models that overfit."""

from __future__ import annotations

import argparse

import pytest
from tiny_models import EXAMPLES, TYPES, tiny_encoder

from re_pipeline.baselines.ner import NerTagger, bio_spans, bio_tags, entity_scores, train_ner
from re_pipeline.baselines.pipeline import evaluate_pipeline
from re_pipeline.baselines.relation import labelled_pairs, mark, train_relation
from re_pipeline.config import BaselineTrainConfig

EXAMPLES = EXAMPLES[:2]  # the two sentences the baselines overfit


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory, tokenizer):
    """A tiny random BERT with the MiniLM vocabulary, saved like a pretrained encoder."""
    path = tmp_path_factory.mktemp("tiny-bert")
    tiny_encoder(tokenizer, max_positions=64, dropout=0.0).save_pretrained(str(path))  # overfitting is the point
    tokenizer.save_pretrained(str(path))
    return str(path)


def test_bio_round_trip_and_seqeval_chunking():
    tags = bio_tags(9, EXAMPLES[0].entities)
    assert tags == ["B-Peop", "I-Peop", "O", "O", "B-Org", "I-Org", "O", "B-Loc", "O"]
    assert bio_spans(tags) == EXAMPLES[0].entities
    assert bio_spans(["I-Loc", "I-Loc", "O", "I-Org"]) == [(0, 2, "Loc"), (3, 4, "Org")]  # I- after O opens
    assert bio_spans(["B-Loc", "I-Org", "B-Org", "B-Org"]) == [
        (0, 1, "Loc"),
        (1, 2, "Org"),
        (2, 3, "Org"),
        (3, 4, "Org"),
    ]
    assert bio_tags(4, [(0, 3, "Org"), (1, 2, "Loc")]) == ["B-Org", "I-Org", "I-Org", "O"]  # nested one dropped


def test_entity_scores_are_exact_span_and_type():
    gold = [[(0, 2, "Peop"), (4, 6, "Org")]]
    pred = [[(0, 2, "Peop"), (4, 5, "Org"), (7, 8, "Loc")]]
    scores = entity_scores(gold, pred, TYPES.entities)
    assert (scores.micro.precision, scores.micro.recall) == (1 / 3, 1 / 2)
    assert scores.per_type["Peop"].f1 == 1.0 and scores.per_type["Org"].f1 == 0.0


def test_markers_surround_head_and_tail_in_either_order():
    tokens = EXAMPLES[0].tokens
    assert mark(tokens, (7, 8, "Loc"), (4, 6, "Org")) == [
        "John", "Smith", "works", "for", "[E2]", "Acme", "Corporation", "[/E2]", "in", "[E1]", "Boston", "[/E1]", ".",
    ]  # fmt: skip
    assert mark(["a", "b"], (0, 2, "X"), (0, 2, "Y")) == ["[E1]", "[E2]", "a", "b", "[/E2]", "[/E1]"]


def test_labelled_pairs_split_related_from_every_other_ordered_pair():
    related, unrelated = labelled_pairs(EXAMPLES[0])
    assert related == [(0, 1, "Work_For"), (1, 2, "OrgBased_In")]
    assert sorted(unrelated) == [(0, 2), (1, 0), (2, 0), (2, 1)]


def test_tiny_baselines_overfit_and_chain(tiny_encoder_dir, tmp_path):
    args = BaselineTrainConfig(epochs=40, batch_size=2, lr=2e-3, warmup=0.0, neg_per_sentence=-1)
    tagger, history = train_ner(EXAMPLES, EXAMPLES, TYPES, tiny_encoder_dir, tmp_path / "ner", args)
    assert max(h.metrics["ent_micro_f1"] for h in history) == 100.0
    assert isinstance(NerTagger.load(tmp_path / "ner"), NerTagger)
    assert tagger.predict([ex.tokens for ex in EXAMPLES]) == [ex.entities for ex in EXAMPLES]

    args.epochs = 100  # [CLS] must learn to find the markers: slower than tagging
    classifier, history = train_relation(EXAMPLES, EXAMPLES, TYPES, tiny_encoder_dir, tmp_path / "re", args)
    assert max(h.metrics["rel_nec_micro_f1_gold_entities"] for h in history) == 100.0
    assert len(classifier.tokenizer) == classifier.model.get_input_embeddings().num_embeddings  # markers added
    assert classifier.tokenizer.convert_tokens_to_ids("[E1]") != classifier.tokenizer.unk_token_id
    result = evaluate_pipeline(tagger, classifier, EXAMPLES, TYPES)
    assert result.entities.micro.f1 == 1.0 and result.relations_nec.micro.f1 == 1.0


def test_cli_registers_baseline_and_spert_commands():
    from re_pipeline.baselines.cli import register as register_baseline
    from re_pipeline.spert.cli import register as register_spert

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    register_spert(sub)
    register_baseline(sub)
    args = parser.parse_args(["baseline", "re", "evaluate", "--model", "m", "--data", "d.json", "--ner", "n"])
    assert args.task == "re" and args.func.__name__ == "cmd_evaluate"
    args = parser.parse_args(["spert", "train", "--train", "t.json", "--out", "o", "--epochs", "1", "--threads", "1"])
    assert (args.epochs, args.lr, args.neg_entities, args.fusion) == (1, 5e-5, 100, "max")
    assert parser.parse_args(["spert", "predict", "--model", "m", "--text", "x"]).func.__name__ == "cmd_predict"
