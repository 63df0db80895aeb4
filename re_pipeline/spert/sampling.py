"""SpERT's training samples: what the model sees of a sentence in one training step.

Per sentence: every gold entity plus ``neg_entities`` random non-entity spans of
up to ``max_span_width`` words (label ``none``), and every gold relation plus
``neg_relations`` *strong negatives*: ordered pairs of gold entities that hold no
relation in that direction (so the model learns relations from entity pairs that
look plausible, not from random spans). Negatives are drawn anew every epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from re_pipeline.encoder import tokenize_words
from re_pipeline.spert.data import Example, Types
from re_pipeline.spert.model import SpertBatch, candidate_spans


@dataclass
class Sample:
    entities: list[tuple[int, int, int]]  # (start, end, label); label 0 = none
    relations: list[tuple[int, int, list[int]]]  # (head row, tail row, multi-hot over relation types)


def enumerate_spans(n_words: int, max_width: int) -> list[tuple[int, int]]:
    """All spans [start, end) of 1..max_width words in a sentence of ``n_words`` words."""
    _, start, end = candidate_spans(torch.tensor([n_words]), max_width)
    return list(zip(start.tolist(), end.tolist(), strict=True))


def sample(
    example: Example,
    types: Types,
    rng: random.Random,
    neg_entities: int = 100,
    neg_relations: int = 100,
    max_span_width: int = 10,
) -> Sample:
    """Positive and negative entity and relation samples of one sentence (SpERT's ``create_train_sample``)."""
    entity_label = {t: i + 1 for i, t in enumerate(types.entities)}
    relation_index = {t: i for i, t in enumerate(types.relations)}

    gold_spans: list[tuple[int, int]] = []
    entities: list[tuple[int, int, int]] = []
    for start, end, etype in example.entities:
        if (start, end) not in gold_spans:  # a span annotated twice keeps its first type
            gold_spans.append((start, end))
            entities.append((start, end, entity_label[etype]))

    # Gold relations, merged per ordered pair of entity spans into one multi-hot target.
    pair_types: dict[tuple[int, int], list[int]] = {}
    for head, tail, rtype in example.relations:
        pair = (gold_spans.index(example.entities[head][:2]), gold_spans.index(example.entities[tail][:2]))
        pair_types.setdefault(pair, [0] * len(types.relations))[relation_index[rtype]] = 1
    relations = [(h, t, hot) for (h, t), hot in pair_types.items()]

    negative_spans = [s for s in enumerate_spans(len(example.tokens), max_span_width) if s not in gold_spans]
    for start, end in rng.sample(negative_spans, min(len(negative_spans), neg_entities)):
        entities.append((start, end, 0))

    strong = [
        (h, t) for h in range(len(gold_spans)) for t in range(len(gold_spans)) if h != t and (h, t) not in pair_types
    ]
    for h, t in rng.sample(strong, min(len(strong), neg_relations)):
        relations.append((h, t, [0] * len(types.relations)))
    return Sample(entities, relations)


def collate(examples: list[Example], samples: list[Sample], tokenizer: object, n_relation_types: int) -> SpertBatch:
    """One batch: dynamically padded subwords plus the flattened samples of its sentences."""
    words = tokenize_words(tokenizer, [ex.tokens for ex in examples])
    sent, start, end, label, head, tail, hot = [], [], [], [], [], [], []
    for b, smp in enumerate(samples):
        offset = len(sent)
        for s, e, lab in smp.entities:
            sent.append(b)
            start.append(s)
            end.append(e)
            label.append(lab)
        for h, t, targets in smp.relations:
            head.append(offset + h)
            tail.append(offset + t)
            hot.append(targets)
    long = torch.long
    return SpertBatch(
        words,
        torch.tensor(sent, dtype=long),
        torch.tensor(start, dtype=long),
        torch.tensor(end, dtype=long),
        torch.tensor(label, dtype=long),
        torch.tensor(head, dtype=long),
        torch.tensor(tail, dtype=long),
        torch.tensor(hot, dtype=torch.float).reshape(len(hot), n_relation_types),
    )
