"""The one document data model every stage reads and writes.

A ``Document`` holds normalized text split into sentences of words with character
offsets. Mentions address words as (sentence, start word, end word exclusive),
entities are clusters of mentions, relations link entities by their index in
``Document.entities``. Gold annotations (from DocRED-format input) live in
``Document.gold`` and are only read by evaluation and ``import-annotated``; models
see ``sentences`` alone.

Readers convert into this model, writers convert out of it: ``to_row``/``from_row``
are the single mapping to the Arrow schema used by every Parquet file.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_NONWORD = re.compile(r"[^\w]+")
_INITIALS = re.compile(r"\b\w(?: \w\b)+")  # "u s a" -> "usa"


def normalize_text(text: str) -> str:
    """Canonical form of a document's text: NFC, Unix newlines, no control or
    zero-width characters, runs of spaces collapsed. Offsets refer to this form."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", _CONTROL.sub("", text))
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def content_hash(normalized_text: str) -> str:
    """sha256 of the normalized text: decides whether a document changed."""
    return hashlib.sha256(normalized_text.encode("utf-8")).hexdigest()


def normalize_name(name: str) -> str:
    """Key that canonicalizes an entity name across documents ("The U.S." == "the US")."""
    key = unicodedata.normalize("NFKC", name).casefold()
    key = _NONWORD.sub(" ", key).strip()
    key = _INITIALS.sub(lambda m: m.group(0).replace(" ", ""), key)
    return key[4:] if key.startswith("the ") else key


@dataclass(slots=True)
class Word:
    text: str
    start: int  # character offset into Document.text
    end: int


@dataclass(slots=True)
class Sentence:
    words: list[Word]

    @property
    def tokens(self) -> list[str]:
        return [w.text for w in self.words]


@dataclass(slots=True)
class Mention:
    sent: int
    start: int  # first word
    end: int  # one past the last word
    text: str = ""
    type: str = ""
    score: float | None = None


@dataclass(slots=True)
class Entity:
    mentions: list[Mention]
    type: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if not self.type and self.mentions:
            self.type = Counter(m.type for m in self.mentions).most_common(1)[0][0]
        if not self.name and self.mentions:
            self.name = canonical_name([m.text for m in self.mentions])


def canonical_name(surface_forms: list[str]) -> str:
    """Most frequent surface form; ties go to the longer (more specific) one."""
    counts = Counter(s for s in surface_forms if s)
    if not counts:
        return ""
    return max(counts, key=lambda s: (counts[s], len(s)))


@dataclass(slots=True)
class Relation:
    head: int  # index into Document.entities
    tail: int
    type: str  # relation id, e.g. "P17" or "Work_For"
    confidence: float = 1.0
    evidence: list[int] = field(default_factory=list)  # sentence ids
    source: str = ""  # model that produced it ("spert", "twostep", "gold", ...)


@dataclass(slots=True)
class Annotations:
    """Entities and relations attached to a document: gold ones or predicted ones."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


@dataclass
class Document:
    doc_id: str  # stable: "<source>:<external id>"
    source: str
    external_id: str
    text: str  # normalized
    sentences: list[Sentence]
    title: str = ""
    date: str | None = None  # ISO date from the input, for backfill date ranges
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    predicted: Annotations = field(default_factory=Annotations)
    gold: Annotations | None = None

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = content_hash(self.text)

    def span_text(self, sent: int, start: int, end: int) -> str:
        words = self.sentences[sent].words
        return self.text[words[start].start : words[end - 1].end]

    def char_span(self, m: Mention) -> tuple[int, int]:
        words = self.sentences[m.sent].words
        return words[m.start].start, words[m.end - 1].end

    def to_row(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "external_id": self.external_id,
            "title": self.title,
            "date": self.date,
            "text": self.text,
            "content_hash": self.content_hash,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
            "sentences": [
                {
                    "words": [w.text for w in s.words],
                    "starts": [w.start for w in s.words],
                    "ends": [w.end for w in s.words],
                }
                for s in self.sentences
            ],
            "entities": _entities_to_rows(self.predicted.entities),
            "relations": _relations_to_rows(self.predicted.relations),
            "gold_entities": None if self.gold is None else _entities_to_rows(self.gold.entities),
            "gold_relations": None if self.gold is None else _relations_to_rows(self.gold.relations),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        sentences = [
            Sentence([Word(t, a, b) for t, a, b in zip(s["words"], s["starts"], s["ends"], strict=True)])
            for s in row["sentences"]
        ]
        gold = None
        if row.get("gold_entities") is not None:
            gold = Annotations(
                _entities_from_rows(row["gold_entities"]), _relations_from_rows(row.get("gold_relations") or [])
            )
        return cls(
            doc_id=row["doc_id"],
            source=row["source"],
            external_id=row["external_id"],
            title=row.get("title") or "",
            date=row.get("date"),
            text=row["text"],
            content_hash=row["content_hash"],
            meta=json.loads(row.get("meta") or "{}"),
            sentences=sentences,
            predicted=Annotations(
                _entities_from_rows(row.get("entities") or []), _relations_from_rows(row.get("relations") or [])
            ),
            gold=gold,
        )


def _entities_to_rows(entities: list[Entity]) -> list[dict[str, Any]]:
    return [
        {
            "type": e.type,
            "name": e.name,
            "mentions": [
                {"sent": m.sent, "start": m.start, "end": m.end, "text": m.text, "type": m.type, "score": m.score}
                for m in e.mentions
            ],
        }
        for e in entities
    ]


def _entities_from_rows(rows: list[dict[str, Any]]) -> list[Entity]:
    return [Entity([Mention(**m) for m in e["mentions"]], e["type"], e["name"]) for e in rows]


def _relations_to_rows(relations: list[Relation]) -> list[dict[str, Any]]:
    return [
        {
            "head": r.head,
            "tail": r.tail,
            "type": r.type,
            "confidence": r.confidence,
            "evidence": list(r.evidence),
            "source": r.source,
        }
        for r in relations
    ]


def _relations_from_rows(rows: list[dict[str, Any]]) -> list[Relation]:
    return [Relation(**{**r, "evidence": list(r["evidence"] or [])}) for r in rows]


_MENTION = pa.struct(
    [
        ("sent", pa.int32()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("text", pa.string()),
        ("type", pa.string()),
        ("score", pa.float64()),
    ]
)
_ENTITY = pa.struct([("type", pa.string()), ("name", pa.string()), ("mentions", pa.list_(_MENTION))])
_RELATION = pa.struct(
    [
        ("head", pa.int32()),
        ("tail", pa.int32()),
        ("type", pa.string()),
        ("confidence", pa.float64()),
        ("evidence", pa.list_(pa.int32())),
        ("source", pa.string()),
    ]
)
_SENTENCE = pa.struct(
    [("words", pa.list_(pa.string())), ("starts", pa.list_(pa.int32())), ("ends", pa.list_(pa.int32()))]
)

#: The Arrow schema of every document Parquet file (ingest shards and extraction results).
DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("external_id", pa.string()),
        ("title", pa.string()),
        ("date", pa.string()),
        ("text", pa.large_string()),
        ("content_hash", pa.string()),
        ("meta", pa.string()),
        ("sentences", pa.list_(_SENTENCE)),
        ("entities", pa.list_(_ENTITY)),
        ("relations", pa.list_(_RELATION)),
        ("gold_entities", pa.list_(_ENTITY)),
        ("gold_relations", pa.list_(_RELATION)),
    ]
)


def to_table(docs: list[Document]) -> pa.Table:
    return pa.Table.from_pylist([d.to_row() for d in docs], schema=DOCUMENT_SCHEMA)


def from_table(table: pa.Table) -> list[Document]:
    return [Document.from_row(r) for r in table.to_pylist()]
