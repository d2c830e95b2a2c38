"""soc2kit's default pycasbin model: RBAC with a role hierarchy and tenants.

pycasbin stays the reference semantics: ``casbin_enforcer(snapshot)`` builds a
real enforcer from the same data the compiled index answers from, and the
property tests require the two to agree on every decision.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import TYPE_CHECKING, Any

import casbin
from casbin.model import Model

if TYPE_CHECKING:
    from soc2kit.authz.index import Snapshot

WILDCARD = "*"
"""Tenant value meaning "every tenant" for grants and assignments, "none" in requests."""

ROLE_PREFIX = "role:"
SUBJECT_PREFIX = "user:"

DEFAULT_MODEL = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && (p.dom == "*" || p.dom == r.dom) && r.obj == p.obj && r.act == p.act
"""


def domain_match(requested: str, stored: str) -> bool:
    """A stored ``*`` tenant applies to every requested tenant."""
    return stored in (WILDCARD, requested)


def check_name(value: object, what: str, *, tenant: bool = False) -> str:
    """Validate a role, subject, resource, action or tenant name at write time.

    Any printable text is allowed (commas, quotes and regex characters are plain
    data here, never parsed), but not control or format characters, which could
    smuggle look-alike names into reviews, and not ``*`` except as a whole tenant.
    """
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ValueError(f"{what} must be a non-empty string of at most 256 characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise ValueError(f"{what} contains control or invisible format characters")
    if value != value.strip():
        raise ValueError(f"{what} has leading or trailing whitespace")
    if tenant and WILDCARD in value and value != WILDCARD:
        raise ValueError("a tenant is '*' (every tenant) or a name without '*'")
    return value


def casbin_enforcer(snapshot: Snapshot) -> Any:
    """A pycasbin Enforcer holding ``snapshot`` under DEFAULT_MODEL (the oracle)."""
    model = Model()
    model.load_model_from_text(DEFAULT_MODEL)
    previous = logging.getLogger("casbin").level
    enforcer = casbin.Enforcer(model)
    logging.getLogger("casbin").setLevel(previous)
    enforcer.add_named_domain_matching_func("g", domain_match)
    rules = [[ROLE_PREFIX + g.role, g.tenant, g.resource, g.action] for g in snapshot.grants]
    if rules:
        enforcer.add_policies(rules)
    links = [
        [SUBJECT_PREFIX + a.subject, ROLE_PREFIX + a.role, a.tenant] for a in snapshot.assignments
    ]
    links += [
        [ROLE_PREFIX + child, ROLE_PREFIX + parent, WILDCARD]
        for child, parent in snapshot.inheritance
    ]
    if links:
        enforcer.add_grouping_policies(links)
    return enforcer
