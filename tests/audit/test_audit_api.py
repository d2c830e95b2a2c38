"""The auditor's read API: guarded, paginated, filtered, and itself audited."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.conftest import audit_rows

import soc2kit
from soc2kit.audit.checkpoints import NoteVerifier
from soc2kit.audit.verify import check_proof


@pytest.fixture
def served(
    make_settings: Callable[..., soc2kit.Settings], database_url: str
) -> Iterator[tuple[TestClient, soc2kit.Kit]]:
    app = FastAPI()
    kit = soc2kit.install(app, make_settings(database_url=database_url))
    app.include_router(kit.audit_router())
    kit.policy.grant("auditor", "audit", "read")
    with TestClient(app) as client:
        yield client, kit


def bearer(kit: soc2kit.Kit, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {kit.dev_token('auditor-ann', list(roles))}"}


def test_only_the_auditor_role_reads_the_log(served: tuple[TestClient, soc2kit.Kit]) -> None:
    client, kit = served
    assert client.get("/audit/events").status_code == 401
    assert client.get("/audit/events", headers=bearer(kit, "clerk")).status_code == 403
    assert client.get("/audit/events", headers=bearer(kit, "auditor")).status_code == 200


def test_events_are_filtered_and_paginated_by_seq(served: tuple[TestClient, soc2kit.Kit]) -> None:
    client, kit = served
    for n in range(7):
        kit.audit.record("invoice.approved", action="approve", outcome="success", resource_id=n)
    kit.audit.flush()
    headers = bearer(kit, "auditor")
    seen: list[Any] = []
    after = 0
    while True:
        page = client.get(
            "/audit/events",
            params={"event_type": "invoice.approved", "limit": 3, "after": after},
            headers=headers,
        ).json()
        seen += page["events"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert [e["resource_id"] for e in seen] == [str(n) for n in range(7)]
    assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)
    assert client.get("/audit/events", params={"limit": 501}, headers=headers).status_code == 422


def test_one_event_comes_with_a_proof_that_checks_offline(
    served: tuple[TestClient, soc2kit.Kit],
) -> None:
    client, kit = served
    event = kit.audit.record("export.done", action="export", outcome="success")
    kit.audit.flush()
    body = client.get(f"/audit/events/{event.event_id}", headers=bearer(kit, "auditor")).json()
    assert check_proof(body, NoteVerifier.from_vkey(body["vkey"]))
    missing = client.get("/audit/events/nope", headers=bearer(kit, "auditor"))
    assert missing.status_code == 404
    latest = client.get("/audit/checkpoints/latest", headers=bearer(kit, "auditor")).json()
    assert latest["size"] >= 1 and "\u2014" in latest["checkpoint"]


def test_every_read_of_the_log_is_itself_a_critical_audit_event(
    served: tuple[TestClient, soc2kit.Kit],
) -> None:
    client, kit = served
    client.get("/audit/events", params={"actor_id": "bob"}, headers=bearer(kit, "auditor"))
    queries = [e for e in audit_rows(kit) if e["event_type"] == "audit.query"]
    assert len(queries) == 1
    assert queries[0]["actor_id"] == "auditor-ann"
    assert queries[0]["extra"]["filters"]["actor_id"] == "bob"
