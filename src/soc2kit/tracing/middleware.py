"""Pure-ASGI server-span middleware over the OpenTelemetry SDK.

One SERVER span per HTTP request, named ``"{METHOD} {route template}"``. What a
span may hold is an allow-list: method, path (never the query string), scheme,
route template, status, protocol version, host and a pseudonymous end user.
No header value other than Host and the W3C trace context is ever read, so
Authorization, Cookie and API keys cannot reach a span. Exceptions are recorded
by type only: their messages may hold personal data or SQL parameters.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soc2kit._version import __version__
from soc2kit.context import current_request
from soc2kit.errors import ConfigurationError
from soc2kit.http.routes import route_template

EndUserPolicy = Literal["off", "pseudonym", "id"]

SCOPE_KEY = "soc2kit.trace.span_context"
"""Scope entry holding the server span's SpanContext (read by ``current_trace_ids``)."""
SPAN_KEY = "soc2kit.trace.server_span"
"""Scope entry holding the server span itself (the audit correlation writes to it)."""
DEFER_END_KEY = "soc2kit.trace.defer_end"
"""Set by :class:`ServerSpanCloser`: the server span is ended there, not here."""

DEFAULT_EXCLUDE_PATHS = frozenset({"/healthz", "/readyz"})

_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_MAX_PATH = 2048
_MAX_HOST = 255
_MIN_KEY_BYTES = 16
_PROPAGATOR = TraceContextTextMapPropagator()


def principal_subject(scope: Scope) -> str | None:
    """The subject of soc2kit's authenticated principal for the current request."""
    ctx = current_request()
    principal = ctx.principal if ctx is not None else None
    return principal.subject if principal is not None else None


def _server_address(host: bytes) -> tuple[str, int | None] | None:
    text = host.decode("latin-1")[:_MAX_HOST]
    name, sep, port = text.rpartition(":")
    if not sep or "]" in port:  # no port, or a bare IPv6 literal
        name, port = text, ""
    if not name:
        return None
    return name, int(port) if port.isdigit() and len(port) <= 5 else None


class TracingMiddleware:
    """Trace each HTTP request; websockets and lifespan pass through untouched.

    Place it just inside soc2kit's RequestContextMiddleware: the request context
    (and so the principal) exists when the span ends, and the scheme already
    reflects trusted proxies.

    ``principal_of`` returns the caller's subject (default: soc2kit's request
    context). ``enduser`` decides what of it a span carries: nothing (``"off"``),
    ``enduser.pseudo.id`` = the first 16 hex digits of HMAC-SHA256(pseudonym_key,
    subject) (``"pseudonym"``), or the subject itself as ``enduser.id`` (``"id"``).
    With ``trust_traceparent=False`` an incoming ``traceparent`` is ignored and
    every request starts a new trace.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracer_provider: trace.TracerProvider,
        *,
        exclude_paths: frozenset[str] = DEFAULT_EXCLUDE_PATHS,
        enduser: EndUserPolicy = "pseudonym",
        pseudonym_key: bytes | None = None,
        principal_of: Callable[[Scope], str | None] = principal_subject,
        trust_traceparent: bool = True,
        record_path: bool = False,
    ) -> None:
        if enduser not in ("off", "pseudonym", "id"):
            raise ConfigurationError("enduser must be 'off', 'pseudonym' or 'id'")
        self._hmac: Any = None
        if enduser == "pseudonym":
            if pseudonym_key is None or len(pseudonym_key) < _MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"enduser='pseudonym' needs a pseudonym_key of at least {_MIN_KEY_BYTES} bytes"
                )
            self._hmac = hmac.new(pseudonym_key, digestmod=hashlib.sha256)
        self.app = app
        self.tracer = tracer_provider.get_tracer("soc2kit", __version__)
        self.exclude_paths = exclude_paths
        self.enduser = enduser
        self.principal_of = principal_of
        self.trust_traceparent = trust_traceparent
        # Off by default: concrete paths carry ids and e-mail addresses; http.route
        # (the template) says which endpoint ran without them.
        self.record_path = record_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exclude_paths:
            await self.app(scope, receive, send)
            return
        traceparent: bytes | None = None
        tracestate: bytes | None = None
        host: bytes | None = None
        duplicate_parent = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"traceparent":
                duplicate_parent = traceparent is not None
                traceparent = value
            elif name == b"tracestate":
                tracestate = value if tracestate is None else tracestate + b"," + value
        parent = otel_context.Context()  # a new trace unless the caller sent a valid one
        if traceparent is not None and self.trust_traceparent and not duplicate_parent:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = _PROPAGATOR.extract(carrier, context=parent)

        raw_method = scope.get("method", "GET")
        method = raw_method if raw_method in _METHODS else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
        }
        if self.record_path:
            attributes["url.path"] = scope["path"][:_MAX_PATH]
        http_version = scope.get("http_version")
        if http_version:
            attributes["network.protocol.version"] = http_version
        if host is not None:
            address = _server_address(host)
            if address is not None:
                attributes["server.address"] = address[0]
                if address[1] is not None:
                    attributes["server.port"] = address[1]
        span = self.tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        scope[SCOPE_KEY] = span.get_span_context()
        scope[SPAN_KEY] = span
        entry_root_path = str(scope.get("root_path", ""))
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = otel_context.attach(trace.set_span_in_context(span, parent))
        error_type: str | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            otel_context.detach(token)
            try:
                if span.is_recording():
                    self._finish(span, scope, method, entry_root_path, status, error_type)
            finally:
                if not scope.get(DEFER_END_KEY):
                    span.end()

    def _finish(
        self,
        span: Span,
        scope: Scope,
        method: str,
        entry_root_path: str,
        status: int,
        error_type: str | None,
    ) -> None:
        route = route_template(scope, entry_root_path)
        if route is not None:
            span.set_attribute("http.route", route)
            if method != "_OTHER":
                span.update_name(f"{method} {route}")
        if status:
            span.set_attribute("http.response.status_code", status)
        if error_type is None and status >= 500:
            error_type = str(status)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR))
        if self.enduser == "off":
            return
        try:
            subject = self.principal_of(scope)
        except Exception:  # tracing never fails a request
            subject = None
        if not subject:
            return
        if self.enduser == "id":
            span.set_attribute("enduser.id", subject)
        else:
            digest = self._hmac.copy()
            digest.update(subject.encode("utf-8"))
            span.set_attribute("enduser.pseudo.id", digest.hexdigest()[:16])


class ServerSpanCloser:
    """Ends the server span after the request's ``http.request`` audit event.

    Placed just outside RequestContextMiddleware, which records that event
    after the inner layers (TracingMiddleware among them) have returned: the
    span stays open until then, so it can carry the event's id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[DEFER_END_KEY] = True
        try:
            await self.app(scope, receive, send)
        finally:
            span = scope.get(SPAN_KEY)
            if isinstance(span, Span):
                span.end()
