"""Coreference metrics: MUC, B³, CEAF-e, their average (CoNLL F1), and exact-cluster F1.

Clusters are sets of mention keys (sentence, start, end). Counts are summed over
documents before dividing, as the CoNLL reference scorer does. Predicted mentions
missing from the gold set ("twinless") count against precision, so the same code
scores grouping from gold mentions and from predicted mentions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from re_pipeline.documents import Entity

Cluster = frozenset[tuple[int, int, int]]


def clusters_of(entities: Sequence[Entity]) -> list[Cluster]:
    return [frozenset((m.sent, m.start, m.end) for m in e.mentions) for e in entities]


def _f1(p_num: float, p_den: float, r_num: float, r_den: float) -> dict[str, float]:
    p = p_num / p_den if p_den else 0.0
    r = r_num / r_den if r_den else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * (2 * p * r / (p + r) if p + r else 0.0)}


def _muc_side(keys: list[Cluster], responses: list[Cluster]) -> tuple[float, float]:
    """Numerator and denominator of MUC recall of ``keys`` against ``responses`` (swap for precision)."""
    owner = {m: i for i, c in enumerate(responses) for m in c}
    num = den = 0.0
    for c in keys:
        parts = {owner.get(m, ("alone", m)) for m in c}  # a mention not in responses is its own partition
        num += len(c) - len(parts)
        den += len(c) - 1
    return num, den


def _b3_side(keys: list[Cluster], responses: list[Cluster]) -> tuple[float, float]:
    owner = {m: c for c in responses for m in c}
    num = den = 0.0
    for c in keys:
        for m in c:
            num += len(c & owner.get(m, frozenset())) / len(c)
            den += 1
    return num, den


def _ceafe(gold: list[Cluster], pred: list[Cluster]) -> float:
    """Total phi4 similarity of the best one-to-one alignment of entities."""
    if not gold or not pred:
        return 0.0
    sim = np.array([[2 * len(g & p) / (len(g) + len(p)) for p in pred] for g in gold])
    rows, cols = linear_sum_assignment(-sim)
    return float(sim[rows, cols].sum())


def coref_scores(gold_docs: Sequence[Sequence[Entity]], pred_docs: Sequence[Sequence[Entity]]) -> dict[str, object]:
    """All metrics over a corpus: ``gold_docs[i]`` and ``pred_docs[i]`` are one document's entities."""
    if len(gold_docs) != len(pred_docs):
        raise ValueError("gold and predicted documents differ in number")
    acc = np.zeros(12)
    for g_ents, p_ents in zip(gold_docs, pred_docs, strict=True):
        g, p = clusters_of(g_ents), clusters_of(p_ents)
        r_num, r_den = _muc_side(g, p)
        p_num, p_den = _muc_side(p, g)
        br_num, br_den = _b3_side(g, p)
        bp_num, bp_den = _b3_side(p, g)
        exact = len(set(g) & set(p))
        acc += [p_num, p_den, r_num, r_den, bp_num, bp_den, br_num, br_den, _ceafe(g, p), len(p), len(g), exact]
    muc = _f1(acc[0], acc[1], acc[2], acc[3])
    b3 = _f1(acc[4], acc[5], acc[6], acc[7])
    ceafe = _f1(acc[8], acc[9], acc[8], acc[10])
    exact = _f1(acc[11], acc[9], acc[11], acc[10])
    return {
        "muc": muc,
        "b3": b3,
        "ceafe": ceafe,
        "conll_f1": (muc["f1"] + b3["f1"] + ceafe["f1"]) / 3,
        "exact_cluster": exact,
    }
