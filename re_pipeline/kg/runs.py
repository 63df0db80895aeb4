"""The ``extraction_runs`` log: every command that writes to the store opens a run and closes it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def start_run(
    engine: Engine, command: str, *, dag_run_id: str | None = None, model_versions: Mapping[str, str] | None = None
) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "INSERT INTO extraction_runs (command, dag_run_id, model_versions)"
                " VALUES (:c, :d, CAST(:m AS jsonb)) RETURNING run_id"
            ),
            {"c": command, "d": dag_run_id, "m": json.dumps(dict(model_versions or {}))},
        ).scalar_one()


def finish_run(engine: Engine, run_id: int, status: str, counts: Mapping[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE extraction_runs SET status = :s, finished_at = now(),"
                " counts = counts || CAST(:c AS jsonb) WHERE run_id = :r"
            ),
            {"s": status, "c": json.dumps(dict(counts)), "r": run_id},
        )


@contextmanager
def run_record(engine: Engine, command: str, counts: dict[str, Any], **kwargs: Any) -> Iterator[int]:
    """Open a run; close it as ``success`` with ``counts``, or ``failed`` if the block raises."""
    run_id = start_run(engine, command, **kwargs)
    try:
        yield run_id
    except BaseException:
        finish_run(engine, run_id, "failed", counts)
        raise
    finish_run(engine, run_id, "success", counts)
