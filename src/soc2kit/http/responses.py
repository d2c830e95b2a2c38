"""soc2kit's error body, ``{"error": code, "request_id": ...}``, for middleware and handlers."""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import Send

from soc2kit.context import current_request_id

# Short, stable codes; never exception text.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    421: "misdirected_request",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


def error_code(status: int) -> str:
    return STATUS_CODES.get(status, "client_error" if status < 500 else "server_error")


def error_body(code: str, request_id: str | None = None, **fields: object) -> bytes:
    body: dict[str, object] = {"error": code, "request_id": request_id or current_request_id()}
    body.update(fields)
    return json.dumps(body, separators=(",", ":")).encode()


async def send_error(
    send: Send,
    status: int,
    code: str | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    request_id: str | None = None,
) -> None:
    """Send a complete JSON error response straight from ASGI middleware."""
    body = error_body(code or error_code(status), request_id)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
