"""Route coverage: no route escapes the access declaration, as `soc2kit routes` checks in CI."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from soc2kit.authz import build_inventory, undeclared
from soc2kit.cli.main import app as soc2kit_cli
from typer.testing import CliRunner

from {{ cookiecutter.package_name }}.app import app

APP = "{{ cookiecutter.package_name }}.app:app"


def test_every_route_declares_access() -> None:
    entries = build_inventory(app)
    assert entries
    assert [e.describe() for e in undeclared(entries)] == []


def test_soc2kit_routes_passes(client: TestClient) -> None:
    result = CliRunner().invoke(soc2kit_cli, ["routes", "--app", APP, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["undeclared"] == 0
    assert len(report["routes"]) == len(build_inventory(app))
