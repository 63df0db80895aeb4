from __future__ import annotations

from re_pipeline.documents import Entity, Mention, Relation
from re_pipeline.merge import MergeStats, deduplicate, repoint


def _single(sent: int, start: int, text: str, type_: str = "PER") -> Entity:
    return Entity([Mention(sent, start, start + 1, text, type_)])


def test_repoint_maps_mentions_to_groups_and_drops_self_relations() -> None:
    singles = [_single(0, 0, "Merkel"), _single(0, 3, "Germany", "LOC"), _single(1, 0, "Merkel"), _single(1, 2, "she")]
    grouped = [Entity(singles[0].mentions + singles[2].mentions + singles[3].mentions), singles[1]]
    stats = MergeStats()
    rels = repoint(
        [Relation(0, 1, "P27", 0.9, [0], "spert"), Relation(2, 0, "P26", 0.5, [1], "spert")], singles, grouped, stats
    )
    assert [(r.head, r.tail, r.type) for r in rels] == [(0, 1, "P27")]
    assert stats.self_relations == 1


def test_deduplicate_keeps_best_confidence_and_union_of_evidence_per_source() -> None:
    stats = MergeStats()
    rels = deduplicate(
        [
            Relation(0, 1, "P27", 0.6, [0], "spert"),
            Relation(0, 1, "P27", 0.8, [2], "spert"),
            Relation(0, 1, "P27", 0.7, [1, 0], "twostep"),
        ],
        stats,
    )
    assert [(r.source, r.confidence, r.evidence) for r in rels] == [("spert", 0.8, [0, 2]), ("twostep", 0.7, [0, 1])]
    assert stats.folded == 1


def test_inverse_and_symmetric_relations_fold_into_one_statement() -> None:
    stats = MergeStats()
    rels = deduplicate(
        [
            Relation(2, 0, "P150", 0.9, [0], "twostep"),  # contains admin. entity = inverse of P131
            Relation(0, 2, "P131", 0.7, [1], "twostep"),
            Relation(3, 1, "P26", 0.6, [], "twostep"),  # spouse: symmetric
            Relation(1, 3, "P26", 0.5, [2], "twostep"),
            Relation(3, 1, "P40", 0.5, [], "twostep"),  # child: neither, left alone
        ],
        stats,
    )
    assert [(r.head, r.type, r.tail, r.confidence, r.evidence) for r in rels] == [
        (0, "P131", 2, 0.9, [0, 1]),
        (1, "P26", 3, 0.6, [2]),
        (3, "P40", 1, 0.5, []),
    ]
    assert stats.folded == 2
    unfolded = deduplicate([Relation(2, 0, "P150", 0.9, [0], "twostep")], MergeStats(), fold_schema=False)
    assert unfolded[0].type == "P150"
