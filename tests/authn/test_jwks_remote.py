"""Keys from jwks_url and OIDC discovery, served by a real HTTP server on 127.0.0.1.

Clocks are injected, so the 30 s refetch window and the 1 h TTL are crossed
without sleeping. Fetches are counted at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey
from tests.authn.jwt_helpers import (
    AUD,
    NOW,
    FakeClock,
    JwksServer,
    ec_key,
    public_jwks,
    sign,
)

from soc2kit.authn import tokens as tokens_module
from soc2kit.authn.jwks import FetchError, RemoteJWKS, fetch_json, import_keys, url_problem
from soc2kit.authn.tokens import TokenVerifier
from soc2kit.errors import AuthenticationError, ConfigurationError
from soc2kit.settings import Settings, production_problems

K1 = ec_key("k1")
K2 = ec_key("k2")


def make_verifier(
    tmp_path: Path, clock: FakeClock, issuer: str = "https://id.example.test/", **overrides: Any
) -> TokenVerifier:
    settings = Settings(
        environment="test",
        data_dir=tmp_path,
        oidc_issuer=issuer,
        oidc_audience=AUD,
        **overrides,
    )
    return TokenVerifier(settings, clock=clock, jwks_clock=clock)


def token(key: ECKey, clock: FakeClock, issuer: str = "https://id.example.test/") -> str:
    return sign(key, now=int(clock()), iss=issuer)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def served(jwks_server: JwksServer) -> JwksServer:
    jwks_server.json("/jwks", public_jwks(K1))
    return jwks_server


def test_keys_are_fetched_once_and_kept_for_the_ttl(
    served: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    assert served.hits["/jwks"] == 0  # nothing fetched at construction
    for _ in range(5):
        assert verifier.verify(token(K1, clock)).subject == "alice"
    assert served.hits["/jwks"] == 1
    clock.advance(3599)
    verifier.verify(token(K1, clock))
    assert served.hits["/jwks"] == 1
    clock.advance(1)  # the default TTL (1 h) is over
    verifier.verify(token(K1, clock))
    assert served.hits["/jwks"] == 2


def test_the_ttl_is_a_setting(served: JwksServer, clock: FakeClock, tmp_path: Path) -> None:
    verifier = make_verifier(
        tmp_path, clock, jwks_url=served.url("/jwks"), jwks_cache_ttl_seconds=120
    )
    verifier.verify(token(K1, clock))
    clock.advance(120)
    verifier.verify(token(K1, clock))
    assert served.hits["/jwks"] == 2


def test_rotation_a_new_kid_is_fetched_once_then_accepted(
    served: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    verifier.verify(token(K1, clock))
    served.json("/jwks", public_jwks(K1, K2))  # the IdP publishes a new key
    clock.advance(10)
    with pytest.raises(AuthenticationError):  # inside the 30 s window: no refetch yet
        verifier.verify(token(K2, clock))
    assert served.hits["/jwks"] == 1
    clock.advance(20)
    assert verifier.verify(token(K2, clock)).subject == "alice"
    assert served.hits["/jwks"] == 2
    verifier.verify(token(K2, clock))
    verifier.verify(token(K1, clock))
    assert served.hits["/jwks"] == 2


def test_a_removed_key_stops_verifying_after_the_refresh(
    served: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    generation = verifier.key_generation
    verifier.verify(token(K1, clock))
    served.json("/jwks", public_jwks(K2))
    clock.advance(3600)
    verifier.verify(token(K2, clock))  # TTL refresh picks up the new set
    assert verifier.key_generation != generation
    with pytest.raises(AuthenticationError):
        verifier.verify(token(K1, clock))


def test_a_flood_of_random_kids_is_at_most_one_fetch_per_30_seconds(
    served: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    verifier.verify(token(K1, clock))
    attacker = ECKey.generate_key("P-256", private=True)

    def flood(n: int) -> None:
        for _ in range(n):
            forged = sign(attacker, header={"kid": secrets.token_hex(8)}, now=int(clock()))
            with pytest.raises(AuthenticationError):
                verifier.verify(forged)

    flood(200)
    assert served.hits["/jwks"] == 1  # the initial fetch was < 30 s ago
    clock.advance(30)
    flood(200)
    assert served.hits["/jwks"] == 2
    clock.advance(29.5)
    flood(200)
    assert served.hits["/jwks"] == 2
    clock.advance(0.5)
    flood(200)
    assert served.hits["/jwks"] == 3
    # Good tokens kept working throughout.
    assert verifier.verify(token(K1, clock)).subject == "alice"


def test_concurrent_unknown_kids_share_one_fetch(
    served: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    verifier.verify(token(K1, clock))
    clock.advance(60)
    served.delay = 0.2  # keep the fetch in flight while the others arrive
    attacker = ECKey.generate_key("P-256", private=True)
    forged = [sign(attacker, header={"kid": f"r{i}"}, now=int(clock())) for i in range(40)]
    start = threading.Barrier(len(forged))

    def attempt(t: str) -> None:
        start.wait()
        with contextlib.suppress(AuthenticationError):
            verifier.verify(t)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in forged]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert served.hits["/jwks"] == 2  # single flight: one more fetch for 40 callers


def test_async_flood_is_one_fetch_and_does_not_block_the_loop(
    served: JwksServer, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    served.delay = 0.3
    offloaded: list[object] = []
    real_run_sync = tokens_module.anyio.to_thread.run_sync

    async def counting_run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        offloaded.append(func)
        return await real_run_sync(func, *args, **kwargs)

    monkeypatch.setattr(tokens_module.anyio.to_thread, "run_sync", counting_run_sync)
    attacker = ECKey.generate_key("P-256", private=True)
    forged = [sign(attacker, header={"kid": f"r{i}"}, now=int(clock())) for i in range(100)]
    ticks: list[float] = []
    verified_at: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            await asyncio.sleep(0.03)
            ticks.append(time.monotonic())

    async def good() -> Any:
        principal = await verifier.averify(token(K1, clock))
        verified_at.append(time.monotonic())
        return principal

    async def verify_all() -> list[BaseException | Any]:
        # The cold fetch runs in a worker thread while the loop keeps ticking.
        results = await asyncio.gather(
            good(), *(verifier.averify(t) for t in forged), ticker(), return_exceptions=True
        )
        return list(results)

    results = asyncio.run(verify_all())
    assert results[0].subject == "alice"  # type: ignore[union-attr]
    assert len([t for t in ticks if t < verified_at[0]]) >= 3  # the loop ran during the fetch
    assert all(isinstance(r, AuthenticationError) for r in results[1:-1])
    assert served.hits["/jwks"] == 1
    assert len(offloaded) == 1  # the flood never queued for worker threads


def test_a_failed_refresh_keeps_the_last_known_keys_for_a_bounded_time(
    served: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    verifier = make_verifier(tmp_path, clock, jwks_url=served.url("/jwks"))
    verifier.verify(token(K1, clock))
    served.json("/jwks", {"error": "down"}, status=503)
    clock.advance(3600)
    assert verifier.verify(token(K1, clock)).subject == "alice"  # refresh failed, keys kept
    assert served.hits["/jwks"] == 2
    clock.advance(10)
    verifier.verify(token(K1, clock))
    assert served.hits["/jwks"] == 2  # failures are retried at most every 30 s too
    clock.advance(86400)  # a day without a successful refresh: fail closed
    with pytest.raises(AuthenticationError):
        verifier.verify(token(K1, clock))
    served.json("/jwks", public_jwks(K1))
    clock.advance(30)
    assert verifier.verify(token(K1, clock)).subject == "alice"  # recovers


@pytest.mark.parametrize(
    "document",
    [
        {"keys": [{**K1.as_dict(private=True)}]},  # private material published
        {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "k1"}]},
        {"keys": []},
        {"keys": "nope"},
        ["not", "a", "set"],
    ],
)
def test_unusable_remote_documents_are_refused(
    jwks_server: JwksServer, clock: FakeClock, tmp_path: Path, document: Any
) -> None:
    jwks_server.json("/jwks", document)
    verifier = make_verifier(tmp_path, clock, jwks_url=jwks_server.url("/jwks"))
    with pytest.raises(AuthenticationError):
        verifier.verify(token(K1, clock))
    assert jwks_server.hits["/jwks"] == 1


def test_redirects_are_never_followed(jwks_server: JwksServer, tmp_path: Path) -> None:
    jwks_server.json("/jwks", public_jwks(K1))
    jwks_server.raw("/moved", 302, {"Location": jwks_server.url("/jwks")}, b"")
    with pytest.raises(FetchError, match="302"):
        fetch_json(jwks_server.url("/moved"), allow_loopback_http=True)
    assert jwks_server.hits["/jwks"] == 0


def test_responses_are_size_capped(jwks_server: JwksServer) -> None:
    big = b'{"keys": [' + b" " * 5000 + b"]}"
    jwks_server.raw("/declared", 200, {"Content-Length": str(len(big))}, big)
    jwks_server.raw("/undeclared", 200, {}, big)  # HTTP/1.0: length unknown until the end
    for path in ("/declared", "/undeclared"):
        with pytest.raises(FetchError, match="too large"):
            fetch_json(jwks_server.url(path), allow_loopback_http=True, max_bytes=4096)
    assert fetch_json(jwks_server.url("/declared"), allow_loopback_http=True, max_bytes=6000)


def test_a_slow_server_times_out(jwks_server: JwksServer) -> None:
    jwks_server.json("/jwks", public_jwks(K1))
    jwks_server.delay = 2.0
    started = time.monotonic()
    with pytest.raises(FetchError):
        fetch_json(jwks_server.url("/jwks"), allow_loopback_http=True, timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_non_json_and_error_statuses_are_fetch_errors(jwks_server: JwksServer) -> None:
    jwks_server.raw("/html", 200, {"Content-Type": "text/html"}, b"<html>")
    jwks_server.json("/gone", {}, status=404)
    for path in ("/html", "/gone"):
        with pytest.raises(FetchError):
            fetch_json(jwks_server.url(path), allow_loopback_http=True)


@pytest.mark.parametrize(
    ("url", "loopback_ok", "allowed"),
    [
        ("https://id.example.com/jwks", False, True),
        ("http://127.0.0.1:8080/jwks", True, True),
        ("http://localhost/jwks", True, True),
        ("http://[::1]/jwks", True, True),
        ("http://127.0.0.1:8080/jwks", False, False),  # production: never plain http
        ("http://id.example.com/jwks", True, False),  # not loopback
        ("http://10.0.0.5/jwks", True, False),
        ("https://169.254.169.254/latest/meta-data", False, False),  # cloud metadata
        ("https://user:pw@id.example.com/jwks", False, False),
        ("file:///etc/passwd", True, False),
        ("ftp://id.example.com/jwks", True, False),
        ("https:///jwks", False, False),
    ],
)
def test_url_policy(url: str, loopback_ok: bool, allowed: bool) -> None:
    assert (url_problem(url, allow_loopback_http=loopback_ok) is None) is allowed


def test_plain_http_is_refused_in_production_and_for_remote_hosts(tmp_path: Path) -> None:
    prod = Settings(
        environment="production",
        data_dir=tmp_path,
        oidc_issuer="https://id.example.com/",
        oidc_audience=AUD,
        jwks_url="http://127.0.0.1:9/jwks",
    )
    with pytest.raises(ConfigurationError, match="https"):
        TokenVerifier(prod)
    with pytest.raises(ConfigurationError, match="https"):
        TokenVerifier(Settings(environment="test", data_dir=tmp_path, jwks_url="http://a.test/j"))
    # https is accepted without any request at construction, in production too.
    TokenVerifier(Settings(environment="test", data_dir=tmp_path, jwks_url="https://a.test/j"))
    TokenVerifier(prod.model_copy(update={"jwks_url": "https://id.example.com/jwks"}))


def test_discovery_finds_the_jwks_uri(
    jwks_server: JwksServer, clock: FakeClock, tmp_path: Path
) -> None:
    issuer = jwks_server.base
    jwks_server.json(
        "/.well-known/openid-configuration",
        {"issuer": issuer, "jwks_uri": jwks_server.url("/keys")},
    )
    jwks_server.json("/keys", public_jwks(K1))
    verifier = make_verifier(tmp_path, clock, issuer=issuer, oidc_discovery=True)
    assert verifier.verify(token(K1, clock, issuer)).subject == "alice"
    verifier.verify(token(K1, clock, issuer))
    assert jwks_server.hits["/.well-known/openid-configuration"] == 1
    assert jwks_server.hits["/keys"] == 1


@pytest.mark.parametrize(
    "config",
    [
        {"issuer": "https://someone-else.example/", "jwks_uri": "JWKS"},
        {"issuer": "ISSUER"},
        {"issuer": "ISSUER", "jwks_uri": "http://keys.example.com/jwks"},  # plain http, remote
        {"issuer": "ISSUER", "jwks_uri": "https://169.254.169.254/keys"},
    ],
)
def test_discovery_documents_that_do_not_fit_are_refused(
    jwks_server: JwksServer, clock: FakeClock, tmp_path: Path, config: dict[str, str]
) -> None:
    issuer = jwks_server.base
    document = {
        k: v.replace("ISSUER", issuer).replace("JWKS", jwks_server.url("/keys"))
        for k, v in config.items()
    }
    jwks_server.json("/.well-known/openid-configuration", document)
    jwks_server.json("/keys", public_jwks(K1))
    verifier = make_verifier(tmp_path, clock, issuer=issuer, oidc_discovery=True)
    with pytest.raises(AuthenticationError):
        verifier.verify(token(K1, clock, issuer))
    assert jwks_server.hits["/keys"] == 0


def test_discovery_needs_an_issuer(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="oidc_issuer"):
        TokenVerifier(Settings(environment="test", data_dir=tmp_path, oidc_discovery=True))


def test_remote_jwks_takes_exactly_one_source() -> None:
    with pytest.raises(ConfigurationError):
        RemoteJWKS()
    with pytest.raises(ConfigurationError):
        RemoteJWKS(jwks_url="https://a.test/j", issuer="https://a.test/")


# Key files and the production guard -------------------------------------------------


def test_jwks_file_is_a_key_source(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_jwks(K1)))
    verifier = make_verifier(tmp_path, clock, jwks_file=path)
    assert verifier.verify(token(K1, clock)).subject == "alice"
    with pytest.raises(AuthenticationError):
        verifier.verify(token(K2, clock))


@pytest.mark.parametrize("content", ["not json", "[]", '{"keys": []}'])
def test_an_unusable_jwks_file_refuses_to_start(
    clock: FakeClock, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="jwks_file"):
        make_verifier(tmp_path, clock, jwks_file=path)
    with pytest.raises(ConfigurationError, match="jwks_file cannot be read"):
        make_verifier(tmp_path, clock, jwks_file=tmp_path / "missing.json")


SAFE = {
    "environment": "production",
    "oidc_issuer": "https://id.example.com/",
    "oidc_audience": "api://invoices",
    "allowed_hosts": ["api.example.com"],
    "database_url": "postgresql://app@db.example.com/app",
    "api_key_pepper": "pepper-for-tests-0123456789abcdef",
    "encryption_kek": "kek-test-1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    "audit_signing_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "audit_anchor_dir": "/var/lib/app/audit-anchors",
}


@pytest.mark.parametrize(
    "source",
    [
        {"jwks_url": "https://id.example.com/jwks"},
        {"oidc_discovery": True},
    ],
)
def test_remote_key_sources_pass_the_production_guard(source: dict[str, Any]) -> None:
    assert production_problems(Settings(**SAFE, **source)) == []


def test_jwks_file_is_checked_by_the_production_guard(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(public_jwks(K1)))
    assert production_problems(Settings(**SAFE, jwks_file=good)) == []
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [K1.as_dict(private=True)]}))
    assert any("private key" in p for p in production_problems(Settings(**SAFE, jwks_file=private)))
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"keys": [{**K1.as_dict(), "kid": "soc2kit-dev-x"}]}))
    assert any("development" in p for p in production_problems(Settings(**SAFE, jwks_file=dev)))


def test_static_jwks_refuses_symmetric_keys(tmp_path: Path) -> None:
    oct_set = {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}
    with pytest.raises(ConfigurationError, match="jwt_hs256_secret"):
        TokenVerifier(Settings(environment="test", data_dir=tmp_path, jwks=oct_set))
    with pytest.raises(ValueError):
        import_keys(oct_set, strict=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/jwks",
        "https://[::ffff:169.254.169.254]/jwks",
        "https://2852039166/jwks",
        "https://0xa9.0xfe.0xa9.0xfe/jwks",
        "https://0251.0376.0251.0376/jwks",
        "https://[fe80::1]/jwks",
        "https://0.0.0.0/jwks",
    ],
)
def test_metadata_address_spellings_are_refused(url: str) -> None:
    from soc2kit.authn.jwks import FetchError, fetch_json, url_problem

    assert url_problem(url, allow_loopback_http=True) is not None
    with pytest.raises(FetchError):
        fetch_json(url, allow_loopback_http=True)


def test_resolved_addresses_are_checked_for_link_local() -> None:
    # What getaddrinfo returns goes through the same link-local check. Tests
    # have no DNS they control, so a literal stands in for a hostile name.
    from soc2kit.authn.jwks import resolved_problem

    assert resolved_problem("localhost") is None  # loopback: not link-local
    assert resolved_problem("169.254.169.254") is not None
