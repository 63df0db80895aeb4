"""DocRED's official relation F1 and Ign F1, plus the two steps' own measures.

``official_scores`` follows DocRED's ``evaluation.py`` line for line in what it
counts: predictions are deduplicated on (title, h_idx, t_idx, r); a fact is correct
if it is in the gold labels; Ign F1 drops from both the correct count and the
prediction count the correct predictions whose (head mention name, tail mention
name, relation), for any pair of the two entities' mention names, appears among the
training facts, and keeps the ordinary recall. Predictions for titles absent from
the gold set are skipped, as the official script does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from re_pipeline.documents import Document
from re_pipeline.metrics import Counts
from re_pipeline.metrics import prf as _prf

Fact = tuple[str, str, str]  # (head mention name, tail mention name, relation)


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """P/R/F1 (fractions) from the three counts DocRED's script keeps."""
    s = _prf(Counts(tp=correct, fp=predicted - correct, fn=gold - correct))
    return {"precision": s.precision, "recall": s.recall, "f1": s.f1}


def train_facts(train_docs: Iterable[Document]) -> set[Fact]:
    """DocRED's ``fact_in_train_annotated``: mention-name pairs of every training fact."""
    facts: set[Fact] = set()
    for doc in train_docs:
        if doc.gold is None:
            continue
        ents = doc.gold.entities
        for rel in doc.gold.relations:
            for m1 in ents[rel.head].mentions:
                for m2 in ents[rel.tail].mentions:
                    facts.add((m1.text, m2.text, rel.type))
    return facts


def official_scores(
    predictions: Sequence[dict[str, Any]], gold_docs: Sequence[Document], in_train: set[Fact] | None = None
) -> dict[str, Any]:
    """P/R/F1 and Ign F1 of DocRED-format predictions ({"title","h_idx","t_idx","r"}),
    with a per-relation table (gold count, predicted, correct, P, R, F1)."""
    in_train = in_train or set()
    docs = {d.title: d for d in gold_docs}
    gold = {(d.title, r.head, r.tail, r.type) for d in gold_docs if d.gold for r in d.gold.relations}
    unique = {(p["title"], p["h_idx"], p["t_idx"], p["r"]) for p in predictions}  # all count, as officially
    correct = correct_in_train = 0
    per_rel: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # gold, predicted, correct
    for _, _, _, r in gold:
        per_rel[r][0] += 1
    for title, h, t, r in unique:
        per_rel[r][1] += 1
        if (title, h, t, r) not in gold:
            continue
        correct += 1
        per_rel[r][2] += 1
        ents = docs[title].gold.entities
        if any((m1.text, m2.text, r) in in_train for m1 in ents[h].mentions for m2 in ents[t].mentions):
            correct_in_train += 1
    scores = prf(correct, len(unique), len(gold))
    ign_p = (correct - correct_in_train) / (len(unique) - correct_in_train + 1e-5)
    recall = scores["recall"]
    scores["ign_f1"] = 2 * ign_p * recall / (ign_p + recall) if ign_p + recall else 0.0
    scores |= {"correct": correct, "predicted": len(unique), "gold": len(gold), "correct_in_train": correct_in_train}
    scores["per_relation"] = {
        r: {"gold": g, "predicted": p, "correct": c, **prf(c, p, g)} for r, (g, p, c) in per_rel.items()
    }
    return scores


def best_threshold(
    scores: torch.Tensor, correct: torch.Tensor, count: torch.Tensor, n_gold: int
) -> tuple[float, float]:
    """The score cut that maximizes F1 when candidates are kept in score order.

    Each candidate (a pair, or a (pair, relation)) carries how many facts it would
    predict (``count``) and how many of those are right (``correct``); cumulative
    sums over the sorted scores give F1 at every cut at once. Returns (threshold, F1);
    the threshold is midway to the next lower score so that it generalizes.
    """
    if scores.numel() == 0 or n_gold == 0:
        return 0.5, 0.0
    order = scores.argsort(descending=True)
    s, c, n = scores[order], correct[order].double().cumsum(0), count[order].double().cumsum(0)
    f1 = 2 * c / (n + n_gold)
    # A cut can only fall where the score drops: equal scores are kept or dropped together, as decoding does.
    drops = torch.ones_like(s, dtype=torch.bool)
    drops[:-1] = s[:-1] > s[1:]
    f1 = torch.where(drops, f1, torch.zeros_like(f1))
    best = int(f1.argmax())
    nxt = s[best + 1] if best + 1 < len(s) else s[best] - 1e-6
    return float((s[best] + nxt) / 2), float(f1[best])


def step2_accuracy(probs: Sequence[torch.Tensor], labels: Sequence[Sequence[set[int]]]) -> float:
    """Share of gold related pairs whose top-scored type is one of their gold types
    (the paper's step-2 accuracy, ~90% with BERT-base)."""
    hits = total = 0
    for p, gold in zip(probs, labels, strict=True):
        if len(gold):
            top = p.argmax(-1).tolist()
            hits += sum(t in g for t, g in zip(top, gold, strict=True))
            total += len(gold)
    return hits / total if total else 0.0
