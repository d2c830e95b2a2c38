"""Helpers of the security battery: served apps, raw ASGI calls, refusal and audit checks.

Every attack in the battery is judged on four things, checked here once:

1. the exact status (401 with ``WWW-Authenticate`` for authentication, 403/404
   for authorization, 503 when the policy cannot be confirmed);
2. a short JSON body that says no more than its error code;
3. the handler did not run (the tests count invocations);
4. the refusal is in the audit trail, next to the ``http.request`` event with
   the right outcome, and no token material is anywhere in the audit table.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from tests.authn.jwt_helpers import JwksServer

import soc2kit

Row = dict[str, Any]
Routes = Callable[[FastAPI, soc2kit.Kit], None]

CHALLENGES = {"unauthorized": "Bearer", "invalid_token": 'Bearer error="invalid_token"'}
"""The ``WWW-Authenticate`` answer that goes with each 401 error code."""

HTTP_OUTCOMES = {
    200: "success",
    201: "success",
    307: "success",
    401: "denied",
    403: "denied",
    404: "failure",
    405: "failure",
    409: "failure",
    503: "error",
    1008: "denied",
}
"""The ``outcome`` of the ``http.request`` event for a status (or WebSocket close code)."""

EVENT_OUTCOMES = {
    "authn.failure": "failure",
    "authz.denied": "denied",
    "authz.misconfiguration": "denied",
    "authz.unavailable": "error",
    "authz.break_glass.use": "success",
}

MAX_ERROR_BODY = 120
"""An error body is ``{"error": code, "request_id": id}``: nothing longer is needed."""


# apps ---------------------------------------------------------------------------------------


def settings_for(directory: Path, **overrides: Any) -> soc2kit.Settings:
    """Test settings with the database and data under ``directory`` (SQLite by default)."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": f"sqlite:///{directory / 'app.db'}",
        "data_dir": directory / ".soc2kit",
        "rate_limit": "100000/minute",  # the battery sends many requests from one address
        # Policy sync: PostgreSQL's LISTEN waits this long, and shutdown waits for it.
        "policy_poll_seconds": 0.2,
        **overrides,
    }
    return soc2kit.Settings(**values)


@contextmanager
def serving(settings: soc2kit.Settings, routes: Routes) -> Iterator[tuple[TestClient, soc2kit.Kit]]:
    """An app with soc2kit installed, ``routes`` declared and its lifespan running."""
    app = FastAPI(**settings.fastapi_docs_kwargs())  # type: ignore[arg-type]
    kit = soc2kit.install(app, settings)
    app.include_router(kit.health_router())
    routes(app, kit)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, kit


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_request_id() -> str:
    return f"sec-{uuid.uuid4().hex}"


@dataclass
class Attacker:
    """A server on 127.0.0.1 the attacker's tokens point at; it records every contact."""

    server: JwksServer
    connections: list[Any] = field(default_factory=list)
    """Every TCP connection accepted, whatever was (or was not) sent on it."""

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def contacts(self) -> int:
        return len(self.connections) + sum(self.server.hits.values())


# raw requests ---------------------------------------------------------------------------------


def asgi_request(
    app: Any,
    method: str,
    path: str,
    *,
    raw_path: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    query: bytes = b"",
    root_path: str = "",
    request_id: str | None = None,
) -> httpx.Response:
    """One request straight into the ASGI app with the path exactly as given (no client
    normalisation of ``..``, ``//`` or look-alike characters), as an httpx response."""
    rid = request_id or new_request_id()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode("utf-8"),
        "root_path": root_path,
        "query_string": query,
        "headers": [
            (b"host", b"testserver"),
            (b"x-request-id", rid.encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers),
        ],
        "client": ("10.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    status = 0
    out_headers: list[tuple[bytes, bytes]] = []
    body = b""
    pending = [b""]

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers, body
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return httpx.Response(status, headers=out_headers, content=body)


def websocket_close_code(
    client: TestClient, path: str, headers: dict[str, str] | None = None
) -> int:
    """Connect and expect a refusal; the close code the server sent."""
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect(path, headers=headers or {}),
    ):
        pass  # pragma: no cover - the connection is refused before it opens
    return int(info.value.code)


# the four checks ------------------------------------------------------------------------------


def expect_refusal(response: Any, status: int, error: str) -> str:
    """Checks 1 and 2: status, challenge and a short JSON body; returns the request id.

    ``response`` is the test client's response or one from :func:`asgi_request`.
    """
    assert response.status_code == status, response.text
    assert response.headers.get("content-type", "").startswith("application/json")
    rid = str(response.headers["x-request-id"])
    assert response.json() == {"error": error, "request_id": rid}, response.text
    assert len(response.content) <= MAX_ERROR_BODY
    challenge = response.headers.get_list("www-authenticate")
    if status == 401:
        assert challenge == [CHALLENGES[error]]
    else:
        assert challenge == []
    return rid


def audit_events(kit: soc2kit.Kit) -> list[Row]:
    """Every stored audit event of ``kit``, oldest first (flushes the queue first)."""
    kit.audit.flush()
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events ORDER BY seq"))
        return [json.loads(r[0]) for r in rows]


def expect_audit(
    kit: soc2kit.Kit, request_id: str, status: int, *event_types: str
) -> dict[str, Row]:
    """Check 4: the request's ``http.request`` event and exactly ``event_types`` besides it.

    Returns the request's events by type (each expected type occurs once).
    """
    rows = [r for r in audit_events(kit) if r["request_id"] == request_id]
    requests = [r for r in rows if r["event_type"] == "http.request"]
    assert len(requests) == 1, rows
    (request,) = requests
    assert (request["status_code"], request["outcome"]) == (status, HTTP_OUTCOMES[status])
    others = sorted(r["event_type"] for r in rows if r["event_type"] != "http.request")
    assert others == sorted(event_types), rows
    found = {r["event_type"]: r for r in rows}
    for event_type in event_types:
        expected = EVENT_OUTCOMES.get(event_type)
        if expected is not None:
            assert found[event_type]["outcome"] == expected, found[event_type]
    return found


def audit_table_text(kit: soc2kit.Kit) -> str:
    """Every column of every audit row, as one string to search."""
    kit.audit.flush()
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM soc2kit_audit_events")).all()
    return json.dumps([list(r) for r in rows], default=str, ensure_ascii=False)


def fragments(secret: str, width: int = 16, step: int = 8) -> set[str]:
    """Pieces of a credential that must never be stored.

    For the credential and each of its segments (split at ``.`` and ``_``): the
    whole, its first and last 12 characters, and overlapping windows, so that a
    truncated copy is caught, and so is any copied stretch of ``width + step - 1``
    characters or more, wherever it starts.
    """
    parts = {secret, *secret.split("."), *secret.split("_")}
    pieces: set[str] = set()
    for part in parts:
        if len(part) < 12:
            continue  # too short to tell apart from ordinary text ("a.b.c")
        pieces.update({part, part[:12], part[-12:]})
        pieces.update(part[i : i + width] for i in range(0, len(part) - width + 1, step))
    return pieces


def expect_no_token_material(kit: soc2kit.Kit, *secrets: str) -> None:
    text = audit_table_text(kit)
    assert "Bearer " not in text
    for secret in secrets:
        leaked = sorted(p for p in fragments(secret) if p in text)
        assert not leaked, f"credential material in the audit trail: {leaked[:3]}"
