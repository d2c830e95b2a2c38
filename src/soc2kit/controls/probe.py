"""Call an ASGI app in-process and record what it answered.

Hand-written rather than Starlette's ``TestClient``: that needs ``httpx``, a
test-only dependency, and evidence collection must work from a plain
``pip install soc2kit``. A probe is one request with a fully buffered response,
which is all the ASGI protocol needs here (about forty lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ProbeResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def call(
    app: Any,
    method: str,
    path: str,
    *,
    host: str,
    scheme: str = "https",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> ProbeResponse:
    """One HTTP request through the whole middleware stack, from a loopback client."""
    raw_headers = [(b"host", host.encode("latin-1"))]
    for name, value in (headers or {}).items():
        raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    if body and "content-length" not in {k.lower() for k in (headers or {})}:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode("latin-1"),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": (host.split(":", 1)[0], 443 if scheme == "https" else 80),
        "state": {},
    }
    sent = False
    response = ProbeResponse(status=0)
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response.status = int(message["status"])
            for name, value in message.get("headers", []):
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                # Repeated headers are joined, as a client would see them.
                response.headers[key] = (
                    f"{response.headers[key]}, {text}" if key in response.headers else text
                )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    response.body = b"".join(chunks)
    return response
