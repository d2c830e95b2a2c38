"""``soc2kit routes``: the inventory as a table or JSON; exit 1 while a route is undeclared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soc2kit.cli.main import app as cli

APP_SOURCE = """
from fastapi import APIRouter, FastAPI, WebSocket
from starlette.staticfiles import StaticFiles
from soc2kit import Principal, public, require
from soc2kit.authz import public_app

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

@app.get("/", dependencies=[public("service banner [v1]")])
def index() -> dict[str, str]:
    return {}

router = APIRouter(prefix="/invoices", dependencies=[require("invoices", "read")])

@router.get("/{invoice_id}")
def read(invoice_id: int) -> dict[str, int]:
    return {}

app.include_router(router)
app.mount("/static", public_app(StaticFiles(directory="."), reason="assets"))
"""

UNDECLARED_SOURCE = (
    APP_SOURCE
    + """
@app.post("/forgotten")
def forgotten() -> None: ...

@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None: ...
"""
)


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """``module(source)`` writes an importable module and returns its ``name:app``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"routes_app_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        return f"{name}:app"

    return write


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["routes", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_all_declared_exits_0_with_a_table(module: Callable[[str], str]) -> None:
    code, output = invoke("--app", module(APP_SOURCE))
    assert code == 0, output
    assert "3 route(s), 0 undeclared" in output
    assert "/invoices/{invoice_id}" in output and "invoices:read" in output
    assert "public: service banner [v1]" in output  # brackets shown, not eaten as markup
    assert "/static/{path}" in output and "public: assets" in output
    assert "UNDECLARED" not in output


def test_undeclared_routes_exit_1_and_are_named(module: Callable[[str], str]) -> None:
    code, output = invoke("--app", module(UNDECLARED_SOURCE))
    assert code == 1, output
    assert "5 route(s), 2 undeclared" in output
    lines = [line for line in output.splitlines() if "UNDECLARED" in line]
    assert len(lines) == 2
    assert any("POST" in line and "/forgotten" in line for line in lines)
    assert any("WEBSOCKET" in line and "/ws" in line for line in lines)


def test_json_format(module: Callable[[str], str]) -> None:
    code, output = invoke("--app", module(UNDECLARED_SOURCE), "--format", "json")
    assert code == 1
    document = json.loads(output)
    assert document["undeclared"] == 2
    routes = {(r["path"], tuple(r["methods"])): r for r in document["routes"]}
    assert routes[("/invoices/{invoice_id}", ("GET",))]["declaration"] == {
        "type": "permission",
        "resource": "invoices",
        "action": "read",
    }
    assert routes[("/", ("GET",))]["declaration"] == {
        "type": "public",
        "reason": "service banner [v1]",
    }
    assert routes[("/static/{path}", ())]["kind"] == "mount"
    assert routes[("/forgotten", ("POST",))]["declaration"] is None
    assert routes[("/ws", ("WEBSOCKET",))]["kind"] == "websocket"


def test_json_format_exits_0_when_all_declared(module: Callable[[str], str]) -> None:
    code, output = invoke("--app", module(APP_SOURCE), "--format", "json")
    assert code == 0
    assert json.loads(output)["undeclared"] == 0


def test_unknown_format_is_a_usage_error(module: Callable[[str], str]) -> None:
    code, _ = invoke("--app", module(APP_SOURCE), "--format", "yaml")
    assert code == 2


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC2KIT_")}
    env.update({"SOC2KIT_DATA_DIR": str(cwd / ".soc2kit"), "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "soc2kit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exit_codes_through_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "declared.py").write_text(APP_SOURCE)
    (tmp_path / "forgetful.py").write_text(UNDECLARED_SOURCE)
    assert run(["routes", "--app", "declared:app"], tmp_path).returncode == 0
    result = run(["routes", "--app", "forgetful:app"], tmp_path)
    assert result.returncode == 1 and "UNDECLARED" in result.stdout
    result = run(["routes", "--app", "missing_module:app"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: cannot import 'missing_module'")
    assert "Traceback" not in result.stderr
    result = run(["routes", "--app", "declared:index"], tmp_path)  # not an app
    assert result.returncode == 1 and "not a FastAPI/Starlette app" in result.stderr
