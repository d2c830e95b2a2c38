"""Who is calling: one place that turns a request's headers into a Principal.

Bearer JWTs go through the :class:`TokenVerifier` behind a verified-token
cache; API keys (``Authorization: Bearer s2k_...`` or ``X-API-Key``) through
the :class:`ApiKeyStore`. Whatever the path, and whether the token came from
the cache or not, the revocation hook is asked on every request, so revoking
a principal takes effect on its next request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.to_thread
from starlette.datastructures import Headers

from soc2kit.authn.apikeys import ApiKeyStore
from soc2kit.authn.cache import VerifiedTokenCache
from soc2kit.authn.credentials import Credential, CredentialRejected, extract_credential
from soc2kit.authn.principal import Principal
from soc2kit.authn.tokens import TokenVerifier
from soc2kit.errors import AuthenticationError

log = logging.getLogger("soc2kit.authn")


class Authenticator:
    """Authenticates request headers; raises NoCredentialsError or CredentialRejected.

    ``is_revoked(subject)`` is called inline on every request (also from the
    event loop), so it must be fast and non-blocking, as ``Policy.is_revoked``
    (an in-memory lookup) is. If it raises, the request is refused.
    """

    def __init__(
        self,
        tokens: TokenVerifier,
        api_keys: ApiKeyStore | None,
        *,
        is_revoked: Callable[[str], bool],
        cache: VerifiedTokenCache | None = None,
    ) -> None:
        self.tokens = tokens
        self.api_keys = api_keys
        self.cache = cache if cache is not None else VerifiedTokenCache()
        self._is_revoked = is_revoked

    def authenticate(self, headers: Headers) -> Principal:
        """Blocking variant (may fetch keys, reads the API key table)."""
        credential = extract_credential(headers)
        if credential.kind == "api_key":
            principal = self._api_keys().verify(credential.value)
        else:
            principal = self._cached(credential) or self._remember(
                credential, self._verify(credential.value)
            )
        return self._check_revoked(principal)

    async def aauthenticate(self, headers: Headers) -> Principal:
        """For the event loop: blocking work (key fetches, the API key table) runs in a thread."""
        credential = extract_credential(headers)
        if credential.kind == "api_key":
            return self._check_revoked(
                await anyio.to_thread.run_sync(self._api_keys().verify, credential.value)
            )
        cached = self._cached(credential)
        if cached is not None:
            return self._check_revoked(cached)
        try:
            verified = await self.tokens.averify(credential.value)
        except CredentialRejected:
            raise
        except AuthenticationError as exc:
            raise CredentialRejected(exc.reason, auth_method="oidc") from None
        return self._check_revoked(self._remember(credential, verified))

    def _verify(self, token: str) -> Principal:
        try:
            return self.tokens.verify(token)
        except CredentialRejected:
            raise
        except AuthenticationError as exc:
            raise CredentialRejected(exc.reason, auth_method="oidc") from None

    def _cached(self, credential: Credential) -> Principal | None:
        return self.cache.get(credential.value, self.tokens.key_generation)

    def _remember(self, credential: Credential, principal: Principal) -> Principal:
        self.cache.put(credential.value, principal, self.tokens.key_generation)
        return principal

    def _api_keys(self) -> ApiKeyStore:
        if self.api_keys is None:
            raise CredentialRejected("API keys are not enabled", auth_method="api_key")
        return self.api_keys

    def _check_revoked(self, principal: Principal) -> Principal:
        try:
            revoked = self._is_revoked(principal.subject)
        except Exception as exc:  # fail closed: an unknown answer is a no
            log.warning("revocation check failed (%s)", type(exc).__name__)
            raise CredentialRejected(
                "revocation check failed",
                auth_method=principal.auth_method,
                subject=principal.subject,
            ) from None
        if revoked:
            raise CredentialRejected(
                "principal revoked",
                auth_method=principal.auth_method,
                subject=principal.subject,
                credential_id=principal.token_id if principal.auth_method == "api_key" else None,
            )
        return principal
