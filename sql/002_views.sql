-- Views for analysts: facts by name, and facts with the documents that support them.

CREATE VIEW triples AS
SELECT f.fact_id,
       h.canonical_name AS head,
       h.type           AS head_type,
       f.relation_id,
       rt.name          AS relation,
       t.canonical_name AS tail,
       t.type           AS tail_type,
       f.max_confidence AS confidence,
       f.mean_confidence,
       f.support,
       f.first_seen,
       f.last_seen
FROM facts f
JOIN entities h        ON h.entity_id = f.head_entity_id
JOIN entities t        ON t.entity_id = f.tail_entity_id
JOIN relation_types rt ON rt.relation_id = f.relation_id;

CREATE VIEW fact_provenance AS
SELECT tr.fact_id, tr.head, tr.relation, tr.tail,
       e.doc_id, d.title, e.source_model, e.run_id, e.confidence, e.evidence_sentences
FROM triples tr
JOIN fact_evidence e ON e.fact_id = tr.fact_id
JOIN documents d     ON d.doc_id = e.doc_id;
