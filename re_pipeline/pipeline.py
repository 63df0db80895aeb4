"""The pipeline's stages as plain functions, shared by the CLI and the Airflow tasks.

Each stage reads and writes files or the database and returns its counts, so it
can be retried on its own; the stages that write to the database record a run in
``extraction_runs`` (a load, with the model versions that produced its shards).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from re_pipeline import ingest as ingest_mod
from re_pipeline.kg import loaded_filter, shard_paths
from re_pipeline.kg.loader import gold_as_predicted, load_documents, record_quarantine, relation_type_ids
from re_pipeline.kg.runs import run_record

SUMMARY_FILE = "extract_summary.json"


@contextmanager
def _run(engine: Engine, command: str, counts: Counter[str], run_id: int | None, **record: Any) -> Iterator[int]:
    """Work under the given run (an orchestrated run owns its record) or under a new one."""
    if run_id is not None:
        yield run_id
        return
    with run_record(engine, command, counts, **record) as new_id:
        yield new_id


def write_summary(out_dir: Path, stats: Any, versions: dict[str, str]) -> None:
    """The extraction job's counts and the model versions it used, beside its result shards."""
    (out_dir / SUMMARY_FILE).write_text(json.dumps({"versions": versions, **stats.as_dict()}, indent=2) + "\n")


def recorded_versions(shards: Iterable[Path]) -> dict[str, str]:
    """The model versions the extraction job wrote beside these result shards (``extract_summary.json``);
    a role that several summaries name differently lists both names."""
    names: dict[str, set[str]] = {}
    for folder in sorted({Path(s).parent for s in shards}):
        summary = folder / SUMMARY_FILE
        if summary.exists():
            for role, name in json.loads(summary.read_text()).get("versions", {}).items():
                names.setdefault(role, set()).add(name)
    return {role: ", ".join(sorted(n)) for role, n in names.items()}


def ingest_corpus(
    engine: Engine | None,
    source: str | Path,
    out_dir: str | Path,
    *,
    incremental: bool = False,
    progress: bool = True,
    run_id: int | None = None,
    **options: Any,
) -> ingest_mod.IngestReport:
    """Ingest to shards; with an engine, quarantined records also go to the ``quarantine`` table."""
    if engine is None:
        return ingest_mod.ingest(source, out_dir, progress=progress, **options)
    counts: Counter[str] = Counter()
    with _run(engine, "ingest", counts, run_id) as run_id:
        report = ingest_mod.ingest(
            source, out_dir, loaded=loaded_filter(engine) if incremental else None, progress=progress, **options
        )
        quarantined = ingest_mod.read_quarantine(report.quarantine_file)
        if quarantined:
            with engine.begin() as conn:
                record_quarantine(conn, run_id, quarantined)
        counts.update(report.counts)
    return report


def load_shards(
    engine: Engine,
    paths: Iterable[str | Path],
    *,
    command: str = "load",
    gold: bool = False,
    progress: bool = True,
    run_id: int | None = None,
) -> Counter[str]:
    """Load result shards, one transaction each. ``gold`` loads DocRED gold annotations instead."""
    from tqdm import tqdm

    files = shard_paths(paths)
    counts: Counter[str] = Counter()
    rel_types = relation_type_ids(engine)
    versions = {} if gold else recorded_versions(files)
    with _run(engine, command, counts, run_id, model_versions=versions) as run_id:
        for path in tqdm(files, desc="load", unit="shard", disable=not progress):
            docs = ingest_mod.read_shard(path)
            if gold:
                annotated = [gold_as_predicted(d) for d in docs if d.gold is not None]
                counts["skipped_without_annotations"] += len(docs) - len(annotated)
                docs = annotated
            report = load_documents(engine, docs, run_id, relation_types=rel_types)
            counts.update(report.counts)
            counts["shards"] += 1
            upstream = ingest_mod.read_quarantine(Path(path).with_suffix(".quarantine.jsonl"))
            if upstream:  # documents the extraction job quarantined
                with engine.begin() as conn:
                    record_quarantine(conn, run_id, upstream)
                counts["quarantined_upstream"] += len(upstream)
    return counts


def extract(
    shards: Iterable[str | Path], out_dir: str | Path, *, settings: Any = None, progress: bool = True, **options: Any
) -> Any:
    """Run the extraction job over ingested shards with the registry's current models."""
    from re_pipeline.config import Settings
    from re_pipeline.extract import Extractor, extract_shards

    settings = settings or Settings.load()
    extractor = Extractor.from_registry(
        settings.models_dir,
        settings.device,
        max_tokens=settings.max_tokens_per_batch,
        cpu_runtime=settings.cpu_runtime,
        **options,
    )
    stats = extract_shards(shard_paths(shards), out_dir, extractor, progress=progress)
    write_summary(Path(out_dir), stats, extractor.versions)
    return stats


def run_corpus(
    engine: Engine,
    corpus: str | Path,
    work_dir: str | Path,
    *,
    settings: Any = None,
    progress: bool = True,
    source_name: str | None = None,
) -> dict[str, Any]:
    """ingest (incremental) -> extract -> load, on the embedded defaults or the configured database."""
    from re_pipeline.config import Settings

    settings = settings or Settings.load()
    work = Path(work_dir)
    report = ingest_corpus(
        engine, corpus, work / "shards", incremental=True, overwrite=True, progress=progress,
        shard_size=settings.shard_size, max_chars=settings.max_doc_chars, source_name=source_name,
    )  # fmt: skip
    results = work / "results"
    for old in results.glob("*.parquet"):  # results of an earlier run belong to its own shards
        old.unlink()
    stats = extract(report.shards, results, settings=settings, progress=progress)
    counts = load_shards(engine, [results], command="run", progress=progress) if report.shards else Counter()
    return {
        "ingest": dict(report.counts),
        "extract": stats.as_dict(),
        "extract_summary": stats.summary(),
        "load": dict(counts),
    }


def import_annotated(
    engine: Engine, corpus: str | Path, *, work_dir: str | Path | None = None, progress: bool = True, **options: Any
) -> tuple[ingest_mod.IngestReport, Counter[str]]:
    """Ingest a DocRED-format corpus and load its gold entities and relations (source model ``gold``)."""
    with tempfile.TemporaryDirectory(prefix="re-import-") as tmp:
        out = Path(work_dir) if work_dir else Path(tmp)
        report = ingest_corpus(engine, corpus, out, overwrite=True, progress=progress, **options)
        counts = load_shards(engine, report.shards, command="import-annotated", gold=True, progress=progress)
    return report, counts
