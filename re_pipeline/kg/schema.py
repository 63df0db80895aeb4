"""Numbered SQL migrations (``sql/NNN_*.sql``), applied once each and recorded.

Each migration runs in its own transaction under an advisory lock, so two
processes initializing the same database at once apply it exactly once. A
recorded checksum shows when a migration file was edited after being applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from re_pipeline.config import SQL_DIR
from re_pipeline.relation_types import relation_types

_MIGRATION = re.compile(r"^(\d{3})_([\w-]+)\.sql$")
_LOCK_ID = 0x5E_F1_9E  # arbitrary, constant: serializes migrations across processes


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    migration: Migration
    applied_at: str | None
    checksum_ok: bool


def migrations(sql_dir: Path = SQL_DIR) -> list[Migration]:
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _MIGRATION.match(path.name)
        if m:
            found.append(Migration(m.group(1), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {sql_dir}: {versions}")
    return found


def _ensure_table(conn: Connection) -> None:
    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, checksum char(64) NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    )


def status(engine: Engine) -> list[MigrationStatus]:
    with engine.begin() as conn:
        _ensure_table(conn)
        rows = {r.version: r for r in conn.execute(sa.text("SELECT * FROM schema_migrations"))}
    out = []
    for m in migrations():
        row = rows.get(m.version)
        out.append(MigrationStatus(m, str(row.applied_at) if row else None, row is None or row.checksum == m.checksum))
    return out


def apply(engine: Engine) -> list[Migration]:
    """Apply pending migrations in order, then (re)seed relation types. Returns those applied."""
    applied = []
    for m in migrations():
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
            _ensure_table(conn)
            done = conn.execute(
                sa.text("SELECT checksum, applied_at FROM schema_migrations WHERE version = :v"), {"v": m.version}
            ).first()
            if done is not None:
                if done.checksum != m.checksum:
                    raise RuntimeError(
                        f"migration {m.path.name} changed after it was applied to this database ({done.applied_at}):"
                        " restore the file and put the change in a new numbered migration"
                    )
                continue
            conn.exec_driver_sql(m.sql)
            conn.execute(
                sa.text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
                {"v": m.version, "n": m.name, "c": m.checksum},
            )
            applied.append(m)
    with engine.begin() as conn:
        seed_relation_types(conn)
    return applied


def relation_type_rows() -> list[dict[str, object]]:
    return [
        {"id": t.id, "schema": t.schema, "name": t.name, "desc": t.description, "sym": t.symmetric, "inv": t.inverse_of}
        for t in relation_types().values()
    ]


def seed_relation_types(conn: Connection) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO relation_types (relation_id, schema_name, name, description, is_symmetric)"
            " VALUES (:id, :schema, :name, :desc, :sym)"
            " ON CONFLICT (relation_id) DO UPDATE SET schema_name = EXCLUDED.schema_name,"
            " name = EXCLUDED.name, description = EXCLUDED.description, is_symmetric = EXCLUDED.is_symmetric"
            " WHERE (relation_types.schema_name, relation_types.name, relation_types.description,"
            " relation_types.is_symmetric) IS DISTINCT FROM"
            " (EXCLUDED.schema_name, EXCLUDED.name, EXCLUDED.description, EXCLUDED.is_symmetric)"
        ),
        rows := relation_type_rows(),
    )
    # Inverses reference other rows, so they are set once all rows exist.
    conn.execute(
        sa.text(
            "UPDATE relation_types SET inverse_of = :inv"
            " WHERE relation_id = :id AND inverse_of IS DISTINCT FROM CAST(:inv AS text)"
        ),
        [r for r in rows if r["inv"]],
    )
