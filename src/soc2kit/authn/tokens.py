"""Bearer-token verification with joserfc (Authlib's JOSE successor).

The checks follow RFC 8725 (JWT best current practices): an algorithm
allowlist that never admits ``none`` (HS256 only with its own secret, never in
production), keys only from configuration or the configured identity provider
(headers that carry or point at keys are refused), the algorithm bound to the
key's type, strict base64url and duplicate-free JSON, an optional ``typ``
requirement, required ``iss``/``aud``/``exp``/``sub`` with a bounded leeway,
and a size cap checked before any parsing.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, OctKey
from joserfc.jwt import JWTClaimsRegistry

from soc2kit.authn import devkeys
from soc2kit.authn.jwks import RemoteJWKS, import_keys, read_jwks_file
from soc2kit.authn.principal import Principal
from soc2kit.errors import AuthenticationError, ConfigurationError
from soc2kit.settings import Settings

log = logging.getLogger("soc2kit.authn")

_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MAX_KID_CHARS = 256
_HS256_MIN_BYTES = 32


@dataclass(frozen=True, slots=True)
class _Parsed:
    token: str
    alg: str
    kid: str | None


class TokenVerifier:
    """Verifies access tokens against the configured keys, issuer and audience.

    Keys come from the first of ``jwks``, ``jwks_file``, ``jwks_url`` and OIDC
    discovery that is configured; outside production, without any of them, from
    the generated development key. ``clock`` (wall time, for claims) and
    ``jwks_clock`` (monotonic, for the key cache) are injectable for tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        jwks_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._dev_key: ECKey | None = None
        self._static: KeySet | None = None
        self._remote: RemoteJWKS | None = None
        self.issuer = settings.oidc_issuer or devkeys.DEV_ISSUER
        self.audience = settings.oidc_audience or devkeys.DEV_AUDIENCE
        self._algorithms = list(settings.jwt_algorithms)
        self._hs_key = self._hs256_key(settings)
        self._load_keys(settings, jwks_clock)
        typ = settings.require_typ
        self._require_typ = _normal_typ(typ) if typ else None
        self._claims = JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=settings.jwt_leeway_seconds,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    def _hs256_key(self, settings: Settings) -> OctKey | None:
        hmac_algs = [a for a in self._algorithms if a.upper().startswith("HS")]
        secret = settings.jwt_hs256_secret
        if any(a != "HS256" for a in hmac_algs):
            raise ConfigurationError("of the HMAC algorithms only HS256 is supported")
        if secret is None:
            if hmac_algs:
                raise ConfigurationError("HS256 is allowed but jwt_hs256_secret is not set")
            return None
        if settings.is_production:
            raise ConfigurationError("HS256 (jwt_hs256_secret) is refused in production")
        if not hmac_algs:
            raise ConfigurationError("jwt_hs256_secret is set but HS256 is not in jwt_algorithms")
        raw = secret.get_secret_value().encode("utf-8")
        if len(raw) < _HS256_MIN_BYTES:
            raise ConfigurationError(f"jwt_hs256_secret must be at least {_HS256_MIN_BYTES} bytes")
        return OctKey.import_key(raw)

    def _load_keys(self, settings: Settings, jwks_clock: Callable[[], float]) -> None:
        sources = [
            name
            for name, value in (
                ("jwks", settings.jwks),
                ("jwks_file", settings.jwks_file),
                ("jwks_url", settings.jwks_url),
                ("oidc_discovery", settings.oidc_discovery or None),
            )
            if value is not None
        ]
        if len(sources) > 1:
            log.warning("several key sources set (%s); using %s", ", ".join(sources), sources[0])
        loopback_http = not settings.is_production
        ttl = float(settings.jwks_cache_ttl_seconds)
        if settings.jwks is not None:
            self._static = _static_keys(settings.jwks, "jwks")
        elif settings.jwks_file is not None:
            self._static = _static_keys(read_jwks_file(settings.jwks_file), "jwks_file")
        elif settings.jwks_url:
            self._remote = RemoteJWKS(
                jwks_url=settings.jwks_url,
                allow_loopback_http=loopback_http,
                ttl=ttl,
                clock=jwks_clock,
            )
        elif settings.oidc_discovery:
            if not settings.oidc_issuer:
                raise ConfigurationError("oidc_discovery needs oidc_issuer")
            self._remote = RemoteJWKS(
                issuer=settings.oidc_issuer,
                allow_loopback_http=loopback_http,
                ttl=ttl,
                clock=jwks_clock,
            )
        elif settings.is_production:
            raise ConfigurationError("no token signing keys configured")
        else:
            self._dev_key = devkeys.load_or_create(settings)
            self._static = KeySet.import_key_set(devkeys.public_jwks(self._dev_key))  # type: ignore[arg-type]

    @property
    def dev_key(self) -> ECKey | None:
        """The development signing key, when no real keys are configured."""
        return self._dev_key

    @property
    def key_generation(self) -> int:
        """Changes when the remote key set changes; cached verifications end with it."""
        return self._remote.generation if self._remote is not None else 0

    # verification ------------------------------------------------------------------
    def verify(self, token: str) -> Principal:
        """Return the principal for ``token`` or raise :class:`AuthenticationError`.

        May fetch remote keys (blocking); from async code use :meth:`averify`.
        """
        return self._finish(self._parse(token), fetch=True)

    async def averify(self, token: str) -> Principal:
        """:meth:`verify` for async code: a key fetch runs in a worker thread.

        Only the one request that claims a due fetch (no keys yet, TTL over,
        or an unknown ``kid`` outside the refetch interval) leaves the event
        loop; all others, also while that fetch runs, verify inline against the
        keys at hand, so a flood cannot tie up the worker threads.
        """
        parsed = self._parse(token)
        remote = self._remote
        if (
            remote is not None
            and parsed.alg != "HS256"
            and remote.claim(self._lookup(parsed) is not None)
        ):
            await anyio.to_thread.run_sync(remote.fetch_claimed)
        return self._finish(parsed, fetch=False)

    def _parse(self, token: str) -> _Parsed:
        """Every check that needs no key: size, shape, header."""
        if len(token) > self._settings.jwt_max_bytes:
            raise AuthenticationError("token too large")
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthenticationError("not a compact JWS")
        if not all(_SEGMENT.fullmatch(p) and len(p) % 4 != 1 for p in parts):
            raise AuthenticationError("malformed base64url segment")
        header = _decode_header(parts[0])
        if header.keys() & _KEY_HEADERS:
            raise AuthenticationError("key-carrying header refused")
        if "crit" in header:
            raise AuthenticationError("unsupported critical header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthenticationError("algorithm not allowed")
        if self._require_typ is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _normal_typ(typ) != self._require_typ:
                raise AuthenticationError("token type not accepted")
        kid = header.get("kid")
        if kid is not None and (
            not isinstance(kid, str)
            or not kid
            or len(kid) > _MAX_KID_CHARS
            or not kid.isprintable()
        ):
            raise AuthenticationError("malformed kid")
        return _Parsed(token, alg, kid)

    def _lookup(self, parsed: _Parsed) -> Key | None:
        """The key for ``parsed`` among the keys held now (no I/O)."""
        if parsed.alg == "HS256":
            return self._hs_key
        keys = self._static if self._remote is None else self._remote.keys()
        if keys is None:
            return None
        candidates = [
            k
            for k in keys
            if (parsed.kid is None or k.kid == parsed.kid) and k.get("alg") in (None, parsed.alg)
        ]
        if parsed.kid is None and len(candidates) != 1:
            return None  # without a kid, only an unambiguous key set will do
        return candidates[0] if candidates else None

    def _finish(self, parsed: _Parsed, *, fetch: bool) -> Principal:
        key = self._lookup(parsed)
        remote = self._remote
        if (
            fetch
            and remote is not None
            and parsed.alg != "HS256"
            and remote.refresh(key is not None)
        ):
            key = self._lookup(parsed)
        if key is None:
            raise AuthenticationError("no key for this kid")
        try:
            decoded = jwt.decode(
                parsed.token, key, algorithms=[parsed.alg], decoder_cls=_StrictJSONDecoder
            )
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise AuthenticationError(
                f"signature or format invalid ({type(exc).__name__})"
            ) from None
        claims = decoded.claims
        try:
            self._claims.validate(claims)
        except JoseError as exc:
            raise AuthenticationError(f"claims rejected ({type(exc).__name__})") from None
        iat = claims.get("iat")
        if iat is not None and (
            not isinstance(iat, int | float)
            or iat > int(self._clock()) + self._settings.jwt_leeway_seconds
        ):
            raise AuthenticationError("iat in the future")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("sub missing")
        exp = claims.get("exp")
        return Principal(
            subject=subject,
            issuer=self.issuer,
            roles=frozenset(_strings(claims.get(self._settings.roles_claim))),
            tenant=_opt_str(claims.get(self._settings.tenant_claim)),
            auth_method="oidc",
            token_id=_opt_str(claims.get("jti")),
            scopes=frozenset(_strings(claims.get("scope", claims.get("scp")))),
            expires_at=int(exp) if isinstance(exp, int | float) else None,
        )

    def mint_dev_token(
        self,
        subject: str,
        roles: list[str] | tuple[str, ...] = (),
        *,
        ttl_seconds: int = 3600,
        tenant: str | None = None,
    ) -> str:
        """Sign a token with the development key (refused when real keys are configured)."""
        if self._dev_key is None or self._settings.is_production:
            raise ConfigurationError("development tokens need the development keyring")
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            self._settings.roles_claim: list(roles),
        }
        if tenant is not None:
            claims[self._settings.tenant_claim] = tenant
        header = {"alg": "ES256", "kid": self._dev_key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self._dev_key, algorithms=["ES256"])


def _static_keys(document: dict[str, Any], source: str) -> KeySet:
    try:
        return import_keys(document, strict=False)
    except ValueError as exc:
        raise ConfigurationError(f"{source} {exc}") from None


def _normal_typ(value: str) -> str:
    # RFC 7515 4.1.9: media types compare case-insensitively, "application/" may be omitted.
    lowered = value.strip().lower()
    return lowered.removeprefix("application/")


def _decode_header(segment: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise AuthenticationError("malformed header") from exc
    if not isinstance(header, dict):
        raise AuthenticationError("malformed header")
    return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate JSON key")
    return dict(pairs)


class _StrictJSONDecoder(json.JSONDecoder):
    """Claims with a repeated name are refused: parsers disagree on which one wins."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["object_pairs_hook"] = _no_duplicates
        super().__init__(**kwargs)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.split() if v]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
