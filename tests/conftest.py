"""Shared fixtures: a real PostgreSQL (pgserver in a temporary folder) for the whole session."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Airflow imported in-process (DagBag) keeps its files in a throwaway home, not ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="re-test-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

KG_TABLES = [
    "fact_evidence",
    "facts",
    "mentions",
    "doc_entities",
    "entities",
    "documents",
    "quarantine",
    "extraction_runs",
]


@pytest.fixture(scope="session")
def tokenizer():
    """The real MiniLM tokenizer (tiny test encoders use its vocabulary)."""
    from tiny_models import tokenizer as load

    return load()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models are fastest on one thread, and the test machine is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a PostgreSQL started for this test session and deleted after it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    from re_pipeline.db import sqlalchemy_url

    folder = tempfile.mkdtemp(prefix="re-test-pg-")
    server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield sqlalchemy_url(server.get_uri())
    finally:
        server.cleanup()
        # pgserver logs again from its atexit hook, after pytest has closed the log streams
        logging.getLogger("pgserver").disabled = True


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> sa.engine.Engine:
    from re_pipeline.kg import schema

    engine = sa.create_engine(database_url)
    schema.apply(engine)
    return engine


@pytest.fixture()
def engine(migrated_engine: sa.engine.Engine) -> sa.engine.Engine:
    """The session database with every knowledge-graph table emptied (relation types kept)."""
    with migrated_engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(KG_TABLES)} RESTART IDENTITY CASCADE")
    return migrated_engine


def dump_tables(engine: sa.engine.Engine, tables: list[str] | None = None) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: to compare database states exactly."""
    out = {}
    with engine.connect() as conn:
        for table in tables or [t for t in KG_TABLES if t != "extraction_runs"] + ["relation_types"]:
            rows = conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


KG_CONTENT = {
    "documents": "SELECT doc_id, content_hash, results_hash, text FROM documents",
    "entities": "SELECT type, norm_key, canonical_name FROM entities",
    "doc_entities": "SELECT d.doc_id, d.local_id, e.type, e.norm_key, d.name FROM doc_entities d JOIN entities e"
    " USING (entity_id)",
    "mentions": "SELECT doc_id, local_id, sent_id, start_word, end_word, char_start, char_end, text, type, score"
    " FROM mentions",
    "facts": "SELECT head, head_type, relation_id, tail, tail_type, support, confidence, mean_confidence FROM triples",
    "evidence": "SELECT t.head, t.relation_id, t.tail, e.doc_id, e.source_model, e.confidence, e.evidence_sentences"
    " FROM fact_evidence e JOIN triples t USING (fact_id)",
}


def kg_content(engine: sa.engine.Engine) -> dict[str, list[tuple]]:
    """The knowledge graph by natural keys: equal for equal content, whatever the ids, runs and times."""
    with engine.connect() as conn:
        return {k: sorted((tuple(r) for r in conn.exec_driver_sql(sql)), key=repr) for k, sql in KG_CONTENT.items()}
