"""``require`` and ``public``: the two ways a route declares who may call it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from soc2kit.authn.principal import Principal
from soc2kit.context import current_request
from soc2kit.errors import AuthenticationError
from soc2kit.http.errors import ApiError

if TYPE_CHECKING:
    from soc2kit.kit import Kit

PUBLIC_ATTR = "__soc2kit_public__"
PERMISSION_ATTR = "__soc2kit_permission__"


def kit_for(conn: HTTPConnection) -> Kit:
    """The Kit serving this request; fails closed when soc2kit is not installed."""
    kit = conn.scope.get("soc2kit.kit")
    if kit is None:
        raise RuntimeError("soc2kit.install(app) was not called for this app")
    return kit  # type: ignore[no-any-return]


def bearer_credentials(conn: HTTPConnection) -> str | None:
    """The bearer token of the request (never from the query string)."""
    values = conn.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise AuthenticationError("multiple Authorization headers")
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise AuthenticationError("not a bearer credential")
    return token.strip()


def require(resource: str, action: str) -> Any:
    """A dependency that authenticates the caller and checks ``action`` on ``resource``.

    Use as a parameter default (``p: Principal = require("invoices", "read")``)
    or in ``dependencies=[...]`` of a route or router. 401 without valid
    credentials, 403 without the permission; both are audited.
    """
    if not resource or not action:
        raise ValueError("require() needs a resource and an action")

    async def soc2kit_require(conn: HTTPConnection) -> Principal:
        kit = kit_for(conn)
        principal = await authenticate(kit, conn)
        if not kit.policy.allowed(principal, resource, action):
            await kit.audit.arecord(
                "authz.denied",
                action=action,
                outcome="denied",
                actor=principal,
                resource_type=resource,
                reason="no matching permission",
            )
            raise ApiError(403, "forbidden")
        return principal

    setattr(soc2kit_require, PERMISSION_ATTR, (resource, action))
    return Depends(soc2kit_require)


async def authenticate(kit: Kit, conn: HTTPConnection) -> Principal:
    """Verify the request's credentials, attach the principal to the request context."""
    try:
        token = bearer_credentials(conn)
        if token is None:
            raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
        verified = kit.tokens.verify(token)
    except AuthenticationError as exc:
        await kit.audit.arecord(
            "authn.failure", action="authenticate", outcome="failure", reason=exc.reason
        )
        raise ApiError(
            401, "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    except ApiError:
        await kit.audit.arecord(
            "authn.failure", action="authenticate", outcome="failure", reason="no credentials"
        )
        raise
    stored = kit.policy.roles_for(verified.subject)
    principal = (
        verified
        if not stored
        else Principal(
            subject=verified.subject,
            issuer=verified.issuer,
            roles=verified.roles | stored,
            tenant=verified.tenant,
            auth_method=verified.auth_method,
            token_id=verified.token_id,
            scopes=verified.scopes,
            expires_at=verified.expires_at,
        )
    )
    ctx = current_request()
    if ctx is not None:
        ctx.principal = principal
    return principal


def public(reason: str) -> Any:
    """Declare a route open to anyone; ``reason`` goes into the route inventory."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("public() needs a reason, e.g. public('load balancer probe')")

    async def soc2kit_public() -> None:
        return None

    setattr(soc2kit_public, PUBLIC_ATTR, reason.strip())
    return Depends(soc2kit_public)
