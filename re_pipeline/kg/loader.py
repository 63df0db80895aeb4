"""Bulk loader: extraction results (documents with entities and relations) into the KG.

One transaction per shard. Python resolves what it can (validation, the shard's KG
nodes, mention dedup, folding several relations onto one triple) and streams the rows
with COPY; the database does only what needs its state: assigning KG node and fact ids,
deduplicating facts across documents, and keeping their aggregates.

Idempotent by content: a document whose text and results are unchanged is skipped, so
loading a shard twice changes nothing. A document whose text or results changed has its
entities, mentions and evidence replaced; the facts it loses evidence from are recomputed
from the evidence, and facts that only gain evidence are updated incrementally, so the
aggregates (support, confidence, first/last seen) always agree with the evidence.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from re_pipeline.documents import Document, normalize_name
from re_pipeline.ingest import Quarantined, is_iso_date

_LOAD_LOCK = 0x5E_10_AD  # serializes shard loads: fact upserts of parallel loads would deadlock

_DOC_COLUMNS = (
    "doc_id text, source text, external_id text, title text, doc_date date, content_hash text,"
    " results_hash text, text text, num_sentences int"
)
_NODE_COLUMNS = "node int, type text, norm_key text, name text"
_FACT_COLUMNS = (
    "head bigint, relation_id text, tail bigint, doc_id text, source_model text, confidence float8,"
    " head_local int, tail_local int, evidence int[]"
)
_ENTITY_COLUMNS = "doc_id, local_id, entity_id, name, type"
_MENTION_COLUMNS = "doc_id, local_id, sent_id, start_word, end_word, char_start, char_end, text, type, score"

# Documents new or different from what is stored; ``replaced`` ones were stored before.
_CHANGED_SQL = """
    CREATE TEMP TABLE changed ON COMMIT DROP AS
    SELECT s.doc_id, d.doc_id IS NOT NULL AS replaced
    FROM stage_documents s
    LEFT JOIN LATERAL (SELECT * FROM documents d WHERE d.doc_id = s.doc_id) d ON true
    WHERE d.doc_id IS NULL OR d.content_hash <> s.content_hash OR d.results_hash <> s.results_hash"""

# Replaced documents: remember the facts and KG nodes their old versions pointed at, then delete
# their rows (children first: the fast path runs without the cascading triggers).
_REPLACE_SQL = [
    """INSERT INTO touched_facts SELECT DISTINCT fact_id FROM fact_evidence
       WHERE doc_id = ANY(:replaced)""",
    """INSERT INTO touched_entities SELECT DISTINCT entity_id FROM doc_entities
       WHERE doc_id = ANY(:replaced)""",
    "DELETE FROM fact_evidence WHERE doc_id = ANY(:replaced)",
    "DELETE FROM mentions WHERE doc_id = ANY(:replaced)",
    "DELETE FROM doc_entities WHERE doc_id = ANY(:replaced)",
]

_DOCUMENTS_SQL = """
    INSERT INTO documents (doc_id, source, external_id, title, doc_date, content_hash, results_hash, text,
                           num_sentences, last_run_id)
    SELECT s.doc_id, s.source, s.external_id, s.title, s.doc_date, s.content_hash, s.results_hash, s.text,
           s.num_sentences, :run
    FROM stage_documents s JOIN changed USING (doc_id)
    ON CONFLICT (doc_id) DO UPDATE SET source = EXCLUDED.source, external_id = EXCLUDED.external_id,
        title = EXCLUDED.title, doc_date = EXCLUDED.doc_date, content_hash = EXCLUDED.content_hash,
        results_hash = EXCLUDED.results_hash, text = EXCLUDED.text, num_sentences = EXCLUDED.num_sentences,
        ingested_at = now(), last_run_id = EXCLUDED.last_run_id"""

# KG nodes of the shard (one row per node, in key order so concurrent writers lock in the same order).
_INSERT_NODES_SQL = """
    INSERT INTO entities (type, norm_key, canonical_name)
    SELECT type, norm_key, name FROM stage_nodes ORDER BY type, norm_key
    ON CONFLICT (type, norm_key) DO UPDATE SET canonical_name = EXCLUDED.canonical_name
    WHERE EXCLUDED.canonical_name < entities.canonical_name"""  # the smallest name whatever the load order
_NODE_IDS_SQL = """
    SELECT n.node, (SELECT e.entity_id FROM entities e WHERE e.type = n.type AND e.norm_key = n.norm_key)
    FROM stage_nodes n"""

# Facts: per document the best confidence over its source models; new facts get their aggregates
# in the INSERT, facts that existed gain evidence incrementally, and facts that lost evidence
# (replaced documents) are recomputed from the evidence.
_FACTS_SQL = [
    """CREATE TEMP TABLE per_doc ON COMMIT DROP AS
       SELECT head, relation_id, tail, doc_id, max(confidence) AS c FROM stage_facts GROUP BY 1, 2, 3, 4""",
    """WITH inserted AS (
           INSERT INTO facts (head_entity_id, relation_id, tail_entity_id, support, max_confidence, mean_confidence,
                              first_seen, last_seen)
           SELECT head, relation_id, tail, count(*), max(c), least(avg(c), max(c)), :at, :at
           FROM per_doc GROUP BY head, relation_id, tail ORDER BY head, relation_id, tail
           ON CONFLICT (head_entity_id, relation_id, tail_entity_id) DO NOTHING
           RETURNING fact_id)
       INSERT INTO new_facts SELECT fact_id FROM inserted""",
    """CREATE TEMP TABLE fact_ids ON COMMIT DROP AS
       SELECT (SELECT f.fact_id FROM facts f WHERE f.head_entity_id = s.head AND f.relation_id = s.relation_id
                 AND f.tail_entity_id = s.tail) AS fact_id, s.head, s.relation_id, s.tail
       FROM (SELECT DISTINCT head, relation_id, tail FROM per_doc) s""",
    """INSERT INTO fact_evidence (fact_id, doc_id, source_model, run_id, head_local, tail_local, confidence,
                                  evidence_sentences, extracted_at)
       SELECT f.fact_id, s.doc_id, s.source_model, :run, s.head_local, s.tail_local, s.confidence, s.evidence, :at
       FROM stage_facts s JOIN fact_ids f USING (head, relation_id, tail)""",
    """UPDATE facts f SET support = f.support + a.n, max_confidence = greatest(f.max_confidence, a.max_c),
           mean_confidence = least((f.mean_confidence::float8 * f.support + a.sum_c) / (f.support + a.n),
                                   greatest(f.max_confidence, a.max_c)),
           first_seen = least(f.first_seen, :at), last_seen = greatest(f.last_seen, :at)
       FROM (SELECT i.fact_id, count(*) AS n, max(p.c) AS max_c, sum(p.c) AS sum_c
             FROM per_doc p JOIN fact_ids i USING (head, relation_id, tail)
             WHERE i.fact_id NOT IN (SELECT fact_id FROM new_facts)
               AND i.fact_id NOT IN (SELECT fact_id FROM touched_facts)
             GROUP BY i.fact_id) a
       WHERE f.fact_id = a.fact_id""",
]

# After all writes: recompute what lost evidence, remove facts and KG nodes nothing supports.
_FINISH_SQL = [
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

# The fast path's stand-in for the per-row foreign-key triggers it switches off. Python wrote document
# entities, mentions and evidence from one staged document each, so their references to each other and to
# the document hold by construction, and relation types were validated against the table; what the database
# decided must still be checked: every KG node id used exists, and no deleted node is still referenced.
# Each query counts violations (all must be 0); lookups go through the primary keys, whatever the table sizes.
_VERIFY_SQL = {
    "doc_entities, facts -> entities": """
        SELECT count(*) FROM unnest(CAST(:entity_ids AS bigint[])) AS used(entity_id)
        WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = used.entity_id)""",
    "deleted entities still referenced": """
        SELECT count(*) FROM touched_entities t
        WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE e.entity_id = t.entity_id)
          AND (EXISTS (SELECT 1 FROM doc_entities d WHERE d.entity_id = t.entity_id)
            OR EXISTS (SELECT 1 FROM facts f WHERE f.head_entity_id = t.entity_id)
            OR EXISTS (SELECT 1 FROM facts f WHERE f.tail_entity_id = t.entity_id))""",
}


def _fast_path(conn: Connection) -> bool:
    """Switch off per-row foreign-key triggers for this transaction when allowed (superuser).

    Per-row FK checks cost about half of a load. The loader writes references it has
    just resolved, so one set-based check per relationship at the end (``_VERIFY_SQL``)
    gives the same guarantee; the constraints stay in force for every other writer.
    """
    if not conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
        return False
    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    return True


def _verify(conn: Connection, entity_ids: list[int]) -> None:
    for what, sql in _VERIFY_SQL.items():
        broken = conn.execute(sa.text(sql), {"entity_ids": entity_ids}).scalar_one()
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


def validate(doc: Document, relation_types: set[str]) -> str | None:
    """Why ``doc``'s results cannot be loaded, or None. Checked before any row is written."""
    if doc.date is not None and not is_iso_date(str(doc.date)):
        return f"date {doc.date!r} is not an ISO date (YYYY-MM-DD)"
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


@dataclass
class _Staged:
    """One document's rows in the loader's terms: KG node keys instead of database ids."""

    doc_id: str
    document: tuple[Any, ...]
    entities: list[tuple[Any, ...]]  # (local_id, (type, norm_key), name, type)
    mentions: list[tuple[Any, ...]]
    relations: list[tuple[Any, ...]]  # (head_local, tail_local, relation, source, confidence, evidence)


def stage(doc: Document) -> _Staged:
    """The rows ``doc`` writes, with its results hash: a fingerprint of exactly those rows."""
    entities, mentions = [], {}
    for i, e in enumerate(doc.predicted.entities):
        entities.append((i, (e.type, normalize_name(e.name) or e.name.casefold()), e.name, e.type))
        for m in e.mentions:
            c0, c1 = doc.char_span(m)
            key = (i, m.sent, m.start, m.end)
            row = (*key, c0, c1, m.text or doc.text[c0:c1], m.type or e.type, m.score)
            kept = mentions.get(key)  # one row per span and entity: the best-scored
            if kept is None or (-1.0 if m.score is None else m.score) > (-1.0 if kept[-1] is None else kept[-1]):
                mentions[key] = row
    relations = [(r.head, r.tail, r.type, r.source, r.confidence, tuple(r.evidence)) for r in doc.predicted.relations]
    document = (doc.doc_id, doc.source, doc.external_id, doc.title, doc.date, doc.content_hash)
    fingerprint = repr((document, doc.text, len(doc.sentences), entities, sorted(mentions.values()), relations))
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()
    document = (*document, digest, doc.text, len(doc.sentences))
    return _Staged(doc.doc_id, document, entities, list(mentions.values()), relations)


def _copy_value(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, str):
        return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(v, tuple | list):
        return "{" + ",".join(map(str, v)) + "}"
    return str(v)


def _copy(conn: Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """COPY rows in PostgreSQL's text format, built here in one buffer (far faster than per-row adaptation)."""
    if not rows:
        return
    text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        copy.write(text.encode())


def _temp_table(conn: Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    conn.exec_driver_sql(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP")
    _copy(conn, table, ", ".join(c.split()[0] for c in columns.split(", ")), rows)


def _fold_facts(staged: list[_Staged], entity_ids: dict[tuple[str, int], int]) -> list[tuple[Any, ...]]:
    """One row per (document, head node, relation, tail node, source model): two local entities
    on one KG node make one triple, with the best confidence and the union of the evidence."""
    folded: dict[tuple[Any, ...], list[Any]] = {}
    for s in staged:
        for h, t, rel, source, conf, evidence in s.relations:
            key = (entity_ids[s.doc_id, h], rel, entity_ids[s.doc_id, t], s.doc_id, source)
            row = folded.get(key)
            if row is None:
                folded[key] = [conf, h, t, set(evidence)]
            else:
                row[0], row[1], row[2] = max(row[0], conf), min(row[1], h), min(row[2], t)
                row[3].update(evidence)
    return [(*key, conf, h, t, sorted(ev)) for key, (conf, h, t, ev) in folded.items()]


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
    params = {"run": run_id, "at": extracted_at or datetime.now(UTC)}
    staged: list[_Staged] = []
    seen: set[str] = set()
    for doc in docs:
        report.counts["documents"] += 1
        problem = validate(doc, relation_types) or (
            f"document id {doc.doc_id!r} appears again in this shard" if doc.doc_id in seen else None
        )
        seen.add(doc.doc_id)
        if problem:
            report.counts["quarantined"] += 1
            report.quarantined.append(Quarantined(doc.doc_id, doc.text[:2000], problem))
            continue
        staged.append(stage(doc))
        report.counts["entities"] += len(staged[-1].entities)
        report.counts["relations"] += len(staged[-1].relations)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOAD_LOCK})
        if report.quarantined:  # before the fast path: these rows keep their trigger-checked run reference
            record_quarantine(conn, run_id, report.quarantined)
        if (
            run_id is not None
            and not conn.execute(sa.text("SELECT 1 FROM extraction_runs WHERE run_id = :r"), {"r": run_id}).first()
        ):
            raise ValueError(f"run {run_id} does not exist in extraction_runs")
        fast = _fast_path(conn)
        _temp_table(conn, "stage_documents", _DOC_COLUMNS, [s.document for s in staged])
        conn.exec_driver_sql(_CHANGED_SQL)
        changed = dict(conn.execute(sa.text("SELECT doc_id, replaced FROM changed")).tuples().all())
        report.counts["loaded"] = len(changed)
        report.counts["unchanged"] = len(staged) - len(changed)
        staged = [s for s in staged if s.doc_id in changed]
        conn.exec_driver_sql("CREATE TEMP TABLE touched_facts (fact_id bigint PRIMARY KEY) ON COMMIT DROP")
        conn.exec_driver_sql("CREATE TEMP TABLE new_facts (fact_id bigint PRIMARY KEY) ON COMMIT DROP")
        conn.exec_driver_sql("CREATE TEMP TABLE touched_entities (entity_id bigint) ON COMMIT DROP")
        params["replaced"] = [doc_id for doc_id, replaced in changed.items() if replaced]
        if params["replaced"]:
            for statement in _REPLACE_SQL:
                conn.execute(sa.text(statement), params)
        conn.exec_driver_sql("ANALYZE touched_facts, touched_entities")  # else plans assume they are big
        entity_ids = _write(conn, staged, params) if staged else []
        for statement in _FINISH_SQL:
            conn.execute(sa.text(statement), params)
        if fast:
            _verify(conn, entity_ids)
    return report


def _write(conn: Connection, staged: list[_Staged], params: dict[str, Any]) -> list[int]:
    """Documents, KG nodes, document entities, mentions, facts and evidence of changed documents.

    Returns the KG node ids the rows reference."""
    conn.execute(sa.text(_DOCUMENTS_SQL), params)
    nodes: dict[tuple[str, str], tuple[int, str]] = {}
    for s in staged:
        for _, key, name, _ in s.entities:
            node = nodes.get(key)
            if node is None or name < node[1]:  # the smallest surface name: stable whatever the order
                nodes[key] = (node[0] if node else len(nodes), name)
    _temp_table(conn, "stage_nodes", _NODE_COLUMNS, [(n, *key, name) for key, (n, name) in nodes.items()])
    conn.execute(sa.text(_INSERT_NODES_SQL))
    node_ids = dict(conn.execute(sa.text(_NODE_IDS_SQL)).tuples().all())
    entity_ids = {(s.doc_id, i): node_ids[nodes[key][0]] for s in staged for i, key, _, _ in s.entities}
    _copy(
        conn,
        "doc_entities",
        _ENTITY_COLUMNS,
        [(s.doc_id, i, entity_ids[s.doc_id, i], name, type_) for s in staged for i, _, name, type_ in s.entities],
    )
    _copy(conn, "mentions", _MENTION_COLUMNS, [(s.doc_id, *m) for s in staged for m in s.mentions])
    _temp_table(conn, "stage_facts", _FACT_COLUMNS, _fold_facts(staged, entity_ids))
    for statement in _FACTS_SQL:
        conn.execute(sa.text(statement), params)
    return list(node_ids.values())


def record_quarantine(conn: Connection, run_id: int | None, items: list[Quarantined]) -> None:
    """Quarantine rows for a run; a record the run already holds for the same reason is not added again
    (a retried load task reads the same quarantine file)."""
    conn.execute(
        sa.text(
            "INSERT INTO quarantine (run_id, source, record, reason)"
            " SELECT CAST(:run AS bigint), :source, :record, :reason WHERE CAST(:run AS bigint) IS NULL OR NOT EXISTS"
            " (SELECT 1 FROM quarantine WHERE run_id = CAST(:run AS bigint) AND source = :source AND reason = :reason)"
        ),
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
