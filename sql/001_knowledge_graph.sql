-- The knowledge-graph store: runs, documents, quarantine, relation types, KG nodes,
-- per-document entities and mentions, deduplicated facts and their per-document evidence.

CREATE TABLE extraction_runs (
    run_id          bigserial PRIMARY KEY,
    command         text        NOT NULL,              -- ingest, load, import-annotated, run, airflow ...
    dag_run_id      text,                              -- Airflow run id when orchestrated
    model_versions  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'success', 'failed')),
    counts          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);

CREATE TABLE documents (
    doc_id        text        PRIMARY KEY,             -- "<source>:<external id>", stable across runs
    source        text        NOT NULL,
    external_id   text        NOT NULL,
    title         text        NOT NULL DEFAULT '',
    doc_date      date,
    content_hash  char(64)    NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    results_hash  char(64)    NOT NULL CHECK (results_hash ~ '^[0-9a-f]{64}$'),
    text          text        NOT NULL CHECK (text <> ''),
    num_sentences integer     NOT NULL CHECK (num_sentences > 0),
    ingested_at   timestamptz NOT NULL DEFAULT now(),
    last_run_id   bigint      REFERENCES extraction_runs (run_id) ON DELETE SET NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX documents_content_hash ON documents (content_hash);

CREATE TABLE quarantine (
    quarantine_id bigserial   PRIMARY KEY,
    run_id        bigint      REFERENCES extraction_runs (run_id) ON DELETE SET NULL,
    source        text        NOT NULL,                -- file (and line / row) the record came from
    record        text        NOT NULL,                -- the raw record, truncated
    reason        text        NOT NULL CHECK (reason <> ''),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE relation_types (
    relation_id  text PRIMARY KEY,                     -- Wikidata P-id, or a dataset's label
    schema_name  text NOT NULL,                        -- 'wikidata' (DocRED), 'conll04', ...
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    is_symmetric boolean NOT NULL DEFAULT false,
    inverse_of   text REFERENCES relation_types (relation_id)
);

-- Knowledge-graph nodes: one per (type, normalized name). An entity-linking step can later
-- attach external ids here without touching the per-document tables.
CREATE TABLE entities (
    entity_id      bigserial PRIMARY KEY,
    type           text NOT NULL CHECK (type <> ''),
    norm_key       text NOT NULL CHECK (norm_key <> ''),
    canonical_name text NOT NULL,
    external_id    text,                               -- seam for entity linking (e.g. a Wikidata Q-id)
    UNIQUE (type, norm_key)
);

CREATE TABLE doc_entities (
    doc_id    text    NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    local_id  integer NOT NULL CHECK (local_id >= 0),  -- index of the entity within its document
    entity_id bigint  NOT NULL REFERENCES entities (entity_id),
    name      text    NOT NULL,
    type      text    NOT NULL,
    PRIMARY KEY (doc_id, local_id)
);
CREATE INDEX doc_entities_entity ON doc_entities (entity_id);

CREATE TABLE mentions (
    doc_id     text    NOT NULL,
    local_id   integer NOT NULL,
    sent_id    integer NOT NULL CHECK (sent_id >= 0),
    start_word integer NOT NULL CHECK (start_word >= 0),
    end_word   integer NOT NULL,
    char_start integer NOT NULL CHECK (char_start >= 0),
    char_end   integer NOT NULL,
    text       text    NOT NULL,
    type       text    NOT NULL,
    score      real    CHECK (score BETWEEN 0 AND 1),
    PRIMARY KEY (doc_id, local_id, sent_id, start_word, end_word),
    FOREIGN KEY (doc_id, local_id) REFERENCES doc_entities (doc_id, local_id) ON DELETE CASCADE,
    CHECK (end_word > start_word),
    CHECK (char_end > char_start)
);

CREATE TABLE facts (
    fact_id         bigserial PRIMARY KEY,
    head_entity_id  bigint  NOT NULL REFERENCES entities (entity_id),
    relation_id     text    NOT NULL REFERENCES relation_types (relation_id),
    tail_entity_id  bigint  NOT NULL REFERENCES entities (entity_id),
    support         integer NOT NULL DEFAULT 0 CHECK (support >= 0),   -- documents with evidence
    max_confidence  real    NOT NULL DEFAULT 0 CHECK (max_confidence BETWEEN 0 AND 1),
    mean_confidence real    NOT NULL DEFAULT 0 CHECK (mean_confidence BETWEEN 0 AND 1),
    first_seen      timestamptz,
    last_seen       timestamptz,
    UNIQUE (head_entity_id, relation_id, tail_entity_id),
    CHECK (mean_confidence <= max_confidence)
);
CREATE INDEX facts_tail ON facts (tail_entity_id);
CREATE INDEX facts_relation ON facts (relation_id);

CREATE TABLE fact_evidence (
    fact_id      bigint  NOT NULL REFERENCES facts (fact_id) ON DELETE CASCADE,
    doc_id       text    NOT NULL,  -- references documents through the two doc_entities keys below
    source_model text    NOT NULL CHECK (source_model <> ''),  -- spert, twostep, gold, ...
    run_id       bigint  REFERENCES extraction_runs (run_id) ON DELETE SET NULL,
    head_local   integer NOT NULL,
    tail_local   integer NOT NULL,
    confidence   real    NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    evidence_sentences integer[] NOT NULL DEFAULT '{}',
    extracted_at timestamptz NOT NULL,
    PRIMARY KEY (fact_id, doc_id, source_model),
    FOREIGN KEY (doc_id, head_local) REFERENCES doc_entities (doc_id, local_id) ON DELETE CASCADE,
    FOREIGN KEY (doc_id, tail_local) REFERENCES doc_entities (doc_id, local_id) ON DELETE CASCADE
);
CREATE INDEX fact_evidence_doc ON fact_evidence (doc_id);
CREATE INDEX fact_evidence_run ON fact_evidence (run_id);
