{%- set multi = cookiecutter.tenancy == "multi" -%}
"""Test set-up: the app on a throwaway database and key folder, and a token per role.

The app reads its configuration when it is imported, so the environment is
set here, before the first import. By default the tests use a SQLite file in
a temporary folder. With ``TEST_DATABASE_URL`` set to a PostgreSQL server (CI
does this), they create a fresh database on it for the run and drop it
afterwards; the role needs the CREATEDB privilege.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from soc2kit.db import normalize_url

SCRATCH = Path(tempfile.mkdtemp(prefix="soc2kit-service-tests-"))
SERVER_URL = os.environ.get("TEST_DATABASE_URL")
FRESH_DATABASE = f"test_{uuid.uuid4().hex[:12]}" if SERVER_URL else None


def _database_url() -> str:
    if SERVER_URL is None or FRESH_DATABASE is None:
        return f"sqlite:///{SCRATCH / 'test.db'}"
    _on_server(f'CREATE DATABASE "{FRESH_DATABASE}"')
    url = normalize_url(SERVER_URL).set(database=FRESH_DATABASE)
    return url.render_as_string(hide_password=False)


def _on_server(statement: str) -> None:
    assert SERVER_URL is not None
    admin = sa.create_engine(normalize_url(SERVER_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


os.environ.update(
    {
        "SOC2KIT_ENVIRONMENT": "test",
        "SOC2KIT_DATA_DIR": str(SCRATCH / "data"),
        "SOC2KIT_DATABASE_URL": _database_url(),
        # Hundreds of requests from one client: far above the 100/minute default.
        "SOC2KIT_RATE_LIMIT": "100000/minute",
    }
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the run's database and key folder (after the app has shut down)."""
    if FRESH_DATABASE is not None:
        _on_server(f'DROP DATABASE IF EXISTS "{FRESH_DATABASE}" WITH (FORCE)')
    shutil.rmtree(SCRATCH, ignore_errors=True)


Auth = Callable[..., dict[str, str]]
{%- if multi %}
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
{%- endif %}


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The app, started: migrations applied, policy/policy.csv loaded, keys ready."""
    from {{ cookiecutter.package_name }}.app import app

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def auth(client: TestClient) -> Auth:
    """Headers for a caller: a role, ``"no-role"`` or ``"anonymous"`` (development tokens)."""
    from {{ cookiecutter.package_name }}.app import kit

{%- if multi %}

    def headers(
        caller: str, subject: str | None = None, tenant: str | None = TENANT
    ) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        roles = [] if caller == "no-role" else [caller]
        token = kit.dev_token(subject or f"{caller}-user", roles, tenant=tenant)
        return {"Authorization": f"Bearer {token}"}
{%- else %}

    def headers(caller: str, subject: str | None = None) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        roles = [] if caller == "no-role" else [caller]
        token = kit.dev_token(subject or f"{caller}-user", roles)
        return {"Authorization": f"Bearer {token}"}
{%- endif %}

    return headers
