"""Airflow DAG: nightly corpus run, new or changed documents into the knowledge graph (re_pipeline.orchestration)."""

from re_pipeline.orchestration import nightly_dag

dag = nightly_dag()
