"""Ingest: corpus files in, normalized and sentence-split documents out, as Parquet shards.

Readers turn JSONL, ``.txt`` files, DocRED-format JSON and Parquet into raw records;
:func:`ingest` normalizes them, quarantines bad ones with a reason, splits raw text
into sentences and words, and streams documents into shards of ``shard_size``
documents. Memory is bounded by the batch and shard sizes, not the corpus size
(only an id -> hash map of the documents seen is kept, to catch conflicting
duplicates).
"""

from __future__ import annotations

import datetime
import glob
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from re_pipeline import text as text_mod
from re_pipeline.documents import (
    DOCUMENT_SCHEMA,
    Annotations,
    Document,
    Entity,
    Mention,
    Relation,
    content_hash,
    normalize_text,
)

log = logging.getLogger(__name__)
RECORD_PREVIEW = 2000  # characters of a bad record kept in its quarantine entry
FORMATS = ("jsonl", "txt", "docred", "parquet")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class RawRecord:
    """One input document before normalization: raw text, or DocRED tokens."""

    origin: str  # file:line / file#row, for quarantine and error messages
    external_id: str | None
    title: str = ""
    text: str | None = None
    tokens: list[list[str]] | None = None  # pre-tokenized sentences (DocRED)
    date: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    gold: Annotations | None = None


@dataclass
class Quarantined:
    origin: str
    record: str
    reason: str

    def to_json(self) -> str:
        return json.dumps({"source": self.origin, "record": self.record, "reason": self.reason}, ensure_ascii=False)


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)
    shards: list[str] = field(default_factory=list)
    quarantine_file: str = ""

    def summary(self) -> str:
        c = self.counts
        return (
            f"read {c['records']} records: {c['documents']} documents written to {len(self.shards)} shards, "
            f"{c['quarantined']} quarantined, {c['duplicates']} exact duplicates skipped, "
            f"{c['unchanged']} unchanged (already loaded) skipped, {c['out_of_range']} outside the date range"
        )


# --------------------------------------------------------------------------- readers


def _quarantine(origin: str, record: Any, reason: str) -> Quarantined:
    raw = record if isinstance(record, str) else repr(record)
    return Quarantined(origin, raw[:RECORD_PREVIEW], reason)


def _decode(data: bytes, origin: str) -> str | Quarantined:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        return _quarantine(origin, data.decode("utf-8", "replace"), f"invalid UTF-8 at byte {e.start}")


def _parse_json(data: bytes, origin: str) -> Any:
    """The parsed JSON value of ``data``, or a quarantine record saying why there is none."""
    decoded = _decode(data, origin)
    if isinstance(decoded, Quarantined):
        return decoded
    try:
        return json.loads(decoded)
    except json.JSONDecodeError as e:
        reason = f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"
        return _quarantine(origin, decoded[:RECORD_PREVIEW].rstrip("\n"), reason)


def _record_from_mapping(obj: Any, origin: str) -> RawRecord | Quarantined:
    """A JSONL object or Parquet row: ``id``, ``text`` (required), ``title``, ``date``, rest as meta."""
    if not isinstance(obj, dict):
        return _quarantine(origin, json.dumps(obj, ensure_ascii=False, default=str), "record is not a JSON object")
    text = obj.get("text")
    if not isinstance(text, str):
        reason = "missing text" if text is None else f"text is a {type(text).__name__}, not a string"
        return _quarantine(origin, json.dumps(obj, ensure_ascii=False, default=str), reason)
    ext = obj.get("id")
    meta = {k: v for k, v in obj.items() if k not in ("id", "text", "title", "date")}
    date = obj.get("date")
    return RawRecord(
        origin,
        None if ext is None else str(ext),
        title=str(obj.get("title") or ""),
        text=text,
        date=None if date is None else str(date)[:10],
        meta=json.loads(json.dumps(meta, default=str)),
    )


def read_jsonl(path: Path) -> Iterator[RawRecord | Quarantined]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            origin = f"{path}:{lineno}"
            if not line.strip():
                continue
            obj = _parse_json(line, origin)
            yield obj if isinstance(obj, Quarantined) else _record_from_mapping(obj, origin)


def read_text_file(path: Path, root: Path | None) -> Iterator[RawRecord | Quarantined]:
    """One document; its id is the path relative to ``root`` without the suffix (``root`` None: the file's name)."""
    decoded = _decode(path.read_bytes(), str(path))
    if isinstance(decoded, Quarantined):
        yield decoded
        return
    ext = str(path.relative_to(root).with_suffix("")) if root is not None else path.stem
    yield RawRecord(str(path), ext, title=path.stem, text=decoded)


def read_parquet(path: Path) -> Iterator[RawRecord | Quarantined]:
    pf = pq.ParquetFile(path)
    if "text" not in pf.schema_arrow.names:
        yield _quarantine(str(path), ", ".join(pf.schema_arrow.names), "Parquet file has no 'text' column")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            yield _record_from_mapping(obj, f"{path}#{row}")
            row += 1


def read_docred(path: Path) -> Iterator[RawRecord | Quarantined]:
    """DocRED-format JSON: a list of ``{title, sents, vertexSet, labels}``.

    Gold ``vertexSet``/``labels`` go to ``RawRecord.gold`` (evaluation and
    ``import-annotated`` only). A DocRED file is one JSON array, so it is parsed
    whole; such files are small (the 3,053-document DocRED dev set is 12 MB).
    """
    data = _parse_json(path.read_bytes(), str(path))
    if isinstance(data, Quarantined):
        yield data
        return
    if not isinstance(data, list):
        yield _quarantine(
            str(path), json.dumps(data)[:RECORD_PREVIEW], "DocRED file must hold a JSON list of documents"
        )
        return
    for i, doc in enumerate(data):
        yield docred_record(doc, f"{path}#{i}")


def docred_record(doc: Any, origin: str) -> RawRecord | Quarantined:
    """One DocRED document as a raw record with gold annotations, or the reason it is invalid."""
    raw = json.dumps(doc, ensure_ascii=False)
    sents = doc.get("sents") if isinstance(doc, dict) else None
    if not isinstance(sents, list) or not all(
        isinstance(s, list) and all(isinstance(t, str) for t in s) for s in sents
    ):
        return _quarantine(origin, raw, "DocRED document needs 'sents': a list of lists of strings")
    # Tokens are normalized one by one, so word indexes of the annotations stay valid.
    tokens = [[" ".join(normalize_text(t).split()) or "_" for t in s] for s in sents]
    try:
        gold = _docred_gold(doc, tokens)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        return _quarantine(origin, raw, f"invalid DocRED annotations: {e}")
    title = str(doc.get("title") or "")
    return RawRecord(origin, title or None, title=title, tokens=tokens, gold=gold)


def _docred_gold(doc: dict[str, Any], tokens: list[list[str]]) -> Annotations | None:
    if "vertexSet" not in doc:
        return None
    entities = []
    for cluster in doc["vertexSet"]:
        mentions = []
        for m in cluster:
            sent, (start, end) = int(m["sent_id"]), m["pos"]
            if not (0 <= start < end <= len(tokens[sent])):
                raise ValueError(f"mention {m.get('name')!r} has pos {m['pos']} outside sentence {sent}")
            # DocRED's own surface form when given (official Ign F1 compares these names)
            text = str(m.get("name") or " ".join(tokens[sent][start:end]))
            mentions.append(Mention(sent, start, end, text, str(m["type"])))
        if not mentions:
            raise ValueError("an entity of vertexSet has no mentions")
        entities.append(Entity(mentions))
    relations = []
    for lab in doc.get("labels", []):
        h, t = int(lab["h"]), int(lab["t"])
        if not (0 <= h < len(entities) and 0 <= t < len(entities)):
            raise ValueError(f"label {lab} points outside vertexSet")
        relations.append(Relation(h, t, str(lab["r"]), 1.0, sorted(set(lab.get("evidence", []))), "gold"))
    return Annotations(entities, relations)


def docred_document(record: dict[str, Any], source: str = "docred") -> Document:
    """One in-memory DocRED record as a Document with gold annotations; ValueError if it is invalid."""
    rec = docred_record(record, "record")
    if isinstance(rec, Quarantined):
        raise ValueError(rec.reason)
    text, sentences = text_mod.from_tokens(rec.tokens or [])
    return _document(rec, source, text, sentences)


def parse_slice(spec: str | None) -> slice:
    """``"0:400"`` -> ``slice(0, 400)``, ``"-100:"`` -> the last 100, None or ``":"`` -> everything."""
    if not spec:
        return slice(None)
    parts = [int(p) if p.strip() else None for p in spec.split(":")]
    if len(parts) != 2:
        raise ValueError(f"a slice looks like START:END, got {spec!r}")
    return slice(*parts)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def corpus_files(source: str | Path) -> list[Path]:
    """The files of a corpus: a file, a directory (recursively) or a glob pattern."""
    text = str(source)
    if _is_glob(text):
        paths = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
    else:
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"corpus not found: {p}")
        # Symlinks are kept even when dangling: they fail at read time and are quarantined.
        paths = sorted(x for x in p.rglob("*") if x.is_file() or x.is_symlink()) if p.is_dir() else [p]
    return [p for p in paths if _format_of(p) is not None]


def _format_of(path: Path) -> str | None:
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt", ".json": "docred", ".parquet": "parquet"}.get(
        path.suffix.lower()
    )


def id_root(source: str | Path) -> Path | None:
    """The folder a text file's id is relative to: the corpus folder, or a glob's folders before its first
    wildcard (so ``a/x.txt`` and ``b/x.txt`` keep distinct ids); None for a single file, whose id is its name."""
    if Path(source).is_dir():
        return Path(source)
    if not _is_glob(str(source)):
        return None
    fixed = []
    for part in Path(source).parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def read_corpus(source: str | Path) -> Iterator[RawRecord | Quarantined]:
    """Every record of every supported file under ``source``; unreadable files are quarantined."""
    root = id_root(source)
    for path in corpus_files(source):
        fmt = _format_of(path)
        try:
            if fmt == "jsonl":
                yield from read_jsonl(path)
            elif fmt == "txt":
                yield from read_text_file(path, root)
            elif fmt == "docred":
                yield from read_docred(path)
            else:
                yield from read_parquet(path)
        except (OSError, pa.ArrowException) as e:
            yield _quarantine(str(path), "", f"unreadable file: {e}")


# --------------------------------------------------------------------------- documents


def _to_documents(
    records: list[RawRecord], source: str, max_chars: int
) -> Iterator[tuple[RawRecord, Document] | Quarantined]:
    """Normalize, validate and sentence-split a batch of raw records."""
    pending: list[tuple[RawRecord, str]] = []
    for rec in records:
        if rec.tokens is not None:
            text, sentences = text_mod.from_tokens(rec.tokens)
            bad = _validate(rec, text, max_chars)
            yield bad or (rec, _document(rec, source, text, sentences))
            continue
        text = normalize_text(rec.text or "")
        bad = _validate(rec, text, max_chars)
        if bad:
            yield bad
        else:
            pending.append((rec, text))
    for (rec, text), sentences in zip(pending, text_mod.split_many(t for _, t in pending), strict=True):
        yield rec, _document(rec, source, text, sentences)


def is_iso_date(value: str) -> bool:
    """A valid calendar date written YYYY-MM-DD: the one form that compares correctly as text (date ranges)
    and that PostgreSQL reads the same (``fromisoformat`` alone also takes ``20240105`` and ``2024-W01-1``)."""
    if not _ISO_DATE.fullmatch(value):
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _validate(rec: RawRecord, text: str, max_chars: int) -> Quarantined | None:
    preview = rec.text if rec.text is not None else json.dumps(rec.tokens)[:RECORD_PREVIEW]
    if not text.strip():
        return _quarantine(rec.origin, preview or "", "empty text")
    if len(text) > max_chars:
        return _quarantine(
            rec.origin, preview or "", f"document has {len(text):,} characters, over the limit of {max_chars:,}"
        )
    if rec.date is not None and not is_iso_date(rec.date):
        return _quarantine(rec.origin, preview or "", f"date {rec.date!r} is not an ISO date (YYYY-MM-DD)")
    if rec.external_id and normalize_text(rec.external_id) != rec.external_id:
        return _quarantine(rec.origin, preview or "", f"id {rec.external_id!r} has control characters or padding")
    return None


def _document(rec: RawRecord, source: str, text: str, sentences: list) -> Document:
    digest = content_hash(text)
    ext = rec.external_id if rec.external_id else f"sha256-{digest[:16]}"
    return Document(
        doc_id=f"{source}:{ext}",
        source=source,
        external_id=ext,
        text=text,
        sentences=sentences,
        title=normalize_text(rec.title),  # titles come from the same untrusted records as texts
        date=rec.date,
        meta=rec.meta,
        content_hash=digest,
        gold=rec.gold,
    )


class ShardWriter:
    """Writes documents into numbered Parquet shards of ``shard_size`` documents.

    Each shard is written to a temporary name and renamed when complete, so a
    reader never sees a half-written shard.
    """

    def __init__(self, out_dir: Path, shard_size: int, prefix: str = "shard", row_group: int = 256):
        self.out_dir, self.shard_size, self.prefix, self.row_group = out_dir, shard_size, prefix, row_group
        self.paths: list[str] = []
        self._buffer: list[Document] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0

    def write(self, doc: Document) -> None:
        self._buffer.append(doc)
        self._in_shard += 1
        if len(self._buffer) >= self.row_group or self._in_shard >= self.shard_size:
            self._flush()
        if self._in_shard >= self.shard_size:
            self._close_shard()

    def _tmp(self) -> Path:
        return self.out_dir / f".{self.prefix}-{len(self.paths):05d}.parquet.tmp"

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp(), DOCUMENT_SCHEMA, compression="zstd")
        self._writer.write_table(pa.Table.from_pylist([d.to_row() for d in self._buffer], schema=DOCUMENT_SCHEMA))
        self._buffer.clear()

    def _close_shard(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            final = self.out_dir / f"{self.prefix}-{len(self.paths):05d}.parquet"
            os.replace(self._tmp(), final)
            self.paths.append(str(final))
        self._writer, self._in_shard = None, 0

    def close(self) -> list[str]:
        self._close_shard()
        return self.paths


def existing_shards(out_dir: Path, prefix: str = "shard") -> list[Path]:
    return sorted(out_dir.glob(f"{prefix}-*.parquet"))


def iter_documents(
    source: str | Path,
    *,
    source_name: str | None = None,
    max_chars: int = 1_000_000,
    batch_size: int = 256,
    counts: Counter[str] | None = None,
    date_range: tuple[str | None, str | None] = (None, None),
) -> Iterator[Document | Quarantined]:
    """Every document of a corpus, normalized and split, or a quarantine record saying why not.

    Streams in batches of ``batch_size`` records (spaCy works on a batch at a time).
    ``counts`` (optional) receives ``records``, ``duplicates`` (same id, same content:
    skipped) and ``out_of_range`` (outside ``date_range``, inclusive ISO dates; with a
    range, undated documents are out of it); a second record under a known id with
    different content is quarantined.
    """
    counts = counts if counts is not None else Counter()
    name = source_name or _default_source_name(source)
    seen: dict[str, tuple[str, str]] = {}  # doc_id -> (content hash, origin of its first record)
    for batch in _batches(read_corpus(source), batch_size):
        counts["records"] += len(batch)
        yield from (item for item in batch if isinstance(item, Quarantined))
        records = [item for item in batch if not isinstance(item, Quarantined) and _in_range(item, date_range)]
        counts["out_of_range"] += len(batch) - len(records) - sum(isinstance(i, Quarantined) for i in batch)
        for item in _to_documents(records, name, max_chars):
            if isinstance(item, Quarantined):
                yield item
                continue
            rec, doc = item
            prior = seen.get(doc.doc_id)
            if prior is None:
                seen[doc.doc_id] = (doc.content_hash, rec.origin)
                yield doc
            elif prior[0] == doc.content_hash:
                counts["duplicates"] += 1
            else:
                reason = f"duplicate id {doc.external_id!r} with different content (first seen at {prior[1]})"
                yield _quarantine(rec.origin, doc.text, reason)


def _in_range(rec: RawRecord, date_range: tuple[str | None, str | None]) -> bool:
    low, high = date_range
    if low is None and high is None:
        return True
    if rec.date is None:
        return False
    return (low is None or rec.date >= low) and (high is None or rec.date <= high)


def load_corpus(source: str | Path, **options: Any) -> tuple[list[Document], list[Quarantined]]:
    """A whole (small) corpus in memory: for evaluation and training sets, not for production runs."""
    docs: list[Document] = []
    bad: list[Quarantined] = []
    for item in iter_documents(source, **options):
        (bad if isinstance(item, Quarantined) else docs).append(item)
    return docs, bad


def load_valid_corpus(source: str | Path, **options: Any) -> list[Document]:
    """``load_corpus`` for training and evaluation sets: a dropped document would shift their slices and
    scores unnoticed, so any invalid one is an error."""
    docs, bad = load_corpus(source, **options)
    if bad:
        raise ValueError(f"{len(bad)} invalid documents in {source}, e.g. {bad[0].origin}: {bad[0].reason}")
    return docs


def ingest(
    source: str | Path,
    out_dir: str | Path,
    *,
    source_name: str | None = None,
    shard_size: int = 1000,
    max_chars: int = 1_000_000,
    batch_size: int = 256,
    overwrite: bool = False,
    loaded: Callable[[list[tuple[str, str]]], set[str]] | None = None,
    date_range: tuple[str | None, str | None] = (None, None),
    progress: bool = True,
) -> IngestReport:
    """Ingest a corpus into ``out_dir``: shards, ``quarantine.jsonl`` and ``ingest_report.json``.

    ``loaded`` (optional) receives (doc_id, content_hash) pairs of a batch and returns
    the doc ids already loaded with that exact content: those are skipped as unchanged
    (incremental runs). A known id with new content is written: an update.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old = existing_shards(out)
    if old and not overwrite:
        raise FileExistsError(f"{out} already holds {len(old)} shards; pass overwrite=True (--overwrite) to replace")
    for p in old:
        p.unlink()
    name = source_name or _default_source_name(source)
    report = IngestReport(quarantine_file=str(out / "quarantine.jsonl"))
    writer = ShardWriter(out, shard_size)
    stream = iter_documents(source, source_name=name, max_chars=max_chars, batch_size=batch_size,
                            counts=report.counts, date_range=date_range)  # fmt: skip
    with (
        open(report.quarantine_file, "w", encoding="utf-8") as qfile,
        tqdm(desc="ingest", unit="doc", disable=not progress) as bar,
    ):
        for batch in _batches(stream, batch_size):
            docs = []
            for item in batch:
                if isinstance(item, Quarantined):
                    report.counts["quarantined"] += 1
                    qfile.write(item.to_json() + "\n")
                else:
                    docs.append(item)
            if loaded is not None and docs:
                skip = loaded([(d.doc_id, d.content_hash) for d in docs])
                report.counts["unchanged"] += sum(d.doc_id in skip for d in docs)
                docs = [d for d in docs if d.doc_id not in skip]
            for d in docs:
                writer.write(d)
            report.counts["documents"] += len(docs)
            bar.update(len(batch))
    report.shards = writer.close()
    report.counts["shards"] = len(report.shards)
    summary = {"source": str(source), "source_name": name, "counts": report.counts, "shards": report.shards}
    (out / "ingest_report.json").write_text(json.dumps(summary, indent=2))
    return report


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _default_source_name(source: str | Path) -> str:
    p = Path(str(source).split("*")[0] or ".")
    return p.stem if p.is_file() else (p.resolve().name or "corpus")


def read_shard(path: str | Path) -> list[Document]:
    """All documents of one shard (shards are sized to fit in memory)."""
    from re_pipeline.documents import from_table

    return from_table(pq.read_table(path, schema=DOCUMENT_SCHEMA))


def read_quarantine(path: str | Path) -> list[Quarantined]:
    p = Path(path)
    if not p.exists():
        return []
    rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
    return [Quarantined(r["source"], r["record"], r["reason"]) for r in rows]
