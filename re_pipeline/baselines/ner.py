"""BIO-tagging NER baseline: ``AutoModelForTokenClassification`` over words.

Each word's label sits on its first subword (the others are ignored by the loss,
label -100) and a word's prediction is read from its first subword. Entity-level
P/R/F1 follows seqeval's default (CoNLL ``conlleval``) chunking: an ``I-X`` after
``O`` or after another type starts a new entity.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from re_pipeline.baselines.common import load_hf_model, new_hf_model, run_training
from re_pipeline.config import BaselineTrainConfig
from re_pipeline.encoder import WordBatch, tokenize_words, word_batches
from re_pipeline.metrics import Scores, count_by_type, summarize
from re_pipeline.spert.data import Example, Types
from re_pipeline.training import seed_everything


def bio_labels(types: Types) -> list[str]:
    return ["O"] + [f"{p}-{t}" for t in types.entities for p in ("B", "I")]


def bio_tags(n_words: int, entities: Sequence[tuple[int, int, str]]) -> list[str]:
    """Word tags of a sentence; an entity overlapping an earlier one is dropped (BIO cannot nest)."""
    tags = ["O"] * n_words
    for start, end, etype in sorted(entities, key=lambda e: (e[0], -e[1])):
        if all(t == "O" for t in tags[start:end]):
            tags[start:end] = [f"B-{etype}"] + [f"I-{etype}"] * (end - start - 1)
    return tags


def bio_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entities (start, end, type) of a tag sequence, chunked as seqeval/conlleval do."""
    spans, start, etype = [], None, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, t = tag.partition("-")
        if start is not None and (prefix != "I" or t != etype):
            spans.append((start, i, etype))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, etype = i, t
    return spans


def entity_scores(
    gold: Sequence[Sequence[tuple[int, int, str]]], pred: Sequence[Sequence[tuple[int, int, str]]], types: list[str]
) -> Scores:
    """Entity-level micro/macro P/R/F1 over sentences (exact span and type)."""
    g = [(i, *e) for i, ents in enumerate(gold) for e in ents]
    p = [(i, *e) for i, ents in enumerate(pred) for e in ents]
    return summarize(count_by_type(g, p, lambda item: item[-1]), types)


def _first_subword_labels(words: WordBatch, tags: list[list[str]], label_ids: dict[str, int]) -> torch.Tensor:
    labels = torch.full_like(words.input_ids, -100)
    for b, sent_tags in enumerate(tags):
        for i, tag in enumerate(sent_tags):
            labels[b, words.word_start[b, i]] = label_ids[tag]
    return labels


class NerTagger:
    """A token-classification model with its tokenizer and BIO label set."""

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", batch_size: int = 32) -> None:
        self.model, self.tokenizer, self.batch_size = model.to(device).eval(), tokenizer, batch_size
        self.device = device
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", batch_size: int = 32) -> NerTagger:
        return cls(*load_hf_model(path, "AutoModelForTokenClassification"), device, batch_size)

    @torch.inference_mode()
    def predict(self, sentences: Sequence[Sequence[str]]) -> list[list[tuple[int, int, str]]]:
        """Entities of each sentence, batched by length."""
        out: list[list[tuple[int, int, str]]] = [[] for _ in sentences]
        for chunk, words in word_batches(self.tokenizer, sentences, self.batch_size):
            words = words.to(self.device)
            logits = self.model(input_ids=words.input_ids, attention_mask=words.attention_mask).logits
            first = logits.gather(1, words.word_start[..., None].expand(-1, -1, logits.shape[-1])).argmax(-1)
            for b, j in enumerate(chunk):
                out[j] = bio_spans([self.labels[k] for k in first[b, : len(sentences[j])].tolist()])
        return out


def train_ner(
    train_set: list[Example],
    dev_set: list[Example],
    types: Types,
    encoder: str,
    out_dir: str | Path | None,
    args: BaselineTrainConfig,
) -> tuple[NerTagger, list[Any]]:
    seed_everything(args.seed)
    labels = bio_labels(types)
    label_ids = {t: i for i, t in enumerate(labels)}
    model, tokenizer = new_hf_model(encoder, "AutoModelForTokenClassification", labels)
    tagger = NerTagger(model, tokenizer, "cpu", args.eval_batch_size)
    rng = random.Random(args.seed)

    def batches(epoch: int) -> list[tuple[WordBatch, torch.Tensor]]:
        order = list(range(len(train_set)))
        rng.shuffle(order)
        out = []
        for i in range(0, len(order), args.batch_size):
            chunk = [train_set[j] for j in order[i : i + args.batch_size]]
            words = tokenize_words(tokenizer, [ex.tokens for ex in chunk])
            tags = [bio_tags(len(ex.tokens), ex.entities) for ex in chunk]
            out.append((words, _first_subword_labels(words, tags, label_ids)))
        return out

    def loss_fn(batch: tuple[WordBatch, torch.Tensor]) -> torch.Tensor:
        words, labels = batch
        return model(input_ids=words.input_ids, attention_mask=words.attention_mask, labels=labels).loss

    def dev_scores() -> dict[str, float]:
        scores = entity_scores(
            [ex.entities for ex in dev_set], tagger.predict([ex.tokens for ex in dev_set]), types.entities
        )
        return {"ent_micro_f1": 100 * scores.micro.f1, "ent_macro_f1": 100 * scores.macro.f1}

    history = run_training(
        model, tokenizer, batches, loss_fn, dev_scores if dev_set else None, "ent_micro_f1", out_dir, args, "ner"
    )
    return (NerTagger.load(out_dir, batch_size=args.eval_batch_size) if out_dir else tagger), history
