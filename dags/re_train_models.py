"""Airflow DAG: manual model training; each new model is promoted only if it beats the current one."""

from re_pipeline.orchestration import training_dag

dag = training_dag()
