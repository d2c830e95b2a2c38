"""Deny by default: 403 for a request whose route declares neither ``require`` nor ``public``.

The gate resolves each request the way the router is about to: the same route
objects, in the same order, each asked ``matches(scope)`` on the same scope.
It never normalises or re-parses the path itself, so a path the router would
not match (``//x``, ``/a/../b``, other case, look-alike characters) matches
nothing here either, and a path it would match (``/a%2Fb`` arrives decoded as
``/a/b``) lands on the same route. Method-override headers are ignored, as the
router ignores them. It sits inside the rate limiter (refusals are throttled)
and outside the body limit (a refused request has no body read).
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING, Any, NamedTuple

from fastapi.routing import APIRouter
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from soc2kit.authz.inventory import (
    Candidate,
    Matcher,
    low_priority_candidates,
    routing_candidates,
)
from soc2kit.context import current_request
from soc2kit.http.context import _ACTIONS
from soc2kit.http.responses import send_error

if TYPE_CHECKING:
    from soc2kit.kit import Kit

log = logging.getLogger("soc2kit.authz")

REASON = "route has neither require nor public"


class _Entry(NamedTuple):
    matches: Matcher
    checks_method: bool
    refused: str | None
    """The route template when the route is undeclared, else None."""
    child: _Table | None


class _Table:
    """How one router resolves requests: its candidates, in order, with their verdicts.

    Built at first use and rebuilt when the router's route list changes (checked
    by identity on every request, so a route replaced in place is seen too) or
    FastAPI's routes version does (a route added to an included router, a
    frontend). Verdicts are per route object, never per path.
    """

    def __init__(self, router: Router, owner: Starlette | None, prefix: str, root: bool) -> None:
        self._router = router
        self._owner = owner
        self._prefix = prefix
        self._root = root
        # FastAPI-private; without it an APIRouter's table is rebuilt every request.
        self._version_of: Any = getattr(router, "_get_routes_version", None)
        self._volatile = self._version_of is None and isinstance(router, APIRouter)
        self._version: object = None
        self._snapshot: tuple[BaseRoute, ...] | None = None
        self._entries: tuple[_Entry, ...] = ()
        self._low_match: Any = getattr(router, "_match_low_priority", None)
        self._low: dict[int, tuple[object, str | None]] | None = None

    def _current(self) -> tuple[_Entry, ...]:
        routes = self._router.routes
        version = self._version_of() if self._version_of is not None else None
        snapshot = self._snapshot
        if (
            snapshot is None
            or self._volatile
            or version != self._version
            or len(routes) != len(snapshot)
            or not all(map(operator.is_, routes, snapshot))
        ):
            snapshot = self._snapshot = tuple(routes)
            self._version = version
            candidates = routing_candidates(snapshot, self._owner, root=self._root)
            self._entries = tuple(self._entry(c) for c in candidates)
            self._low = None
        return self._entries

    def _entry(self, candidate: Candidate) -> _Entry:
        path = self._prefix + candidate.path
        child = None
        if candidate.sub_router is not None:
            child = _Table(candidate.sub_router, candidate.sub_owner, path, root=False)
        refused = None if candidate.declaration is not None or child is not None else path
        return _Entry(candidate.matches, candidate.checks_method, refused, child)

    def resolve(self, scope: Scope) -> str | None:
        """The template of the undeclared route ``scope`` lands on; None to go on."""
        partial: _Entry | None = None
        for entry in self._current():
            match, child_scope = entry.matches(scope)
            if match is Match.FULL:
                if entry.child is not None:
                    return entry.child.resolve({**scope, **child_scope})
                return entry.refused
            if match is Match.PARTIAL and partial is None:
                partial = entry
        if partial is not None:
            # Path matched, method did not: an ordinary route answers 405 without
            # running its dependencies or handler. Anything else fails closed.
            return None if partial.checks_method else partial.refused
        if self._low_match is not None:
            return self._resolve_low_priority(scope)
        return None  # the router answers 404 (or redirects to a path gated in turn)

    def _resolve_low_priority(self, scope: Scope) -> str | None:
        if self._low is None:
            self._low = self._build_low()
        if not self._low:
            return None
        match, _, route, context = self._low_match(scope)
        if match is not Match.FULL:
            return None
        key = context if context is not None else route
        found = self._low.get(id(key))
        if found is None or found[0] is not key:
            self._low = self._build_low()
            found = self._low.get(id(key))
        if found is None or found[0] is not key:
            return self._prefix + "/{path}"  # a candidate FastAPI did not list: fail closed
        return found[1]

    def _build_low(self) -> dict[int, tuple[object, str | None]]:
        return {
            id(c.key): (
                c.key,
                None if c.declaration is not None else self._prefix + " | ".join(c.paths),
            )
            for c in low_priority_candidates(self._router)
        }


class GateMiddleware:
    """Refuse requests to undeclared routes: 403 JSON, or close 1008 for a WebSocket.

    Each refusal records ``authz.misconfiguration``. Requests that match no
    route, or match one only by path, go on to the router for its 404/405.
    """

    def __init__(self, app: ASGIApp, *, kit: Kit) -> None:
        self.app = app
        self.kit = kit
        self._table: _Table | None = None  # built at the first request: routes come late

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        table = self._table
        if table is None:
            table = self._table = _Table(self.kit.app.router, self.kit.app, "", root=True)
        refused = table.resolve(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, send, refused)

    async def _refuse(self, scope: Scope, send: Send, template: str) -> None:
        websocket = scope["type"] == "websocket"
        method = "WEBSOCKET" if websocket else str(scope.get("method", "GET"))
        ctx = current_request()
        if ctx is not None:
            ctx.extra["rejected"] = "route_undeclared"
        # The template comes from the code, never from the request.
        log.warning(
            "refused a request to %s: the route declares neither require() nor public() "
            "(request_id=%s)",
            template,
            ctx.request_id if ctx is not None else None,
        )
        await self.kit.audit.arecord(
            "authz.misconfiguration",
            action=_ACTIONS.get(method, method.lower()),
            outcome="denied",
            reason=REASON,
            route=template,
        )
        if websocket:
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_error(send, 403, "forbidden")
