"""Run a command with deploy/production.env.example, its secrets filled with throwaway values.

    python scripts/production_like_env.py python -m soc2kit check --app PACKAGE.app:app

CI runs ``soc2kit check`` this way (make check-production), which proves that
the committed production example passes soc2kit's production guard once its
secrets are set. Every CHANGE-ME is replaced by fresh random bytes that live
only in this process's environment: they are never printed or written, and
never meant to be deployed.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess  # nosec B404
import sys
from collections.abc import Callable
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "production.env.example"
PLACEHOLDER = "CHANGE-ME"


def _b64url(size: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode()


# What each secret looks like; any other CHANGE-ME becomes a random token.
SECRETS: dict[str, Callable[[], str]] = {
    "SOC2KIT_API_KEY_PEPPER": lambda: secrets.token_urlsafe(48),
    "SOC2KIT_AUDIT_SIGNING_KEY": lambda: _b64url(32),  # an Ed25519 seed
    "SOC2KIT_ENCRYPTION_KEK": lambda: f"throwaway-kek:{_b64url(32)}",  # AES-256
}


def production_like_env(example: Path = EXAMPLE) -> dict[str, str]:
    """The example's variables, every CHANGE-ME replaced by a throwaway secret."""
    values: dict[str, str] = {}
    for line in example.read_text("utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if not sep or name.startswith("#"):
            continue
        if value == PLACEHOLDER and name in SECRETS:
            value = SECRETS[name]()
        elif PLACEHOLDER in value:
            value = value.replace(PLACEHOLDER, secrets.token_urlsafe(24))
        values[name] = value
    return values


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: production_like_env.py COMMAND [ARG...]\n")
        return 2
    env = {**os.environ, **production_like_env()}
    # The caller's own command line (make check-production), run without a shell.
    return subprocess.run(argv, env=env, check=False).returncode  # noqa: S603 # nosec B603


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
