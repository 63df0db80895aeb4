"""Sentence-level relation classification over given entity pairs (the pipeline's second step).

For an ordered pair (head, tail) of entities in a sentence, marker tokens are
inserted around them, ``[E1] head words [/E1]`` and ``[E2] tail words [/E2]``, the
markers being added to the tokenizer's vocabulary (embeddings resized), and
``AutoModelForSequenceClassification`` picks one relation type or ``none`` from
[CLS]. Training sees every related pair plus ``neg_per_sentence`` random
unrelated pairs per sentence each epoch (all pairs cost ~4x the compute for the
same result). A pair carrying two relation types is trained on its first one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from re_pipeline.baselines.common import load_hf_model, new_hf_model, run_training
from re_pipeline.config import BaselineTrainConfig
from re_pipeline.encoder import tokenize_words, word_batches
from re_pipeline.spert.data import Example, PredictedEntity, PredictedRelation, SentencePrediction, Types
from re_pipeline.spert.evaluator import evaluate
from re_pipeline.training import seed_everything

MARKERS = ["[E1]", "[/E1]", "[E2]", "[/E2]"]
NONE = "none"

Span = tuple[int, int, str]
Pair = tuple[list[str], int, int]  # sentence words, head entity index, tail entity index


def mark(tokens: Sequence[str], head: Span, tail: Span) -> list[str]:
    """The sentence's words with entity markers inserted around head and tail."""
    inserts = {head[0]: ["[E1]"], tail[0]: ["[E2]"]}
    closes = {head[1]: ["[/E1]"], tail[1]: ["[/E2]"]}
    if head[0] == tail[0]:
        inserts[head[0]] = ["[E1]", "[E2]"]
    if head[1] == tail[1]:
        closes[head[1]] = ["[/E2]", "[/E1]"]
    out: list[str] = []
    for i in range(len(tokens) + 1):
        out += closes.get(i, [])
        out += inserts.get(i, [])
        if i < len(tokens):
            out.append(tokens[i])
    return out


def labelled_pairs(ex: Example) -> tuple[list[tuple[int, int, str]], list[tuple[int, int]]]:
    """Related pairs with their (first) type, and every other ordered pair of distinct entities."""
    related: dict[tuple[int, int], str] = {}
    for h, t, r in ex.relations:
        related.setdefault((h, t), r)
    n = len(ex.entities)
    unrelated = [(h, t) for h in range(n) for t in range(n) if h != t and (h, t) not in related]
    return [(h, t, r) for (h, t), r in related.items()], unrelated


class RelationClassifier:
    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", batch_size: int = 32) -> None:
        self.model, self.tokenizer, self.device, self.batch_size = (
            model.to(device).eval(),
            tokenizer,
            device,
            batch_size,
        )
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", batch_size: int = 32) -> RelationClassifier:
        return cls(*load_hf_model(path, "AutoModelForSequenceClassification"), device, batch_size)

    @torch.inference_mode()
    def classify(self, inputs: Sequence[list[str]]) -> list[tuple[str, float]]:
        """(label, probability) per marked sentence, batched by length."""
        out: list[tuple[str, float]] = [(NONE, 1.0)] * len(inputs)
        for chunk, words in word_batches(self.tokenizer, inputs, self.batch_size):
            words = words.to(self.device)
            probs = self.model(input_ids=words.input_ids, attention_mask=words.attention_mask).logits.softmax(-1)
            score, label = probs.max(-1)
            for j, lab, sc in zip(chunk, label.tolist(), score.tolist(), strict=True):
                out[j] = (self.labels[lab], sc)
        return out

    def predict(
        self, sentences: Sequence[Sequence[str]], entities: Sequence[Sequence[Span]]
    ) -> list[SentencePrediction]:
        """Relations between every ordered pair of the given entities of each sentence."""
        inputs, where = [], []
        for s, (tokens, ents) in enumerate(zip(sentences, entities, strict=True)):
            for h in range(len(ents)):
                for t in range(len(ents)):
                    if h != t:
                        inputs.append(mark(tokens, ents[h], ents[t]))
                        where.append((s, h, t))
        out = [SentencePrediction([PredictedEntity(a, b, typ, 1.0) for a, b, typ in ents], []) for ents in entities]
        for (s, h, t), (label, score) in zip(where, self.classify(inputs), strict=True):
            if label != NONE:
                out[s].relations.append(PredictedRelation(h, t, label, score))
        return out


def train_relation(
    train_set: list[Example],
    dev_set: list[Example],
    types: Types,
    encoder: str,
    out_dir: str | Path | None,
    args: BaselineTrainConfig,
) -> tuple[RelationClassifier, list[Any]]:
    """Train on gold entity pairs; the dev score is strict relation F1 given gold entities."""
    seed_everything(args.seed)
    labels = [NONE, *types.relations]
    label_ids = {t: i for i, t in enumerate(labels)}
    model, tokenizer = new_hf_model(encoder, "AutoModelForSequenceClassification", labels, MARKERS)
    classifier = RelationClassifier(model, tokenizer, "cpu", args.eval_batch_size)
    rng = random.Random(args.seed)

    def epoch_pairs() -> list[tuple[list[str], int]]:
        items = []
        for ex in train_set:
            related, unrelated = labelled_pairs(ex)
            if args.neg_per_sentence >= 0:
                unrelated = rng.sample(unrelated, min(len(unrelated), args.neg_per_sentence))
            for h, t, r in [*related, *((h, t, NONE) for h, t in unrelated)]:
                items.append((mark(ex.tokens, ex.entities[h], ex.entities[t]), label_ids[r]))
        rng.shuffle(items)
        return items

    def batches(epoch: int) -> list[tuple[Any, torch.Tensor]]:
        items = epoch_pairs()
        return [
            (tokenize_words(tokenizer, [w for w, _ in chunk]), torch.tensor([y for _, y in chunk]))
            for chunk in (items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size))
        ]

    def loss_fn(batch: tuple[Any, torch.Tensor]) -> torch.Tensor:
        words, y = batch
        return model(input_ids=words.input_ids, attention_mask=words.attention_mask, labels=y).loss

    def dev_scores() -> dict[str, float]:
        preds = classifier.predict([ex.tokens for ex in dev_set], [ex.entities for ex in dev_set])
        return {"rel_nec_micro_f1_gold_entities": 100 * evaluate(dev_set, preds, types).relations_nec.micro.f1}

    metric = "rel_nec_micro_f1_gold_entities"
    history = run_training(
        model, tokenizer, batches, loss_fn, dev_scores if dev_set else None, metric, out_dir, args, "relation"
    )
    return (RelationClassifier.load(out_dir, batch_size=args.eval_batch_size) if out_dir else classifier), history
