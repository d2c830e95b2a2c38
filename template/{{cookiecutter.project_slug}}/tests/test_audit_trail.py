"""Every request leaves an audit record, and the sealed log verifies afterwards."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.app import kit

from .conftest import Auth


def events_about(resource_id: str) -> list[dict[str, object]]:
    with kit.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT event FROM soc2kit_audit_events WHERE resource_id = :id ORDER BY seq"),
            {"id": resource_id},
        )
        return [json.loads(row.event) for row in rows]


def test_requests_leave_a_verifiable_trail(client: TestClient, auth: Auth) -> None:
    body = {"full_name": "Audit Subject", "email": f"audit-{uuid.uuid4().hex[:8]}@example.com"}
    created = client.post("/customers", json=body, headers=auth("member", "mia"))
    assert created.status_code == 201
    customer_id = created.json()["id"]
    assert client.get(f"/customers/{customer_id}", headers=auth("member")).status_code == 200
    refused = client.delete(f"/customers/{customer_id}", headers=auth("member", "mia"))
    assert refused.status_code == 403
    erased = client.delete(f"/customers/{customer_id}", headers=auth("admin", "ada"))
    assert erased.status_code == 204

    kit.audit.flush()  # store, seal and sign everything recorded so far
    report = kit.audit.verify()
    assert report.ok, report.reason

    recorded = [(e["event_type"], e.get("actor_id")) for e in events_about(customer_id)]
    assert ("data.create", "mia") in recorded  # the ORM change, in its own transaction
    assert ("data.delete", "ada") in recorded
    assert ("customer.erased", "ada") in recorded  # the service's business event

    with kit.engine.connect() as conn:
        refusals = conn.execute(
            sa.text(
                "SELECT event FROM soc2kit_audit_events "
                "WHERE event_type = 'http.request' AND actor_id = 'mia'"
            )
        )
        statuses = [json.loads(row.event).get("status_code") for row in refusals]
    assert 403 in statuses  # the refused erasure is evidence too
