"""The placeholder template bakes into a service that starts and serves its probes."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]


def bake(tmp_path: Path, **extra: str) -> Path:
    out = cookiecutter(str(REPO), no_input=True, output_dir=str(tmp_path), extra_context=extra)
    return Path(out)


def test_bakes_without_leftover_template_syntax(tmp_path: Path) -> None:
    project = bake(tmp_path, project_name="Billing API")
    assert project.name == "billing-api"
    for path in project.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text and "{%" not in text, path


def test_baked_service_serves_probes_and_guards_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = bake(tmp_path, project_name="Ledger")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOC2KIT_ENVIRONMENT", "test")
    monkeypatch.setenv("SOC2KIT_DATA_DIR", str(tmp_path / ".soc2kit"))
    monkeypatch.setenv("SOC2KIT_DATABASE_URL", f"sqlite:///{tmp_path / 'svc.db'}")
    monkeypatch.syspath_prepend(str(project))
    module = importlib.import_module("ledger.app")
    try:
        with TestClient(module.app) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/me").status_code == 401
            token = module.kit.dev_token("u1", ["member"])
            r = client.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
            assert r.json() == {"subject": "u1", "roles": ["member"]}
    finally:
        for name in [n for n in sys.modules if n == "ledger" or n.startswith("ledger.")]:
            del sys.modules[name]


@pytest.mark.parametrize("slug", ["Bad Slug", "9lives", "x"])
def test_invalid_slug_fails_the_bake(tmp_path: Path, slug: str) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, project_slug=slug)
