"""Threshold tuning on dev and the full evaluation report of a predictor.

Thresholds are tuned for the final fact F1, not for each step alone: for every
step-2 threshold on a small grid, step 1's threshold comes from one sort over all
dev pairs (``metrics.best_threshold``). The one-step baseline gets DocRED's
baseline rule: one global threshold over all (pair, type) scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from re_pipeline.docred.data import DocFeatures
from re_pipeline.docred.metrics import best_threshold, official_scores, prf, step2_accuracy
from re_pipeline.docred.predict import DocREPredictor, step_probs
from re_pipeline.documents import Document

# A softmax step 2 spreads one unit of probability over the types, so a second type needs
# the low end of the grid; 1.01 keeps the top type only.
STEP2_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def gold_matrix(feature: DocFeatures, num_relations: int) -> torch.Tensor:
    """(P, R) bool gold types of all ordered pairs, in ``all_pairs`` order."""
    pairs = feature.all_pairs()
    out = torch.zeros((len(pairs), num_relations), dtype=torch.bool)
    for i, pair in enumerate(pairs):
        out[i, list(feature.labels.get(pair, ()))] = True
    return out


def tune(predictor: DocREPredictor, features: Sequence[DocFeatures], probs: dict[str, list[torch.Tensor]]) -> float:
    """Set ``predictor.thresholds`` to the F1-best ones on these features; returns that F1
    (over the facts of the features' gold labels)."""
    gold = [gold_matrix(f, len(predictor.relations)) for f in features]
    g = torch.cat(gold) if gold else torch.zeros((0, len(predictor.relations)), dtype=torch.bool)
    n_gold = int(g.sum())
    if predictor.mode == "onestep":
        p = torch.cat(probs["onestep"])[:, 1:]
        t, f1 = best_threshold(p.flatten(), g.flatten().long(), torch.ones(p.numel()), n_gold)
        predictor.thresholds = {"onestep": t}
        return f1
    p1, p2 = (torch.cat(p) for p in step_probs(predictor.mode, probs))
    top = torch.nn.functional.one_hot(p2.argmax(-1), p2.shape[-1]).bool()
    best = (-1.0, 0.5, 0.5)
    for t2 in STEP2_GRID:
        chosen = (p2 >= t2) | top
        t1, f1 = best_threshold(p1, (chosen & g).sum(-1), chosen.sum(-1), n_gold)
        best = max(best, (f1, t1, t2))
    predictor.thresholds = {"step1": best[1], "step2": best[2]}
    return best[0]


def evaluate(
    predictor: DocREPredictor,
    docs: Sequence[Document],
    in_train: set[tuple[str, str, str]] | None = None,
    features: Sequence[DocFeatures] | None = None,
    tune_thresholds: bool = False,
    batch_size: int = 8,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics on gold-annotated ``docs`` (their gold entities) and the DocRED-format
    predictions. Two-step runs add step-1 P/R/F1 over pairs and step-2 accuracy."""
    features = features or predictor.features(docs, entities="gold")
    probs = predictor.probabilities(features, batch_size)
    if tune_thresholds:
        tune(predictor, features, probs)
    predictions = predictor.to_docred(features, predictor.decode(features, probs))
    scores = official_scores(predictions, docs, in_train)
    scores["thresholds"] = dict(predictor.thresholds)
    if predictor.mode != "onestep":
        p1, p2 = step_probs(predictor.mode, probs)
        related = [torch.tensor([pair in f.labels for pair in f.all_pairs()], dtype=torch.bool) for f in features]
        passed = [p >= predictor.thresholds["step1"] for p in p1]
        r, p = torch.cat(related), torch.cat(passed)
        scores["step1"] = prf(int((r & p).sum()), int(p.sum()), int(r.sum()))
        gold_sets = [[f.labels[pair] for pair in f.all_pairs() if pair in f.labels] for f in features]
        scores["step2_accuracy"] = step2_accuracy([p[rel] for p, rel in zip(p2, related, strict=True)], gold_sets)
    return scores, predictions
