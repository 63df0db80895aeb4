"""The knowledge-graph store on a real PostgreSQL: schema, loader, queries."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import dump_tables

from re_pipeline.config import SAMPLE_CORPUS
from re_pipeline.documents import Annotations, Document, Entity, Mention, Relation, normalize_name
from re_pipeline.kg import loader, queries, schema
from re_pipeline.pipeline import import_annotated
from re_pipeline.text import from_tokens


def _doc(
    doc_id: str, relations: list[tuple[int, int, str, float]], names=("Angela Merkel", "Germany", "Paris")
) -> Document:
    text, sents = from_tokens([["Angela", "Merkel", "leads", "Germany", "."], ["She", "visited", "Paris", "."]])
    ents = [
        Entity([Mention(0, 0, 2, names[0], "PER", 0.9), Mention(1, 0, 1, "She", "PER", 0.6)], "PER", names[0]),
        Entity([Mention(0, 3, 4, names[1], "LOC", 0.8)], "LOC", names[1]),
        Entity([Mention(1, 2, 3, names[2], "LOC", 0.7)], "LOC", names[2]),
    ]
    rels = [Relation(h, t, r, c, [0], "twostep") for h, t, r, c in relations]
    return Document(doc_id, "t", doc_id, text, sents, title=doc_id, predicted=Annotations(ents, rels))


def _scalar(engine: sa.engine.Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def _aggregates_match_evidence(engine: sa.engine.Engine) -> bool:
    sql = """
        SELECT count(*) FROM facts f FULL JOIN (
            SELECT fact_id, count(*) AS support, max(c) AS max_c, avg(c) AS mean_c FROM (
                SELECT fact_id, doc_id, max(confidence) AS c FROM fact_evidence GROUP BY 1, 2) d GROUP BY 1) a
        USING (fact_id)
        WHERE f.support IS DISTINCT FROM a.support OR f.max_confidence IS DISTINCT FROM a.max_c
           OR abs(f.mean_confidence - a.mean_c) > 1e-6 OR a.fact_id IS NULL OR f.fact_id IS NULL"""
    return _scalar(engine, sql) == 0


def test_a_nodes_name_does_not_depend_on_load_order(engine: sa.engine.Engine) -> None:
    names = []
    for order in (["United States", "The United States"], ["The United States", "United States"]):
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE fact_evidence, facts, mentions, doc_entities, entities, documents CASCADE")
        for i, name in enumerate(order):  # one shard each, as two loads
            loader.load_documents(engine, [_doc(f"d{i}", [], names=("Angela Merkel", name, "Paris"))], None)
        names.append(_scalar(engine, "SELECT canonical_name FROM entities WHERE norm_key = 'united states'"))
    assert names == ["The United States", "The United States"]  # the smallest, whichever loaded first


def test_schema_applies_once_and_twice(migrated_engine: sa.engine.Engine) -> None:
    assert schema.apply(migrated_engine) == []  # already applied by the fixture
    states = schema.status(migrated_engine)
    assert [s.migration.version for s in states] == ["001", "002"]
    assert all(s.applied_at and s.checksum_ok for s in states)
    assert _scalar(migrated_engine, "SELECT count(*) FROM relation_types WHERE schema_name = 'wikidata'") == 96
    assert _scalar(migrated_engine, "SELECT count(*) FROM relation_types WHERE schema_name = 'conll04'") == 5
    assert _scalar(migrated_engine, "SELECT inverse_of FROM relation_types WHERE relation_id = 'P150'") == "P131"
    with migrated_engine.begin() as conn:  # the types are rewritten only where they differ: no dead rows
        before = conn.execute(sa.text("SELECT xmin::text FROM relation_types ORDER BY relation_id")).scalars().all()
    schema.apply(migrated_engine)
    with migrated_engine.begin() as conn:
        after = conn.execute(sa.text("SELECT xmin::text FROM relation_types ORDER BY relation_id")).scalars().all()
    assert after == before


def test_a_migration_edited_after_it_was_applied_is_refused(migrated_engine: sa.engine.Engine) -> None:
    with migrated_engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = '002'")
    try:
        with pytest.raises(RuntimeError, match=r"002_views\.sql changed after it was applied"):
            schema.apply(migrated_engine)
    finally:
        with migrated_engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE schema_migrations SET checksum = :c WHERE version = '002'"),
                {"c": schema.migrations()[1].checksum},
            )


def test_constraints_guard_invariants(engine: sa.engine.Engine) -> None:
    loader.load_documents(engine, [_doc("d1", [(0, 1, "P27", 0.9)])], None)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE fact_evidence SET confidence = 1.5"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE facts SET relation_id = 'P_nonexistent'"))


def test_load_twice_changes_nothing(engine: sa.engine.Engine) -> None:
    docs = [_doc("d1", [(0, 1, "P27", 0.9), (2, 1, "P17", 0.5)]), _doc("d2", [(0, 1, "P27", 0.7)])]
    first = loader.load_documents(engine, copy.deepcopy(docs), None)
    before = dump_tables(engine)
    second = loader.load_documents(engine, copy.deepcopy(docs), None)
    assert first.counts["loaded"] == 2 and second.counts["unchanged"] == 2 and second.counts["loaded"] == 0
    assert dump_tables(engine) == before
    # two documents support the same (Angela Merkel, P27, Germany) fact
    assert _scalar(engine, "SELECT support FROM triples WHERE relation_id = 'P27'") == 2
    assert _scalar(engine, "SELECT mean_confidence FROM triples WHERE relation_id = 'P27'") == pytest.approx(0.8)
    assert _aggregates_match_evidence(engine)


def test_reload_replaces_evidence_and_keeps_aggregates_consistent(engine: sa.engine.Engine) -> None:
    loader.load_documents(engine, [_doc("d1", [(0, 1, "P27", 0.9), (2, 1, "P17", 0.5)])], None)
    loader.load_documents(engine, [_doc("d2", [(0, 1, "P27", 0.7)])], None)
    # d1 re-extracted: P17 no longer found, P27 with lower confidence, a new P551 fact
    loader.load_documents(engine, [_doc("d1", [(0, 1, "P27", 0.4), (0, 2, "P551", 0.6)])], None)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT relation_id, support, max_confidence FROM facts")).fetchall()
    assert {(r, s): c for r, s, c in rows} == {("P27", 2): pytest.approx(0.7), ("P551", 1): pytest.approx(0.6)}
    assert _scalar(engine, "SELECT count(*) FROM fact_evidence WHERE doc_id = 'd1'") == 2
    assert _scalar(engine, "SELECT count(*) FROM facts WHERE relation_id = 'P17'") == 0  # no evidence left
    assert _aggregates_match_evidence(engine)
    # a renamed entity leaves no orphan KG node behind
    loader.load_documents(engine, [_doc("d1", [(0, 1, "P27", 0.4)], names=("A. Merkel", "Germany", "Paris"))], None)
    loader.load_documents(engine, [_doc("d2", [(0, 1, "P27", 0.7)], names=("A. Merkel", "Germany", "Paris"))], None)
    assert _scalar(engine, "SELECT count(*) FROM entities WHERE canonical_name = 'Angela Merkel'") == 0
    assert _scalar(engine, "SELECT count(*) FROM mentions WHERE doc_id = 'd1'") == 4
    assert _aggregates_match_evidence(engine)


def test_invalid_results_are_quarantined_and_the_rest_loads(engine: sa.engine.Engine) -> None:
    bad_type = _doc("bad1", [(0, 1, "NOT_A_RELATION", 0.9)])
    bad_index = _doc("bad2", [(0, 7, "P27", 0.9)])
    bad_date = _doc("bad3", [(0, 1, "P27", 0.9)])
    bad_date.date = "31/12/2024"  # from a Parquet file another tool wrote: COPY would fail the whole shard
    twice = _doc("ok", [(0, 1, "P17", 0.9)])  # a second row for a document id: the shard's writer erred
    docs = [bad_type, _doc("ok", [(0, 1, "P27", 0.9)]), bad_index, bad_date, twice]
    report = loader.load_documents(engine, docs, None)
    assert report.counts["loaded"] == 1 and report.counts["quarantined"] == 4
    with engine.connect() as conn:
        reasons = dict(conn.execute(sa.text("SELECT source, reason FROM quarantine")).fetchall())
    assert reasons["ok"] == "document id 'ok' appears again in this shard"
    assert "unknown relation type 'NOT_A_RELATION'" in reasons["bad1"]
    assert "does not exist" in reasons["bad2"]
    assert "not an ISO date" in reasons["bad3"]
    assert _scalar(engine, "SELECT count(*) FROM documents") == 1


def test_failed_load_leaves_database_as_before(engine: sa.engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    loader.load_documents(engine, [_doc("d1", [(0, 1, "P27", 0.9)])], None)
    before = dump_tables(engine)
    monkeypatch.setattr(loader, "_FINISH_SQL", [*loader._FINISH_SQL, "SELECT 1/0"])  # fail after all writes
    with pytest.raises(sa.exc.DataError):
        loader.load_documents(engine, [_doc("d1", [(0, 2, "P551", 0.3)]), _doc("d9", [(0, 1, "P27", 1.0)])], None)
    assert dump_tables(engine) == before


def test_loader_verifies_references_it_writes(engine: sa.engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path switches per-row FK triggers off; its set-based check must still catch a broken row."""
    loader.load_documents(engine, [_doc("d1", [(0, 1, "P27", 0.9)])], None)
    before = dump_tables(engine)
    # a KG node the new rows use disappears before commit (as a buggy cleanup or another writer could do)
    vanish = "DELETE FROM entities WHERE norm_key = 'paris'"
    monkeypatch.setattr(loader, "_FINISH_SQL", [*loader._FINISH_SQL, vanish])
    with pytest.raises(RuntimeError, match="rows break the reference doc_entities, facts -> entities"):
        loader.load_documents(engine, [_doc("d2", [(0, 2, "P551", 0.9)])], None)
    assert dump_tables(engine) == before
    with pytest.raises(ValueError, match="run 12345 does not exist"):
        loader.load_documents(engine, [_doc("d3", [])], 12345)


def test_a_role_without_superuser_loads_through_the_foreign_key_triggers(engine: sa.engine.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS kg_writer")
        conn.exec_driver_sql("CREATE ROLE kg_writer LOGIN")
        conn.exec_driver_sql("GRANT ALL ON ALL TABLES IN SCHEMA public TO kg_writer")
        conn.exec_driver_sql("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO kg_writer")
    writer = sa.create_engine(engine.url.set(username="kg_writer"), poolclass=sa.pool.NullPool)
    with writer.connect() as conn:
        assert loader._fast_path(conn) is False
    docs = [_doc("d1", [(0, 1, "P27", 0.9), (2, 1, "P17", 0.5)]), _doc("d2", [(0, 1, "P27", 0.7)])]
    assert loader.load_documents(writer, docs, None).counts["loaded"] == 2
    loader.load_documents(writer, [_doc("d1", [(0, 2, "P551", 0.6)])], None)  # replacement, cascades by triggers
    assert _aggregates_match_evidence(engine)
    assert _scalar(engine, "SELECT count(*) FROM mentions WHERE doc_id = 'd1'") == 4


def test_import_sample_corpus_counts(engine: sa.engine.Engine, tmp_path: Path) -> None:
    report, counts = import_annotated(engine, SAMPLE_CORPUS, work_dir=tmp_path, progress=False)
    raw = json.loads(SAMPLE_CORPUS.read_text())
    assert counts["loaded"] == len(raw) == _scalar(engine, "SELECT count(*) FROM documents")
    assert _scalar(engine, "SELECT count(*) FROM doc_entities") == sum(len(d["vertexSet"]) for d in raw)
    n_mentions = sum(len({(m["sent_id"], *m["pos"]) for m in c}) for d in raw for c in d["vertexSet"])
    assert _scalar(engine, "SELECT count(*) FROM mentions") == n_mentions

    def node(doc: dict, i: int) -> tuple[str, str]:
        ents = report_docs[doc["title"]].gold.entities
        return ents[i].type, normalize_name(ents[i].name)

    from re_pipeline.ingest import read_shard

    report_docs = {d.title: d for p in report.shards for d in read_shard(p)}
    evidence = {(d["title"], node(d, x["h"]), x["r"], node(d, x["t"])) for d in raw for x in d["labels"]}
    assert _scalar(engine, "SELECT count(*) FROM fact_evidence WHERE source_model = 'gold'") == len(evidence)
    assert _scalar(engine, "SELECT count(*) FROM facts") == len({e[1:] for e in evidence})
    assert _aggregates_match_evidence(engine)


def test_query_is_read_only_and_example_queries_run(engine: sa.engine.Engine, tmp_path: Path) -> None:
    import_annotated(engine, SAMPLE_CORPUS, work_dir=tmp_path, progress=False)
    loader.load_documents(engine, [_doc("model-doc", [(0, 1, "P27", 0.9)])], None)  # a model's facts too
    with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
        queries.run_readonly(engine, "DELETE FROM facts")
    with pytest.raises(sa.exc.DBAPIError, match="multiple commands"):  # no way out of the read-only transaction
        queries.run_readonly(engine, "COMMIT; DELETE FROM facts")
    assert _scalar(engine, "SELECT count(*) FROM facts") > 0
    params = {
        "entity": "United States",
        "limit": 5,
        "run_id": None,
        "doc_id": "docred_sample:Nexus Q",
        "head": "California",
        "relation": "P17",
        "tail": "United States",
    }
    named = queries.named_queries()
    assert {
        "relations_of_entity",
        "most_supported_facts",
        "facts_of_document",
        "facts_added_by_run",
        "documents_supporting_fact",
    } <= set(named)
    for name, path in named.items():
        result = queries.run_named(engine, name, {p: params[p] for p in queries.query_params(path.read_text())})
        assert result.rows, f"{name} returned no rows on the sample corpus"
    supporting = queries.run_named(
        engine, "documents_supporting_fact", {k: params[k] for k in ("head", "relation", "tail")}
    )
    assert len(supporting.rows) == 2
    with pytest.raises(ValueError, match="needs parameters: entity"):
        queries.run_named(engine, "relations_of_entity", {"limit": 3})
    rendered = json.loads(queries.render(queries.facts(engine, entity="California", limit=3), "json"))
    assert rendered and all("California" in (r["head"] + r["tail"]) for r in rendered)
