"""Read-only SQL for analysts: ad-hoc queries, the example queries in ``sql/queries``, facts.

Ad-hoc SQL runs inside a READ ONLY transaction with a statement timeout, so a
typo'd ``DELETE`` or a runaway join cannot harm the store.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from re_pipeline.config import SQL_DIR

QUERIES_DIR = SQL_DIR / "queries"
_PARAM = re.compile(r"(?<!:):([a-zA-Z_]\w*)")


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_readonly(engine: Engine, sql: str, params: dict[str, Any] | None = None, timeout_ms: int = 60_000) -> Result:
    """Run one statement in a READ ONLY transaction; writes fail with PostgreSQL's own error.

    The statement goes to the server prepared (PostgreSQL's extended protocol), which takes exactly one
    command: ``COMMIT; DELETE FROM facts`` is refused instead of ending the read-only transaction.
    """
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        driver = conn.connection.driver_connection  # psycopg's own connection
        threshold, driver.prepare_threshold = driver.prepare_threshold, 0  # prepare even a first execution
        try:
            cur = conn.execute(sa.text(sql), params or {})
        finally:
            driver.prepare_threshold = threshold
        if not cur.returns_rows:
            return Result([], [])
        return Result(list(cur.keys()), [tuple(r) for r in cur.fetchall()])


def named_queries() -> dict[str, Path]:
    return {p.stem: p for p in sorted(QUERIES_DIR.glob("*.sql"))}


def query_params(sql: str) -> list[str]:
    """The ``:name`` parameters a query uses, in order of first use (``::casts`` excluded)."""
    body = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return list(dict.fromkeys(_PARAM.findall(body)))


def run_named(engine: Engine, name: str, params: dict[str, Any], timeout_ms: int = 60_000) -> Result:
    queries = named_queries()
    if name not in queries:
        raise KeyError(f"no query {name!r}; available: {', '.join(queries)}")
    sql = queries[name].read_text()
    missing = [p for p in query_params(sql) if p not in params]
    if missing:
        raise ValueError(f"query {name} needs parameters: {', '.join(missing)} (pass --param NAME=VALUE)")
    return run_readonly(engine, sql, params, timeout_ms)


def facts(
    engine: Engine,
    *,
    entity: str | None = None,
    relation: str | None = None,
    min_confidence: float = 0.0,
    limit: int = 50,
    timeout_ms: int = 60_000,
) -> Result:
    """Facts filtered by entity name (head or tail, substring), relation id or name, confidence."""
    where, params = ["confidence >= :min_c"], {"min_c": min_confidence, "limit": limit}
    if entity:
        where.append("(head ILIKE :entity OR tail ILIKE :entity)")
        params["entity"] = f"%{entity}%"
    if relation:
        where.append("(relation_id = :rel OR relation ILIKE :rel)")
        params["rel"] = relation
    sql = (
        "SELECT head, relation_id, relation, tail, round(confidence::numeric, 3) AS confidence, support"
        f" FROM triples WHERE {' AND '.join(where)}"
        " ORDER BY support DESC, confidence DESC, head, relation, tail LIMIT :limit"
    )
    return run_readonly(engine, sql, params, timeout_ms)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple, dict, str, int, float, bool)) or value is None:
        return value
    return str(value)


def render(result: Result, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([dict(zip(result.columns, map(_plain, r), strict=True)) for r in result.rows], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; use table, csv or json")
    cells = [result.columns] + [["" if v is None else str(_plain(v)) for v in r] for r in result.rows]
    widths = [min(60, max(len(row[i]) for row in cells)) for i in range(len(result.columns))]
    lines = [" | ".join(c[:60].ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    lines.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    return "\n".join(lines)
