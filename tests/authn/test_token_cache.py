"""The verified-token cache: bounded, expiring, keyed by digest, and never above revocation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.datastructures import Headers
from tests.authn.jwt_helpers import AUD, ISS, NOW, FakeClock, ec_key, public_jwks, sign

import soc2kit
from soc2kit import Principal, require
from soc2kit.authn import tokens as tokens_module
from soc2kit.authn.authenticator import Authenticator
from soc2kit.authn.cache import VerifiedTokenCache
from soc2kit.authn.credentials import CredentialRejected
from soc2kit.authn.tokens import TokenVerifier
from soc2kit.settings import Settings

EC = ec_key("ec1")


def principal(subject: str = "alice", expires_at: int | None = NOW + 300) -> Principal:
    return Principal(subject=subject, issuer=ISS, expires_at=expires_at)


def test_entries_end_at_exp() -> None:
    clock = FakeClock(NOW)
    cache = VerifiedTokenCache(clock=clock)
    cache.put("t", principal(expires_at=NOW + 10))
    clock.advance(9.9)
    assert cache.get("t") is not None
    clock.advance(0.1)
    assert cache.get("t") is None
    assert len(cache) == 0


def test_entries_end_after_the_max_ttl_even_with_a_long_exp() -> None:
    clock = FakeClock(NOW)
    cache = VerifiedTokenCache(max_ttl_seconds=60, clock=clock)
    cache.put("t", principal(expires_at=NOW + 86400))
    clock.advance(59)
    assert cache.get("t") is not None
    clock.advance(1)
    assert cache.get("t") is None


def test_expired_principals_are_not_stored() -> None:
    clock = FakeClock(NOW)
    cache = VerifiedTokenCache(clock=clock)
    cache.put("t", principal(expires_at=NOW))
    assert len(cache) == 0


def test_size_is_bounded_least_recently_used_first() -> None:
    cache = VerifiedTokenCache(max_entries=3, clock=FakeClock(NOW))
    for name in ("a", "b", "c"):
        cache.put(name, principal(name))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", principal("d"))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(n) is not None for n in ("a", "c", "d")] == [True, True, True]


def test_a_key_change_ends_every_entry() -> None:
    cache = VerifiedTokenCache(clock=FakeClock(NOW))
    cache.put("t", principal(), generation=1)
    assert cache.get("t", generation=1) is not None
    assert cache.get("t", generation=2) is None


def test_the_cache_holds_digests_not_tokens() -> None:
    cache = VerifiedTokenCache(clock=FakeClock(NOW))
    token = sign(EC)
    cache.put(token, principal())
    stored = list(cache._entries)
    assert len(stored) == 1 and len(stored[0]) == 32
    assert token.encode() not in stored[0]
    assert cache.get(token + "x") is None


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        VerifiedTokenCache(max_entries=0)
    with pytest.raises(ValueError):
        VerifiedTokenCache(max_ttl_seconds=0)


# Through the authenticator ----------------------------------------------------------------


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count signature verifications (joserfc's decode, as the verifier calls it)."""
    calls: list[str] = []
    real = tokens_module.jwt.decode

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("decode")
        return real(value, *args, **kwargs)

    monkeypatch.setattr(tokens_module.jwt, "decode", counting)
    return calls


def authenticator(tmp_path: Path, revoked: set[str]) -> Authenticator:
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        oidc_issuer=ISS,
        oidc_audience=AUD,
        jwks=public_jwks(EC),
    )
    verifier = TokenVerifier(settings, clock=FakeClock(NOW))
    return Authenticator(
        verifier,
        None,
        is_revoked=revoked.__contains__,
        cache=VerifiedTokenCache(clock=FakeClock(NOW)),
    )


def bearer(token: str) -> Headers:
    return Headers({"authorization": f"Bearer {token}"})


def test_a_cache_hit_skips_the_signature_check(tmp_path: Path, decode_calls: list[str]) -> None:
    auth = authenticator(tmp_path, set())
    token = sign(EC)
    for _ in range(5):
        assert auth.authenticate(bearer(token)).subject == "alice"
    assert decode_calls == ["decode"]
    for _ in range(5):
        assert asyncio.run(auth.aauthenticate(bearer(token))).subject == "alice"
    assert decode_calls == ["decode"]
    other = sign(EC, sub="bob")
    assert auth.authenticate(bearer(other)).subject == "bob"
    assert decode_calls == ["decode", "decode"]


def test_revocation_still_denies_a_cached_token(tmp_path: Path, decode_calls: list[str]) -> None:
    revoked: set[str] = set()
    auth = authenticator(tmp_path, revoked)
    token = sign(EC)
    auth.authenticate(bearer(token))
    auth.authenticate(bearer(token))
    assert len(auth.cache) == 1 and decode_calls == ["decode"]
    revoked.add("alice")
    with pytest.raises(CredentialRejected, match="revoked") as info:
        auth.authenticate(bearer(token))
    assert info.value.subject == "alice"
    with pytest.raises(CredentialRejected, match="revoked"):
        asyncio.run(auth.aauthenticate(bearer(token)))
    assert decode_calls == ["decode"]  # denied from the cache path, not by re-verifying
    revoked.clear()
    assert auth.authenticate(bearer(token)).subject == "alice"


def test_a_failing_revocation_check_fails_closed(tmp_path: Path) -> None:
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        oidc_issuer=ISS,
        oidc_audience=AUD,
        jwks=public_jwks(EC),
    )

    def broken(subject: str) -> bool:
        raise RuntimeError("policy store down")

    auth = Authenticator(TokenVerifier(settings, clock=FakeClock(NOW)), None, is_revoked=broken)
    with pytest.raises(CredentialRejected, match="revocation check failed"):
        auth.authenticate(bearer(sign(EC)))


def test_rejected_tokens_are_not_cached(tmp_path: Path, decode_calls: list[str]) -> None:
    auth = authenticator(tmp_path, set())
    bad = sign(EC, aud="api://other")
    for _ in range(3):
        with pytest.raises(CredentialRejected):
            auth.authenticate(bearer(bad))
    assert len(auth.cache) == 0 and len(decode_calls) == 3


# Over HTTP, with the policy's revocation ---------------------------------------------------

Client = Callable[..., tuple[TestClient, soc2kit.Kit]]


def routes(app: FastAPI, kit: soc2kit.Kit) -> None:
    kit.policy.grant("clerk", "invoices", "read")

    @app.get("/invoices")
    def invoices(p: Principal = require("invoices", "read")) -> dict[str, str]:
        return {"sub": p.subject}


def test_revoking_a_principal_denies_its_cached_token_over_http(
    make_client: Client, decode_calls: list[str]
) -> None:
    client, kit = make_client(routes)
    token = kit.dev_token("carol", ["clerk"])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/invoices", headers=headers).status_code == 200
    assert client.get("/invoices", headers=headers).status_code == 200
    assert decode_calls == ["decode"]  # second request served from the cache
    kit.policy.revoke_principal("carol", reason="left the company", actor="admin")
    r = client.get("/invoices", headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert decode_calls == ["decode"]
