"""Reading the credential of a request: a bearer JWT or an API key, from headers only.

Query strings and bodies are never read (tokens there end up in access logs
and browser history). Ambiguity is refused rather than resolved: two
``Authorization`` headers, or an ``Authorization`` and an ``X-API-Key`` header
together, are rejected, so no precedence rule can be played against another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.datastructures import Headers

from soc2kit.authn.principal import AuthMethod
from soc2kit.errors import AuthenticationError

API_KEY_PREFIX = "s2k_"
"""Every soc2kit API key starts with this, so secret scanners can find leaked ones."""

API_KEY_HEADER = "x-api-key"


class NoCredentialsError(AuthenticationError):
    """The request carried no credential at all (401 with a bare ``WWW-Authenticate``)."""

    def __init__(self) -> None:
        super().__init__("no credentials")


class CredentialRejected(AuthenticationError):
    """A credential was presented and refused.

    ``reason`` and the optional context are for the audit trail only; clients
    see ``invalid_token``. None of them ever holds the credential itself:
    ``credential_id`` is the public id of an API key, never its secret.
    """

    def __init__(
        self,
        reason: str,
        *,
        auth_method: AuthMethod | None = None,
        subject: str | None = None,
        credential_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.auth_method = auth_method
        self.subject = subject
        self.credential_id = credential_id


@dataclass(frozen=True, slots=True)
class Credential:
    """What the request presented; ``value`` is kept out of ``repr``."""

    kind: Literal["bearer", "api_key"]
    value: str = field(repr=False)


def extract_credential(headers: Headers) -> Credential:
    """The request's one credential; raises NoCredentialsError or CredentialRejected."""
    authorization = headers.getlist("authorization")
    api_keys = headers.getlist(API_KEY_HEADER)
    if not authorization and not api_keys:
        raise NoCredentialsError()
    if len(authorization) > 1:
        raise CredentialRejected("multiple Authorization headers")
    if len(api_keys) > 1:
        raise CredentialRejected("multiple X-API-Key headers", auth_method="api_key")
    if authorization and api_keys:
        raise CredentialRejected("both Authorization and X-API-Key headers")
    if api_keys:
        key = api_keys[0].strip()
        if not key.startswith(API_KEY_PREFIX) or any(c.isspace() for c in key):
            raise CredentialRejected("malformed API key", auth_method="api_key")
        return Credential("api_key", key)
    scheme, _, rest = authorization[0].partition(" ")
    token = rest.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        raise CredentialRejected("not a bearer credential")
    return Credential("api_key" if token.startswith(API_KEY_PREFIX) else "bearer", token)


def failure_audit_fields(exc: AuthenticationError) -> dict[str, Any]:
    """Audit fields for a refused credential: who (when known) and which key id, no secret."""
    if not isinstance(exc, CredentialRejected):
        return {}
    fields: dict[str, Any] = {}
    if exc.subject is not None:
        fields["actor"] = exc.subject
    if exc.credential_id is not None:
        fields["resource_type"] = "api_key"
        fields["resource_id"] = exc.credential_id
    if exc.auth_method is not None:
        fields["auth_method"] = exc.auth_method
    return fields
