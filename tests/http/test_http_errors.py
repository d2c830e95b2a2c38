"""Bad input gets a short JSON answer, never internals, and every request is audited."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated, Any, Literal

import pytest
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

import soc2kit
from soc2kit.http import ApiError

SECRET = "hunter2-" + uuid.uuid4().hex  # unique per run: a hit can only be an echo


class Credentials(BaseModel):
    username: str
    password: int  # a string password is a type error whose value must not be echoed


class Cat(BaseModel):
    kind: Literal["cat"]


class Dog(BaseModel):
    kind: Literal["dog"]


class Pet(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]


class Coupon(BaseModel):
    code: str

    @field_validator("code")
    @classmethod
    def _known(cls, value: str) -> str:
        # A typical application validator that (carelessly) names the value.
        raise ValueError(f"unknown coupon {value}")


def routes(calls: list[str]) -> Any:
    def declare(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.post("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def create_item(item_id: int, body: Credentials) -> dict[str, int]:
            calls.append("create_item")
            return {"item_id": item_id}

        @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def read_item(item_id: int) -> dict[str, int]:
            return {"item_id": item_id}

        @app.get("/boom/{item_id}", dependencies=[soc2kit.public("test route")])
        async def boom(item_id: int, request: Request) -> None:
            # The message is built at run time, like one holding SQL parameters would be.
            raise RuntimeError(f"card {request.headers['x-card']} declined for {item_id}")

        @app.get("/stream-boom", dependencies=[soc2kit.public("test route")])
        async def stream_boom(request: Request) -> StreamingResponse:
            secret = request.headers["x-card"]

            async def body() -> Any:
                yield b"partial"
                raise RuntimeError(f"stream failed for {secret}")

            return StreamingResponse(body())

        @app.get("/header", dependencies=[soc2kit.public("test route")])
        async def with_header(x_count: Annotated[int, Header()]) -> dict[str, int]:
            return {"count": x_count}

        @app.get("/query", dependencies=[soc2kit.public("test route")])
        async def with_query(
            token_id: Annotated[uuid.UUID, Query()],
            when: Annotated[int, Query()],
        ) -> dict[str, str]:
            return {}

        @app.post("/pets", dependencies=[soc2kit.public("test route")])
        async def pets(body: Pet) -> dict[str, str]:
            return {}

        @app.post("/coupons", dependencies=[soc2kit.public("test route")])
        async def coupons(body: Coupon) -> dict[str, str]:
            return {}

        @app.get("/http-error", dependencies=[soc2kit.public("test route")])
        async def http_error() -> None:
            raise HTTPException(409, detail="item already archived")

        @app.get("/api-error", dependencies=[soc2kit.public("test route")])
        async def api_error() -> None:
            raise ApiError(402, "payment_required")

    return declare


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def client_kit(make_client: Any, calls: list[str]) -> Any:
    return make_client(routes(calls))


def test_invalid_json_is_422_and_audited(
    client_kit: Any, calls: list[str], expect_error: Any, http_event: Any
) -> None:
    client, kit = client_kit
    resp = client.post(
        "/items/42", content=b'{"username": "a", ', headers={"content-type": "application/json"}
    )
    body = expect_error(resp, 422, "validation_error")
    assert [e["type"] for e in body["errors"]] == ["json_invalid"]
    assert calls == []
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["status_code"] == 422
    assert event["outcome"] == "failure"
    assert event["route"] == "/items/{item_id}"
    assert event["http_method"] == "POST"
    assert event["action"] == "create"
    assert event["extra"]["validation_errors"] == [{"loc": ["body", "18"], "type": "json_invalid"}]
    assert "/items/42" not in json.dumps(event)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_json_body_with_other_content_type_is_refused(
    client_kit: Any, calls: list[str], expect_error: Any, http_event: Any, content_type: str | None
) -> None:
    # FastAPI 0.165 checks the content type strictly: a JSON body sent under
    # another (or no) media type is not parsed, so the model fails validation.
    client, kit = client_kit
    headers = {"content-type": content_type} if content_type else {}
    resp = client.post("/items/1", content=b'{"username": "a", "password": 1}', headers=headers)
    body = expect_error(resp, 422, "validation_error")
    assert body["errors"] == [
        {
            "loc": ["body"],
            "type": "model_attributes_type",
            "msg": "Input should be a valid dictionary or object to extract fields from",
        }
    ]
    assert calls == []
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"]) == (422, "failure")


def test_well_formed_json_reaches_the_handler(client_kit: Any, calls: list[str]) -> None:
    client, _ = client_kit
    resp = client.post("/items/7", json={"username": "a", "password": 1})
    assert resp.status_code == 200
    assert resp.json() == {"item_id": 7}
    assert calls == ["create_item"]


def test_unhandled_exception_is_500_without_its_text(
    client_kit: Any,
    caplog: pytest.LogCaptureFixture,
    expect_error: Any,
    http_event: Any,
    audit_rows: Any,
) -> None:
    client, kit = client_kit
    caplog.set_level(logging.DEBUG)
    resp = client.get("/boom/13", headers={"x-card": SECRET})
    body = expect_error(resp, 500, "internal_error")
    assert set(body) == {"error", "request_id"}
    assert SECRET not in resp.text
    assert "declined" not in resp.text
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["status_code"] == 500
    assert event["outcome"] == "error"
    assert event["route"] == "/boom/{item_id}"
    assert event["extra"]["exception"] == "RuntimeError"
    # The failure is logged (type and request id) but never its message.
    logged = [r for r in caplog.records if r.name == "soc2kit.http"]
    assert any(
        "RuntimeError" in r.getMessage() and resp.headers["x-request-id"] in r.getMessage()
        for r in logged
    )
    for record in caplog.records:
        # The traceback shows source lines (the f-string template), not run-time values.
        text = record.getMessage() + (record.exc_text or "") + str(record.exc_info or "")
        assert SECRET not in text, record.name
    assert SECRET not in json.dumps(audit_rows(kit))


def test_exception_after_the_response_started_is_audited_as_an_error(
    client_kit: Any, caplog: pytest.LogCaptureFixture, http_event: Any
) -> None:
    client, kit = client_kit
    caplog.set_level(logging.DEBUG)
    resp = client.get("/stream-boom", headers={"x-card": SECRET})
    assert resp.status_code == 200  # the status line was already on the wire
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["extra"]["exception"] == "RuntimeError"
    assert event["outcome"] == "error"
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_validation_error_never_echoes_a_password(
    client_kit: Any, expect_error: Any, http_event: Any, audit_rows: Any
) -> None:
    client, kit = client_kit
    resp = client.post("/items/1", json={"username": "alice", "password": SECRET})
    body = expect_error(resp, 422, "validation_error")
    assert body["errors"] == [
        {
            "loc": ["body", "password"],
            "type": "int_parsing",
            "msg": "Input should be a valid integer, unable to parse string as an integer",
        }
    ]
    assert SECRET not in resp.text
    assert "alice" not in resp.text  # nor the rest of the submitted object
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["extra"]["validation_errors"] == [
        {"loc": ["body", "password"], "type": "int_parsing"}
    ]
    assert SECRET not in json.dumps(audit_rows(kit))


def test_validation_error_never_echoes_a_header_or_query_value(
    client_kit: Any, expect_error: Any
) -> None:
    client, _ = client_kit
    resp = client.get("/header", headers={"x-count": SECRET})
    body = expect_error(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["header", "x-count"]
    assert SECRET not in resp.text

    resp = client.get("/query", params={"token_id": SECRET, "when": SECRET})
    body = expect_error(resp, 422, "validation_error")
    assert [e["loc"] for e in body["errors"]] == [["query", "token_id"], ["query", "when"]]
    assert SECRET not in resp.text
    # pydantic's UUID message quotes the offending character and its position.
    assert "found `h` at 0" not in resp.text


def test_validation_error_never_echoes_a_discriminator_tag(
    client_kit: Any, expect_error: Any
) -> None:
    client, _ = client_kit
    resp = client.post("/pets", json={"pet": {"kind": SECRET}})
    body = expect_error(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "pet"]
    assert body["errors"][0]["type"] == "union_tag_invalid"
    assert SECRET not in resp.text


def test_validation_error_never_echoes_a_value_quoted_by_the_app(
    client_kit: Any, expect_error: Any
) -> None:
    client, _ = client_kit
    resp = client.post("/coupons", json={"code": SECRET})
    body = expect_error(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "code"]
    assert body["errors"][0]["type"] == "value_error"
    assert SECRET not in resp.text


def test_unknown_route_is_404_json_and_audited_without_the_path(
    client_kit: Any, expect_error: Any, http_event: Any
) -> None:
    client, kit = client_kit
    resp = client.get(f"/no-such-thing/{SECRET}")
    expect_error(resp, 404, "not_found")
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"], event["route"]) == (404, "failure", None)
    assert SECRET not in json.dumps(event)


def test_wrong_method_is_405_json(client_kit: Any, expect_error: Any, http_event: Any) -> None:
    client, kit = client_kit
    resp = client.delete("/items/5")
    expect_error(resp, 405, "method_not_allowed")
    assert "DELETE" not in resp.headers["allow"]
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"], event["action"]) == (405, "failure", "delete")
    assert event["route"] in (None, "/items/{item_id}")


def test_application_http_errors_keep_the_json_shape(client_kit: Any, expect_error: Any) -> None:
    client, _ = client_kit
    body = expect_error(client.get("/http-error"), 409, "conflict")
    assert body["detail"] == "item already archived"  # chosen by the app for its client
    body = expect_error(client.get("/api-error"), 402, "payment_required")
    assert "detail" not in body
