"""Fixtures for the authentication tests (helpers live in jwt_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from joserfc.jwk import RSAKey
from tests.authn.jwt_helpers import JwksServer


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def rsa_signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa1", "alg": "RS256"}, private=True)
