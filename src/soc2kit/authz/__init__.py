"""Authorization: route declarations (``require``/``public``) and the policy."""

from soc2kit.authz.dependencies import authenticate, public, require
from soc2kit.authz.policy import Policy

__all__ = ["Policy", "authenticate", "public", "require"]
