"""Trusted hosts, HTTPS enforcement and forwarding headers from trusted proxies only."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import soc2kit


def routes(calls: list[str]) -> Any:
    def declare(app: FastAPI, kit: soc2kit.Kit) -> None:
        @app.get("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def read(item_id: int, request: Request) -> dict[str, Any]:
            calls.append("read")
            client = request.client.host if request.client else None
            return {"client": client, "scheme": request.url.scheme}

        @app.post("/items/{item_id}", dependencies=[soc2kit.public("test route")])
        async def write(item_id: int) -> dict[str, int]:
            calls.append("write")
            return {"item_id": item_id}

    return declare


@pytest.fixture
def calls() -> list[str]:
    return []


def host_headers(*hosts: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", h) for h in hosts]


# --- trusted hosts ---------------------------------------------------------------


@pytest.fixture
def hosts_app(make_client: Any, calls: list[str]) -> Any:
    client, kit = make_client(
        routes(calls), allowed_hosts=["api.example.com", "*.example.net", "[::1]", "127.0.0.1"]
    )
    return client.app, kit


@pytest.mark.parametrize(
    "host",
    [
        b"api.example.com",
        b"API.Example.COM",
        b"api.example.com:8443",
        b"a.example.net",
        b"a.b.example.net:8000",
        b"[::1]",
        b"[::1]:8000",
        b"127.0.0.1:8000",
    ],
)
def test_allowed_hosts_pass(hosts_app: Any, asgi: Any, calls: list[str], host: bytes) -> None:
    app, _ = hosts_app
    resp = asgi(app, "GET", "/items/1", headers=host_headers(host))
    assert resp.status == 200, resp.body
    assert calls == ["read"]


@pytest.mark.parametrize(
    "host",
    [
        b"evil.com",
        b"example.com",
        b"example.net",  # "*.example.net" covers subdomains only
        b"evilexample.net",
        b"a.example.net.evil.com",
        b"api.example.com.evil.com",
        b"api.example.com:abc",
        b"api.example.com:80:80",
        b"user@api.example.com",
        b"api.example.com/x",
        b"api.example.com\\x",
        b"api.example.com?x",
        b"api.example.com#x",
        b"[::1",
        b"[::2]:8000",
        b"[::1]x",
        b"::1",
        b"",
    ],
)
def test_other_hosts_are_400_invalid_host(
    hosts_app: Any, asgi: Any, calls: list[str], expect_error: Any, http_event: Any, host: bytes
) -> None:
    app, kit = hosts_app
    resp = asgi(app, "GET", "/items/1", headers=host_headers(host))
    expect_error(resp, 400, "invalid_host")
    assert calls == []
    event = http_event(kit, resp.header("x-request-id"))
    assert (event["status_code"], event["outcome"], event["route"]) == (400, "failure", None)
    assert event["extra"]["rejected"] == "host_rejected"


@pytest.mark.parametrize(
    "hosts",
    [
        (),
        (b"api.example.com", b"api.example.com"),
        (b"api.example.com", b"evil.com"),
        (b"evil.com", b"api.example.com"),
    ],
)
def test_missing_or_repeated_host_header_is_400(
    hosts_app: Any, asgi: Any, calls: list[str], expect_error: Any, hosts: tuple[bytes, ...]
) -> None:
    app, _ = hosts_app
    resp = asgi(app, "GET", "/items/1", headers=host_headers(*hosts))
    expect_error(resp, 400, "invalid_host")
    assert calls == []


def test_bad_host_is_refused_through_a_real_client(hosts_app: Any, expect_error: Any) -> None:
    app, _ = hosts_app
    client = TestClient(app, base_url="http://evil.com")
    expect_error(client.get("/items/1"), 400, "invalid_host")
    client = TestClient(app, base_url="http://[::1]:8000")
    assert client.get("/items/1").status_code == 200


def test_default_hosts_are_local_only(make_client: Any, calls: list[str], asgi: Any) -> None:
    client, _ = make_client(routes(calls))
    assert client.get("/items/1").status_code == 200  # "testserver"
    for host in (b"localhost:8000", b"127.0.0.1", b"[::1]:8000"):
        assert asgi(client.app, "GET", "/items/1", headers=host_headers(host)).status == 200
    assert asgi(client.app, "GET", "/items/1", headers=host_headers(b"example.com")).status == 400


# --- HTTPS -----------------------------------------------------------------------


@pytest.fixture
def https_client(make_client: Any, calls: list[str]) -> tuple[TestClient, soc2kit.Kit]:
    client, kit = make_client(
        routes(calls),
        https_only=True,
        allowed_hosts=["api.example.com"],
        trusted_proxies=["10.0.0.0/8"],
    )
    client.base_url = "http://api.example.com"  # type: ignore[assignment]
    client.follow_redirects = False
    return client, kit


def test_plain_http_get_is_redirected_to_https(
    https_client: Any, calls: list[str], expect_error: Any, http_event: Any
) -> None:
    client, kit = https_client
    resp = client.get("/items/5?x=1&y=%20")
    expect_error(resp, 308, "https_required")
    assert resp.headers["location"] == "https://api.example.com/items/5?x=1&y=%20"
    assert calls == []
    event = http_event(kit, resp.headers["x-request-id"])
    assert event["status_code"] == 308
    assert event["extra"]["rejected"] == "https_required"


def test_plain_http_head_is_redirected_too(https_client: Any) -> None:
    client, _ = https_client
    resp = client.head("/items/5")
    assert resp.status_code == 308
    assert resp.headers["location"] == "https://api.example.com/items/5"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_plain_http_unsafe_method_is_403_not_redirected(
    https_client: Any, calls: list[str], expect_error: Any, http_event: Any, method: str
) -> None:
    client, kit = https_client
    resp = client.request(method, "/items/5", json={"a": 1})
    expect_error(resp, 403, "https_required")
    assert "location" not in resp.headers
    assert calls == []
    event = http_event(kit, resp.headers["x-request-id"])
    assert (event["status_code"], event["outcome"]) == (403, "denied")


def test_https_request_is_served_with_hsts(https_client: Any, calls: list[str]) -> None:
    client, _ = https_client
    secure = TestClient(client.app, base_url="https://api.example.com")
    resp = secure.post("/items/5")
    assert resp.status_code == 200
    assert calls == ["write"]
    assert resp.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


def test_redirect_is_never_to_an_untrusted_host(https_client: Any, expect_error: Any) -> None:
    client, _ = https_client
    evil = TestClient(client.app, base_url="http://evil.com", follow_redirects=False)
    resp = evil.get("/items/1")
    expect_error(resp, 400, "invalid_host")
    assert "location" not in resp.headers


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/a\r\nSet-Cookie: x=1", b"", "https://api.example.com/a%0D%0ASet-Cookie:%20x=1"),
        ("/\u20ac", b"q=%E2%82%AC", "https://api.example.com/%E2%82%AC?q=%E2%82%AC"),
        ("//evil.com/x", b"", "https://api.example.com//evil.com/x"),
        ("/a", b"x=\r\n", "https://api.example.com/a?x=%0D%0A"),
    ],
)
def test_redirect_location_is_encoded(
    https_client: Any, asgi: Any, path: str, query: bytes, expected: str
) -> None:
    # The path reaches the app decoded: a %0D%0A must not become a header break,
    # and a character outside latin-1 must not turn the redirect into a 500.
    client, _ = https_client
    resp = asgi(client.app, "GET", path, headers=host_headers(b"api.example.com"), query=query)
    assert resp.status == 308, resp.body
    location = resp.header("location")
    assert location == expected
    assert all(32 < ord(c) < 127 for c in location)


def test_forwarded_proto_from_a_trusted_proxy_is_honoured(https_client: Any, asgi: Any) -> None:
    client, _ = https_client
    headers = [(b"host", b"api.example.com"), (b"x-forwarded-proto", b"https")]
    resp = asgi(client.app, "POST", "/items/1", headers=headers, client=("10.0.0.1", 1234))
    assert resp.status == 200
    resp = asgi(client.app, "GET", "/items/1", headers=headers, client=("10.0.0.1", 1234))
    assert resp.json()["scheme"] == "https"


def test_forwarded_proto_takes_the_last_hop(https_client: Any, asgi: Any) -> None:
    client, _ = https_client
    headers = [(b"host", b"api.example.com"), (b"x-forwarded-proto", b"https, http")]
    resp = asgi(client.app, "POST", "/items/1", headers=headers, client=("10.0.0.1", 1234))
    assert resp.status == 403


@pytest.mark.parametrize("peer", [("192.0.2.7", 1234), ("testclient", 50000), None])
def test_forwarded_proto_from_an_untrusted_peer_is_ignored(
    https_client: Any, asgi: Any, calls: list[str], peer: Any
) -> None:
    client, _ = https_client
    headers = [(b"host", b"api.example.com"), (b"x-forwarded-proto", b"https")]
    assert asgi(client.app, "POST", "/items/1", headers=headers, client=peer).status == 403
    assert asgi(client.app, "GET", "/items/1", headers=headers, client=peer).status == 308
    assert calls == []


def test_forwarded_proto_is_ignored_without_trusted_proxies(
    make_client: Any, calls: list[str], asgi: Any
) -> None:
    client, _ = make_client(routes(calls), https_only=True)
    headers = [(b"host", b"testserver"), (b"x-forwarded-proto", b"https")]
    assert asgi(client.app, "POST", "/items/1", headers=headers).status == 403


def test_https_is_not_enforced_by_default_outside_production(
    make_client: Any, calls: list[str]
) -> None:
    client, _ = make_client(routes(calls))
    resp = client.post("/items/1")
    assert resp.status_code == 200
    assert "strict-transport-security" not in resp.headers


# --- client address --------------------------------------------------------------


@pytest.fixture
def proxied(make_client: Any, calls: list[str]) -> tuple[Any, soc2kit.Kit]:
    client, kit = make_client(
        routes(calls), trusted_proxies=["10.0.0.0/8", "fd00::/8"], audit_client_ip="full"
    )
    return client.app, kit


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # trusted peer: the rightmost hop that is not a trusted proxy
        ("10.0.0.1", b"203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", b"198.51.100.9, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.1", b"198.51.100.9, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        ("10.0.0.1", b"2001:db8::1, fd00::2", "2001:db8::1"),
        ("fd00::1", b"203.0.113.7", "203.0.113.7"),
        # only proxies in the chain: keep the peer
        ("10.0.0.1", b"10.0.0.2, 10.0.0.3", "10.0.0.1"),
        # garbage where the client should be: keep the peer, never trust the left part
        ("10.0.0.1", b"203.0.113.7, not-an-ip", "10.0.0.1"),
        ("10.0.0.1", b"203.0.113.7, 10.0.0.2\r\nX-Evil: 1", "10.0.0.1"),
        # untrusted peer: the header is ignored
        ("192.0.2.1", b"203.0.113.7", "192.0.2.1"),
        ("192.0.2.1", b"10.0.0.2", "192.0.2.1"),
    ],
)
def test_forwarded_for_is_used_only_from_trusted_proxies(
    proxied: Any, asgi: Any, http_event: Any, peer: str, forwarded_for: bytes, expected: str
) -> None:
    app, kit = proxied
    headers = [(b"host", b"testserver"), (b"x-forwarded-for", forwarded_for)]
    resp = asgi(app, "GET", "/items/1", headers=headers, client=(peer, 1234))
    assert resp.status == 200
    assert resp.json()["client"] == expected
    assert http_event(kit, resp.header("x-request-id"))["client_ip"] == expected


def test_forwarded_for_is_ignored_without_trusted_proxies(
    make_client: Any, calls: list[str], asgi: Any
) -> None:
    client, _ = make_client(routes(calls))
    headers = [(b"host", b"testserver"), (b"x-forwarded-for", b"203.0.113.7")]
    resp = asgi(client.app, "GET", "/items/1", headers=headers, client=("10.0.0.1", 1234))
    assert resp.json()["client"] == "10.0.0.1"


def test_client_ip_is_truncated_in_the_audit_trail_by_default(
    make_client: Any, calls: list[str], asgi: Any, http_event: Any
) -> None:
    client, kit = make_client(routes(calls))
    resp = asgi(client.app, "GET", "/items/1", client=("203.0.113.77", 1234))
    event = http_event(kit, resp.header("x-request-id"))
    assert event["client_ip"] == "203.0.113.0/24"
