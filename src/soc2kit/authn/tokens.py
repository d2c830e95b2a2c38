"""Bearer-token verification with joserfc (Authlib's JOSE successor).

The checks follow RFC 8725 (JWT best current practices): an algorithm
allowlist that never admits ``none``, keys only from configuration (headers
that carry or point at keys are refused), required ``iss``/``aud``/``exp``/
``sub`` with a bounded leeway, and a size cap checked before any parsing.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from soc2kit.authn import devkeys
from soc2kit.authn.principal import Principal
from soc2kit.errors import AuthenticationError, ConfigurationError
from soc2kit.settings import Settings

_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})


class TokenVerifier:
    """Verifies access tokens against the configured keys, issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._dev_key: ECKey | None = None
        if settings.jwks is not None:
            try:
                self._keys = KeySet.import_key_set(settings.jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise ConfigurationError(
                    f"jwks is not a valid JWK set ({type(exc).__name__})"
                ) from exc
        elif settings.jwks_url:
            raise ConfigurationError(
                "jwks_url is not supported by this soc2kit version yet; provide jwks"
            )
        elif settings.is_production:
            raise ConfigurationError("no token signing keys configured")
        else:
            self._dev_key = devkeys.load_or_create(settings)
            self._keys = KeySet.import_key_set(devkeys.public_jwks(self._dev_key))  # type: ignore[arg-type]
        self.issuer = settings.oidc_issuer or devkeys.DEV_ISSUER
        self.audience = settings.oidc_audience or devkeys.DEV_AUDIENCE
        self._algorithms = list(settings.jwt_algorithms)
        self._claims = JWTClaimsRegistry(
            leeway=settings.jwt_leeway_seconds,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    @property
    def dev_key(self) -> ECKey | None:
        """The development signing key, when no real keys are configured."""
        return self._dev_key

    def verify(self, token: str) -> Principal:
        """Return the principal for ``token`` or raise :class:`AuthenticationError`."""
        if len(token) > self._settings.jwt_max_bytes:
            raise AuthenticationError("token too large")
        header = _peek_header(token)
        if header.keys() & _KEY_HEADERS:
            raise AuthenticationError("key-carrying header refused")
        if "crit" in header:
            raise AuthenticationError("unsupported critical header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthenticationError("algorithm not allowed")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=self._algorithms)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise AuthenticationError(
                f"signature or format invalid ({type(exc).__name__})"
            ) from exc
        claims = decoded.claims
        try:
            self._claims.validate(claims)
        except JoseError as exc:
            raise AuthenticationError(f"claims rejected ({type(exc).__name__})") from exc
        iat = claims.get("iat")
        if iat is not None and (
            not isinstance(iat, int | float)
            or iat > time.time() + self._settings.jwt_leeway_seconds
        ):
            raise AuthenticationError("iat in the future")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("sub missing")
        return Principal(
            subject=subject,
            issuer=self.issuer,
            roles=frozenset(_strings(claims.get(self._settings.roles_claim))),
            tenant=_opt_str(claims.get(self._settings.tenant_claim)),
            auth_method="oidc",
            token_id=_opt_str(claims.get("jti")),
            scopes=frozenset(_strings(claims.get("scope", claims.get("scp")))),
            expires_at=int(claims["exp"]) if isinstance(claims.get("exp"), int | float) else None,
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
        now = int(time.time())
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


def _peek_header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthenticationError("not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthenticationError("malformed header") from exc
    if not isinstance(header, dict):
        raise AuthenticationError("malformed header")
    return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate JSON key")
    return dict(pairs)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.split() if v]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
