-- How many of each model's facts are also stated by gold annotations (source model 'gold'), e.g. after
-- `re-pipeline demo`, which loads the sample corpus both ways. A knowledge-graph-level precision estimate.
-- Parameters: none
SELECT e.source_model,
       count(DISTINCT e.fact_id) AS facts,
       count(DISTINCT e.fact_id) FILTER (WHERE g.fact_id IS NOT NULL) AS also_in_gold,
       round(100.0 * count(DISTINCT e.fact_id) FILTER (WHERE g.fact_id IS NOT NULL)
             / nullif(count(DISTINCT e.fact_id), 0), 1) AS percent_in_gold
FROM fact_evidence e
LEFT JOIN (SELECT DISTINCT fact_id FROM fact_evidence WHERE source_model = 'gold') g USING (fact_id)
WHERE e.source_model <> 'gold'
GROUP BY e.source_model
ORDER BY e.source_model;
