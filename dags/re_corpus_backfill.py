"""Airflow DAG: manual backfill with validated params (source, date range, reprocess, model version, shard size)."""

from re_pipeline.orchestration import backfill_dag

dag = backfill_dag()
