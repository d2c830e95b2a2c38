"""Authentication: who is calling (bearer tokens today; API keys arrive with access control)."""

from soc2kit.authn.principal import AuthMethod, Principal
from soc2kit.authn.tokens import TokenVerifier

__all__ = ["AuthMethod", "Principal", "TokenVerifier"]
