"""Fixtures of the security battery (helpers live in battery.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.authn.jwt_helpers import JwksServer
from tests.security.battery import Attacker


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    """The "attacker": a tiny http.server on 127.0.0.1 that counts connections and GETs."""
    server = JwksServer()
    attacker = Attacker(server)
    httpd = server._httpd
    accept = httpd.verify_request

    def verify_request(request: Any, client_address: Any) -> bool:
        attacker.connections.append(client_address)
        return accept(request, client_address)

    httpd.verify_request = verify_request  # type: ignore[method-assign]
    yield attacker
    server.close()


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    """The identity provider's key server on 127.0.0.1 (for the remote-JWKS cases)."""
    server = JwksServer()
    yield server
    server.close()
