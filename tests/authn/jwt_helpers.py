"""Helpers for the authentication tests: token signing, a fake clock, a local JWKS server."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

ISS, AUD = "https://id.example.test/", "api://invoices"
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(data: dict[str, Any]) -> str:
    return b64(json.dumps(data).encode())


def claims(now: int = NOW, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "roles": ["clerk"],
        **overrides,
    }
    return {k: v for k, v in body.items() if v is not None}


def sign(
    key: RSAKey | ECKey | OKPKey | OctKey,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    now: int = NOW,
    **overrides: Any,
) -> str:
    head = {"alg": alg, "kid": key.kid, **(header or {})}
    head = {k: v for k, v in head.items() if v is not None}
    return jwt.encode(head, claims(now, **overrides), key, algorithms=[alg])


def raw_sign(header: dict[str, Any], body: dict[str, Any], signer: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand (joserfc rightly refuses to produce broken ones)."""
    signing_input = f"{b64json(header)}.{b64json(body)}".encode()
    return f"{signing_input.decode()}.{b64(signer(signing_input))}"


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256"}, private=True)


def public_jwks(*keys: RSAKey | ECKey | OKPKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


class FakeClock:
    """A clock tests move by hand; callable like ``time.time``."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class JwksServer:
    """A tiny HTTP server on 127.0.0.1 serving canned responses and counting hits."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.hits: Counter[str] = Counter()
        self.delay = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits[self.path] += 1
                    status, headers, body = server.routes.get(self.path, (404, {}, b"{}"))
                if server.delay:
                    time.sleep(server.delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (timeouts, caps)
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def json(self, path: str, document: Any, status: int = 200) -> None:
        body = json.dumps(document).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        with self._lock:
            self.routes[path] = (status, headers, body)

    def raw(self, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.routes[path] = (status, headers, body)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
