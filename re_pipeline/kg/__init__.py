"""The Postgres knowledge-graph store: schema migrations, bulk loading, runs, queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from re_pipeline.config import Settings
from re_pipeline.db import get_engine
from re_pipeline.kg import schema


def connect(settings: Settings | None = None, migrate: bool = True) -> Engine:
    """An engine on the configured database, with pending migrations applied."""
    engine = get_engine(settings)
    if migrate:
        schema.apply(engine)
    return engine


def loaded_filter(engine: Engine) -> Callable[[list[tuple[str, str]]], set[str]]:
    """For incremental ingest: which of (doc_id, content_hash) pairs are already loaded as is."""

    def loaded(pairs: list[tuple[str, str]]) -> set[str]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT doc_id, content_hash FROM documents WHERE doc_id = ANY(:ids)"),
                {"ids": [d for d, _ in pairs]},
            )
            stored = {r.doc_id: r.content_hash for r in rows}
        return {d for d, h in pairs if stored.get(d) == h}

    return loaded


def shard_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Parquet files named directly or found in the given folders, in order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.parquet")))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such shard or folder: {p}")
    return out
