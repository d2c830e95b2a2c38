"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``SOC2KIT_TEST_POSTGRES_URL`` when set, else from the
``pgserver`` package (an embedded server started once per run and shared by
the xdist workers). With ``SOC2KIT_REQUIRE_POSTGRES=1`` (set by .ci/run) a
missing server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

import soc2kit
from soc2kit.db import normalize_url

REQUIRE_PG = os.environ.get("SOC2KIT_REQUIRE_POSTGRES") == "1"


def _pgdata_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory per test run, shared by that run's xdist workers only.

    Keyed by xdist's run id so that concurrent pytest runs on one machine never
    share (and stop) each other's server.
    """
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id:
        return Path(tempfile.gettempdir()) / f"soc2kit-pg-{run_id[:16]}"
    return tmp_path_factory.getbasetemp() / "pgdata"


def _start_pgserver(pgdata: Path) -> str:
    import pgserver

    # "delete": the last process of this run to let go stops the server and
    # removes the directory. Both xdist workers may start at the same moment:
    # pgserver's exists-then-mkdir races, and the loser simply attaches next time.
    pgdata.mkdir(exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    return str(server.get_uri())


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a PostgreSQL server we may create databases on."""
    url = os.environ.get("SOC2KIT_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        return _start_pgserver(_pgdata_dir(tmp_path_factory))
    except Exception as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unavailable: {exc!r}")
        pytest.skip(f"PostgreSQL unavailable: {exc!r}")


def _fresh_pg_database(admin_url: str) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:16]
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = normalize_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite file, then a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    yield from _fresh_pg_database(admin_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., soc2kit.Settings]:
    """Settings for tests: test environment, SQLite under tmp_path unless overridden."""

    def factory(**overrides: Any) -> soc2kit.Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": f"sqlite:///{tmp_path / 'app.db'}",
            "data_dir": tmp_path / ".soc2kit",
        }
        values.update(overrides)
        return soc2kit.Settings(**values)

    return factory


@pytest.fixture
def make_client(
    make_settings: Callable[..., soc2kit.Settings],
) -> Iterator[Callable[..., tuple[TestClient, soc2kit.Kit]]]:
    """Build an app with soc2kit installed and a running TestClient for it.

    ``routes`` is a callable that declares routes on the app (before or after install).
    """
    clients: list[TestClient] = []

    def factory(
        routes: Callable[[FastAPI, soc2kit.Kit], None] | None = None,
        app: FastAPI | None = None,
        raise_server_exceptions: bool = False,
        **overrides: Any,
    ) -> tuple[TestClient, soc2kit.Kit]:
        settings = make_settings(**overrides)
        app = app or FastAPI(**settings.fastapi_docs_kwargs())
        kit = soc2kit.install(app, settings)
        app.include_router(kit.health_router())
        if routes is not None:
            routes(app, kit)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client, kit

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


def audit_rows(kit: soc2kit.Kit) -> list[dict[str, Any]]:
    """Every stored audit event of ``kit``, oldest first, as dicts."""
    import json

    kit.audit.flush()
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq"))
        return [json.loads(r[0]) for r in rows]
