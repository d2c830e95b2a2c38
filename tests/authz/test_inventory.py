"""The route inventory and the start-up coverage proof."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from tests.conftest import audit_rows

import soc2kit
from soc2kit import Principal, public, require
from soc2kit.authz import RouteEntry, build_inventory, protected_app, public_app, undeclared
from soc2kit.authz.inventory import check_coverage

DOCS = ("public", "FastAPI's API documentation (served only while the docs setting is on)")


def by_path(entries: list[RouteEntry]) -> dict[str, RouteEntry]:
    paths = [e.path for e in entries]
    assert len(paths) == len(set(paths)), paths
    return {e.path: e for e in entries}


def nested_app(static_dir: Path) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    leaf = APIRouter(prefix="/leaf", dependencies=[public("leaf routers are public")])

    @leaf.get("/{n}")
    def leaf_get(n: int) -> None: ...

    @leaf.delete("/{n}", dependencies=[require("things", "delete")])
    def leaf_delete(n: int) -> None: ...

    bare = APIRouter(prefix="/bare")

    @bare.post("/thing")
    def bare_thing() -> None: ...

    middle = APIRouter(prefix="/middle")
    middle.include_router(leaf)
    middle.include_router(bare, dependencies=[require("things", "write")])
    top = APIRouter(prefix="/top")
    top.include_router(middle)

    @top.put("/undeclared")
    def top_undeclared() -> None: ...

    app.include_router(top, prefix="/v1")

    def needs_permission(p: Principal = require("reports", "read")) -> Principal:
        return p

    @app.get("/reports")
    def reports(p: Principal = Depends(needs_permission)) -> None: ...

    sub = FastAPI()  # its own docs routes: not covered by soc2kit's docs switch

    @sub.get("/ok", dependencies=[public("sub ok")])
    def sub_ok() -> None: ...

    @sub.get("/secret")
    def sub_secret() -> None: ...

    sub_router = APIRouter(prefix="/r", dependencies=[require("sub", "read")])

    @sub_router.get("/{x}")
    def sub_router_x(x: str) -> None: ...

    sub.include_router(sub_router)
    app.mount("/sub", sub)

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    app.mount("/star", Starlette(routes=[Route("/p/{z}", plain)]))
    app.mount("/star-public", public_app(Starlette(routes=[]), reason="legacy pages"))
    app.mount("/static", StaticFiles(directory=static_dir))
    app.mount("/assets", public_app(StaticFiles(directory=static_dir), reason="web assets"))
    app.mount(
        "/exports",
        protected_app(StaticFiles(directory=static_dir), resource="exports", action="read"),
    )
    app.add_route("/ping", public_app(PlainTextResponse("pong"), reason="asgi endpoint"))

    @app.websocket("/ws/declared")
    async def ws_declared(websocket: WebSocket, p: Principal = require("chat", "join")) -> None: ...

    @app.websocket("/ws/public", dependencies=[public("echo")])
    async def ws_public(websocket: WebSocket) -> None: ...

    @app.websocket("/ws/undeclared")
    async def ws_undeclared(websocket: WebSocket) -> None: ...

    ws_router = APIRouter(prefix="/rooms", dependencies=[require("rooms", "join")])

    @ws_router.websocket("/{room}")
    async def room(websocket: WebSocket, room: str) -> None: ...

    app.include_router(ws_router)
    return app


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "static"
    directory.mkdir()
    (directory / "index.html").write_text("<p>hi</p>")
    return directory


def test_inventory_covers_routers_mounts_and_websockets(static_dir: Path) -> None:
    inventory = build_inventory(nested_app(static_dir))
    entries = {(e.path, e.methods): e for e in inventory}
    assert len(entries) == len(inventory)
    expected: dict[str, tuple[tuple[str, ...], str, Any]] = {
        "/v1/top/middle/leaf/{n}": (("GET",), "http", ("public", "leaf routers are public")),
        "/v1/top/middle/bare/thing": (("POST",), "http", ("permission", "things", "write")),
        "/v1/top/undeclared": (("PUT",), "http", None),
        "/reports": (("GET",), "http", ("permission", "reports", "read")),
        "/sub/ok": (("GET",), "http", ("public", "sub ok")),
        "/sub/secret": (("GET",), "http", None),
        "/sub/r/{x}": (("GET",), "http", ("permission", "sub", "read")),
        "/sub/docs": (("GET", "HEAD"), "http", None),
        "/sub/openapi.json": (("GET", "HEAD"), "http", None),
        "/star/p/{z}": (("GET", "HEAD"), "http", None),
        "/star-public/{path}": ((), "mount", ("public", "legacy pages")),
        "/static/{path}": ((), "mount", None),
        "/assets/{path}": ((), "mount", ("public", "web assets")),
        "/exports/{path}": ((), "mount", ("permission", "exports", "read")),
        "/ping": ((), "http", ("public", "asgi endpoint")),
        "/ws/declared": (("WEBSOCKET",), "websocket", ("permission", "chat", "join")),
        "/ws/public": (("WEBSOCKET",), "websocket", ("public", "echo")),
        "/ws/undeclared": (("WEBSOCKET",), "websocket", None),
        "/rooms/{room}": (("WEBSOCKET",), "websocket", ("permission", "rooms", "join")),
    }
    for path, (methods, kind, declaration) in expected.items():
        entry = entries[(path, methods)]
        assert (entry.kind, entry.declaration) == (kind, declaration), path


def test_a_permission_anywhere_in_the_tree_wins_over_public(static_dir: Path) -> None:
    entries = build_inventory(nested_app(static_dir))
    # Router-level public() plus a route-level require(): the route needs the permission.
    (delete,) = [e for e in entries if e.methods == ("DELETE",)]
    assert delete.path == "/v1/top/middle/leaf/{n}"
    assert delete.declaration == ("permission", "things", "delete")


def test_undeclared_lists_exactly_the_routes_without_a_declaration(static_dir: Path) -> None:
    missing = {(e.methods, e.path) for e in undeclared(build_inventory(nested_app(static_dir)))}
    assert missing == {
        (("PUT",), "/v1/top/undeclared"),
        (("GET",), "/sub/secret"),
        (("GET", "HEAD"), "/sub/openapi.json"),
        (("GET", "HEAD"), "/sub/docs"),
        (("GET", "HEAD"), "/sub/docs/oauth2-redirect"),
        (("GET", "HEAD"), "/sub/redoc"),
        (("GET", "HEAD"), "/star/p/{z}"),
        ((), "/static/{path}"),
        (("WEBSOCKET",), "/ws/undeclared"),
    }


def test_docs_routes_of_the_installed_app_are_public() -> None:
    app = FastAPI()  # docs on by default
    entries = by_path(build_inventory(app))
    assert {p: e.declaration for p, e in entries.items()} == {
        "/openapi.json": DOCS,
        "/docs": DOCS,
        "/docs/oauth2-redirect": DOCS,
        "/redoc": DOCS,
    }


def test_an_app_route_named_like_the_docs_is_not_public() -> None:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.router.routes.clear()

    @app.get("/openapi.json")
    def fake() -> None: ...

    assert undeclared(build_inventory(app))[0].path == "/openapi.json"


def test_frontend_routes_are_listed(static_dir: Path) -> None:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    declared = APIRouter(prefix="/ui", dependencies=[public("single-page app")])
    declared.frontend("/", directory=static_dir, check_dir=True)
    app.include_router(declared)
    app.router.frontend("/raw", directory=static_dir, check_dir=True)
    entries = by_path(build_inventory(app))
    assert entries["/ui/{path}"].declaration == ("public", "single-page app")
    assert entries["/raw/{path}"].declaration is None
    assert entries["/raw/{path}"].methods == ("GET", "HEAD")


def test_describe() -> None:
    assert RouteEntry(("GET",), "/a", "http", ("permission", "r", "a")).describe() == "r:a"
    assert RouteEntry(("GET",), "/a", "http", ("public", "why")).describe() == "public: why"
    assert RouteEntry((), "/a", "mount", None).describe() == "UNDECLARED"


def test_mount_declarations_refuse_misuse(static_dir: Path) -> None:
    with pytest.raises(ValueError):
        public_app(StaticFiles(directory=static_dir), reason="  ")
    with pytest.raises(ValueError):
        protected_app(StaticFiles(directory=static_dir), resource="", action="read")
    with pytest.raises(soc2kit.ConfigurationError, match="require"):
        public_app(FastAPI(), reason="everything")
    with pytest.raises(soc2kit.ConfigurationError, match="require"):
        protected_app(APIRouter(), resource="a", action="b")
    declared = public_app(StaticFiles(directory=static_dir), reason="assets")
    with pytest.raises(soc2kit.ConfigurationError, match="already"):
        protected_app(declared, resource="a", action="b")


def test_build_inventory_refuses_a_non_app() -> None:
    with pytest.raises(soc2kit.ConfigurationError):
        build_inventory(object())  # type: ignore[arg-type]


# -- the coverage proof ----------------------------------------------------------------


def undeclared_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/fine", dependencies=[public("test")])
    def fine() -> None: ...

    @app.post("/forgotten/{item_id}")
    def forgotten(item_id: int) -> None: ...

    return app


def test_coverage_check_refuses_production() -> None:
    with pytest.raises(soc2kit.ConfigurationError) as info:
        check_coverage(undeclared_app(), production=True)
    assert "refusing to start in production" in str(info.value)
    assert "POST /forgotten/{item_id}" in str(info.value)
    assert "/fine" not in str(info.value)


def test_coverage_check_warns_outside_production(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="soc2kit.authz"):
        missing = check_coverage(undeclared_app(), production=False)
    assert [e.path for e in missing] == ["/forgotten/{item_id}"]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "POST /forgotten/{item_id}" in record.getMessage()


def test_coverage_check_is_silent_when_everything_is_declared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    with caplog.at_level(logging.WARNING, logger="soc2kit.authz"):
        assert check_coverage(app, production=True) == []
    assert caplog.records == []


def test_production_start_up_refuses_an_undeclared_route(
    make_settings: Callable[..., soc2kit.Settings],
) -> None:
    app = undeclared_app()
    kit = soc2kit.install(app, make_settings())
    # Production as start-up sees it (the rest of the production guard is tested elsewhere).
    kit.settings = kit.settings.model_copy(update={"environment": "production"})
    assert kit.settings.is_production
    try:
        with (
            pytest.raises(soc2kit.ConfigurationError, match=r"POST /forgotten/\{item_id\}"),
            TestClient(app),
        ):
            pass
        assert "service.start" not in [e["event_type"] for e in audit_rows(kit)]
    finally:
        kit.shutdown()


def test_start_up_outside_production_warns_and_serves(
    make_client: Callable[..., tuple[TestClient, soc2kit.Kit]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.get("/forgotten")
        def forgotten() -> None: ...

    with caplog.at_level(logging.WARNING, logger="soc2kit.authz"):
        client, kit = make_client(routes)
    assert any("GET /forgotten" in r.getMessage() for r in caplog.records)
    assert client.get("/forgotten").status_code == 403
    assert "service.start" in [e["event_type"] for e in audit_rows(kit)]
