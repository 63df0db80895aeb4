-- The facts supported by the most documents.
-- Parameters: :limit (integer)
SELECT head, relation, tail, support, round(confidence::numeric, 3) AS confidence
FROM triples
ORDER BY support DESC, confidence DESC, head, relation, tail
LIMIT :limit;
