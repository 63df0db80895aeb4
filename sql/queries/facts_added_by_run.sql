-- Facts whose evidence was written by a run (default: the newest run that wrote evidence).
-- Parameters: :run_id (bigint or NULL for the newest), :limit (integer)
WITH chosen AS (
    SELECT coalesce(CAST(:run_id AS bigint), (SELECT max(run_id) FROM fact_evidence)) AS run_id
)
SELECT p.run_id, p.head, p.relation, p.tail, count(DISTINCT p.doc_id) AS documents,
       round(max(p.confidence)::numeric, 3) AS confidence
FROM fact_provenance p JOIN chosen c ON p.run_id = c.run_id
GROUP BY p.run_id, p.head, p.relation, p.tail
ORDER BY documents DESC, confidence DESC, p.head, p.relation, p.tail
LIMIT :limit;
