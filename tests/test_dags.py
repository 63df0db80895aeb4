"""Airflow DAGs: integrity, and real runs with ``airflow dags test`` against a real metadata DB.

The runs use tiny random models (the plumbing is under test, not accuracy), the
session's PostgreSQL as the knowledge graph and Airflow's own SQLite metadata DB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ROOT, dump_tables, kg_content
from tiny_models import tiny_registry

from re_pipeline.config import SAMPLE_CORPUS

DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_dag_files_parse_fast_without_heavy_imports() -> None:
    """Parsing must not import torch/transformers/spaCy, touch the database, or take long."""
    script = textwrap.dedent(
        f"""
        import importlib.util, json, sys, time
        import airflow.sdk  # the DAG processor has Airflow loaded already
        seconds = {{}}
        for path in {[str(p) for p in DAG_FILES]!r}:
            start = time.perf_counter()
            spec = importlib.util.spec_from_file_location(path, path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            seconds[path] = time.perf_counter() - start
        heavy = [m for m in ("torch", "transformers", "spacy", "psycopg", "pgserver") if m in sys.modules]
        print(json.dumps({{"seconds": seconds, "heavy": heavy}}))
        """
    )
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}  # any connection would fail
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert max(result["seconds"].values()) < 1.0, result["seconds"]


def test_dag_integrity() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"re_corpus_nightly", "re_corpus_backfill", "re_train_models"}
    nightly = bag.dags["re_corpus_nightly"]
    assert nightly.catchup is False and nightly.max_active_runs == 1 and nightly.schedule == "@daily"
    assert bag.dags["re_corpus_backfill"].schedule is None
    for dag in bag.dags.values():
        assert dag.tags and "re_pipeline" in dag.tags
        for t in dag.tasks:
            assert t.owner == "re_pipeline" and t.retries >= 1, t.task_id
        order = [t.task_id for t in dag.topological_sort()]  # raises on a cycle
        if dag.dag_id == "re_train_models":
            assert set(order) == {"train_spert", "train_coref", "train_docred", "report"} and order[-1] == "report"
            continue
        assert order.index("discover") < order.index("extract") < order.index("load") < order.index("finalize")
        extract = dag.get_task("extract")
        assert extract.pool == "re_gpu" and extract.execution_timeout is not None
        assert dag.get_task("finalize").outlets


def test_backfill_params_are_validated() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["re_corpus_backfill"]
    params = ParamsDict(dag.params)
    with pytest.raises(ParamValidationError, match="less than the minimum of 1"):
        params.update({"shard_size": 0})
    with pytest.raises(ParamValidationError, match="date"):
        params.update({"date_from": "last tuesday"})
    params.update({"date_from": "2024-01-31", "reprocess": True})
    assert params.validate()["reprocess"] is True


# --------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> dict[str, str]:
    base = tmp_path_factory.mktemp("airflow")
    corpus = base / "corpus.json"
    corpus.write_text(json.dumps(json.loads(SAMPLE_CORPUS.read_text())[:3]))
    tiny_registry(base / "models")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(base / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "DATABASE_URL": database_url,
        "RE_PIPELINE_HOME": str(base / "re"),
        "RE_PIPELINE_MODELS_DIR": str(base / "models"),
        "RE_PIPELINE_CORPUS": str(corpus),
        "RE_PIPELINE_RETRY_DELAY_S": "1",
        "HF_HUB_OFFLINE": "1",
    }
    for cmd in (["db", "migrate"], ["pools", "set", "re_gpu", "2", "GPU slots"], ["dags", "reserialize"]):
        subprocess.run([AIRFLOW, *cmd], env=env, check=True, capture_output=True)
    return env


def dags_test(env: dict[str, str], dag_id: str, conf: dict | None = None) -> str:
    cmd = [AIRFLOW, "dags", "test", dag_id]
    if conf is not None:
        cmd += ["-c", json.dumps(conf)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def _succeeded(log: str) -> bool:
    return "DagRun Finished" in log and "state=success" in log.split("DagRun Finished", 1)[1][:600]


def _scalar(engine: sa.engine.Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


@pytest.mark.integration
def test_nightly_twice_then_backfill_and_fault(airflow_env: dict[str, str], engine: sa.engine.Engine) -> None:
    log = dags_test(airflow_env, "re_corpus_nightly")
    assert _succeeded(log), log[-3000:]
    assert _scalar(engine, "SELECT count(*) FROM documents") == 3
    first, first_content = dump_tables(engine), kg_content(engine)
    assert _scalar(engine, "SELECT status FROM extraction_runs ORDER BY run_id LIMIT 1") == "success"

    # the second nightly run finds nothing new and changes no table
    log = dags_test(airflow_env, "re_corpus_nightly")
    assert _succeeded(log) and "3 unchanged (already loaded) skipped" in log
    assert dump_tables(engine) == first

    # a backfill with reprocess and another model replaces evidence without duplicating facts
    from re_pipeline.registry import Registry

    registry = Registry(Path(airflow_env["RE_PIPELINE_MODELS_DIR"]))
    other = json.loads((registry.root / "docred-tiny" / "config.json").read_text())
    other["thresholds"] = {"step1": 0.95, "step2": 0.95}
    (registry.root / "docred-strict").mkdir()
    for item in (registry.root / "docred-tiny").iterdir():
        (registry.root / "docred-strict" / item.name).symlink_to(item)
    (registry.root / "docred-strict" / "config.json").unlink()
    (registry.root / "docred-strict" / "config.json").write_text(json.dumps(other))
    registry.register("docred", "docred-strict", {"f1": 0.0}, promote="never")
    before_runs = _scalar(engine, "SELECT max(run_id) FROM extraction_runs")
    conf = {"source": airflow_env["RE_PIPELINE_CORPUS"], "reprocess": True, "model_version": "docred-strict"}
    log = dags_test(airflow_env, "re_corpus_backfill", conf)
    assert _succeeded(log), log[-3000:]
    new_run = _scalar(engine, "SELECT max(run_id) FROM extraction_runs")
    assert new_run > before_runs
    assert _scalar(engine, f"SELECT count(*) FROM fact_evidence WHERE run_id <> {new_run}") == 0
    assert _scalar(engine, "SELECT count(*) FROM fact_evidence") < first["fact_evidence"].__len__()
    dupes = (
        "SELECT count(*) FROM (SELECT 1 FROM facts"
        " GROUP BY head_entity_id, relation_id, tail_entity_id HAVING count(*) > 1) d"
    )
    assert _scalar(engine, dupes) == 0
    wrong_support = (
        "SELECT count(*) FROM facts f WHERE support <>"
        " (SELECT count(DISTINCT doc_id) FROM fact_evidence e WHERE e.fact_id = f.fact_id)"
    )
    assert _scalar(engine, wrong_support) == 0

    # the extract task dies on its first try after writing its output; the retry neither loses nor duplicates
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE fact_evidence, facts, mentions, doc_entities, entities, documents CASCADE")
    log = dags_test({**airflow_env, "RE_PIPELINE_INJECT_FAILURE": "extract"}, "re_corpus_nightly")
    assert "injected failure in extract" in log and _succeeded(log)
    assert kg_content(engine) == first_content


@pytest.mark.integration
def test_a_run_whose_load_cannot_succeed_is_recorded_as_failed(
    airflow_env: dict[str, str], engine: sa.engine.Engine
) -> None:
    env = {**airflow_env, "RE_PIPELINE_INJECT_FAILURE": "load:always"}
    out = subprocess.run([AIRFLOW, "dags", "test", "re_corpus_nightly"], env=env, capture_output=True, text=True)
    log = out.stdout + out.stderr
    assert "injected failure in load" in log and not _succeeded(log), log[-3000:]
    assert _scalar(engine, "SELECT status FROM extraction_runs ORDER BY run_id DESC LIMIT 1") == "failed"


@pytest.mark.integration
def test_bad_records_are_quarantined_and_reported(
    airflow_env: dict[str, str], engine: sa.engine.Engine, tmp_path: Path
) -> None:
    corpus = tmp_path / "news.jsonl"
    texts = [" ".join(" ".join(s) for s in d["sents"]) for d in json.loads(SAMPLE_CORPUS.read_text())[:3]]
    good = [json.dumps({"id": f"ok{i}", "text": t}).encode() for i, t in enumerate(texts)]
    corpus.write_bytes(b"\n".join([*good, b'{"id": "broken", "text": ', b'{"id": "empty", "text": ""}']) + b"\n")
    log = dags_test(airflow_env, "re_corpus_backfill", {"source": str(corpus)})
    assert _succeeded(log) and "2 quarantined" in log
    with engine.connect() as conn:
        reasons = conn.execute(sa.text("SELECT reason FROM quarantine ORDER BY quarantine_id")).scalars().all()
    assert reasons[0].startswith("malformed JSON") and reasons[1] == "empty text"
    assert _scalar(engine, "SELECT count(*) FROM documents") == 3


def test_killed_load_leaves_the_database_as_before(engine: sa.engine.Engine, database_url: str, tmp_path: Path) -> None:
    """SIGKILL a loader in the middle of its transaction: PostgreSQL rolls it back."""
    from re_pipeline.pipeline import import_annotated

    import_annotated(engine, SAMPLE_CORPUS, work_dir=tmp_path / "a", progress=False)
    before = dump_tables(engine)
    script = textwrap.dedent(
        f"""
        import sqlalchemy as sa
        from re_pipeline.kg import loader
        from re_pipeline.ingest import load_corpus
        from re_pipeline.kg.loader import gold_as_predicted
        docs, _ = load_corpus({str(SAMPLE_CORPUS)!r}, source_name="other")
        loader._FINISH_SQL = [*loader._FINISH_SQL, "SELECT pg_sleep(60)"]
        loader.load_documents(sa.create_engine({database_url!r}), [gold_as_predicted(d) for d in docs], None)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if _scalar(engine, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"):
                break
            assert proc.poll() is None, "the loader ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the loader never reached its last statement")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 30
    while _scalar(engine, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"):
        assert time.time() < deadline, "the killed session never ended"
        # the server notices a dead client only when it next talks to it: end the orphan session
        orphan = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"
        _scalar(engine, orphan)
        time.sleep(0.2)
    assert dump_tables(engine) == before
