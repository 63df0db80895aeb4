from __future__ import annotations

import pytest

from re_pipeline.documents import (
    Annotations,
    Document,
    Entity,
    Mention,
    Relation,
    canonical_name,
    content_hash,
    from_table,
    normalize_name,
    normalize_text,
    to_table,
)
from re_pipeline.text import from_tokens, split


def test_normalize_text_is_idempotent_and_strips_noise() -> None:
    raw = "  Caf\u0065\u0301\u200b  au\tlait\r\n\r\nNext\x00 line  "
    norm = normalize_text(raw)
    assert norm == "Café au lait\n\nNext line"
    assert normalize_text(norm) == norm
    assert content_hash(norm) == content_hash(normalize_text(norm))
    assert content_hash(norm) != content_hash(norm + ".")


@pytest.mark.parametrize(
    ("a", "b"),
    [("The U.S.", "US"), ("U.S.A.", "usa"), ("New  York", "new york"), ("Müller", "MÜLLER")],
)
def test_normalize_name_folds_variants(a: str, b: str) -> None:
    assert normalize_name(a) == normalize_name(b)


def test_normalize_name_keeps_distinct_names_apart() -> None:
    assert normalize_name("Paris") != normalize_name("Paris Hilton")
    assert normalize_name("Theo") == "theo"  # only a leading "the " word is dropped


def test_canonical_name_prefers_frequent_then_longer() -> None:
    assert canonical_name(["Merkel", "Angela Merkel", "Merkel"]) == "Merkel"
    assert canonical_name(["Merkel", "Angela Merkel"]) == "Angela Merkel"
    assert canonical_name([]) == ""


def test_split_keeps_character_offsets() -> None:
    text = "Dr. Smith went to Washington D.C. on Jan. 5, 2020. He met the U.S. president."
    sents = split(text)
    assert len(sents) == 2
    for s in sents:
        for w in s.words:
            assert text[w.start : w.end] == w.text
    assert sents[1].tokens[0] == "He"


def test_from_tokens_round_trips_words() -> None:
    text, sents = from_tokens([["Berlin", "is", "big", "."], ["It", "grows", "."]])
    assert text == "Berlin is big . It grows ."
    assert [s.tokens for s in sents] == [["Berlin", "is", "big", "."], ["It", "grows", "."]]
    assert all(text[w.start : w.end] == w.text for s in sents for w in s.words)


def test_document_round_trips_through_arrow() -> None:
    text, sents = from_tokens([["Angela", "Merkel", "visited", "Paris", "."], ["Merkel", "left", "."]])
    ents = [
        Entity([Mention(0, 0, 2, "Angela Merkel", "PER", 0.9), Mention(1, 0, 1, "Merkel", "PER")]),
        Entity([Mention(0, 3, 4, "Paris", "LOC")]),
    ]
    doc = Document(
        "src:1",
        "src",
        "1",
        text,
        sents,
        title="t",
        date="2020-01-02",
        meta={"k": [1, 2]},
        predicted=Annotations(ents, [Relation(0, 1, "P27", 0.75, [0], "twostep")]),
        gold=Annotations(ents[:1], []),
    )
    (back,) = from_table(to_table([doc]))
    assert back == doc
    assert back.predicted.entities[0].type == "PER"
    assert back.predicted.entities[0].name == "Angela Merkel"
    assert back.span_text(0, 0, 2) == "Angela Merkel"
    assert back.char_span(ents[1].mentions[0]) == (text.index("Paris"), text.index("Paris") + 5)
