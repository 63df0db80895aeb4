"""The extraction batch job: ingested shards in, documents with entities and relations out.

Per chunk of documents: SpERT over every sentence (mentions and sentence-level
relations; sentences of all documents batched together by length), coreference
grouping of each document's mentions into entities, the DocRED two-step model
over all ordered pairs of those entities, then merging and deduplication.

Shards are processed as a stream; each result shard is written to a temporary
name and renamed when complete, so a rerun skips finished shards and a killed job
loses at most the shard in flight. A document whose extraction fails is
quarantined with the error, and the rest of its shard goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from re_pipeline.coref import Grouper
from re_pipeline.documents import Annotations, Document, Relation, to_table
from re_pipeline.ingest import Quarantined, read_shard
from re_pipeline.merge import MergeStats, deduplicate, repoint
from re_pipeline.registry import Registry

log = logging.getLogger(__name__)
STAGES = ("read", "spert", "coref", "docred", "merge", "write")


@dataclass
class ExtractStats:
    counts: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    merge: MergeStats = field(default_factory=MergeStats)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts,
            "self_relations_dropped": self.merge.self_relations,
            "duplicates_folded": self.merge.folded,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }

    def summary(self) -> str:
        c = self.counts
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return (
            f"{c['documents']} documents, {c['sentences']} sentences -> {c['mentions']} mentions, "
            f"{c['entities']} entities, {c['relations']} relations ({c['quarantined']} quarantined; "
            f"{c['shards_done']} shards written, {c['shards_skipped']} already done"
            + (f", {c['shards_stale']} redone as their input had changed" if c["shards_stale"] else "")
            + f"). Time: {stages}"
        )


def cooccurrence_evidence(doc: Document, r: Relation) -> list[int]:
    """Sentences that mention both entities: the two-step model predicts no evidence of its own."""
    ents = doc.predicted.entities
    head = {m.sent for m in ents[r.head].mentions}
    return sorted(head & {m.sent for m in ents[r.tail].mentions})


@dataclass
class Extractor:
    """The trained models of the job. ``docred`` None skips document-level relations."""

    spert: Any  # re_pipeline.spert.predict.SpertPredictor
    grouper: Grouper
    docred: Any | None = None  # re_pipeline.docred.predict.DocREPredictor
    versions: dict[str, str] = field(default_factory=dict)
    docs_per_batch: int = 32

    @classmethod
    def from_registry(
        cls,
        models_dir: str | Path,
        device: str = "auto",
        pinned: tuple[str, ...] = (),
        max_tokens: int | None = None,
        cpu_runtime: str = "torch",
        **options: Any,
    ) -> Extractor:
        """The registry's current models, or the ``pinned`` versions (see ``from_paths``)."""
        registry = Registry(Path(models_dir))
        versions = registry.versions(pinned)
        if "spert" not in versions:
            raise FileNotFoundError(
                f"no current SpERT model in {registry.path}; train one: re-pipeline train --profile quick"
            )
        root = registry.root
        return cls.from_paths(
            root / versions["spert"],
            root / versions["coref"] if "coref" in versions else None,
            root / versions["docred"] if "docred" in versions else None,
            device,
            max_tokens,
            cpu_runtime,
            versions,
            **options,
        )

    @classmethod
    def from_paths(
        cls,
        spert: Path,
        coref: Path | None = None,
        docred: Path | None = None,
        device: str = "auto",
        max_tokens: int | None = None,
        cpu_runtime: str = "torch",
        versions: dict[str, str] | None = None,
        **options: Any,
    ) -> Extractor:
        """Models from their directories (heavy imports happen here); no ``coref`` means the
        rule-based grouper, no ``docred`` no document-level relations. ``max_tokens`` caps the
        padded subwords of every encoder batch; ``cpu_runtime`` is where the encoders run when
        the device is a CPU (ignored on a GPU)."""
        from re_pipeline.docred.predict import DocREPredictor
        from re_pipeline.encoder import resolve_device
        from re_pipeline.spert.predict import SpertPredictor

        runtime = cpu_runtime if resolve_device(device).type == "cpu" else "torch"
        if versions is None:
            versions = {"spert": str(spert), "docred": str(docred or "-"), "coref": str(coref or "rules")}
        return cls(
            SpertPredictor.load(spert, device, max_tokens=max_tokens, runtime=runtime),
            Grouper.load(coref),
            DocREPredictor.load(docred, device, max_tokens, runtime) if docred else None,
            versions,
            **options,
        )

    def process(self, docs: Sequence[Document], stats: ExtractStats) -> None:
        """Fill ``predicted`` entities and relations of ``docs`` in place."""
        with stats.timed("spert"):
            self.spert.predict_documents(docs)
        sentence_relations: list[list[Relation]] = []
        with stats.timed("coref"):
            for doc in docs:
                singles = doc.predicted.entities
                grouped = self.grouper.group([e.mentions[0] for e in singles])
                sentence_relations.append(repoint(doc.predicted.relations, singles, grouped, stats.merge))
                doc.predicted = Annotations(grouped, [])
        if self.docred is not None:
            with stats.timed("docred"):
                todo = [d for d in docs if len(d.predicted.entities) > 1]
                if todo:
                    self.docred.predict(todo)
        with stats.timed("merge"):
            for doc, spert_relations in zip(docs, sentence_relations, strict=True):
                for r in doc.predicted.relations:
                    r.evidence = cooccurrence_evidence(doc, r)
                doc.predicted.relations = deduplicate(spert_relations + doc.predicted.relations, stats.merge)
        for doc in docs:
            stats.counts["documents"] += 1
            stats.counts["sentences"] += len(doc.sentences)
            stats.counts["entities"] += len(doc.predicted.entities)
            stats.counts["mentions"] += sum(len(e.mentions) for e in doc.predicted.entities)
            stats.counts["relations"] += len(doc.predicted.relations)

    def process_safely(self, docs: list[Document], stats: ExtractStats) -> tuple[list[Document], list[Quarantined]]:
        """``process``; if a batch fails, retry its documents one by one and quarantine the failing ones."""
        try:
            self.process(docs, stats)
            return docs, []
        except Exception as batch_error:  # isolate the bad document below
            log.warning("batch of %d documents failed (%s); retrying one by one", len(docs), batch_error)
        good, bad = [], []
        for doc in docs:
            try:
                self.process([doc], stats)
                good.append(doc)
            except Exception as e:  # one document must not stop the shard
                stats.counts["quarantined"] += 1
                bad.append(Quarantined(doc.doc_id, doc.text[:2000], f"extraction failed: {type(e).__name__}: {e}"))
        return good, bad


def quarantine_path(result: Path) -> Path:
    return result.with_suffix(".quarantine.jsonl")


#: Parquet metadata key of a result shard: the SHA-256 of the input shard it was extracted from.
INPUT_DIGEST = b"re_pipeline.input_sha256"


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def extracted_from(result: Path) -> str | None:
    """The input digest a result shard records (None for a result written without one)."""
    meta = pq.read_schema(result).metadata or {}
    return meta[INPUT_DIGEST].decode() if INPUT_DIGEST in meta else None


def extract_shards(
    shards: Sequence[str | Path], out_dir: str | Path, extractor: Extractor, *, progress: bool = True
) -> ExtractStats:
    """Extract every shard into ``out_dir`` (same file names).

    A result shard is skipped only when it was extracted from exactly this input file (its
    digest is in the result's metadata): a resumed job redoes nothing, while a result left
    from an earlier ingest whose shard of the same name now holds other documents is redone.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = ExtractStats()
    total = sum(pq.ParquetFile(s).metadata.num_rows for s in shards)
    with tqdm(total=total, desc="extract", unit="doc", disable=not progress) as bar:
        for shard in map(Path, shards):
            target = out / shard.name
            digest = file_digest(shard)
            if target.exists():
                if extracted_from(target) == digest:
                    stats.counts["shards_skipped"] += 1
                    bar.update(pq.ParquetFile(shard).metadata.num_rows)
                    continue
                log.warning("%s was extracted from another %s; extracting again", target, shard.name)
                stats.counts["shards_stale"] += 1
            with stats.timed("read"):
                docs = read_shard(shard)
            results, quarantined = [], []
            for i in range(0, len(docs), extractor.docs_per_batch):
                good, bad = extractor.process_safely(docs[i : i + extractor.docs_per_batch], stats)
                results.extend(good)
                quarantined.extend(bad)
                bar.update(len(good) + len(bad))
            with stats.timed("write"):
                write_results(target, results, quarantined, digest)
            stats.counts["shards_done"] += 1
    return stats


def write_results(target: Path, docs: list[Document], quarantined: list[Quarantined], input_digest: str) -> None:
    """Quarantine file first, then the shard by rename: a present shard is always complete."""
    qtmp = quarantine_path(target).with_suffix(".tmp")
    qtmp.write_text("".join(q.to_json() + "\n" for q in quarantined), encoding="utf-8")
    os.replace(qtmp, quarantine_path(target))
    tmp = target.with_suffix(".parquet.tmp")
    table = to_table(docs)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), INPUT_DIGEST: input_digest.encode()})
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)
