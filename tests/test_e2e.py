from __future__ import annotations

import pytest

from re_pipeline.documents import Annotations, Document, Entity, Mention, Relation
from re_pipeline.e2e import evaluate
from re_pipeline.text import from_tokens


def _doc(gold: Annotations, pred: Annotations) -> Document:
    text, sents = from_tokens([["Angela", "Merkel", "leads", "Germany", "."], ["Merkel", "visited", "Paris", "."]])
    return Document("t:1", "t", "1", text, sents, predicted=pred, gold=gold)


MERKEL = [Mention(0, 0, 2, "Angela Merkel", "PER"), Mention(1, 0, 1, "Merkel", "PER")]
GERMANY = [Mention(0, 3, 4, "Germany", "LOC")]
PARIS = [Mention(1, 2, 3, "Paris", "LOC")]
GOLD = Annotations(
    [Entity(MERKEL), Entity(GERMANY), Entity(PARIS)],
    [Relation(0, 1, "P27", 1.0, [0], "gold"), Relation(1, 2, "P150", 1.0, [], "gold")],
)


def test_perfect_prediction_scores_100_everywhere() -> None:
    scores = evaluate([_doc(GOLD, GOLD)])
    assert all(s["f1"] == pytest.approx(100) for s in scores.values())


def test_each_level_counts_its_own_errors() -> None:
    pred = Annotations(
        [Entity(MERKEL[:1]), Entity(MERKEL[1:]), Entity(GERMANY, "ORG"), Entity(PARIS)],  # split cluster, wrong type
        [Relation(0, 2, "P27", 0.9, [0], "twostep"), Relation(3, 2, "P131", 0.8, [], "twostep")],
    )
    s = evaluate([_doc(GOLD, pred)])
    assert s["mentions"]["f1"] == pytest.approx(100)  # every span found
    assert s["clusters"]["precision"] == pytest.approx(50) and s["clusters"]["recall"] == pytest.approx(200 / 3)
    assert s["entities"]["precision"] == pytest.approx(25)  # only Paris has its cluster and type
    # strict: (Merkel, P27, Germany) misses (split cluster); P131 from Paris to Germany is the folded P150
    assert s["relations"]["precision"] == pytest.approx(50) and s["relations"]["recall"] == pytest.approx(50)
    # lenient: "Angela Merkel" shares a span with the gold entity, so both relations count
    assert s["relations_lenient"]["f1"] == pytest.approx(100)
