"""Configuration: one pydantic-settings model, every field with a safe default.

Values come from keyword arguments, then ``SOC2KIT_*`` environment variables,
then a ``.env`` file. Whether a configuration is safe for production is a
separate question answered by :func:`production_problems`, so development
stays frictionless while production refuses to start on anything unsafe.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import limits
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Environment = Literal["development", "test", "production"]


class DocsKwargs(TypedDict):
    """``FastAPI(**settings.fastapi_docs_kwargs())`` type-checks under mypy --strict."""

    docs_url: str | None
    redoc_url: str | None
    openapi_url: str | None


ClientIpPolicy = Literal["full", "truncated", "hmac"]

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]", "testserver")
DEV_KEY_ID_PREFIX = "soc2kit-dev-"
"""Key ids of generated development signing keys start with this; production refuses them."""

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")


def _split_csv(value: Any) -> Any:
    # Environment variables carry lists as "a,b,c" (or JSON, handled by pydantic).
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """soc2kit settings (environment prefix ``SOC2KIT_``). See docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="SOC2KIT_",
        env_file=".env",
        env_file_encoding="utf-8",
        # A .env shared with the application may hold other variables: read
        # only SOC2KIT_* lines from it; unknown keyword arguments stay errors.
        dotenv_filtering="match_prefix",
        extra="forbid",
        frozen=True,
    )

    environment: Environment = "development"
    service_name: str = Field(default="soc2kit-service", min_length=1, max_length=100)
    data_dir: Path = Path(".soc2kit")
    database_url: str = "sqlite:///./.soc2kit/app.db"
    auto_migrate: bool | None = None

    # Identity (verification lives in soc2kit.authn).
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None
    oidc_discovery: bool = False
    jwks_cache_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    jwt_algorithms: CsvList = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    jwt_hs256_secret: SecretStr | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwt_max_bytes: int = Field(default=8192, ge=512, le=65536)
    require_typ: str | None = Field(default=None, min_length=1, max_length=100)
    roles_claim: str = "roles"
    tenant_claim: str = "tenant"
    api_key_pepper: SecretStr | None = None

    # Access policy.
    policy_poll_seconds: float = Field(default=5.0, gt=0, le=300)
    policy_max_staleness_seconds: float = Field(default=60.0, gt=0, le=3600)
    break_glass_max_ttl_seconds: int = Field(default=4 * 3600, ge=60, le=7 * 86400)
    object_denied_status: int = 404

    # HTTP.
    allowed_hosts: CsvList = Field(default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS))
    cors_origins: CsvList = Field(default_factory=list)
    cors_allow_credentials: bool = False
    cors_allow_methods: CsvList = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE"]
    )
    cors_allow_headers: CsvList = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-Request-ID"]
    )
    cors_max_age: int = Field(default=600, ge=0, le=86400)
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)
    rate_limit: str = "100/minute"
    rate_limit_enabled: bool = True
    rate_limit_storage_url: str = "memory://"
    rate_limit_strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = (
        "moving-window"
    )
    docs_enabled: bool | None = None
    trusted_proxies: CsvList = Field(default_factory=list)
    https_only: bool | None = None
    hsts_max_age: int = Field(default=63072000, ge=0)
    security_headers: dict[str, str] = Field(default_factory=dict)
    request_id_header: str = "X-Request-ID"

    # Audit.
    audit_client_ip: ClientIpPolicy = "truncated"
    audit_ip_hmac_key: SecretStr | None = None
    audit_max_field_chars: int = Field(default=2048, ge=64, le=65536)
    audit_queue_size: int = Field(default=10_000, ge=1)
    audit_log_events: bool = True
    # Sealed log: Ed25519 checkpoint signing key and the anchor store.
    audit_signing_key: SecretStr | None = None  # base64url 32-byte Ed25519 private key
    audit_signing_key_name: str | None = None  # defaults to service_name
    audit_signing_key_file: Path | None = None  # {"name": ..., "key": ...}
    audit_anchor_dir: Path | None = None  # outside production: <data_dir>/audit-anchors
    # Or an S3 bucket with Object Lock (the aws extra): compliance-mode retention.
    audit_anchor_s3_bucket: str | None = None
    audit_anchor_s3_prefix: str = "soc2kit/checkpoints/"
    audit_anchor_s3_retention_days: int = Field(default=2555, ge=1, le=36500)
    audit_anchor_s3_region: str | None = None
    audit_anchor_s3_endpoint_url: str | None = None
    audit_log_origin: str | None = None  # defaults to "<service_name>/audit"
    audit_seal_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    audit_checkpoint_interval_seconds: float = Field(default=60.0, gt=0, le=86400)
    audit_checkpoint_every: int = Field(default=10_000, ge=1)
    audit_heartbeat_seconds: float = Field(default=300.0, gt=0, le=86400)
    audit_max_checkpoint_age_seconds: float = Field(default=900.0, gt=0)

    # Tracing (soc2kit.tracing): OpenTelemetry server spans, off unless enabled.
    tracing_enabled: bool = False
    otlp_endpoint: str | None = None  # e.g. https://collector:4318 (the otlp extra)
    tracing_enduser: Literal["off", "pseudonym", "id"] = "pseudonym"
    tracing_pseudonym_key: SecretStr | None = None
    tracing_exclude_paths: CsvList = Field(default_factory=lambda: ["/healthz", "/readyz"])
    tracing_trust_traceparent: bool = True
    tracing_record_path: bool = False
    # Security metrics (soc2kit.tracing.metrics): exported over OTLP to otlp_endpoint.
    metrics_enabled: bool = False
    metrics_export_interval_seconds: float = Field(default=60.0, ge=1, le=3600)

    # Field encryption (soc2kit.crypto): where the key-encryption key lives.
    encryption_kek: SecretStr | None = None  # "kek-id:base64url[,old-id:base64url...]"
    encryption_kek_file: Path | None = None
    encryption_kms_key_id: str | None = None  # AWS KMS key id, ARN or alias
    encryption_kms_region: str | None = None
    encryption_kms_endpoint_url: str | None = None
    # Key ids/ARNs whose wrapped keys are accepted (empty: any key KMS lets us use).
    encryption_kms_allowed_key_ids: CsvList = Field(default_factory=list)
    encryption_key_cache_ttl_seconds: float = Field(default=3600.0, gt=0, le=86400)
    encryption_key_cache_max_uses: int = Field(default=50_000_000, ge=1)
    encryption_max_encryptions_per_key: int = Field(default=2**30, ge=1, le=2**32)
    encryption_key_max_age_days: int = Field(default=365, ge=1)
    encryption_refresh_seconds: float = Field(default=60.0, gt=0, le=3600)

    @field_validator(
        "jwt_algorithms",
        "allowed_hosts",
        "cors_origins",
        "cors_allow_methods",
        "cors_allow_headers",
        "trusted_proxies",
        "encryption_kms_allowed_key_ids",
        "tracing_exclude_paths",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_none_alg(cls, value: list[str]) -> list[str]:
        if any(alg.lower() == "none" for alg in value):
            raise ValueError("the 'none' algorithm is never allowed")
        if not value:
            raise ValueError("at least one JWT algorithm is required")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate(cls, value: str) -> str:
        try:
            limits.parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '100/minute': {value!r}") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _parse_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {item!r}") from exc
        return value

    @field_validator("object_denied_status")
    @classmethod
    def _denied_status(cls, value: int) -> int:
        if value not in (403, 404):
            raise ValueError("object_denied_status is 403 or 404")
        return value

    @model_validator(mode="after")
    def _poll_within_staleness(self) -> Settings:
        if self.policy_poll_seconds >= self.policy_max_staleness_seconds:
            # Otherwise every decision between two polls would be refused as stale.
            raise ValueError("policy_poll_seconds must be below policy_max_staleness_seconds")
        return self

    @field_validator("request_id_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c == "-" for c in value):
            raise ValueError("header names are letters, digits and '-'")
        return value

    # Derived values -------------------------------------------------------
    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def audit_origin(self) -> str:
        return self.audit_log_origin or f"{self.service_name}/audit"

    @property
    def audit_anchor_path(self) -> Path | None:
        """Where checkpoints are anchored; production must name it explicitly."""
        if self.audit_anchor_dir is not None:
            return self.audit_anchor_dir
        if self.is_production or self.audit_anchor_s3_bucket is not None:
            return None
        return self.data_dir / "audit-anchors"

    @property
    def docs_active(self) -> bool:
        """Interactive API docs are on outside production unless turned off explicitly."""
        if self.docs_enabled is None:
            return not self.is_production
        return self.docs_enabled

    @property
    def migrate_on_install(self) -> bool:
        """Outside production, soc2kit's tables are created or upgraded by install()."""
        return not self.is_production if self.auto_migrate is None else self.auto_migrate

    @property
    def https_required(self) -> bool:
        return self.is_production if self.https_only is None else self.https_only

    def fastapi_docs_kwargs(self) -> DocsKwargs:
        """Arguments for ``FastAPI(...)`` that publish docs only when they are on."""
        if self.docs_active:
            return {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}
        return {"docs_url": None, "redoc_url": None, "openapi_url": None}


_PRIVATE_JWK_PARAMS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
_MIN_HSTS = 31536000  # one year: the floor browsers' preload lists accept


def _override(settings: Settings, header: str) -> str | None:
    """The security_headers override for ``header`` (names are case-insensitive)."""
    for name, value in settings.security_headers.items():
        if name.lower() == header.lower():
            return value
    return None


def _jwks_problems(jwks: dict[str, Any], source: str) -> list[str]:
    problems: list[str] = []
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    if not keys:
        problems.append(f"{source} holds no keys")
    if any(str(k.get("kid", "")).startswith(DEV_KEY_ID_PREFIX) for k in keys):
        problems.append("development signing keys are in use (kid soc2kit-dev-*)")
    if any(k.get("kty") == "oct" for k in keys):
        problems.append(f"a symmetric (oct) key is in {source}: HS256 is not allowed in production")
    if any(_PRIVATE_JWK_PARAMS & k.keys() for k in keys):
        problems.append(f"{source} holds private key material: configure public keys only")
    return problems


def production_problems(settings: Settings, app: Any = None) -> list[str]:
    """Every reason ``settings`` (and ``app``, when given) is unsafe for production.

    Empty means no problem was found. These are configuration checks only;
    they say nothing about the application's own code.
    """
    problems: list[str] = []
    if not settings.oidc_issuer:
        problems.append("oidc_issuer is not set: tokens cannot be tied to an identity provider")
    elif not settings.oidc_issuer.startswith("https://"):
        problems.append("oidc_issuer must use https")
    if not settings.oidc_audience:
        problems.append("oidc_audience is not set: tokens minted for other services would pass")
    if settings.jwks is not None:
        problems += _jwks_problems(settings.jwks, "jwks")
    elif settings.jwks_file is not None:
        from soc2kit.authn.jwks import read_jwks_file  # soc2kit.authn imports this module
        from soc2kit.errors import ConfigurationError

        try:
            problems += _jwks_problems(read_jwks_file(settings.jwks_file), "jwks_file")
        except ConfigurationError as exc:
            problems.append(str(exc))
    elif not settings.jwks_url and not settings.oidc_discovery:
        problems.append(
            "no signing keys: set jwks, jwks_file, jwks_url or oidc_discovery "
            "to the identity provider's public keys"
        )
    if settings.jwks_url and not settings.jwks_url.startswith("https://"):
        problems.append("jwks_url must use https")
    if any(alg.upper().startswith("HS") for alg in settings.jwt_algorithms):
        problems.append("HMAC JWT algorithms (HS*) are not allowed in production")
    if settings.jwt_hs256_secret is not None:
        problems.append("jwt_hs256_secret is set: HS256 is not allowed in production")
    pepper = settings.api_key_pepper
    if pepper is None or len(pepper.get_secret_value().encode()) < 32:
        # The pepper is what stops anyone who can write the key table from minting a key.
        problems.append("api_key_pepper is not set or shorter than 32 bytes")
    if "*" in settings.cors_origins:
        if settings.cors_allow_credentials:
            problems.append("wildcard CORS origin '*' together with credentials")
        else:
            problems.append("wildcard CORS origin '*': list the allowed origins explicitly")
    insecure_origins = [o for o in settings.cors_origins if o.startswith("http://")]
    if insecure_origins:
        problems.append(f"CORS origins without https: {', '.join(insecure_origins)}")
    if not settings.allowed_hosts or "*" in settings.allowed_hosts:
        problems.append("allowed_hosts is empty or '*': set the public host names")
    elif set(settings.allowed_hosts) <= set(DEFAULT_ALLOWED_HOSTS):
        problems.append("allowed_hosts holds only the development defaults")
    wide = [
        p for p in settings.trusted_proxies if ipaddress.ip_network(p, strict=False).prefixlen < 8
    ]
    if wide:
        problems.append(
            f"trusted_proxies trusts whole internet ranges ({', '.join(wide)}): any client "
            "could forge its address and scheme"
        )
    if settings.database_url.startswith("sqlite"):
        problems.append("SQLite database in production: use PostgreSQL")
    if not settings.https_required:
        problems.append("https_only is turned off")
    elif _override(settings, "Strict-Transport-Security") == "":
        problems.append("Strict-Transport-Security is removed by security_headers")
    elif settings.hsts_max_age < _MIN_HSTS:
        problems.append(f"hsts_max_age below one year ({settings.hsts_max_age}s)")
    csp = _override(settings, "Content-Security-Policy")
    if csp == "":
        problems.append("Content-Security-Policy is removed by security_headers")
    elif csp is not None and "frame-ancestors" not in csp:
        problems.append("the Content-Security-Policy override drops frame-ancestors")
    if not settings.rate_limit_enabled:
        problems.append("rate limiting is turned off")
    if settings.auto_migrate:
        problems.append("auto_migrate is on: run `soc2kit db upgrade` as a reviewed deploy step")
    if settings.audit_client_ip == "hmac":
        key = settings.audit_ip_hmac_key
        if key is None or len(key.get_secret_value()) < 32:
            # A short or missing pepper makes IP pseudonyms brute-forceable.
            problems.append("audit_client_ip='hmac' needs audit_ip_hmac_key of 32+ characters")
    problems += _encryption_problems(settings)
    if settings.audit_signing_key is None and settings.audit_signing_key_file is None:
        problems.append(
            "no audit signing key: set audit_signing_key or audit_signing_key_file "
            "(checkpoints of the audit log must be signed by a key kept out of the database)"
        )
    elif settings.audit_signing_key_file is not None and settings.audit_signing_key_file.name == (
        "dev-audit-signing-key.json"
    ):
        problems.append("audit_signing_key_file is the generated development key")
    if settings.tracing_enabled or settings.metrics_enabled:
        endpoint = settings.otlp_endpoint
        if endpoint is not None and not endpoint.startswith("https://"):
            problems.append("otlp_endpoint must use https")
    if settings.tracing_enabled:
        key = settings.tracing_pseudonym_key
        if settings.tracing_enduser == "pseudonym" and (
            key is None or len(key.get_secret_value()) < 32
        ):
            problems.append("tracing_enduser='pseudonym' needs tracing_pseudonym_key of 32+ chars")
    if settings.audit_anchor_dir is None and settings.audit_anchor_s3_bucket is None:
        problems.append(
            "neither audit_anchor_dir nor audit_anchor_s3_bucket is set: checkpoints need an "
            "anchor store outside the database"
        )
    if settings.audit_anchor_dir is not None and settings.audit_anchor_s3_bucket is not None:
        problems.append("both audit_anchor_dir and audit_anchor_s3_bucket are set: choose one")
    s3_endpoint = settings.audit_anchor_s3_endpoint_url
    if s3_endpoint is not None and not s3_endpoint.startswith("https://"):
        problems.append("audit_anchor_s3_endpoint_url must use https")
    if (
        settings.docs_enabled is None
        and app is not None
        and any(getattr(app, attr, None) for attr in ("docs_url", "redoc_url", "openapi_url"))
    ):
        problems.append(
            "API docs are served without explicit opt-in: build the app with "
            "FastAPI(**settings.fastapi_docs_kwargs()) or set SOC2KIT_DOCS_ENABLED"
        )
    return problems


def _encryption_problems(settings: Settings) -> list[str]:
    sources = [
        name
        for name in ("encryption_kek", "encryption_kek_file", "encryption_kms_key_id")
        if getattr(settings, name) is not None
    ]
    if not sources:
        return [
            "no key-encryption key: set encryption_kek, encryption_kek_file or "
            "encryption_kms_key_id (the generated development keyring is refused)"
        ]
    problems: list[str] = []
    if len(sources) > 1:
        problems.append(f"several key-encryption key sources are set: {', '.join(sources)}")
    from soc2kit.crypto.providers import DEV_KEK_FILE, DEV_KEK_PREFIX  # avoids an import cycle

    if settings.encryption_kek is not None and any(
        part.strip().startswith(DEV_KEK_PREFIX)
        for part in settings.encryption_kek.get_secret_value().split(",")
    ):
        problems.append("a development key-encryption key (soc2kit-dev-*) is configured")
    if settings.encryption_kek_file is not None and settings.encryption_kek_file.name == (
        DEV_KEK_FILE
    ):
        problems.append("encryption_kek_file is the generated development KEK")
    endpoint = settings.encryption_kms_endpoint_url
    if endpoint is not None and not endpoint.startswith("https://"):
        problems.append("encryption_kms_endpoint_url must use https")
    return problems
