"""soc2kit: secure-by-default controls for FastAPI services that must pass a SOC 2 audit.

The public surface is this module; everything else lives in subpackages named
after what they do (``soc2kit.http``, ``soc2kit.db``, ``soc2kit.audit``, ...).
"""

from soc2kit._version import __version__
from soc2kit.authn.principal import Principal
from soc2kit.authz.dependencies import public, require
from soc2kit.context import current_request_id
from soc2kit.errors import (
    AuditWriteError,
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    InsecureConfigurationError,
    Soc2kitError,
)
from soc2kit.kit import Kit, install
from soc2kit.settings import Settings, production_problems

__all__ = [
    "AuditWriteError",
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "InsecureConfigurationError",
    "Kit",
    "Principal",
    "Settings",
    "Soc2kitError",
    "__version__",
    "current_request_id",
    "install",
    "production_problems",
    "public",
    "require",
]
