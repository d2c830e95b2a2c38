"""Body size limits and per-client rate limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

import soc2kit

LIMIT = 100


class Note(BaseModel):
    text: str


def body_routes(seen: list[int]) -> Any:
    def declare(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.post("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def create(item_id: int, note: Note) -> dict[str, int]:
            seen.append(len(note.text))
            return {"item_id": item_id}

        @app.post("/upload/{upload_id}", dependencies=[soc2kit.public("test route")])
        async def upload(upload_id: int, request: Request) -> dict[str, int]:
            async for chunk in request.stream():
                seen.append(len(chunk))
            return {"bytes": sum(seen)}

    return declare


@pytest.fixture
def seen() -> list[int]:
    return []


@pytest.fixture
def limited(make_client: Any, seen: list[int]) -> tuple[TestClient, soc2kit.Kit]:
    client, kit = make_client(body_routes(seen), max_body_bytes=LIMIT)
    return client, kit  # type: ignore[no-any-return]


# --- body size -------------------------------------------------------------------


def test_body_at_the_limit_is_accepted(limited: Any, seen: list[int]) -> None:
    client, _ = limited
    body = json.dumps({"text": "x" * (LIMIT - 12)}).encode()
    assert len(body) == LIMIT
    resp = client.post("/items/1", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200
    assert seen == [LIMIT - 12]


def test_oversized_content_length_is_413_before_the_handler_runs(
    limited: Any, seen: list[int], expect_error: Any, http_event: Any
) -> None:
    client, kit = limited
    body = json.dumps({"text": "x" * LIMIT}).encode()
    resp = client.post("/items/77", content=body, headers={"content-type": "application/json"})
    expect_error(resp, 413, "payload_too_large")
    assert seen == []
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"], event["http_method"]) == (
        413,
        "failure",
        "POST",
    )
    # Refused before routing: no template is known, and the raw path is never recorded.
    assert event["route"] is None
    assert "/items/77" not in json.dumps(event)


def test_oversized_content_length_is_refused_without_reading_the_body(
    limited: Any, asgi: Any, expect_error: Any
) -> None:
    client, _ = limited
    resp = asgi(
        client.app,
        "POST",
        "/upload/1",
        headers=[(b"host", b"testserver"), (b"content-length", str(LIMIT + 1).encode())],
        body=[b"x" * (LIMIT + 1)],
    )
    expect_error(resp, 413, "payload_too_large")
    assert resp.received == 0


def test_chunked_body_past_the_limit_is_413(
    limited: Any, seen: list[int], expect_error: Any, http_event: Any
) -> None:
    client, kit = limited

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 30

    resp = client.post("/upload/5", content=chunks())
    assert "content-length" not in resp.request.headers
    assert resp.request.headers["transfer-encoding"] == "chunked"
    body = expect_error(resp, 413, "payload_too_large")
    assert set(body) <= {"error", "request_id", "detail"}
    assert sum(seen) <= LIMIT
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"]) == (413, "failure")
    assert event["route"] == "/upload/{upload_id}"


def test_chunked_json_body_past_the_limit_never_reaches_the_model(
    limited: Any, seen: list[int], expect_error: Any
) -> None:
    client, _ = limited

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 30
        yield b'"}'

    resp = client.post("/items/1", content=chunks(), headers={"content-type": "application/json"})
    expect_error(resp, 413, "payload_too_large")
    assert seen == []


def test_streamed_body_is_not_read_past_the_limit(
    limited: Any, seen: list[int], asgi: Any, expect_error: Any
) -> None:
    # Ten 30-byte chunks without Content-Length: the handler sees at most LIMIT
    # bytes and the server is not asked for the rest.
    client, _ = limited
    resp = asgi(client.app, "POST", "/upload/2", body=[b"x" * 30] * 10)
    expect_error(resp, 413, "payload_too_large")
    assert seen == [30, 30, 30]
    assert resp.received == 4


def test_body_longer_than_its_content_length_is_413(
    limited: Any, seen: list[int], asgi: Any, expect_error: Any
) -> None:
    client, _ = limited
    resp = asgi(
        client.app,
        "POST",
        "/upload/3",
        headers=[(b"host", b"testserver"), (b"content-length", b"10")],
        body=[b"x" * 60, b"x" * 60],
    )
    expect_error(resp, 413, "payload_too_large")
    assert sum(seen) <= LIMIT


@pytest.mark.parametrize(
    "lengths",
    [
        [b"abc"],
        [b"-1"],
        [b"1e2"],
        [b"+10"],
        [b"0x10"],
        [b""],
        [b"10, 10"],
        [b"10", b"11"],
        [b"\xd9\xa1"],  # ARABIC-INDIC DIGIT ONE, a Unicode digit
    ],
)
def test_malformed_or_conflicting_content_length_is_400(
    limited: Any,
    seen: list[int],
    asgi: Any,
    expect_error: Any,
    http_event: Any,
    lengths: list[bytes],
) -> None:
    client, kit = limited
    headers = [(b"host", b"testserver"), *((b"content-length", v) for v in lengths)]
    resp = asgi(client.app, "POST", "/upload/4", headers=headers, body=b"x" * 10)
    expect_error(resp, 400, "invalid_content_length")
    assert seen == []
    assert resp.received == 0
    event = http_event(kit, resp.header("x-request-id"))
    assert (event["status_code"], event["outcome"]) == (400, "failure")


def test_repeated_identical_content_length_is_accepted(
    limited: Any, seen: list[int], asgi: Any
) -> None:
    # RFC 9112 section 6.3 lets a recipient treat identical repeated values as one.
    client, _ = limited
    headers = [(b"host", b"testserver"), (b"content-length", b"10"), (b"content-length", b"10")]
    resp = asgi(client.app, "POST", "/upload/4", headers=headers, body=b"x" * 10)
    assert resp.status == 200
    assert sum(seen) == 10


# --- rate limits -----------------------------------------------------------------


def rate_routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}


@pytest.fixture
def rate_limited(make_client: Any) -> tuple[TestClient, soc2kit.Kit]:
    client, kit = make_client(
        rate_routes, rate_limit="3/minute", trusted_proxies=["10.0.0.0/8"], audit_client_ip="full"
    )
    return client, kit  # type: ignore[no-any-return]


def test_fourth_request_in_a_minute_is_429_with_retry_after(
    rate_limited: Any, expect_error: Any, http_event: Any
) -> None:
    client, kit = rate_limited
    for i in range(3):
        assert client.get(f"/items/{i}").status_code == 200
    resp = client.get("/items/3")
    expect_error(resp, 429, "rate_limited")
    retry = resp.headers["retry-after"]
    assert retry.isdigit()
    assert 1 <= int(retry) <= 60
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"]) == (429, "denied")
    assert event["extra"]["rejected"] == "rate_limited"
    assert "/items/3" not in json.dumps(event)


def test_clients_have_separate_buckets(rate_limited: Any) -> None:
    client, _ = rate_limited
    alice = TestClient(client.app, client=("192.0.2.10", 5000))
    bob = TestClient(client.app, client=("192.0.2.20", 5000))
    assert [alice.get("/items/1").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [bob.get("/items/1").status_code for _ in range(3)] == [200, 200, 200]
    assert alice.get("/items/1").status_code == 429


def test_clients_behind_a_trusted_proxy_have_separate_buckets(rate_limited: Any) -> None:
    client, _ = rate_limited
    proxy = TestClient(client.app, client=("10.0.0.1", 5000))

    def via(ip: str) -> int:
        return proxy.get("/items/1", headers={"x-forwarded-for": ip}).status_code

    assert [via("203.0.113.1") for _ in range(4)] == [200, 200, 200, 429]
    assert via("203.0.113.2") == 200


def test_spoofed_forwarded_for_does_not_reset_the_bucket(rate_limited: Any) -> None:
    # An untrusted client cannot mint new identities with X-Forwarded-For.
    client, _ = rate_limited
    attacker = TestClient(client.app, client=("192.0.2.66", 5000))
    statuses = [
        attacker.get("/items/1", headers={"x-forwarded-for": f"198.51.100.{i}"}).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]


def test_rate_limit_can_be_turned_off(make_client: Any) -> None:
    client, _ = make_client(rate_routes, rate_limit="1/minute", rate_limit_enabled=False)
    assert {client.get("/items/1").status_code for _ in range(5)} == {200}
