"""Object-level authorization (OWASP API1, broken object level authorization).

A route permission says "clerks may read invoices"; these checks say "this
clerk may read *this* invoice": same tenant, and owner unless the principal
holds the ``<action>:any`` permission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy import Select

from soc2kit.authn.principal import Principal
from soc2kit.authz.model import WILDCARD
from soc2kit.errors import AuthorizationError

# Any number of selected columns: Select is variadic (Select[int, str]) in SQLAlchemy 2.1.
# A string, so SQLAlchemy 2.0 (Select[tuple[...]]) never evaluates the 2.1 form at runtime.
SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")


class ObjectAccessDenied(AuthorizationError):
    """The principal may not act on this object (answered 404 or 403 as configured)."""


def object_tenant(obj: Any, tenant_attr: str) -> str | None:
    """The object's tenant; a missing attribute is a denial, never "no tenant".

    A misspelt ``tenant_attr`` must fail closed rather than skip the check;
    objects without tenants are checked with ``tenant_attr=None``.
    """
    if not hasattr(obj, tenant_attr):
        raise ObjectAccessDenied(f"object has no attribute {tenant_attr!r}")
    value = getattr(obj, tenant_attr)
    return None if value is None else str(value)


def check_object(
    allowed: Any,
    principal: Principal,
    resource: str,
    action: str,
    obj: Any,
    *,
    tenant_attr: str | None = "tenant_id",
    owner_attr: str | None = None,
) -> None:
    """Raise ObjectAccessDenied unless ``principal`` may ``action`` this ``obj``.

    ``allowed(principal, resource, action, tenant)`` is the policy decision.
    Tenant: an object with a tenant is only reachable from the same tenant.
    Owner: with ``owner_attr``, another subject's object needs ``<action>:any``.
    """
    tenant = object_tenant(obj, tenant_attr) if tenant_attr else None
    if tenant is not None and principal.tenant != tenant:
        raise ObjectAccessDenied("object belongs to another tenant")
    decision_tenant = tenant if tenant is not None else (principal.tenant or WILDCARD)
    if not allowed(principal, resource, action, decision_tenant):
        raise ObjectAccessDenied("no permission for this resource")
    if owner_attr is not None:
        owner = getattr(obj, owner_attr, None)
        if (owner is None or str(owner) != principal.subject) and not allowed(
            principal, resource, f"{action}:any", decision_tenant
        ):
            raise ObjectAccessDenied("object belongs to another subject")


def tenant_filter(statement: SelectT, column: Any, principal: Principal) -> SelectT:
    """Restrict ``statement`` to the principal's tenant (fails closed without one)."""
    if not principal.tenant:
        raise ObjectAccessDenied("principal has no tenant")
    return statement.where(column == principal.tenant)
