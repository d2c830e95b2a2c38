"""X-Request-ID: a well-formed inbound id is kept, anything else is replaced."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI

import soc2kit
from soc2kit import current_request_id


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
    async def read(item_id: int) -> dict[str, str | None]:
        return {"seen": current_request_id()}


@pytest.fixture
def client_kit(make_client: Any) -> Any:
    return make_client(routes)


def assert_fresh_uuid(value: str | None) -> str:
    assert value is not None
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    return value


def test_a_request_without_id_gets_a_fresh_uuid(client_kit: Any, http_event: Any) -> None:
    client, kit = client_kit
    first = client.get("/items/1")
    second = client.get("/items/1")
    rid = assert_fresh_uuid(first.headers["x-request-id"])
    assert rid != second.headers["x-request-id"]
    assert first.json() == {"seen": rid}  # the handler sees the same id
    event = http_event(kit, rid)
    assert event["route"] == "/items/{item_id}"
    assert "inbound_request_id_rejected" not in event.get("extra", {})


@pytest.mark.parametrize(
    "inbound",
    [
        "3f0c6a4e-8a3b-4c7e-9d2a-5b1e0f6c7d8a",
        "req-123",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "a" * 128,
        "trace.span_id:42",
    ],
)
def test_a_well_formed_id_is_echoed(client_kit: Any, http_event: Any, inbound: str) -> None:
    client, kit = client_kit
    resp = client.get("/items/1", headers={"x-request-id": inbound})
    assert resp.headers.get_list("x-request-id") == [inbound]
    assert resp.json() == {"seen": inbound}
    assert http_event(kit, inbound)["status_code"] == 200


def test_the_id_is_echoed_on_errors_too(client_kit: Any, expect_error: Any) -> None:
    client, _ = client_kit
    resp = client.get("/nope", headers={"x-request-id": "req-404"})
    body = expect_error(resp, 404, "not_found")
    assert body["request_id"] == "req-404"


@pytest.mark.parametrize(
    "inbound",
    [
        b"abc\r\nSet-Cookie: x=1",
        b"abc\ndef",
        b"abc\x00def",
        b"abc\x1b[31m",
        "caf\u00e9".encode(),
        "\u202eevil".encode(),
        b"\xff\xfe",
        b"a" * 129,
        b"a" * 200,
        b"",
        b" leading-space",
        b"-leading-dash",
        b"has space",
        b"semi;colon",
        b"<script>",
        b"a/b",
    ],
)
def test_a_hostile_id_is_replaced(
    client_kit: Any, asgi: Any, http_event: Any, audit_rows: Any, inbound: bytes
) -> None:
    client, kit = client_kit
    resp = asgi(
        client.app,
        "GET",
        "/items/1",
        headers=[(b"host", b"testserver"), (b"x-request-id", inbound)],
    )
    assert resp.status == 200
    rid = assert_fresh_uuid(resp.header("x-request-id"))
    assert resp.json() == {"seen": rid}
    event = http_event(kit, rid)
    assert event["extra"]["inbound_request_id_rejected"] is True
    if len(inbound) > 3:
        assert all(inbound.decode("latin-1") != row["request_id"] for row in audit_rows(kit))


def test_a_duplicated_id_header_is_replaced(client_kit: Any, asgi: Any, http_event: Any) -> None:
    client, kit = client_kit
    headers = [(b"host", b"testserver"), (b"x-request-id", b"one"), (b"x-request-id", b"two")]
    resp = asgi(client.app, "GET", "/items/1", headers=headers)
    rid = assert_fresh_uuid(resp.header("x-request-id"))
    assert http_event(kit, rid)["extra"]["inbound_request_id_rejected"] is True

    same = [(b"host", b"testserver"), (b"x-request-id", b"one"), (b"x-request-id", b"one")]
    resp = asgi(client.app, "GET", "/items/1", headers=same)
    assert_fresh_uuid(resp.header("x-request-id"))


def test_a_rejected_request_still_gets_an_id(client_kit: Any, asgi: Any, expect_error: Any) -> None:
    client, _ = client_kit
    resp = asgi(
        client.app, "GET", "/items/1", headers=[(b"host", b"evil.com"), (b"x-request-id", b"ok-1")]
    )
    body = expect_error(resp, 400, "invalid_host")
    assert body["request_id"] == "ok-1"


def test_the_header_name_is_configurable(make_client: Any, http_event: Any) -> None:
    client, kit = make_client(routes, request_id_header="X-Correlation-ID")
    resp = client.get("/items/1", headers={"x-correlation-id": "corr-1", "x-request-id": "req-1"})
    assert resp.headers["x-correlation-id"] == "corr-1"
    assert "x-request-id" not in resp.headers
    assert http_event(kit, "corr-1")["status_code"] == 200
