"""End-to-end evaluation of the extraction job against DocRED-format gold annotations.

JEREX's end-to-end criteria (Eberts & Ulges 2021), each a P/R/F1 over a document set:

* mentions: the span (sentence, start, end) matches;
* clusters: the exact set of mention spans matches;
* entities: cluster and entity type match;
* relations (strict): head cluster, tail cluster and relation type match.

Plus a lenient knowledge-graph criterion: a predicted entity stands for a gold
entity when they share a mention span, and a predicted relation is correct when
it links entities standing for the gold head and tail with the gold relation type.

Gold relations are folded like predictions (inverse relations stated once, symmetric
ones head-first; ``merge.canonical``), so a fact stated both ways in DocRED counts once.
"""

from __future__ import annotations

from collections.abc import Sequence

from re_pipeline.documents import Document, Entity, Relation
from re_pipeline.merge import canonical
from re_pipeline.metrics import Counts, prf
from re_pipeline.relation_types import relation_types

Span = tuple[int, int, int]


def _cluster(e: Entity) -> frozenset[Span]:
    return frozenset((m.sent, m.start, m.end) for m in e.mentions)


def _count(gold: set, pred: set) -> Counts:
    return Counts(len(gold & pred), len(pred - gold), len(gold - pred))


def _folded(relations: Sequence[Relation]) -> set[tuple[int, int, str]]:
    types = relation_types()
    return {(c.head, c.tail, c.type) for c in (canonical(r, types) for r in relations)}


def _lenient(doc: Document) -> Counts:
    """Relations on entity nodes matched by a shared mention span."""
    assert doc.gold is not None
    owner: dict[Span, int] = {}
    for g, ent in enumerate(doc.gold.entities):
        for span in _cluster(ent):
            owner.setdefault(span, g)
    stands_for = [{owner[s] for s in _cluster(e) if s in owner} for e in doc.predicted.entities]
    gold = _folded(doc.gold.relations)
    predicted = _folded(doc.predicted.relations)
    hits = set()
    tp = 0
    for h, t, rel in predicted:
        matched = {(gh, gt, rel) for gh in stands_for[h] for gt in stands_for[t]} & gold
        tp += bool(matched)
        hits |= matched
    return Counts(tp, len(predicted) - tp, len(gold - hits))


def evaluate(docs: Sequence[Document]) -> dict[str, dict[str, float]]:
    """Scores (percent) per level over documents holding both ``gold`` and ``predicted``."""
    totals = {level: Counts() for level in ("mentions", "clusters", "entities", "relations", "relations_lenient")}
    for doc in docs:
        if doc.gold is None:
            raise ValueError(f"{doc.doc_id} has no gold annotations to evaluate against")
        gold, pred = doc.gold, doc.predicted
        totals["mentions"].add(
            _count({s for e in gold.entities for s in _cluster(e)}, {s for e in pred.entities for s in _cluster(e)})
        )
        totals["clusters"].add(_count({_cluster(e) for e in gold.entities}, {_cluster(e) for e in pred.entities}))
        totals["entities"].add(
            _count({(_cluster(e), e.type) for e in gold.entities}, {(_cluster(e), e.type) for e in pred.entities})
        )
        g_rel = {(_cluster(gold.entities[h]), _cluster(gold.entities[t]), r) for h, t, r in _folded(gold.relations)}
        p_rel = {(_cluster(pred.entities[h]), _cluster(pred.entities[t]), r) for h, t, r in _folded(pred.relations)}
        totals["relations"].add(_count(g_rel, p_rel))
        totals["relations_lenient"].add(_lenient(doc))
    return {level: prf(c).as_dict() for level, c in totals.items()}
