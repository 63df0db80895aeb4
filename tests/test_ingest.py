from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from re_pipeline.config import SAMPLE_CORPUS
from re_pipeline.ingest import existing_shards, ingest, load_valid_corpus, read_quarantine, read_shard


def _shard_docs(report) -> list:
    return [d for path in report.shards for d in read_shard(path)]


def _write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_records_are_quarantined_with_reasons(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = {"id": "a", "title": "A", "text": "Alice lives in Paris. She works for Acme."}
    _write_jsonl(
        corpus / "news.jsonl",
        [
            json.dumps(good).encode(),
            b'{"id": "bad-utf8", "text": "caf\xe9"}',
            b'{"id": "broken", "text": ',
            json.dumps({"id": "no-text", "title": "x"}).encode(),
            json.dumps({"id": "blank", "text": "   \n "}).encode(),
            json.dumps({"id": "huge", "text": "word " * 500}).encode(),
            json.dumps({"id": "a", "text": "Alice lives in Rome."}).encode(),  # same id, new content
            json.dumps(good).encode(),  # exact duplicate: skipped, counted
            json.dumps({"id": 7, "text": "Bob met Carol in Berlin.", "title": "Bob\u0000 \u200bmeets"}).encode(),
            json.dumps({"id": "nul\u0000id", "text": "Dave met Erin in Oslo."}).encode(),
            json.dumps({"id": "when", "text": "Frank met Gina in Rome.", "date": "last tuesday"}).encode(),
            json.dumps({"id": "week", "text": "Hal met Ida in Bonn.", "date": "2024-W01-1"}).encode(),
        ],
    )
    (corpus / "broken.parquet").write_bytes(b"this is not parquet")
    (corpus / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (corpus / "note.txt").write_text("Short note about Berlin.\n")

    report = ingest(corpus, tmp_path / "out", source_name="news", max_chars=1000, progress=False)

    reasons = {q.origin.rsplit("/", 1)[-1]: q.reason for q in read_quarantine(report.quarantine_file)}
    assert reasons["news.jsonl:2"].startswith("invalid UTF-8")
    assert reasons["news.jsonl:3"].startswith("malformed JSON")
    assert reasons["news.jsonl:4"] == "missing text"
    assert reasons["news.jsonl:5"] == "empty text"
    assert "over the limit of 1,000" in reasons["news.jsonl:6"]
    assert "duplicate id 'a' with different content" in reasons["news.jsonl:7"]
    assert "has control characters" in reasons["news.jsonl:10"]  # PostgreSQL text cannot hold NUL
    assert reasons["news.jsonl:11"] == "date 'last tuesd' is not an ISO date (YYYY-MM-DD)"
    assert reasons["news.jsonl:12"] == "date '2024-W01-1' is not an ISO date (YYYY-MM-DD)"  # valid ISO 8601 week
    assert reasons["broken.parquet"].startswith("unreadable file")
    assert reasons["dangling.txt"].startswith("unreadable file")
    assert len(reasons) == 11

    docs = _shard_docs(report)
    assert sorted(d.doc_id for d in docs) == ["news:7", "news:a", "news:note"]
    assert {d.doc_id: d.title for d in docs}["news:7"] == "Bob meets"  # control characters removed
    assert report.counts["records"] == 15
    assert report.counts["quarantined"] == 11 and report.counts["duplicates"] == 1
    # nothing lost silently: every record is written, quarantined or a counted duplicate
    assert report.counts["records"] == len(docs) + 11 + 1
    alice = next(d for d in docs if d.doc_id == "news:a")
    assert alice.text == good["text"] and alice.title == "A"
    assert [s.tokens[0] for s in alice.sentences] == ["Alice", "She"]
    assert all(alice.text[w.start : w.end] == w.text for s in alice.sentences for w in s.words)


def test_docred_input_keeps_gold_aside_and_word_indexes(tmp_path: Path) -> None:
    report = ingest(SAMPLE_CORPUS, tmp_path / "out", progress=False)
    raw = json.loads(SAMPLE_CORPUS.read_text())
    docs = _shard_docs(report)
    assert len(docs) == len(raw) == report.counts["documents"]
    for doc, src in zip(docs, raw, strict=True):
        assert doc.title == src["title"] and doc.doc_id == f"docred_sample:{src['title']}"
        # word indexes are preserved; a whitespace-only token (DocRED has "\xa0") becomes "_"
        assert [len(s.tokens) for s in doc.sentences] == [len(s) for s in src["sents"]]
        for sent, src_sent in zip(doc.sentences, src["sents"], strict=True):
            assert [t if t.strip() else "_" for t in src_sent] == sent.tokens
        assert doc.predicted.entities == [] and doc.gold is not None
        assert len(doc.gold.entities) == len(src["vertexSet"])
        assert len(doc.gold.relations) == len(src["labels"])
        for ent, cluster in zip(doc.gold.entities, src["vertexSet"], strict=True):
            for m, g in zip(ent.mentions, cluster, strict=True):
                words = src["sents"][g["sent_id"]][slice(*g["pos"])]
                assert doc.span_text(m.sent, m.start, m.end) == " ".join(w if w.strip() else "_" for w in words)


def test_invalid_docred_annotation_is_quarantined(tmp_path: Path) -> None:
    docs = json.loads(SAMPLE_CORPUS.read_text())[:2]
    docs[1]["vertexSet"][0][0]["pos"] = [0, 999]
    (tmp_path / "d.json").write_text(json.dumps(docs))
    report = ingest(tmp_path / "d.json", tmp_path / "out", progress=False)
    (q,) = read_quarantine(report.quarantine_file)
    assert "outside sentence" in q.reason and report.counts["documents"] == 1
    with pytest.raises(ValueError, match=r"1 invalid documents in .*outside sentence"):  # a training/eval set
        load_valid_corpus(tmp_path / "d.json")


def test_parquet_and_text_folder_inputs(tmp_path: Path) -> None:
    table = pa.table({"id": ["p1", "p2"], "text": ["One doc.", "Two docs here."], "date": ["2024-05-01", None]})
    pq.write_table(table, tmp_path / "in.parquet")
    report = ingest(tmp_path / "in.parquet", tmp_path / "out", source_name="pq", progress=False)
    docs = _shard_docs(report)
    assert [(d.doc_id, d.date) for d in docs] == [("pq:p1", "2024-05-01"), ("pq:p2", None)]

    folder = tmp_path / "txt" / "sub"
    folder.mkdir(parents=True)
    (folder / "x.txt").write_text("Hello world. Bye.")
    report = ingest(tmp_path / "txt", tmp_path / "out2", progress=False)
    (doc,) = _shard_docs(report)
    assert doc.doc_id == "txt:sub/x" and len(doc.sentences) == 2


def test_text_files_of_the_same_name_keep_distinct_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("a", "b"):
        (tmp_path / "c" / sub).mkdir(parents=True)
        (tmp_path / "c" / sub / "x.txt").write_text(f"Report from {sub}.")
    monkeypatch.chdir(tmp_path / "c")
    for i, source in enumerate([".", "*/x.txt", str(tmp_path / "c" / "*" / "x.txt")]):
        report = ingest(source, tmp_path / f"out{i}", source_name="t", progress=False)
        assert sorted(d.doc_id for d in _shard_docs(report)) == ["t:a/x", "t:b/x"], source
    (doc,) = _shard_docs(ingest("a/x.txt", tmp_path / "one", source_name="t", progress=False))
    assert doc.doc_id == "t:x"  # a single file: its name


def test_streaming_many_documents_into_shards(tmp_path: Path) -> None:
    n = 2500
    _write_jsonl(
        tmp_path / "big.jsonl",
        [json.dumps({"id": i, "text": f"Document {i} mentions Paris. It is short."}).encode() for i in range(n)],
    )
    report = ingest(tmp_path / "big.jsonl", tmp_path / "out", shard_size=1000, batch_size=128, progress=False)
    assert [pq.ParquetFile(p).metadata.num_rows for p in report.shards] == [1000, 1000, 500]
    ids = [d.external_id for d in _shard_docs(report)]
    assert ids == [str(i) for i in range(n)]
    assert not list((tmp_path / "out").glob("*.tmp"))  # shards are renamed into place when complete


def test_existing_shards_need_overwrite_and_incremental_skips_loaded(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "c.jsonl", [json.dumps({"id": i, "text": f"Text {i}."}).encode() for i in range(5)])
    first = ingest(src, tmp_path / "out", progress=False)
    with pytest.raises(FileExistsError):
        ingest(src, tmp_path / "out", progress=False)
    loaded = {(d.doc_id, d.content_hash) for d in _shard_docs(first)}

    def already(pairs: list[tuple[str, str]]) -> set[str]:
        return {d for d, h in pairs if (d, h) in loaded and d != "c:3"}

    _write_jsonl(tmp_path / "c.jsonl", [json.dumps({"id": i, "text": f"Text {i}."}).encode() for i in range(6)])
    again = ingest(src, tmp_path / "out", overwrite=True, loaded=already, progress=False)
    assert sorted(d.external_id for d in _shard_docs(again)) == ["3", "5"]
    assert again.counts["unchanged"] == 4
    assert len(existing_shards(tmp_path / "out")) == 1
