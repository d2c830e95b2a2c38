"""Outermost soc2kit middleware: request id, client address, security headers,
safe errors and one audit event per request.

It sits outside every other soc2kit layer so that a request refused by any of
them (bad host, rate limit, body too large) still gets a request id, the
security headers and an audit record.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import traceback
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soc2kit._ids import RandomPool, uuid7_str
from soc2kit.context import RequestContext, _enter, _exit
from soc2kit.errors import AuditWriteError
from soc2kit.http.headers import HeaderList
from soc2kit.http.responses import send_error
from soc2kit.http.routes import route_template

if TYPE_CHECKING:
    from soc2kit.kit import Kit

log = logging.getLogger("soc2kit.http")

_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"cookie"})


def _ws_outcome(code: int) -> str:
    if code in (0, 101, 1000, 1001):
        return "success"
    if code in (1008, 4401, 4403):
        return "denied"
    return "error" if code == 1011 else "failure"


_ACTIONS = {
    "GET": "read",
    "HEAD": "read",
    "OPTIONS": "read",
    "POST": "create",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
    "WEBSOCKET": "connect",
}


def outcome_for(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 429):
        return "denied"
    return "failure" if status < 500 else "error"


class ProxyResolver:
    """Client address and scheme, honouring forwarding headers only from trusted proxies.

    Hand-written rather than uvicorn's ProxyHeadersMiddleware because soc2kit
    must not depend on the server in use and needs the rightmost untrusted hop.
    """

    def __init__(self, trusted: list[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)

    def _trusted(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self._networks)

    def resolve(self, scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        client = scope.get("client")
        peer: str | None = str(client[0]) if client else None
        if not self._networks or peer is None or not self._trusted(peer):
            return peer
        proto = headers.get(b"x-forwarded-proto")
        if proto:
            last = proto.decode("latin-1").split(",")[-1].strip().lower()
            if last in ("http", "https"):
                scope["scheme"] = "https" if last == "https" else "http"
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded:
            hops = [h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()]
            for hop in reversed(hops):
                if not self._trusted(hop):
                    try:
                        ipaddress.ip_address(hop)
                    except ValueError:
                        break  # garbage in the chain: keep the proxy's own address
                    scope["client"] = (hop, 0)
                    return hop
        return peer


def _critical(method: str, status: int) -> bool:
    """Writes and authentication/authorization refusals are critical; reads are informational.

    A failed read changes nothing, and probes such as /readyz must still answer
    (with their checks) while the audit store is down.
    """
    if method == "WEBSOCKET":
        return status in (1008, 4401, 4403)
    return method not in ("GET", "HEAD", "OPTIONS") or status in (401, 403)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        kit: Kit,
        api_headers: HeaderList,
        docs_headers: HeaderList,
        docs_paths: frozenset[str],
        request_id_header: str,
        proxies: ProxyResolver,
    ) -> None:
        self.app = app
        self.kit = kit
        self.api_headers = api_headers
        self.docs_headers = docs_headers
        self.docs_paths = docs_paths
        self.rid_header = request_id_header.lower().encode("latin-1")
        self.proxies = proxies
        self._header_names = frozenset(name for name, _ in api_headers)
        self._docs_header_names = frozenset(name for name, _ in docs_headers)
        self._random = RandomPool()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: dict[bytes, bytes] = {}
        counts: dict[bytes, int] = {}
        for name, value in scope["headers"]:
            if name in headers:
                counts[name] = counts.get(name, 1) + 1
                headers[name] = headers[name] + b"," + value
            else:
                headers[name] = value
        inbound = headers.get(self.rid_header)
        if inbound is not None and self.rid_header not in counts and _REQUEST_ID.fullmatch(inbound):
            request_id = inbound.decode("ascii")
            rejected_rid = False
        else:
            request_id = uuid7_str(self._random)
            rejected_rid = inbound is not None
        client_ip = self.proxies.resolve(scope, headers)
        is_ws = scope["type"] == "websocket"
        ctx = RequestContext(
            request_id=request_id,
            method="WEBSOCKET" if is_ws else scope.get("method", "GET"),
            client_ip=client_ip,
            scope=scope,
            root_path=str(scope.get("root_path", "")),
        )
        if rejected_rid:
            ctx.extra["inbound_request_id_rejected"] = True
        scope.setdefault("state", {})["request_id"] = request_id
        scope["soc2kit.kit"] = self.kit
        has_credentials = not _CREDENTIAL_HEADERS.isdisjoint(headers)
        is_docs = scope.get("path") in self.docs_paths
        extra_headers = self.docs_headers if is_docs else self.api_headers
        extra_names = self._docs_header_names if is_docs else self._header_names
        rid_pair = (self.rid_header, request_id.encode("ascii"))
        status = 0
        audited = False
        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, audited, replaced
            if replaced:
                return  # the app's response was replaced by a 503: drop the rest of it
            if message["type"] == "http.response.start":
                status = message["status"]
                if _critical(ctx.method, status):
                    # Critical: stored before the response leaves, or the response is a 503.
                    ctx.route = route_template(scope, ctx.root_path)
                    audited = True
                    try:
                        await self._audit(ctx, status, started, critical=True)
                    except Exception:
                        replaced = True
                        status = 503
                        ctx.extra["audit_failed"] = True
                        await send_error(
                            send,
                            503,
                            "audit_unavailable",
                            headers=[*extra_headers, rid_pair, (b"cache-control", b"no-store")],
                            request_id=request_id,
                        )
                        return
                out = [
                    (k, v)
                    for k, v in message.get("headers", ())
                    if k != self.rid_header
                    and not (k == b"cache-control" and (has_credentials or ctx.principal))
                ]
                present = {k.lower() for k, _ in out}
                if present.isdisjoint(extra_names):
                    out.extend(extra_headers)
                else:  # the app set some of these itself: its choice wins
                    out.extend(p for p in extra_headers if p[0] not in present)
                out.append(rid_pair)
                if has_credentials or ctx.principal is not None:
                    out.append((b"cache-control", b"no-store"))
                message = {**message, "headers": out}
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close":
                # A close before accept is a refusal; its code says why (1008: policy).
                close_code = int(message.get("code", 1000))
                if status != 101 or close_code != 1000:
                    status = close_code
            await send(message)

        token = _enter(ctx)
        try:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as exc:
                ctx.extra["exception"] = type(exc).__name__
                # Frames only: exception text may hold SQL parameters or personal data.
                log.error(
                    "unhandled %s (request_id=%s)\n%s",
                    type(exc).__name__,
                    request_id,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                if status == 0 and scope["type"] == "http":
                    if isinstance(exc, AuditWriteError):
                        # A critical record could not be stored: refuse (fail closed).
                        await send_error(send_wrapper, 503, "audit_unavailable")
                    else:
                        await send_error(send_wrapper, 500)
                elif status == 0:
                    status = 1011
        finally:
            if not audited:
                ctx.route = route_template(scope, ctx.root_path)
                try:
                    await self._audit(ctx, status, started, critical=_critical(ctx.method, status))
                except Exception as exc:
                    # Nothing left to refuse (the response is gone or never started); the
                    # sink reports itself unhealthy, which fails readiness.
                    log.error(
                        "audit record for request %s failed: %s", request_id, type(exc).__name__
                    )
            _exit(token)

    async def _audit(
        self, ctx: RequestContext, status: int, started: float, *, critical: bool
    ) -> None:
        extra: dict[str, Any] = {"duration_ms": round((time.perf_counter() - started) * 1000, 3)}
        extra.update(ctx.extra)
        if "exception" in ctx.extra:
            outcome = "error"  # even when a success status had already been sent
        elif ctx.method == "WEBSOCKET":
            outcome = _ws_outcome(status)
        else:
            outcome = outcome_for(status) if status >= 100 else "success"
        await self.kit.audit.arecord(
            "http.request",
            action=_ACTIONS.get(ctx.method, ctx.method.lower()),
            outcome=outcome,
            status_code=status,
            durability="critical" if critical else "informational",
            **extra,
        )
