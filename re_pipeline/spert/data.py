"""SpERT's data: sentences in its JSON format, type sets, predictions, and conversions.

Everything here is plain Python (no torch), so readers, converters and the
evaluator can be used without loading a model. Spans are word ranges
``[start, end)``; a relation's ``head``/``tail`` index the sentence's entity list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from re_pipeline.documents import Annotations, Document, Entity, Mention, Relation
from re_pipeline.ingest import parse_slice


@dataclass
class Example:
    """One sentence in SpERT's JSON format."""

    tokens: list[str]
    entities: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, type)
    relations: list[tuple[int, int, str]] = field(default_factory=list)  # (head, tail, type)
    orig_id: str = ""

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Example:
        return cls(
            tokens=list(obj["tokens"]),
            entities=[(e["start"], e["end"], e["type"]) for e in obj.get("entities", [])],
            relations=[(r["head"], r["tail"], r["type"]) for r in obj.get("relations", [])],
            orig_id=str(obj.get("orig_id", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "orig_id": self.orig_id,
            "tokens": self.tokens,
            "entities": [{"type": t, "start": s, "end": e} for s, e, t in self.entities],
            "relations": [{"type": t, "head": h, "tail": tl} for h, tl, t in self.relations],
        }


@dataclass
class PredictedEntity:
    start: int
    end: int
    type: str
    score: float


@dataclass
class PredictedRelation:
    head: int  # index into the sentence's predicted entities
    tail: int
    type: str
    score: float


@dataclass
class SentencePrediction:
    entities: list[PredictedEntity] = field(default_factory=list)
    relations: list[PredictedRelation] = field(default_factory=list)


@dataclass
class Types:
    """Entity and relation type names (without SpERT's implicit ``none``)."""

    entities: list[str]
    relations: list[str]
    symmetric: list[str] = field(default_factory=list)
    verbose: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Types:
        """Read SpERT's types.json."""
        obj = json.loads(Path(path).read_text())
        return cls(
            entities=list(obj["entities"]),
            relations=list(obj["relations"]),
            symmetric=[k for k, v in obj["relations"].items() if v.get("symmetric")],
            verbose={k: v.get("verbose", k) for part in ("entities", "relations") for k, v in obj[part].items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "entities": {t: {"short": t, "verbose": self.verbose.get(t, t)} for t in self.entities},
            "relations": {
                t: {"short": t, "verbose": self.verbose.get(t, t), "symmetric": t in self.symmetric}
                for t in self.relations
            },
        }

    @classmethod
    def from_examples(cls, examples: Iterable[Example], verbose: dict[str, str] | None = None) -> Types:
        ents: set[str] = set()
        rels: set[str] = set()
        for ex in examples:
            ents.update(t for _, _, t in ex.entities)
            rels.update(t for _, _, t in ex.relations)
        return cls(sorted(ents), sorted(rels), verbose=dict(verbose or {}))


def read_examples(path: str | Path) -> list[Example]:
    return [Example.from_json(o) for o in json.loads(Path(path).read_text())]


def write_examples(path: str | Path, examples: Iterable[Example]) -> None:
    Path(path).write_text(json.dumps([e.to_json() for e in examples], ensure_ascii=False))


# --- DocRED-format documents -> SpERT sentences -------------------------------------------------


def docred_to_examples(docs: Iterable[dict[str, Any]]) -> list[Example]:
    """One SpERT sentence per DocRED sentence (sentences without mentions included: they teach ``none``).

    Entities are the mentions in the sentence, with their DocRED type (PER, ORG,
    LOC, TIME, NUM, MISC); a span annotated twice keeps its first mention. A
    relation (h, r, t) links a mention of h and a mention of t in the same sentence
    when that sentence is among the fact's evidence. (Read through the ingest
    reader, so raw JSON and ingested documents give the same examples.)
    """
    from re_pipeline.ingest import docred_document

    return [ex for doc in docs for ex in document_examples(docred_document(doc), gold=True)]


# --- the package's Document model ---------------------------------------------------------------


def document_examples(doc: Document, gold: bool = False) -> list[Example]:
    """The document's sentences as SpERT examples; with ``gold``, its gold mentions and
    the sentence-level relations between them (see :func:`docred_to_examples`)."""
    examples = [Example(s.tokens, orig_id=f"{doc.doc_id}#{i}") for i, s in enumerate(doc.sentences)]
    if not gold or doc.gold is None:
        return examples
    index: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (entity, sent) -> [(sent, mention idx)]
    for e, entity in enumerate(doc.gold.entities):
        for m in entity.mentions:
            ex = examples[m.sent]
            span = (m.start, m.end)
            pos = next((i for i, (a, b, _) in enumerate(ex.entities) if (a, b) == span), None)
            if pos is None:
                pos = len(ex.entities)
                ex.entities.append((m.start, m.end, m.type or entity.type))
            index.setdefault((e, m.sent), []).append(pos)
    for r in doc.gold.relations:
        for s in r.evidence:
            for h in index.get((r.head, s), []):
                for t in index.get((r.tail, s), []):
                    if h != t and (h, t, r.type) not in examples[s].relations:
                        examples[s].relations.append((h, t, r.type))
    return examples


def apply_predictions(doc: Document, predictions: list[SentencePrediction], source: str = "spert") -> None:
    """Fill ``doc.predicted`` from per-sentence predictions.

    SpERT finds mentions, not coreference clusters: each predicted mention becomes
    a singleton entity (the coreference stage groups them later), and each
    sentence-level relation links the two singletons with the sentence as evidence.
    """
    entities: list[Entity] = []
    relations: list[Relation] = []
    for s, pred in enumerate(predictions):
        offset = len(entities)
        for e in pred.entities:
            text = doc.span_text(s, e.start, e.end)
            entities.append(Entity([Mention(s, e.start, e.end, text, e.type, e.score)], e.type, text))
        for r in pred.relations:
            relations.append(Relation(offset + r.head, offset + r.tail, r.type, r.score, [s], source))
    doc.predicted = Annotations(entities, relations)


def document_json(doc: Document) -> dict[str, Any]:
    """Predictions with character offsets, for the CLI and JSON consumers."""
    mentions = []
    for entity in doc.predicted.entities:
        m = entity.mentions[0]
        start, end = doc.char_span(m)
        mentions.append(
            {
                "sent": m.sent,
                "start": m.start,
                "end": m.end,
                "char_start": start,
                "char_end": end,
                "text": m.text,
                "type": m.type,
                "score": round(float(m.score or 0.0), 4),
            }
        )
    relations = [
        {
            "head": r.head,
            "tail": r.tail,
            "type": r.type,
            "score": round(r.confidence, 4),
            "head_text": mentions[r.head]["text"],
            "tail_text": mentions[r.tail]["text"],
            "sent": r.evidence[0],
        }
        for r in doc.predicted.relations
    ]
    return {"doc_id": doc.doc_id, "entities": mentions, "relations": relations}


def load_examples(path: str | Path, items: str | None = None) -> list[Example]:
    """SpERT JSON or DocRED-format JSON (detected by ``vertexSet``), converted to SpERT sentences.

    ``items`` ("START:END") selects documents for DocRED input and sentences for SpERT input.
    """
    data = json.loads(Path(path).read_text())[parse_slice(items)]
    if data and "vertexSet" in data[0]:
        return docred_to_examples(data)
    return [Example.from_json(o) for o in data]
