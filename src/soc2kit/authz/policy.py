"""Role-based access policy on pycasbin.

pycasbin is the decision engine and its model language the policy format. This
foundation keeps the policy in memory with a role hierarchy; the access-control
work adds the SQL store, tenants, the compiled decision index and reviews behind
the same methods. Every change is an audit event.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import casbin
from casbin.model import Model

from soc2kit.authn.principal import Principal

if TYPE_CHECKING:
    from soc2kit.audit.trail import AuditTrail

# Deny unless some allow rule matches; a subject gets a role's permissions
# through g (assignments, and role-to-role inheritance).
RBAC_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"""

_ROLE_PREFIX = "role:"
_SUBJECT_PREFIX = "user:"


def _role(name: str) -> str:
    return _ROLE_PREFIX + name


def _subject(name: str) -> str:
    return _SUBJECT_PREFIX + name


def _check(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"{what} must be a non-empty string of at most 256 characters")
    return value


class Policy:
    """Grants (role -> resource/action) and assignments (subject -> role)."""

    def __init__(self, audit: AuditTrail) -> None:
        model = Model()
        model.load_model_from_text(RBAC_MODEL)
        self._enforcer = casbin.Enforcer(model)
        self._lock = threading.RLock()
        self._audit = audit

    def grant(
        self,
        role: str,
        resource: str,
        action: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Allow ``role`` to perform ``action`` on ``resource``. True when it was new."""
        _check(role, "role"), _check(resource, "resource"), _check(action, "action")
        with self._lock:
            added = bool(self._enforcer.add_policy(_role(role), resource, action))
        if added:
            self._audit.record(
                "authz.policy.grant",
                action="grant",
                outcome="success",
                actor=actor or "system",
                resource_type="permission",
                resource_id=f"{resource}:{action}",
                reason=reason,
                changes={"role": role, "resource": resource, "permission": action},
            )
        return added

    def revoke(
        self,
        role: str,
        resource: str,
        action: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> bool:
        _check(role, "role"), _check(resource, "resource"), _check(action, "action")
        with self._lock:
            removed = bool(self._enforcer.remove_policy(_role(role), resource, action))
        if removed:
            self._audit.record(
                "authz.policy.revoke",
                action="revoke",
                outcome="success",
                actor=actor or "system",
                resource_type="permission",
                resource_id=f"{resource}:{action}",
                reason=reason,
                changes={"role": role, "resource": resource, "permission": action},
            )
        return removed

    def assign(
        self, subject: str, role: str, *, actor: str | None = None, reason: str | None = None
    ) -> bool:
        """Give ``subject`` (a token's ``sub``) the role ``role``."""
        _check(subject, "subject"), _check(role, "role")
        with self._lock:
            added = bool(self._enforcer.add_grouping_policy(_subject(subject), _role(role)))
        if added:
            self._audit.record(
                "authz.role.assign",
                action="assign",
                outcome="success",
                actor=actor or "system",
                resource_type="subject",
                resource_id=subject,
                reason=reason,
                changes={"role": role},
            )
        return added

    def unassign(
        self, subject: str, role: str, *, actor: str | None = None, reason: str | None = None
    ) -> bool:
        _check(subject, "subject"), _check(role, "role")
        with self._lock:
            removed = bool(self._enforcer.remove_grouping_policy(_subject(subject), _role(role)))
        if removed:
            self._audit.record(
                "authz.role.unassign",
                action="unassign",
                outcome="success",
                actor=actor or "system",
                resource_type="subject",
                resource_id=subject,
                reason=reason,
                changes={"role": role},
            )
        return removed

    def inherit(self, role: str, parent: str, *, actor: str | None = None) -> bool:
        """Make ``role`` include every permission of ``parent``."""
        _check(role, "role"), _check(parent, "role")
        with self._lock:
            added = bool(self._enforcer.add_grouping_policy(_role(role), _role(parent)))
        if added:
            self._audit.record(
                "authz.role.inherit",
                action="inherit",
                outcome="success",
                actor=actor or "system",
                resource_type="role",
                resource_id=role,
                changes={"parent": parent},
            )
        return added

    def roles_for(self, subject: str) -> frozenset[str]:
        """Roles assigned to ``subject`` in soc2kit's store (not those from tokens)."""
        with self._lock:
            roles = self._enforcer.get_roles_for_user(_subject(subject))
        return frozenset(r[len(_ROLE_PREFIX) :] for r in roles if r.startswith(_ROLE_PREFIX))

    def grants(self) -> list[tuple[str, str, str]]:
        with self._lock:
            rules = self._enforcer.get_policy()
        return sorted((r[0][len(_ROLE_PREFIX) :], r[1], r[2]) for r in rules)

    def allowed(self, principal: Principal, resource: str, action: str) -> bool:
        """True when the subject or any of its token roles holds the permission."""
        with self._lock:
            if self._enforcer.enforce(_subject(principal.subject), resource, action):
                return True
            return any(
                self._enforcer.enforce(_role(role), resource, action) for role in principal.roles
            )
