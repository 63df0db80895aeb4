"""Database connection: any PostgreSQL by URL, or an embedded one from ``pgserver``.

One code path for both: the embedded server only supplies a URL. Its data lives in
``Settings.pgdata_dir``; it is started on first use and reused by later commands
(pgserver keeps one server per data folder and stops it when its last user exits).
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from re_pipeline.config import Settings

log = logging.getLogger(__name__)
_servers: dict[str, Any] = {}  # pgdata folder -> pgserver handle, kept alive for the process
_lock = threading.Lock()


def embedded_url(pgdata: str) -> str:
    """Start (or attach to) the embedded PostgreSQL in ``pgdata`` and return its URL."""
    import warnings
    from pathlib import Path

    with warnings.catch_warnings():  # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver

    folder = Path(pgdata).resolve()
    with _lock:
        if str(folder) not in _servers:
            folder.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", folder)
            _servers[str(folder)] = pgserver.get_server(folder)
        return _servers[str(folder)].get_uri()


def stop_embedded(pgdata: str) -> None:
    """Release this process's handle on an embedded server (it stops when no process uses it)."""
    from pathlib import Path

    with _lock:
        server = _servers.pop(str(Path(pgdata).resolve()), None)
    if server is not None:
        server.cleanup()


def sqlalchemy_url(url: str) -> str:
    """Any libpq-style URL as a SQLAlchemy URL on the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"re_pipeline needs PostgreSQL; got a {parsed.get_backend_name()!r} URL")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def resolve_url(settings: Settings) -> str:
    """The database URL: ``DATABASE_URL``/``--database-url`` if set, else the embedded server."""
    return sqlalchemy_url(settings.database_url or embedded_url(str(settings.pgdata_dir)))


def get_engine(settings: Settings | None = None) -> Engine:
    return _engine(resolve_url(settings or Settings.load()))


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return sa.create_engine(url, pool_pre_ping=True, future=True)


def redacted(url: str) -> str:
    """A URL safe to print: the password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)
