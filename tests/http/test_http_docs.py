"""Interactive API docs: gated by settings, and the only pages with a relaxed CSP."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

import soc2kit
from soc2kit.http.headers import API_CSP, DOCS_CSP

DOCS_PATHS = ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}


@pytest.mark.parametrize("path", DOCS_PATHS)
def test_docs_turned_off_in_development_answer_404_json(
    make_client: Any, expect_error: Any, http_event: Any, path: str
) -> None:
    # FastAPI() publishes docs by default; soc2kit's gate hides them when they are off.
    client, kit = make_client(routes, app=FastAPI(), environment="development", docs_enabled=False)
    resp = client.get(path)
    expect_error(resp, 404, "not_found")
    assert resp.headers["content-security-policy"] == API_CSP
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"]) == (404, "failure")
    assert client.get("/items/1").status_code == 200


def test_docs_off_via_fastapi_kwargs_are_not_routed(make_client: Any, expect_error: Any) -> None:
    client, _ = make_client(routes, environment="development", docs_enabled=False)
    for path in DOCS_PATHS:
        expect_error(client.get(path), 404, "not_found")


@pytest.fixture
def docs_client(make_client: Any) -> Any:
    client, _ = make_client(routes, app=FastAPI(), environment="development")
    return client


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_docs_pages_get_the_relaxed_csp(docs_client: Any, path: str) -> None:
    resp = docs_client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers.get_list("content-security-policy") == [DOCS_CSP]
    assert "frame-ancestors 'none'" in DOCS_CSP
    assert resp.headers["x-frame-options"] == "DENY"


def test_api_routes_keep_the_strict_csp_when_docs_are_on(docs_client: Any) -> None:
    for path in ("/items/1", "/openapi.json", "/nope", "/docs/extra", "/docsx"):
        resp = docs_client.get(path)
        assert resp.headers.get_list("content-security-policy") == [API_CSP], path
    assert docs_client.get("/openapi.json").json()["paths"]["/items/{item_id}"]


def test_docs_are_off_by_default_in_production_settings() -> None:
    settings = soc2kit.Settings(environment="production")
    assert settings.docs_active is False
    assert settings.fastapi_docs_kwargs() == {
        "docs_url": None,
        "redoc_url": None,
        "openapi_url": None,
    }
