-- Every fact where an entity (by name, case-insensitive substring) is head or tail.
-- Parameters: :entity (text), :limit (integer)
SELECT head, relation, tail, round(confidence::numeric, 3) AS confidence, support
FROM triples
WHERE head ILIKE '%' || :entity || '%' OR tail ILIKE '%' || :entity || '%'
ORDER BY support DESC, confidence DESC, head, relation, tail
LIMIT :limit;
