"""Bulk loader: extraction results (documents with entities and relations) into the KG.

One transaction per shard: COPY into temporary staging tables, then set-based SQL
upserts. Idempotent by content: a document whose text and results are unchanged
is skipped, so loading a shard twice changes nothing; a document whose text or
results changed has its entities, mentions and evidence replaced, and the
aggregates (support, confidence, first/last seen) of every fact it touched are
recomputed from the evidence, so they always agree with it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from re_pipeline.documents import Document, normalize_name
from re_pipeline.ingest import Quarantined

_LOAD_LOCK = 0x5E_10_AD  # serializes shard loads: fact upserts of parallel loads would deadlock

_STAGING = {
    "stage_documents": "doc_id text, source text, external_id text, title text, doc_date date, content_hash text,"
    " results_hash text, text text, num_sentences int",
    "stage_entities": "doc_id text, local_id int, type text, norm_key text, name text",
    "stage_mentions": "doc_id text, local_id int, sent_id int, start_word int, end_word int, char_start int,"
    " char_end int, text text, type text, score real",
    "stage_relations": "doc_id text, head_local int, tail_local int, relation_id text, source_model text,"
    " confidence real, evidence int[], extracted_at timestamptz",
}

# Applied in order inside the shard's transaction; :run is the run id.
_UPSERT_SQL = [
    # Documents whose text or results differ from what is stored (or are new).
    """CREATE TEMP TABLE changed ON COMMIT DROP AS
       SELECT s.doc_id FROM stage_documents s LEFT JOIN documents d USING (doc_id)
       WHERE d.doc_id IS NULL OR d.content_hash <> s.content_hash OR d.results_hash <> s.results_hash""",
    # Facts and KG nodes the old versions of those documents pointed at: their aggregates change.
    """CREATE TEMP TABLE touched_facts ON COMMIT DROP AS
       SELECT DISTINCT fact_id FROM fact_evidence WHERE doc_id IN (SELECT doc_id FROM changed)""",
    """CREATE TEMP TABLE touched_entities ON COMMIT DROP AS
       SELECT DISTINCT entity_id FROM doc_entities WHERE doc_id IN (SELECT doc_id FROM changed)""",
    # Explicit deletes, child tables first: the fast path below runs without cascading triggers.
    "DELETE FROM fact_evidence WHERE doc_id IN (SELECT doc_id FROM changed)",
    "DELETE FROM mentions WHERE doc_id IN (SELECT doc_id FROM changed)",
    "DELETE FROM doc_entities WHERE doc_id IN (SELECT doc_id FROM changed)",
    """INSERT INTO documents (doc_id, source, external_id, title, doc_date, content_hash, results_hash, text,
                              num_sentences, last_run_id)
       SELECT s.doc_id, s.source, s.external_id, s.title, s.doc_date, s.content_hash, s.results_hash, s.text,
              s.num_sentences, :run
       FROM stage_documents s JOIN changed USING (doc_id)
       ON CONFLICT (doc_id) DO UPDATE SET source = EXCLUDED.source, external_id = EXCLUDED.external_id,
           title = EXCLUDED.title, doc_date = EXCLUDED.doc_date, content_hash = EXCLUDED.content_hash,
           results_hash = EXCLUDED.results_hash, text = EXCLUDED.text, num_sentences = EXCLUDED.num_sentences,
           ingested_at = now(), last_run_id = EXCLUDED.last_run_id""",
    """INSERT INTO entities (type, norm_key, canonical_name)
       SELECT s.type, s.norm_key, min(s.name)
       FROM stage_entities s JOIN changed USING (doc_id)
       GROUP BY s.type, s.norm_key
       ORDER BY s.type, s.norm_key
       ON CONFLICT (type, norm_key) DO NOTHING""",
    """INSERT INTO doc_entities (doc_id, local_id, entity_id, name, type)
       SELECT s.doc_id, s.local_id, e.entity_id, s.name, s.type
       FROM stage_entities s JOIN changed USING (doc_id)
       JOIN entities e ON e.type = s.type AND e.norm_key = s.norm_key""",
    """INSERT INTO mentions (doc_id, local_id, sent_id, start_word, end_word, char_start, char_end, text, type, score)
       SELECT DISTINCT ON (m.doc_id, m.local_id, m.sent_id, m.start_word, m.end_word)
              m.doc_id, m.local_id, m.sent_id, m.start_word, m.end_word, m.char_start, m.char_end, m.text, m.type,
              m.score
       FROM stage_mentions m JOIN changed USING (doc_id)
       ORDER BY m.doc_id, m.local_id, m.sent_id, m.start_word, m.end_word, m.score DESC NULLS LAST""",
    # Document-level triples on KG nodes; two local entities on one node fold into one triple.
    """CREATE TEMP TABLE stage_facts ON COMMIT DROP AS
       SELECT h.entity_id AS head, r.relation_id, t.entity_id AS tail, r.doc_id, r.source_model,
              max(r.confidence) AS confidence, min(r.head_local) AS head_local, min(r.tail_local) AS tail_local,
              coalesce(array_agg(DISTINCT ev ORDER BY ev) FILTER (WHERE ev IS NOT NULL), '{}') AS evidence,
              max(r.extracted_at) AS extracted_at
       FROM stage_relations r JOIN changed USING (doc_id)
       JOIN doc_entities h ON h.doc_id = r.doc_id AND h.local_id = r.head_local
       JOIN doc_entities t ON t.doc_id = r.doc_id AND t.local_id = r.tail_local
       LEFT JOIN LATERAL unnest(r.evidence) AS ev ON true
       GROUP BY 1, 2, 3, 4, 5""",
    # Facts new to the store get their aggregates in the same INSERT (all their evidence is in this shard) ...
    "CREATE TEMP TABLE new_facts (fact_id bigint PRIMARY KEY) ON COMMIT DROP",
    """WITH per_doc AS (
           SELECT head, relation_id, tail, doc_id, max(confidence) AS c, min(extracted_at) AS first_seen,
                  max(extracted_at) AS last_seen
           FROM stage_facts GROUP BY 1, 2, 3, 4),
       inserted AS (
           INSERT INTO facts (head_entity_id, relation_id, tail_entity_id, support, max_confidence, mean_confidence,
                              first_seen, last_seen)
           SELECT head, relation_id, tail, count(*), max(c), least(avg(c), max(c)), min(first_seen), max(last_seen)
           FROM per_doc s
           GROUP BY head, relation_id, tail
           ORDER BY head, relation_id, tail
           ON CONFLICT (head_entity_id, relation_id, tail_entity_id) DO NOTHING
           RETURNING fact_id)
       INSERT INTO new_facts SELECT fact_id FROM inserted""",
    """INSERT INTO fact_evidence (fact_id, doc_id, source_model, run_id, head_local, tail_local, confidence,
                                  evidence_sentences, extracted_at)
       SELECT f.fact_id, s.doc_id, s.source_model, :run, s.head_local, s.tail_local, s.confidence, s.evidence,
              s.extracted_at
       FROM stage_facts s JOIN facts f
         ON f.head_entity_id = s.head AND f.relation_id = s.relation_id AND f.tail_entity_id = s.tail""",
    # ... while facts that existed before (new evidence) or lost evidence are recomputed below.
    """INSERT INTO touched_facts SELECT DISTINCT f.fact_id FROM stage_facts s JOIN facts f
         ON f.head_entity_id = s.head AND f.relation_id = s.relation_id AND f.tail_entity_id = s.tail
       WHERE NOT EXISTS (SELECT 1 FROM new_facts n WHERE n.fact_id = f.fact_id)""",
    # Aggregates from the evidence: support = documents; mean = mean over documents of their best confidence.
    """UPDATE facts f SET support = a.support, max_confidence = a.max_c, mean_confidence = least(a.mean_c, a.max_c),
                          first_seen = a.first_seen, last_seen = a.last_seen
       FROM (SELECT fact_id, count(*) AS support, max(c) AS max_c, avg(c) AS mean_c,
                    min(first_seen) AS first_seen, max(last_seen) AS last_seen
             FROM (SELECT fact_id, doc_id, max(confidence) AS c, min(extracted_at) AS first_seen,
                          max(extracted_at) AS last_seen
                   FROM fact_evidence WHERE fact_id IN (SELECT fact_id FROM touched_facts)
                   GROUP BY fact_id, doc_id) per_doc
             GROUP BY fact_id) a
       WHERE f.fact_id = a.fact_id""",
    """DELETE FROM facts f WHERE f.fact_id IN (SELECT fact_id FROM touched_facts)
       AND NOT EXISTS (SELECT 1 FROM fact_evidence e WHERE e.fact_id = f.fact_id)""",
    """DELETE FROM entities e WHERE e.entity_id IN (SELECT entity_id FROM touched_entities)
       AND NOT EXISTS (SELECT 1 FROM doc_entities d WHERE d.entity_id = e.entity_id)""",
]


# The fast path's set-based stand-in for the per-row foreign-key triggers it switches off: every row this
# transaction wrote must reference an existing row. Each query counts violations (all must be 0).
# Evidence rows need no check here: they are inserted from a join with the very facts and document
# entities they reference, in this transaction, under the load lock (checking them cost a fifth of a load).
_VERIFY_SQL = {
    "doc_entities -> documents, entities": """
        SELECT count(*) FROM doc_entities d JOIN changed c USING (doc_id)
        WHERE NOT EXISTS (SELECT 1 FROM documents x WHERE x.doc_id = d.doc_id)
           OR NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = d.entity_id)""",
    "mentions -> doc_entities": """
        SELECT count(*) FROM mentions m JOIN changed c USING (doc_id)
        WHERE NOT EXISTS (SELECT 1 FROM doc_entities d WHERE d.doc_id = m.doc_id AND d.local_id = m.local_id)""",
    "facts -> entities, relation_types": """
        SELECT count(*) FROM facts f
        WHERE (f.fact_id IN (SELECT fact_id FROM new_facts) OR f.fact_id IN (SELECT fact_id FROM touched_facts))
          AND (NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = f.head_entity_id)
            OR NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = f.tail_entity_id)
            OR NOT EXISTS (SELECT 1 FROM relation_types r WHERE r.relation_id = f.relation_id))""",
    "deleted entities still referenced": """
        SELECT count(*) FROM touched_entities t
        WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = t.entity_id)
          AND (EXISTS (SELECT 1 FROM doc_entities d WHERE d.entity_id = t.entity_id)
            OR EXISTS (SELECT 1 FROM facts f WHERE t.entity_id IN (f.head_entity_id, f.tail_entity_id)))""",
}


def _fast_path(conn: Connection) -> bool:
    """Switch off per-row foreign-key triggers for this transaction when allowed (superuser).

    Per-row FK checks cost about half of a load. The loader writes references it has
    just joined, so one set-based check per relationship at the end (``_VERIFY_SQL``)
    gives the same guarantee; the constraints stay in force for every other writer.
    """
    if not conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
        return False
    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    return True


def _verify(conn: Connection) -> None:
    for what, sql in _VERIFY_SQL.items():
        broken = conn.execute(sa.text(sql)).scalar_one()
        if broken:
            raise RuntimeError(f"load aborted: {broken} rows break the reference {what}; nothing was written")


@dataclass
class LoadReport:
    counts: Counter[str] = field(default_factory=Counter)
    quarantined: list[Quarantined] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['documents']} documents: {c['loaded']} loaded, {c['unchanged']} unchanged, "
            f"{c['quarantined']} quarantined; {c['entities']} entities, {c['relations']} relations staged"
        )


def results_hash(doc: Document) -> str:
    """Fingerprint of what loading ``doc`` writes: its text, metadata and predictions."""
    payload = doc.to_row()
    for key in ("sentences", "gold_entities", "gold_relations"):
        payload.pop(key)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def validate(doc: Document, relation_types: set[str]) -> str | None:
    """Why ``doc``'s results cannot be loaded, or None. Checked before any row is written."""
    ents = doc.predicted.entities
    for i, e in enumerate(ents):
        if not e.type or not e.mentions:
            return f"entity {i} has no type or no mentions"
        if not normalize_name(e.name) and not e.name.strip():
            return f"entity {i} has an empty name"
        for m in e.mentions:
            if not (0 <= m.sent < len(doc.sentences) and 0 <= m.start < m.end <= len(doc.sentences[m.sent].words)):
                return f"entity {i} has a mention outside the document: sentence {m.sent}, words {m.start}:{m.end}"
            if m.score is not None and not 0.0 <= m.score <= 1.0:
                return f"entity {i} has a mention score {m.score} outside [0, 1]"
    for r in doc.predicted.relations:
        if not (0 <= r.head < len(ents) and 0 <= r.tail < len(ents)):
            return f"relation {r.type} points at entity {r.head} or {r.tail}, which does not exist"
        if r.type not in relation_types:
            return f"unknown relation type {r.type!r} (not in relation_types)"
        if not 0.0 <= r.confidence <= 1.0:
            return f"relation {r.type} has confidence {r.confidence} outside [0, 1]"
        if not r.source:
            return f"relation {r.type} has no source model"
    return None


def _rows(doc: Document, extracted_at: datetime) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _STAGING}
    rows["stage_documents"].append(
        (
            doc.doc_id,
            doc.source,
            doc.external_id,
            doc.title,
            doc.date,
            doc.content_hash,
            results_hash(doc),
            doc.text,
            len(doc.sentences),
        )
    )
    for i, e in enumerate(doc.predicted.entities):
        rows["stage_entities"].append((doc.doc_id, i, e.type, normalize_name(e.name) or e.name.casefold(), e.name))
        for m in e.mentions:
            c0, c1 = doc.char_span(m)
            text = m.text or doc.text[c0:c1]
            rows["stage_mentions"].append(
                (doc.doc_id, i, m.sent, m.start, m.end, c0, c1, text, m.type or e.type, m.score)
            )
    for r in doc.predicted.relations:
        rows["stage_relations"].append(
            (doc.doc_id, r.head, r.tail, r.type, r.source, r.confidence, list(r.evidence), extracted_at)
        )
    return rows


def _copy(conn: Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    raw = conn.connection.driver_connection
    columns = ", ".join(col.split()[0] for col in _STAGING[table].split(", "))
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def relation_type_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.text("SELECT relation_id FROM relation_types"))}


def load_documents(
    engine: Engine,
    docs: list[Document],
    run_id: int | None,
    *,
    extracted_at: datetime | None = None,
    relation_types: set[str] | None = None,
) -> LoadReport:
    """Load one shard's documents in one transaction; invalid documents are quarantined."""
    report = LoadReport()
    relation_types = relation_types if relation_types is not None else relation_type_ids(engine)
    extracted_at = extracted_at or datetime.now(UTC)
    staged: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _STAGING}
    for doc in docs:
        report.counts["documents"] += 1
        problem = validate(doc, relation_types)
        if problem:
            report.counts["quarantined"] += 1
            report.quarantined.append(Quarantined(doc.doc_id, doc.text[:2000], problem))
            continue
        for table, rows in _rows(doc, extracted_at).items():
            staged[table].extend(rows)
    report.counts["entities"] = len(staged["stage_entities"])
    report.counts["relations"] = len(staged["stage_relations"])
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOAD_LOCK})
        if report.quarantined:  # before the fast path: these rows keep their trigger-checked run reference
            record_quarantine(conn, run_id, report.quarantined)
        if run_id is not None and not conn.execute(
            sa.text("SELECT 1 FROM extraction_runs WHERE run_id = :r"), {"r": run_id}
        ).first():
            raise ValueError(f"run {run_id} does not exist in extraction_runs")
        fast = _fast_path(conn)
        for table, columns in _STAGING.items():
            conn.exec_driver_sql(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP")
            _copy(conn, table, staged[table])
            conn.exec_driver_sql(f"ANALYZE {table}")  # temp tables have no statistics: plans would be blind
        for statement in _UPSERT_SQL:
            conn.execute(sa.text(statement), {"run": run_id})
        if fast:
            _verify(conn)
        changed = conn.execute(sa.text("SELECT count(*) FROM changed")).scalar_one()
    report.counts["loaded"] = changed
    report.counts["unchanged"] = report.counts["documents"] - report.counts["quarantined"] - changed
    return report


def record_quarantine(conn: Connection, run_id: int | None, items: list[Quarantined]) -> None:
    conn.execute(
        sa.text("INSERT INTO quarantine (run_id, source, record, reason) VALUES (:run, :source, :record, :reason)"),
        [{"run": run_id, "source": q.origin, "record": q.record, "reason": q.reason} for q in items],
    )


def gold_as_predicted(doc: Document) -> Document:
    """A DocRED document whose gold annotations stand as results of the source model ``gold``."""
    if doc.gold is None:
        raise ValueError(f"{doc.doc_id} has no gold annotations")
    doc.predicted = doc.gold
    for r in doc.predicted.relations:
        r.source = "gold"
    return doc
