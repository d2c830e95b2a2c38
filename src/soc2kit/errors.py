"""soc2kit's exception types.

Every error soc2kit raises on purpose derives from :class:`Soc2kitError`, so an
application can tell a refused configuration or a failed control apart from a
bug. Messages never carry secrets, tokens or plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence


class Soc2kitError(Exception):
    """Base class for every error soc2kit raises deliberately."""


class ConfigurationError(Soc2kitError):
    """A setting is invalid on its own (a malformed value, an unknown option)."""


class InsecureConfigurationError(ConfigurationError):
    """The configuration is not safe for the environment it is used in.

    Raised by :func:`soc2kit.install` in production, listing every problem at
    once so an operator fixes them in one pass rather than one per restart.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"insecure configuration for production ({len(self.problems)}):\n{lines}")


class AuditWriteError(Soc2kitError):
    """An audit event could not be written; callers must fail closed."""


class AuthenticationError(Soc2kitError):
    """Credentials are missing or invalid (HTTP 401).

    ``reason`` is for the audit trail only; clients only ever see ``invalid_token``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AuthorizationError(Soc2kitError):
    """The principal is known but lacks the permission (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PolicyError(Soc2kitError):
    """A policy change was refused (invalid, conflicting or not allowed)."""


class SegregationOfDutiesError(PolicyError):
    """An assignment would give one subject two roles declared in conflict."""


class PolicyUnavailableError(Soc2kitError):
    """The policy could not be confirmed fresh; decisions fail closed (HTTP 503)."""
