{%- set multi = cookiecutter.tenancy == "multi" -%}
"""The role-by-route matrix: every route of the app, every role, allowed or refused.

``EXPECTED`` is the reviewed statement of who may call what. Three tests keep it true:

- the app's route inventory and ``EXPECTED`` list the same routes, so a new
  route fails here until someone writes down who may call it;
- for every route, the roles policy/policy.csv grants its permission to are
  exactly the roles ``EXPECTED`` allows, so a policy change fails here until the
  expectation changes with it, in the same pull request;
- every (route, caller) cell is requested over HTTP and must be answered as
  ``EXPECTED`` says: 2xx when allowed, 403 when refused, 401 without a token.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from soc2kit.authz import build_inventory
from soc2kit.authz.mounts import Declaration

from {{ cookiecutter.package_name }} import policy
from {{ cookiecutter.package_name }}.app import app, kit, service_settings
from {{ cookiecutter.package_name }}.models import Customer

from .conftest import {% if multi %}TENANT, {% endif %}Auth

PUBLIC = "public"
ROLES = ("admin", "auditor", "member")
CALLERS = (*ROLES, "no-role", "anonymous")
STAFF = frozenset({"admin", "member"})

EXPECTED: dict[tuple[str, str], str | frozenset[str]] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    # FastAPI's API docs: served outside production only.
    ("GET", "/docs"): PUBLIC,
    ("HEAD", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("HEAD", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("HEAD", "/redoc"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("HEAD", "/openapi.json"): PUBLIC,
    ("GET", "/customers"): STAFF,
    ("POST", "/customers"): STAFF,
    ("POST", "/customers/search"): STAFF,
    ("GET", "/customers/{customer_id}"): STAFF,
    ("DELETE", "/customers/{customer_id}"): frozenset({"admin"}),
    ("GET", "/audit/events"): frozenset({"auditor"}),
    ("GET", "/audit/events/{event_id}"): frozenset({"auditor"}),
    ("GET", "/audit/checkpoints/latest"): frozenset({"auditor"}),
}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/customers"): {"full_name": "Ada Lovelace", "email": "ada@example.com"},
    ("POST", "/customers/search"): {"email": "ada@example.com"},
}


def new_customer() -> str:
    with kit.sessions() as session, session.begin():
        customer = Customer(
{%- if multi %}
            tenant_id=TENANT,
{%- endif %}
            full_name="Matrix Sample",
            email="matrix@example.com",
            created_by="tests",
            created_at=datetime.now(UTC),
        )
        session.add(customer)
    return str(customer.id)


def sealed_event() -> str:
    kit.audit.flush()
    with kit.engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT event_id FROM soc2kit_audit_events")).scalar())


SAMPLES: dict[str, Callable[[], str]] = {"customer_id": new_customer, "event_id": sealed_event}
"""A real value for each path parameter, made fresh for every request."""


def inventory() -> dict[tuple[str, str], Declaration | None]:
    """(method, path) -> how the route declares its access, from soc2kit's inventory."""
    return {
        (method, entry.path): entry.declaration
        for entry in build_inventory(app)
        for method in entry.methods
    }


def test_every_route_has_an_expectation() -> None:
    routes = set(inventory())
    missing, stale = sorted(routes - EXPECTED.keys()), sorted(EXPECTED.keys() - routes)
    assert not missing, f"routes without an expectation (add them to EXPECTED): {missing}"
    assert not stale, f"expectations for routes that no longer exist: {stale}"


def test_expectations_match_the_policy_file() -> None:
    grants = policy.read_grants(service_settings.policy_file.read_text("utf-8"))
    for key, declaration in inventory().items():
        expected = EXPECTED.get(key)
        assert declaration is not None, f"{key} declares neither require() nor public()"
        if declaration[0] == "public":
            assert expected == PUBLIC, f"{key} is public in the code, not in EXPECTED"
            continue
        permission = (declaration[1], declaration[-1])
        granted = frozenset(g.role for g in grants if (g.resource, g.action) == permission)
        assert expected == granted, (
            f"{key} requires {':'.join(permission)}, which policy.csv grants to "
            f"{sorted(granted)}; EXPECTED says {expected}"
        )


def test_running_policy_is_the_file(client: TestClient) -> None:
    stored = {policy.Grant(g.role, g.tenant, g.resource, g.action) for g in kit.policy.grants()}
    assert stored == policy.read_grants(service_settings.policy_file.read_text("utf-8"))


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
@pytest.mark.parametrize("caller", CALLERS)
def test_cell(client: TestClient, auth: Auth, method: str, path: str, caller: str) -> None:
    names = [name for _, name, _, _ in string.Formatter().parse(path) if name]
    url = path.format(**{name: SAMPLES[name]() for name in names})
    if path.startswith("/audit/"):
        kit.audit.flush()  # the auditor's API reads sealed events and signed checkpoints
    response = client.request(method, url, headers=auth(caller), json=BODIES.get((method, path)))
    status, expected = response.status_code, EXPECTED[(method, path)]
    if expected == PUBLIC:
        assert status < 400, f"{method} {path} is public: {caller} got {status}"
    elif caller == "anonymous":
        assert status == 401, f"{method} {path} without a token: {status}"
    elif caller in expected:
        assert 200 <= status < 300, f"{method} {path} allows {caller}: got {status}"
    else:
        assert status == 403, f"{method} {path} refuses {caller}: got {status}"
