"""Declarations for what cannot carry ``require``/``public``: mounted ASGI apps.

A ``StaticFiles`` directory or a plain Starlette app has no FastAPI
dependencies, so the gate would refuse it as undeclared. Wrapping it declares
it and, for :func:`protected_app`, enforces the permission in front of it::

    app.mount("/static", public_app(StaticFiles(directory="static"), reason="web assets"))
    app.mount("/exports", protected_app(StaticFiles(directory="out"), resource="exports",
                                        action="read"))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRouter
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from soc2kit.authz.dependencies import PUBLIC_ATTR, public, require
from soc2kit.errors import ConfigurationError
from soc2kit.http.responses import send_error

PermissionDeclaration = tuple[Literal["permission"], str, str]
PublicDeclaration = tuple[Literal["public"], str]
Declaration = PermissionDeclaration | PublicDeclaration
"""``("permission", resource, action)`` or ``("public", reason)``."""


class DeclaredApp:
    """An ASGI app carrying its access declaration; build it with the functions below."""

    def __init__(
        self,
        app: ASGIApp,
        declaration: Declaration,
        check: Callable[[HTTPConnection], Awaitable[Any]] | None,
    ) -> None:
        self.app = app
        self.declaration = declaration
        self._check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._check is not None and scope["type"] in ("http", "websocket"):
            try:
                # The same code path as require(): authentication, policy, audit.
                await self._check(HTTPConnection(scope))
            except HTTPException as exc:
                if scope["type"] == "websocket":
                    code = 1011 if exc.status_code >= 500 else 1008
                    await send({"type": "websocket.close", "code": code})
                else:
                    headers = [
                        (k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in (exc.headers or {}).items()
                    ]
                    await send_error(send, exc.status_code, getattr(exc, "code", None), headers)
                return
        await self.app(scope, receive, send)


def _refuse_routers(app: object) -> None:
    if isinstance(app, DeclaredApp):
        raise ConfigurationError("this app is already declared")
    if isinstance(app, FastAPI | APIRouter):
        # Their routes can declare themselves; a blanket declaration would hide
        # an undeclared route from the inventory and the gate.
        raise ConfigurationError(
            "declare the routes of a FastAPI app or APIRouter with require()/public() "
            "(on the routes or the router), not with a mount declaration"
        )


def public_app(app: ASGIApp, *, reason: str) -> DeclaredApp:
    """Declare a mounted ASGI app (every path under the mount) open to anyone."""
    _refuse_routers(app)
    marker = public(reason).dependency  # validates the reason like public() does
    return DeclaredApp(app, ("public", getattr(marker, PUBLIC_ATTR)), check=None)


def protected_app(app: ASGIApp, *, resource: str, action: str) -> DeclaredApp:
    """Require ``action`` on ``resource`` for every request to a mounted ASGI app.

    401/403 JSON like ``require()`` (a WebSocket is closed with 1008), audited the same way.
    """
    _refuse_routers(app)
    check = require(resource, action).dependency
    return DeclaredApp(app, ("permission", resource, action), check=check)
