"""SpERT's evaluation: entities, relations without and with NEC; micro/macro P/R/F1.

As in SpERT's ``Evaluator``:
- an entity is correct when its span and type match a gold entity;
- a relation *without NEC* is correct when both spans and the relation type match
  (entity types are ignored);
- a relation *with NEC* (strict) also needs both entities' types to match.
Symmetric relation types compare their two arguments unordered. Macro averages
run over the types that occur in the gold or the predictions, as SpERT's do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from re_pipeline.metrics import Scores, count_by_type, format_table, summarize
from re_pipeline.spert.data import Example, SentencePrediction, Types

Span = tuple[int, int, str]  # start, end, type ("" when types are ignored)


@dataclass(frozen=True)
class Evaluation:
    entities: Scores
    relations: Scores  # without NEC
    relations_nec: Scores  # with NEC (strict)

    def summary(self) -> dict[str, float]:
        """Flat percentages for logs, checkpoints and metrics.json."""
        out = {}
        for name, scores in (("ent", self.entities), ("rel", self.relations), ("rel_nec", self.relations_nec)):
            for avg in ("micro", "macro"):
                s = getattr(scores, avg)
                out |= {
                    f"{name}_{avg}_p": 100 * s.precision,
                    f"{name}_{avg}_r": 100 * s.recall,
                    f"{name}_{avg}_f1": 100 * s.f1,
                }
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "entities": self.entities.as_dict(),
            "relations": self.relations.as_dict(),
            "relations_nec": self.relations_nec.as_dict(),
        }

    def report(self) -> str:
        return "\n\n".join(
            [
                format_table("Entities", self.entities),
                format_table("Relations without NEC", self.relations),
                format_table("Relations with NEC (strict)", self.relations_nec),
            ]
        )


def _relation_tuples(
    sentence: int,
    entities: list[Span],
    relations: Iterable[tuple[int, int, str]],
    symmetric: set[str],
    with_types: bool,
) -> list[tuple[Any, ...]]:
    out = []
    for h, t, rtype in relations:
        head, tail = entities[h], entities[t]
        if not with_types:
            head, tail = (*head[:2], ""), (*tail[:2], "")
        if rtype in symmetric:
            head, tail = sorted((head, tail))
        out.append((sentence, head, tail, rtype))
    return out


def evaluate(gold: list[Example], predictions: list[SentencePrediction], types: Types) -> Evaluation:
    """Score per-sentence predictions against gold sentences (same order)."""
    if len(gold) != len(predictions):
        raise ValueError(f"{len(gold)} gold sentences but {len(predictions)} predictions")
    symmetric = set(types.symmetric)
    ents_gold, ents_pred, rels_gold, rels_pred, nec_gold, nec_pred = [], [], [], [], [], []
    for i, (ex, pred) in enumerate(zip(gold, predictions, strict=True)):
        g_ents = list(ex.entities)
        p_ents = [(e.start, e.end, e.type) for e in pred.entities]
        p_rels = [(r.head, r.tail, r.type) for r in pred.relations]
        ents_gold += [(i, *e) for e in g_ents]
        ents_pred += [(i, *e) for e in p_ents]
        rels_gold += _relation_tuples(i, g_ents, ex.relations, symmetric, with_types=False)
        rels_pred += _relation_tuples(i, p_ents, p_rels, symmetric, with_types=False)
        nec_gold += _relation_tuples(i, g_ents, ex.relations, symmetric, with_types=True)
        nec_pred += _relation_tuples(i, p_ents, p_rels, symmetric, with_types=True)
    last = itemgetter(-1)  # every tuple ends with its type
    return Evaluation(
        summarize(count_by_type(ents_gold, ents_pred, last), types.entities),
        summarize(count_by_type(rels_gold, rels_pred, last), types.relations),
        summarize(count_by_type(nec_gold, nec_pred, last), types.relations),
    )
