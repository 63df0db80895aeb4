"""Data-quality gate at the end of a corpus run: the run record is closed, and a bad run fails loudly.

Checks: a run that loaded documents but no relations; a run whose relations per
document fall far below the median of the trailing successful runs (a broken
model or a corrupt corpus shows up here first).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from re_pipeline.kg.runs import finish_run

TRAILING_RUNS = 5


class DataQualityError(RuntimeError):
    """The run's output fails a data-quality check; the run is recorded as failed."""


def trailing_rates(engine: Engine, run_id: int, limit: int = TRAILING_RUNS) -> list[float]:
    """Relations per loaded document of the last successful runs of the same command."""
    sql = """
        SELECT (counts->>'relations_written')::float / NULLIF((counts->>'loaded')::float, 0)
        FROM extraction_runs
        WHERE status = 'success' AND run_id < :run AND (counts->>'loaded')::int > 0
          AND command = (SELECT command FROM extraction_runs WHERE run_id = :run)
        ORDER BY run_id DESC LIMIT :limit"""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(sql), {"run": run_id, "limit": limit}) if r[0] is not None]


def check(documents: int, relations: int, trailing: list[float], min_ratio: float) -> list[str]:
    """The failed checks, as messages (empty: the run passes)."""
    problems = []
    if documents > 0 and relations == 0:
        problems.append(f"zero relations extracted from {documents} loaded documents")
    if documents > 0 and trailing:
        rate, usual = relations / documents, statistics.median(trailing)
        if rate < min_ratio * usual:
            problems.append(
                f"{rate:.2f} relations per document, under {min_ratio:.0%} of the trailing median {usual:.2f}"
            )
    return problems


def close_run(
    engine: Engine, run_id: int, loaded: Iterable[Mapping[str, int]], min_ratio: float = 0.5
) -> dict[str, Any]:
    """Sum the load counts, run the checks, and close the run as success or failed."""
    counts: Counter[str] = Counter()
    for c in loaded:
        counts.update(c)
    with engine.connect() as conn:
        counts["relations_written"] = conn.execute(
            sa.text("SELECT count(*) FROM fact_evidence WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    problems = check(counts["loaded"], counts["relations_written"], trailing_rates(engine, run_id), min_ratio)
    summary = {**counts, "quality_problems": problems}
    finish_run(engine, run_id, "failed" if problems else "success", summary)
    if problems:
        raise DataQualityError("; ".join(problems))
    return summary
