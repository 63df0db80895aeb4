from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from re_pipeline.config import Settings
from re_pipeline.db import get_engine, redacted, resolve_url, sqlalchemy_url, stop_embedded


def test_settings_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RE_PIPELINE_SHARD_SIZE", "250")
    monkeypatch.setenv("RE_PIPELINE_HOME", "/tmp/somewhere")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db.example/kg")
    s = Settings.load(home=None, max_doc_chars=10)
    assert s.shard_size == 250 and s.home == Path("/tmp/somewhere") and s.max_doc_chars == 10
    assert s.database_url == "postgresql://u:secret@db.example/kg"
    assert Settings.load(shard_size=5).shard_size == 5  # a flag beats the environment
    assert s.pgdata_dir == Path("/tmp/somewhere/pgdata")


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RE_PIPELINE_SHARD_SIZE", "many")
    with pytest.raises(ValueError, match="shard_size must be a number"):
        Settings.load()
    monkeypatch.delenv("RE_PIPELINE_SHARD_SIZE")
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.load(shard_sise=3)


def test_urls_are_normalized_and_redacted() -> None:
    assert sqlalchemy_url("postgres://u:p@h:5433/db") == "postgresql+psycopg://u:p@h:5433/db"
    assert sqlalchemy_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg://u@h/db"
    assert "secret" not in redacted("postgresql+psycopg://u:secret@h/db")
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        sqlalchemy_url("sqlite:///kg.db")


def test_embedded_server_starts_on_demand_and_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings.load(home=tmp_path / "home")
    engine = get_engine(settings)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
        assert int(version) >= 140000
        assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()
        assert resolve_url(settings) == resolve_url(Settings.load(home=tmp_path / "home"))
    finally:
        engine.dispose()
        stop_embedded(str(settings.pgdata_dir))
