"""The authenticated identity handed to route handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AuthMethod = Literal["oidc", "api_key"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. Holds no token or secret, so it is safe to log and audit."""

    subject: str
    issuer: str
    roles: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None
    auth_method: AuthMethod = "oidc"
    token_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    expires_at: int | None = None
    token_roles: frozenset[str] | None = None
    """Roles the credential itself carried; None when the principal was built by hand
    (then every role in ``roles`` counts as carried by the caller)."""
