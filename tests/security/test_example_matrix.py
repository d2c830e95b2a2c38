"""The example service's role-by-route matrix: every role, every route, every method.

``examples/invoices/app.py`` builds its app at import from ``soc2kit.Settings()``
(the environment), so it is imported here under a test environment and dropped
from ``sys.modules`` afterwards. Handlers are counted through the module's
``Session`` (every invoice handler opens one); a refused request must open none,
write nothing, and leave its refusal in the audit trail.
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.security.battery import (
    bearer,
    expect_audit,
    expect_no_token_material,
    expect_refusal,
)

from soc2kit.authz import build_inventory

MODULE = "examples.invoices.app"
SESSIONS: Counter[str] = Counter()

ROLES: dict[str, tuple[str, list[str]] | None] = {
    "clerk": ("cara", ["clerk"]),
    "manager": ("max", ["manager"]),
    "none": ("nina", []),
    "anonymous": None,
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def by_role(clerk: int, manager: int, none: int, anonymous: int) -> dict[str, int]:
    return {"clerk": clerk, "manager": manager, "none": none, "anonymous": anonymous}


OPEN = by_role(200, 200, 200, 200)

MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    # Docs are on in the test environment (FastAPI's own routes answer HEAD too).
    ("GET", "/docs"): OPEN,
    ("HEAD", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("HEAD", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("HEAD", "/redoc"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("HEAD", "/openapi.json"): OPEN,
    ("GET", "/invoices"): by_role(200, 200, 403, 401),
    ("POST", "/invoices"): by_role(201, 403, 403, 401),
    ("GET", "/invoices/{invoice_id}"): by_role(200, 200, 403, 401),
    ("POST", "/invoices/{invoice_id}/approve"): by_role(403, 200, 403, 401),
}
"""Who gets what on each declared (method, route); any other method is 405 for all."""

PERMISSIONS = {
    ("GET", "/invoices"): "read",
    ("POST", "/invoices"): "create",
    ("GET", "/invoices/{invoice_id}"): "read",
    ("POST", "/invoices/{invoice_id}/approve"): "approve",
}
PATHS = sorted({path for _, path in MATRIX})
CELLS = [(method, path, role) for path in PATHS for method in METHODS for role in ROLES]


class CountingSession(Session):
    """The example's ``Session``, counting how often a handler opened one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        SESSIONS["opened"] += 1
        super().__init__(*args, **kwargs)


@dataclass
class Example:
    module: ModuleType
    client: TestClient

    @property
    def kit(self) -> Any:
        return self.module.kit

    def invoice(self, status: str = "draft") -> Any:
        """A draft invoice recorded by the clerk (through the ORM: its email is encrypted)."""
        with Session(self.kit.engine) as session, session.begin():
            invoice = self.module.Invoice(
                customer_email="customer@example.com",
                amount_cents=1234,
                status=status,
                created_by="cara",
                created_at=datetime.now(UTC),
            )
            session.add(invoice)
            session.flush()
            invoice_id = invoice.id
        return invoice_id

    def status_of(self, invoice_id: Any) -> str:
        invoices = self.module.Invoice.__table__
        with self.kit.engine.connect() as conn:
            return str(
                conn.execute(
                    sa.select(invoices.c.status).where(invoices.c.id == invoice_id)
                ).scalar()
            )

    def count(self) -> int:
        invoices = self.module.Invoice.__table__
        with self.kit.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(invoices)).scalar_one())


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("example")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOC2KIT_ENVIRONMENT", "test")
        mp.setenv("SOC2KIT_DATA_DIR", str(root / ".soc2kit"))
        mp.setenv("SOC2KIT_DATABASE_URL", f"sqlite:///{root / 'app.db'}")
        mp.setenv("SOC2KIT_RATE_LIMIT", "100000/minute")  # hundreds of requests, one client
        sys.modules.pop(MODULE, None)
        try:
            module = importlib.import_module(MODULE)
            mp.setattr(module, "Session", CountingSession)
            with TestClient(module.app, raise_server_exceptions=False) as client:
                yield Example(module, client)
        finally:
            sys.modules.pop(MODULE, None)


def headers_for(example: Example, role: str) -> dict[str, str]:
    who = ROLES[role]
    if who is None:
        return {}
    subject, roles = who
    return bearer(example.kit.dev_token(subject, roles))


def test_the_matrix_covers_every_route_and_method(example: Example) -> None:
    # soc2kit's own inventory of the app: what the gate and `soc2kit routes` see.
    entries = build_inventory(example.module.app)
    assert all(entry.methods for entry in entries)  # no mount escapes the matrix
    assert all(entry.declared for entry in entries)
    assert {(m, entry.path) for entry in entries for m in entry.methods} == set(MATRIX)
    for entry in entries:
        for method in entry.methods:
            permission = PERMISSIONS.get((method, entry.path))
            if permission is None:
                assert entry.declaration[0] == "public", entry  # type: ignore[index]
                assert set(MATRIX[(method, entry.path)].values()) == {200}
            else:
                assert entry.declaration == ("permission", "invoices", permission), entry


@pytest.mark.parametrize(("method", "path", "role"), CELLS)
def test_role_by_route(example: Example, method: str, path: str, role: str) -> None:
    client, kit = example.client, example.kit
    expected = MATRIX.get((method, path), dict.fromkeys(ROLES, 405))[role]
    invoice_id = example.invoice()
    url = path.format(invoice_id=invoice_id)
    body = {"customer_email": "new@example.com", "amount_cents": 500}
    rows_before = example.count()
    SESSIONS.clear()

    response = client.request(
        method,
        url,
        headers=headers_for(example, role),
        json=body if method == "POST" else None,
    )

    assert response.status_code == expected, (method, path, role, response.text)
    rid = response.headers["x-request-id"]
    is_invoice_route = path.startswith("/invoices")
    allowed = expected < 400
    # The handler ran exactly when access was allowed; nothing was written otherwise.
    assert SESSIONS["opened"] == (1 if allowed and is_invoice_route else 0)
    created = allowed and (method, path) == ("POST", "/invoices")
    assert example.count() == rows_before + (1 if created else 0)
    approved = allowed and path.endswith("/approve")
    assert example.status_of(invoice_id) == ("approved" if approved else "draft")

    if allowed:
        # The ORM change records itself (data.*) beside the app's domain event.
        events = {("POST", "/invoices"): ("data.create", "invoice.created")}
        events[("POST", "/invoices/{invoice_id}/approve")] = ("data.update", "invoice.approved")
        expect_audit(kit, rid, expected, *events.get((method, path), ()))
    elif expected == 405:
        if method != "HEAD":  # a HEAD answer has no body
            expect_refusal(response, 405, "method_not_allowed")
        expect_audit(kit, rid, 405)
    elif expected == 401:
        expect_refusal(response, 401, "unauthorized")
        failure = expect_audit(kit, rid, 401, "authn.failure")["authn.failure"]
        assert failure["reason"] == "no credentials"
    else:
        expect_refusal(response, 403, "forbidden")
        denied = expect_audit(kit, rid, 403, "authz.denied")["authz.denied"]
        assert (denied["resource_type"], denied["action"]) == (
            "invoices",
            PERMISSIONS[(method, path)],
        )
        assert denied["actor_id"] == ROLES[role][0]  # type: ignore[index]
    token = response.request.headers.get("authorization", "").removeprefix("Bearer ")
    expect_no_token_material(kit, *([token] if token else []))


def test_clerk_and_manager_cannot_be_one_person(example: Example) -> None:
    # The example declares the two roles in conflict: the store refuses to combine them.
    from soc2kit.errors import SegregationOfDutiesError

    example.kit.policy.assign("sam", "clerk")
    with pytest.raises(SegregationOfDutiesError):
        example.kit.policy.assign("sam", "manager")
    assert "manager" not in example.kit.policy.roles_for("sam")


def test_the_example_stores_customer_email_encrypted_and_finds_it_by_blind_index(
    example: Example,
) -> None:
    client, kit = example.client, example.kit
    clerk = headers_for(example, "clerk")
    email = "Grace.Hopper@Example.com"
    created = client.post(
        "/invoices", json={"customer_email": email, "amount_cents": 700}, headers=clerk
    )
    assert created.status_code == 201, created.text
    invoice_id = created.json()["id"]
    assert "customer_email" not in created.json()  # list/create schemas do not ask for it
    with kit.engine.connect() as conn:
        raw = conn.execute(
            sa.text("SELECT customer_email FROM invoices WHERE customer_email_bidx IS NOT NULL")
        ).scalars()
        stored = [bytes(v) for v in raw]
    assert stored and all(v[0] == 0xE1 and b"Hopper" not in v for v in stored)
    found = client.get(
        "/invoices", params={"customer_email": "grace.hopper@example.com"}, headers=clerk
    )
    assert [i["id"] for i in found.json()] == [invoice_id]
    missing = client.get("/invoices", params={"customer_email": "ada@example.com"}, headers=clerk)
    assert missing.json() == []
    detail = client.get(f"/invoices/{invoice_id}", headers=clerk)
    assert (
        detail.json()["customer_email"] == "Grace.Hopper@example.com"
    )  # EmailStr lowercases domains
