"""The Authenticator: which header carries what, and the whole path over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.datastructures import Headers
from tests.conftest import audit_rows

import soc2kit
from soc2kit import Principal, require
from soc2kit.authn.credentials import (
    CredentialRejected,
    NoCredentialsError,
    extract_credential,
)

KEY = "s2k_" + "a" * 24 + "_" + "B" * 43


def headers(*pairs: tuple[str, str]) -> Headers:
    # ASGI servers hand header names over lowercased.
    return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs])


@pytest.mark.parametrize(
    ("pairs", "kind"),
    [
        ([("authorization", "Bearer a.b.c")], "bearer"),
        ([("authorization", "bearer a.b.c")], "bearer"),
        ([("Authorization", "BEARER   a.b.c  ")], "bearer"),
        ([("authorization", f"Bearer {KEY}")], "api_key"),
        ([("x-api-key", KEY)], "api_key"),
        ([("X-API-Key", f" {KEY} ")], "api_key"),
    ],
)
def test_credentials_are_read_from_headers(pairs: list[tuple[str, str]], kind: str) -> None:
    assert extract_credential(headers(*pairs)).kind == kind


@pytest.mark.parametrize(
    "pairs",
    [
        [("authorization", "Bearer a.b.c"), ("authorization", "Bearer a.b.c")],
        [("x-api-key", KEY), ("x-api-key", KEY)],
        [("authorization", "Bearer a.b.c"), ("x-api-key", KEY)],
        [("authorization", f"Bearer {KEY}"), ("x-api-key", KEY)],  # same key twice: still no
        [("authorization", "Basic YTpi")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a b")],
        [("authorization", "a.b.c")],
        [("x-api-key", "a.b.c")],  # a JWT in the API key header
        [("x-api-key", "")],
        [("x-api-key", "s2k_abc def")],
    ],
)
def test_ambiguous_or_malformed_credentials_are_rejected(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(CredentialRejected):
        extract_credential(headers(*pairs))


def test_no_credential_is_its_own_error() -> None:
    with pytest.raises(NoCredentialsError):
        extract_credential(headers(("cookie", "session=abc")))


def test_credentials_never_appear_in_repr() -> None:
    assert KEY not in repr(extract_credential(headers(("x-api-key", KEY))))


# Over HTTP -------------------------------------------------------------------------------

Client = Callable[..., tuple[TestClient, soc2kit.Kit]]


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    kit.policy.grant("billing-writer", "invoices", "write")

    @app.post("/invoices")
    def write(p: Principal = require("invoices", "write")) -> dict[str, object]:
        return {"sub": p.subject, "method": p.auth_method, "key": p.token_id}


def test_an_api_key_works_in_either_header(make_client: Client) -> None:
    client, kit = make_client(routes)
    key_id, key = kit.api_keys.create("svc-billing", ["billing-writer"], timedelta(days=1))
    for h in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        r = client.post("/invoices", headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == {"sub": "svc-billing", "method": "api_key", "key": key_id}
    events = [e for e in audit_rows(kit) if e["event_type"] == "http.request"]
    assert {e["actor_type"] for e in events} == {"service"}


def test_a_key_without_the_role_is_forbidden_not_unauthenticated(make_client: Client) -> None:
    client, kit = make_client(routes)
    _, key = kit.api_keys.create("svc-reader", ["reader"], timedelta(days=1))
    assert client.post("/invoices", headers={"X-API-Key": key}).status_code == 403


def failure_shape(r: object) -> tuple[int, str, dict[str, object]]:
    return r.status_code, r.headers["www-authenticate"], r.json()  # type: ignore[attr-defined]


def test_revoked_expired_and_forged_keys_all_fail_the_same_way(
    make_client: Client, tmp_path: Path
) -> None:
    client, kit = make_client(routes)
    revoked_id, revoked = kit.api_keys.create("svc", ["billing-writer"], timedelta(days=1))
    kit.api_keys.revoke(revoked_id, "admin", "rotated")
    _, expiring = kit.api_keys.create("svc", ["billing-writer"], timedelta(days=1))
    real_clock = kit.api_keys._clock
    forged = "s2k_" + "0" * 24 + "_" + "A" * 43
    shapes = []
    for key in (revoked, forged, "s2k_nonsense", "not-a-jwt"):
        r = client.post("/invoices", headers={"Authorization": f"Bearer {key}"})
        status, challenge, body = failure_shape(r)
        shapes.append((status, challenge, body["error"], tuple(sorted(body))))
    kit.api_keys._clock = lambda: real_clock() + timedelta(days=2)  # type: ignore[method-assign]
    r = client.post("/invoices", headers={"X-API-Key": expiring})
    status, challenge, body = failure_shape(r)
    shapes.append((status, challenge, body["error"], tuple(sorted(body))))
    assert set(shapes) == {
        (401, 'Bearer error="invalid_token"', "invalid_token", ("error", "request_id"))
    }


def test_failed_key_uses_are_audited_with_the_key_id_never_the_secret(make_client: Client) -> None:
    client, kit = make_client(routes)
    key_id, key = kit.api_keys.create("svc", ["billing-writer"], timedelta(days=1))
    kit.api_keys.revoke(key_id, "admin", "leaked")
    client.post("/invoices", headers={"X-API-Key": key})
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    client.post("/invoices", headers={"X-API-Key": wrong})
    events = audit_rows(kit)
    failures = [e for e in events if e["event_type"] == "authn.failure"]
    assert [f["reason"] for f in failures] == ["API key revoked", "API key secret does not match"]
    assert all(f["resource_type"] == "api_key" and f["resource_id"] == key_id for f in failures)
    assert failures[0]["actor_id"] == "svc"
    assert failures[0]["extra"]["auth_method"] == "api_key"
    text = json.dumps(events)
    secret = key[len("s2k_") + 25 :]
    assert secret not in text and secret[:20] not in text and wrong[29:] not in text


def test_both_headers_at_once_are_refused(make_client: Client) -> None:
    client, kit = make_client(routes)
    _, key = kit.api_keys.create("svc", ["billing-writer"], timedelta(days=1))
    token = kit.dev_token("svc", ["billing-writer"])
    for h in (
        {"Authorization": f"Bearer {token}", "X-API-Key": key},
        {"Authorization": f"Bearer {key}", "X-API-Key": key},
    ):
        assert client.post("/invoices", headers=h).status_code == 401
    reasons = [e["reason"] for e in audit_rows(kit) if e["event_type"] == "authn.failure"]
    assert reasons == ["both Authorization and X-API-Key headers"] * 2


def test_keys_in_the_query_string_are_ignored(make_client: Client) -> None:
    client, kit = make_client(routes)
    _, key = kit.api_keys.create("svc", ["billing-writer"], timedelta(days=1))
    for query in (f"api_key={key}", f"access_token={key}", f"x-api-key={key}"):
        r = client.post(f"/invoices?{query}")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_a_revoked_principal_cannot_use_its_api_key(make_client: Client) -> None:
    client, kit = make_client(routes)
    _, key = kit.api_keys.create("svc-ops", ["billing-writer"], timedelta(days=1))
    assert client.post("/invoices", headers={"X-API-Key": key}).status_code == 200
    kit.policy.revoke_principal("svc-ops", reason="decommissioned", actor="admin")
    assert client.post("/invoices", headers={"X-API-Key": key}).status_code == 401
    reasons = [e["reason"] for e in audit_rows(kit) if e["event_type"] == "authn.failure"]
    assert reasons == ["principal revoked"]


def test_kit_exposes_the_authentication_parts(make_client: Client) -> None:
    _, kit = make_client(routes)
    assert kit.authenticator.tokens is kit.tokens
    assert kit.authenticator.api_keys is kit.api_keys
    p = kit.tokens.verify(kit.dev_token("dana", ["x"]))
    assert p.subject == "dana" and p.auth_method == "oidc"
