"""Security response headers: on every answer, errors included, overridable per setting."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient

import soc2kit
from soc2kit.http import headers as security_headers

API_CSP = "default-src 'none'; frame-ancestors 'none'"
BASELINE = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": API_CSP,
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-frame-options": "DENY",
}


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/items/{item_id}", dependencies=[soc2kit.public("test route")])
    async def write(item_id: int, request: Request) -> dict[str, int]:
        await request.body()
        return {"item_id": item_id}

    @app.get("/boom", dependencies=[soc2kit.public("test route")])
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/cacheable", dependencies=[soc2kit.public("test route")])
    async def cacheable() -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"Cache-Control": "public, max-age=600"})

    @app.get("/own-headers", dependencies=[soc2kit.public("test route")])
    async def own_headers() -> JSONResponse:
        return JSONResponse(
            {},
            headers={
                "X-Frame-Options": "SAMEORIGIN",
                "Content-Security-Policy": "default-src 'self'",
                "X-Request-ID": "app-chosen-id",
            },
        )


def assert_security_headers(headers: Any, *, hsts: bool = False) -> None:
    for name, value in BASELINE.items():
        assert headers.get_list(name) == [value], name
    policy = headers["permissions-policy"]
    for feature in ("camera=()", "geolocation=()", "microphone=()", "payment=()"):
        assert feature in policy
    assert ("strict-transport-security" in headers) is hsts


@pytest.fixture
def client(make_client: Any) -> TestClient:
    client, _ = make_client(routes, max_body_bytes=10, rate_limit="5/minute")
    return client  # type: ignore[no-any-return]


def test_success_has_every_security_header(client: TestClient) -> None:
    resp = client.get("/items/1")
    assert resp.status_code == 200
    assert_security_headers(resp.headers)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/nope", {}, 404),
        ("DELETE", "/items/1", {}, 405),
        ("POST", "/items/1", {"content": b"x" * 11}, 413),
        ("GET", "/items/x", {}, 422),
        ("GET", "/boom", {}, 500),
        ("GET", "/items/1", {"headers": {"host": "evil.com"}}, 400),
        ("POST", "/items/1", {"headers": {"content-length": "1x"}}, 400),
    ],
)
def test_errors_have_every_security_header(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    resp = client.request(method, path, **kwargs)
    assert resp.status_code == status
    assert_security_headers(resp.headers)
    assert resp.headers["x-request-id"]


def test_rate_limited_answer_has_every_security_header(client: TestClient) -> None:
    statuses = [client.get("/items/1").status_code for _ in range(6)]
    assert statuses[-1] == 429
    resp = client.get("/items/1")
    assert resp.status_code == 429
    assert_security_headers(resp.headers)


def test_hsts_only_when_https_is_required(make_client: Any) -> None:
    plain, _ = make_client(routes)
    assert "strict-transport-security" not in plain.get("/items/1").headers

    secure, _ = make_client(routes, https_only=True, hsts_max_age=300)
    https = TestClient(secure.app, base_url="https://testserver")
    resp = https.get("/items/1")
    assert resp.headers["strict-transport-security"] == "max-age=300; includeSubDomains"
    assert_security_headers(resp.headers, hsts=True)
    # Also on the answer that sends a plain-HTTP client to HTTPS.
    redirect = TestClient(secure.app, follow_redirects=False).get("/items/1")
    assert redirect.status_code == 308
    assert_security_headers(redirect.headers, hsts=True)


def test_production_headers_include_hsts() -> None:
    built = dict(security_headers.build(soc2kit.Settings(environment="production")))
    assert built[b"strict-transport-security"] == b"max-age=63072000; includeSubDomains"
    assert built[b"content-security-policy"] == API_CSP.encode()
    explicit_off = soc2kit.Settings(environment="production", https_only=False)
    assert b"strict-transport-security" not in dict(security_headers.build(explicit_off))


@pytest.mark.parametrize(
    "credentials",
    [
        {"authorization": "Bearer abc.def.ghi"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"cookie": "session=abc"},
        {"x-api-key": "k-123"},
    ],
)
def test_no_store_when_the_request_carries_credentials(
    client: TestClient, credentials: dict[str, str]
) -> None:
    resp = client.get("/items/1", headers=credentials)
    assert resp.headers.get_list("cache-control") == ["no-store"]
    # The application's own caching directive cannot override it either.
    resp = client.get("/cacheable", headers=credentials)
    assert resp.headers.get_list("cache-control") == ["no-store"]
    # Error answers too.
    resp = client.get("/nope", headers=credentials)
    assert resp.headers.get_list("cache-control") == ["no-store"]


def test_cache_control_left_to_the_app_without_credentials(client: TestClient) -> None:
    assert "cache-control" not in client.get("/items/1").headers
    resp = client.get("/cacheable")
    assert resp.headers.get_list("cache-control") == ["public, max-age=600"]


def test_app_set_headers_win_and_are_not_duplicated(client: TestClient) -> None:
    resp = client.get("/own-headers")
    assert resp.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert resp.headers.get_list("content-security-policy") == ["default-src 'self'"]
    assert resp.headers.get_list("x-content-type-options") == ["nosniff"]
    # The request id is soc2kit's: an application cannot forge or duplicate it.
    ids = resp.headers.get_list("x-request-id")
    assert len(ids) == 1
    assert ids[0] != "app-chosen-id"


def test_settings_override_and_remove_headers(make_client: Any) -> None:
    client, _ = make_client(
        routes,
        security_headers={
            "referrer-policy": "strict-origin-when-cross-origin",  # any spelling of the name
            "X-Frame-Options": "",  # "" removes the header
            "X-Extra-Policy": "on",
        },
    )
    for resp in (client.get("/items/1"), client.get("/nope")):
        assert resp.headers.get_list("referrer-policy") == ["strict-origin-when-cross-origin"]
        assert "x-frame-options" not in resp.headers
        assert resp.headers["x-extra-policy"] == "on"
        assert resp.headers["content-security-policy"] == API_CSP
        assert resp.headers["x-content-type-options"] == "nosniff"
