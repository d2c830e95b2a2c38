"""install(): order-independent with routes, once per app, full route templates in the audit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import soc2kit
from soc2kit.authz import public_app
from soc2kit.db import create_engine


def add_item_routes(app: FastAPI) -> None:
    @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}


@pytest.fixture
def settings(tmp_path: Path) -> soc2kit.Settings:
    return soc2kit.Settings(
        environment="test",
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        data_dir=tmp_path / ".soc2kit",
    )


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start a TestClient for an app built here (and shut it down afterwards)."""
    clients: list[TestClient] = []

    def start(app: FastAPI) -> TestClient:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.mark.parametrize("install_first", [True, False])
def test_install_before_or_after_routes(
    settings: soc2kit.Settings, serve: Any, http_event: Any, install_first: bool
) -> None:
    app = FastAPI()
    if install_first:
        kit = soc2kit.install(app, settings)
        add_item_routes(app)
    else:
        add_item_routes(app)
        kit = soc2kit.install(app, settings)
    client = serve(app)
    resp = client.get("/items/42", headers={"x-request-id": "order-test"})
    assert resp.status_code == 200
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-request-id"] == "order-test"
    event = http_event(kit, "order-test")
    assert event["route"] == "/items/{item_id}"
    assert "/items/42" not in json.dumps(event)
    # The soc2kit error handlers are in place whichever came first.
    assert client.get("/items/x").json()["error"] == "validation_error"


def test_install_twice_raises(settings: soc2kit.Settings) -> None:
    app = FastAPI()
    kit = soc2kit.install(app, settings)
    try:
        with pytest.raises(soc2kit.ConfigurationError, match="already"):
            soc2kit.install(app, settings)
        assert app.state.soc2kit is kit
    finally:
        kit.shutdown()


def test_install_after_the_app_served_a_request_raises(
    settings: soc2kit.Settings, serve: Any
) -> None:
    app = FastAPI()
    add_item_routes(app)
    TestClient(app).get("/items/1")  # builds the middleware stack without soc2kit
    with pytest.raises(soc2kit.ConfigurationError):
        soc2kit.install(app, settings)


def test_service_start_and_stop_are_audited(settings: soc2kit.Settings) -> None:
    app = FastAPI()
    kit = soc2kit.install(app, settings)
    with TestClient(app):
        pass
    # After shutdown the sink is closed: read the table directly.
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            types = [
                json.loads(r[0])["event_type"]
                for r in conn.execute(
                    sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq")
                )
            ]
    finally:
        engine.dispose()
    assert [t for t in types if t.startswith("service.")] == ["service.start", "service.stop"]
    assert kit.audit.health() is None


def nested_app() -> FastAPI:
    app = FastAPI()

    items = APIRouter(prefix="/items", dependencies=[soc2kit.public("test routes")])

    @items.get("/{item_id}")
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @items.get("/{item_id}/notes/{note_id}")
    async def note(item_id: int, note_id: int) -> dict[str, int]:
        return {"note_id": note_id}

    v1 = APIRouter(prefix="/v1")
    v1.include_router(items)
    api = APIRouter()
    api.include_router(v1, prefix="/api")
    app.include_router(api)

    sub = FastAPI()

    @sub.get("/s/{x}", dependencies=[soc2kit.public("test route")])
    async def sub_route(x: str) -> dict[str, str]:
        return {"x": x}

    sub_router = APIRouter(prefix="/r", dependencies=[soc2kit.public("test routes")])

    @sub_router.get("/{y}")
    async def sub_router_route(y: str) -> dict[str, str]:
        return {"y": y}

    sub.include_router(sub_router)
    app.mount("/sub", sub)

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.mount("/star", public_app(Starlette(routes=[Route("/p/{z}", plain)]), reason="test app"))
    return app


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/v1/items/41", "/api/v1/items/{item_id}"),
        ("/api/v1/items/41/notes/7", "/api/v1/items/{item_id}/notes/{note_id}"),
        ("/sub/s/secret-slug", "/sub/s/{x}"),
        ("/sub/r/secret-slug", "/sub/r/{y}"),
        ("/star/p/secret-slug", "/star/p/{z}"),
    ],
)
@pytest.mark.parametrize("install_first", [True, False])
def test_audit_records_the_full_route_template(
    settings: soc2kit.Settings,
    serve: Any,
    http_event: Any,
    path: str,
    template: str,
    install_first: bool,
) -> None:
    if install_first:
        # Routes and mounts declared after install(): build them onto the same app.
        app = FastAPI()
        kit = soc2kit.install(app, settings)
        for route in nested_app().router.routes:
            app.router.routes.append(route)
    else:
        app = nested_app()
        kit = soc2kit.install(app, settings)
    client = serve(app)
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-security-policy"]  # mounted apps are covered too
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["route"] == template
    assert path not in json.dumps(event)
    assert "secret-slug" not in json.dumps(event)


def test_unmatched_paths_inside_a_mount_record_no_raw_path(
    settings: soc2kit.Settings, serve: Any, http_event: Any, expect_error: Any
) -> None:
    app = nested_app()
    kit = soc2kit.install(app, settings)
    client = serve(app)
    resp = client.get("/sub/secret-slug")
    expect_error(resp, 404, "not_found")
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["route"] in (None, "/sub/{path}")
    assert "secret-slug" not in json.dumps(event)


def mounted_error_app() -> FastAPI:
    sub = FastAPI()

    @sub.get("/n/{number}", dependencies=[soc2kit.public("test route")])
    async def number(number: int) -> dict[str, int]:
        return {"number": number}

    @sub.get("/boom", dependencies=[soc2kit.public("test route")])
    async def boom(request: Request) -> None:
        raise RuntimeError(f"failed for {request.headers['x-card']}")

    return sub


@pytest.mark.parametrize("mount_first", [True, False])
def test_mounted_apps_answer_errors_like_the_main_app(
    settings: soc2kit.Settings,
    serve: Any,
    http_event: Any,
    expect_error: Any,
    caplog: pytest.LogCaptureFixture,
    mount_first: bool,
) -> None:
    # FastAPI's own handlers would echo the submitted value ("input") in a 422
    # and answer a crash in plain text.
    app = FastAPI()
    if mount_first:
        app.mount("/sub", mounted_error_app())
        kit = soc2kit.install(app, settings)
    else:
        kit = soc2kit.install(app, settings)
        app.mount("/sub", mounted_error_app())  # covered at start-up
    client = serve(app)

    resp = client.get("/sub/n/card-4111111111111111")
    body = expect_error(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["path", "number"]
    assert "4111111111111111" not in resp.text
    assert http_event(kit, resp.headers["x-request-id"])["route"] == "/sub/n/{number}"

    resp = client.get("/sub/boom", headers={"x-card": "4111111111111111"})
    expect_error(resp, 500, "internal_error")
    assert "4111111111111111" not in resp.text
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"]) == (500, "error")
    assert event["extra"]["exception"] == "RuntimeError"
    assert all("4111111111111111" not in r.getMessage() for r in caplog.records)

    expect_error(client.get("/sub/nope"), 404, "not_found")
