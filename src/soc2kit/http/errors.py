"""Exception handlers that keep every error answer short, JSON and free of internals.

Validation errors list where and what failed, but never the submitted value:
pydantic's ``input`` and ``ctx`` may echo a password field or a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.websockets import WebSocket

from soc2kit.audit.events import sanitize_text
from soc2kit.context import current_request
from soc2kit.http.responses import error_code


class ApiError(HTTPException):
    """An HTTP error whose ``detail`` is a stable, client-safe code."""

    def __init__(self, status_code: int, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=code, headers=headers)
        self.code = code


def _request_id(request: Request) -> str | None:
    ctx = current_request()
    if ctx is not None:
        return ctx.request_id
    state = request.scope.get("state") or {}
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


async def http_exception_handler(request: Request, exc: Exception) -> Response | None:
    assert isinstance(exc, HTTPException)
    if isinstance(request, WebSocket):
        # No HTTP answer on a WebSocket (Starlette would send a denial response the
        # audit cannot see): close it, 1008 for a refusal, 1011 for a server error.
        await request.close(code=1011 if exc.status_code >= 500 else 1008)
        return None
    code = exc.code if isinstance(exc, ApiError) else error_code(exc.status_code)
    body: dict[str, Any] = {"error": code, "request_id": _request_id(request)}
    detail = exc.detail
    app_text = isinstance(detail, str) and bool(detail) and detail != _phrase(exc.status_code)
    if app_text and not isinstance(exc, ApiError):
        # An application chose this text for its client; pass it on, bounded.
        body["detail"] = sanitize_text(detail, 500)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def validation_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors()[:50]:
        loc = [str(part)[:100] for part in err.get("loc", ())]
        errors.append({"loc": loc, "type": str(err.get("type", ""))[:100], "msg": _safe_msg(err)})
    ctx = current_request()
    if ctx is not None:
        ctx.extra["validation_errors"] = [{"loc": e["loc"], "type": e["type"]} for e in errors]
    return JSONResponse(
        {"error": "validation_error", "request_id": _request_id(request), "errors": errors},
        status_code=422,
    )


# Context entries pydantic fills from the submitted data: a parse error quotes the
# offending characters, a discriminated union the tag it found. For value_error
# and assertion_error, "error" is the application's own message instead.
_ECHOING_CTX = ("error", "tag", "tz_actual", "encoding_error", "attribute")
_APP_MESSAGES = frozenset({"value_error", "assertion_error"})


def _safe_msg(err: Mapping[str, Any]) -> str:
    """pydantic's message, or a generic one when it quotes what the client sent."""
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx")
    quoted: list[str] = []
    if isinstance(ctx, Mapping) and err.get("type") not in _APP_MESSAGES:
        quoted.extend(str(ctx[key]) for key in _ECHOING_CTX if key in ctx)
    quoted.extend(_submitted_strings(err.get("input")))
    if any(q and q in msg for q in quoted):
        return "Invalid value"
    return sanitize_text(msg, 300)


def _submitted_strings(value: Any) -> list[str]:
    """The scalars of a submitted value (and of its first level), as text."""
    items = list(value.values()) if isinstance(value, Mapping) else [value]
    if isinstance(value, list | tuple):
        items = list(value)
    out: list[str] = []
    for item in items[:100]:
        if isinstance(item, bytes):
            out.append(item.decode("utf-8", "replace"))
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            out.append(str(item))
    return out


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """500 for a mounted app, whose own ServerErrorMiddleware answers before soc2kit's
    middleware (which still logs and audits the exception it re-raises)."""
    return JSONResponse(
        {"error": "internal_error", "request_id": _request_id(request)}, status_code=500
    )


def install_handlers(app: Starlette) -> None:
    # One handler for both kinds of connection (Starlette types them apart).
    handler: Any = http_exception_handler
    app.add_exception_handler(HTTPException, handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)


def cover_mounted_apps(app: Starlette) -> None:
    """Give mounted apps soc2kit's handlers: FastAPI's defaults echo submitted values.

    Covers the mounts present when called (install() and app start-up call it),
    as long as the mounted app has not served a request yet.
    """
    from soc2kit.authz.mounts import DeclaredApp  # avoids an import cycle

    for route in app.router.routes:
        sub = getattr(route, "app", None)
        if isinstance(sub, DeclaredApp):  # public_app()/protected_app() wrap the app
            sub = sub.app
        if isinstance(route, Mount) and isinstance(sub, Starlette) and sub.middleware_stack is None:
            install_handlers(sub)
            sub.add_exception_handler(Exception, internal_error_handler)
            cover_mounted_apps(sub)
