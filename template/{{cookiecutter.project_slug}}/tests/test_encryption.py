"""Personal fields round-trip through the API but are stored only as ciphertext."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.app import kit

from .conftest import Auth


def create(client: TestClient, auth: Auth, full_name: str, email: str) -> str:
    response = client.post(
        "/customers", json={"full_name": full_name, "email": email}, headers=auth("member")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_round_trip_and_blind_index_search(client: TestClient, auth: Auth) -> None:
    email = f"grace.{uuid.uuid4().hex[:8]}@example.com"
    customer_id = create(client, auth, "Grace Hopper", email)

    detail = client.get(f"/customers/{customer_id}", headers=auth("member")).json()
    assert (detail["full_name"], detail["email"]) == ("Grace Hopper", email)

    # Equality search on the encrypted column, case-insensitive, through its blind index.
    found = client.post(
        "/customers/search", json={"email": email.upper()}, headers=auth("member")
    ).json()
    assert [c["id"] for c in found] == [customer_id]
    missing = client.post(
        "/customers/search", json={"email": "nobody@example.com"}, headers=auth("member")
    ).json()
    assert missing == []


def test_no_plaintext_in_the_database(client: TestClient, auth: Auth) -> None:
    marker = uuid.uuid4().hex[:12]
    full_name, email = f"Plain {marker}", f"plain.{marker}@example.com"
    create(client, auth, full_name, email)
    kit.audit.flush()

    secrets = [full_name.encode(), email.encode(), marker.encode()]
    with kit.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT full_name, email, email_bidx FROM customers")).all()
        events = conn.execute(sa.text("SELECT event FROM soc2kit_audit_events")).scalars().all()
    assert rows, "the customer was not stored"
    for row in rows:
        for value in row:
            stored = bytes(value)
            assert not any(s in stored for s in secrets), "plaintext found in the customers table"
    # The audit trail records that the fields changed, never their values.
    assert not any(marker in event for event in events)
