-- The facts a document supports, with the model that found each and its evidence sentences.
-- Parameters: :doc_id (text; use the documents table to find ids)
SELECT head, relation, tail, source_model, round(confidence::numeric, 3) AS confidence, evidence_sentences
FROM fact_provenance
WHERE doc_id = :doc_id
ORDER BY head, relation, tail, source_model;
