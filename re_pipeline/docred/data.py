"""DocRED JSON <-> ``Document``, token-level features, and padded batches.

A document is tokenized once into one subword sequence (its sentences flattened);
each mention becomes a subword range and each entity a list of mention indexes.
Which entity pairs a batch scores is the caller's choice (all pairs, the 3:1
sample of step 1, or only the related pairs of step 2), so one collate function
serves every task.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from re_pipeline.documents import Annotations, Document
from re_pipeline.encoder import length_batches, tokenize_words
from re_pipeline.ingest import docred_document, parse_slice

#: Tasks and what their label columns mean: step 1 "related?", step 2 the relation
#: types, one-step N/A (column 0) followed by the relation types, shared (both steps
#: on one encoder) "related?" (column 0) followed by the relation types.
TASKS = ("step1", "step2", "onestep", "shared")

Pair = tuple[int, int]


def num_labels(task: str, num_relations: int) -> int:
    return {"step1": 1, "step2": num_relations, "onestep": num_relations + 1, "shared": num_relations + 1}[task]


def load_docred(path: str | Path, select: str | None = None) -> list[Document]:
    """DocRED-format JSON (``title``, ``sents``, ``vertexSet``, ``labels``) as Documents
    with ``gold`` filled; ``select`` is an optional ``START:END`` slice of the file."""
    records = json.loads(Path(path).read_text())[parse_slice(select)]
    return [docred_document(r) for r in records]


def document_to_docred(doc: Document, annotations: Annotations | None = None) -> dict[str, Any]:
    """The inverse of :func:`re_pipeline.ingest.docred_document` (gold annotations unless others are given)."""
    ann = annotations or doc.gold or doc.predicted
    return {
        "title": doc.title,
        "sents": [s.tokens for s in doc.sentences],
        "vertexSet": [
            [{"name": m.text, "sent_id": m.sent, "pos": [m.start, m.end], "type": m.type or e.type} for m in e.mentions]
            for e in ann.entities
        ],
        "labels": [{"h": r.head, "t": r.tail, "r": r.type, "evidence": list(r.evidence)} for r in ann.relations],
    }


@dataclass
class DocFeatures:
    """One document as the model sees it."""

    title: str
    input_ids: list[int]  # [CLS] subwords [SEP]
    mention_spans: list[tuple[int, int]]  # subword [start, end) of every mention
    entity_mentions: list[list[int]]  # mention indexes of every entity
    labels: dict[Pair, set[int]] = field(default_factory=dict)  # gold relation indexes per related pair
    entity_types: list[str] = field(default_factory=list)  # type label of every entity (PER, LOC, ...)

    @property
    def num_entities(self) -> int:
        return len(self.entity_mentions)

    def all_pairs(self) -> list[Pair]:
        n = self.num_entities
        return [(h, t) for h in range(n) for t in range(n) if h != t]

    def related_pairs(self) -> list[Pair]:
        return sorted(self.labels)


def build_features(
    tokenizer: Any,
    docs: Sequence[Document],
    relations: Sequence[str],
    entities: str = "gold",
) -> list[DocFeatures]:
    """Features of ``docs`` using their ``gold`` or ``predicted`` entities; labels
    come from the gold relations when there are any (unknown types are skipped)."""
    rel_index = {r: i for i, r in enumerate(relations)}
    features = []
    for doc in docs:
        words = [w.text for s in doc.sentences for w in s.words]
        batch = tokenize_words(tokenizer, [words])
        n_tokens = int(batch.attention_mask[0].sum())
        starts, ends = batch.word_start[0].tolist(), batch.word_end[0].tolist()
        offsets = [0]
        for s in doc.sentences:
            offsets.append(offsets[-1] + len(s.words))
        ann = doc.gold if entities == "gold" else doc.predicted
        if ann is None:
            raise ValueError(f"{doc.doc_id}: no gold annotations")
        spans, groups = [], []
        for ent in ann.entities:
            group = []
            for m in ent.mentions:
                first, last = offsets[m.sent] + m.start, offsets[m.sent] + m.end - 1
                group.append(len(spans))
                spans.append((starts[first], ends[last]))
            groups.append(group)
        labels: dict[Pair, set[int]] = {}
        if doc.gold is not None and entities == "gold":
            for rel in doc.gold.relations:
                if rel.type in rel_index and rel.head != rel.tail:
                    labels.setdefault((rel.head, rel.tail), set()).add(rel_index[rel.type])
        types = [ent.type for ent in ann.entities]
        features.append(DocFeatures(doc.title, batch.input_ids[0, :n_tokens].tolist(), spans, groups, labels, types))
    return features


@dataclass
class Batch:
    """Padded tensors of a few documents. Every padded slot has a False mask."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    mention_spans: torch.Tensor  # (B, M, 2) subword [start, end)
    entity_mentions: torch.Tensor  # (B, E, K) mention indexes
    entity_mention_mask: torch.Tensor  # (B, E, K) bool
    pairs: torch.Tensor  # (B, P, 2) head and tail entity indexes
    pair_mask: torch.Tensor  # (B, P) bool
    labels: torch.Tensor | None = None  # (B, P, C) float multi-hot
    entity_types: torch.Tensor | None = None  # (B, E) type ids, 0 = unknown or padding

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{k: (v.to(device) if v is not None else None) for k, v in vars(self).items()})


def pair_labels(feature: DocFeatures, pairs: Sequence[Pair], task: str, num_relations: int) -> torch.Tensor:
    """(P, C) multi-hot labels of ``pairs`` for ``task``."""
    out = torch.zeros((len(pairs), num_labels(task, num_relations)))
    for i, pair in enumerate(pairs):
        rels = feature.labels.get(pair, set())
        if task == "step1":
            out[i, 0] = float(bool(rels))
        elif task == "step2":
            out[i, list(rels)] = 1.0
        elif rels:
            out[i, [0, *(r + 1 for r in rels)] if task == "shared" else [r + 1 for r in rels]] = 1.0
        elif task == "onestep":
            out[i, 0] = 1.0  # column 0 is N/A
    return out


def collate(
    features: Sequence[DocFeatures],
    pairs: Sequence[Sequence[Pair]],
    task: str | None = None,
    num_relations: int = 0,
    pad_id: int = 0,
    type_ids: dict[str, int] | None = None,
) -> Batch:
    """Pad a few documents and the pairs to score in each; labels only if ``task`` is given,
    entity type ids only if ``type_ids`` (type -> id from 1; 0 stands for any other) is."""
    b = len(features)
    t = max(len(f.input_ids) for f in features)
    m = max([1, *(len(f.mention_spans) for f in features)])
    e = max([1, *(f.num_entities for f in features)])
    k = max([1, *(len(g) for f in features for g in f.entity_mentions)])
    p = max([1, *(len(ps) for ps in pairs)])
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    attention = torch.zeros((b, t), dtype=torch.long)
    spans = torch.zeros((b, m, 2), dtype=torch.long)
    ent_mentions = torch.zeros((b, e, k), dtype=torch.long)
    ent_mask = torch.zeros((b, e, k), dtype=torch.bool)
    pair_idx = torch.zeros((b, p, 2), dtype=torch.long)
    pair_mask = torch.zeros((b, p), dtype=torch.bool)
    labels = torch.zeros((b, p, num_labels(task, num_relations))) if task else None
    types = torch.zeros((b, e), dtype=torch.long) if type_ids is not None else None
    for i, (f, ps) in enumerate(zip(features, pairs, strict=True)):
        input_ids[i, : len(f.input_ids)] = torch.tensor(f.input_ids)
        attention[i, : len(f.input_ids)] = 1
        if f.mention_spans:
            spans[i, : len(f.mention_spans)] = torch.tensor(f.mention_spans)
        for j, group in enumerate(f.entity_mentions):
            ent_mentions[i, j, : len(group)] = torch.tensor(group, dtype=torch.long)
            ent_mask[i, j, : len(group)] = True
        if types is not None and f.entity_types:
            types[i, : len(f.entity_types)] = torch.tensor([type_ids.get(t, 0) for t in f.entity_types])
        if ps:
            pair_idx[i, : len(ps)] = torch.tensor(ps)
            pair_mask[i, : len(ps)] = True
            if labels is not None:
                labels[i, : len(ps)] = pair_labels(f, ps, task, num_relations)
    return Batch(input_ids, attention, spans, ent_mentions, ent_mask, pair_idx, pair_mask, labels, types)


def batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random | None = None, pool: int = 16
) -> list[list[int]]:
    """Index batches of similar lengths, so dynamic padding stays small.

    Inference (no ``rng``): sorted by length. Training: shuffled, sorted by length
    within pools of ``pool`` batches, then the batches shuffled, so batches are
    random yet little padded.
    """
    if rng is None:
        return length_batches(lengths, batch_size)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    size = batch_size * pool
    out = []
    for start in range(0, len(order), size):
        chunk = sorted(order[start : start + size], key=lambda i: lengths[i])
        out.extend(chunk[s : s + batch_size] for s in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out
