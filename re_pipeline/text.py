"""Sentence and word splitting with spaCy's rule-based English tokenizer.

``spacy.blank("en")`` plus the ``sentencizer`` needs no model download. Words keep
their character offsets into the normalized text, so every later stage can map a
mention back to the exact characters it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from re_pipeline.documents import Sentence, Word


@lru_cache(maxsize=1)
def _nlp() -> Any:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10**9  # size limits are enforced by ingest, with a quarantine record
    return nlp


def _to_sentences(doc: Any) -> list[Sentence]:
    sentences = []
    for sent in doc.sents:
        words = [Word(t.text, t.idx, t.idx + len(t.text)) for t in sent if not t.is_space]
        if words:
            sentences.append(Sentence(words))
    return sentences


def split(text: str) -> list[Sentence]:
    """Split one normalized text into sentences of words with character offsets."""
    return _to_sentences(_nlp()(text))


def split_many(texts: Iterable[str], batch_size: int = 64) -> Iterator[list[Sentence]]:
    """Streaming variant of :func:`split` for many texts (spaCy's ``pipe``)."""
    for doc in _nlp().pipe(texts, batch_size=batch_size):
        yield _to_sentences(doc)


def from_tokens(sents: list[list[str]]) -> tuple[str, list[Sentence]]:
    """Text and sentences for pre-tokenized input (DocRED ``sents``).

    Words are joined by single spaces and sentences by a single space, so word
    indexes stay exactly those of the input annotations.
    """
    parts: list[str] = []
    sentences: list[Sentence] = []
    pos = 0
    for tokens in sents:
        words = []
        for tok in tokens:
            if parts:
                parts.append(" ")
                pos += 1
            parts.append(tok)
            words.append(Word(tok, pos, pos + len(tok)))
            pos += len(tok)
        sentences.append(Sentence(words))
    return "".join(parts), sentences
