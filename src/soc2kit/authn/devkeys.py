"""Development signing keys: generated once into the data directory, never for production.

They let ``make demo`` and local development mint tokens without an identity
provider. Their key ids start with ``soc2kit-dev-``, which the production guard
refuses, so a development key can never silently sign production traffic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from soc2kit.errors import ConfigurationError
from soc2kit.settings import DEV_KEY_ID_PREFIX, Settings

DEV_ISSUER = "https://soc2kit.invalid/dev"
DEV_AUDIENCE = "soc2kit-dev"
_KEY_FILE = "dev-signing-key.json"


def load_or_create(settings: Settings) -> ECKey:
    """The development ES256 key under ``settings.data_dir``, created if missing."""
    if settings.is_production:
        raise ConfigurationError("development signing keys are refused in production")
    path = Path(settings.data_dir) / _KEY_FILE
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return ECKey.import_key(data)
    key = ECKey.generate_key("P-256", private=True)
    kid = DEV_KEY_ID_PREFIX + key.thumbprint()[:16]
    key = ECKey.import_key({**key.as_dict(private=True), "kid": kid, "alg": "ES256", "use": "sig"})
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written 0600 from the start: a dev key is still a signing key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(key.as_dict(private=True), fh)
    return key


def public_jwks(key: ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}
