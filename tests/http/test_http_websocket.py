"""WebSocket connections get the host check and one audit event with a true outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

import soc2kit


def ws_routes(app: FastAPI, kit: Any) -> None:
    @app.websocket("/ws/{room}", dependencies=[soc2kit.public("test route")])
    async def room(websocket: WebSocket, room: str) -> None:
        if room == "closed":
            await websocket.close(code=1008)
            return
        await websocket.accept()
        await websocket.send_text(f"hello {room}")
        await websocket.close()


def ws_events(kit: Any, audit_rows: Callable[[Any], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e for e in audit_rows(kit) if e["event_type"] == "http.request"]


def test_accepted_connection_is_audited_as_success(make_client: Any, audit_rows: Any) -> None:
    client, kit = make_client(ws_routes)
    with client.websocket_connect("/ws/lobby") as ws:
        assert ws.receive_text() == "hello lobby"
    (event,) = ws_events(kit, audit_rows)
    assert event["http_method"] == "WEBSOCKET" and event["action"] == "connect"
    assert event["outcome"] == "success" and event["route"] == "/ws/{room}"


def test_refused_connection_is_audited_as_denied(make_client: Any, audit_rows: Any) -> None:
    client, kit = make_client(ws_routes)
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws/closed"):
        pass
    assert info.value.code == 1008
    (event,) = ws_events(kit, audit_rows)
    assert event["status_code"] == 1008 and event["outcome"] == "denied"


def test_bad_host_refuses_the_handshake(make_client: Any, audit_rows: Any) -> None:
    client, kit = make_client(ws_routes)
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/ws/lobby", headers={"host": "evil.example"}),
    ):
        pass
    assert info.value.code == 1008
    (event,) = ws_events(kit, audit_rows)
    assert event["outcome"] == "denied" and event["extra"]["rejected"] == "host_rejected"
