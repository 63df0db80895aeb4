"""Airflow 3 DAGs, built by one factory; the files in ``dags/`` only call it.

Task graph (the same for the nightly and the backfill DAG)::

    discover -> shard -> extract (mapped over shards, pool re_gpu, gpu queue) -> load (mapped) -> finalize
    shard, extract, load -> close_failed (runs only when one of them failed for good)

Tasks pass paths and small dicts through XCom, never documents. Every task is
idempotent: ``shard`` rewrites its run folder, ``extract`` skips a result shard already
extracted from the same input file, ``load`` is idempotent by content, ``finalize``
recomputes from the database. Heavy imports (torch, transformers, spaCy) happen inside tasks, so
parsing ``dags/`` stays fast and touches neither the database nor the models.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, Param, dag, get_current_context, task

from re_pipeline.config import SAMPLE_CORPUS, Settings

#: Downstream DAGs can be scheduled on this: it is updated when a corpus run finishes.
KNOWLEDGE_GRAPH = Asset(name="re_pipeline_knowledge_graph", uri="re-pipeline://knowledge-graph")
CONNECTION_ID = "re_pipeline_db"
GPU_POOL = "re_gpu"
DEFAULT_ARGS = {
    "owner": "re_pipeline",
    "retries": 2,
    "retry_delay": timedelta(seconds=Settings.load().retry_delay_s),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def database_url() -> str | None:
    """The Airflow connection ``re_pipeline_db`` when defined, else None (DATABASE_URL / embedded)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(CONNECTION_ID)
    except AirflowNotFoundException:
        return None
    return conn.get_uri()


def _settings() -> Settings:
    url = database_url()
    return Settings.load(database_url=url) if url else Settings.load()


def _engine(settings: Settings) -> Any:
    from re_pipeline.kg import connect

    return connect(settings)


def _run_dir(settings: Settings, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Path(settings.home).resolve() / "runs" / safe


def inject_failure(task_id: str) -> None:
    """Chaos testing: ``RE_PIPELINE_INJECT_FAILURE=<task id>`` fails that task's first try
    after its work is done, as a worker lost before reporting success would;
    ``<task id>:always`` fails every try, as a task that cannot succeed."""
    wanted = os.environ.get("RE_PIPELINE_INJECT_FAILURE", "")
    if wanted == f"{task_id}:always" or (wanted == task_id and get_current_context()["ti"].try_number == 1):
        raise RuntimeError(f"injected failure in {task_id} (RE_PIPELINE_INJECT_FAILURE={wanted})")


def corpus_dag(dag_id: str, *, schedule: str | None, params: dict[str, Param], description: str) -> DAG:
    """A corpus DAG: nightly (``schedule`` set) or backfill (``schedule`` None, manual)."""

    @dag(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params=params,
        tags=["re_pipeline", "knowledge-graph"],
        doc_md=__doc__,
    )
    def build() -> None:
        @task
        def discover() -> dict[str, Any]:
            """Open the run record and fix this run's folder and options."""
            from re_pipeline.kg.runs import start_run
            from re_pipeline.registry import Registry

            ctx = get_current_context()
            p = ctx["params"]
            settings = _settings()
            engine = _engine(settings)
            pinned = (p["model_version"],) if p.get("model_version") else ()
            versions = Registry(settings.models_dir).versions(pinned)
            run_id = start_run(engine, f"airflow:{dag_id}", dag_run_id=ctx["run_id"], model_versions=versions)
            return {
                "run_id": run_id,
                "dir": str(_run_dir(settings, ctx["run_id"])),
                "source": p["source"],
                "reprocess": bool(p.get("reprocess", False)),
                "shard_size": int(p.get("shard_size") or settings.shard_size),
                "date_from": p.get("date_from"),
                "date_to": p.get("date_to"),
                # every extract task uses these, even if a training run promotes another model meanwhile
                "pinned": sorted(versions.values()),
            }

        @task
        def shard(info: dict[str, Any]) -> list[str]:
            """Ingest the corpus into shards; incremental unless ``reprocess``."""
            from re_pipeline.pipeline import ingest_corpus

            settings = _settings()
            report = ingest_corpus(
                _engine(settings),
                info["source"],
                Path(info["dir"]) / "shards",
                incremental=not info["reprocess"],
                overwrite=True,
                progress=False,
                shard_size=info["shard_size"],
                max_chars=settings.max_doc_chars,
                date_range=(info["date_from"], info["date_to"]),
                run_id=info["run_id"],
            )
            print(report.summary())
            return report.shards

        @task(
            pool=GPU_POOL,
            queue=Settings.load().gpu_queue,
            retries=3,
            execution_timeout=timedelta(hours=4),
        )
        def extract(shard_path: str, info: dict[str, Any]) -> str:
            """One shard through the extraction job; a finished result shard is kept as is."""
            from re_pipeline.pipeline import extract as run_extract

            out = Path(info["dir"]) / "results"
            stats = run_extract([shard_path], out, settings=_settings(), progress=False, pinned=tuple(info["pinned"]))
            print(stats.summary())
            inject_failure("extract")
            return str(out / Path(shard_path).name)

        @task
        def load(result_path: str, info: dict[str, Any]) -> dict[str, int]:
            """Load one result shard in one transaction (idempotent)."""
            from re_pipeline.pipeline import load_shards

            counts = load_shards(_engine(_settings()), [result_path], progress=False, run_id=info["run_id"])
            inject_failure("load")
            return {k: int(v) for k, v in counts.items()}

        @task(outlets=[KNOWLEDGE_GRAPH], trigger_rule="none_failed")  # also after zero shards
        def finalize(loaded: list[dict[str, int]], info: dict[str, Any]) -> dict[str, Any]:
            """Close the run record; fail loudly when the data-quality checks fail."""
            from re_pipeline.quality import close_run

            settings = _settings()
            return close_run(_engine(settings), info["run_id"], loaded, settings.min_relation_rate_ratio)

        @task(trigger_rule="one_failed")
        def close_failed(info: dict[str, Any]) -> None:
            """Close the run record as failed once a shard, extract or load task has failed for good
            (``finalize`` does not run then, and the record would stay ``running``)."""
            from re_pipeline.kg.runs import finish_run

            finish_run(_engine(_settings()), info["run_id"], "failed", {"failed_in": "see the Airflow task logs"})

        info = discover()
        shards = shard(info)
        results = extract.partial(info=info).expand(shard_path=shards)
        loaded = load.partial(info=info).expand(result_path=results)
        finalize(loaded, info)
        [shards, results, loaded] >> close_failed(info)

    return build()


def nightly_dag() -> DAG:
    settings = Settings.load()
    return corpus_dag(
        "re_corpus_nightly",
        schedule=settings.schedule,
        description="Nightly: new or changed documents of the corpus into the knowledge graph",
        params={
            "source": Param(settings.corpus or str(SAMPLE_CORPUS), type="string", minLength=1),
            "shard_size": Param(settings.shard_size, type="integer", minimum=1),
        },
    )


def backfill_dag() -> DAG:
    return corpus_dag(
        "re_corpus_backfill",
        schedule=None,
        description="Manual backfill: a corpus path or glob, optionally a date range, optionally reprocessing",
        params={
            "source": Param(str(SAMPLE_CORPUS), type="string", minLength=1, description="file, folder or glob"),
            "date_from": Param(None, type=["null", "string"], format="date", description="first document date"),
            "date_to": Param(None, type=["null", "string"], format="date", description="last document date"),
            "reprocess": Param(False, type="boolean", description="re-extract documents already loaded"),
            "model_version": Param(None, type=["null", "string"], description="registry model name (default current)"),
            "shard_size": Param(1000, type="integer", minimum=1, maximum=100_000),
        },
    )


def training_dag() -> DAG:
    """Manual: train SpERT, the coreference scorer and the two-step model, each promoted only if better."""

    @dag(
        dag_id="re_train_models",
        description="Train, evaluate on dev, and promote models that beat the current ones",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "retries": 1},
        params={
            "profile": Param("quick", enum=["quick", "full"], description="quick: sample corpus; full: paper settings"),
            "corpus": Param(None, type=["null", "string"], description="DocRED-format JSON (default per profile)"),
        },
        tags=["re_pipeline", "training"],
        doc_md=training_dag.__doc__,
    )
    def build() -> None:
        def train_role(role: str) -> Any:
            @task(task_id=f"train_{role}", pool=GPU_POOL, queue=Settings.load().gpu_queue)
            def train() -> dict[str, Any]:
                from re_pipeline.model_training import train_models

                p = get_current_context()["params"]
                settings = Settings.load()
                result = train_models(
                    p["profile"], settings.models_dir, settings.encoder_path, corpus=p.get("corpus"), roles=(role,),
                    device=settings.device,
                )  # fmt: skip
                return result[role]

            return train()

        @task
        def report(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
            for r in results:
                state = "promoted to current" if r["promoted"] else "kept the current model (it scores higher)"
                print(f"{r['name']}: {r['metrics']} -> {state}")
            return results

        report([train_role(role) for role in ("spert", "coref", "docred")])

    return build()
