"""``require`` and ``public``: the two ways a route declares who may call it."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import Depends
from starlette.requests import HTTPConnection

from soc2kit.authn.credentials import NoCredentialsError, failure_audit_fields
from soc2kit.authn.principal import Principal
from soc2kit.authz.model import WILDCARD
from soc2kit.context import current_request
from soc2kit.errors import AuthenticationError, PolicyUnavailableError
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
        await authorize_route(kit, principal, resource, action)
        return principal

    setattr(soc2kit_require, PERMISSION_ATTR, (resource, action))
    return Depends(soc2kit_require)


async def authenticate(kit: Kit, conn: HTTPConnection) -> Principal:
    """Verify the request's credentials, attach the principal to the request context."""
    try:
        # Bearer JWT or API key, cached verification, revocation checked every time.
        verified = await kit.authenticator.aauthenticate(conn.headers)
    except NoCredentialsError:
        await kit.audit.arecord(
            "authn.failure", action="authenticate", outcome="failure", reason="no credentials"
        )
        raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"}) from None
    except AuthenticationError as exc:
        await kit.audit.arecord(
            "authn.failure",
            action="authenticate",
            outcome="failure",
            reason=exc.reason,
            **failure_audit_fields(exc),
        )
        raise ApiError(
            401, "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    stored = kit.policy.roles_for(verified.subject, verified.tenant or WILDCARD)
    principal = replace(verified, roles=verified.roles | stored, token_roles=verified.roles)
    ctx = current_request()
    if ctx is not None:
        ctx.principal = principal
    return principal


async def authorize_route(kit: Kit, principal: Principal, resource: str, action: str) -> None:
    """The route-level decision: 403 when denied, 503 when the policy is stale."""
    try:
        decision = kit.policy.check(principal, resource, action)
    except PolicyUnavailableError:
        await kit.audit.arecord(
            "authz.unavailable",
            action=action,
            outcome="error",
            actor=principal,
            resource_type=resource,
            reason="policy could not be confirmed fresh",
        )
        raise ApiError(503, "policy_unavailable") from None
    if not decision.allowed:
        await kit.audit.arecord(
            "authz.denied",
            action=action,
            outcome="denied",
            actor=principal,
            resource_type=resource,
            reason=decision.reason,
        )
        raise ApiError(403, "forbidden")
    if decision.source == "break_glass":
        await kit.audit.arecord(
            "authz.break_glass.use",
            action=action,
            outcome="success",
            actor=principal,
            resource_type=resource,
            reason="access through a break-glass grant",
            role=decision.role,
        )
    if kit.policy.note_use(principal):
        await anyio.to_thread.run_sync(kit.policy.write_use, principal)


def public(reason: str) -> Any:
    """Declare a route open to anyone; ``reason`` goes into the route inventory."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("public() needs a reason, e.g. public('load balancer probe')")

    async def soc2kit_public() -> None:
        return None

    setattr(soc2kit_public, PUBLIC_ATTR, reason.strip())
    return Depends(soc2kit_public)
