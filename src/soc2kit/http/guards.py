"""Request guards: trusted hosts, HTTPS, rate limits and body size.

Each is a small pure-ASGI middleware answering with soc2kit's JSON error body
(CORS reuses Starlette's middleware with a JSON answer for a refused preflight).
Starlette's ``TrustedHostMiddleware`` and ``HTTPSRedirectMiddleware`` answer in
plain text and do not treat a duplicated Host header as an attack, so the host
and HTTPS checks are written here; the body limit reuses Starlette's streaming
``RequestBodyLimitMiddleware`` and only adds the early Content-Length check and
the JSON answer.
"""

from __future__ import annotations

import math
import time
from urllib.parse import quote

import limits
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.cors import CORSMiddleware as StarletteCORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soc2kit.context import current_request
from soc2kit.http.responses import error_body, send_error

_STRATEGIES: dict[str, type[RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


# RFC 3986 characters kept as they are; the path arrives decoded, the query raw.
_PATH_SAFE = "/:@!$&'()*+,;="
_QUERY_SAFE = _PATH_SAFE + "?%"


def _host_headers(scope: Scope) -> list[bytes]:
    return [v for k, v in scope["headers"] if k == b"host"]


def split_host(raw: str) -> str | None:
    """Host name without port, lower-cased; None when malformed."""
    host = raw.strip().lower()
    if not host or any(c in host for c in "/\\@ ?#"):
        return None
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return None
        name, rest = host[: end + 1], host[end + 1 :]
    else:
        name, _, port = host.partition(":")
        rest = f":{port}" if port else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return name or None


class TrustedHostMiddleware:
    """400 unless exactly one Host header names an allowed host (``*.x.com`` allowed)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allow_any = "*" in allowed_hosts
        self.exact = frozenset(h.lower() for h in allowed_hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))

    def allowed(self, host: str) -> bool:
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allow_any:
            await self.app(scope, receive, send)
            return
        values = _host_headers(scope)
        host = split_host(values[0].decode("latin-1")) if len(values) == 1 else None
        if host is None or not self.allowed(host):
            _note("host_rejected")
            if scope["type"] == "http":
                await send_error(send, 400, "invalid_host")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class HTTPSMiddleware:
    """Refuse plain HTTP: 308 to https for safe methods, 403 otherwise.

    Unsafe methods are refused rather than redirected: by the time they arrive,
    their body and credentials have already crossed the network in clear.
    The scheme is the one the proxy resolver settled on (X-Forwarded-Proto is
    honoured only from trusted proxies).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("scheme") != "https":
            _note("https_required")
            values = _host_headers(scope)
            host = values[0].decode("latin-1") if values else ""
            if scope.get("method") in ("GET", "HEAD") and host:
                # Re-encode: the decoded path may hold CR/LF (header injection)
                # or characters latin-1 cannot carry.
                path = quote(scope.get("root_path", "") + scope["path"], safe=_PATH_SAFE)
                query = quote(scope.get("query_string", b""), safe=_QUERY_SAFE)
                location = f"https://{host}{path}" + (f"?{query}" if query else "")
                await send_error(
                    send, 308, "https_required", headers=[(b"location", location.encode("latin-1"))]
                )
            else:
                await send_error(send, 403, "https_required")
            return
        if scope["type"] == "websocket" and scope.get("scheme") not in ("wss", "https"):
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class RateLimitMiddleware:
    """Per-client limits with the ``limits`` library; 429 with ``Retry-After``."""

    def __init__(self, app: ASGIApp, *, rate: str, storage_url: str, strategy: str) -> None:
        self.app = app
        self.items = limits.parse_many(rate)
        if not storage_url.startswith("async+"):
            storage_url = "async+" + storage_url
        self.limiter = _STRATEGIES[strategy](storage_from_string(storage_url))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client[0] if client else "unknown"
        for item in self.items:
            if not await self.limiter.hit(item, "soc2kit", key):
                stats = await self.limiter.get_window_stats(item, "soc2kit", key)
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                _note("rate_limited")
                await send_error(
                    send, 429, "rate_limited", headers=[(b"retry-after", str(retry).encode())]
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 before the body is read past ``max_bytes``, with or without Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.app = RequestBodyLimitMiddleware(app, max_body_size=max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Counted even when the headers promise no body: the limit must not
        # depend on the server enforcing HTTP framing.
        lengths = [v for k, v in scope["headers"] if k == b"content-length"]
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                await send_error(send, 400, "invalid_content_length")
                return
            if int(lengths[0]) > self.max_bytes:
                # Refused before the app runs: nothing is read, nothing happens.
                await send_error(send, 413, "payload_too_large")
                return

        replacing = False

        async def send_json_413(message: Message) -> None:
            # Starlette answers a streamed overflow in plain text when the app
            # does not turn it into an HTTPException itself; make it JSON.
            nonlocal replacing
            if message["type"] == "http.response.start" and message["status"] == 413:
                ctype = dict(message.get("headers", ())).get(b"content-type", b"")
                if ctype.startswith(b"text/plain"):
                    replacing = True
                    await send_error(send, 413, "payload_too_large")
                    return
            if replacing:
                return
            await send(message)

        await self.app(scope, receive, send_json_413)


class CORSMiddleware(StarletteCORSMiddleware):
    """Starlette's CORS handling; a refused preflight gets soc2kit's JSON error body."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        _note("cors_rejected")
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-type", "content-length")
        }
        return Response(
            error_body("cors_rejected"),
            status_code=400,
            headers=headers,
            media_type="application/json",
        )


class DocsGateMiddleware:
    """404 for the interactive docs when they are turned off for this environment."""

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            await send_error(send, 404, "not_found")
            return
        await self.app(scope, receive, send)


def _note(reason: str) -> None:
    ctx = current_request()
    if ctx is not None:
        ctx.extra["rejected"] = reason
