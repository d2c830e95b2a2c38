"""Tenants are isolated: another tenant's customer is invisible, as if it did not exist."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .conftest import OTHER_TENANT, Auth


def test_another_tenant_cannot_see_or_erase(client: TestClient, auth: Auth) -> None:
    body = {"full_name": "Tenant A Customer", "email": "isolated@example.com"}
    created = client.post("/customers", json=body, headers=auth("member"))
    assert created.status_code == 201
    customer_id = created.json()["id"]
    outsider = auth("admin", tenant=OTHER_TENANT)

    assert client.get(f"/customers/{customer_id}", headers=outsider).status_code == 404
    assert client.delete(f"/customers/{customer_id}", headers=outsider).status_code == 404
    listed = client.get("/customers", params={"limit": 100}, headers=outsider).json()
    assert customer_id not in [c["id"] for c in listed]
    found = client.post("/customers/search", json={"email": body["email"]}, headers=outsider)
    assert found.json() == []
    # The same request from the customer's own tenant succeeds.
    assert client.get(f"/customers/{customer_id}", headers=auth("admin")).status_code == 200


def test_a_credential_without_a_tenant_is_refused(client: TestClient, auth: Auth) -> None:
    no_tenant = auth("member", tenant=None)
    assert client.get("/customers", headers=no_tenant).status_code == 403
    body = {"full_name": "Nobody", "email": "nobody@example.com"}
    assert client.post("/customers", json=body, headers=no_tenant).status_code == 403
