"""Loader throughput: the bulk loader (COPY + set-based upserts) against row-by-row INSERTs.

Synthetic but realistic results: documents with 20 entities and 20 relations each;
entity names drawn from a Zipf-like distribution over a large vocabulary (so popular
entities recur across documents, as in news), 6 DocRED entity types, 96 relation
types. Each run loads into an empty embedded PostgreSQL; the naive loader runs on
a subset in the same session, and the ratio compares rows/s measured there.

    python bench/load_bench.py                      # 50,000 documents = 1,000,000 evidence rows
    python bench/load_bench.py --docs 2000 --runs 1 # quick check
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import median, publish
from re_pipeline.config import DATA_DIR
from re_pipeline.db import embedded_url, sqlalchemy_url
from re_pipeline.documents import Annotations, Document, Entity, Mention, Relation, normalize_name
from re_pipeline.kg import schema
from re_pipeline.kg.loader import load_documents, relation_type_ids
from re_pipeline.text import from_tokens

TYPES = ["PER", "ORG", "LOC", "TIME", "NUM", "MISC"]
RELATIONS = sorted(json.loads((DATA_DIR / "rel_info.json").read_text()))
ENTITIES_PER_DOC = 20
RELATIONS_PER_DOC = 20


def make_docs(start: int, count: int, vocab: int, seed: int) -> list[Document]:
    """Documents ``start .. start+count``: each a sentence of 20 entity names, 20 relations among them."""
    rng = random.Random(seed * 1_000_003 + start)
    docs = []
    for i in range(start, start + count):
        ids = set()
        while len(ids) < ENTITIES_PER_DOC:
            ids.add(int(vocab * rng.random() ** 3))  # skewed: low ids are frequent
        numbers = sorted(ids)
        names = [f"Entity{n}" for n in numbers]
        text, sents = from_tokens([names])
        ents = [
            Entity([Mention(0, j, j + 1, name, TYPES[n % 6], round(rng.uniform(0.5, 1), 3))])
            for j, (n, name) in enumerate(zip(numbers, names, strict=True))
        ]
        pairs = rng.sample([(h, t) for h in range(ENTITIES_PER_DOC) for t in range(ENTITIES_PER_DOC) if h != t], 20)
        rels = [Relation(h, t, rng.choice(RELATIONS), round(rng.uniform(0.3, 1), 3), [0], "twostep") for h, t in pairs]
        docs.append(Document(f"bench:{i}", "bench", str(i), text, sents, predicted=Annotations(ents, rels)))
    return docs


def naive_load(engine: sa.engine.Engine, docs: list[Document]) -> None:
    """The straightforward way: one INSERT (or SELECT) per row, one transaction per document."""
    with engine.connect() as conn:
        for doc in docs:
            with conn.begin():
                conn.execute(
                    sa.text(
                        "INSERT INTO documents (doc_id, source, external_id, content_hash, results_hash, text,"
                        " num_sentences) VALUES (:d, :s, :e, :h, :h, :t, 1)"
                    ),
                    {"d": doc.doc_id, "s": doc.source, "e": doc.external_id, "h": doc.content_hash, "t": doc.text},
                )
                ids = []
                for j, e in enumerate(doc.predicted.entities):
                    key = normalize_name(e.name)
                    eid = conn.execute(
                        sa.text("SELECT entity_id FROM entities WHERE type = :t AND norm_key = :k"),
                        {"t": e.type, "k": key},
                    ).scalar()
                    if eid is None:
                        eid = conn.execute(
                            sa.text(
                                "INSERT INTO entities (type, norm_key, canonical_name) VALUES (:t, :k, :n)"
                                " RETURNING entity_id"
                            ),
                            {"t": e.type, "k": key, "n": e.name},
                        ).scalar_one()
                    ids.append(eid)
                    conn.execute(
                        sa.text("INSERT INTO doc_entities VALUES (:d, :l, :e, :n, :t)"),
                        {"d": doc.doc_id, "l": j, "e": eid, "n": e.name, "t": e.type},
                    )
                    for m in e.mentions:
                        c0, c1 = doc.char_span(m)
                        conn.execute(
                            sa.text("INSERT INTO mentions VALUES (:d, :l, :s, :a, :b, :c0, :c1, :x, :t, :sc)"),
                            {
                                "d": doc.doc_id,
                                "l": j,
                                "s": m.sent,
                                "a": m.start,
                                "b": m.end,
                                "c0": c0,
                                "c1": c1,
                                "x": m.text,
                                "t": m.type,
                                "sc": m.score,
                            },
                        )
                for r in doc.predicted.relations:
                    fid = conn.execute(
                        sa.text(
                            "INSERT INTO facts (head_entity_id, relation_id, tail_entity_id) VALUES (:h, :r, :t)"
                            " ON CONFLICT (head_entity_id, relation_id, tail_entity_id)"
                            " DO UPDATE SET support = facts.support RETURNING fact_id"
                        ),
                        {"h": ids[r.head], "r": r.type, "t": ids[r.tail]},
                    ).scalar_one()
                    conn.execute(
                        sa.text(
                            "INSERT INTO fact_evidence (fact_id, doc_id, source_model, head_local, tail_local,"
                            " confidence, evidence_sentences, extracted_at) VALUES (:f, :d, :s, :h, :t, :c, :e, now())"
                            " ON CONFLICT DO NOTHING"
                        ),
                        {
                            "f": fid,
                            "d": doc.doc_id,
                            "s": r.source,
                            "h": r.head,
                            "t": r.tail,
                            "c": r.confidence,
                            "e": r.evidence,
                        },
                    )
                    conn.execute(
                        sa.text(
                            "UPDATE facts SET support = support + 1, max_confidence = greatest(max_confidence, :c),"
                            " mean_confidence = least((mean_confidence * support + :c) / (support + 1),"
                            " greatest(max_confidence, :c)) WHERE fact_id = :f"
                        ),
                        {"c": r.confidence, "f": fid},
                    )


def evidence_rows(engine: sa.engine.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM fact_evidence")).scalar_one()


def fresh_engine(folder: Path) -> sa.engine.Engine:
    engine = sa.create_engine(sqlalchemy_url(embedded_url(str(folder))))
    schema.apply(engine)
    return engine


WRITTEN_TABLES = ["documents", "entities", "doc_entities", "mentions", "facts", "fact_evidence"]


def write_floor(
    engine: sa.engine.Engine, including: str = "ALL", keys_only: bool = False
) -> dict[str, tuple[int, float]]:
    """Per table: rows the loader wrote and seconds to write them again, with the same indexes and CHECKs
    (``including="ALL"``), with only the primary and unique keys (``keys_only``), or bare (``""``), but no
    foreign keys, staging or dedup: ``INSERT INTO copy SELECT * FROM table``. The database's own floor."""
    out = {}
    for t in WRITTEN_TABLES:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS floor_{t}")
            conn.exec_driver_sql(f"CREATE TABLE floor_{t} (LIKE {t} {'INCLUDING ' + including if including else ''})")
            if keys_only:  # drop the secondary (non-unique) indexes that serve the queries
                secondary = conn.exec_driver_sql(
                    "SELECT indexrelid::regclass::text FROM pg_index"
                    f" WHERE indrelid = 'floor_{t}'::regclass AND NOT indisunique"
                ).scalars()
                for index in list(secondary):
                    conn.exec_driver_sql(f"DROP INDEX {index}")
        t0 = time.perf_counter()
        with engine.begin() as conn:
            rows = conn.exec_driver_sql(f"INSERT INTO floor_{t} SELECT * FROM {t}").rowcount
        out[t] = (rows, time.perf_counter() - t0)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE floor_{t}")
    return out


def truncate(engine: sa.engine.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE fact_evidence, facts, mentions, doc_entities, entities, documents, quarantine, extraction_runs"
            " RESTART IDENTITY CASCADE"
        )


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=50_000, help="documents for the bulk loader (20 relations each)")
    ap.add_argument("--naive-docs", type=int, default=2_500, help="documents for the row-by-row loader")
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--vocab", type=int, default=200_000, help="distinct entity names")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="re-bench-pg-") as tmp:
        engine = fresh_engine(Path(tmp) / "pgdata")
        rel_types = relation_type_ids(engine)
        bulk_rates, bulk_secs, naive_rates, ratios, floor_ratios, rows, all_rows = [], [], [], [], [], 0, 0
        floors: list[dict[str, tuple[int, float]]] = []
        bare: list[dict[str, tuple[int, float]]] = []
        keys: list[dict[str, tuple[int, float]]] = []
        for run in range(args.runs):
            truncate(engine)
            elapsed = 0.0
            for start in range(0, args.docs, args.shard_size):
                docs = make_docs(start, min(args.shard_size, args.docs - start), args.vocab, seed=run)
                t0 = time.perf_counter()
                load_documents(engine, docs, None, relation_types=rel_types)
                elapsed += time.perf_counter() - t0
            rows = evidence_rows(engine)
            bulk_rates.append(rows / elapsed)
            bulk_secs.append(elapsed)
            print(f"run {run}: bulk {rows:,} evidence rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s")
            floors.append(write_floor(engine))
            bare.append(write_floor(engine, including=""))
            keys.append(write_floor(engine, keys_only=True))
            floor_s = sum(sec for _, sec in floors[-1].values())
            all_rows = sum(n for n, _ in floors[-1].values())
            floor_ratios.append(elapsed / floor_s)
            print(
                f"run {run}: floor: {all_rows:,} rows of 6 tables written in {floor_s:.1f} s; loader/floor"
                f" {elapsed / floor_s:.2f}"
            )

            truncate(engine)
            docs = make_docs(0, args.naive_docs, args.vocab, seed=run)
            t0 = time.perf_counter()
            naive_load(engine, docs)
            naive_s = time.perf_counter() - t0
            naive_rows = evidence_rows(engine)
            naive_rates.append(naive_rows / naive_s)
            t0 = time.perf_counter()
            truncate(engine)
            load_documents(engine, docs, None, relation_types=rel_types)
            subset_bulk = naive_rows / (time.perf_counter() - t0)
            ratios.append(subset_bulk / (naive_rows / naive_s))
            print(
                f"run {run}: naive {naive_rows:,} rows in {naive_s:.1f} s = {naive_rows / naive_s:,.0f} rows/s;"
                f" bulk on the same subset {subset_bulk:,.0f} rows/s"
            )

    def per_table(runs: list[dict[str, tuple[int, float]]], table: str) -> float:
        return median([r[table][1] for r in runs])

    floor_table = "\n".join(
        f"| {t} | {floors[-1][t][0]:,} | {per_table(floors, t):.2f} | {per_table(keys, t):.2f} |"
        f" {per_table(bare, t):.2f} |"
        for t in WRITTEN_TABLES
    )
    floor_all = sum(per_table(floors, t) for t in WRITTEN_TABLES)
    bare_all = sum(per_table(bare, t) for t in WRITTEN_TABLES)
    keys_all = sum(per_table(keys, t) for t in WRITTEN_TABLES)
    body = f"""
Synthetic results: {args.docs:,} documents x {ENTITIES_PER_DOC} entities x {RELATIONS_PER_DOC} relations
({rows:,} fact-evidence rows after per-document folding), Zipf-like names over {args.vocab:,}, shards of
{args.shard_size} documents, each loaded in one transaction into an embedded PostgreSQL (pgserver), empty at the
start of each run. Time covers staging in Python, COPY and the upserts (document generation excluded).

| loader | rows/s (median of {args.runs}) | runs |
|---|---|---|
| bulk: COPY + set-based upserts | **{median(bulk_rates):,.0f}** | {_list(bulk_rates)} |
| naive: row-by-row INSERTs ({args.naive_docs:,} documents) | {median(naive_rates):,.0f} | {_list(naive_rates)} |

Bulk / naive on the same {args.naive_docs:,}-document subset, measured in the same run: **{median(ratios):.1f}x**
(median; runs: {", ".join(f"{r:.1f}" for r in ratios)}). Full bulk load: {median(bulk_secs):.1f} s (median).

The database's own floor, measured in the same run: writing the {all_rows:,} rows the loader wrote to the six
tables (documents, KG entities, document entities, mentions, facts, evidence), with the same indexes and CHECKs but
no foreign keys, staging or dedup (`INSERT INTO copy SELECT * FROM table`). Loader time / floor:
**{median(floor_ratios):.2f}x** (median; runs: {", ".join(f"{r:.2f}" for r in floor_ratios)}).
The same per table (median seconds); with only the primary and unique keys (the upserts and idempotency
need them; the secondary indexes serve the queries); and bare (no indexes, no CHECKs):

| table | rows | with indexes and CHECKs (s) | keys and CHECKs only (s) | bare (s) |
|---|---|---|---|---|
{floor_table}
| **all** | {all_rows:,} | **{floor_all:.2f}** | {keys_all:.2f} | {bare_all:.2f} |

So writing these rows alone, with nothing else to do, runs at {rows / floor_all:,.0f} evidence rows/s on this machine,
{rows / keys_all:,.0f} with the keys (and CHECKs) alone. Target: >= 50,000 rows/s.
"""
    publish("Load: bulk loader vs row-by-row INSERTs", body, args.no_write)


if __name__ == "__main__":
    main()
