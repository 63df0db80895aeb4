-- The documents that support a fact given by head name, relation (id or name) and tail name.
-- Parameters: :head (text), :relation (text), :tail (text)
SELECT doc_id, title, source_model, round(confidence::numeric, 3) AS confidence, evidence_sentences
FROM fact_provenance p
JOIN facts f USING (fact_id)
WHERE p.head ILIKE :head AND p.tail ILIKE :tail
  AND (f.relation_id = :relation OR p.relation ILIKE :relation)
ORDER BY confidence DESC, doc_id;
