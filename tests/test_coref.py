from __future__ import annotations

import pytest
import torch

from re_pipeline.config import SAMPLE_CORPUS
from re_pipeline.coref import FEATURES, Grouper, PairScorer, ScorerConfig, gold_pairs, is_acronym, train_scorer
from re_pipeline.coref_metrics import coref_scores
from re_pipeline.documents import Entity, Mention
from re_pipeline.ingest import load_corpus


def _m(sent: int, start: int, text: str, type_: str) -> Mention:
    return Mention(sent, start, start + len(text.split()), text, type_)


def _names(entities: list[Entity]) -> list[list[str]]:
    return [[m.text for m in e.mentions] for e in entities]


def test_acronyms() -> None:
    assert is_acronym("NASA", "National Aeronautics and Space Administration")
    assert is_acronym("U.S.", "United States")
    assert not is_acronym("US", "Ukrainian Society of Nations")
    assert not is_acronym("Nasa", "National Aeronautics and Space Administration")  # not all capitals


def test_rules_group_names_acronyms_and_surnames() -> None:
    mentions = [
        _m(0, 0, "Angela Merkel", "PER"),
        _m(0, 5, "Christian Democratic Union", "ORG"),
        _m(1, 0, "Merkel", "PER"),
        _m(1, 3, "CDU", "ORG"),
        _m(2, 0, "Angela", "PER"),
        _m(2, 4, "Joachim Sauer", "PER"),
        _m(3, 1, "Merkel", "ORG"),  # a company called Merkel: a type conflict never merges
    ]
    entities = Grouper().group(mentions)
    assert sorted(_names(entities)) == sorted(
        [
            ["Angela Merkel", "Merkel", "Angela"],
            ["Christian Democratic Union", "CDU"],
            ["Joachim Sauer"],
            ["Merkel"],
        ]
    )
    person = next(e for e in entities if e.type == "PER" and len(e.mentions) == 3)
    assert person.name == "Angela Merkel"
    assert all(len({m.type for m in e.mentions}) == 1 for e in entities)


def test_a_document_with_no_or_one_mention() -> None:
    assert Grouper().group([]) == []
    (only,) = Grouper().group([_m(0, 0, "Paris", "LOC")])
    assert only.name == "Paris" and only.type == "LOC"


def test_metrics_on_textbook_cases() -> None:
    a, b, c, d = (_m(0, i, f"w{i}", "PER") for i in range(4))
    gold = [Entity([a, b, c, d])]
    pred = [Entity([a, b]), Entity([c, d])]
    s = coref_scores([gold], [pred])
    assert s["muc"]["recall"] == pytest.approx(200 / 3) and s["muc"]["precision"] == pytest.approx(100)
    gold3, pred3 = [Entity([a, b, c])], [Entity([a, b]), Entity([c])]
    s = coref_scores([gold3], [pred3])
    assert s["b3"]["recall"] == pytest.approx(500 / 9) and s["b3"]["precision"] == pytest.approx(100)
    assert s["exact_cluster"]["f1"] == 0.0
    perfect = coref_scores([gold3], [gold3])
    assert perfect["conll_f1"] == pytest.approx(100) and perfect["exact_cluster"]["f1"] == pytest.approx(100)
    # a predicted mention absent from gold (twinless) costs precision only
    extra = coref_scores([gold3], [[Entity([a, b, c]), Entity([d])]])
    assert extra["b3"]["recall"] == pytest.approx(100) and extra["b3"]["precision"] < 100


def test_scorer_learns_from_gold_clusters(tmp_path) -> None:
    docs, bad = load_corpus(SAMPLE_CORPUS)
    docs = docs[:12]
    assert not bad
    model, losses = train_scorer(docs[:9], docs[9:], ScorerConfig(embedding_dim=0), epochs=15)
    assert losses[-1] < 0.7 * losses[0]
    mentions, _ = gold_pairs(docs[0])
    grouper = Grouper(model, model.config.threshold)
    rules = coref_scores([d.gold.entities for d in docs[9:]], [Grouper().group(gold_pairs(d)[0]) for d in docs[9:]])
    learned = coref_scores([d.gold.entities for d in docs[9:]], [grouper.group(gold_pairs(d)[0]) for d in docs[9:]])
    assert learned["conll_f1"] > 50 and rules["conll_f1"] > 50
    model.save(tmp_path / "coref")
    again = Grouper.load(tmp_path / "coref")
    assert _names(again.group(mentions)) == _names(grouper.group(mentions))
    (tmp_path / "coref" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors missing"):  # not silently rules
        Grouper.load(tmp_path / "coref")


def test_scorer_with_embeddings_needs_them() -> None:
    scorer = PairScorer(ScorerConfig(embedding_dim=8))
    feats = torch.zeros((3, len(FEATURES)))
    assert scorer(feats, torch.randn(3, 8), torch.randn(3, 8)).shape == (3,)
    with pytest.raises(ValueError, match="embeddings"):
        scorer(feats, None, None)
