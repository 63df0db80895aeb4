"""The extraction job's plumbing with tiny random models: streaming, resume, quarantine, run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from tiny_models import tiny_registry

from re_pipeline.config import SAMPLE_CORPUS
from re_pipeline.extract import Extractor, ExtractStats, extract_shards, quarantine_path
from re_pipeline.ingest import ingest, read_quarantine, read_shard


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_registry(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def extractor(models: Path) -> Extractor:
    return Extractor.from_registry(models, "cpu", docs_per_batch=4)


@pytest.fixture()
def shards(tmp_path: Path) -> list[str]:
    docs = json.loads(SAMPLE_CORPUS.read_text())[:6]
    (tmp_path / "corpus.json").write_text(json.dumps(docs))
    return ingest(tmp_path / "corpus.json", tmp_path / "shards", shard_size=2, progress=False).shards


def test_extract_streams_shards_and_outputs_valid_documents(
    extractor: Extractor, shards: list[str], tmp_path: Path
) -> None:
    stats = extract_shards(shards, tmp_path / "out", extractor, progress=False)
    assert stats.counts["shards_done"] == 3 and stats.counts["documents"] == 6
    for shard in shards:
        inputs, outputs = read_shard(shard), read_shard(tmp_path / "out" / Path(shard).name)
        assert [d.doc_id for d in outputs] == [d.doc_id for d in inputs]
        for doc in outputs:
            assert doc.gold is not None  # carried along for evaluation, never used by the models
            n = len(doc.predicted.entities)
            assert all(0 <= r.head < n and 0 <= r.tail < n and r.head != r.tail for r in doc.predicted.relations)
            assert all(0.0 <= r.confidence <= 1.0 for r in doc.predicted.relations)
            for e in doc.predicted.entities:
                assert {m.type for m in e.mentions} == {e.type}
                assert all(doc.span_text(m.sent, m.start, m.end) == m.text for m in e.mentions)
    assert extractor.versions == {"spert": "spert-tiny", "docred": "docred-tiny"}
    again = extract_shards(shards, tmp_path / "out", extractor, progress=False)
    assert again.counts["shards_skipped"] == 3 and again.counts["documents"] == 0


def test_a_result_left_from_another_ingest_is_extracted_again(extractor: Extractor, tmp_path: Path) -> None:
    docs = json.loads(SAMPLE_CORPUS.read_text())
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(docs[:2]))
    first = ingest(corpus, tmp_path / "shards", shard_size=2, progress=False).shards
    extract_shards(first, tmp_path / "out", extractor, progress=False)
    corpus.write_text(json.dumps(docs[2:4]))  # same shard name, other documents
    second = ingest(corpus, tmp_path / "shards", shard_size=2, progress=False, overwrite=True).shards
    assert [Path(s).name for s in second] == [Path(s).name for s in first]
    stats = extract_shards(second, tmp_path / "out", extractor, progress=False)
    assert stats.counts["shards_stale"] == 1 and stats.counts["shards_done"] == 1
    assert [d.doc_id for d in read_shard(tmp_path / "out" / Path(second[0]).name)] == [
        d.doc_id for d in read_shard(second[0])
    ]


def test_a_killed_job_resumes_without_loss_or_duplicates(
    extractor: Extractor, shards: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Extractor.process
    calls = {"n": 0}

    def dies_in_second_shard(self: Extractor, docs: list, stats: ExtractStats) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process is killed: nothing catches this
        real(self, docs, stats)

    monkeypatch.setattr(Extractor, "process", dies_in_second_shard)
    with pytest.raises(KeyboardInterrupt):
        extract_shards(shards, tmp_path / "out", extractor, progress=False)
    assert [p.name for p in sorted((tmp_path / "out").glob("*.parquet"))] == [Path(shards[0]).name]
    monkeypatch.setattr(Extractor, "process", real)
    stats = extract_shards(shards, tmp_path / "out", extractor, progress=False)
    assert stats.counts["shards_skipped"] == 1 and stats.counts["shards_done"] == 2
    out_ids = [d.doc_id for p in sorted((tmp_path / "out").glob("*.parquet")) for d in read_shard(p)]
    assert out_ids == [d.doc_id for s in shards for d in read_shard(s)]
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_a_failing_document_is_quarantined_and_the_shard_goes_on(
    extractor: Extractor, shards: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: sa.engine.Engine
) -> None:
    bad_id = read_shard(shards[0])[1].doc_id
    real = extractor.spert.predict_documents

    def fails_on_one(docs: list) -> None:
        if any(d.doc_id == bad_id for d in docs):
            raise ValueError("corrupt mentions")
        real(docs)

    monkeypatch.setattr(extractor.spert, "predict_documents", fails_on_one)
    stats = extract_shards(shards[:1], tmp_path / "out", extractor, progress=False)
    out = read_shard(tmp_path / "out" / Path(shards[0]).name)
    (q,) = read_quarantine(quarantine_path(tmp_path / "out" / Path(shards[0]).name))
    assert q.origin == bad_id and "corrupt mentions" in q.reason
    assert [d.doc_id for d in out] == [d.doc_id for d in read_shard(shards[0]) if d.doc_id != bad_id]
    assert stats.counts["quarantined"] == 1

    from re_pipeline.kg.runs import start_run
    from re_pipeline.pipeline import load_shards

    run_id = start_run(engine, "test")
    for _ in range(2):  # a load task and its retry, under one run
        load_shards(engine, [tmp_path / "out"], progress=False, run_id=run_id)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT source, reason FROM quarantine WHERE run_id = :r"), {"r": run_id}).all()
    assert [(r.source, "corrupt mentions" in r.reason) for r in rows] == [(bad_id, True)]


def test_documents_with_no_or_one_entity(extractor: Extractor) -> None:
    from re_pipeline.documents import Document
    from re_pipeline.text import split

    docs = [Document(f"t:{i}", "t", str(i), text, split(text)) for i, text in enumerate(["Hi.", "Yes !"])]
    stats = ExtractStats()
    extractor.process(docs, stats)
    for doc in docs:
        assert len(doc.predicted.entities) > 1 or doc.predicted.relations == []


def test_run_loads_three_documents_into_postgres(
    models: Path, engine: sa.engine.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from re_pipeline.cli import main

    (tmp_path / "three.json").write_text(json.dumps(json.loads(SAMPLE_CORPUS.read_text())[:3]))
    monkeypatch.setenv("RE_PIPELINE_MODELS_DIR", str(models))
    assert (
        main(["--database-url", database_url, "--home", str(tmp_path / "home"), "run", str(tmp_path / "three.json")])
        == 0
    )
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM documents")).scalar_one() == 3
        assert conn.execute(sa.text("SELECT count(*) FROM doc_entities")).scalar_one() > 0
        run = conn.execute(
            sa.text("SELECT command, status, model_versions FROM extraction_runs WHERE command = 'run'")
        ).one()
    assert run.status == "success"
    assert run.model_versions == {"spert": "spert-tiny", "docred": "docred-tiny"}  # what produced the shards


def test_the_onnx_cpu_runtime_extracts_what_torch_does(models: Path, extractor: Extractor, shards: list[str]) -> None:
    from re_pipeline.onnx_encoder import OnnxEncoder

    onnx = Extractor.from_registry(models, "cpu", cpu_runtime="onnx", docs_per_batch=4)
    encoders = [onnx.spert.model.encoder, *(m.encoder for m in onnx.docred.models.values())]
    assert all(isinstance(e, OnnxEncoder) for e in encoders)
    assert not isinstance(extractor.spert.model.encoder, OnnxEncoder)
    runs = []
    for ex in (extractor, onnx):
        docs = read_shard(shards[0]) + read_shard(shards[1])
        ex.process(docs, ExtractStats())
        runs.append(docs)
    for torch_doc, onnx_doc in zip(*runs, strict=True):
        assert [(e.type, [(m.sent, m.start, m.end) for m in e.mentions]) for e in onnx_doc.predicted.entities] == [
            (e.type, [(m.sent, m.start, m.end) for m in e.mentions]) for e in torch_doc.predicted.entities
        ]
        got, expected = onnx_doc.predicted.relations, torch_doc.predicted.relations
        assert [(r.head, r.tail, r.type) for r in got] == [(r.head, r.tail, r.type) for r in expected]
        assert [r.confidence for r in got] == pytest.approx([r.confidence for r in expected], abs=1e-4)
    assert any(d.predicted.relations for d in runs[0])
