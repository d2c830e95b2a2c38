"""Settings parsing and the production guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

import soc2kit
from soc2kit.settings import Settings, production_problems

SAFE_PRODUCTION = {
    "environment": "production",
    "oidc_issuer": "https://id.example.com/",
    "oidc_audience": "api://invoices",
    "jwks": {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "kid": "k1",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }
        ]
    },
    "allowed_hosts": ["api.example.com"],
    "database_url": "postgresql://app@db.example.com/app",
    "api_key_pepper": "pepper-for-tests-0123456789abcdef",
    "encryption_kek": "kek-test-1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    "audit_signing_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "audit_anchor_dir": "/var/lib/app/audit-anchors",
}


def test_defaults_are_safe_outside_production() -> None:
    s = Settings()
    assert s.environment == "development"
    assert s.max_body_bytes == 1024 * 1024
    assert s.rate_limit == "100/minute"
    assert s.docs_active is True
    assert s.https_required is False
    assert s.cors_origins == []


def test_production_derives_docs_off_and_https_on() -> None:
    s = Settings(**SAFE_PRODUCTION)
    assert s.docs_active is False
    assert s.https_required is True
    assert production_problems(s) == []


def test_env_vars_with_prefix_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOC2KIT_ALLOWED_HOSTS", "a.example.com, b.example.com")
    monkeypatch.setenv("SOC2KIT_CORS_ORIGINS", '["https://app.example.com"]')
    monkeypatch.setenv("SOC2KIT_MAX_BODY_BYTES", "2048")
    s = Settings()
    assert s.allowed_hosts == ["a.example.com", "b.example.com"]
    assert s.cors_origins == ["https://app.example.com"]
    assert s.max_body_bytes == 2048


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("environment", "staging"),
        ("rate_limit", "lots"),
        ("jwt_algorithms", ["none"]),
        ("jwt_algorithms", ["RS256", "NONE"]),
        ("trusted_proxies", ["not-an-ip"]),
        ("max_body_bytes", -1),
        ("request_id_header", "X Bad"),
        ("unknown_setting", 1),
    ],
)
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def test_hmac_ip_policy_needs_a_long_key_in_production() -> None:
    for key in (None, "short"):
        problems = production_problems(
            Settings(**SAFE_PRODUCTION, audit_client_ip="hmac", audit_ip_hmac_key=key)
        )
        assert any("audit_ip_hmac_key" in p for p in problems)
    ok = Settings(**SAFE_PRODUCTION, audit_client_ip="hmac", audit_ip_hmac_key="k" * 32)
    assert production_problems(ok) == []


def test_dotenv_lines_of_the_application_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("APP_SECRET=abc\nSOC2KIT_SERVICE_NAME=from-dotenv\n")
    assert Settings().service_name == "from-dotenv"


def test_unknown_keyword_settings_stay_errors() -> None:
    with pytest.raises(ValidationError):
        Settings(alowed_hosts=["typo.example.com"])  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"oidc_issuer": None}, "oidc_issuer"),
        ({"oidc_audience": None}, "oidc_audience"),
        ({"jwks": None}, "no signing keys"),
        ({"jwks": {"keys": [{"kty": "EC", "kid": "soc2kit-dev-abc"}]}}, "development signing keys"),
        ({"jwks": {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}}, "symmetric"),
        ({"jwks": None, "jwks_url": "http://id.example.com/jwks"}, "jwks_url must use https"),
        ({"jwks_url": "http://127.0.0.1/jwks"}, "jwks_url must use https"),
        ({"jwks": None, "jwks_file": "/nonexistent/jwks.json"}, "jwks_file cannot be read"),
        ({"jwt_hs256_secret": "s" * 32}, "jwt_hs256_secret"),
        ({"api_key_pepper": None}, "api_key_pepper"),
        ({"api_key_pepper": "short"}, "api_key_pepper"),
        ({"jwks": {"keys": []}}, "no keys"),
        ({"jwks": {"keys": [{"kty": "EC", "kid": "k", "d": "secret"}]}}, "private key"),
        ({"trusted_proxies": ["0.0.0.0/0"]}, "trusted_proxies"),
        ({"trusted_proxies": ["::/0"]}, "trusted_proxies"),
        ({"hsts_max_age": 300}, "hsts_max_age"),
        ({"security_headers": {"strict-transport-security": ""}}, "Strict-Transport-Security"),
        ({"security_headers": {"content-security-policy": ""}}, "Content-Security-Policy"),
        ({"security_headers": {"Content-Security-Policy": "default-src *"}}, "frame-ancestors"),
        ({"oidc_issuer": "http://id.example.com/"}, "oidc_issuer must use https"),
        ({"jwt_algorithms": ["HS256"]}, "HMAC"),
        ({"cors_origins": ["*"], "cors_allow_credentials": True}, "credentials"),
        ({"cors_origins": ["*"]}, "wildcard CORS"),
        ({"cors_origins": ["http://app.example.com"]}, "without https"),
        ({"allowed_hosts": []}, "allowed_hosts"),
        ({"allowed_hosts": ["*"]}, "allowed_hosts"),
        ({"allowed_hosts": ["localhost"]}, "development defaults"),
        ({"database_url": "sqlite:///prod.db"}, "SQLite"),
        ({"https_only": False}, "https_only"),
        ({"rate_limit_enabled": False}, "rate limiting"),
        ({"security_headers": {"Strict-Transport-Security": ""}}, "Strict-Transport-Security"),
        ({"security_headers": {"Content-Security-Policy": ""}}, "Content-Security-Policy"),
        ({"encryption_kek": None}, "no key-encryption key"),
        (
            {
                "tracing_enabled": True,
                "otlp_endpoint": "http://collector:4318",
                "tracing_pseudonym_key": "k" * 32,
            },
            "otlp_endpoint must use https",
        ),
        ({"tracing_enabled": True}, "tracing_pseudonym_key"),
        ({"audit_anchor_dir": None}, "neither audit_anchor_dir nor audit_anchor_s3_bucket"),
        (
            {"audit_anchor_s3_bucket": "evidence"},
            "both audit_anchor_dir and audit_anchor_s3_bucket",
        ),
        (
            {
                "audit_anchor_dir": None,
                "audit_anchor_s3_bucket": "evidence",
                "audit_anchor_s3_endpoint_url": "http://127.0.0.1:9000",
            },
            "audit_anchor_s3_endpoint_url must use https",
        ),
        ({"audit_signing_key": None}, "no audit signing key"),
        ({"encryption_kms_key_id": "alias/app"}, "several key-encryption key sources"),
        (
            {"encryption_kek": "soc2kit-dev-1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"},
            "development key-encryption key",
        ),
        ({"encryption_kek_file": "/srv/.soc2kit/dev-kek.json"}, "development KEK"),
        (
            {
                "encryption_kek": None,
                "encryption_kms_key_id": "alias/app",
                "encryption_kms_endpoint_url": "http://127.0.0.1:5000",
            },
            "encryption_kms_endpoint_url must use https",
        ),
    ],
)
def test_each_production_problem_is_reported(overrides: dict[str, object], needle: str) -> None:
    problems = production_problems(Settings(**{**SAFE_PRODUCTION, **overrides}))
    assert any(needle in p for p in problems), problems


def test_docs_served_without_opt_in_is_a_problem() -> None:
    s = Settings(**SAFE_PRODUCTION)
    assert any("docs" in p for p in production_problems(s, FastAPI()))
    assert production_problems(s, FastAPI(**s.fastapi_docs_kwargs())) == []
    opted_in = Settings(**SAFE_PRODUCTION, docs_enabled=True)
    assert production_problems(opted_in, FastAPI()) == []
    # Explicitly off: the docs gate answers 404, so nothing is served.
    assert production_problems(Settings(**SAFE_PRODUCTION, docs_enabled=False), FastAPI()) == []


def test_safe_proxy_ranges_pass() -> None:
    s = Settings(**SAFE_PRODUCTION, trusted_proxies=["10.0.0.0/8", "192.168.1.7"])
    assert production_problems(s) == []


def test_install_in_production_lists_every_problem_at_once(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path)
    with pytest.raises(soc2kit.InsecureConfigurationError) as info:
        soc2kit.install(FastAPI(), settings)
    problems = info.value.problems
    assert len(problems) >= 5
    text = str(info.value)
    for needle in ("oidc_issuer", "oidc_audience", "signing keys", "SQLite", "docs"):
        assert needle in text


def test_insecure_configuration_error_is_a_soc2kit_error() -> None:
    assert issubclass(soc2kit.InsecureConfigurationError, soc2kit.ConfigurationError)
    assert issubclass(soc2kit.ConfigurationError, soc2kit.Soc2kitError)
