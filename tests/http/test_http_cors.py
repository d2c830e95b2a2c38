"""CORS: off unless origins are listed; only listed origins are answered."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import soc2kit

APP_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example.com"


def routes(calls: list[str]) -> Any:
    def declare(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def read(item_id: int) -> dict[str, int]:
            calls.append("read")
            return {"item_id": item_id}

        @app.delete("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def delete(item_id: int) -> dict[str, int]:
            calls.append("delete")
            return {"item_id": item_id}

    return declare


@pytest.fixture
def calls() -> list[str]:
    return []


def cors_headers(resp: Any) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


def preflight(client: TestClient, origin: str, method: str = "DELETE", **extra: str) -> Any:
    headers = {"origin": origin, "access-control-request-method": method, **extra}
    return client.options("/items/1", headers=headers)


def test_no_cors_headers_when_no_origin_is_configured(make_client: Any, calls: list[str]) -> None:
    client, _ = make_client(routes(calls))
    resp = client.get("/items/1", headers={"origin": APP_ORIGIN})
    assert resp.status_code == 200
    assert cors_headers(resp) == {}
    resp = preflight(client, APP_ORIGIN)
    assert resp.status_code == 405  # no CORS layer: OPTIONS is just an unknown method
    assert cors_headers(resp) == {}


@pytest.fixture
def cors_client(make_client: Any, calls: list[str]) -> tuple[TestClient, soc2kit.Kit]:
    client, kit = make_client(routes(calls), cors_origins=[APP_ORIGIN])
    return client, kit  # type: ignore[no-any-return]


def test_allowed_origin_gets_cors_headers(cors_client: Any) -> None:
    client, _ = cors_client
    resp = client.get("/items/1", headers={"origin": APP_ORIGIN})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "Origin" in resp.headers["vary"]
    # Scripts on the allowed origin may read the request id, nothing else extra.
    assert resp.headers["access-control-expose-headers"] == "X-Request-ID"
    assert "access-control-allow-credentials" not in resp.headers  # off by default
    assert resp.headers["content-security-policy"]  # security headers still there


@pytest.mark.parametrize(
    "origin",
    [
        EVIL_ORIGIN,
        "http://app.example.com",  # scheme matters
        "https://app.example.com:8443",  # port matters
        "https://app.example.com.evil.com",
        "null",
    ],
)
def test_other_origins_get_no_allow_origin(cors_client: Any, origin: str) -> None:
    client, _ = cors_client
    resp = client.get("/items/1", headers={"origin": origin})
    assert resp.status_code == 200  # CORS is enforced by the browser, not by refusing
    assert "access-control-allow-origin" not in resp.headers
    assert "access-control-allow-credentials" not in resp.headers


def test_preflight_from_an_allowed_origin(cors_client: Any, calls: list[str]) -> None:
    client, _ = cors_client
    resp = preflight(
        client,
        APP_ORIGIN,
        "DELETE",
        **{"access-control-request-headers": "authorization, content-type, x-request-id"},
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "DELETE" in resp.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in resp.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-request-id"} <= allowed
    assert resp.headers["access-control-max-age"] == "600"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert calls == []  # a preflight never runs the handler


@pytest.mark.parametrize(
    ("origin", "method", "extra"),
    [
        (EVIL_ORIGIN, "DELETE", {}),
        (APP_ORIGIN, "CONNECT", {}),
        (APP_ORIGIN, "GET", {"access-control-request-headers": "x-secret-header"}),
    ],
)
def test_refused_preflight_is_a_json_400(
    cors_client: Any,
    calls: list[str],
    expect_error: Any,
    http_event: Any,
    origin: str,
    method: str,
    extra: dict[str, str],
) -> None:
    client, kit = cors_client
    resp = preflight(client, origin, method, **extra)
    expect_error(resp, 400, "cors_rejected")
    assert "access-control-allow-origin" not in resp.headers or origin == APP_ORIGIN
    assert calls == []
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"], event["action"]) == (400, "failure", "read")
    assert event["extra"]["rejected"] == "cors_rejected"


def test_credentials_only_when_turned_on(make_client: Any, calls: list[str]) -> None:
    client, _ = make_client(routes(calls), cors_origins=[APP_ORIGIN], cors_allow_credentials=True)
    resp = client.get("/items/1", headers={"origin": APP_ORIGIN})
    assert resp.headers["access-control-allow-credentials"] == "true"
    assert resp.headers["access-control-allow-origin"] == APP_ORIGIN  # never "*"
    resp = client.get("/items/1", headers={"origin": EVIL_ORIGIN})
    assert "access-control-allow-origin" not in resp.headers
