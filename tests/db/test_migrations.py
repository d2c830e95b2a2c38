"""soc2kit's migrations produce exactly the declared schema, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from soc2kit.db import create_engine, current_revision, head_revision, metadata, ping, upgrade
from soc2kit.db.migrations_api import VERSION_TABLE


def test_migrated_schema_matches_metadata(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision() == "0004"
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = compare_metadata(ctx, metadata)
        assert diff == [], diff
        names = sa.inspect(engine).get_table_names()
        assert VERSION_TABLE in names and "alembic_version" not in names
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_round_trip(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        from alembic import command

        from soc2kit.db.migrations_api import _config

        command.downgrade(_config(engine), "base")
        assert "soc2kit_audit_events" not in sa.inspect(engine).get_table_names()
        upgrade(engine)
        assert "soc2kit_audit_events" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_sqlite_pragmas_are_set(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert ping(engine)
    finally:
        engine.dispose()


def test_ping_reports_an_unreachable_database() -> None:
    engine = create_engine(
        "postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        assert ping(engine) is False
    finally:
        engine.dispose()


def test_statement_parameters_are_hidden_from_errors(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (v TEXT NOT NULL UNIQUE)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": "alice@example.com"})
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": "alice@example.com"})
        except sa.exc.IntegrityError as exc:
            assert "alice@example.com" not in str(exc)
        else:
            raise AssertionError("expected an IntegrityError")
    finally:
        engine.dispose()


def test_start_up_refuses_tables_behind_the_code(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    import soc2kit

    url = f"sqlite:///{tmp_path / 'app.db'}"
    settings = soc2kit.Settings(
        environment="test", database_url=url, data_dir=tmp_path, auto_migrate=False
    )
    app = FastAPI()
    soc2kit.install(app, settings)
    with pytest.raises(soc2kit.ConfigurationError, match="soc2kit db upgrade"), TestClient(app):
        pass
