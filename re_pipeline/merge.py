"""Merge and deduplicate a document's relations.

SpERT relates mentions within a sentence; the coreference stage groups mentions
into entities; the two-step model relates entities across the document. Here the
mention-level relations are re-pointed at the grouped entities, every source's
duplicates fold into one relation per (head, relation, tail, source) with the
best confidence and the union of evidence sentences, and symmetric and inverse
relations are stated one way, as ``relation_types`` defines them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from re_pipeline.documents import Entity, Relation
from re_pipeline.relation_types import RelationType, relation_types

MentionKey = tuple[int, int, int]


@dataclass
class MergeStats:
    self_relations: int = 0  # both ends in one entity after grouping: dropped
    folded: int = 0  # duplicates merged into another relation


def _key(e: Entity) -> MentionKey:
    m = e.mentions[0]
    return (m.sent, m.start, m.end)


def repoint(
    relations: Iterable[Relation], mention_entities: Sequence[Entity], grouped: Sequence[Entity], stats: MergeStats
) -> list[Relation]:
    """Relations between mention-level (singleton) entities, re-pointed at the grouped entities."""
    owner = {(m.sent, m.start, m.end): i for i, e in enumerate(grouped) for m in e.mentions}
    out = []
    for r in relations:
        head, tail = owner[_key(mention_entities[r.head])], owner[_key(mention_entities[r.tail])]
        if head == tail:
            stats.self_relations += 1
            continue
        out.append(Relation(head, tail, r.type, r.confidence, list(r.evidence), r.source))
    return out


def canonical(r: Relation, types: dict[str, RelationType]) -> Relation:
    """The one way to state ``r``: inverse relations as their counterpart, symmetric ones head-first by index."""
    rtype = types.get(r.type)
    if rtype is not None and rtype.inverse_of:
        return Relation(r.tail, r.head, rtype.inverse_of, r.confidence, r.evidence, r.source)
    if rtype is not None and rtype.symmetric and r.head > r.tail:
        return Relation(r.tail, r.head, r.type, r.confidence, r.evidence, r.source)
    return r


def deduplicate(relations: Iterable[Relation], stats: MergeStats, fold_schema: bool = True) -> list[Relation]:
    """One relation per (head, type, tail, source): best confidence, union of evidence, stable order."""
    types = relation_types()
    best: dict[tuple[int, str, int, str], Relation] = {}
    for r in relations:
        r = canonical(r, types) if fold_schema else r
        key = (r.head, r.type, r.tail, r.source)
        seen = best.get(key)
        if seen is None:
            best[key] = Relation(r.head, r.tail, r.type, r.confidence, sorted(set(r.evidence)), r.source)
            continue
        stats.folded += 1
        seen.confidence = max(seen.confidence, r.confidence)
        seen.evidence = sorted(set(seen.evidence) | set(r.evidence))
    return sorted(best.values(), key=lambda r: (r.head, r.tail, r.type, r.source))
