"""Authentication: who is calling (bearer JWTs from the identity provider, or API keys)."""

from soc2kit.authn.apikeys import ApiKeyInfo, ApiKeyStore
from soc2kit.authn.authenticator import Authenticator
from soc2kit.authn.cache import VerifiedTokenCache
from soc2kit.authn.credentials import CredentialRejected, NoCredentialsError
from soc2kit.authn.principal import AuthMethod, Principal
from soc2kit.authn.tokens import TokenVerifier

__all__ = [
    "ApiKeyInfo",
    "ApiKeyStore",
    "AuthMethod",
    "Authenticator",
    "CredentialRejected",
    "NoCredentialsError",
    "Principal",
    "TokenVerifier",
    "VerifiedTokenCache",
]
