"""Orchestration overhead: the nightly DAG over 1,000 documents against the same stages run from the CLI.

Corpus: the 500 Re-DocRED dev_revised.json documents, then the same again under other titles (1,000
documents with distinct ids, in one DocRED-format file; the job sees their sentences only). Models: the trained SpERT,
coreference and two-step models given below, registered as current in a scratch registry.

Each side starts from an empty embedded PostgreSQL and the same settings (shard size 100, 2 CPU threads):
- DAG: `airflow db migrate`, the `re_gpu` pool and `airflow dags reserialize` (setup, not timed), then
  `airflow dags test re_corpus_nightly` (timed: discover -> shard -> 10 mapped extracts -> 10 mapped loads ->
  finalize, each task in Airflow's task runner, models loaded per extract task);
- CLI: `re-pipeline ingest`, `re-pipeline extract`, `re-pipeline load` (each timed; the sum).
Overhead = DAG wall time / CLI sum. Both sides load the same numbers of documents and facts (checked).

    python bench/dag_bench.py --spert models/spert-docred --docred models/docred-twostep --coref models/coref-redocred
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import median, publish  # noqa: E402

REDOCRED = ROOT.parent / "shared" / "data" / "redocred" / "dev_revised.json"
BIN = Path(sys.executable).parent


def make_corpus(path: Path, docs: int) -> Path:
    """``docs`` documents: the dev set's, repeated under new titles (a document's id is its title)."""
    raw = json.loads(REDOCRED.read_text())
    out = [{**d, "title": f"{d['title']} ({i // len(raw) + 1})"} for i in range(docs) for d in [raw[i % len(raw)]]]
    path.write_text(json.dumps(out))
    return path


def make_registry(folder: Path, models: dict[str, str]) -> Path:
    from re_pipeline.registry import KEY_METRIC, Registry

    folder.mkdir(parents=True)
    registry = Registry(folder)
    for role, path in models.items():
        (folder / Path(path).name).symlink_to(Path(path).resolve())
        registry.register(role, Path(path).name, {KEY_METRIC[role]: 0.0}, promote="always")  # speed, not accuracy
    return folder


def environment(home: Path, models: Path, corpus: Path, shard_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the embedded PostgreSQL under home
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "RE_PIPELINE_HOME": str(home / "re"),
            "RE_PIPELINE_MODELS_DIR": str(models),
            "RE_PIPELINE_CORPUS": str(corpus),
            "RE_PIPELINE_SHARD_SIZE": str(shard_size),
            "HF_HUB_OFFLINE": "1",
            "TQDM_DISABLE": "1",
        }
    )
    return env


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as out:
        subprocess.run(cmd, env=env, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.perf_counter() - t0


def kg_counts(env: dict[str, str]) -> dict[str, int]:
    script = (
        "import json; from re_pipeline.config import Settings; from re_pipeline.kg import connect;"
        "import sqlalchemy as sa; e = connect(Settings.load());"
        "c = e.connect(); print(json.dumps({t: c.execute(sa.text(f'SELECT count(*) FROM {t}')).scalar()"
        " for t in ('documents', 'entities', 'mentions', 'facts', 'fact_evidence')}))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def task_seconds(home: Path) -> dict[str, float]:
    """Sum of task durations per task id, from Airflow's own metadata database."""
    import sqlite3

    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, sum((julianday(end_date) - julianday(start_date)) * 86400) FROM task_instance"
            " GROUP BY task_id"
        ).fetchall()
    return {task: float(seconds) for task, seconds in rows}


def dag_run(base: Path, models: Path, corpus: Path, shard_size: int) -> tuple[float, dict, dict]:
    env = environment(base, models, corpus, shard_size)
    log = base / "dag.log"
    airflow = str(BIN / "airflow")
    for cmd in (["db", "migrate"], ["pools", "set", "re_gpu", "1", "GPU slots"], ["dags", "reserialize"]):
        subprocess.run([airflow, *cmd], env=env, check=True, capture_output=True)
    seconds = timed([airflow, "dags", "test", "re_corpus_nightly"], env, log)
    print(f"DAG: {seconds:.1f} s", flush=True)
    return seconds, kg_counts(env), task_seconds(base)


def cli_run(base: Path, models: Path, corpus: Path, shard_size: int) -> tuple[dict[str, float], dict]:
    base.mkdir(parents=True)
    env = environment(base, models, corpus, shard_size)
    log = base / "cli.log"
    cli = str(BIN / "re-pipeline")
    shards, results = base / "shards", base / "results"
    stages = {
        "ingest": [cli, "ingest", str(corpus), "--out", str(shards), "--shard-size", str(shard_size)],
        "extract": [cli, "extract", str(shards), "--out", str(results)],
        "load": [cli, "load", str(results)],
    }
    seconds = {stage: timed(cmd, env, log) for stage, cmd in stages.items()}
    return seconds, kg_counts(env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spert", required=True, help="trained DocRED SpERT model folder")
    ap.add_argument("--docred", required=True, help="trained two-step model folder")
    ap.add_argument("--coref", required=True, help="trained coreference scorer folder")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--runs", type=int, default=1, help="DAG and CLI runs, alternating")
    ap.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = ap.parse_args()

    ratios, dag_secs, cli_secs, cli_stages, tasks = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="re-dag-bench-") as tmp:
        work = Path(tmp)
        corpus = make_corpus(work / "corpus.json", args.docs)
        models = make_registry(work / "models", {"spert": args.spert, "docred": args.docred, "coref": args.coref})
        for run in range(args.runs):
            dag_s, dag_counts, per_task = dag_run(work / f"dag{run}", models, corpus, args.shard_size)
            stage_s, cli_counts = cli_run(work / f"cli{run}", models, corpus, args.shard_size)
            if dag_counts != cli_counts:
                raise SystemExit(f"the two sides loaded different rows: DAG {dag_counts}, CLI {cli_counts}")
            cli_s = sum(stage_s.values())
            dag_secs.append(dag_s)
            cli_secs.append(cli_s)
            cli_stages.append(stage_s)
            tasks.append(per_task)
            ratios.append(dag_s / cli_s)
            print(f"run {run}: DAG {dag_s:.1f} s, CLI {cli_s:.1f} s ({stage_s}), ratio {dag_s / cli_s:.2f}")
            print(f"run {run}: tasks {per_task}; rows {dag_counts}")

    def stage_median(stage: str) -> float:
        return median([s[stage] for s in cli_stages])

    def task_median(task: str) -> float:
        return median([t.get(task, 0.0) for t in tasks])

    body = f"""
{args.docs:,} documents (Re-DocRED dev_revised.json's 500, then again under other titles), shards of
{args.shard_size}, models {Path(args.spert).name}, {Path(args.coref).name}, {Path(args.docred).name}; each side on
an empty embedded PostgreSQL; both loaded the same rows ({", ".join(f"{k} {v:,}" for k, v in dag_counts.items())}).

| | seconds (median of {args.runs}) | runs |
|---|---|---|
| DAG: `airflow dags test re_corpus_nightly` | **{median(dag_secs):.1f}** | {", ".join(f"{s:.1f}" for s in dag_secs)} |
| CLI: ingest + extract + load | **{median(cli_secs):.1f}** | {", ".join(f"{s:.1f}" for s in cli_secs)} |

Orchestration overhead, DAG / CLI in the same run: **{median(ratios):.2f}x** (median; runs:
{", ".join(f"{r:.2f}" for r in ratios)}). Target: <= 1.2x.

Where the time goes (median seconds; DAG tasks summed over their mapped instances, from Airflow's metadata DB):

| stage | CLI | DAG tasks |
|---|---|---|
| discover | - | {task_median("discover"):.1f} |
| ingest / shard | {stage_median("ingest"):.1f} | {task_median("shard"):.1f} |
| extract | {stage_median("extract"):.1f} | {task_median("extract"):.1f} |
| load | {stage_median("load"):.1f} | {task_median("load"):.1f} |
| finalize | - | {task_median("finalize"):.1f} |

The rest of the DAG's wall time is Airflow itself: the `dags test` process start, DAG parsing, scheduling
and the per-task runner.
"""
    publish("Orchestration: nightly DAG vs CLI", body, args.no_write)


if __name__ == "__main__":
    main()
