"""Baked services pass their own checks: ``make test`` and the CI gates, on SQLite and PostgreSQL.

Each runs the project's Makefile exactly as CI would (``make test routes
check-production controls-check``), against a prepared virtualenv with
``NO_INSTALL=1``: no network, no install. The two runs are the slowest tests
of the suite, so each has its own xdist group (``--dist loadgroup`` runs them
on different workers).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tests.template.bake_helpers import bake, harness_venv, make

CONTROLS = importlib.util.find_spec("soc2kit.cli.controls") is not None
GATES = ["routes", "check-production"] + (["controls-check"] if CONTROLS else [])


def run_gates(project: Path, venv: Path, env: dict[str, str] | None = None) -> str:
    result = make(project, venv, "test", *GATES, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


@pytest.mark.xdist_group("baked-service-sqlite")
def test_sqlite_multi_tenant_service_passes_make_test(tmp_path: Path) -> None:
    project = bake(
        tmp_path, project_name="Orders", database="sqlite", tenancy="multi", key_provider="local"
    )
    output = run_gates(project, harness_venv(tmp_path))
    assert "passed" in output and "failed" not in output
    assert "test_tenancy.py" in output  # the multi-tenant isolation tests ran
    assert "no problems: the configuration passes the production guard" in output


@pytest.mark.postgres
@pytest.mark.xdist_group("baked-service-postgres")
def test_postgresql_service_passes_make_test(tmp_path: Path, postgres_admin_url: str) -> None:
    project = bake(
        tmp_path,
        project_name="Payments",
        database="postgresql",
        tenancy="single",
        key_provider="aws-kms",
        privacy=True,
    )
    # The baked suite creates its own database on this server and drops it afterwards.
    output = run_gates(project, harness_venv(tmp_path), {"TEST_DATABASE_URL": postgres_admin_url})
    assert "passed" in output and "failed" not in output
    assert "no problems: the configuration passes the production guard" in output
