"""Helpers for the HTTP battery: audit lookups and raw ASGI calls.

The test modules here are not a package (``tests/http`` would shadow the
standard library's ``http``), so shared helpers are fixtures rather than
imports (importing ``tests/conftest.py`` by module name is unreliable once several
``conftest.py`` files exist). ``audit_rows`` mirrors the helper in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

import soc2kit

Row = dict[str, Any]


def _audit_rows(kit: soc2kit.Kit) -> list[Row]:
    """Every stored audit event of ``kit``, oldest first, as dicts."""
    kit.audit.flush()
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq"))
        return [json.loads(r[0]) for r in rows]


def _http_event(kit: soc2kit.Kit, request_id: str) -> Row:
    """The one ``http.request`` event recorded for ``request_id``."""
    found = [
        row
        for row in _audit_rows(kit)
        if row["event_type"] == "http.request" and row["request_id"] == request_id
    ]
    assert len(found) == 1, f"expected one http.request event for {request_id}, got {found}"
    return found[0]


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    received: int = 0
    """How many ``http.request`` messages the app pulled from the client."""

    def header(self, name: str) -> str | None:
        values = self.headers_named(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == key]

    def json(self) -> Any:
        return json.loads(self.body)


async def call_asgi(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    headers: Sequence[tuple[bytes, bytes]] = ((b"host", b"testserver"),),
    body: bytes | Iterable[bytes] = b"",
    client: tuple[str, int] | None = ("10.0.0.1", 1234),
    scheme: str = "http",
    query: bytes = b"",
) -> RawResponse:
    """One HTTP request straight through the ASGI app, headers exactly as given."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": quote(path, safe="/:@!$&'()*+,;=%").encode("ascii"),
        "root_path": "",
        "query_string": query,
        "headers": list(headers),
        "client": client,
        "server": ("testserver", 80),
    }
    result = RawResponse(status=0, headers=[], body=b"")
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            result.received += 1
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert result.status == 0, "response started twice"
            result.status = message["status"]
            result.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    await app(scope, receive, send)
    return result


@pytest.fixture
def audit_rows() -> Callable[[soc2kit.Kit], list[Row]]:
    """``audit_rows(kit)``: every stored audit event, oldest first (flushes first)."""
    return _audit_rows


@pytest.fixture
def http_event() -> Callable[[soc2kit.Kit, str], Row]:
    """``http_event(kit, request_id)``: the single http.request event of that request."""
    return _http_event


@pytest.fixture
def asgi() -> Callable[..., RawResponse]:
    """Synchronous wrapper around :func:`call_asgi` (a fresh event loop per call)."""

    def run(app: Any, method: str = "GET", path: str = "/", **kwargs: Any) -> RawResponse:
        return asyncio.run(call_asgi(app, method, path, **kwargs))

    return run


def _expect_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a soc2kit JSON error answer; return its body.

    ``response`` is an httpx response or a :class:`RawResponse`.
    """
    if isinstance(response, RawResponse):
        got_status, ctype, rid, text = (
            response.status,
            response.header("content-type"),
            response.header("x-request-id"),
            response.body.decode(),
        )
    else:
        got_status = response.status_code
        ctype = response.headers.get("content-type")
        rid = response.headers.get("x-request-id")
        text = response.text
    assert got_status == status, text
    assert ctype is not None and ctype.startswith("application/json"), ctype
    body = json.loads(text)
    assert body["error"] == code
    assert rid and body["request_id"] == rid
    for marker in ("Traceback", 'File "', "Exception", "Error:"):
        assert marker not in text
    return body  # type: ignore[no-any-return]


@pytest.fixture
def expect_error() -> Callable[[Any, int, str], dict[str, Any]]:
    """``expect_error(response, status, code)``: JSON body with error code and request id."""
    return _expect_error
