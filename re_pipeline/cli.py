"""``re-pipeline``: the command line. Each sub-command is a thin wrapper over the package.

Settings come from the environment (``RE_PIPELINE_*``, ``DATABASE_URL``); the
global flags below override them for one command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from re_pipeline.config import RUNTIMES, SAMPLE_CORPUS, Settings, positive_int

Handler = Callable[[argparse.Namespace], int | None]


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(database_url=args.database_url, home=args.home)


def _engine(args: argparse.Namespace, migrate: bool = True) -> Any:
    """The store's engine; read-only commands pass ``migrate=False`` (no DDL, so a read-only role can run them)."""
    from re_pipeline.kg import connect

    return connect(_settings(args), migrate=migrate)


def _print_counts(title: str, counts: dict[str, Any]) -> None:
    print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


# --------------------------------------------------------------------------- handlers


def cmd_db(args: argparse.Namespace) -> int:
    from re_pipeline.db import get_engine, redacted, resolve_url
    from re_pipeline.kg import schema

    settings = _settings(args)
    engine = get_engine(settings)
    print(f"database: {redacted(resolve_url(settings))}")
    if args.db_command == "init":
        applied = schema.apply(engine)
        print(f"applied {len(applied)} migration(s): {', '.join(m.path.name for m in applied) or 'none pending'}")
        return 0
    pending = 0
    for st in schema.status(engine):
        state = "applied " + st.applied_at if st.applied_at else "PENDING"
        pending += st.applied_at is None
        warn = "" if st.checksum_ok else "  (file changed since it was applied!)"
        print(f"  {st.migration.path.name:<32} {state}{warn}")
    print(f"{pending} pending")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from re_pipeline.pipeline import ingest_corpus

    settings = _settings(args).with_(shard_size=args.shard_size, max_doc_chars=args.max_doc_chars)
    if args.no_db and args.incremental:
        raise ValueError("--incremental skips documents already in the database: it cannot go with --no-db")
    engine = None if args.no_db else _engine(args)
    report = ingest_corpus(
        engine,
        args.corpus,
        args.out,
        incremental=args.incremental,
        source_name=args.source,
        shard_size=settings.shard_size,
        max_chars=settings.max_doc_chars,
        overwrite=args.overwrite,
    )
    print(report.summary())
    if report.counts["quarantined"]:
        print(f"quarantined records and reasons: {report.quarantine_file}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from re_pipeline.pipeline import load_shards

    counts = load_shards(_engine(args), args.results)
    _print_counts("load", counts)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from re_pipeline.pipeline import import_annotated

    report, counts = import_annotated(_engine(args), args.corpus, source_name=args.source)
    print(report.summary())
    _print_counts("import-annotated", counts)
    return 0


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        params[key] = None if value.lower() == "null" else value
    return params


def cmd_query(args: argparse.Namespace) -> int:
    from re_pipeline.kg import queries

    params = _params(args.param)
    if args.list:  # files only: no database needed
        for name, path in queries.named_queries().items():
            summary = path.read_text().splitlines()[0].lstrip("- ")
            print(f"{name:<28} {summary}  params: {', '.join(queries.query_params(path.read_text())) or '-'}")
        return 0
    engine = _engine(args, migrate=False)
    if args.name:
        result = queries.run_named(engine, args.name, params, _settings(args).query_timeout_ms)
    elif args.sql:
        sql = Path(args.sql[1:]).read_text() if args.sql.startswith("@") else args.sql
        result = queries.run_readonly(engine, sql, params, _settings(args).query_timeout_ms)
    else:
        raise SystemExit("give SQL (or @file.sql), --name QUERY, or --list")
    print(queries.render(result, args.format))
    return 0


def cmd_facts(args: argparse.Namespace) -> int:
    from re_pipeline.kg import queries

    result = queries.facts(
        _engine(args, migrate=False),
        entity=args.entity,
        relation=args.relation,
        min_confidence=args.min_confidence,
        limit=args.limit,
        timeout_ms=_settings(args).query_timeout_ms,
    )
    print(queries.render(result, args.format))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from re_pipeline.pipeline import extract

    settings = _settings(args).with_(
        device=args.device, max_tokens_per_batch=args.max_tokens_per_batch, cpu_runtime=args.cpu_runtime
    )
    stats = extract(args.shards, args.out, settings=settings, docs_per_batch=args.docs_per_batch)
    print(stats.summary())
    print(f"results: {args.out} (summary in extract_summary.json)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from re_pipeline.pipeline import run_corpus

    settings = _settings(args).with_(device=args.device)
    _ensure_models(settings)
    summary = run_corpus(_engine(args), args.corpus, Path(settings.home) / "work", settings=settings)
    print(summary["extract_summary"])
    for stage in ("ingest", "load"):
        _print_counts(stage, summary[stage])
    return 0


def _ensure_models(settings: Settings) -> None:
    from re_pipeline.registry import Registry

    if Registry(settings.models_dir).current("spert") is None:
        print(f"No trained models in {settings.models_dir}: training small ones on the sample corpus first")
        print("(re-pipeline train --profile quick: a few minutes on a CPU; --profile full trains the real ones)")
        _train(settings, "quick")


def _train(settings: Settings, profile: str, corpus: str | None = None, roles: tuple[str, ...] | None = None) -> None:
    from re_pipeline.model_training import ROLES, train_models

    results = train_models(
        profile, settings.models_dir, settings.encoder_path, corpus=corpus, roles=roles or ROLES, device=settings.device
    )
    for role, r in results.items():
        shown = ", ".join(f"{k} {v:.2f}" for k, v in r["metrics"].items())
        print(f"{role}: {r['name']} ({shown}){' -> current' if r['promoted'] else ' (current kept: it scores higher)'}")


def cmd_train(args: argparse.Namespace) -> int:
    _train(
        _settings(args).with_(device=args.device), args.profile, args.corpus, tuple(args.roles) if args.roles else None
    )
    return 0


def cmd_coref(args: argparse.Namespace) -> int:
    from re_pipeline.coref import Grouper, ScorerConfig, gold_pairs, train_scorer
    from re_pipeline.coref_metrics import coref_scores
    from re_pipeline.ingest import load_valid_corpus, parse_slice

    docs = load_valid_corpus(args.data)
    if args.coref_command == "train":
        train, dev = docs[parse_slice(args.train_slice)], docs[parse_slice(args.dev_slice)]
        scorer, losses = train_scorer(train, dev, ScorerConfig(), epochs=args.epochs)
        scorer.save(args.out)
        print(f"trained on {len(train)} documents: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        print(f"threshold {scorer.config.threshold} (tuned on {len(dev)} dev documents); saved to {args.out}")
        return 0
    docs = docs[parse_slice(args.slice)]
    grouper = Grouper.load(args.model)
    scores = coref_scores([d.gold.entities for d in docs], [grouper.group(gold_pairs(d)[0]) for d in docs])
    print(json.dumps(scores, indent=2))
    return 0


def cmd_evaluate_e2e(args: argparse.Namespace) -> int:
    from re_pipeline.e2e import evaluate
    from re_pipeline.extract import Extractor, ExtractStats
    from re_pipeline.ingest import load_valid_corpus, parse_slice

    settings = _settings(args).with_(device=args.device)
    docs = load_valid_corpus(args.gold)
    docs = docs[parse_slice(args.slice)]
    extractor = Extractor.from_registry(settings.models_dir, settings.device, cpu_runtime=settings.cpu_runtime)
    stats = ExtractStats()
    for i in range(0, len(docs), extractor.docs_per_batch):
        extractor.process(docs[i : i + extractor.docs_per_batch], stats)  # models see sentences only, never gold
    scores = evaluate(docs)
    print(json.dumps({"documents": len(docs), "models": extractor.versions, "scores": scores}, indent=2))
    return 0


DEMO_QUERIES = [
    ("Most-supported facts", "most_supported_facts", {"limit": 8}),
    ("Relations of an entity ('United States')", "relations_of_entity", {"entity": "United States", "limit": 8}),
    ("Facts the last run added", "facts_added_by_run", {"run_id": None, "limit": 5}),
    ("Model facts that gold annotations also state", "model_agreement_with_gold", {}),
]


def cmd_demo(args: argparse.Namespace) -> int:
    from re_pipeline.kg import queries
    from re_pipeline.pipeline import import_annotated, run_corpus

    settings = _settings(args).with_(device=getattr(args, "device", None))
    engine = _engine(args)
    print(f"1/2 Importing the sample corpus {SAMPLE_CORPUS.name} (Re-DocRED, MIT) with its gold annotations ...")
    report, counts = import_annotated(engine, SAMPLE_CORPUS, source_name="sample_gold")
    print(report.summary())
    _print_counts("loaded", counts)
    print("2/2 Running the pipeline (ingest -> extract -> load) on the same documents' text ...")
    _ensure_models(settings)
    summary = run_corpus(engine, SAMPLE_CORPUS, Path(settings.home) / "demo", settings=settings, source_name="sample")
    print(summary["extract_summary"])
    _print_counts("loaded", summary["load"])
    for title, name, params in DEMO_QUERIES:
        sql = queries.named_queries()[name].read_text()
        print(f"\n== {title}: sql/queries/{name}.sql ==\n{sql.strip()}\n-- params: {json.dumps(params)}")
        print(queries.render(queries.run_named(engine, name, params)))
    print("\nTry: re-pipeline facts --entity Berlin   |   re-pipeline query 'SELECT count(*) FROM facts'")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="re-pipeline",
        description="Turn document corpora into a queryable knowledge graph in PostgreSQL.",
        epilog="Without DATABASE_URL/--database-url an embedded PostgreSQL is started under --home.",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--home", help="working folder for the embedded database (default: .re_pipeline)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("db", help="create or inspect the knowledge-graph schema")
    p.add_argument("db_command", choices=["init", "status"], help="init: apply pending migrations; status: list them")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser(
        "ingest",
        help="normalize and sentence-split a corpus into Parquet shards",
        description="Read JSONL ({id,title,text,date}), .txt files, DocRED-format .json or Parquet (file, folder or "
        "glob), quarantine bad records with a reason, and write shard-NNNNN.parquet files.",
    )
    p.add_argument("corpus", help="a file, a folder (searched recursively) or a glob pattern")
    p.add_argument("--out", required=True, help="output folder for shards, quarantine.jsonl, ingest_report.json")
    p.add_argument("--source", help="source name, the prefix of document ids (default: the corpus file/folder name)")
    p.add_argument("--shard-size", type=positive_int, help="documents per shard (default 1000)")
    p.add_argument(
        "--max-doc-chars", type=positive_int, help="quarantine documents longer than this (default 1,000,000)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    p.add_argument("--incremental", action="store_true", help="skip documents already loaded with the same content")
    p.add_argument("--no-db", action="store_true", help="do not touch the database (quarantine goes to the file only)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("load", help="bulk-load extraction results (Parquet shards) into the knowledge graph")
    p.add_argument("results", nargs="+", help="result shards or folders of them")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser(
        "import-annotated", help="ingest a DocRED-format corpus and load its gold entities and relations"
    )
    p.add_argument("corpus", help="DocRED-format JSON file (or folder/glob of them)")
    p.add_argument("--source", help="source name (default: the file name)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "query",
        help="run read-only SQL over the knowledge graph",
        description="Runs in a READ ONLY transaction. Example: re-pipeline query "
        '"SELECT head, relation, tail FROM triples LIMIT 5"; or --name most_supported_facts --param limit=5.',
    )
    p.add_argument("sql", nargs="?", help="SQL text, or @path/to/file.sql")
    p.add_argument("--name", help="an example query from sql/queries (see --list)")
    p.add_argument("--list", action="store_true", help="list the example queries and their parameters")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="bind :NAME (repeatable)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("facts", help="list deduplicated facts, filtered")
    p.add_argument("--entity", help="entity name (substring, case-insensitive) as head or tail")
    p.add_argument("--relation", help="relation id (P17) or name (country)")
    p.add_argument("--min-confidence", type=float, default=0.0)
    p.add_argument("--limit", type=positive_int, default=50)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_facts)

    p = sub.add_parser(
        "demo",
        help="load the bundled sample corpus (gold, and through the pipeline) and show example queries",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "extract",
        help="the extraction batch job: ingested shards -> entities and relations",
        description="SpERT -> coreference grouping -> DocRED two-step -> merge, with the registry's current models. "
        "Result shards are written atomically; finished ones are skipped on a rerun.",
    )
    p.add_argument("shards", nargs="+", help="ingested shards or folders of them")
    p.add_argument("--out", required=True, help="folder for result shards")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto (CUDA with bf16 when present)")
    p.add_argument(
        "--docs-per-batch", type=positive_int, default=32, help="documents processed together (memory bound)"
    )
    p.add_argument(
        "--max-tokens-per-batch",
        type=positive_int,
        help="padded subword tokens per encoder batch (default 16,384; RE_PIPELINE_MAX_TOKENS_PER_BATCH)",
    )
    p.add_argument(
        "--cpu-runtime",
        choices=RUNTIMES,
        help="where encoders run on a CPU: torch (default) or onnx, ONNX Runtime (RE_PIPELINE_CPU_RUNTIME)",
    )
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "run",
        help="ingest -> extract -> load a corpus in one command (trains quick models first if there are none)",
    )
    p.add_argument("corpus", help="file, folder or glob")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "train",
        help="train and register the pipeline's models (SpERT, coreference, DocRED two-step)",
        description="quick: small models on the bundled sample corpus, minutes on a CPU (a demo). full: the papers' "
        "settings on a DocRED-format corpus (default ../shared/data/redocred/dev_revised.json, first 400 documents "
        "to train, last 100 for dev); GPU recommended. A new model becomes current only if it beats the current one.",
    )
    p.add_argument("--profile", choices=["quick", "full"], default="quick")
    p.add_argument("--corpus", help="DocRED-format JSON to train on (default per profile)")
    p.add_argument("--roles", nargs="+", choices=["spert", "coref", "docred"], help="default: all three")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("coref", help="train or evaluate the coreference pair scorer on DocRED clusters")
    csub = p.add_subparsers(dest="coref_command", required=True)
    c = csub.add_parser("train", help="fit the scorer on gold clusters; tune the clustering threshold on dev")
    c.add_argument("data", help="DocRED-format JSON")
    c.add_argument("--train-slice", default="0:400", help="documents to train on (python slice, default 0:400)")
    c.add_argument("--dev-slice", default="400:500", help="documents to tune on (default 400:500)")
    c.add_argument("--epochs", type=positive_int, default=30)
    c.add_argument("--out", required=True, help="model folder")
    c = csub.add_parser("evaluate", help="MUC, B3, CEAF-e, CoNLL F1 and exact-cluster F1 from gold mentions")
    c.add_argument("data", help="DocRED-format JSON")
    c.add_argument("--slice", default=":", help="documents to evaluate (python slice)")
    c.add_argument("--model", help="scorer folder (default: the rules alone)")
    p.set_defaults(func=cmd_coref)

    p = sub.add_parser(
        "evaluate-e2e",
        help="run the extraction job on a DocRED-format corpus's text and score it against its gold annotations",
    )
    p.add_argument("--gold", required=True, help="DocRED-format JSON")
    p.add_argument("--slice", default=":", help="documents to evaluate (python slice, e.g. 400:500)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_evaluate_e2e)

    from re_pipeline.baselines.cli import register as register_baselines
    from re_pipeline.docred.cli import register as register_docred
    from re_pipeline.spert.cli import register as register_spert

    for register in (register_spert, register_docred, register_baselines):
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        import sqlalchemy.exc

        if isinstance(e, sqlalchemy.exc.DBAPIError):
            print(f"database error: {e.orig}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
