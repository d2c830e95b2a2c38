"""The route inventory: every route an app serves and how it declares who may call it.

A route is declared when its dependency tree holds ``require()`` or ``public()``
(router-level dependencies included), when it is FastAPI's own docs route, or
when it is a mounted app wrapped by ``public_app()``/``protected_app()``. The
gate and the start-up coverage proof read the same walk as ``build_inventory``,
so what the inventory calls declared is exactly what the gate lets through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Host, Match, Mount, Route, Router, WebSocketRoute
from starlette.types import Scope

from soc2kit.authz.dependencies import PERMISSION_ATTR, PUBLIC_ATTR
from soc2kit.authz.mounts import Declaration, DeclaredApp
from soc2kit.errors import ConfigurationError

log = logging.getLogger("soc2kit.authz")

Kind = Literal["http", "websocket", "mount"]
Matcher = Callable[[Scope], tuple[Match, Scope]]

DOCS_REASON = "FastAPI's API documentation (served only while the docs setting is on)"


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One route of the inventory. ``methods`` is empty for a mount (every method)."""

    methods: tuple[str, ...]
    path: str
    kind: Kind
    declaration: Declaration | None

    @property
    def declared(self) -> bool:
        return self.declaration is not None

    def describe(self) -> str:
        """``invoices:read``, ``public: <reason>`` or ``UNDECLARED``."""
        if self.declaration is None:
            return "UNDECLARED"
        if self.declaration[0] == "permission":
            return f"{self.declaration[1]}:{self.declaration[2]}"
        return f"public: {self.declaration[1]}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One routing candidate of one router, in the order the router tries them."""

    matches: Matcher
    kind: Kind
    methods: tuple[str, ...]
    path: str
    """Template relative to this router, router prefixes included; a mount's own prefix."""
    declaration: Declaration | None
    checks_method: bool
    """A PARTIAL match (path matches, method does not) makes the route answer 405 itself."""
    sub_router: Router | None = None
    sub_owner: Starlette | None = None
    """For a mount (or host) of an app with a router: the gate and inventory descend."""


@dataclass(frozen=True, slots=True)
class LowPriorityCandidate:
    """A FastAPI ``frontend()`` group: tried only when no ordinary route matched."""

    key: object
    paths: tuple[str, ...]
    declaration: Declaration | None


def declaration_of(dependant: Dependant | None) -> Declaration | None:
    """The first ``require()`` in the dependency tree, else the first ``public()``."""
    if dependant is None:
        return None
    found_public: Declaration | None = None
    stack = [dependant]
    while stack:
        node = stack.pop()
        call = node.call
        permission = getattr(call, PERMISSION_ATTR, None) if call is not None else None
        if (
            isinstance(permission, tuple)
            and len(permission) == 2
            and all(isinstance(p, str) and p for p in permission)
        ):
            return ("permission", permission[0], permission[1])
        reason = getattr(call, PUBLIC_ATTR, None) if call is not None else None
        if found_public is None and isinstance(reason, str) and reason:
            found_public = ("public", reason)
        stack.extend(reversed(node.dependencies))
    return found_public


def _app_declaration(app: object) -> Declaration | None:
    return app.declaration if isinstance(app, DeclaredApp) else None


def _docs_paths(owner: Starlette | None) -> frozenset[str]:
    if not isinstance(owner, FastAPI):
        return frozenset()
    paths = (owner.docs_url, owner.redoc_url, owner.openapi_url)
    redirect = owner.swagger_ui_oauth2_redirect_url if owner.docs_url else None
    return frozenset(p for p in (*paths, redirect) if p)


def _router_of(app: object) -> tuple[Router, Starlette | None] | None:
    if isinstance(app, Starlette):
        return app.router, app
    if isinstance(app, Router):
        return app, None
    return None


def _candidate(ctx: RouteContext, docs: frozenset[str]) -> Candidate:
    route = ctx.original_route
    matches: Matcher = ctx.matches  # the effective (prefixed) route's own matcher
    path = ctx.path_format or ""
    dependant = getattr(ctx, "dependant", None)  # the effective one: router dependencies too
    if not isinstance(dependant, Dependant):
        dependant = None
    if isinstance(route, WebSocketRoute):
        declaration = declaration_of(dependant) or _app_declaration(ctx.endpoint)
        return Candidate(matches, "websocket", ("WEBSOCKET",), path, declaration, False)
    if isinstance(route, Mount | Host):
        app = ctx.app  # the effective route's: an included Host gets a prefixing router
        sub = _router_of(app)
        prefix = (ctx.path or "") if isinstance(route, Mount) else ""
        if sub is not None:
            return Candidate(matches, "mount", (), prefix, None, False, sub[0], sub[1])
        return Candidate(matches, "mount", (), prefix + "/{path}", _app_declaration(app), False)
    methods = tuple(sorted(ctx.methods or ()))
    if isinstance(route, APIRoute):
        return Candidate(matches, "http", methods, path, declaration_of(dependant), True)
    if isinstance(route, Route):
        declaration = _app_declaration(ctx.endpoint)
        is_docs = (
            ctx.path in docs and getattr(ctx.endpoint, "__module__", "") == "fastapi.applications"
        )
        if declaration is None and is_docs:
            declaration = ("public", DOCS_REASON)
        return Candidate(matches, "http", methods, path, declaration, True)
    # An unknown kind of route: only a soc2kit marker declares it, and a partial
    # match is not trusted to end in a 405.
    declaration = declaration_of(dependant) or _app_declaration(getattr(route, "app", None))
    return Candidate(matches, "http", methods, path, declaration, False)


def routing_candidates(
    routes: Sequence[BaseRoute], owner: Starlette | None, *, root: bool
) -> list[Candidate]:
    """The candidates of ``routes`` (of ``owner``'s router) in matching order.

    Included routers are flattened depth-first: the router takes the first full
    match, else the first partial one, and flattening keeps that outcome. Docs
    routes count as public on the ``root`` app only, whose docs soc2kit turns
    off outside opt-in; a mounted app's docs would escape that switch.
    """
    docs = _docs_paths(owner) if root else frozenset()
    return [_candidate(ctx, docs) for ctx in iter_route_contexts(routes)]


def _join_frontend(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return prefix if path == "/" else prefix + path


def low_priority_candidates(router: Router) -> list[LowPriorityCandidate]:
    """FastAPI ``frontend()`` groups (tried after every ordinary route); FastAPI-private API."""
    iterate = getattr(router, "_iter_low_priority_routes", None)
    if iterate is None:
        return []
    out = []
    for candidate in iterate():
        group = getattr(candidate, "original_route", candidate)
        prefix = getattr(candidate, "frontend_prefix", "")
        paths = tuple(
            _join_frontend(prefix, str(r.path)).rstrip("/") + "/{path}"
            for r in getattr(group, "routes", ())
        )
        dependant = getattr(candidate, "dependant", None)
        declaration = declaration_of(dependant if isinstance(dependant, Dependant) else None)
        out.append(LowPriorityCandidate(candidate, paths, declaration))
    return out


def _walk(router: Router, owner: Starlette | None, prefix: str, depth: int) -> Iterator[RouteEntry]:
    if depth > 32:
        raise ConfigurationError(f"mounts nested too deeply under {prefix!r}")
    for c in routing_candidates(router.routes, owner, root=depth == 0):
        if c.sub_router is not None:
            yield from _walk(c.sub_router, c.sub_owner, prefix + c.path, depth + 1)
        else:
            yield RouteEntry(c.methods, prefix + c.path, c.kind, c.declaration)
    for low in low_priority_candidates(router):
        for path in low.paths:
            yield RouteEntry(("GET", "HEAD"), prefix + path, "http", low.declaration)


def build_inventory(app: Starlette | Router) -> list[RouteEntry]:
    """Every route ``app`` serves, with its full path (router and mount prefixes)."""
    found = _router_of(app)
    if found is None:
        raise ConfigurationError(f"not a FastAPI/Starlette app or router: {type(app).__name__}")
    return list(_walk(found[0], found[1], "", 0))


def undeclared(entries: Iterable[RouteEntry]) -> list[RouteEntry]:
    """The entries with neither ``require`` nor ``public``."""
    return [e for e in entries if e.declaration is None]


def format_entry(entry: RouteEntry) -> str:
    return f"{','.join(entry.methods) or '*'} {entry.path}"


def check_coverage(app: Starlette, *, production: bool) -> list[RouteEntry]:
    """The coverage proof: undeclared routes refuse production start-up, else a warning.

    The gate refuses such routes at request time anyway; this makes the gap
    visible before the first request instead of after.
    """
    missing = undeclared(build_inventory(app))
    if not missing:
        return missing
    listing = "\n".join(f"  - {format_entry(e)}" for e in missing)
    message = (
        f"{len(missing)} route(s) declare neither require() nor public(); "
        f"the gate answers 403 for them:\n{listing}"
    )
    if production:
        raise ConfigurationError(f"refusing to start in production: {message}")
    log.warning(message)
    return missing


__all__ = [
    "Candidate",
    "LowPriorityCandidate",
    "RouteEntry",
    "build_inventory",
    "check_coverage",
    "declaration_of",
    "low_priority_candidates",
    "routing_candidates",
    "undeclared",
]
