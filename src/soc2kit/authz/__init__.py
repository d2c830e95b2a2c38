"""Authorization: route declarations (``require``/``public``, ``public_app``/``protected_app``
for mounted apps), the route inventory and the policy."""

from soc2kit.authz.dependencies import authenticate, public, require
from soc2kit.authz.inventory import RouteEntry, build_inventory, undeclared
from soc2kit.authz.mounts import protected_app, public_app
from soc2kit.authz.policy import Policy

__all__ = [
    "Policy",
    "RouteEntry",
    "authenticate",
    "build_inventory",
    "protected_app",
    "public",
    "public_app",
    "require",
    "undeclared",
]
